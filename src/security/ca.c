/*
 * The fleet certificate authority.
 *
 * A ca_t is the CA certificate, its private key, the certificate's PEM
 * (what provisioning hands to devices) and its expiry. Two files hold it:
 * the key (PKCS#8 PEM, mode 0600) and the certificate (PEM, 0644). On
 * first start droverd creates both: an EC P-256 key and a self-signed
 * X.509v3 certificate (CA:TRUE, pathlen 0, keyCertSign + cRLSign, ten
 * years). Every write goes to "<path>.tmp" opened O_CREAT|O_EXCL with the
 * final mode, is fsync'd, renamed over the final name and the directory
 * fsync'd, so a crash leaves either the old file or the whole new one. The
 * key is written before the certificate; a CA with only one of its two
 * files is refused rather than completed, because completing it would mean
 * a new key that devices' existing certificates do not chain to.
 *
 * Loading trusts nothing: both files must parse, the key must match the
 * certificate, the certificate must be a CA, and the key file must not be
 * open to group or others. No file is ever replaced on load.
 *
 * Signing takes only the public key and the proof of possession from a
 * CSR. Subject, extensions and validity are the CA's: a CSR that asks for
 * CA:TRUE or extra names gets neither. No certificate outlives the CA
 * (notAfter is clamped to the CA's notAfter).
 *
 * Serials are 128 random bits, printed as upper-case hex without leading
 * zero bytes (BN_bn2hex); tls.c prints the serial of a peer certificate
 * the same way, so a serial from here matches one seen at the handshake.
 *
 * Every public function leaves the thread's OpenSSL error queue empty, so
 * stale errors never confuse a later SSL_get_error() on the loop thread.
 * Loop thread only: the OpenSSL objects are not shared.
 */
#include "security/ca.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/crypto.h"
#include "common/util.h"

#define CA_CSR_MAX 16384        /* a PEM CSR: a few KiB even for RSA 8192 */
#define CA_FILE_MAX (64 * 1024) /* a key or certificate file */
#define CA_PEM_MAX (64 * 1024)  /* a certificate given to ca_cert_info */
#define CA_VALIDITY_DAYS 3650   /* a created CA: ten years */
#define CA_BACKDATE_S 60        /* tolerate clocks a minute behind */
#define CA_MAX_SAN 64           /* names in one server certificate */
#define CA_DNS_MAX 253

struct ca {
    X509 *cert;
    EVP_PKEY *key;
    char *pem;        /* the certificate, re-encoded: no stray text from the file */
    time_t not_after; /* the CA's expiry: nothing it signs lives longer */
};

__attribute__((format(printf, 3, 4))) static void seterr(char *err, size_t errlen, const char *fmt,
                                                         ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* "what: <OpenSSL's reason>", for failures where OpenSSL knows more. */
static void seterr_ssl(char *err, size_t errlen, const char *what)
{
    char reason[256] = "unknown error";
    unsigned long e = ERR_peek_last_error();
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    seterr(err, errlen, "%s: %s", what, reason);
}

/* Never prompt on the terminal for a passphrase: an encrypted key fails. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* ---- files ---- */

/* Reads a whole regular file of at most max bytes, NUL-terminated, with
 * st from the same descriptor (so a mode check sees the file read). */
static int read_small_file(const char *path, size_t max, char **out, size_t *outlen,
                           struct stat *st)
{
    char *buf = NULL;
    size_t len = 0;
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, st) < 0) {
        rc = -errno;
        goto fail;
    }
    if (!S_ISREG(st->st_mode)) {
        rc = -EINVAL;
        goto fail;
    }
    buf = malloc(max + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    for (;;) {
        /* Read one byte past the cap, to tell "exactly max" from "more". */
        ssize_t n = read(fd, buf + len, max + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max) {
            rc = -EFBIG;
            goto fail;
        }
    }
    buf[len] = '\0';
    close(fd);
    *out = buf;
    *outlen = len;
    return 0;
fail:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, max + 1);
        free(buf);
    }
    close(fd);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        memcpy(dir, ".", 2);
    } else if (slash == path) {
        memcpy(dir, "/", 2);
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir))
            return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int tmp_name(const char *path, char *tmp, size_t tmplen)
{
    int n = snprintf(tmp, tmplen, "%s.tmp", path);
    return (n < 0 || (size_t)n >= tmplen) ? -ENAMETOOLONG : 0;
}

/* Writes data to "<path>.tmp", created afresh with exactly mode (umask
 * cannot widen it; fchmod makes 0644 exact under a strict umask), and
 * fsync'd. A stale .tmp from a crash is removed first: O_EXCL then still
 * refuses anything that appears in between (a planted symlink). */
static int write_tmp(const char *path, const char *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    int rc = tmp_name(path, tmp, sizeof(tmp));
    if (rc < 0)
        return rc;
    if (unlink(tmp) < 0 && errno != ENOENT)
        return -errno;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -errno;
    rc = fchmod(fd, mode) < 0 ? -errno : 0;
    if (rc == 0)
        rc = write_all(fd, data, len);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

/* Renames "<path>.tmp" to path; with noreplace, fails with -EEXIST rather
 * than replace an existing path (the CA's files are never overwritten). */
static int commit_tmp(const char *path, bool noreplace)
{
    char tmp[PATH_MAX];
    int rc = tmp_name(path, tmp, sizeof(tmp));
    if (rc < 0)
        return rc;
    if (noreplace) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
            return 0;
        /* Filesystems without RENAME_NOREPLACE: the caller checked that
         * path did not exist a moment ago, which is as good as it gets. */
        if (errno != EINVAL && errno != ENOSYS) {
            rc = -errno;
            unlink(tmp);
            return rc;
        }
    }
    if (rename(tmp, path) < 0) {
        rc = -errno;
        unlink(tmp);
        return rc;
    }
    return 0;
}

static void drop_tmp(const char *path)
{
    char tmp[PATH_MAX];
    if (tmp_name(path, tmp, sizeof(tmp)) == 0)
        unlink(tmp);
}

/* ---- OpenSSL helpers ---- */

static char *bio_to_string(BIO *bio)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    if (n > 0)
        memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

static char *cert_to_pem(X509 *x)
{
    char *s = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio != NULL && PEM_write_bio_X509(bio, x) == 1)
        s = bio_to_string(bio);
    BIO_free(bio);
    return s;
}

/* The key as unencrypted PKCS#8 PEM; the caller cleanses and frees. */
static char *key_to_pem(EVP_PKEY *k, size_t *len)
{
    char *s = NULL;
    /* A secure-memory BIO clears its buffers when they grow or are freed. */
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio != NULL && PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) == 1) {
        s = bio_to_string(bio);
        if (s != NULL)
            *len = strlen(s);
    }
    BIO_free(bio);
    return s;
}

static void free_secret(char *s, size_t len)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, len);
        free(s);
    }
}

static int asn1_time_epoch(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return -EINVAL;
    time_t s = timegm(&tm);
    if (s == (time_t)-1)
        return -EINVAL;
    *out = (int64_t)s;
    return 0;
}

/* Upper-case hex, no separators, no leading zero bytes: BN_bn2hex. */
static int serial_hex(const ASN1_INTEGER *ai, char *out, size_t outlen)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
    if (bn == NULL)
        return -ENOMEM;
    char *hex = BN_bn2hex(bn);
    BN_free(bn);
    if (hex == NULL)
        return -ENOMEM;
    size_t n = strlen(hex);
    int rc = 0;
    if (n >= outlen)
        rc = -ENOSPC;
    else
        memcpy(out, hex, n + 1);
    OPENSSL_free(hex);
    return rc;
}

/* The single CN of name as UTF-8 (OPENSSL_malloc'd, caller frees):
 * -ENOENT without one; -EINVAL with several (which one would a consumer
 * believe?) or with an embedded NUL (C strings would truncate it). */
static int name_cn(const X509_NAME *name, unsigned char **utf8, size_t *len)
{
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0)
        return -ENOENT;
    if (X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
        return -EINVAL;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, s);
    if (n < 0)
        return -EINVAL;
    if (memchr(u, '\0', (size_t)n) != NULL) {
        OPENSSL_free(u);
        return -EINVAL;
    }
    *utf8 = u;
    *len = (size_t)n;
    return 0;
}

/* Ed25519/Ed448 keys sign without a separate digest; the rest SHA-256. */
static const EVP_MD *sign_md(EVP_PKEY *k)
{
    if (EVP_PKEY_is_a(k, "ED25519") || EVP_PKEY_is_a(k, "ED448"))
        return NULL;
    return EVP_sha256();
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL)
        return -EINVAL;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -ENOMEM;
}

/* A v3 certificate with a random 128-bit serial (never zero), subject,
 * issuer, public key and validity [nb, na]; no extensions yet. */
static X509 *cert_new(const X509_NAME *subject, const X509_NAME *issuer, EVP_PKEY *pub, time_t nb,
                      time_t na)
{
    uint8_t raw[16];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    X509 *x = X509_new();
    if (x == NULL)
        goto fail;
    do {
        if (crypto_random(raw, sizeof(raw)) < 0)
            goto fail;
        BN_free(bn);
        bn = BN_bin2bn(raw, (int)sizeof(raw), NULL);
        if (bn == NULL)
            goto fail;
    } while (BN_is_zero(bn));
    serial = BN_to_ASN1_INTEGER(bn, NULL);
    if (serial == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        X509_set_serialNumber(x, serial) != 1 || X509_set_subject_name(x, subject) != 1 ||
        X509_set_issuer_name(x, issuer) != 1 || X509_set_pubkey(x, pub) != 1 ||
        ASN1_TIME_set(X509_getm_notBefore(x), nb) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), na) == NULL)
        goto fail;
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return x;
fail:
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    X509_free(x);
    return NULL;
}

/* notAfter for a certificate asked to live lifetime_s from now: never past
 * the CA's own expiry. -EINVAL once the CA has expired. */
static int leaf_not_after(const ca_t *ca, time_t now, int64_t lifetime_s, time_t *na)
{
    if (now >= ca->not_after)
        return -EINVAL;
    if (lifetime_s >= (int64_t)(ca->not_after - now))
        *na = ca->not_after;
    else
        *na = now + (time_t)lifetime_s;
    return 0;
}

/* ---- open / create ---- */

static int ca_finish(ca_t *ca, char *err, size_t errlen)
{
    int64_t na;
    if (asn1_time_epoch(X509_get0_notAfter(ca->cert), &na) < 0) {
        seterr(err, errlen, "CA certificate has an unreadable notAfter");
        return -EINVAL;
    }
    ca->not_after = (time_t)na;
    ca->pem = cert_to_pem(ca->cert);
    if (ca->pem == NULL) {
        seterr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

static int ca_load(ca_t *ca, const char *cert_path, const char *key_path, char *err, size_t errlen)
{
    char *keytext = NULL, *certtext = NULL;
    size_t keylen = 0, certlen = 0;
    BIO *bio = NULL;
    struct stat st = {0};
    int rc = read_small_file(key_path, CA_FILE_MAX, &keytext, &keylen, &st);
    if (rc < 0) {
        seterr(err, errlen, "cannot read CA key %s: %s", key_path, strerror(-rc));
        rc = -EINVAL;
        goto fail;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        seterr(err, errlen,
               "CA key %s is accessible by group or others (mode %03o); "
               "fix with: chmod 600 %s",
               key_path, (unsigned)(st.st_mode & 0777), key_path);
        rc = -EINVAL;
        goto fail;
    }
    rc = read_small_file(cert_path, CA_FILE_MAX, &certtext, &certlen, &st);
    if (rc < 0) {
        seterr(err, errlen, "cannot read CA certificate %s: %s", cert_path, strerror(-rc));
        rc = -EINVAL;
        goto fail;
    }
    rc = -EINVAL;
    bio = BIO_new_mem_buf(keytext, (int)keylen);
    if (bio == NULL || (ca->key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL)) == NULL) {
        seterr_ssl(err, errlen, "CA key is not an unencrypted PEM private key");
        goto fail;
    }
    BIO_free(bio);
    bio = BIO_new_mem_buf(certtext, (int)certlen);
    if (bio == NULL || (ca->cert = PEM_read_bio_X509(bio, NULL, no_password, NULL)) == NULL) {
        seterr_ssl(err, errlen, "CA certificate is not a PEM certificate");
        goto fail;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        seterr(err, errlen, "CA key %s does not match CA certificate %s", key_path, cert_path);
        goto fail;
    }
    /* 1: a v3 certificate with basicConstraints CA:TRUE and, if it has a
     * keyUsage, keyCertSign. Older forms of "CA" are not accepted. */
    if (X509_check_ca(ca->cert) != 1) {
        seterr(err, errlen, "%s is not a CA certificate (needs basicConstraints CA:TRUE)",
               cert_path);
        goto fail;
    }
    rc = ca_finish(ca, err, errlen);
fail:
    BIO_free(bio);
    free_secret(keytext, keylen);
    free(certtext);
    return rc;
}

static int ca_create(ca_t *ca, const char *cert_path, const char *key_path, char *err,
                     size_t errlen)
{
    X509_NAME *name = NULL;
    char *keypem = NULL;
    size_t keylen = 0;
    bool key_written = false;
    int rc = -ENOMEM;
    uint8_t rnd[4];
    char cn[40], hex[2 * sizeof(rnd) + 1];

    if (crypto_random(rnd, sizeof(rnd)) < 0) {
        seterr(err, errlen, "no randomness");
        rc = -EIO;
        goto fail;
    }
    util_hex_encode(rnd, sizeof(rnd), hex);
    snprintf(cn, sizeof(cn), "Drover fleet CA %s", hex);

    ca->key = EVP_EC_gen("P-256");
    if (ca->key == NULL) {
        seterr_ssl(err, errlen, "cannot generate the CA key");
        goto fail;
    }
    name = X509_NAME_new();
    if (name == NULL || X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                                   (const unsigned char *)cn, -1, -1, 0) != 1) {
        seterr(err, errlen, "out of memory");
        goto fail;
    }
    time_t now = time(NULL);
    ca->cert =
        cert_new(name, name, ca->key, now - CA_BACKDATE_S, now + (time_t)CA_VALIDITY_DAYS * 86400);
    if (ca->cert == NULL) {
        seterr_ssl(err, errlen, "cannot build the CA certificate");
        goto fail;
    }
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca->cert, ca->cert, NULL, NULL, 0);
    if (add_ext(ca->cert, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
        add_ext(ca->cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
        add_ext(ca->cert, &ctx, NID_subject_key_identifier, "hash") < 0 ||
        X509_sign(ca->cert, ca->key, EVP_sha256()) <= 0) {
        seterr_ssl(err, errlen, "cannot sign the CA certificate");
        goto fail;
    }
    keypem = key_to_pem(ca->key, &keylen);
    if (keypem == NULL) {
        seterr(err, errlen, "out of memory");
        goto fail;
    }
    rc = ca_finish(ca, err, errlen);
    if (rc < 0)
        goto fail;

    /* Key first: a crash after it leaves a key without a certificate,
     * which ca_open refuses loudly; never a certificate without its key. */
    rc = write_tmp(key_path, keypem, keylen, 0600);
    if (rc == 0) {
        rc = commit_tmp(key_path, true);
        key_written = rc == 0;
    }
    if (rc < 0) {
        seterr(err, errlen, "cannot write CA key %s: %s", key_path, strerror(-rc));
        goto fail;
    }
    rc = write_tmp(cert_path, ca->pem, strlen(ca->pem), 0644);
    if (rc == 0)
        rc = commit_tmp(cert_path, true);
    if (rc == 0)
        rc = fsync_parent(cert_path);
    if (rc == 0)
        rc = fsync_parent(key_path);
    if (rc < 0) {
        seterr(err, errlen, "cannot write CA certificate %s: %s", cert_path, strerror(-rc));
        goto fail;
    }
    X509_NAME_free(name);
    free_secret(keypem, keylen);
    return 0;
fail:
    /* Undo a key we wrote, so the next start can create the CA afresh
     * instead of refusing a key without its certificate. */
    if (key_written)
        unlink(key_path);
    X509_NAME_free(name);
    free_secret(keypem, keylen);
    return rc < 0 ? rc : -EINVAL;
}

static int exists(const char *path, bool *yes)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        *yes = true;
        return 0;
    }
    if (errno == ENOENT) {
        *yes = false;
        return 0;
    }
    return -errno;
}

void ca_free(ca_t *ca)
{
    if (ca == NULL)
        return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    free(ca->pem);
    free(ca);
}

int ca_open(const char *cert_path, const char *key_path, bool create, ca_t **out, char *err,
            size_t errlen)
{
    bool have_cert = false, have_key = false;
    int rc;
    ca_t *ca = NULL;

    if (cert_path == NULL || key_path == NULL || out == NULL) {
        seterr(err, errlen, "no CA paths given");
        return -EINVAL;
    }
    rc = exists(cert_path, &have_cert);
    if (rc == 0)
        rc = exists(key_path, &have_key);
    if (rc < 0) {
        seterr(err, errlen, "cannot examine CA files %s, %s: %s", cert_path, key_path,
               strerror(-rc));
        rc = -EINVAL;
        goto fail;
    }
    if (have_cert != have_key) {
        seterr(err, errlen,
               "CA %s exists but %s does not; refusing to replace a CA (restore the missing "
               "file, or remove both to create a new CA)",
               have_cert ? cert_path : key_path, have_cert ? key_path : cert_path);
        rc = -EINVAL;
        goto fail;
    }
    if (!have_cert && !create) {
        seterr(err, errlen, "CA certificate %s and key %s do not exist", cert_path, key_path);
        rc = -ENOENT;
        goto fail;
    }
    ca = calloc(1, sizeof(*ca));
    if (ca == NULL) {
        seterr(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    rc = have_cert ? ca_load(ca, cert_path, key_path, err, errlen)
                   : ca_create(ca, cert_path, key_path, err, errlen);
    if (rc < 0)
        goto fail;
    ERR_clear_error();
    *out = ca;
    return 0;
fail:
    ca_free(ca);
    ERR_clear_error();
    return rc;
}

const char *ca_cert_pem(const ca_t *ca)
{
    return ca->pem;
}

/* ---- signing ---- */

/* Accepts EC P-256/P-384 and RSA >= 2048; gives the keyUsage that fits the
 * key (ECDH for EC, RSA key transport for RSA). */
static int check_leaf_key(EVP_PKEY *pk, const char **ku, char *err, size_t errlen)
{
    int id = EVP_PKEY_get_base_id(pk);
    if (id == EVP_PKEY_EC) {
        char group[80];
        size_t glen = 0;
        /* Explicit curve parameters have no name: refused with the rest. */
        if (EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen) != 1) {
            seterr(err, errlen, "EC key without a named curve is not accepted");
            return -EINVAL;
        }
        int nid = OBJ_sn2nid(group);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(group);
        if (nid != NID_X9_62_prime256v1 && nid != NID_secp384r1) {
            seterr(err, errlen, "EC curve %s is not accepted (use P-256 or P-384)", group);
            return -EINVAL;
        }
        *ku = "critical,digitalSignature,keyAgreement";
        return 0;
    }
    if (id == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pk);
        if (bits < 2048) {
            seterr(err, errlen, "RSA key of %d bits is not accepted (2048 or more)", bits);
            return -EINVAL;
        }
        *ku = "critical,digitalSignature,keyEncipherment";
        return 0;
    }
    const char *type = EVP_PKEY_get0_type_name(pk);
    seterr(err, errlen, "%s key is not accepted (use EC P-256/P-384 or RSA >= 2048)",
           type != NULL ? type : "this");
    return -EINVAL;
}

int ca_sign_csr(ca_t *ca, const char *csr_pem, size_t len, const char *device_id,
                int64_t lifetime_s, ca_issued_t *out, char *err, size_t errlen)
{
    BIO *bio = NULL;
    X509_REQ *req = NULL;
    X509_NAME *subject = NULL;
    X509 *x = NULL;
    unsigned char *cn = NULL;
    size_t cnlen = 0;
    const char *ku = NULL;
    ca_issued_t res = {0};
    int rc = -EINVAL;

    ERR_clear_error();
    if (csr_pem == NULL || len == 0 || len > CA_CSR_MAX) {
        seterr(err, errlen, "CSR must be 1 to %d bytes of PEM", CA_CSR_MAX);
        goto fail;
    }
    if (device_id == NULL || !util_id_valid(device_id, strlen(device_id))) {
        seterr(err, errlen, "invalid device id");
        goto fail;
    }
    if (lifetime_s <= 0) {
        seterr(err, errlen, "certificate lifetime must be positive");
        goto fail;
    }
    bio = BIO_new_mem_buf(csr_pem, (int)len);
    if (bio == NULL || (req = PEM_read_bio_X509_REQ(bio, NULL, no_password, NULL)) == NULL) {
        seterr(err, errlen, "not a PEM certificate signing request");
        goto fail;
    }
    EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
    if (pk == NULL) {
        seterr(err, errlen, "CSR has no usable public key");
        goto fail;
    }
    /* Key type first: it is cheap, and it bounds the cost of the
     * signature check that follows. */
    rc = check_leaf_key(pk, &ku, err, errlen);
    if (rc < 0)
        goto fail;
    rc = -EINVAL;
    if (X509_REQ_verify(req, pk) != 1) {
        seterr(err, errlen, "CSR signature does not verify");
        goto fail;
    }
    int cr = name_cn(X509_REQ_get_subject_name(req), &cn, &cnlen);
    if (cr < 0 || cnlen != strlen(device_id) || memcmp(cn, device_id, cnlen) != 0) {
        if (cr == -EINVAL)
            seterr(err, errlen, "CSR subject has several CNs or an unreadable one");
        else
            seterr(err, errlen, "CSR subject CN must be the device id %s", device_id);
        rc = -EPERM;
        goto fail;
    }

    time_t now = time(NULL), na;
    if (leaf_not_after(ca, now, lifetime_s, &na) < 0) {
        seterr(err, errlen, "the CA certificate has expired");
        goto fail;
    }
    time_t nb = now - CA_BACKDATE_S;
    subject = X509_NAME_new();
    if (subject == NULL ||
        X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)device_id, -1, -1, 0) != 1) {
        seterr(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    x = cert_new(subject, X509_get_subject_name(ca->cert), pk, nb, na);
    if (x == NULL) {
        seterr_ssl(err, errlen, "cannot build the certificate");
        rc = -ENOMEM;
        goto fail;
    }
    /* Only our extensions: nothing from the CSR is copied. */
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca->cert, x, NULL, NULL, 0);
    if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, &ctx, NID_key_usage, ku) < 0 ||
        add_ext(x, &ctx, NID_ext_key_usage, "clientAuth") < 0 ||
        add_ext(x, &ctx, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid,issuer") < 0 ||
        X509_sign(x, ca->key, sign_md(ca->key)) <= 0) {
        seterr_ssl(err, errlen, "cannot sign the certificate");
        goto fail;
    }
    if (serial_hex(X509_get0_serialNumber(x), res.serial, sizeof(res.serial)) < 0 ||
        (res.pem = cert_to_pem(x)) == NULL) {
        seterr(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    res.not_before = (int64_t)nb * 1000;
    res.not_after = (int64_t)na * 1000;
    *out = res;
    rc = 0;
    goto done;
fail:
    free(res.pem);
done:
    OPENSSL_free(cn);
    X509_free(x);
    X509_NAME_free(subject);
    X509_REQ_free(req);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

/* ---- server certificates ---- */

/* Host names as they go in a SAN: letters, digits, '-', '.', and '*' for
 * a wildcard label. Anything else (commas, spaces, NULs) is refused. */
static bool dns_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CA_DNS_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '*'))
            return false;
    }
    return true;
}

static int push_name(GENERAL_NAMES *gens, int type, ASN1_STRING *value)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    if (g == NULL) {
        ASN1_STRING_free(value);
        return -ENOMEM;
    }
    GENERAL_NAME_set0_value(g, type, value);
    if (sk_GENERAL_NAME_push(gens, g) <= 0) {
        GENERAL_NAME_free(g);
        return -ENOMEM;
    }
    return 0;
}

/* The subjectAltName, built from GENERAL_NAMEs rather than a config
 * string, so no name can smuggle in another entry. */
static int build_san(X509 *x, const char *const *dns, size_t ndns, const char *const *ips,
                     size_t nips, char *err, size_t errlen)
{
    int rc = -EINVAL;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (gens == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < ndns; i++) {
        if (dns[i] == NULL || !dns_name_ok(dns[i])) {
            seterr(err, errlen, "invalid DNS name \"%s\"", dns[i] != NULL ? dns[i] : "");
            goto fail;
        }
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (s == NULL || ASN1_STRING_set(s, dns[i], (int)strlen(dns[i])) != 1) {
            ASN1_IA5STRING_free(s);
            rc = -ENOMEM;
            goto fail;
        }
        if ((rc = push_name(gens, GEN_DNS, s)) < 0)
            goto fail;
    }
    for (size_t i = 0; i < nips; i++) {
        ASN1_OCTET_STRING *ip = ips[i] != NULL ? a2i_IPADDRESS(ips[i]) : NULL;
        if (ip == NULL) {
            seterr(err, errlen, "invalid IP address \"%s\"", ips[i] != NULL ? ips[i] : "");
            rc = -EINVAL;
            goto fail;
        }
        if ((rc = push_name(gens, GEN_IPADD, ip)) < 0)
            goto fail;
    }
    rc = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1 ? 0 : -ENOMEM;
fail:
    GENERAL_NAMES_free(gens);
    return rc;
}

int ca_issue_server(ca_t *ca, const char *const *dns, size_t ndns, const char *const *ips,
                    size_t nips, int64_t lifetime_s, const char *cert_path, const char *key_path,
                    char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;
    X509_NAME *subject = NULL;
    X509 *x = NULL;
    char *keypem = NULL, *certpem = NULL;
    size_t keylen = 0;
    int rc = -EINVAL;

    ERR_clear_error();
    if (cert_path == NULL || key_path == NULL || ndns + nips == 0 || ndns > CA_MAX_SAN ||
        nips > CA_MAX_SAN || (ndns > 0 && dns == NULL) || (nips > 0 && ips == NULL)) {
        seterr(err, errlen, "server certificate needs paths and 1 to %d names", CA_MAX_SAN);
        goto fail;
    }
    if (lifetime_s <= 0) {
        seterr(err, errlen, "certificate lifetime must be positive");
        goto fail;
    }
    /* All names checked before any work (build_san checks them again). */
    for (size_t i = 0; i < ndns; i++) {
        if (dns[i] == NULL || !dns_name_ok(dns[i])) {
            seterr(err, errlen, "invalid DNS name \"%s\"", dns[i] != NULL ? dns[i] : "");
            goto fail;
        }
    }
    for (size_t i = 0; i < nips; i++) {
        ASN1_OCTET_STRING *ip = ips[i] != NULL ? a2i_IPADDRESS(ips[i]) : NULL;
        if (ip == NULL) {
            seterr(err, errlen, "invalid IP address \"%s\"", ips[i] != NULL ? ips[i] : "");
            goto fail;
        }
        ASN1_OCTET_STRING_free(ip);
    }
    time_t now = time(NULL), na;
    if (leaf_not_after(ca, now, lifetime_s, &na) < 0) {
        seterr(err, errlen, "the CA certificate has expired");
        goto fail;
    }
    key = EVP_EC_gen("P-256");
    if (key == NULL) {
        seterr_ssl(err, errlen, "cannot generate the server key");
        rc = -ENOMEM;
        goto fail;
    }
    /* Clients match the SAN; the CN is only a label (64 chars at most). */
    const char *cn = (ndns > 0 && strlen(dns[0]) <= 64) ? dns[0] : "droverd";
    subject = X509_NAME_new();
    if (subject == NULL || X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                                                      (const unsigned char *)cn, -1, -1, 0) != 1) {
        seterr(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    x = cert_new(subject, X509_get_subject_name(ca->cert), key, now - CA_BACKDATE_S, na);
    if (x == NULL) {
        seterr_ssl(err, errlen, "cannot build the certificate");
        rc = -ENOMEM;
        goto fail;
    }
    rc = build_san(x, dns, ndns, ips, nips, err, errlen);
    if (rc < 0)
        goto fail;
    rc = -EINVAL;
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca->cert, x, NULL, NULL, 0);
    if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(x, &ctx, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(x, &ctx, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid,issuer") < 0 ||
        X509_sign(x, ca->key, sign_md(ca->key)) <= 0) {
        seterr_ssl(err, errlen, "cannot sign the server certificate");
        goto fail;
    }
    certpem = cert_to_pem(x);
    keypem = key_to_pem(key, &keylen);
    if (certpem == NULL || keypem == NULL) {
        seterr(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    /* Both written in full before either is renamed, so the window in
     * which the key and certificate on disk disagree is two renames. */
    rc = write_tmp(key_path, keypem, keylen, 0600);
    if (rc == 0)
        rc = write_tmp(cert_path, certpem, strlen(certpem), 0644);
    if (rc == 0)
        rc = commit_tmp(key_path, false);
    if (rc == 0)
        rc = commit_tmp(cert_path, false);
    if (rc == 0)
        rc = fsync_parent(cert_path);
    if (rc == 0)
        rc = fsync_parent(key_path);
    if (rc < 0) {
        drop_tmp(key_path);
        drop_tmp(cert_path);
        seterr(err, errlen, "cannot write server certificate %s / key %s: %s", cert_path, key_path,
               strerror(-rc));
        goto fail;
    }
    rc = 0;
fail:
    free_secret(keypem, keylen);
    free(certpem);
    X509_free(x);
    X509_NAME_free(subject);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

/* ---- inspection ---- */

int ca_cert_info(const char *pem, size_t len, char *serial, size_t serial_len, char *cn,
                 size_t cn_len, int64_t *not_before, int64_t *not_after)
{
    BIO *bio = NULL;
    X509 *x = NULL;
    unsigned char *name = NULL;
    size_t namelen = 0;
    char hex[80];
    int64_t nb = 0, na = 0;
    int rc = -EINVAL;

    if (pem == NULL || len == 0 || len > CA_PEM_MAX)
        goto fail;
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL || (x = PEM_read_bio_X509(bio, NULL, no_password, NULL)) == NULL)
        goto fail;
    if (asn1_time_epoch(X509_get0_notBefore(x), &nb) < 0 ||
        asn1_time_epoch(X509_get0_notAfter(x), &na) < 0)
        goto fail;
    rc = serial_hex(X509_get0_serialNumber(x), hex, sizeof(hex));
    if (rc < 0)
        goto fail;
    if (serial != NULL && strlen(hex) >= serial_len) {
        rc = -ENOSPC;
        goto fail;
    }
    if (cn != NULL) {
        rc = name_cn(X509_get_subject_name(x), &name, &namelen);
        if (rc == -ENOENT)
            namelen = 0; /* no CN: reported as "" */
        else if (rc < 0)
            goto fail;
        if (namelen >= cn_len) {
            rc = -ENOSPC;
            goto fail;
        }
    }
    /* Everything is known to fit: now the out-parameters. */
    if (serial != NULL)
        memcpy(serial, hex, strlen(hex) + 1);
    if (cn != NULL) {
        if (namelen > 0)
            memcpy(cn, name, namelen);
        cn[namelen] = '\0';
    }
    if (not_before != NULL)
        *not_before = nb * 1000;
    if (not_after != NULL)
        *not_after = na * 1000;
    rc = 0;
fail:
    OPENSSL_free(name);
    X509_free(x);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

void ca_issued_fini(ca_issued_t *c)
{
    if (c == NULL)
        return;
    free(c->pem);
    c->pem = NULL;
}

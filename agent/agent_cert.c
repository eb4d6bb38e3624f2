/*
 * Key pair, CSR and certificate checks for drover-agent (agent_cert.h).
 *
 * Runs on the agent's one thread. Every OpenSSL object lives within one
 * call; the error queue is cleared on the way out so a failure here does
 * not leak stale errors into libmosquitto's or libcurl's later reports.
 * The checks on a certificate from the server are the same for a first
 * provisioning and a renewal: it must be for our key, name our id, and
 * chain to the fleet CA, before it may replace anything on disk.
 */
#include "agent_cert.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "agent_fs.h"
#include "common/json.h"

int agent_cert_keygen(EVP_PKEY **out)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ERR_clear_error();
    if (k == NULL)
        return -ENOMEM;
    *out = k;
    return 0;
}

int agent_cert_key_write(const char *dir, const char *name, EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n = 0;
    int rc = -ENOMEM;
    if (bio == NULL || PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1)
        goto fail;
    n = BIO_get_mem_data(bio, &data);
    if (n <= 0)
        goto fail;
    rc = agent_fs_write_atomic_mode(dir, name, data, (size_t)n, true, 0600);
fail:
    /* The PEM held the private key: wipe the buffer before it is freed. */
    if (data != NULL && n > 0)
        OPENSSL_cleanse(data, (size_t)n);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

static int read_pem_file(const char *path, char **out, size_t *len)
{
    return agent_fs_read(path, AGENT_PEM_MAX, out, len);
}

int agent_cert_key_read(const char *path, EVP_PKEY **out)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_pem_file(path, &text, &len);
    if (rc < 0)
        return rc;
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    EVP_PKEY *k = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    OPENSSL_cleanse(text, len);
    free(text);
    ERR_clear_error();
    if (k == NULL)
        return -EINVAL;
    *out = k;
    return 0;
}

int agent_cert_csr(EVP_PKEY *key, const char *cn, char **out)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    int rc = -ENOMEM;
    if (req == NULL || name == NULL || bio == NULL)
        goto fail;
    rc = -EINVAL;
    if (X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
                                   -1, -1, 0) != 1 ||
        X509_REQ_set_version(req, 0) != 1 || X509_REQ_set_subject_name(req, name) != 1 ||
        X509_REQ_set_pubkey(req, key) != 1 || X509_REQ_sign(req, key, EVP_sha256()) <= 0 ||
        PEM_write_bio_X509_REQ(bio, req) != 1)
        goto fail;
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0)
        goto fail;
    rc = -ENOMEM;
    pem = malloc((size_t)n + 1);
    if (pem == NULL)
        goto fail;
    memcpy(pem, data, (size_t)n);
    pem[n] = '\0';
    *out = pem;
    rc = 0;
fail:
    BIO_free(bio);
    X509_NAME_free(name);
    X509_REQ_free(req);
    ERR_clear_error();
    return rc;
}

static X509 *parse_cert(const char *pem, size_t len)
{
    if (pem == NULL || len == 0 || len > AGENT_PEM_MAX)
        return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return x;
}

static int asn1_to_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return -EINVAL;
    time_t s = timegm(&tm);
    if (s == (time_t)-1)
        return -EINVAL;
    *out = (int64_t)s;
    return 0;
}

/* The single CN of x, copied into out. -EINVAL: none, several or not
 * text; -ENAMETOOLONG: does not fit. */
static int subject_cn(X509 *x, char *out, size_t outlen)
{
    X509_NAME *n = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
    if (i < 0 || X509_NAME_get_index_by_NID(n, NID_commonName, i) >= 0)
        return -EINVAL;
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, s);
    if (len < 0)
        return -EINVAL;
    int rc = 0;
    if (memchr(utf8, '\0', (size_t)len) != NULL)
        rc = -EINVAL;
    else if ((size_t)len >= outlen)
        rc = -ENAMETOOLONG;
    else {
        memcpy(out, utf8, (size_t)len);
        out[len] = '\0';
    }
    OPENSSL_free(utf8);
    return rc;
}

int agent_cert_info(const char *pem, size_t len, agent_cert_info_t *out)
{
    agent_cert_info_t info;
    memset(&info, 0, sizeof(info));
    int rc = -EINVAL;
    X509 *x = parse_cert(pem, len);
    if (x == NULL)
        goto fail;
    if (asn1_to_unix(X509_get0_notBefore(x), &info.not_before) < 0 ||
        asn1_to_unix(X509_get0_notAfter(x), &info.not_after) < 0)
        goto fail;
    rc = subject_cn(x, info.cn, sizeof(info.cn));
    if (rc == -EINVAL) /* no CN is not an error here; the check says so */
        info.cn[0] = '\0';
    else if (rc < 0)
        goto fail;
    *out = info;
    rc = 0;
fail:
    X509_free(x);
    ERR_clear_error();
    return rc;
}

int agent_cert_info_file(const char *path, agent_cert_info_t *out)
{
    char *text;
    size_t len;
    int rc = read_pem_file(path, &text, &len);
    if (rc < 0)
        return rc;
    rc = agent_cert_info(text, len, out);
    free(text);
    return rc;
}

bool agent_cert_renew_due(int64_t not_before, int64_t not_after, int64_t now, double ratio)
{
    if (ratio >= 1.0 || not_after <= not_before)
        return true;
    /* In doubles: lifetimes of decades times a ratio do not overflow, and
     * the rounding of a second does not matter. */
    double left = (double)not_after - (double)now;
    double lifetime = (double)not_after - (double)not_before;
    return left < ratio * lifetime;
}

static void seterr(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

int agent_cert_check(const char *cert_pem, size_t cert_len, EVP_PKEY *key, const char *device_id,
                     const char *ca_pem, size_t ca_len, char *err, size_t errlen)
{
    X509 *x = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    BIO *bio = NULL;
    int rc = -EINVAL;
    char cn[128];

    x = parse_cert(cert_pem, cert_len);
    if (x == NULL) {
        seterr(err, errlen, "not a PEM certificate");
        goto fail;
    }
    EVP_PKEY *pub = X509_get0_pubkey(x);
    if (pub == NULL || EVP_PKEY_eq(pub, key) != 1) {
        seterr(err, errlen, "the certificate is not for this device's key");
        rc = -EKEYREJECTED;
        goto fail;
    }
    if (subject_cn(x, cn, sizeof(cn)) < 0 || strcmp(cn, device_id) != 0) {
        seterr(err, errlen, "the certificate's subject CN is not the device id");
        rc = -EPERM;
        goto fail;
    }
    if (ca_pem == NULL || ca_len == 0 || ca_len > AGENT_PEM_MAX) {
        seterr(err, errlen, "no CA certificate to check against");
        goto fail;
    }
    store = X509_STORE_new();
    bio = BIO_new_mem_buf(ca_pem, (int)ca_len);
    if (store == NULL || bio == NULL) {
        seterr(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    int added = 0;
    for (;;) {
        X509 *ca = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (ca == NULL)
            break;
        int ok = X509_STORE_add_cert(store, ca);
        X509_free(ca);
        if (ok != 1) {
            seterr(err, errlen, "cannot use the CA certificate");
            goto fail;
        }
        added++;
    }
    ERR_clear_error(); /* the end of the bundle reads as an error */
    if (added == 0) {
        seterr(err, errlen, "the CA file holds no PEM certificate");
        goto fail;
    }
    ctx = X509_STORE_CTX_new();
    if (ctx == NULL || X509_STORE_CTX_init(ctx, store, x, NULL) != 1 ||
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
        seterr(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    if (X509_verify_cert(ctx) != 1) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "the certificate does not verify against the fleet CA: %s",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        goto fail;
    }
    rc = 0;
fail:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    BIO_free(bio);
    X509_free(x);
    ERR_clear_error();
    return rc;
}

/* A PEM string member of o, at most AGENT_PEM_MAX bytes. */
static const char *pem_member(const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > AGENT_PEM_MAX)
        return NULL;
    return json_string_value(v);
}

int agent_cert_parse_answer(const char *body, size_t len, const char *device_id, char **cert,
                            char **ca, char *err, size_t errlen)
{
    char *c = NULL, *a = NULL;
    int rc = -EINVAL;
    json_t *o = json_util_parse(body, len, NULL, 0);
    if (!json_is_object(o)) {
        seterr(err, errlen, "the answer is not a JSON object");
        goto fail;
    }
    const json_t *id = json_object_get(o, "id");
    if (id != NULL && !(json_is_string(id) && strcmp(json_string_value(id), device_id) == 0)) {
        seterr(err, errlen, "the answer is for another device id");
        goto fail;
    }
    const char *cp = pem_member(o, "certificate");
    const char *ap = pem_member(o, "ca_certificate");
    if (cp == NULL || ap == NULL) {
        seterr(err, errlen, "the answer lacks \"certificate\" or \"ca_certificate\"");
        goto fail;
    }
    c = strdup(cp);
    a = strdup(ap);
    if (c == NULL || a == NULL) {
        seterr(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    *cert = c;
    *ca = a;
    json_decref(o);
    return 0;
fail:
    free(c);
    free(a);
    json_decref(o);
    return rc;
}

void agent_cert_error_detail(const char *body, size_t len, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    out[0] = '\0';
    json_t *o = body != NULL && len > 0 ? json_util_parse(body, len, NULL, 0) : NULL;
    const char *d = json_string_value(json_object_get(o, "detail"));
    if (d == NULL)
        d = json_string_value(json_object_get(o, "error"));
    if (d != NULL) {
        size_t i = 0;
        for (; d[i] != '\0' && i + 1 < outlen; i++)
            out[i] = d[i] >= 0x20 && d[i] < 0x7f ? d[i] : '?';
        out[i] = '\0';
    }
    json_decref(o);
}

static int join(char *buf, size_t len, const char *dir, const char *name)
{
    return (size_t)snprintf(buf, len, "%s/%s", dir, name) >= len ? -ENAMETOOLONG : 0;
}

int agent_cert_install(const char *dir, const char *cert_pem, size_t len)
{
    char key_new[PATH_MAX], key[PATH_MAX], crt_new[PATH_MAX], crt[PATH_MAX];
    if (join(key_new, sizeof(key_new), dir, AGENT_KEY_NEW_FILE) < 0 ||
        join(key, sizeof(key), dir, AGENT_KEY_FILE) < 0 ||
        join(crt_new, sizeof(crt_new), dir, AGENT_CRT_NEW_FILE) < 0 ||
        join(crt, sizeof(crt), dir, AGENT_CRT_FILE) < 0)
        return -ENAMETOOLONG;
    int rc = agent_fs_write_atomic_mode(dir, AGENT_CRT_NEW_FILE, cert_pem, len, true, 0644);
    if (rc < 0)
        return rc;
    /* From here a crash leaves device.crt.new, which agent_cert_recover()
     * matches to whichever key file holds its key. */
    if (rename(key_new, key) < 0) {
        rc = -errno;
        unlink(crt_new);
        return rc;
    }
    if (rename(crt_new, crt) < 0)
        return -errno; /* recover() finishes it at the next start */
    return agent_fs_sync_dir(dir);
}

/* Does the certificate file match the key file? -ENOENT if either is
 * missing. */
static int pair_matches(const char *crt_path, const char *key_path, bool *out)
{
    char *pem = NULL;
    size_t len;
    EVP_PKEY *key = NULL;
    int rc = read_pem_file(crt_path, &pem, &len);
    if (rc < 0)
        return rc;
    rc = agent_cert_key_read(key_path, &key);
    if (rc == 0) {
        X509 *x = parse_cert(pem, len);
        EVP_PKEY *pub = x != NULL ? X509_get0_pubkey(x) : NULL;
        *out = pub != NULL && EVP_PKEY_eq(pub, key) == 1;
        X509_free(x);
    } else if (rc == -EINVAL) {
        *out = false;
        rc = 0;
    }
    EVP_PKEY_free(key);
    free(pem);
    ERR_clear_error();
    return rc;
}

int agent_cert_recover(const char *dir, char *what, size_t whatlen)
{
    char key_new[PATH_MAX], key[PATH_MAX], crt_new[PATH_MAX], crt[PATH_MAX];
    struct stat st;
    bool changed = false, m = false;
    int rc;
    if (whatlen > 0)
        what[0] = '\0';
    if (join(key_new, sizeof(key_new), dir, AGENT_KEY_NEW_FILE) < 0 ||
        join(key, sizeof(key), dir, AGENT_KEY_FILE) < 0 ||
        join(crt_new, sizeof(crt_new), dir, AGENT_CRT_NEW_FILE) < 0 ||
        join(crt, sizeof(crt), dir, AGENT_CRT_FILE) < 0)
        return -ENAMETOOLONG;
    if (stat(crt_new, &st) == 0) {
        rc = pair_matches(crt_new, key_new, &m);
        if (rc < 0 && rc != -ENOENT)
            return rc;
        if (rc == 0 && m) {
            /* Crashed before the first rename: do both. */
            if (rename(key_new, key) < 0 || rename(crt_new, crt) < 0)
                return -errno;
            snprintf(what, whatlen, "finished installing a renewed certificate");
        } else {
            rc = pair_matches(crt_new, key, &m);
            if (rc < 0 && rc != -ENOENT)
                return rc;
            if (rc == 0 && m) {
                /* Crashed between the renames: the key is in place. */
                if (rename(crt_new, crt) < 0)
                    return -errno;
                snprintf(what, whatlen, "finished installing a renewed certificate");
            } else {
                if (unlink(crt_new) < 0 && errno != ENOENT)
                    return -errno;
                snprintf(what, whatlen, "removed a renewed certificate that matches no key");
            }
        }
        changed = true;
    } else if (errno != ENOENT) {
        return -errno;
    }
    if (unlink(key_new) == 0) {
        if (!changed)
            snprintf(what, whatlen, "removed the key of an unfinished renewal");
        changed = true;
    } else if (errno != ENOENT) {
        return -errno;
    }
    return changed ? agent_fs_sync_dir(dir) : 0;
}

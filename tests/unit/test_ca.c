#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "security/ca.h"

/* ---- fixture: a temporary directory with ca.crt / ca.key paths ---- */

typedef struct fx {
    char dir[64];
    char cert[PATH_MAX];
    char key[PATH_MAX];
} fx_t;

static void fx_path(fx_t *f, char *out, const char *name)
{
    snprintf(out, PATH_MAX, "%s/%s", f->dir, name);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/drover-test-ca-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    fx_path(f, f->cert, "ca.crt");
    fx_path(f, f->key, "ca.key");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    DIR *d = opendir(f->dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[PATH_MAX];
            fx_path(f, p, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static ca_t *open_ca(const char *cert, const char *key)
{
    char err[256] = "";
    ca_t *ca = NULL;
    int rc = ca_open(cert, key, true, &ca, err, sizeof(err));
    if (rc != 0)
        print_error("ca_open: %d %s\n", rc, err);
    assert_int_equal(rc, 0);
    assert_non_null(ca);
    return ca;
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static char *read_text(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return strdup(buf);
}

/* ---- OpenSSL helpers for building inputs ---- */

static X509 *pem_x509(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    return x;
}

static char *bio_string(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = malloc((size_t)n + 1);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

/* A PEM CSR for pub, signed by signer (normally the same key), with the
 * given CNs (cn2 may be NULL; cn NULL for none) and, if ask_more, a
 * request for CA:TRUE, a SAN and serverAuth. */
static char *make_csr(EVP_PKEY *pub, EVP_PKEY *signer, const char *cn, const char *cn2,
                      bool ask_more)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Acme", -1, -1, 0);
    if (cn != NULL)
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC, (const unsigned char *)cn,
                                   -1, -1, 0);
    if (cn2 != NULL)
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC, (const unsigned char *)cn2,
                                   -1, -1, 0);
    X509_REQ_set_subject_name(req, name);
    X509_REQ_set_pubkey(req, pub);
    if (ask_more) {
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, NULL, NULL, req, NULL, 0);
        sk_X509_EXTENSION_push(
            exts, X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE"));
        sk_X509_EXTENSION_push(
            exts, X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, "DNS:evil.example"));
        sk_X509_EXTENSION_push(exts,
                               X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage, "serverAuth"));
        assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    assert_true(X509_REQ_sign(req, signer, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(b, req);
    char *s = bio_string(b);
    BIO_free(b);
    X509_NAME_free(name);
    X509_REQ_free(req);
    return s;
}

/* X509_verify_cert of leaf against the CA PEM alone, for purpose: the
 * verify error (X509_V_OK when it verifies). */
static int verify_leaf(const char *ca_pem, X509 *leaf, int purpose)
{
    X509 *ca = pem_x509(ca_pem);
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, ca);
    X509_STORE_CTX *c = X509_STORE_CTX_new();
    X509_STORE_CTX_init(c, st, leaf, NULL);
    X509_STORE_CTX_set_purpose(c, purpose);
    int r = X509_verify_cert(c) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(c);
    assert_true(r != X509_V_OK || X509_STORE_CTX_get_error(c) == X509_V_OK);
    X509_STORE_CTX_free(c);
    X509_STORE_free(st);
    X509_free(ca);
    return r;
}

/* ---- ca_open ---- */

static void test_create_and_reopen(void **state)
{
    fx_t *f = *state;
    ca_t *ca = open_ca(f->cert, f->key);
    assert_int_equal(file_mode(f->key), 0600);
    assert_int_equal(file_mode(f->cert), 0644);
    char tmp[PATH_MAX];
    fx_path(f, tmp, "ca.key.tmp");
    assert_false(file_exists(tmp));

    char *pem = strdup(ca_cert_pem(ca));
    X509 *x = pem_x509(pem);
    assert_int_equal(X509_check_ca(x), 1);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING *kus = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
    assert_non_null(kus);
    assert_int_equal(crit, 1);
    ASN1_BIT_STRING_free(kus);
    assert_int_equal(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_int_equal(X509_get_pathlen(x), 0);
    assert_non_null(X509_get0_subject_key_id(x));
    assert_int_equal(X509_check_issued(x, x), X509_V_OK);
    EVP_PKEY *pk = X509_get0_pubkey(x);
    assert_true(EVP_PKEY_is_a(pk, "EC"));
    assert_int_equal(EVP_PKEY_get_bits(pk), 256);
    char cn[128];
    int64_t nb, na;
    assert_int_equal(ca_cert_info(pem, strlen(pem), NULL, 0, cn, sizeof(cn), &nb, &na), 0);
    assert_memory_equal(cn, "Drover fleet CA ", 16);
    assert_int_equal(strlen(cn), 16 + 8);
    int64_t years = (na - nb) / 1000 / 86400 / 365;
    assert_int_equal(years, 10);
    X509_free(x);
    ca_free(ca);

    /* Reopening loads the same CA rather than making a new one. */
    ca = open_ca(f->cert, f->key);
    assert_string_equal(ca_cert_pem(ca), pem);
    ca_free(ca);
    char err[256];
    assert_int_equal(ca_open(f->cert, f->key, false, &ca, err, sizeof(err)), 0);
    assert_string_equal(ca_cert_pem(ca), pem);
    ca_free(ca);
    free(pem);
}

static void test_open_missing(void **state)
{
    fx_t *f = *state;
    ca_t *ca = (ca_t *)0x1;
    char err[256] = "";
    assert_int_equal(ca_open(f->cert, f->key, false, &ca, err, sizeof(err)), -ENOENT);
    assert_ptr_equal(ca, (ca_t *)0x1);
    assert_false(file_exists(f->key));
    /* A directory that does not exist: creating fails cleanly. */
    char cert[PATH_MAX], key[PATH_MAX];
    fx_path(f, cert, "nodir/ca.crt");
    fx_path(f, key, "nodir/ca.key");
    assert_int_equal(ca_open(cert, key, true, &ca, err, sizeof(err)), -ENOENT);
    assert_ptr_equal(ca, (ca_t *)0x1);
}

static void test_one_file_missing(void **state)
{
    fx_t *f = *state;
    ca_free(open_ca(f->cert, f->key));
    char *keytext = read_text(f->key);
    char *certtext = read_text(f->cert);
    ca_t *ca = NULL;
    char err[256] = "";

    /* Certificate without key: refused, and no key appears. */
    assert_int_equal(unlink(f->key), 0);
    assert_int_equal(ca_open(f->cert, f->key, true, &ca, err, sizeof(err)), -EINVAL);
    assert_null(ca);
    assert_non_null(strstr(err, "refusing"));
    assert_false(file_exists(f->key));
    char *after = read_text(f->cert);
    assert_string_equal(after, certtext);
    free(after);

    /* Key without certificate: refused, and the key is left alone. */
    FILE *fp = fopen(f->key, "w");
    fputs(keytext, fp);
    fclose(fp);
    chmod(f->key, 0600);
    assert_int_equal(unlink(f->cert), 0);
    assert_int_equal(ca_open(f->cert, f->key, true, &ca, err, sizeof(err)), -EINVAL);
    assert_null(ca);
    assert_false(file_exists(f->cert));
    after = read_text(f->key);
    assert_string_equal(after, keytext);
    free(after);
    free(keytext);
    free(certtext);
}

static void test_mismatched_key(void **state)
{
    fx_t *f = *state;
    char cert2[PATH_MAX], key2[PATH_MAX];
    fx_path(f, cert2, "other.crt");
    fx_path(f, key2, "other.key");
    ca_free(open_ca(f->cert, f->key));
    ca_free(open_ca(cert2, key2));
    ca_t *ca = NULL;
    char err[256] = "";
    assert_int_equal(ca_open(f->cert, key2, true, &ca, err, sizeof(err)), -EINVAL);
    assert_null(ca);
    assert_non_null(strstr(err, "does not match"));
}

static void test_key_mode_refused(void **state)
{
    fx_t *f = *state;
    ca_free(open_ca(f->cert, f->key));
    ca_t *ca = NULL;
    char err[256] = "";
    assert_int_equal(chmod(f->key, 0640), 0);
    assert_int_equal(ca_open(f->cert, f->key, true, &ca, err, sizeof(err)), -EINVAL);
    assert_null(ca);
    assert_non_null(strstr(err, "chmod 600"));
    assert_int_equal(chmod(f->key, 0604), 0);
    assert_int_equal(ca_open(f->cert, f->key, true, &ca, err, sizeof(err)), -EINVAL);
    assert_int_equal(chmod(f->key, 0400), 0);
    ca_free(open_ca(f->cert, f->key));
}

static void test_invalid_files(void **state)
{
    fx_t *f = *state;
    ca_t *ca = open_ca(f->cert, f->key);
    char srv_cert[PATH_MAX], srv_key[PATH_MAX];
    fx_path(f, srv_cert, "srv.crt");
    fx_path(f, srv_key, "srv.key");
    const char *dns[] = {"localhost"};
    char err[256] = "";
    assert_int_equal(
        ca_issue_server(ca, dns, 1, NULL, 0, 3600, srv_cert, srv_key, err, sizeof(err)), 0);
    ca_free(ca);
    ca = NULL;

    /* A matching key and certificate that are not a CA. */
    assert_int_equal(ca_open(srv_cert, srv_key, true, &ca, err, sizeof(err)), -EINVAL);
    assert_null(ca);
    assert_non_null(strstr(err, "not a CA"));

    /* Garbage in the certificate file. */
    FILE *fp = fopen(f->cert, "w");
    fputs("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", fp);
    fclose(fp);
    assert_int_equal(ca_open(f->cert, f->key, true, &ca, err, sizeof(err)), -EINVAL);
    assert_null(ca);

    /* An encrypted key fails without prompting. */
    BIO *b = BIO_new_file(f->key, "r");
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(k);
    b = BIO_new_file(f->key, "w");
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, k, EVP_aes_256_cbc(), "pw", 2, NULL, NULL),
                     1);
    BIO_free(b);
    EVP_PKEY_free(k);
    assert_int_equal(ca_open(f->cert, f->key, true, &ca, err, sizeof(err)), -EINVAL);
    assert_null(ca);
}

/* ---- ca_sign_csr ---- */

static void check_issued(const ca_t *ca, const ca_issued_t *is, const char *id, bool ec)
{
    X509 *x = pem_x509(is->pem);
    char cn[128], serial[80];
    int64_t nb, na;
    assert_int_equal(
        ca_cert_info(is->pem, strlen(is->pem), serial, sizeof(serial), cn, sizeof(cn), &nb, &na),
        0);
    assert_string_equal(cn, id);
    assert_string_equal(serial, is->serial);
    assert_int_equal(nb, is->not_before);
    assert_int_equal(na, is->not_after);
    /* 128 random bits: at most 32 upper-case hex digits. */
    assert_true(strlen(serial) >= 20 && strlen(serial) <= 32);
    for (const char *p = serial; *p; p++)
        assert_true((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F'));
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_int_equal(X509_check_ca(x), 0);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(bc->ca, 0);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING *kus = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
    assert_non_null(kus);
    assert_int_equal(crit, 1);
    ASN1_BIT_STRING_free(kus);
    uint32_t ku = X509_get_key_usage(x);
    assert_int_equal(ku, KU_DIGITAL_SIGNATURE | (ec ? KU_KEY_AGREEMENT : KU_KEY_ENCIPHERMENT));
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
    assert_non_null(X509_get0_subject_key_id(x));
    assert_non_null(X509_get0_authority_key_id(x));
    assert_int_equal(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), -1);
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256); /* the CA's key */
    assert_int_equal(verify_leaf(ca_cert_pem(ca), x, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
    /* A client certificate is no server certificate. */
    assert_int_equal(verify_leaf(ca_cert_pem(ca), x, X509_PURPOSE_SSL_SERVER),
                     X509_V_ERR_INVALID_PURPOSE);
    X509_free(x);
}

static void sign_with(void **state, EVP_PKEY *k, bool ec)
{
    fx_t *f = *state;
    ca_t *ca = open_ca(f->cert, f->key);
    char *csr = make_csr(k, k, "dev-42", NULL, false);
    ca_issued_t is;
    char err[256] = "";
    int rc = ca_sign_csr(ca, csr, strlen(csr), "dev-42", 86400, &is, err, sizeof(err));
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    check_issued(ca, &is, "dev-42", ec);

    /* A second certificate for the same CSR has a fresh serial. */
    ca_issued_t is2;
    assert_int_equal(ca_sign_csr(ca, csr, strlen(csr), "dev-42", 86400, &is2, err, sizeof(err)), 0);
    assert_string_not_equal(is.serial, is2.serial);
    ca_issued_fini(&is2);
    ca_issued_fini(&is);
    assert_null(is.pem);
    ca_issued_fini(NULL);
    free(csr);
    ca_free(ca);
}

static void test_sign_ec(void **state)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    sign_with(state, k, true);
    EVP_PKEY_free(k);
    k = EVP_EC_gen("P-384");
    sign_with(state, k, true);
    EVP_PKEY_free(k);
}

static void test_sign_rsa(void **state)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);
    assert_non_null(k);
    sign_with(state, k, false);
    EVP_PKEY_free(k);
}

static void expect_refused(ca_t *ca, const char *csr, size_t len, const char *id, int64_t life,
                           int want)
{
    ca_issued_t is = {.serial = "untouched", .pem = NULL};
    char err[256] = "";
    assert_int_equal(ca_sign_csr(ca, csr, len, id, life, &is, err, sizeof(err)), want);
    assert_string_equal(is.serial, "untouched");
    assert_null(is.pem);
    assert_true(err[0] != '\0');
}

static void test_sign_refusals(void **state)
{
    fx_t *f = *state;
    ca_t *ca = open_ca(f->cert, f->key);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    EVP_PKEY *other = EVP_EC_gen("P-256");

    char *csr = make_csr(k, k, "dev-42", NULL, false);
    expect_refused(ca, csr, strlen(csr), "dev-43", 3600, -EPERM);
    expect_refused(ca, csr, strlen(csr), "dev-4", 3600, -EPERM);
    expect_refused(ca, csr, strlen(csr), "DEV-42", 3600, -EPERM);
    expect_refused(ca, csr, strlen(csr), "dev-42", 0, -EINVAL);
    expect_refused(ca, csr, strlen(csr), "dev/42", 3600, -EINVAL);
    expect_refused(ca, csr, 0, "dev-42", 3600, -EINVAL);
    expect_refused(ca, csr, strlen(csr) / 2, "dev-42", 3600, -EINVAL);
    free(csr);

    /* Two CNs, one of them right: ambiguous, refused. */
    csr = make_csr(k, k, "dev-42", "dev-42", false);
    expect_refused(ca, csr, strlen(csr), "dev-42", 3600, -EPERM);
    free(csr);
    csr = make_csr(k, k, NULL, NULL, false);
    expect_refused(ca, csr, strlen(csr), "dev-42", 3600, -EPERM);
    free(csr);

    /* Signed by a key other than the one it carries: no proof of possession. */
    csr = make_csr(k, other, "dev-42", NULL, false);
    expect_refused(ca, csr, strlen(csr), "dev-42", 3600, -EINVAL);
    free(csr);

    /* Weak or unsupported keys. */
    EVP_PKEY *rsa1024 = EVP_RSA_gen(1024);
    assert_non_null(rsa1024);
    csr = make_csr(rsa1024, rsa1024, "dev-42", NULL, false);
    expect_refused(ca, csr, strlen(csr), "dev-42", 3600, -EINVAL);
    free(csr);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY *p224 = EVP_EC_gen("P-224");
    assert_non_null(p224);
    csr = make_csr(p224, p224, "dev-42", NULL, false);
    expect_refused(ca, csr, strlen(csr), "dev-42", 3600, -EINVAL);
    free(csr);
    EVP_PKEY_free(p224);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(ed);
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_REQ_get_subject_name(req);
    X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC, (const unsigned char *)"dev-42",
                               -1, -1, 0);
    X509_REQ_set_pubkey(req, ed);
    assert_true(X509_REQ_sign(req, ed, NULL) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(b, req);
    csr = bio_string(b);
    BIO_free(b);
    X509_REQ_free(req);
    expect_refused(ca, csr, strlen(csr), "dev-42", 3600, -EINVAL);
    free(csr);
    EVP_PKEY_free(ed);

    /* Garbage and oversize input. */
    const char *junk = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE "
                       "REQUEST-----\n";
    expect_refused(ca, junk, strlen(junk), "dev-42", 3600, -EINVAL);
    expect_refused(ca, "hello", 5, "dev-42", 3600, -EINVAL);
    size_t big = 16385;
    char *huge = malloc(big);
    memset(huge, 'A', big);
    expect_refused(ca, huge, big, "dev-42", 3600, -EINVAL);
    free(huge);

    EVP_PKEY_free(other);
    EVP_PKEY_free(k);
    ca_free(ca);
}

static void test_sign_ignores_csr_extensions(void **state)
{
    fx_t *f = *state;
    ca_t *ca = open_ca(f->cert, f->key);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    char *csr = make_csr(k, k, "dev-42", NULL, true);
    ca_issued_t is;
    char err[256] = "";
    assert_int_equal(ca_sign_csr(ca, csr, strlen(csr), "dev-42", 3600, &is, err, sizeof(err)), 0);
    /* CA:FALSE, no SAN, clientAuth only: the CSR asked for none of it. */
    check_issued(ca, &is, "dev-42", true);
    X509 *x = pem_x509(is.pem);
    X509_NAME *subject = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_entry_count(subject), 1); /* the CSR's O= is not copied */
    X509_free(x);
    ca_issued_fini(&is);
    free(csr);
    EVP_PKEY_free(k);
    ca_free(ca);
}

static void test_lifetime(void **state)
{
    fx_t *f = *state;
    ca_t *ca = open_ca(f->cert, f->key);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    char *csr = make_csr(k, k, "dev-1", NULL, false);
    ca_issued_t is;
    char err[256] = "";
    int64_t before = (int64_t)time(NULL) * 1000;
    assert_int_equal(ca_sign_csr(ca, csr, strlen(csr), "dev-1", 7200, &is, err, sizeof(err)), 0);
    int64_t after = (int64_t)time(NULL) * 1000;
    assert_true(is.not_before >= before - 60000 && is.not_before <= after - 60000);
    assert_int_equal(is.not_after - is.not_before, (7200 + 60) * 1000LL);
    X509 *x = pem_x509(is.pem);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), (time_t)(is.not_after / 1000)), 0);
    X509_free(x);
    ca_issued_fini(&is);

    /* Asking for more than the CA has left gets the CA's expiry. */
    char *capem = strdup(ca_cert_pem(ca));
    int64_t ca_na;
    assert_int_equal(ca_cert_info(capem, strlen(capem), NULL, 0, NULL, 0, NULL, &ca_na), 0);
    assert_int_equal(
        ca_sign_csr(ca, csr, strlen(csr), "dev-1", 50LL * 365 * 86400, &is, err, sizeof(err)), 0);
    assert_int_equal(is.not_after, ca_na);
    ca_issued_fini(&is);
    assert_int_equal(ca_sign_csr(ca, csr, strlen(csr), "dev-1", INT64_MAX, &is, err, sizeof(err)),
                     0);
    assert_int_equal(is.not_after, ca_na);
    ca_issued_fini(&is);
    free(capem);
    free(csr);
    EVP_PKEY_free(k);
    ca_free(ca);
}

/* ---- ca_cert_info ---- */

static void test_cert_info(void **state)
{
    fx_t *f = *state;
    ca_t *ca = open_ca(f->cert, f->key);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    char *csr = make_csr(k, k, "sensor.7", NULL, false);
    ca_issued_t is;
    char err[256] = "";
    assert_int_equal(ca_sign_csr(ca, csr, strlen(csr), "sensor.7", 600, &is, err, sizeof(err)), 0);
    char serial[80] = "x", cn[65] = "x";
    int64_t nb = 1, na = 1;
    assert_int_equal(
        ca_cert_info(is.pem, strlen(is.pem), serial, sizeof(serial), NULL, 0, NULL, NULL), 0);
    assert_string_equal(serial, is.serial);
    assert_int_equal(ca_cert_info(is.pem, strlen(is.pem), NULL, 0, cn, sizeof(cn), &nb, &na), 0);
    assert_string_equal(cn, "sensor.7");
    assert_int_equal(na - nb, 660000);

    /* Too-small buffers: an error, and nothing written. */
    char small[4] = "abc";
    assert_int_equal(
        ca_cert_info(is.pem, strlen(is.pem), small, sizeof(small), NULL, 0, NULL, NULL), -ENOSPC);
    assert_string_equal(small, "abc");
    assert_int_equal(
        ca_cert_info(is.pem, strlen(is.pem), NULL, 0, small, sizeof(small), NULL, NULL), -ENOSPC);
    assert_string_equal(small, "abc");

    /* Garbage and a CSR are not certificates. */
    int64_t untouched = 7;
    assert_int_equal(ca_cert_info("junk", 4, NULL, 0, NULL, 0, &untouched, NULL), -EINVAL);
    assert_int_equal(untouched, 7);
    assert_int_equal(ca_cert_info(csr, strlen(csr), NULL, 0, NULL, 0, NULL, NULL), -EINVAL);
    assert_int_equal(ca_cert_info(is.pem, 0, NULL, 0, NULL, 0, NULL, NULL), -EINVAL);
    ca_issued_fini(&is);
    free(csr);
    EVP_PKEY_free(k);
    ca_free(ca);
}

/* ---- ca_issue_server ---- */

static void test_issue_server(void **state)
{
    fx_t *f = *state;
    ca_t *ca = open_ca(f->cert, f->key);
    char cert[PATH_MAX], key[PATH_MAX];
    fx_path(f, cert, "server.crt");
    fx_path(f, key, "server.key");
    const char *dns[] = {"localhost", "drover.example.com"};
    const char *ips[] = {"127.0.0.1", "::1"};
    char err[256] = "";
    int rc = ca_issue_server(ca, dns, 2, ips, 2, 86400, cert, key, err, sizeof(err));
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(file_mode(key), 0600);
    assert_int_equal(file_mode(cert), 0644);

    char *pem = read_text(cert);
    X509 *x = pem_x509(pem);
    assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "drover.example.com", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "evil.example.com", 0, 0, NULL), 0);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "10.0.0.1", 0), 0);
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 4);
    GENERAL_NAMES_free(gens);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER);
    assert_int_equal(X509_check_ca(x), 0);
    assert_int_equal(verify_leaf(ca_cert_pem(ca), x, X509_PURPOSE_SSL_SERVER), X509_V_OK);
    assert_int_equal(verify_leaf(ca_cert_pem(ca), x, X509_PURPOSE_SSL_CLIENT),
                     X509_V_ERR_INVALID_PURPOSE);

    /* The key on disk is the certificate's. */
    BIO *b = BIO_new_file(key, "r");
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(k);
    assert_int_equal(X509_check_private_key(x, k), 1);
    assert_true(EVP_PKEY_is_a(k, "EC"));
    EVP_PKEY_free(k);
    X509_free(x);

    /* Reissuing replaces both files. */
    const char *ip4[] = {"192.0.2.1"};
    assert_int_equal(ca_issue_server(ca, NULL, 0, ip4, 1, 3600, cert, key, err, sizeof(err)), 0);
    char *pem2 = read_text(cert);
    assert_string_not_equal(pem, pem2);
    x = pem_x509(pem2);
    assert_int_equal(X509_check_ip_asc(x, "192.0.2.1", 0), 1);
    X509_free(x);
    free(pem2);

    /* Bad names change nothing on disk. */
    const char *bad_dns[] = {"a.example,DNS:evil.example"};
    const char *bad_ip[] = {"300.1.2.3"};
    const char *empty[] = {""};
    assert_int_equal(ca_issue_server(ca, bad_dns, 1, NULL, 0, 3600, cert, key, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(ca_issue_server(ca, NULL, 0, bad_ip, 1, 3600, cert, key, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(ca_issue_server(ca, empty, 1, NULL, 0, 3600, cert, key, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(ca_issue_server(ca, NULL, 0, NULL, 0, 3600, cert, key, err, sizeof(err)),
                     -EINVAL);
    pem2 = read_text(cert);
    x = pem_x509(pem2);
    assert_int_equal(X509_check_ip_asc(x, "192.0.2.1", 0), 1);
    X509_free(x);
    free(pem2);
    char tmp[PATH_MAX];
    fx_path(f, tmp, "server.key.tmp");
    assert_false(file_exists(tmp));
    free(pem);
    ca_free(ca);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_file_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatched_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_mode_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_ec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_rsa, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_ignores_csr_extensions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifetime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_server, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

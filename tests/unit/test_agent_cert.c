/* drover-agent certificates: key and CSR generation, the key file's mode,
 * the provisioning answer, the renewal-due rule, the checks on an issued
 * certificate, and installing a renewed pair (with crash recovery). A
 * small CA made here signs the test certificates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "agent_cert.h"
#include "agent_fs.h"

/* ---------------------------------------------------------------- helpers */

static char *mkdtemp_dir(void)
{
    char *d = strdup("/tmp/drover-agent-cert-XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_dir(char *d)
{
    const char *names[] = {AGENT_KEY_FILE,     AGENT_CRT_FILE,   AGENT_CA_FILE, AGENT_KEY_NEW_FILE,
                           AGENT_CRT_NEW_FILE, "device.key.tmp", "other.crt",   "f.txt"};
    char p[512];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", d, names[i]);
        unlink(p);
    }
    rmdir(d);
    free(d);
}

static bool exists(const char *dir, const char *name)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

static unsigned file_mode(const char *dir, const char *name)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    assert_int_equal(stat(p, &st), 0);
    return (unsigned)(st.st_mode & 0777);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    assert_int_equal(agent_fs_write_atomic_mode(dir, name, text, strlen(text), false, 0644), 0);
}

static EVP_PKEY *read_key(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    EVP_PKEY *k = NULL;
    assert_int_equal(agent_cert_key_read(p, &k), 0);
    return k;
}

static char *read_text(const char *dir, const char *name)
{
    char p[512], *t = NULL;
    size_t n;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    assert_int_equal(agent_fs_read(p, 1 << 20, &t, &n), 0);
    return t;
}

static char *x509_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A test CA: key and self-signed certificate. */
typedef struct {
    EVP_PKEY *key;
    X509 *cert;
    char *pem;
} test_ca_t;

static void ca_make(test_ca_t *ca, const char *name)
{
    assert_int_equal(agent_cert_keygen(&ca->key), 0);
    ca->cert = X509_new();
    assert_non_null(ca->cert);
    X509_set_version(ca->cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(ca->cert), 1);
    X509_NAME *n = X509_get_subject_name(ca->cert);
    X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (const unsigned char *)name, -1,
                               -1, 0);
    X509_set_issuer_name(ca->cert, n);
    X509_gmtime_adj(X509_getm_notBefore(ca->cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(ca->cert), 86400L * 365);
    X509_set_pubkey(ca->cert, ca->key);
    add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash");
    assert_true(X509_sign(ca->cert, ca->key, EVP_sha256()) > 0);
    ca->pem = x509_pem(ca->cert);
}

static void ca_free(test_ca_t *ca)
{
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    free(ca->pem);
}

/* Signs csr_pem as the server would (CN from the CSR, clientAuth); the
 * validity is [now + nb_off, now + na_off]. */
static char *ca_sign(test_ca_t *ca, const char *csr_pem, long nb_off, long na_off)
{
    BIO *b = BIO_new_mem_buf(csr_pem, -1);
    X509_REQ *req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(req);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL) & 0xffffff);
    X509_set_subject_name(x, X509_REQ_get_subject_name(req));
    X509_set_issuer_name(x, X509_get_subject_name(ca->cert));
    X509_gmtime_adj(X509_getm_notBefore(x), nb_off);
    X509_gmtime_adj(X509_getm_notAfter(x), na_off);
    X509_set_pubkey(x, X509_REQ_get0_pubkey(req));
    add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature");
    add_ext(x, ca->cert, NID_ext_key_usage, "clientAuth");
    add_ext(x, ca->cert, NID_authority_key_identifier, "keyid");
    assert_true(X509_sign(x, ca->key, EVP_sha256()) > 0);
    char *pem = x509_pem(x);
    X509_free(x);
    X509_REQ_free(req);
    return pem;
}

/* A key and a certificate for it with CN = cn. */
static char *make_cert(test_ca_t *ca, EVP_PKEY *key, const char *cn)
{
    char *csr = NULL;
    assert_int_equal(agent_cert_csr(key, cn, &csr), 0);
    char *pem = ca_sign(ca, csr, -60, 86400);
    free(csr);
    return pem;
}

/* ---------------------------------------------------------------- tests */

static void test_csr(void **state)
{
    (void)state;
    EVP_PKEY *key = NULL;
    assert_int_equal(agent_cert_keygen(&key), 0);
    assert_int_equal(EVP_PKEY_get_base_id(key), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_bits(key), 256);
    char *csr = NULL;
    assert_int_equal(agent_cert_csr(key, "pump-0042", &csr), 0);
    assert_non_null(strstr(csr, "-----BEGIN CERTIFICATE REQUEST-----"));

    BIO *b = BIO_new_mem_buf(csr, -1);
    X509_REQ *req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(req);
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    assert_int_equal(X509_REQ_verify(req, pub), 1);
    assert_int_equal(EVP_PKEY_eq(pub, key), 1);
    X509_NAME *n = X509_REQ_get_subject_name(req);
    assert_int_equal(X509_NAME_entry_count(n), 1);
    char cn[128];
    assert_int_equal(X509_NAME_get_text_by_NID(n, NID_commonName, cn, sizeof(cn)), 9);
    assert_string_equal(cn, "pump-0042");
    assert_int_equal(X509_REQ_get_signature_nid(req), NID_ecdsa_with_SHA256);
    X509_REQ_free(req);
    free(csr);

    /* Two keys are never the same. */
    EVP_PKEY *k2 = NULL;
    assert_int_equal(agent_cert_keygen(&k2), 0);
    assert_int_not_equal(EVP_PKEY_eq(key, k2), 1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(key);
}

static void test_key_file(void **state)
{
    (void)state;
    char *dir = mkdtemp_dir();
    EVP_PKEY *key = NULL;
    assert_int_equal(agent_cert_keygen(&key), 0);

    /* 0600 whatever the umask, even over a stale world-readable temp. */
    mode_t old = umask(0);
    char stale[512];
    snprintf(stale, sizeof(stale), "%s/device.key.tmp", dir);
    int fd = open(stale, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "junk", 4), 4);
    close(fd);
    assert_int_equal(agent_cert_key_write(dir, AGENT_KEY_FILE, key), 0);
    umask(old);
    assert_int_equal(file_mode(dir, AGENT_KEY_FILE), 0600);
    assert_false(exists(dir, "device.key.tmp"));

    EVP_PKEY *back = read_key(dir, AGENT_KEY_FILE);
    assert_int_equal(EVP_PKEY_eq(back, key), 1);
    EVP_PKEY_free(back);
    char *text = read_text(dir, AGENT_KEY_FILE);
    assert_non_null(strstr(text, "-----BEGIN PRIVATE KEY-----"));
    free(text);

    /* Certificates are public: 0644 even under umask 077. */
    old = umask(077);
    write_file(dir, AGENT_CRT_FILE, "x\n");
    umask(old);
    assert_int_equal(file_mode(dir, AGENT_CRT_FILE), 0644);

    /* Not a key. */
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, AGENT_CRT_FILE);
    EVP_PKEY *k = NULL;
    assert_int_equal(agent_cert_key_read(p, &k), -EINVAL);
    snprintf(p, sizeof(p), "%s/nothing", dir);
    assert_int_equal(agent_cert_key_read(p, &k), -ENOENT);
    assert_null(k);
    EVP_PKEY_free(key);
    rm_dir(dir);
}

static void test_parse_answer(void **state)
{
    (void)state;
    char *cert = NULL, *ca = NULL, err[256];
    const char *good = "{\"id\": \"d1\", \"certificate\": \"CERT PEM\", \"ca_certificate\": "
                       "\"CA PEM\", \"serial\": \"AB\", \"not_after\": 1}";
    assert_int_equal(
        agent_cert_parse_answer(good, strlen(good), "d1", &cert, &ca, err, sizeof(err)), 0);
    assert_string_equal(cert, "CERT PEM");
    assert_string_equal(ca, "CA PEM");
    free(cert);
    free(ca);
    cert = ca = NULL;

    /* The renewal message has no id: fine. */
    const char *noid = "{\"certificate\": \"C\", \"ca_certificate\": \"A\"}";
    assert_int_equal(
        agent_cert_parse_answer(noid, strlen(noid), "d1", &cert, &ca, err, sizeof(err)), 0);
    free(cert);
    free(ca);
    cert = ca = NULL;

    const char *bad[] = {
        "{\"id\": \"d2\", \"certificate\": \"C\", \"ca_certificate\": \"A\"}", /* other id */
        "{\"id\": 7, \"certificate\": \"C\", \"ca_certificate\": \"A\"}",
        "{\"certificate\": \"C\"}",
        "{\"ca_certificate\": \"A\"}",
        "{\"certificate\": 1, \"ca_certificate\": \"A\"}",
        "{\"certificate\": \"\", \"ca_certificate\": \"A\"}",
        "[\"certificate\"]",
        "not json",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(
            agent_cert_parse_answer(bad[i], strlen(bad[i]), "d1", &cert, &ca, err, sizeof(err)),
            -EINVAL);
        assert_null(cert);
        assert_null(ca);
        assert_true(strlen(err) > 0);
    }

    /* A PEM over the cap. */
    size_t big = AGENT_PEM_MAX + 10;
    char *huge = malloc(big + 100);
    int n = snprintf(huge, 100, "{\"ca_certificate\": \"A\", \"certificate\": \"");
    memset(huge + n, 'x', big);
    snprintf(huge + n + big, 100, "\"}");
    assert_int_equal(
        agent_cert_parse_answer(huge, strlen(huge), "d1", &cert, &ca, err, sizeof(err)), -EINVAL);
    free(huge);

    /* Error details for logs: printable, cut to size. */
    char detail[16];
    const char *e = "{\"error\": \"unauthorized\", \"detail\": \"unknown\\ttoken and more\"}";
    agent_cert_error_detail(e, strlen(e), detail, sizeof(detail));
    assert_string_equal(detail, "unknown?token a");
    const char *e2 = "{\"error\": \"forbidden\"}";
    agent_cert_error_detail(e2, strlen(e2), detail, sizeof(detail));
    assert_string_equal(detail, "forbidden");
    agent_cert_error_detail("<html>", 6, detail, sizeof(detail));
    assert_string_equal(detail, "");
    agent_cert_error_detail(NULL, 0, detail, sizeof(detail));
    assert_string_equal(detail, "");
}

static void test_renew_due(void **state)
{
    (void)state;
    /* Lifetime 100 s from 1000: with 0.3, due when less than 30 s are left. */
    assert_false(agent_cert_renew_due(1000, 1100, 1000, 0.3));
    assert_false(agent_cert_renew_due(1000, 1100, 1069, 0.3));
    assert_false(agent_cert_renew_due(1000, 1100, 1070, 0.3)); /* exactly 30 left */
    assert_true(agent_cert_renew_due(1000, 1100, 1071, 0.3));
    assert_true(agent_cert_renew_due(1000, 1100, 1100, 0.3)); /* expired */
    assert_true(agent_cert_renew_due(1000, 1100, 5000, 0.3));
    /* A clock before notBefore: nothing is due. */
    assert_false(agent_cert_renew_due(1000, 1100, 10, 0.3));
    /* 1.0 forces a renewal at once, even on a brand-new certificate. */
    assert_true(agent_cert_renew_due(1000, 1100, 1000, 1.0));
    assert_true(agent_cert_renew_due(1000, 1100, 10, 1.0));
    /* No lifetime at all. */
    assert_true(agent_cert_renew_due(1000, 1000, 900, 0.3));
    assert_true(agent_cert_renew_due(1000, 900, 900, 0.3));
    /* 90 days, renew_before 0.3: due 27 days before the end. */
    int64_t nb = 1700000000, day = 86400, na = nb + 90 * day;
    assert_false(agent_cert_renew_due(nb, na, na - 28 * day, 0.3));
    assert_true(agent_cert_renew_due(nb, na, na - 26 * day, 0.3));
    /* Extremes do not overflow. */
    assert_false(agent_cert_renew_due(0, INT64_MAX, 1, 0.3));
    assert_true(agent_cert_renew_due(INT64_MIN, INT64_MAX, INT64_MAX - 1, 0.3));
}

static void test_check(void **state)
{
    (void)state;
    test_ca_t ca, other;
    ca_make(&ca, "fleet CA");
    ca_make(&other, "another CA");
    EVP_PKEY *key = NULL, *key2 = NULL;
    assert_int_equal(agent_cert_keygen(&key), 0);
    assert_int_equal(agent_cert_keygen(&key2), 0);
    char err[256];

    char *pem = make_cert(&ca, key, "dev-1");
    assert_int_equal(
        agent_cert_check(pem, strlen(pem), key, "dev-1", ca.pem, strlen(ca.pem), err, sizeof(err)),
        0);
    /* A bundle with the CA among others. */
    size_t bl = strlen(other.pem) + strlen(ca.pem) + 1;
    char *bundle = malloc(bl);
    snprintf(bundle, bl, "%s%s", other.pem, ca.pem);
    assert_int_equal(
        agent_cert_check(pem, strlen(pem), key, "dev-1", bundle, strlen(bundle), err, sizeof(err)),
        0);
    free(bundle);

    /* Not our key. */
    assert_int_equal(
        agent_cert_check(pem, strlen(pem), key2, "dev-1", ca.pem, strlen(ca.pem), err, sizeof(err)),
        -EKEYREJECTED);
    /* Not our id. */
    assert_int_equal(
        agent_cert_check(pem, strlen(pem), key, "dev-2", ca.pem, strlen(ca.pem), err, sizeof(err)),
        -EPERM);
    /* Another CA. */
    assert_int_equal(agent_cert_check(pem, strlen(pem), key, "dev-1", other.pem, strlen(other.pem),
                                      err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "fleet CA"));
    /* No CA, garbage CA, garbage certificate. */
    assert_int_equal(agent_cert_check(pem, strlen(pem), key, "dev-1", "", 0, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(agent_cert_check(pem, strlen(pem), key, "dev-1", "junk", 4, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(
        agent_cert_check("junk", 4, key, "dev-1", ca.pem, strlen(ca.pem), err, sizeof(err)),
        -EINVAL);

    /* Expired, or not yet valid. */
    char *csr = NULL;
    assert_int_equal(agent_cert_csr(key, "dev-1", &csr), 0);
    char *old = ca_sign(&ca, csr, -7200, -3600);
    assert_int_equal(
        agent_cert_check(old, strlen(old), key, "dev-1", ca.pem, strlen(ca.pem), err, sizeof(err)),
        -EINVAL);
    char *future = ca_sign(&ca, csr, 3600, 7200);
    assert_int_equal(agent_cert_check(future, strlen(future), key, "dev-1", ca.pem, strlen(ca.pem),
                                      err, sizeof(err)),
                     -EINVAL);

    /* What the certificate says. */
    agent_cert_info_t info;
    assert_int_equal(agent_cert_info(pem, strlen(pem), &info), 0);
    assert_string_equal(info.cn, "dev-1");
    int64_t now = (int64_t)time(NULL);
    assert_true(info.not_before <= now - 50 && info.not_before >= now - 70);
    assert_true(info.not_after >= now + 86390 && info.not_after <= now + 86410);
    assert_int_equal(agent_cert_info("junk", 4, &info), -EINVAL);

    free(csr);
    free(old);
    free(future);
    free(pem);
    EVP_PKEY_free(key);
    EVP_PKEY_free(key2);
    ca_free(&ca);
    ca_free(&other);
}

/* dir holds pair A (device.key, device.crt); returns B's key in
 * device.key.new and B's certificate. */
static char *setup_pair(test_ca_t *ca, const char *dir, EVP_PKEY **a, EVP_PKEY **b, char **a_pem)
{
    assert_int_equal(agent_cert_keygen(a), 0);
    assert_int_equal(agent_cert_keygen(b), 0);
    assert_int_equal(agent_cert_key_write(dir, AGENT_KEY_FILE, *a), 0);
    *a_pem = make_cert(ca, *a, "dev-1");
    write_file(dir, AGENT_CRT_FILE, *a_pem);
    assert_int_equal(agent_cert_key_write(dir, AGENT_KEY_NEW_FILE, *b), 0);
    return make_cert(ca, *b, "dev-1");
}

static void assert_pair(const char *dir, EVP_PKEY *want_key, const char *want_pem)
{
    EVP_PKEY *k = read_key(dir, AGENT_KEY_FILE);
    assert_int_equal(EVP_PKEY_eq(k, want_key), 1);
    EVP_PKEY_free(k);
    char *t = read_text(dir, AGENT_CRT_FILE);
    assert_string_equal(t, want_pem);
    free(t);
    assert_int_equal(file_mode(dir, AGENT_KEY_FILE), 0600);
    assert_false(exists(dir, AGENT_KEY_NEW_FILE));
    assert_false(exists(dir, AGENT_CRT_NEW_FILE));
}

static void test_install_and_recover(void **state)
{
    (void)state;
    test_ca_t ca;
    ca_make(&ca, "fleet CA");
    char what[128];

    /* A normal install. */
    char *dir = mkdtemp_dir();
    EVP_PKEY *a, *b;
    char *a_pem;
    char *b_pem = setup_pair(&ca, dir, &a, &b, &a_pem);
    assert_int_equal(agent_cert_install(dir, b_pem, strlen(b_pem)), 0);
    assert_pair(dir, b, b_pem);
    assert_int_equal(file_mode(dir, AGENT_CRT_FILE), 0644);
    assert_int_equal(agent_cert_recover(dir, what, sizeof(what)), 0);
    assert_string_equal(what, "");
    assert_pair(dir, b, b_pem);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    free(a_pem);
    free(b_pem);
    rm_dir(dir);

    /* Crash before the first rename: both are done at start. */
    dir = mkdtemp_dir();
    b_pem = setup_pair(&ca, dir, &a, &b, &a_pem);
    write_file(dir, AGENT_CRT_NEW_FILE, b_pem);
    assert_int_equal(agent_cert_recover(dir, what, sizeof(what)), 0);
    assert_non_null(strstr(what, "finished"));
    assert_pair(dir, b, b_pem);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    free(a_pem);
    free(b_pem);
    rm_dir(dir);

    /* Crash between the renames: the new key is in place, the old
     * certificate is not yet replaced. */
    dir = mkdtemp_dir();
    b_pem = setup_pair(&ca, dir, &a, &b, &a_pem);
    write_file(dir, AGENT_CRT_NEW_FILE, b_pem);
    char from[512], to[512];
    snprintf(from, sizeof(from), "%s/%s", dir, AGENT_KEY_NEW_FILE);
    snprintf(to, sizeof(to), "%s/%s", dir, AGENT_KEY_FILE);
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(agent_cert_recover(dir, what, sizeof(what)), 0);
    assert_non_null(strstr(what, "finished"));
    assert_pair(dir, b, b_pem);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    free(a_pem);
    free(b_pem);
    rm_dir(dir);

    /* A certificate that matches no key is dropped; the old pair stays. */
    dir = mkdtemp_dir();
    b_pem = setup_pair(&ca, dir, &a, &b, &a_pem);
    EVP_PKEY *c = NULL;
    assert_int_equal(agent_cert_keygen(&c), 0);
    char *c_pem = make_cert(&ca, c, "dev-1");
    write_file(dir, AGENT_CRT_NEW_FILE, c_pem);
    assert_int_equal(agent_cert_recover(dir, what, sizeof(what)), 0);
    assert_non_null(strstr(what, "matches no key"));
    assert_pair(dir, a, a_pem);
    EVP_PKEY_free(c);
    free(c_pem);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    free(a_pem);
    free(b_pem);
    rm_dir(dir);

    /* An unanswered renewal: its key is removed, the pair stays. */
    dir = mkdtemp_dir();
    b_pem = setup_pair(&ca, dir, &a, &b, &a_pem);
    assert_int_equal(agent_cert_recover(dir, what, sizeof(what)), 0);
    assert_non_null(strstr(what, "unfinished renewal"));
    assert_pair(dir, a, a_pem);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    free(a_pem);
    free(b_pem);
    rm_dir(dir);

    /* Install without device.key.new fails and changes nothing. */
    dir = mkdtemp_dir();
    b_pem = setup_pair(&ca, dir, &a, &b, &a_pem);
    snprintf(from, sizeof(from), "%s/%s", dir, AGENT_KEY_NEW_FILE);
    assert_int_equal(unlink(from), 0);
    assert_int_equal(agent_cert_install(dir, b_pem, strlen(b_pem)), -ENOENT);
    assert_pair(dir, a, a_pem);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    free(a_pem);
    free(b_pem);
    rm_dir(dir);

    /* An empty directory: nothing to do. */
    dir = mkdtemp_dir();
    assert_int_equal(agent_cert_recover(dir, what, sizeof(what)), 0);
    assert_string_equal(what, "");
    rm_dir(dir);
    ca_free(&ca);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csr),          cmocka_unit_test(test_key_file),
        cmocka_unit_test(test_parse_answer), cmocka_unit_test(test_renew_due),
        cmocka_unit_test(test_check),        cmocka_unit_test(test_install_and_recover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

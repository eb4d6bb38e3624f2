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
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "security/ca.h"
#include "security/tls.h"

/*
 * Real handshakes, in process: the server SSL uses the context under test,
 * the client its own SSL_CTX; both ends of a non-blocking socketpair are
 * driven in turn until each side has finished or failed.
 */

typedef struct fx {
    char dir[64];
    char ca_cert[PATH_MAX], ca_key[PATH_MAX];
    char srv_cert[PATH_MAX], srv_key[PATH_MAX];
    char other_cert[PATH_MAX], other_key[PATH_MAX];
    ca_t *ca, *other;
    SSL_CTX *mtls;  /* with client verification */
    SSL_CTX *plain; /* without */
} fx_t;

static fx_t fx;

static void fx_path(char *out, const char *name)
{
    snprintf(out, PATH_MAX, "%s/%s", fx.dir, name);
}

static int group_setup(void **state)
{
    (void)state;
    char err[256] = "";
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/drover-test-tls-XXXXXX");
    if (mkdtemp(fx.dir) == NULL)
        return -1;
    fx_path(fx.ca_cert, "ca.crt");
    fx_path(fx.ca_key, "ca.key");
    fx_path(fx.srv_cert, "server.crt");
    fx_path(fx.srv_key, "server.key");
    fx_path(fx.other_cert, "other.crt");
    fx_path(fx.other_key, "other.key");
    const char *dns[] = {"localhost"};
    const char *ips[] = {"127.0.0.1"};
    if (ca_open(fx.ca_cert, fx.ca_key, true, &fx.ca, err, sizeof(err)) != 0 ||
        ca_open(fx.other_cert, fx.other_key, true, &fx.other, err, sizeof(err)) != 0 ||
        ca_issue_server(fx.ca, dns, 1, ips, 1, 86400, fx.srv_cert, fx.srv_key, err, sizeof(err)) !=
            0 ||
        tls_server_ctx_new(fx.srv_cert, fx.srv_key, fx.ca_cert, &fx.mtls, err, sizeof(err)) != 0 ||
        tls_server_ctx_new(fx.srv_cert, fx.srv_key, NULL, &fx.plain, err, sizeof(err)) != 0) {
        print_error("setup: %s\n", err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tls_ctx_free(fx.mtls);
    tls_ctx_free(fx.plain);
    ca_free(fx.ca);
    ca_free(fx.other);
    DIR *d = opendir(fx.dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[PATH_MAX];
            fx_path(p, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(fx.dir);
    return 0;
}

/* ---- identities ---- */

typedef struct ident {
    X509 *cert;
    EVP_PKEY *key;
    char serial[80];
} ident_t;

static void ident_fini(ident_t *id)
{
    X509_free(id->cert);
    EVP_PKEY_free(id->key);
    memset(id, 0, sizeof(*id));
}

static X509 *pem_x509(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    return x;
}

/* A device identity the proper way: key, CSR, ca_sign_csr. */
static void ident_from_ca(ca_t *ca, const char *device_id, ident_t *out)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    X509_NAME_add_entry_by_NID(X509_REQ_get_subject_name(req), NID_commonName, MBSTRING_ASC,
                               (const unsigned char *)device_id, -1, -1, 0);
    X509_REQ_set_pubkey(req, k);
    assert_true(X509_REQ_sign(req, k, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(b, req);
    char *csr;
    long n = BIO_get_mem_data(b, &csr);
    ca_issued_t is;
    char err[256] = "";
    assert_int_equal(ca_sign_csr(ca, csr, (size_t)n, device_id, 86400, &is, err, sizeof(err)), 0);
    BIO_free(b);
    X509_REQ_free(req);
    out->cert = pem_x509(is.pem);
    out->key = k;
    snprintf(out->serial, sizeof(out->serial), "%s", is.serial);
    ca_issued_fini(&is);
}

/* A client certificate signed with the fleet CA's key directly, valid
 * from now + nb_off to now + na_off seconds (for expired / future ones). */
static void ident_forged(const char *device_id, long nb_off, long na_off, ident_t *out)
{
    BIO *b = BIO_new_file(fx.ca_key, "r");
    EVP_PKEY *cakey = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(cakey);
    X509 *cacert = pem_x509(ca_cert_pem(fx.ca));
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_ASC,
                               (const unsigned char *)device_id, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(cacert));
    X509_set_pubkey(x, k);
    X509_gmtime_adj(X509_getm_notBefore(x), nb_off);
    X509_gmtime_adj(X509_getm_notAfter(x), na_off);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, cacert, x, NULL, NULL, 0);
    const char *exts[][2] = {{"basicConstraints", "critical,CA:FALSE"},
                             {"keyUsage", "critical,digitalSignature,keyAgreement"},
                             {"extendedKeyUsage", "clientAuth"},
                             {"authorityKeyIdentifier", "keyid"}};
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, cakey, EVP_sha256()) > 0);
    out->cert = x;
    out->key = k;
    snprintf(out->serial, sizeof(out->serial), "1092");
    X509_free(cacert);
    EVP_PKEY_free(cakey);
}

/* ---- connections ---- */

static SSL_CTX *client_ctx(const ident_t *id)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    assert_non_null(c);
    assert_int_equal(SSL_CTX_load_verify_locations(c, fx.ca_cert, NULL), 1);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    if (id != NULL) {
        assert_int_equal(SSL_CTX_use_certificate(c, id->cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey(c, id->key), 1);
    }
    return c;
}

typedef struct conn {
    int fds[2];
    SSL *c, *s;
    int cres, sres;           /* 1 done, -1 failed, 0 still going */
    unsigned long cerr, serr; /* OpenSSL error of the failed side */
} conn_t;

static void conn_open(conn_t *cn, SSL_CTX *cctx, SSL_CTX *sctx, SSL_SESSION *resume)
{
    memset(cn, 0, sizeof(*cn));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, cn->fds), 0);
    cn->c = SSL_new(cctx);
    cn->s = SSL_new(sctx);
    assert_non_null(cn->c);
    assert_non_null(cn->s);
    SSL_set_fd(cn->c, cn->fds[0]);
    SSL_set_fd(cn->s, cn->fds[1]);
    SSL_set_connect_state(cn->c);
    SSL_set_accept_state(cn->s);
    SSL_set_tlsext_host_name(cn->c, "localhost");
    assert_int_equal(SSL_set1_host(cn->c, "localhost"), 1);
    if (resume != NULL)
        assert_int_equal(SSL_set_session(cn->c, resume), 1);
}

static void conn_close(conn_t *cn)
{
    /* A clean close keeps TLS 1.2 sessions resumable. */
    if (cn->cres == 1 && cn->sres == 1) {
        SSL_shutdown(cn->c);
        SSL_shutdown(cn->s);
    }
    SSL_free(cn->c);
    SSL_free(cn->s);
    close(cn->fds[0]);
    close(cn->fds[1]);
    ERR_clear_error();
}

static int step(SSL *ssl, unsigned long *err)
{
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    *err = ERR_peek_last_error();
    ERR_clear_error();
    return -1;
}

/* Drives both sides until each is done or failed, or nothing moves. */
static void handshake(conn_t *cn)
{
    for (int i = 0; i < 200 && (cn->cres == 0 || cn->sres == 0); i++) {
        if (cn->cres == 0)
            cn->cres = step(cn->c, &cn->cerr);
        if (cn->sres == 0)
            cn->sres = step(cn->s, &cn->serr);
    }
}

/* Moves len bytes from one side to the other (and so lets the client
 * read what the server sent after the handshake: TLS 1.3 tickets). */
static void transfer(SSL *from, SSL *to, const char *msg)
{
    size_t len = strlen(msg);
    char buf[64];
    size_t got = 0;
    assert_int_equal(SSL_write(from, msg, (int)len), (int)len);
    for (int i = 0; i < 200 && got < len; i++) {
        int r = SSL_read(to, buf + got, (int)(sizeof(buf) - got));
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        int e = SSL_get_error(to, r);
        assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
    }
    assert_int_equal(got, len);
    assert_memory_equal(buf, msg, len);
}

/* After a failed server handshake the client cannot use the connection. */
static void assert_client_dead(conn_t *cn)
{
    char buf[16];
    int r = 0;
    for (int i = 0; i < 50; i++) {
        r = SSL_read(cn->c, buf, sizeof(buf));
        if (r > 0 || SSL_get_error(cn->c, r) != SSL_ERROR_WANT_READ)
            break;
    }
    assert_true(r <= 0);
    assert_int_not_equal(SSL_get_error(cn->c, r), SSL_ERROR_WANT_READ);
    ERR_clear_error();
}

/* ---- tests ---- */

static void test_ctx_policy(void **state)
{
    (void)state;
    SSL_CTX *ctx = fx.mtls;
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    uint64_t opts = SSL_CTX_get_options(ctx);
    assert_true(opts & SSL_OP_NO_COMPRESSION);
    assert_true(opts & SSL_OP_CIPHER_SERVER_PREFERENCE);
    assert_false(opts & SSL_OP_NO_TICKET);
    assert_int_equal(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_SERVER);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
    assert_int_equal(SSL_CTX_get_verify_depth(ctx), 2);
    assert_int_equal(SSL_CTX_get_verify_mode(fx.plain), SSL_VERIFY_NONE);
    /* TLS 1.2 suites: ECDHE and AEAD only. */
    STACK_OF(SSL_CIPHER) *list = SSL_CTX_get_ciphers(ctx);
    int n12 = 0;
    for (int i = 0; i < sk_SSL_CIPHER_num(list); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(list, i);
        if (SSL_CIPHER_get_kx_nid(c) == NID_kx_any) /* a TLS 1.3 suite */
            continue;
        n12++;
        assert_int_equal(SSL_CIPHER_get_kx_nid(c), NID_kx_ecdhe);
        assert_true(SSL_CIPHER_is_aead(c));
        assert_int_not_equal(SSL_CIPHER_get_auth_nid(c), NID_auth_null);
    }
    assert_true(n12 >= 4);
}

static void test_ctx_errors(void **state)
{
    (void)state;
    SSL_CTX *ctx = (SSL_CTX *)0x1;
    char err[512] = "";
    char missing[PATH_MAX];
    fx_path(missing, "nope.pem");
    assert_int_equal(tls_server_ctx_new(fx.srv_cert, fx.other_key, NULL, &ctx, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(tls_server_ctx_new(missing, fx.srv_key, NULL, &ctx, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(tls_server_ctx_new(fx.srv_cert, missing, NULL, &ctx, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(tls_server_ctx_new(fx.srv_cert, fx.srv_key, missing, &ctx, err, sizeof(err)),
                     -EINVAL);
    /* A key file given as the CA: no certificates in it. */
    assert_int_equal(
        tls_server_ctx_new(fx.srv_cert, fx.srv_key, fx.srv_key, &ctx, err, sizeof(err)), -EINVAL);
    assert_ptr_equal(ctx, (SSL_CTX *)0x1);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_fleet_client_cert(void **state)
{
    (void)state;
    ident_t id;
    ident_from_ca(fx.ca, "dev-7", &id);
    SSL_CTX *cctx = client_ctx(&id);
    conn_t cn;
    conn_open(&cn, cctx, fx.mtls, NULL);
    handshake(&cn);
    assert_int_equal(cn.cres, 1);
    assert_int_equal(cn.sres, 1);
    assert_int_equal(SSL_version(cn.s), TLS1_3_VERSION);
    transfer(cn.c, cn.s, "ping");
    transfer(cn.s, cn.c, "pong");

    bool verified = false;
    char cn_buf[65] = "", serial[80] = "";
    assert_int_equal(
        tls_peer_identity(cn.s, &verified, cn_buf, sizeof(cn_buf), serial, sizeof(serial)), 0);
    assert_true(verified);
    assert_string_equal(cn_buf, "dev-7");
    assert_string_equal(serial, id.serial);

    /* Buffers too small: an error, nothing written. */
    char tiny[5] = "abcd";
    assert_int_equal(tls_peer_identity(cn.s, &verified, tiny, sizeof(tiny), NULL, 0), -ENOSPC);
    assert_string_equal(tiny, "abcd");
    assert_int_equal(tls_peer_identity(cn.s, &verified, NULL, 0, tiny, sizeof(tiny)), -ENOSPC);
    assert_string_equal(tiny, "abcd");
    assert_int_equal(tls_peer_identity(cn.s, NULL, NULL, 0, NULL, 0), 0);

    /* The client sees the server's certificate for localhost. */
    assert_int_equal(SSL_get_verify_result(cn.c), X509_V_OK);
    conn_close(&cn);
    SSL_CTX_free(cctx);
    ident_fini(&id);
}

static void expect_rejected(const ident_t *id, long want_verify)
{
    SSL_CTX *cctx = client_ctx(id);
    conn_t cn;
    conn_open(&cn, cctx, fx.mtls, NULL);
    handshake(&cn);
    assert_int_equal(cn.sres, -1);
    assert_int_equal(SSL_get_verify_result(cn.s), want_verify);
    assert_int_equal(ERR_GET_REASON(cn.serr), SSL_R_CERTIFICATE_VERIFY_FAILED);
    assert_client_dead(&cn);
    conn_close(&cn);
    SSL_CTX_free(cctx);
}

static void test_other_ca_rejected(void **state)
{
    (void)state;
    ident_t id;
    ident_from_ca(fx.other, "dev-7", &id);
    expect_rejected(&id, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    ident_fini(&id);
}

static void test_expired_rejected(void **state)
{
    (void)state;
    ident_t id;
    ident_forged("dev-7", -2 * 86400, -86400, &id);
    expect_rejected(&id, X509_V_ERR_CERT_HAS_EXPIRED);
    ident_fini(&id);
    ident_forged("dev-7", 86400, 2 * 86400, &id);
    expect_rejected(&id, X509_V_ERR_CERT_NOT_YET_VALID);
    ident_fini(&id);
    /* The control: the same forging, valid now, is accepted. */
    ident_forged("dev-7", -60, 86400, &id);
    SSL_CTX *cctx = client_ctx(&id);
    conn_t cn;
    conn_open(&cn, cctx, fx.mtls, NULL);
    handshake(&cn);
    assert_int_equal(cn.sres, 1);
    bool verified = false;
    char serial[80];
    assert_int_equal(tls_peer_identity(cn.s, &verified, NULL, 0, serial, sizeof(serial)), 0);
    assert_true(verified);
    assert_string_equal(serial, id.serial);
    conn_close(&cn);
    SSL_CTX_free(cctx);
    ident_fini(&id);
}

static void test_server_cert_as_client_rejected(void **state)
{
    (void)state;
    /* Fleet-signed but serverAuth only: not a client certificate. */
    ident_t id = {0};
    BIO *b = BIO_new_file(fx.srv_cert, "r");
    id.cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    b = BIO_new_file(fx.srv_key, "r");
    id.key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    expect_rejected(&id, X509_V_ERR_INVALID_PURPOSE);
    ident_fini(&id);
}

static void test_no_client_cert(void **state)
{
    (void)state;
    SSL_CTX *cctx = client_ctx(NULL);
    conn_t cn;
    conn_open(&cn, cctx, fx.mtls, NULL);
    handshake(&cn);
    assert_int_equal(cn.cres, 1);
    assert_int_equal(cn.sres, 1);
    transfer(cn.c, cn.s, "hello");
    bool verified = true;
    char cn_buf[65] = "x";
    assert_int_equal(tls_peer_identity(cn.s, &verified, cn_buf, sizeof(cn_buf), NULL, 0), -ENOENT);
    assert_true(verified);
    assert_string_equal(cn_buf, "x");
    conn_close(&cn);
    SSL_CTX_free(cctx);
}

static void test_no_verification_without_ca(void **state)
{
    (void)state;
    ident_t id;
    ident_from_ca(fx.other, "dev-7", &id);
    SSL_CTX *cctx = client_ctx(&id);
    conn_t cn;
    conn_open(&cn, cctx, fx.plain, NULL);
    handshake(&cn);
    assert_int_equal(cn.cres, 1);
    assert_int_equal(cn.sres, 1);
    transfer(cn.c, cn.s, "hello");
    /* Not asked for, so not sent. */
    assert_int_equal(tls_peer_identity(cn.s, NULL, NULL, 0, NULL, 0), -ENOENT);
    conn_close(&cn);
    SSL_CTX_free(cctx);
    ident_fini(&id);
}

static void test_old_protocols_refused(void **state)
{
    (void)state;
    /* A TLS 1.1 client that really offers TLS 1.1 (security level 0, so
     * its own library lets it): the server must refuse. */
    SSL_CTX *cctx = client_ctx(NULL);
    SSL_CTX_set_security_level(cctx, 0);
    assert_int_equal(SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(cctx, TLS1_1_VERSION), 1);
    assert_int_equal(SSL_CTX_set_cipher_list(cctx, "DEFAULT:@SECLEVEL=0"), 1);
    conn_t cn;
    conn_open(&cn, cctx, fx.mtls, NULL);
    handshake(&cn);
    assert_int_equal(cn.sres, -1);
    assert_int_equal(ERR_GET_REASON(cn.serr), SSL_R_UNSUPPORTED_PROTOCOL);
    assert_int_not_equal(cn.cres, 1);
    conn_close(&cn);
    SSL_CTX_free(cctx);

    /* TLS 1.2 with CBC suites only: no shared cipher. */
    cctx = client_ctx(NULL);
    assert_int_equal(SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION), 1);
    assert_int_equal(SSL_CTX_set_cipher_list(cctx, "ECDHE-ECDSA-AES128-SHA256:"
                                                   "ECDHE-ECDSA-AES256-SHA:AES128-GCM-SHA256"),
                     1);
    conn_open(&cn, cctx, fx.mtls, NULL);
    handshake(&cn);
    assert_int_equal(cn.sres, -1);
    assert_int_equal(ERR_GET_REASON(cn.serr), SSL_R_NO_SHARED_CIPHER);
    conn_close(&cn);
    SSL_CTX_free(cctx);

    /* TLS 1.2 with an AEAD ECDHE suite works. */
    cctx = client_ctx(NULL);
    assert_int_equal(SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION), 1);
    conn_open(&cn, cctx, fx.mtls, NULL);
    handshake(&cn);
    assert_int_equal(cn.sres, 1);
    assert_int_equal(SSL_version(cn.s), TLS1_2_VERSION);
    const SSL_CIPHER *c = SSL_get_current_cipher(cn.s);
    assert_int_equal(SSL_CIPHER_get_kx_nid(c), NID_kx_ecdhe);
    assert_true(SSL_CIPHER_is_aead(c));
    conn_close(&cn);
    SSL_CTX_free(cctx);
}

/* One full handshake, then one resumed with the saved session; the
 * resumed one must still report the client's verified identity. */
static void resume_with(int max_version, bool tickets)
{
    ident_t id;
    ident_from_ca(fx.ca, "dev-9", &id);
    SSL_CTX *cctx = client_ctx(&id);
    if (max_version != 0)
        assert_int_equal(SSL_CTX_set_max_proto_version(cctx, max_version), 1);
    if (!tickets)
        SSL_CTX_set_options(cctx, SSL_OP_NO_TICKET);

    conn_t cn;
    conn_open(&cn, cctx, fx.mtls, NULL);
    handshake(&cn);
    assert_int_equal(cn.cres, 1);
    assert_int_equal(cn.sres, 1);
    assert_int_equal(SSL_session_reused(cn.c), 0);
    transfer(cn.c, cn.s, "first");
    transfer(cn.s, cn.c, "tickets come with this");
    SSL_SESSION *sess = SSL_get1_session(cn.c);
    assert_non_null(sess);
    assert_int_equal(SSL_SESSION_is_resumable(sess), 1);
    conn_close(&cn);

    conn_open(&cn, cctx, fx.mtls, sess);
    handshake(&cn);
    assert_int_equal(cn.cres, 1);
    assert_int_equal(cn.sres, 1);
    assert_int_equal(SSL_session_reused(cn.c), 1);
    assert_int_equal(SSL_session_reused(cn.s), 1);
    transfer(cn.c, cn.s, "second");
    bool verified = false;
    char name[65], serial[80];
    assert_int_equal(tls_peer_identity(cn.s, &verified, name, sizeof(name), serial, sizeof(serial)),
                     0);
    assert_true(verified);
    assert_string_equal(name, "dev-9");
    assert_string_equal(serial, id.serial);
    conn_close(&cn);
    SSL_SESSION_free(sess);
    SSL_CTX_free(cctx);
    ident_fini(&id);
}

static void test_resume_tls13(void **state)
{
    (void)state;
    resume_with(0, true);
}

static void test_resume_tls12_ticket(void **state)
{
    (void)state;
    resume_with(TLS1_2_VERSION, true);
}

static void test_resume_tls12_session_cache(void **state)
{
    (void)state;
    /* Session ids, from the server's cache: needs the session id context. */
    resume_with(TLS1_2_VERSION, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_policy),
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test(test_fleet_client_cert),
        cmocka_unit_test(test_other_ca_rejected),
        cmocka_unit_test(test_expired_rejected),
        cmocka_unit_test(test_server_cert_as_client_rejected),
        cmocka_unit_test(test_no_client_cert),
        cmocka_unit_test(test_no_verification_without_ca),
        cmocka_unit_test(test_old_protocols_refused),
        cmocka_unit_test(test_resume_tls13),
        cmocka_unit_test(test_resume_tls12_ticket),
        cmocka_unit_test(test_resume_tls12_session_cache),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

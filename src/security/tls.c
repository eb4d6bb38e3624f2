/*
 * TLS server contexts for droverd's listeners.
 *
 * One SSL_CTX per listener, built once at start and shared by all its
 * connections (loop thread only). The policy, and why:
 *  - TLS 1.2 and 1.3 only; in 1.2 only ECDHE with AES-GCM or ChaCha20-
 *    Poly1305: forward secrecy and AEAD, no CBC, no RSA key transport.
 *    TLS 1.3 keeps OpenSSL's default suites (all AEAD, all ECDHE/DHE).
 *  - The server's cipher order wins; no compression (CRIME); no
 *    renegotiation (a client-driven CPU sink with nothing to gain here).
 *  - Resumption: a server-side session cache (bounded) for TLS 1.2
 *    session ids, and session tickets for both versions. The session id
 *    context is set because OpenSSL refuses to resume a session that was
 *    verified against a peer certificate without one; the peer's
 *    certificate and verify result travel with the session, so
 *    tls_peer_identity() gives the same answer after resumption.
 *  - Mutual TLS (with ca_path): SSL_VERIFY_PEER without
 *    FAIL_IF_NO_PEER_CERT. A client may present no certificate (it then
 *    authenticates with a password at MQTT CONNECT); a certificate it does
 *    present must chain to the fleet CA, be within its validity period and
 *    carry clientAuth usage (OpenSSL checks the "ssl_client" purpose on the
 *    server side), or the handshake fails. Revocation is the caller's: it
 *    holds the revoked serials and asks tls_peer_identity().
 *
 * Certificate serials are printed exactly as ca.c prints them (BN_bn2hex:
 * upper-case, no leading zero bytes), so serials from both match.
 * Every function leaves the thread's OpenSSL error queue empty.
 */
#include "security/tls.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"
#define TLS_SESSION_CACHE_MAX 10000 /* sessions kept for TLS 1.2 session-id resumption */
#define TLS_VERIFY_DEPTH 2          /* leaf, at most one intermediate, the CA */

static const unsigned char session_id_context[] = "droverd";

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

static void seterr_ssl(char *err, size_t errlen, const char *what, const char *path)
{
    char reason[256] = "unknown error";
    unsigned long e = ERR_peek_last_error();
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    seterr(err, errlen, "%s %s: %s", what, path != NULL ? path : "", reason);
}

/* Never prompt on the terminal for a key passphrase. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* OpenSSL's own verdict stands: a presented certificate that does not
 * verify (other CA, expired, not yet valid, wrong purpose) fails the
 * handshake. Spelled out so nobody "relaxes" it with a callback that
 * returns 1. */
static int verify_cb(int preverify_ok, X509_STORE_CTX *ctx)
{
    (void)ctx;
    return preverify_ok;
}

int tls_server_ctx_new(const char *cert_path, const char *key_path, const char *ca_path,
                       struct ssl_ctx_st **out, char *err, size_t errlen)
{
    SSL_CTX *ctx = NULL;
    STACK_OF(X509_NAME) *names = NULL;
    EVP_PKEY *key = NULL;
    int rc = -EINVAL;

    ERR_clear_error();
    if (cert_path == NULL || key_path == NULL || out == NULL) {
        seterr(err, errlen, "TLS needs a certificate and a key");
        goto fail;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        seterr_ssl(err, errlen, "cannot create TLS context", NULL);
        rc = -ENOMEM;
        goto fail;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        seterr_ssl(err, errlen, "cannot set TLS protocol policy", NULL);
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, TLS_SESSION_CACHE_MAX);
    if (SSL_CTX_set_session_id_context(ctx, session_id_context,
                                       (unsigned)(sizeof(session_id_context) - 1)) != 1) {
        seterr_ssl(err, errlen, "cannot set TLS session id context", NULL);
        goto fail;
    }

    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        seterr_ssl(err, errlen, "cannot load TLS certificate", cert_path);
        goto fail;
    }
    /* Read apart from installing, to tell an unreadable key from one
     * that belongs to another certificate. */
    BIO *kb = BIO_new_file(key_path, "r");
    key = kb != NULL ? PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL) : NULL;
    BIO_free(kb);
    if (key == NULL) {
        seterr_ssl(err, errlen, "cannot load TLS key (unencrypted PEM)", key_path);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        seterr(err, errlen, "TLS key %s does not match certificate %s", key_path, cert_path);
        goto fail;
    }

    if (ca_path != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, ca_path, NULL) != 1) {
            seterr_ssl(err, errlen, "cannot load client CA", ca_path);
            goto fail;
        }
        /* Named in the CertificateRequest, so a client holding several
         * certificates picks the one from this CA. */
        names = SSL_load_client_CA_file(ca_path);
        if (names == NULL) {
            seterr_ssl(err, errlen, "cannot read client CA names from", ca_path);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
        names = NULL;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
        SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
    }
    EVP_PKEY_free(key); /* the context holds its own reference */
    ERR_clear_error();
    *out = ctx;
    return 0;
fail:
    EVP_PKEY_free(key);
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

void tls_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

int tls_peer_identity(struct ssl_st *ssl, bool *verified, char *cn, size_t cn_len, char *serial,
                      size_t serial_len)
{
    char hex[80] = "";
    unsigned char *name = NULL;
    size_t namelen = 0;
    BIGNUM *bn = NULL;
    char *bnhex = NULL;
    int rc;

    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer == NULL)
        return -ENOENT;
    bool ok = SSL_get_verify_result(ssl) == X509_V_OK;

    /* The serial, as ca.c prints it. */
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(peer), NULL);
    bnhex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (bnhex == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    if (strlen(bnhex) >= sizeof(hex) || (serial != NULL && strlen(bnhex) >= serial_len)) {
        rc = -ENOSPC;
        goto fail;
    }
    memcpy(hex, bnhex, strlen(bnhex) + 1);

    /* The CN, which for a device is its id: exactly one, no embedded NUL
     * and never truncated, since a shortened CN could name another device.
     * A certificate without a CN reports "". */
    const X509_NAME *subject = X509_get_subject_name(peer);
    int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i >= 0) {
        if (X509_NAME_get_index_by_NID(subject, NID_commonName, i) >= 0) {
            rc = -EINVAL;
            goto fail;
        }
        const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
        int n = ASN1_STRING_to_UTF8(&name, s);
        if (n < 0 || memchr(name, '\0', (size_t)n) != NULL) {
            rc = -EINVAL;
            goto fail;
        }
        namelen = (size_t)n;
    }
    if (cn != NULL && namelen >= cn_len) {
        rc = -ENOSPC;
        goto fail;
    }

    if (cn != NULL) {
        if (namelen > 0)
            memcpy(cn, name, namelen);
        cn[namelen] = '\0';
    }
    if (serial != NULL)
        memcpy(serial, hex, strlen(hex) + 1);
    if (verified != NULL)
        *verified = ok;
    rc = 0;
fail:
    OPENSSL_free(name);
    OPENSSL_free(bnhex);
    BN_free(bn);
    ERR_clear_error();
    return rc;
}

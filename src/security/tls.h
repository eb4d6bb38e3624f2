/*
 * TLS server contexts for droverd's listeners (MQTT over TLS, HTTPS):
 * TLS 1.2 and 1.3 only, forward-secret AEAD cipher suites, server-side
 * session cache and session tickets for resumption. For mutual TLS the
 * context asks for a client certificate and verifies it against the fleet
 * CA (chain, validity period); a handshake with a certificate from another
 * CA, or expired, or not yet valid, fails. A client without a certificate
 * is still let through (it may authenticate with a password); the broker
 * decides at CONNECT. Revocation is checked by the caller, which holds the
 * set of revoked serials, through tls_peer_identity().
 */
#ifndef DROVER_SECURITY_TLS_H
#define DROVER_SECURITY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ssl_ctx_st;
struct ssl_st;

/* A server context with cert_path/key_path (PEM; the cert may hold the
 * chain). With ca_path non-NULL, client certificates are requested and
 * verified against it. -EINVAL with a reason in err. */
int tls_server_ctx_new(const char *cert_path, const char *key_path, const char *ca_path,
                       struct ssl_ctx_st **out, char *err, size_t errlen);
void tls_ctx_free(struct ssl_ctx_st *ctx);

/* After the handshake: whether the peer presented a certificate that
 * verified, and if so its subject CN and serial (upper-case hex). Returns
 * 0 with *verified, or -ENOENT when there was no client certificate. */
int tls_peer_identity(struct ssl_st *ssl, bool *verified, char *cn, size_t cn_len, char *serial,
                      size_t serial_len);

#endif

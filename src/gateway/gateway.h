/*
 * The device gateway: binds the MQTT broker to device management. It
 * implements the broker's hooks: authenticates devices (username = client
 * id = device id, password = secret) and applications (password = an API
 * token of role operator or admin), confines each device to
 * devices/{id}/, and routes what devices publish to the domain modules:
 * telemetry (de-duplicated by seq), twin/reported and command results,
 * each acknowledged only once durable. It sends the desired state when a
 * device subscribes to it and when it changes, offers open commands when a
 * device subscribes to its command topic, and keeps presence (online,
 * last_seen) from the connection itself. Loop thread only.
 */
#ifndef DROVER_GATEWAY_GATEWAY_H
#define DROVER_GATEWAY_GATEWAY_H

#include "commands/commands.h"
#include "core/config.h"
#include "mqtt/broker.h"
#include "twin/twin.h"
#include "registry/registry.h"
#include "store/store.h"

struct event_base;
struct evbuffer;

typedef struct gateway gateway_t;

/* Starts the MQTT listener on host:port. Everything passed is borrowed and
 * must outlive the gateway. Returns 0 or a negative errno from the bind. */
int gateway_new(struct event_base *base, const config_t *cfg, store_t *st, registry_t *reg,
                twin_t *twin, commands_t *cmds, const char *host, int port, gateway_t **out);
/* Turns on client-certificate authentication, certificate revocation and
 * renewal over MQTT (devices/{id}/certificates/renew -> .../issued). */
struct pki;
void gateway_set_pki(gateway_t *gw, struct pki *pki);

/* Refused MQTT authentications are appended to this audit log. */
struct audit;
void gateway_set_audit(gateway_t *gw, struct audit *audit);

/* Serves MQTT over TLS on host:port too (ctx: an SSL_CTX, borrowed). */
struct ssl_ctx_st;
int gateway_listen_tls(gateway_t *gw, const char *host, int port, struct ssl_ctx_st *ctx);

/* Closes every MQTT connection and frees the gateway. NULL-safe. */
void gateway_free(gateway_t *gw);

/* Prometheus lines for the broker and telemetry ingest (an api_deps_t
 * metrics callback: ctx is the gateway). */
void gateway_metrics(void *ctx, struct evbuffer *buf);

#endif

/*
 * The REST API under /api/v1 (and /metrics, /healthz), served by libevent's
 * evhttp on the daemon's event loop. Routes live in one static table
 * {method, path pattern, handler, minimum role}; every route declares its
 * permission and a request is denied unless its token's role reaches it.
 * Errors are JSON {"error": code, "detail": text} with the matching status.
 * The API talks to domain modules (registry, telemetry, tokens), never SQL.
 */
#ifndef DROVER_API_API_H
#define DROVER_API_API_H

#include "commands/commands.h"
#include "commands/jobs.h"
#include "core/config.h"
#include "registry/registry.h"
#include "security/audit.h"
#include "security/ratelimit.h"
#include "security/users.h"
#include "store/store.h"
#include "twin/twin.h"

struct event_base;
struct evbuffer;

typedef struct api api_t;

typedef struct api_deps {
    store_t *store;
    registry_t *registry;
    twin_t *twin;
    commands_t *commands;
    jobs_t *jobs;
    struct pki *pki; /* NULL when no CA is available */
    const config_t *config;
    audit_t *audit; /* NULL: nothing is audited */
    /* Operator logins (operators.c): the password hashing thread (NULL:
     * user writes and logins answer 500) and the failed-login limiter
     * (NULL: no limit). */
    users_worker_t *users;
    ratelimit_t *login_limit;
    /* Appends Prometheus text-format lines for the MQTT side to buf. */
    void (*metrics)(void *ctx, struct evbuffer *buf);
    void *metrics_ctx;
} api_deps_t;

/* Binds host:port and serves on base. deps is copied; what it points to is
 * borrowed and must outlive the api. Returns 0, or -EADDRINUSE / -EACCES /
 * -EINVAL (with the OS reason logged by the caller). */
int api_new(struct event_base *base, const char *host, int port, const api_deps_t *deps,
            api_t **out);
/* Serves the same API over HTTPS on host:port with ctx (an SSL_CTX,
 * borrowed, outliving the api). */
struct ssl_ctx_st;
int api_listen_tls(api_t *api, const char *host, int port, struct ssl_ctx_st *ctx);
void api_free(api_t *api);

#endif

/*
 * What the REST API's files share: the api object, the per-request context
 * handed to route handlers, reply helpers and deferred replies. Private to
 * src/api.
 */
#ifndef DROVER_API_API_INTERNAL_H
#define DROVER_API_API_INTERNAL_H

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "security/tokens.h"

typedef struct api_pending api_pending_t;

/* What the audit log records of a request: filled by the dispatcher,
 * copied into an api_pending_t, and written once, when the reply is sent
 * (http.c). A handler may refine actor or object before it replies (login
 * names the user: "user:<name>"); never a secret. */
typedef struct api_audit_info {
    bool on;         /* write an entry when the reply is sent */
    bool deny_only;  /* GET and HEAD: only a refusal (401, 403) is written */
    char actor[128]; /* "token:<name>", "user:<user>" (a "login:<user>" token), "anonymous" */
    char action[64]; /* "<METHOD> <route pattern>" */
    char object[DROVER_ID_MAX + 1];
    char source[64]; /* peer "ip:port" */
} api_audit_info_t;

struct api {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp *https;       /* NULL unless api_listen_tls */
    struct ssl_ctx_st *ssl_ctx; /* borrowed */
    api_deps_t deps;
    api_pending_t *pending;  /* requests whose reply waits for the store */
    struct api_req *current; /* the request being dispatched, for auditing */
    uint64_t requests;
    uint64_t responses[6]; /* by status class: [2] = 2xx ... [5] = 5xx */
};

/* One request being handled. Lives on the dispatcher's stack: a handler
 * that answers later copies what it needs into an api_pending_t. */
typedef struct api_req {
    api_t *api;
    struct evhttp_request *req;
    const char *id; /* the decoded, validated {id} segment, or NULL */
    role_t role;    /* ROLE_NONE on public routes */
    store_token_t token;
    api_audit_info_t audit;
} api_req_t;

typedef void (*api_handler_fn)(api_req_t *r);

/* Most write jobs queued in the store before writes answer 503: a client
 * faster than the disk gets pushed back instead of growing the queue. */
#define API_MAX_STORE_PENDING 20000

/* ---- Replies (http.c). Every reply goes through these. ------------------- */

/* Sends body (stolen; NULL sends no body) as JSON with the status. */
void api_reply_json(api_t *api, struct evhttp_request *req, int status, json_t *body);
/* {"error": code, "detail": printf(fmt)} with the status. */
void api_reply_error(api_t *api, struct evhttp_request *req, int status, const char *code,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Maps a negative errno from a module to a status and error reply; what
 * names the operation for the detail ("listing devices"). */
void api_reply_errno(api_t *api, struct evhttp_request *req, int rc, const char *what);
/* The answer of a list route: {key: arr} with 200 when rc >= 0, else the
 * error for rc (what names the operation). Takes arr (may be NULL, then
 * rc should be -ENOMEM). */
void api_reply_list(api_t *api, struct evhttp_request *req, json_t *arr, int rc, const char *key,
                    const char *what);
/* 204, no body. */
void api_reply_empty(api_t *api, struct evhttp_request *req, int status);
/* Sends buf (borrowed; drained) as is, with the content type. */
void api_reply_buffer(api_t *api, struct evhttp_request *req, int status, const char *content_type,
                      struct evbuffer *buf);

/* Parses the request body as one JSON value. On failure replies 400 and
 * returns < 0; the caller must then return without replying. */
int api_body_json(api_req_t *r, json_t **out);

/* Parses the query string into q (caller calls evhttp_clear_headers). On
 * a malformed query replies 400 and returns < 0. */
int api_query_parse(api_req_t *r, struct evkeyvalq *q);
/* The value of key, or NULL if absent. A key given twice replies 400 and
 * returns -EINVAL (then the caller returns). */
int api_query_get(api_req_t *r, struct evkeyvalq *q, const char *key, const char **out);
/* An optional integer parameter in [min, max], dflt if absent. Replies 400
 * and returns < 0 when malformed or out of range. */
int api_query_int(api_req_t *r, struct evkeyvalq *q, const char *key, int64_t min, int64_t max,
                  int64_t dflt, int64_t *out);

/* True when the store is too far behind to accept more writes; replies
 * 503 if so. */
bool api_store_busy(api_req_t *r);

/* ---- Deferred replies (http.c) -------------------------------------------- */

/* A request answered from a completion callback. If the connection goes
 * away or the api is freed first, req becomes NULL and the callback must
 * only free the pending. */
struct api_pending {
    api_t *api;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    api_pending_t *prev, *next;
    char id[DROVER_ID_MAX + 1];
    api_audit_info_t audit; /* the request's, object = id */
};

api_pending_t *api_pending_new(api_req_t *r);
void api_pending_free(api_pending_t *p);

/* ---- JSON shapes shared by the resources ----------------------------------- */

/* A telemetry value: integral numbers within 2^53 as JSON integers,
 * other numbers as reals, booleans as booleans, strings as strings. */
json_t *api_value_json(const store_value_t *v);
/* {"id", "tags", "online", "last_seen" (null when never), "created_at"}. */
json_t *api_device_json(const store_device_t *d);

/* ---- Handlers --------------------------------------------------------------- */

void api_devices_list(api_req_t *r);
void api_devices_create(api_req_t *r);
void api_devices_get(api_req_t *r);
void api_devices_delete(api_req_t *r);
void api_devices_rotate(api_req_t *r);
void api_telemetry_query(api_req_t *r);
void api_twin_get(api_req_t *r);
void api_twin_put(api_req_t *r);
void api_twin_patch(api_req_t *r);
void api_commands_create(api_req_t *r);
void api_commands_list(api_req_t *r);
void api_commands_get(api_req_t *r);
void api_bulk_commands(api_req_t *r);
void api_bulk_twin(api_req_t *r);
void api_jobs_get(api_req_t *r);
/* operators.c */
void api_tokens_create(api_req_t *r);
void api_tokens_list(api_req_t *r);
void api_tokens_delete(api_req_t *r);
void api_users_create(api_req_t *r);
void api_users_list(api_req_t *r);
void api_users_get(api_req_t *r);
void api_users_update(api_req_t *r);
void api_users_delete(api_req_t *r);
void api_login(api_req_t *r);
/* audit.c */
void api_audit_list(api_req_t *r);
/* pki.c */
void api_ca_get(api_req_t *r);
void api_certs_create(api_req_t *r);
void api_certs_list(api_req_t *r);
void api_certs_revoke(api_req_t *r);
void api_devices_revoke(api_req_t *r);
void api_devices_import(api_req_t *r);
void api_enrollments_create(api_req_t *r);
void api_enrollments_list(api_req_t *r);
void api_enrollments_get(api_req_t *r);
void api_enrollments_revoke(api_req_t *r);
void api_provision(api_req_t *r);

#endif

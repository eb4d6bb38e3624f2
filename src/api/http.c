/*
 * The HTTP front of the REST API: evhttp set-up, the route table, the
 * dispatcher (routing, 404/405, bearer authentication, role check, body
 * limits and content type), the JSON reply helpers, deferred replies, and
 * the two public endpoints /healthz and /metrics.
 *
 * Routing. One static table {method, pattern, handler, minimum role, takes
 * a body}. A pattern is a path whose segments are literals or "{id}". The
 * request path is split on '/' first and each segment is percent-decoded
 * on its own, so an encoded "%2F" can never create or hide a segment; an
 * {id} is then checked with util_id_valid, so no decoded byte outside
 * [A-Za-z0-9._-] reaches a module. A path no pattern matches is 404; a
 * path some pattern matches under another method is 405 with Allow.
 *
 * Order of checks for a matched route: role (401 without a valid token,
 * 403 when the token's role is below the route's), then for routes that
 * take a body its size (413) and content type (415; a missing
 * Content-Type is accepted), then the handler.
 *
 * Body limit. libevent reads the whole body before calling us and, past
 * its own limit, answers 413 itself with an HTML page we cannot change
 * (libevent 2.1 has no hook for it). So libevent's limit is set above
 * config->max_body (by max_body, at most 1 MiB more) and the dispatcher
 * enforces max_body with a JSON 413: memory stays bounded by twice the
 * limit, and only grossly oversized requests get libevent's plain answer,
 * still with status 413.
 *
 * Deferred replies. A write answers from the store's completion callback.
 * libevent 2.1 stops reading a connection while its request is with the
 * application, so the request stays valid until we reply; it can only go
 * away when the connection is freed (evhttp_free at shutdown, or a close
 * callback), and both paths detach the api_pending_t, whose callback then
 * frees it without replying.
 *
 * Loop thread only.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_internal.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

/* Longest request path we route; anything longer matches nothing. */
#define MAX_PATH 1024
#define MAX_SEGS 8
#define MAX_HEADERS_SIZE (16 * 1024)
#define HTTP_TIMEOUT_S 60

static void handle_healthz(api_req_t *r);
static void handle_metrics(api_req_t *r);

struct route {
    enum evhttp_cmd_type method;
    const char *pattern;
    api_handler_fn fn;
    role_t min_role; /* ROLE_NONE: public, no token needed */
    bool body;       /* reads a JSON request body */
};

static const struct route routes[] = {
    {EVHTTP_REQ_GET, "/healthz", handle_healthz, ROLE_NONE, false},
    {EVHTTP_REQ_GET, "/metrics", handle_metrics, ROLE_NONE, false},
    {EVHTTP_REQ_GET, "/api/v1/devices", api_devices_list, ROLE_VIEWER, false},
    {EVHTTP_REQ_POST, "/api/v1/devices", api_devices_create, ROLE_OPERATOR, true},
    {EVHTTP_REQ_GET, "/api/v1/devices/{id}", api_devices_get, ROLE_VIEWER, false},
    {EVHTTP_REQ_DELETE, "/api/v1/devices/{id}", api_devices_delete, ROLE_OPERATOR, false},
    {EVHTTP_REQ_POST, "/api/v1/devices/{id}/secret", api_devices_rotate, ROLE_OPERATOR, false},
    {EVHTTP_REQ_GET, "/api/v1/devices/{id}/telemetry", api_telemetry_query, ROLE_VIEWER, false},
    {EVHTTP_REQ_GET, "/api/v1/devices/{id}/twin", api_twin_get, ROLE_VIEWER, false},
    {EVHTTP_REQ_PUT, "/api/v1/devices/{id}/twin/desired", api_twin_put, ROLE_OPERATOR, true},
    {EVHTTP_REQ_PATCH, "/api/v1/devices/{id}/twin/desired", api_twin_patch, ROLE_OPERATOR, true},
    {EVHTTP_REQ_POST, "/api/v1/devices/{id}/commands", api_commands_create, ROLE_OPERATOR, true},
    {EVHTTP_REQ_GET, "/api/v1/devices/{id}/commands", api_commands_list, ROLE_VIEWER, false},
    {EVHTTP_REQ_GET, "/api/v1/commands/{id}", api_commands_get, ROLE_VIEWER, false},
    {EVHTTP_REQ_POST, "/api/v1/bulk/commands", api_bulk_commands, ROLE_OPERATOR, true},
    {EVHTTP_REQ_POST, "/api/v1/bulk/twin", api_bulk_twin, ROLE_OPERATOR, true},
    {EVHTTP_REQ_GET, "/api/v1/jobs/{id}", api_jobs_get, ROLE_VIEWER, false},
    /* Operators: API tokens, users, login (operators.c). */
    {EVHTTP_REQ_POST, "/api/v1/tokens", api_tokens_create, ROLE_ADMIN, true},
    {EVHTTP_REQ_GET, "/api/v1/tokens", api_tokens_list, ROLE_ADMIN, false},
    {EVHTTP_REQ_DELETE, "/api/v1/tokens/{id}", api_tokens_delete, ROLE_ADMIN, false},
    {EVHTTP_REQ_POST, "/api/v1/users", api_users_create, ROLE_ADMIN, true},
    {EVHTTP_REQ_GET, "/api/v1/users", api_users_list, ROLE_ADMIN, false},
    {EVHTTP_REQ_GET, "/api/v1/users/{id}", api_users_get, ROLE_ADMIN, false},
    {EVHTTP_REQ_PATCH, "/api/v1/users/{id}", api_users_update, ROLE_ADMIN, true},
    {EVHTTP_REQ_DELETE, "/api/v1/users/{id}", api_users_delete, ROLE_ADMIN, false},
    {EVHTTP_REQ_POST, "/api/v1/login", api_login, ROLE_NONE, true},
    /* Audit log (audit.c). */
    {EVHTTP_REQ_GET, "/api/v1/audit", api_audit_list, ROLE_ADMIN, false},
    /* PKI, provisioning and revocation (pki.c). */
    {EVHTTP_REQ_GET, "/api/v1/ca", api_ca_get, ROLE_NONE, false},
    {EVHTTP_REQ_POST, "/api/v1/devices/{id}/certificates", api_certs_create, ROLE_OPERATOR, true},
    {EVHTTP_REQ_GET, "/api/v1/devices/{id}/certificates", api_certs_list, ROLE_VIEWER, false},
    {EVHTTP_REQ_POST, "/api/v1/certificates/{id}/revoke", api_certs_revoke, ROLE_OPERATOR, false},
    {EVHTTP_REQ_POST, "/api/v1/devices/{id}/revoke", api_devices_revoke, ROLE_OPERATOR, false},
    {EVHTTP_REQ_POST, "/api/v1/devices:import", api_devices_import, ROLE_OPERATOR, false},
    {EVHTTP_REQ_POST, "/api/v1/enrollments", api_enrollments_create, ROLE_ADMIN, true},
    {EVHTTP_REQ_GET, "/api/v1/enrollments", api_enrollments_list, ROLE_OPERATOR, false},
    {EVHTTP_REQ_GET, "/api/v1/enrollments/{id}", api_enrollments_get, ROLE_OPERATOR, false},
    {EVHTTP_REQ_POST, "/api/v1/enrollments/{id}/revoke", api_enrollments_revoke, ROLE_ADMIN, false},
    {EVHTTP_REQ_POST, "/api/v1/provision", api_provision, ROLE_NONE, true},
};

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "?";
}

static const char *role_name(role_t r)
{
    switch (r) {
    case ROLE_ADMIN:
        return "admin";
    case ROLE_OPERATOR:
        return "operator";
    case ROLE_VIEWER:
        return "viewer";
    case ROLE_NONE:
        break;
    }
    return "none";
}

/* ---- Replies --------------------------------------------------------------- */

/* Auditing. Every routed request that is not a read (GET, HEAD) is
 * written to the audit log once, when its reply goes out, and so is every
 * refusal (401, 403) on any route: the reply is the one point every path
 * passes. A synchronous reply finds its request in api->current, a
 * deferred one in the pending list (one entry per request waiting for
 * the store, so the walk is short and only made for writes and refusals). */
static void audit_write(api_t *api, const api_audit_info_t *info, bool deny, const char *outcome)
{
    char action[sizeof(info->action) + 8];
    snprintf(action, sizeof(action), "%s%s", deny ? "DENY " : "", info->action);
    audit_log(api->deps.audit, info->actor, action, info->object, outcome, info->source, NULL);
}

static void audit_reply(api_t *api, struct evhttp_request *req, int status)
{
    if (api->deps.audit == NULL)
        return;
    bool deny = status == 401 || status == 403;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (!deny && (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD))
        return;
    api_audit_info_t *info = NULL;
    for (api_pending_t *p = api->pending; p != NULL && info == NULL; p = p->next)
        if (p->req == req)
            info = &p->audit;
    if (info == NULL && api->current != NULL && api->current->req == req)
        info = &api->current->audit;
    if (info == NULL || !info->on || (info->deny_only && !deny))
        return;
    info->on = false;
    char outcome[16];
    snprintf(outcome, sizeof(outcome), "%d", status);
    audit_write(api, info, deny, outcome);
}

static void send_reply(api_t *api, struct evhttp_request *req, int status, struct evbuffer *buf)
{
    int cls = status / 100;
    if (cls >= 1 && cls <= 5)
        api->responses[cls]++;
    audit_reply(api, req, status);
    evhttp_send_reply(req, status, NULL, buf);
}

/* Digits a real needs to read back as the same double (at most 17). */
static int real_digits(double d)
{
    char buf[40];
    for (int p = 1; p < 17; p++) {
        snprintf(buf, sizeof(buf), "%.*g", p, d);
        if (strtod(buf, NULL) == d)
            return p;
    }
    return 17;
}

/* The precision that prints every real in v exactly and no longer than it
 * must: jansson prints all reals of a document with one precision, and its
 * default (17) turns 23.1 into 23.100000000000001. */
static int doc_precision(const json_t *v, int have)
{
    if (have >= 17)
        return have;
    if (json_is_real(v)) {
        int p = real_digits(json_real_value(v));
        return p > have ? p : have;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c)
        {
            have = doc_precision(c, have);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
        {
            have = doc_precision(c, have);
        }
    }
    return have;
}

void api_reply_json(api_t *api, struct evhttp_request *req, int status, json_t *body)
{
    static const char oom[] = "{\"error\":\"internal\",\"detail\":\"out of memory\"}\n";
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *buf = evbuffer_new();
    char *text = NULL;
    if (body != NULL) {
        int prec = doc_precision(body, 1);
        text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(prec));
    }
    json_decref(body);
    if (buf == NULL || (body != NULL && text == NULL)) {
        if (buf != NULL)
            evbuffer_add(buf, oom, sizeof(oom) - 1);
        send_reply(api, req, 500, buf);
    } else {
        if (text != NULL) {
            evbuffer_add(buf, text, strlen(text));
            evbuffer_add(buf, "\n", 1);
        }
        send_reply(api, req, status, buf);
    }
    free(text);
    if (buf != NULL)
        evbuffer_free(buf);
}

void api_reply_error(api_t *api, struct evhttp_request *req, int status, const char *code,
                     const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    if (o != NULL) {
        json_object_set_new(o, "error", json_string(code));
        /* detail may quote client bytes that are not UTF-8 */
        json_t *d = json_string(detail);
        json_object_set_new(o, "detail", d != NULL ? d : json_string("(not printable)"));
    }
    api_reply_json(api, req, status, o);
}

void api_reply_errno(api_t *api, struct evhttp_request *req, int rc, const char *what)
{
    switch (rc) {
    case -ENOENT:
        api_reply_error(api, req, 404, "not_found", "not found");
        return;
    case -EEXIST:
        api_reply_error(api, req, 409, "conflict", "already exists");
        return;
    case -EINVAL:
        api_reply_error(api, req, 400, "bad_request", "invalid request");
        return;
    case -ENOSPC:
    case -EBUSY:
    case -EAGAIN:
    case -ENOMEM:
        log_warn("api: %s: %s", what, strerror(-rc));
        api_reply_error(api, req, 503, "unavailable", "%s failed: %s; try again later", what,
                        strerror(-rc));
        return;
    default:
        log_error("api: %s: %s", what, strerror(rc < 0 ? -rc : rc));
        api_reply_error(api, req, 500, "internal", "%s failed", what);
        return;
    }
}

void api_reply_list(api_t *api, struct evhttp_request *req, json_t *arr, int rc, const char *key,
                    const char *what)
{
    if (arr == NULL && rc >= 0)
        rc = -ENOMEM;
    if (rc < 0) {
        json_decref(arr);
        api_reply_errno(api, req, rc, what);
        return;
    }
    api_reply_json(api, req, 200, json_pack("{s:o}", key, arr));
}

void api_reply_empty(api_t *api, struct evhttp_request *req, int status)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    send_reply(api, req, status, NULL);
}

void api_reply_buffer(api_t *api, struct evhttp_request *req, int status, const char *content_type,
                      struct evbuffer *buf)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    send_reply(api, req, status, buf);
}

int api_body_json(api_req_t *r, json_t **out)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t len = evbuffer_get_length(in);
    if (len == 0) {
        api_reply_error(r->api, r->req, 400, "bad_request", "the request body is empty");
        return -EINVAL;
    }
    const char *data = (const char *)evbuffer_pullup(in, -1);
    if (data == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        return -ENOMEM;
    }
    char err[200];
    json_t *v = json_util_parse(data, len, err, sizeof(err));
    if (v == NULL) {
        api_reply_error(r->api, r->req, 400, "bad_request", "invalid JSON: %s", err);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int api_query_parse(api_req_t *r, struct evkeyvalq *q)
{
    q->tqh_first = NULL;
    q->tqh_last = &q->tqh_first;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r->req);
    const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
    if (query == NULL || *query == '\0')
        return 0;
    /* libevent decodes values into C strings: an encoded NUL would cut a
     * value short silently, so refuse it outright. */
    if (strstr(query, "%00") != NULL || evhttp_parse_query_str(query, q) < 0) {
        evhttp_clear_headers(q); /* leaves q empty and valid */
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "malformed query string (expected key=value pairs joined by &)");
        return -EINVAL;
    }
    return 0;
}

int api_query_get(api_req_t *r, struct evkeyvalq *q, const char *key, const char **out)
{
    const char *found = NULL;
    /* The queue macros are not part of libevent's API: walk it by hand. */
    for (struct evkeyval *kv = q->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
        if (strcmp(kv->key, key) != 0)
            continue;
        if (found != NULL) {
            api_reply_error(r->api, r->req, 400, "bad_request",
                            "query parameter \"%s\" given more than once", key);
            return -EINVAL;
        }
        found = kv->value;
    }
    *out = found;
    return 0;
}

int api_query_int(api_req_t *r, struct evkeyvalq *q, const char *key, int64_t min, int64_t max,
                  int64_t dflt, int64_t *out)
{
    const char *s;
    if (api_query_get(r, q, key, &s) < 0)
        return -EINVAL;
    if (s == NULL) {
        *out = dflt;
        return 0;
    }
    int64_t v;
    if (util_parse_i64(s, &v) < 0 || v < min || v > max) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"%s\" must be an integer from %" PRId64 " to %" PRId64, key, min, max);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

bool api_store_busy(api_req_t *r)
{
    if (store_pending(r->api->deps.store) < API_MAX_STORE_PENDING)
        return false;
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After", "1");
    api_reply_error(r->api, r->req, 503, "unavailable",
                    "the store is behind on writes; try again shortly");
    return true;
}

/* ---- Deferred replies ------------------------------------------------------ */

static void detach(api_pending_t *p)
{
    p->req = NULL;
    p->evcon = NULL;
}

/* A connection is being freed: requests on it can no longer be answered. */
static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    api_t *api = arg;
    for (api_pending_t *p = api->pending; p != NULL; p = p->next)
        if (p->evcon == evcon)
            detach(p);
}

api_pending_t *api_pending_new(api_req_t *r)
{
    api_pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->api = r->api;
    p->req = r->req;
    p->evcon = evhttp_request_get_connection(r->req);
    if (r->id != NULL)
        snprintf(p->id, sizeof(p->id), "%s", r->id);
    p->audit = r->audit;
    if (r->id != NULL) /* a create names its new object here */
        snprintf(p->audit.object, sizeof(p->audit.object), "%s", r->id);
    if (p->evcon != NULL)
        evhttp_connection_set_closecb(p->evcon, conn_closed, r->api);
    p->next = r->api->pending;
    if (p->next != NULL)
        p->next->prev = p;
    r->api->pending = p;
    return p;
}

void api_pending_free(api_pending_t *p)
{
    if (p == NULL)
        return;
    /* The client left before its write was answered: the write still
     * happened (or failed), so it is still on the record. */
    if (p->api != NULL && p->req == NULL && p->audit.on && !p->audit.deny_only &&
        p->api->deps.audit != NULL)
        audit_write(p->api, &p->audit, false, "disconnected");
    if (p->api != NULL) {
        if (p->prev != NULL)
            p->prev->next = p->next;
        else
            p->api->pending = p->next;
        if (p->next != NULL)
            p->next->prev = p->prev;
    }
    free(p);
}

/* ---- Public endpoints -------------------------------------------------------- */

static void handle_healthz(api_req_t *r)
{
    api_reply_json(r->api, r->req, 200, json_pack("{s:s}", "status", "ok"));
}

static void metric(struct evbuffer *b, const char *name, const char *type, const char *help,
                   uint64_t value)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type,
                        name, value);
}

static void handle_metrics(api_req_t *r)
{
    api_t *api = r->api;
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        api_reply_error(api, r->req, 500, "internal", "out of memory");
        return;
    }
    registry_t *reg = api->deps.registry;
    metric(b, "drover_devices_total", "gauge", "Devices in the registry.",
           reg != NULL ? registry_count(reg) : 0);
    metric(b, "drover_devices_online", "gauge", "Devices with a live connection.",
           reg != NULL ? registry_online_count(reg) : 0);
    metric(b, "drover_store_pending_jobs", "gauge",
           "Store write jobs submitted and not yet completed.",
           api->deps.store != NULL ? store_pending(api->deps.store) : 0);
    metric(b, "drover_http_requests_total", "counter", "HTTP requests routed by the API.",
           api->requests);
    metric(b, "drover_audit_lost_total", "counter", "Audit entries that could not be stored.",
           audit_lost(api->deps.audit));
    evbuffer_add_printf(b, "# HELP drover_http_responses_total HTTP responses sent by the API, "
                           "by status class.\n# TYPE drover_http_responses_total counter\n");
    for (int c = 1; c <= 5; c++)
        evbuffer_add_printf(b, "drover_http_responses_total{code=\"%dxx\"} %" PRIu64 "\n", c,
                            api->responses[c]);
    if (api->deps.metrics != NULL)
        api->deps.metrics(api->deps.metrics_ctx, b);
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    send_reply(api, r->req, 200, b);
    evbuffer_free(b);
}

/* ---- Dispatch ----------------------------------------------------------------- */

/* The request path, split and decoded. segs[i] is NULL for a segment
 * whose decoding holds a NUL byte (it matches nothing). */
struct path {
    char *segs[MAX_SEGS];
    size_t n;
};

static void path_fini(struct path *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->segs[i]);
    p->n = 0;
}

/* -ENOENT when the path cannot match any route (too long, too deep). */
static int path_split(const char *raw, struct path *out)
{
    char buf[MAX_PATH];
    struct path p = {{NULL}, 0};
    size_t len = strnlen(raw, MAX_PATH);
    if (raw[0] != '/' || len >= MAX_PATH)
        return -ENOENT;
    memcpy(buf, raw, len + 1);
    char *s = buf + 1;
    for (;;) {
        char *slash = strchr(s, '/');
        if (slash != NULL)
            *slash = '\0';
        if (p.n == MAX_SEGS) {
            path_fini(&p);
            return -ENOENT;
        }
        size_t dlen;
        char *dec = evhttp_uridecode(s, 0, &dlen);
        if (dec == NULL) {
            path_fini(&p);
            return -ENOMEM;
        }
        if (strlen(dec) != dlen) {
            free(dec);
            dec = NULL;
        }
        p.segs[p.n++] = dec;
        if (slash == NULL)
            break;
        s = slash + 1;
    }
    *out = p;
    return 0;
}

/* Does path match pattern? *id_seg is the index of the {id} segment. */
static bool pattern_match(const char *pattern, const struct path *p, int *id_seg)
{
    const char *s = pattern + 1;
    size_t i = 0;
    *id_seg = -1;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t len = slash != NULL ? (size_t)(slash - s) : strlen(s);
        if (i >= p->n)
            return false;
        if (len == 4 && memcmp(s, "{id}", 4) == 0)
            *id_seg = (int)i;
        else if (p->segs[i] == NULL || strlen(p->segs[i]) != len || memcmp(p->segs[i], s, len))
            return false;
        i++;
        if (slash == NULL)
            break;
        s = slash + 1;
    }
    return i == p->n;
}

/* application/json, or application/merge-patch+json (RFC 7396) which is
 * JSON too. */
static bool is_json_type(const char *ct)
{
    static const char want[] = "application/json";
    static const char patch[] = "application/merge-patch+json";
    size_t n = sizeof(want) - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, patch, sizeof(patch) - 1) == 0)
        n = sizeof(patch) - 1;
    else if (strncasecmp(ct, want, n) != 0)
        return false;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/* What the audit log will need of a routed request (see audit_reply). */
static void audit_prepare(api_req_t *r, enum evhttp_cmd_type m, const char *pattern, const char *id)
{
    api_audit_info_t *a = &r->audit;
    a->on = true;
    a->deny_only = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
    snprintf(a->actor, sizeof(a->actor), "anonymous");
    snprintf(a->action, sizeof(a->action), "%s %s", method_name(m), pattern);
    if (id != NULL && util_id_valid(id, strlen(id)))
        snprintf(a->object, sizeof(a->object), "%s", id);
    struct evhttp_connection *c = evhttp_request_get_connection(r->req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (c != NULL)
        evhttp_connection_get_peer(c, &addr, &port);
    if (addr != NULL && strchr(addr, ':') != NULL)
        snprintf(a->source, sizeof(a->source), "[%s]:%u", addr, (unsigned)port);
    else if (addr != NULL)
        snprintf(a->source, sizeof(a->source), "%s:%u", addr, (unsigned)port);
}

/* 0 and r->role when the bearer token is good; otherwise replies. */
static int authenticate(api_req_t *r, role_t need)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r->req), "Authorization");
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        evhttp_add_header(out, "WWW-Authenticate", "Bearer");
        api_reply_error(r->api, r->req, 401, "unauthorized",
                        "this needs an \"Authorization: Bearer <token>\" header");
        return -EACCES;
    }
    const char *t = h + 7;
    while (*t == ' ' || *t == '\t')
        t++;
    size_t len = strcspn(t, " \t");
    const char *rest = t + len;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    char token[TOKENS_LEN + 1];
    int rc = -EACCES;
    role_t role = ROLE_NONE;
    if (len == TOKENS_LEN && *rest == '\0') {
        memcpy(token, t, len);
        token[len] = '\0';
        rc = tokens_verify(r->api->deps.store, token, &role, &r->token);
    }
    if (rc == 0) {
        /* A password login mints a token named "login:<user>". */
        const char *n = r->token.name;
        bool user = strncmp(n, "login:", 6) == 0;
        snprintf(r->audit.actor, sizeof(r->audit.actor), "%s:%.*s", user ? "user" : "token",
                 (int)sizeof(r->audit.actor) - 7, user ? n + 6 : n);
    }
    if (rc == -EACCES) {
        evhttp_add_header(out, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        api_reply_error(r->api, r->req, 401, "unauthorized", "unknown or expired token");
        return rc;
    }
    if (rc < 0) {
        api_reply_errno(r->api, r->req, rc, "checking the token");
        return rc;
    }
    if (role < need) {
        api_reply_error(r->api, r->req, 403, "forbidden",
                        "this needs the %s role; the token has %s", role_name(need),
                        role_name(role));
        return -EPERM;
    }
    r->role = role;
    return 0;
}

/* What the {id} of a route pattern names: the collection before it,
 * singular ("/api/v1/users/{id}" -> "user"). */
static const char *id_noun(const char *pattern)
{
    static const struct {
        const char *collection, *noun;
    } nouns[] = {{"/devices/{id}", "device"},
                 {"/commands/{id}", "command"},
                 {"/jobs/{id}", "job"},
                 {"/tokens/{id}", "token"},
                 {"/users/{id}", "user"},
                 {"/certificates/{id}", "certificate"},
                 {"/enrollments/{id}", "enrollment"}};
    for (size_t i = 0; i < ARRAY_SIZE(nouns); i++) {
        if (strstr(pattern, nouns[i].collection) != NULL)
            return nouns[i].noun;
    }
    return "resource";
}

static void dispatch(struct evhttp_request *req, void *arg)
{
    api_t *api = arg;
    api->requests++;
    api_req_t r = {.api = api, .req = req};

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *raw = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    struct path p = {{NULL}, 0};
    int rc = raw != NULL ? path_split(raw, &p) : -ENOENT;
    if (rc == -ENOMEM) {
        api_reply_error(api, req, 500, "internal", "out of memory");
        return;
    }

    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    enum evhttp_cmd_type as = m == EVHTTP_REQ_HEAD ? EVHTTP_REQ_GET : m;
    const struct route *route = NULL;
    int id_seg = -1;
    char allow[64] = "";
    for (size_t i = 0; rc == 0 && i < ARRAY_SIZE(routes); i++) {
        int seg;
        if (!pattern_match(routes[i].pattern, &p, &seg))
            continue;
        if (routes[i].method == as) {
            route = &routes[i];
            id_seg = seg;
            break;
        }
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof(allow) - used, "%s%s%s", used ? ", " : "",
                 method_name(routes[i].method), routes[i].method == EVHTTP_REQ_GET ? ", HEAD" : "");
    }
    if (route == NULL && allow[0] != '\0') {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
        api_reply_error(api, req, 405, "method_not_allowed", "%s is not allowed here; use %s",
                        method_name(m), allow);
        goto done;
    }
    if (route == NULL) {
        api_reply_error(api, req, 404, "not_found", "no such path");
        goto done;
    }

    audit_prepare(&r, m, route->pattern, id_seg >= 0 ? p.segs[id_seg] : NULL);
    api->current = &r;
    if (route->min_role > ROLE_NONE && authenticate(&r, route->min_role) < 0)
        goto done;

    if (id_seg >= 0) {
        const char *id = p.segs[id_seg];
        if (id == NULL || !util_id_valid(id, strlen(id))) {
            api_reply_error(api, req, 404, "not_found", "no such %s", id_noun(route->pattern));
            goto done;
        }
        r.id = id;
    }

    if (route->body) {
        size_t len = evbuffer_get_length(evhttp_request_get_input_buffer(req));
        uint32_t max = api->deps.config->max_body;
        if (len > max) {
            api_reply_error(api, req, 413, "payload_too_large",
                            "the request body is larger than %" PRIu32 " bytes", max);
            goto done;
        }
        const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        if (ct != NULL && !is_json_type(ct)) {
            api_reply_error(api, req, 415, "unsupported_media_type",
                            "the request body must be application/json");
            goto done;
        }
    }

    route->fn(&r);

done:
    api->current = NULL;
    path_fini(&p);
}

/* ---- Life cycle ------------------------------------------------------------------ */

/* Each HTTPS connection gets an OpenSSL bufferevent in accepting mode. */
static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    api_t *api = arg;
    SSL *ssl = SSL_new(api->ssl_ctx);
    if (ssl == NULL)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* One evhttp server bound to host:port; the same dispatcher serves HTTP and
 * HTTPS. On failure *rc is set and NULL returned. */
static struct evhttp *server_new(api_t *api, const char *host, int port, int *rc)
{
    struct evhttp *http = evhttp_new(api->base);
    if (http == NULL) {
        *rc = -ENOMEM;
        return NULL;
    }
    size_t max = api->deps.config->max_body;
    size_t slack = max < 1024 * 1024 ? max : 1024 * 1024;
    evhttp_set_max_body_size(http, (ev_ssize_t)(max + slack));
    evhttp_set_max_headers_size(http, MAX_HEADERS_SIZE);
    evhttp_set_timeout(http, HTTP_TIMEOUT_S);
    /* Every method reaches the dispatcher, so a wrong one gets our 405. */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_TRACE | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(http, dispatch, api);
    errno = 0;
    if (evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)port) == NULL) {
        *rc = errno == EADDRINUSE ? -EADDRINUSE : errno == EACCES ? -EACCES : -EINVAL;
        evhttp_free(http);
        return NULL;
    }
    return http;
}

int api_listen_tls(api_t *api, const char *host, int port, struct ssl_ctx_st *ctx)
{
    int rc;
    if (api->https != NULL)
        return -EINVAL;
    api->ssl_ctx = ctx;
    api->https = server_new(api, host, port, &rc);
    if (api->https == NULL)
        return rc;
    evhttp_set_bevcb(api->https, tls_bev, api);
    return 0;
}

int api_new(struct event_base *base, const char *host, int port, const api_deps_t *deps,
            api_t **out)
{
    int rc;
    api_t *api = calloc(1, sizeof(*api));
    if (api == NULL)
        return -ENOMEM;
    api->base = base;
    api->deps = *deps;
    api->http = server_new(api, host, port, &rc);
    if (api->http == NULL)
        goto fail;
    *out = api;
    return 0;

fail:
    api_free(api);
    return rc;
}

void api_free(api_t *api)
{
    if (api == NULL)
        return;
    /* Completions still to come must not reply on freed requests. */
    for (api_pending_t *p = api->pending; p != NULL; p = p->next) {
        detach(p);
        p->api = NULL;
    }
    api->pending = NULL;
    if (api->http != NULL)
        evhttp_free(api->http);
    if (api->https != NULL)
        evhttp_free(api->https);
    free(api);
}

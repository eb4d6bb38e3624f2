/*
 * Configuration and control resources: the device twin, commands, bulk
 * operations and their jobs. Every handler validates its input, calls the
 * twin, commands or jobs module, and maps their errno results to statuses.
 * Writes answer from the module's completion (a deferred reply).
 *
 *   GET   /api/v1/devices/{id}/twin
 *   PUT   /api/v1/devices/{id}/twin/desired      body: the whole desired state
 *   PATCH /api/v1/devices/{id}/twin/desired      body: an RFC 7396 merge patch
 *         (both take If-Match: <desired_version>, else 412)
 *   POST  /api/v1/devices/{id}/commands          {"name", "params", "timeout_s"}
 *   GET   /api/v1/devices/{id}/commands          ?limit=&cursor=
 *   GET   /api/v1/commands/{id}                  ?wait=seconds (long poll)
 *   POST  /api/v1/bulk/commands                  {"target", "name", "params", "timeout_s"}
 *   POST  /api/v1/bulk/twin                      {"target", "patch"}
 *   GET   /api/v1/jobs/{id}                      ?limit=&cursor=
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "api/api_internal.h"
#include "common/util.h"

/* Longest a ?wait= long poll may hold a request. */
#define MAX_WAIT_S 60

/* ---- Twin ----------------------------------------------------------------- */

void api_twin_get(api_req_t *r)
{
    json_t *out;
    int rc = twin_get(r->api->deps.twin, r->id, &out);
    if (rc == -ENOENT) {
        api_reply_error(r->api, r->req, 404, "not_found", "no device '%s'", r->id);
        return;
    }
    if (rc < 0) {
        api_reply_errno(r->api, r->req, rc, "reading the twin");
        return;
    }
    api_reply_json(r->api, r->req, 200, out);
}

static void twin_written(void *arg, int rc, int64_t version)
{
    (void)version;
    api_pending_t *p = arg;
    if (p->req == NULL) {
        api_pending_free(p);
        return;
    }
    api_t *api = p->api;
    switch (rc) {
    case 0: {
        json_t *out;
        rc = twin_get(api->deps.twin, p->id, &out);
        if (rc == 0)
            api_reply_json(api, p->req, 200, out);
        else
            api_reply_errno(api, p->req, rc, "reading the twin");
        break;
    }
    case -ENOENT:
        api_reply_error(api, p->req, 404, "not_found", "no device '%s'", p->id);
        break;
    case -EINVAL:
        api_reply_error(api, p->req, 400, "bad_request", "the desired state must be a JSON object");
        break;
    case -E2BIG:
        api_reply_error(api, p->req, 413, "payload_too_large",
                        "the desired state would be over the twin limits (max_twin_bytes %u, "
                        "max_twin_depth %u)",
                        api->deps.config->max_twin_bytes, api->deps.config->max_twin_depth);
        break;
    case -ESTALE:
        api_reply_error(api, p->req, 412, "precondition_failed",
                        "If-Match does not name the current desired_version");
        break;
    default:
        api_reply_errno(api, p->req, rc, "writing the twin");
        break;
    }
    api_pending_free(p);
}

/* If-Match: a version number, optionally quoted as an entity tag. */
static int if_match(api_req_t *r, int64_t *out)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r->req), "If-Match");
    *out = -1;
    if (h == NULL)
        return 0;
    char buf[32];
    size_t n = strlen(h);
    if (n >= 2 && h[0] == '"' && h[n - 1] == '"') {
        h++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(buf))
        goto bad;
    memcpy(buf, h, n);
    buf[n] = '\0';
    if (util_parse_i64(buf, out) < 0 || *out < 0)
        goto bad;
    return 0;
bad:
    api_reply_error(r->api, r->req, 400, "bad_request",
                    "If-Match must be a desired_version number");
    return -EINVAL;
}

static void twin_write(api_req_t *r, bool patch)
{
    json_t *body = NULL;
    int64_t version;
    if (api_store_busy(r) || if_match(r, &version) < 0 || api_body_json(r, &body) < 0)
        return;
    if (!json_is_object(body)) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        patch ? "the body must be a JSON merge patch object"
                              : "the body must be the desired state, a JSON object");
        json_decref(body);
        return;
    }
    api_pending_t *p = api_pending_new(r);
    if (p == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        json_decref(body);
        return;
    }
    twin_desired_update(r->api->deps.twin, r->id, body, patch, version, twin_written, p);
    json_decref(body);
}

void api_twin_put(api_req_t *r)
{
    twin_write(r, false);
}

void api_twin_patch(api_req_t *r)
{
    twin_write(r, true);
}

/* ---- Commands ------------------------------------------------------------- */

/* Reads {"name", "params", "timeout_s"} into spec (borrowing from body). */
static int parse_spec(api_req_t *r, const json_t *body, commands_spec_t *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->name = json_string_value(json_object_get(body, "name"));
    spec->params = json_object_get(body, "params");
    if (json_is_null(spec->params))
        spec->params = NULL;
    const json_t *t = json_object_get(body, "timeout_s");
    if (t != NULL && !json_is_null(t)) {
        if (!json_is_integer(t) || json_integer_value(t) < 1) {
            api_reply_error(r->api, r->req, 400, "bad_request",
                            "\"timeout_s\" must be a positive integer (seconds)");
            return -EINVAL;
        }
        spec->timeout_s = json_integer_value(t);
    }
    char err[160];
    int rc = commands_spec_check(r->api->deps.commands, spec, err, sizeof(err));
    if (rc < 0) {
        api_reply_error(r->api, r->req, rc == -E2BIG ? 413 : 400,
                        rc == -E2BIG ? "payload_too_large" : "bad_request", "%s", err);
        return rc;
    }
    return 0;
}

static void command_created(void *arg, int rc, const store_command_t *cmd)
{
    api_pending_t *p = arg;
    if (p->req == NULL) {
        api_pending_free(p);
        return;
    }
    api_t *api = p->api;
    if (rc == 0) {
        json_t *o = commands_json(cmd);
        if (o != NULL) {
            char loc[128];
            snprintf(loc, sizeof(loc), "/api/v1/commands/%s", cmd->id);
            evhttp_add_header(evhttp_request_get_output_headers(p->req), "Location", loc);
            api_reply_json(api, p->req, 201, o);
        } else {
            api_reply_error(api, p->req, 500, "internal", "out of memory");
        }
    } else if (rc == -ENOENT) {
        api_reply_error(api, p->req, 404, "not_found", "no device '%s'", p->id);
    } else if (rc == -EBUSY) {
        api_reply_error(api, p->req, 429, "too_many_requests",
                        "device '%s' already has %u open commands (max_open_commands)", p->id,
                        api->deps.config->max_open_commands);
    } else {
        api_reply_errno(api, p->req, rc, "creating the command");
    }
    api_pending_free(p);
}

void api_commands_create(api_req_t *r)
{
    json_t *body = NULL;
    if (api_store_busy(r) || api_body_json(r, &body) < 0)
        return;
    commands_spec_t spec;
    if (!json_is_object(body)) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "the body must be {\"name\", \"params\", \"timeout_s\"}");
        goto done;
    }
    if (parse_spec(r, body, &spec) < 0)
        goto done;
    if (registry_find(r->api->deps.registry, r->id) == NULL) {
        api_reply_error(r->api, r->req, 404, "not_found", "no device '%s'", r->id);
        goto done;
    }
    api_pending_t *p = api_pending_new(r);
    if (p == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        goto done;
    }
    commands_create(r->api->deps.commands, r->id, &spec, command_created, p);
done:
    json_decref(body);
}

struct listctx {
    json_t *arr;
    int64_t last_ts;
    char last_id[40];
};

static int list_one(void *arg, const store_command_t *c)
{
    struct listctx *l = arg;
    json_t *o = commands_json(c);
    if (o == NULL || json_array_append_new(l->arr, o) < 0)
        return -ENOMEM;
    l->last_ts = c->created_at;
    snprintf(l->last_id, sizeof(l->last_id), "%s", c->id);
    return 0;
}

void api_commands_list(api_req_t *r)
{
    struct evkeyvalq q;
    if (api_query_parse(r, &q) < 0)
        return;
    int64_t limit;
    const char *cursor = NULL;
    int64_t before_ts = INT64_MAX;
    char before_id[40] = "";
    if (api_query_int(r, &q, "limit", 1, 1000, 100, &limit) < 0 ||
        api_query_get(r, &q, "cursor", &cursor) < 0)
        goto done;
    if (cursor != NULL) {
        /* "<created_at>.<command id>", as this route hands out. */
        const char *dot = strchr(cursor, '.');
        char num[24];
        size_t nl = dot ? (size_t)(dot - cursor) : 0;
        if (dot == NULL || nl == 0 || nl >= sizeof(num) || strlen(dot + 1) >= sizeof(before_id) ||
            !util_id_valid(dot + 1, strlen(dot + 1))) {
            api_reply_error(r->api, r->req, 400, "bad_request", "malformed cursor");
            goto done;
        }
        memcpy(num, cursor, nl);
        num[nl] = '\0';
        if (util_parse_i64(num, &before_ts) < 0) {
            api_reply_error(r->api, r->req, 400, "bad_request", "malformed cursor");
            goto done;
        }
        snprintf(before_id, sizeof(before_id), "%s", dot + 1);
    }
    struct listctx l = {json_array(), 0, ""};
    int n = commands_list(r->api->deps.commands, r->id, before_ts, before_id[0] ? before_id : NULL,
                          (int)limit, list_one, &l);
    if (n == -ENOENT) {
        json_decref(l.arr);
        api_reply_error(r->api, r->req, 404, "not_found", "no device '%s'", r->id);
        goto done;
    }
    if (n < 0 || l.arr == NULL) {
        json_decref(l.arr);
        api_reply_errno(r->api, r->req, n < 0 ? n : -ENOMEM, "listing commands");
        goto done;
    }
    char next[80];
    snprintf(next, sizeof(next), "%" PRId64 ".%s", l.last_ts, l.last_id);
    api_reply_json(r->api, r->req, 200,
                   json_pack("{s:o, s:o}", "commands", l.arr, "next",
                             n == limit ? json_string(next) : json_null()));
done:
    evhttp_clear_headers(&q);
}

/* A long poll: the waiter answers when the command ends or time is up. A
 * client that leaves early is noticed when the answer finds p->req NULL;
 * the waiter's timer bounds how long it lives. */
static void wait_answer(void *arg, int rc, const store_command_t *cmd)
{
    api_pending_t *p = arg;
    if (p->req != NULL) {
        if (cmd != NULL && (rc == 0 || rc == -ETIMEDOUT))
            api_reply_json(p->api, p->req, 200, commands_json(cmd));
        else if (rc == -ENOENT)
            api_reply_error(p->api, p->req, 404, "not_found", "no command '%s'", p->id);
        else
            api_reply_errno(p->api, p->req, rc, "reading the command");
    }
    api_pending_free(p);
}

void api_commands_get(api_req_t *r)
{
    struct evkeyvalq q;
    if (api_query_parse(r, &q) < 0)
        return;
    int64_t wait;
    if (api_query_int(r, &q, "wait", 0, MAX_WAIT_S, 0, &wait) < 0)
        goto done;
    if (wait == 0) {
        store_command_t cmd;
        int rc = commands_get(r->api->deps.commands, r->id, &cmd);
        if (rc == -ENOENT)
            api_reply_error(r->api, r->req, 404, "not_found", "no command '%s'", r->id);
        else if (rc < 0)
            api_reply_errno(r->api, r->req, rc, "reading the command");
        else
            api_reply_json(r->api, r->req, 200, commands_json(&cmd));
        if (rc == 0)
            store_command_fini(&cmd);
        goto done;
    }
    api_pending_t *p = api_pending_new(r);
    if (p == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        goto done;
    }
    /* May answer before it returns (the command has already ended). */
    commands_wait(r->api->deps.commands, r->id, wait * 1000, wait_answer, p);
done:
    evhttp_clear_headers(&q);
}

/* ---- Bulk operations and jobs ---------------------------------------------- */

static void reply_job_error(api_req_t *r, int rc, const char *err)
{
    switch (rc) {
    case -EINVAL:
        api_reply_error(r->api, r->req, 400, "bad_request", "%s", err);
        break;
    case -ENOENT:
        api_reply_error(r->api, r->req, 404, "not_found", "%s", err);
        break;
    case -E2BIG:
        api_reply_error(r->api, r->req, 413, "payload_too_large", "%s", err);
        break;
    default:
        api_reply_errno(r->api, r->req, rc, "starting the job");
        break;
    }
}

static void reply_job(api_req_t *r, json_t *job)
{
    char loc[96];
    snprintf(loc, sizeof(loc), "/api/v1/jobs/%s", json_string_value(json_object_get(job, "id")));
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Location", loc);
    api_reply_json(r->api, r->req, 202, job);
}

void api_bulk_commands(api_req_t *r)
{
    json_t *body = NULL, *job = NULL;
    if (api_store_busy(r) || api_body_json(r, &body) < 0)
        return;
    commands_spec_t spec;
    if (!json_is_object(body)) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "the body must be {\"target\", \"name\", \"params\", \"timeout_s\"}");
        goto done;
    }
    if (parse_spec(r, body, &spec) < 0)
        goto done;
    char err[200] = "";
    int rc = jobs_start_command(r->api->deps.jobs, json_object_get(body, "target"), &spec, &job,
                                err, sizeof(err));
    if (rc < 0)
        reply_job_error(r, rc, err);
    else
        reply_job(r, job);
done:
    json_decref(body);
}

void api_bulk_twin(api_req_t *r)
{
    json_t *body = NULL, *job = NULL;
    if (api_store_busy(r) || api_body_json(r, &body) < 0)
        return;
    if (!json_is_object(body)) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "the body must be {\"target\", \"patch\"}");
        goto done;
    }
    char err[200] = "";
    int rc = jobs_start_twin(r->api->deps.jobs, json_object_get(body, "target"),
                             json_object_get(body, "patch"), &job, err, sizeof(err));
    if (rc < 0)
        reply_job_error(r, rc, err);
    else
        reply_job(r, job);
done:
    json_decref(body);
}

void api_jobs_get(api_req_t *r)
{
    struct evkeyvalq q;
    if (api_query_parse(r, &q) < 0)
        return;
    int64_t limit;
    const char *cursor = NULL;
    if (api_query_int(r, &q, "limit", 1, 10000, 1000, &limit) < 0 ||
        api_query_get(r, &q, "cursor", &cursor) < 0)
        goto done;
    if (cursor != NULL && !util_id_valid(cursor, strlen(cursor))) {
        api_reply_error(r->api, r->req, 400, "bad_request", "malformed cursor");
        goto done;
    }
    json_t *out;
    int rc = jobs_get(r->api->deps.jobs, r->id, cursor, (int)limit, &out);
    if (rc == -ENOENT)
        api_reply_error(r->api, r->req, 404, "not_found", "no job '%s'", r->id);
    else if (rc < 0)
        api_reply_errno(r->api, r->req, rc, "reading the job");
    else
        api_reply_json(r->api, r->req, 200, out);
done:
    evhttp_clear_headers(&q);
}

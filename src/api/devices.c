/*
 * /api/v1/devices: create, list, read, delete, rotate the secret.
 *
 * Reads are synchronous (registry_get/list read the store's read
 * connection, presence comes from memory). Writes go through the registry,
 * which commits to the store first; the reply is sent from the registry's
 * completion callback through an api_pending_t, so a 201/204/200 means the
 * change is durable.
 *
 * Listing pages by id: the cursor is the last id of the previous page.
 * The online filter is applied here, from memory, so the store is read in
 * chunks until the page is full or the store is exhausted. To keep one
 * request from holding the loop while it scans a large fleet for a few
 * online devices, a request scans at most LIST_SCAN_MAX devices; it then
 * answers with the matches so far and a cursor at the last device scanned,
 * so a page may be short while "next" is still non-null.
 *
 * Loop thread only.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "common/util.h"
#include "telemetry/telemetry.h"

#define TAGS_MAX 64
#define TAG_KEY_MAX 64
#define TAG_VALUE_MAX 256
#define LIST_LIMIT_MAX 1000
#define LIST_LIMIT_DEFAULT 100
#define LIST_CHUNK 500
#define LIST_SCAN_MAX 20000

/* ---- Shared JSON shapes ---------------------------------------------------- */

json_t *api_value_json(const store_value_t *v)
{
    switch (v->kind) {
    case STORE_VALUE_BOOL:
        return json_boolean(v->num != 0);
    case STORE_VALUE_STRING: {
        json_t *s = json_string(v->str != NULL ? v->str : "");
        return s != NULL ? s : json_null();
    }
    case STORE_VALUE_NUMBER:
        break;
    }
    double n = v->num;
    if (!isfinite(n))
        return json_null();
    /* 2^53: beyond it not every integer is a double, so keep the real. */
    if (n >= -9007199254740992.0 && n <= 9007199254740992.0 && (double)(json_int_t)n == n)
        return json_integer((json_int_t)n);
    return json_real(n);
}

json_t *api_device_json(const store_device_t *d)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_t *tags = json_loads(d->tags_json != NULL ? d->tags_json : "{}", 0, NULL);
    if (!json_is_object(tags)) {
        json_decref(tags);
        tags = json_object();
    }
    json_object_set_new(o, "id", json_string(d->id));
    json_object_set_new(o, "tags", tags);
    json_object_set_new(o, "online", json_boolean(d->online));
    json_object_set_new(o, "last_seen",
                        d->last_seen > 0 ? json_integer(d->last_seen) : json_null());
    json_object_set_new(o, "created_at", json_integer(d->created_at));
    return o;
}

/* ---- GET /api/v1/devices ---------------------------------------------------- */

struct list_state {
    json_t *arr;
    int limit;
    int online; /* -1: no filter, else 0/1 */
    int found;
    bool more; /* a match beyond the page exists */
    int scanned;
    char last_scanned[DROVER_ID_MAX + 1];
    char last_returned[DROVER_ID_MAX + 1];
    int err;
};

static int list_one(void *arg, const store_device_t *d)
{
    struct list_state *s = arg;
    s->scanned++;
    memcpy(s->last_scanned, d->id, sizeof(s->last_scanned));
    if (s->online >= 0 && (int)d->online != s->online)
        return 0;
    if (s->found == s->limit) {
        s->more = true;
        return 1;
    }
    json_t *o = api_device_json(d);
    if (o == NULL || json_array_append_new(s->arr, o) < 0) {
        s->err = -ENOMEM;
        return 1;
    }
    s->found++;
    memcpy(s->last_returned, d->id, sizeof(s->last_returned));
    return 0;
}

/* Splits "key=value" at the first '='. */
static int parse_tag_filter(api_req_t *r, const char *f, char *key, char *value)
{
    const char *eq = strchr(f, '=');
    size_t klen = eq != NULL ? (size_t)(eq - f) : 0;
    if (eq == NULL || klen == 0 || klen > TAG_KEY_MAX || strlen(eq + 1) > TAG_VALUE_MAX) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"tag\" must be key=value (key 1-%d bytes, value at most %d bytes)",
                        TAG_KEY_MAX, TAG_VALUE_MAX);
        return -EINVAL;
    }
    memcpy(key, f, klen);
    key[klen] = '\0';
    memcpy(value, eq + 1, strlen(eq + 1) + 1);
    return 0;
}

void api_devices_list(api_req_t *r)
{
    struct evkeyvalq q;
    json_t *arr = NULL;
    if (api_query_parse(r, &q) < 0)
        return;

    int64_t limit;
    const char *cursor, *tag, *online;
    char tag_key[TAG_KEY_MAX + 1], tag_value[TAG_VALUE_MAX + 1];
    if (api_query_int(r, &q, "limit", 1, LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT, &limit) < 0 ||
        api_query_get(r, &q, "cursor", &cursor) < 0 || api_query_get(r, &q, "tag", &tag) < 0 ||
        api_query_get(r, &q, "online", &online) < 0)
        goto done;
    if (cursor != NULL && !util_id_valid(cursor, strlen(cursor))) {
        api_reply_error(r->api, r->req, 400, "bad_request", "invalid cursor");
        goto done;
    }
    if (tag != NULL && parse_tag_filter(r, tag, tag_key, tag_value) < 0)
        goto done;
    int want_online = -1;
    if (online != NULL) {
        if (strcmp(online, "true") == 0) {
            want_online = 1;
        } else if (strcmp(online, "false") == 0) {
            want_online = 0;
        } else {
            api_reply_error(r->api, r->req, 400, "bad_request", "\"online\" must be true or false");
            goto done;
        }
    }

    arr = json_array();
    if (arr == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        goto done;
    }
    struct list_state s = {.arr = arr, .limit = (int)limit, .online = want_online};
    char after[DROVER_ID_MAX + 1] = "";
    if (cursor != NULL)
        memcpy(after, cursor, strlen(cursor) + 1);
    bool partial = false;
    int total = 0;
    for (;;) {
        /* Without a filter one extra row tells whether more exist. */
        int chunk = want_online < 0 ? (int)limit + 1 : LIST_CHUNK;
        s.scanned = 0;
        int rc = registry_list(r->api->deps.registry, after[0] ? after : NULL,
                               tag != NULL ? tag_key : NULL, tag != NULL ? tag_value : NULL, chunk,
                               list_one, &s);
        if (s.err < 0)
            rc = s.err;
        if (rc < 0) {
            api_reply_errno(r->api, r->req, rc, "listing devices");
            goto done;
        }
        if (s.more || s.scanned < chunk)
            break;
        total += s.scanned;
        if (total >= LIST_SCAN_MAX) {
            partial = true;
            break;
        }
        memcpy(after, s.last_scanned, sizeof(after));
    }

    json_t *next = json_null();
    if (s.more)
        next = json_string(s.last_returned);
    else if (partial)
        next = json_string(s.last_scanned);
    json_t *o = json_object();
    if (o != NULL) {
        json_object_set_new(o, "devices", arr);
        json_object_set_new(o, "next", next);
    } else {
        json_decref(arr);
        json_decref(next);
    }
    arr = NULL;
    api_reply_json(r->api, r->req, 200, o);

done:
    json_decref(arr);
    evhttp_clear_headers(&q);
}

/* ---- POST /api/v1/devices ---------------------------------------------------- */

/* NULL when tags are acceptable; otherwise a reason for the 400. */

static void created(void *arg, int rc, const char *secret)
{
    api_pending_t *p = arg;
    if (p->req == NULL)
        goto done;
    api_t *api = p->api;
    if (rc == -EEXIST) {
        api_reply_error(api, p->req, 409, "conflict", "a device with id \"%s\" already exists",
                        p->id);
        goto done;
    }
    if (rc == -EINVAL) {
        api_reply_error(api, p->req, 400, "bad_request", "invalid device");
        goto done;
    }
    if (rc < 0) {
        api_reply_errno(api, p->req, rc, "creating the device");
        goto done;
    }
    store_device_t d;
    rc = registry_get(api->deps.registry, p->id, &d);
    if (rc < 0) {
        api_reply_errno(api, p->req, rc, "reading the new device");
        goto done;
    }
    json_t *o = api_device_json(&d);
    store_device_fini(&d);
    if (o != NULL)
        json_object_set_new(o, "secret", json_string(secret));
    char loc[sizeof("/api/v1/devices/") + DROVER_ID_MAX];
    snprintf(loc, sizeof(loc), "/api/v1/devices/%s", p->id);
    evhttp_add_header(evhttp_request_get_output_headers(p->req), "Location", loc);
    api_reply_json(api, p->req, 201, o);
done:
    api_pending_free(p);
}

void api_devices_create(api_req_t *r)
{
    json_t *body = NULL;
    char *tags_json = NULL;
    if (api_store_busy(r) || api_body_json(r, &body) < 0)
        return;
    if (!json_is_object(body)) {
        api_reply_error(r->api, r->req, 400, "bad_request", "the body must be a JSON object");
        goto done;
    }
    const json_t *id = json_object_get(body, "id");
    if (!json_is_string(id) || !util_id_valid(json_string_value(id), json_string_length(id))) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"id\" must be a string of 1 to 64 characters from [A-Za-z0-9._-]");
        goto done;
    }
    json_t *tags = json_object_get(body, "tags");
    if (tags != NULL && !json_is_null(tags)) {
        const char *why = registry_tags_check(tags);
        if (why != NULL) {
            api_reply_error(r->api, r->req, 400, "bad_request", "%s", why);
            goto done;
        }
        tags_json = json_dumps(tags, JSON_COMPACT);
    } else {
        tags_json = strdup("{}");
    }
    if (tags_json == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        goto done;
    }
    api_req_t sub = *r;
    sub.id = json_string_value(id);
    api_pending_t *p = api_pending_new(&sub);
    if (p == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        goto done;
    }
    /* created() may run before this returns (an id already taken). */
    registry_create(r->api->deps.registry, p->id, tags_json, created, p);
done:
    free(tags_json);
    json_decref(body);
}

/* ---- GET /api/v1/devices/{id} ------------------------------------------------ */

static int latest_one(void *arg, const char *metric, int64_t ts, const store_value_t *v)
{
    json_t *tel = arg;
    json_t *o = json_object();
    if (o == NULL)
        return -ENOMEM;
    json_object_set_new(o, "value", api_value_json(v));
    json_object_set_new(o, "ts", json_integer(ts));
    if (json_object_set_new(tel, metric, o) < 0)
        return -ENOMEM;
    return 0;
}

void api_devices_get(api_req_t *r)
{
    store_device_t d;
    int rc = registry_get(r->api->deps.registry, r->id, &d);
    if (rc == -ENOENT) {
        api_reply_error(r->api, r->req, 404, "not_found", "no device \"%s\"", r->id);
        return;
    }
    if (rc < 0) {
        api_reply_errno(r->api, r->req, rc, "reading the device");
        return;
    }
    json_t *o = api_device_json(&d);
    json_t *tel = json_object();
    if (o == NULL || tel == NULL) {
        rc = -ENOMEM;
    } else {
        rc = telemetry_latest(r->api->deps.store, d.key, latest_one, tel);
        if (rc > 0)
            rc = 0;
    }
    store_device_fini(&d);
    if (rc < 0) {
        json_decref(o);
        json_decref(tel);
        api_reply_errno(r->api, r->req, rc, "reading the latest telemetry");
        return;
    }
    json_object_set_new(o, "telemetry", tel);
    api_reply_json(r->api, r->req, 200, o);
}

/* ---- DELETE /api/v1/devices/{id} --------------------------------------------- */

static void deleted(void *arg, int rc)
{
    api_pending_t *p = arg;
    if (p->req == NULL)
        goto done;
    if (rc == -ENOENT)
        api_reply_error(p->api, p->req, 404, "not_found", "no device \"%s\"", p->id);
    else if (rc < 0)
        api_reply_errno(p->api, p->req, rc, "deleting the device");
    else
        api_reply_empty(p->api, p->req, 204);
done:
    api_pending_free(p);
}

void api_devices_delete(api_req_t *r)
{
    if (registry_find(r->api->deps.registry, r->id) == NULL) {
        api_reply_error(r->api, r->req, 404, "not_found", "no device \"%s\"", r->id);
        return;
    }
    if (api_store_busy(r))
        return;
    api_pending_t *p = api_pending_new(r);
    if (p == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        return;
    }
    registry_delete(r->api->deps.registry, p->id, deleted, p);
}

/* ---- POST /api/v1/devices/{id}/secret ----------------------------------------- */

static void rotated(void *arg, int rc, const char *secret)
{
    api_pending_t *p = arg;
    if (p->req == NULL)
        goto done;
    if (rc == -ENOENT) {
        api_reply_error(p->api, p->req, 404, "not_found", "no device \"%s\"", p->id);
    } else if (rc < 0) {
        api_reply_errno(p->api, p->req, rc, "rotating the secret");
    } else {
        api_reply_json(p->api, p->req, 200, json_pack("{s:s, s:s}", "id", p->id, "secret", secret));
    }
done:
    api_pending_free(p);
}

void api_devices_rotate(api_req_t *r)
{
    if (registry_find(r->api->deps.registry, r->id) == NULL) {
        api_reply_error(r->api, r->req, 404, "not_found", "no device \"%s\"", r->id);
        return;
    }
    if (api_store_busy(r))
        return;
    api_pending_t *p = api_pending_new(r);
    if (p == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        return;
    }
    registry_rotate_secret(r->api->deps.registry, p->id, rotated, p);
}

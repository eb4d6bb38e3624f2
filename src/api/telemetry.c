/*
 * GET /api/v1/devices/{id}/telemetry: one device's time series, a page at
 * a time, in (ts, seq) order.
 *
 * The cursor is the telemetry module's "<ts>.<seq>" of the last point
 * returned, validated strictly; the page asks the store for one point more
 * than the limit to know whether "next" is needed. Times are epoch ms or
 * RFC 3339; since is inclusive, until exclusive. The device key comes from
 * the registry's memory, so an unknown device is a 404 without a query.
 *
 * Loop thread only.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "api/api_internal.h"
#include "telemetry/telemetry.h"

#define POINTS_LIMIT_MAX 10000
#define POINTS_LIMIT_DEFAULT 1000

struct page {
    json_t *arr;
    int limit;
    int n;
    bool more;
    telemetry_cursor_t last;
    int err;
};

static int point_one(void *arg, const char *metric, int64_t ts, const store_value_t *v,
                     const telemetry_cursor_t *at)
{
    struct page *pg = arg;
    if (pg->n == pg->limit) {
        pg->more = true;
        return 1;
    }
    json_t *o = json_object();
    if (o == NULL || json_array_append_new(pg->arr, o) < 0) {
        pg->err = -ENOMEM;
        return 1;
    }
    json_object_set_new(o, "metric", json_string(metric));
    json_object_set_new(o, "ts", json_integer(ts));
    json_object_set_new(o, "value", api_value_json(v));
    pg->n++;
    pg->last = *at;
    return 0;
}

/* An optional time parameter; replies 400 when malformed. */
static int query_time(api_req_t *r, struct evkeyvalq *q, const char *key, int64_t dflt,
                      int64_t *out)
{
    const char *s;
    if (api_query_get(r, q, key, &s) < 0)
        return -EINVAL;
    if (s == NULL) {
        *out = dflt;
        return 0;
    }
    if (util_parse_time(s, out) < 0) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"%s\" must be epoch milliseconds or an RFC 3339 time", key);
        return -EINVAL;
    }
    return 0;
}

void api_telemetry_query(api_req_t *r)
{
    struct evkeyvalq q;
    json_t *arr = NULL;
    registry_device_t *dev = registry_find(r->api->deps.registry, r->id);
    if (dev == NULL) {
        api_reply_error(r->api, r->req, 404, "not_found", "no device \"%s\"", r->id);
        return;
    }
    int64_t key = dev->key;
    if (api_query_parse(r, &q) < 0)
        return;

    const char *metric, *cursor;
    int64_t since, until, limit;
    telemetry_cursor_t after;
    if (api_query_get(r, &q, "metric", &metric) < 0 ||
        api_query_get(r, &q, "cursor", &cursor) < 0 ||
        query_time(r, &q, "since", INT64_MIN, &since) < 0 ||
        query_time(r, &q, "until", INT64_MAX, &until) < 0 ||
        api_query_int(r, &q, "limit", 1, POINTS_LIMIT_MAX, POINTS_LIMIT_DEFAULT, &limit) < 0)
        goto done;
    if (metric != NULL && (metric[0] == '\0' || strlen(metric) > TELEMETRY_MAX_METRIC_LEN)) {
        api_reply_error(r->api, r->req, 400, "bad_request", "\"metric\" must be 1 to %d bytes",
                        TELEMETRY_MAX_METRIC_LEN);
        goto done;
    }
    if (cursor != NULL && telemetry_cursor_decode(cursor, &after) < 0) {
        api_reply_error(r->api, r->req, 400, "bad_request", "invalid cursor");
        goto done;
    }
    if (since > until) {
        api_reply_error(r->api, r->req, 400, "bad_request", "\"since\" is after \"until\"");
        goto done;
    }

    arr = json_array();
    if (arr == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        goto done;
    }
    struct page pg = {.arr = arr, .limit = (int)limit};
    int rc = telemetry_query(r->api->deps.store, key, metric, since, until,
                             cursor != NULL ? &after : NULL, (int)limit + 1, point_one, &pg);
    if (pg.err < 0)
        rc = pg.err;
    if (rc < 0) {
        api_reply_errno(r->api, r->req, rc, "reading telemetry");
        goto done;
    }
    json_t *next = json_null();
    if (pg.more) {
        char buf[TELEMETRY_CURSOR_MAX];
        if (telemetry_cursor_encode(&pg.last, buf, sizeof(buf)) == 0)
            next = json_string(buf);
    }
    json_t *o = json_object();
    if (o != NULL) {
        json_object_set_new(o, "points", arr);
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

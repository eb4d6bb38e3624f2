/*
 * The audit log over the API (admin only):
 *
 *   GET /api/v1/audit?since=&until=&actor=&object=&limit=&cursor=
 *       -> {"entries": [entry...], "next": "<seq>" or null}
 *   GET /api/v1/audit?format=jsonl&...   (export)
 *       -> application/x-ndjson, one entry per line; X-Next-Cursor when
 *          more entries match than one answer holds
 *
 * entry = {"seq", "ts" (epoch ms), "actor", "action", "object", "outcome",
 * "source", "detail", "prev_hash", "hash" (lower-case hex)}, in seq order.
 * since/until are epoch ms or RFC 3339 (since <= ts < until); actor and
 * object match exactly; cursor is the seq of the last entry already seen.
 * limit is 1..1000 (default 100) for JSON and 1..100000 (default 100000)
 * for JSON lines; an export answer also stops after EXPORT_MAX_BYTES.
 *
 * "detail" is the stored JSON text parsed back, so that clients can
 * recompute each entry's hash (src/security/audit.h) by re-serialising
 * it canonically. A stored text that is not in canonical form (it cannot
 * have been written by the server) is returned as a JSON string holding
 * the text itself, so a client-side verification sees the difference.
 *
 * Reads are synchronous on the loop thread, like every other list.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "common/json.h"
#include "common/util.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define EXPORT_MAX 100000
/* The CLI reads at most 64 MiB per answer; stay well under it. */
#define EXPORT_MAX_BYTES (32u * 1024 * 1024)
#define FILTER_MAX 255

/* A stored text as a JSON string; rows are written as valid UTF-8, so
 * only a row edited behind the server's back can fail here. */
static json_t *text_json(const char *s)
{
    json_t *v = json_string(s);
    return v != NULL ? v : json_string("(invalid UTF-8)");
}

static json_t *detail_json(const char *text)
{
    if (text == NULL)
        return json_null();
    json_t *v = json_util_parse(text, strlen(text), NULL, 0);
    if (v != NULL) {
        char *again = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        bool same = again != NULL && strcmp(again, text) == 0;
        free(again);
        if (same)
            return v;
        json_decref(v);
    }
    return text_json(text);
}

static json_t *entry_json(const store_audit_t *e)
{
    char prev[2 * CRYPTO_HASH_LEN + 1], hash[2 * CRYPTO_HASH_LEN + 1];
    util_hex_encode(e->prev_hash, CRYPTO_HASH_LEN, prev);
    util_hex_encode(e->hash, CRYPTO_HASH_LEN, hash);
    return json_pack("{s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:s,s:s}", "seq", (json_int_t)e->seq, "ts",
                     (json_int_t)e->ts, "actor", text_json(e->actor), "action",
                     text_json(e->action), "object", text_json(e->object), "outcome",
                     text_json(e->outcome), "source", text_json(e->source), "detail",
                     detail_json(e->detail), "prev_hash", prev, "hash", hash);
}

struct listing {
    bool jsonl;
    int64_t limit;
    int64_t count;
    int64_t last_seq; /* of the last entry returned */
    bool more;        /* a further entry matched */
    int rc;
    json_t *entries;      /* JSON */
    struct evbuffer *buf; /* JSON lines */
};

static int list_row(void *arg, const store_audit_t *e)
{
    struct listing *l = arg;
    if (l->rc != 0 || l->more)
        return 1;
    if (l->count >= l->limit ||
        (l->jsonl && evbuffer_get_length(l->buf) >= (size_t)EXPORT_MAX_BYTES)) {
        l->more = true;
        return 1;
    }
    json_t *o = entry_json(e);
    if (o == NULL) {
        l->rc = -ENOMEM;
        return 1;
    }
    if (l->jsonl) {
        char *line = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (line == NULL || evbuffer_add(l->buf, line, strlen(line)) < 0 ||
            evbuffer_add(l->buf, "\n", 1) < 0) {
            free(line);
            l->rc = -ENOMEM;
            return 1;
        }
        free(line);
    } else if (json_array_append_new(l->entries, o) < 0) {
        l->rc = -ENOMEM;
        return 1;
    }
    l->count++;
    l->last_seq = e->seq;
    return 0;
}

/* since/until: absent is 0 (no bound). */
static int time_param(api_req_t *r, struct evkeyvalq *q, const char *key, int64_t *out)
{
    const char *s;
    if (api_query_get(r, q, key, &s) < 0)
        return -EINVAL;
    *out = 0;
    if (s != NULL && util_parse_time(s, out) < 0) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"%s\" must be epoch milliseconds or an RFC 3339 time", key);
        return -EINVAL;
    }
    return 0;
}

static int text_param(api_req_t *r, struct evkeyvalq *q, const char *key, const char **out)
{
    if (api_query_get(r, q, key, out) < 0)
        return -EINVAL;
    if (*out != NULL && (**out == '\0' || strlen(*out) > FILTER_MAX)) {
        api_reply_error(r->api, r->req, 400, "bad_request", "\"%s\" must be 1 to %d characters",
                        key, FILTER_MAX);
        return -EINVAL;
    }
    return 0;
}

void api_audit_list(api_req_t *r)
{
    struct evkeyvalq q;
    struct listing l;
    memset(&l, 0, sizeof(l));
    if (api_query_parse(r, &q) < 0)
        return;
    const char *format, *actor, *object;
    int64_t since, until, after;
    if (api_query_get(r, &q, "format", &format) < 0)
        goto done;
    if (format != NULL && strcmp(format, "json") != 0 && strcmp(format, "jsonl") != 0) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"format\" must be json or jsonl (JSON lines)");
        goto done;
    }
    l.jsonl = format != NULL && strcmp(format, "jsonl") == 0;
    if (api_query_int(r, &q, "limit", 1, l.jsonl ? EXPORT_MAX : PAGE_MAX,
                      l.jsonl ? EXPORT_MAX : PAGE_DEFAULT, &l.limit) < 0 ||
        api_query_int(r, &q, "cursor", 0, INT64_MAX, 0, &after) < 0 ||
        time_param(r, &q, "since", &since) < 0 || time_param(r, &q, "until", &until) < 0 ||
        text_param(r, &q, "actor", &actor) < 0 || text_param(r, &q, "object", &object) < 0)
        goto done;

    if (l.jsonl)
        l.buf = evbuffer_new();
    else
        l.entries = json_array();
    if (l.buf == NULL && l.entries == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        goto done;
    }
    /* One more than asked for tells whether a next page exists. */
    int rc = store_audit_list(r->api->deps.store, after, since, until, actor, object,
                              (int)(l.limit + 1), list_row, &l);
    if (l.rc < 0)
        rc = l.rc;
    if (rc < 0) {
        api_reply_errno(r->api, r->req, rc, "reading the audit log");
        goto done;
    }
    char next[24];
    snprintf(next, sizeof(next), "%" PRId64, l.last_seq);
    if (l.jsonl) {
        if (l.more)
            evhttp_add_header(evhttp_request_get_output_headers(r->req), "X-Next-Cursor", next);
        api_reply_buffer(r->api, r->req, 200, "application/x-ndjson", l.buf);
        goto done;
    }
    json_t *body = json_pack("{s:O,s:o}", "entries", l.entries, "next",
                             l.more ? json_string(next) : json_null());
    if (body == NULL)
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
    else
        api_reply_json(r->api, r->req, 200, body);
done:
    json_decref(l.entries);
    if (l.buf != NULL)
        evbuffer_free(l.buf);
    evhttp_clear_headers(&q);
}

/*
 * Telemetry: the payload parser, the write path into the store and the
 * read wrappers the API uses.
 *
 * Parsing turns one untrusted payload into a telemetry_batch_t: an array of
 * store_point_t and one string block that holds every metric name and
 * string value back to back, so a batch is exactly two allocations however
 * many points it carries, and freeing it cannot leak a piece. The parser
 * walks the JSON twice: the first walk validates everything and counts
 * points and string bytes (so nothing is allocated for a payload that will
 * be rejected, and the allocation is sized by what was received, not by a
 * declared length); the second walk copies. Every limit (points, name and
 * string lengths) is checked before anything is copied.
 *
 * Rules, one JSON object at a time:
 *   "ts"   optional, a non-negative integer (epoch ms); default now_ms.
 *   "seq"  optional, a non-negative integer the sender increments; points
 *          carry it so the gateway can drop replays (telemetry_batch_dedupe)
 *          (the agent's replay will use it to drop duplicates).
 *   other  keys are metrics: 1..TELEMETRY_MAX_METRIC_LEN bytes, value a
 *          number, a boolean or a string of at most TELEMETRY_MAX_STRING_LEN
 *          bytes. null, objects and arrays are rejected, not skipped, so a
 *          device learns at once that it sends something we do not store.
 * An object with no metric, an empty array and more than
 * TELEMETRY_MAX_POINTS points in total are rejected. The parser is pure
 * (no store, no clock) and safe on any thread; ingest and the reads run on
 * the loop thread like the store calls they wrap.
 */
#include "telemetry/telemetry.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

struct pass {
    size_t points;
    size_t str_bytes;
    size_t max_points;
};

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static bool is_reserved(const char *key)
{
    return strcmp(key, "ts") == 0 || strcmp(key, "seq") == 0;
}

/* "item 3: " for arrays, "" for a single object, so messages read well. */
static void where(char *buf, size_t len, bool array, size_t i)
{
    if (array)
        snprintf(buf, len, "item %zu: ", i);
    else
        buf[0] = '\0';
}

/* Validates one object and adds its points and string bytes to *acc. */
static int check_object(const json_t *obj, bool array, size_t idx, struct pass *acc, char *err,
                        size_t errlen)
{
    char at[32];
    where(at, sizeof(at), array, idx);
    if (!json_is_object(obj))
        return fail(err, errlen, -EINVAL, "%sexpected a JSON object of metrics", at);

    const json_t *ts = json_object_get(obj, "ts");
    if (ts != NULL && (!json_is_integer(ts) || json_integer_value(ts) < 0))
        return fail(err, errlen, -EINVAL, "%s\"ts\" must be a non-negative integer (epoch ms)", at);
    const json_t *seq = json_object_get(obj, "seq");
    if (seq != NULL && (!json_is_integer(seq) || json_integer_value(seq) < 0))
        return fail(err, errlen, -EINVAL, "%s\"seq\" must be a non-negative integer", at);

    size_t metrics = 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        if (is_reserved(key))
            continue;
        size_t klen = strlen(key);
        if (klen == 0)
            return fail(err, errlen, -EINVAL, "%sempty metric name", at);
        if (klen > TELEMETRY_MAX_METRIC_LEN)
            return fail(err, errlen, -EINVAL, "%smetric name longer than %d bytes", at,
                        TELEMETRY_MAX_METRIC_LEN);
        size_t bytes = klen + 1;
        if (json_is_string(val)) {
            size_t slen = json_string_length(val);
            if (slen > TELEMETRY_MAX_STRING_LEN)
                return fail(err, errlen, -EINVAL,
                            "%smetric \"%s\": string value longer than %d bytes", at, key,
                            TELEMETRY_MAX_STRING_LEN);
            bytes += slen + 1;
        } else if (!json_is_number(val) && !json_is_boolean(val)) {
            return fail(err, errlen, -EINVAL,
                        "%smetric \"%s\": value must be a number, boolean or string", at, key);
        }
        if (acc->points + metrics + 1 > acc->max_points)
            return fail(err, errlen, -E2BIG, "more than %zu points in one payload",
                        acc->max_points);
        metrics++;
        acc->str_bytes += bytes;
    }
    if (metrics == 0)
        return fail(err, errlen, -EINVAL, "%sobject has no metrics", at);
    acc->points += metrics;
    return 0;
}

/* Copies the (already validated) metrics of obj into the batch. */
static void copy_object(const json_t *obj, int64_t device_key, int64_t now_ms, telemetry_batch_t *b,
                        size_t *spos)
{
    const json_t *jts = json_object_get(obj, "ts");
    int64_t ts = jts != NULL ? (int64_t)json_integer_value(jts) : now_ms;
    const json_t *jseq = json_object_get(obj, "seq");
    int64_t seq = jseq != NULL ? (int64_t)json_integer_value(jseq) : -1;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        if (is_reserved(key))
            continue;
        b->seq[b->n] = seq;
        store_point_t *p = &b->points[b->n++];
        size_t klen = strlen(key);
        char *name = b->strs + *spos;
        memcpy(name, key, klen + 1);
        *spos += klen + 1;
        p->device_key = device_key;
        p->metric = name;
        p->ts = ts;
        p->value.str = NULL;
        if (json_is_string(val)) {
            size_t slen = json_string_length(val);
            char *s = b->strs + *spos;
            memcpy(s, json_string_value(val), slen);
            s[slen] = '\0';
            *spos += slen + 1;
            p->value.kind = STORE_VALUE_STRING;
            p->value.num = 0;
            p->value.str = s;
        } else if (json_is_boolean(val)) {
            p->value.kind = STORE_VALUE_BOOL;
            p->value.num = json_is_true(val) ? 1 : 0;
        } else {
            p->value.kind = STORE_VALUE_NUMBER;
            p->value.num = json_number_value(val);
        }
    }
}

int telemetry_parse(const char *payload, size_t len, int64_t device_key, int64_t now_ms,
                    size_t max_points, telemetry_batch_t *out, char *err, size_t errlen)
{
    int rc;
    json_t *root = NULL;
    telemetry_batch_t b = {0};

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (payload == NULL || len == 0)
        return fail(err, errlen, -EINVAL, "empty payload");

    char jerr[160];
    root = json_util_parse(payload, len, jerr, sizeof(jerr));
    if (root == NULL)
        return fail(err, errlen, -EINVAL, "invalid JSON: %s", jerr);

    bool array = json_is_array(root);
    if (!array && !json_is_object(root)) {
        rc = fail(err, errlen, -EINVAL, "payload must be a JSON object or an array of objects");
        goto fail;
    }
    size_t items = array ? json_array_size(root) : 1;
    if (items == 0) {
        rc = fail(err, errlen, -EINVAL, "empty array");
        goto fail;
    }

    struct pass acc = {0};
    acc.max_points = max_points;
    for (size_t i = 0; i < items; i++) {
        const json_t *obj = array ? json_array_get(root, i) : root;
        rc = check_object(obj, array, i, &acc, err, errlen);
        if (rc < 0)
            goto fail;
    }

    b.points = calloc(acc.points, sizeof(*b.points));
    b.seq = calloc(acc.points, sizeof(*b.seq));
    b.strs = malloc(acc.str_bytes);
    if (b.points == NULL || b.seq == NULL || b.strs == NULL) {
        rc = fail(err, errlen, -ENOMEM, "out of memory");
        goto fail;
    }
    size_t spos = 0;
    for (size_t i = 0; i < items; i++)
        copy_object(array ? json_array_get(root, i) : root, device_key, now_ms, &b, &spos);

    json_decref(root);
    *out = b;
    return 0;

fail:
    telemetry_batch_fini(&b);
    json_decref(root);
    return rc;
}

void telemetry_batch_fini(telemetry_batch_t *b)
{
    if (b == NULL)
        return;
    free(b->points);
    free(b->seq);
    free(b->strs);
    b->points = NULL;
    b->seq = NULL;
    b->strs = NULL;
    b->n = 0;
}

size_t telemetry_batch_dedupe(telemetry_batch_t *b, int64_t last_seq, int64_t *max_seq)
{
    size_t kept = 0;
    int64_t max = last_seq;
    for (size_t i = 0; i < b->n; i++) {
        if (b->seq[i] >= 0 && b->seq[i] <= last_seq)
            continue;
        if (b->seq[i] > max)
            max = b->seq[i];
        b->points[kept] = b->points[i];
        b->seq[kept] = b->seq[i];
        kept++;
    }
    size_t dropped = b->n - kept;
    b->n = kept;
    *max_seq = max;
    return dropped;
}

void telemetry_ingest(store_t *st, const telemetry_batch_t *b, store_done_fn done, void *arg)
{
    store_telemetry_append(st, b->points, b->n, done, arg);
}

int telemetry_latest(store_t *st, int64_t device_key, telemetry_latest_fn fn, void *arg)
{
    return store_telemetry_latest(st, device_key, fn, arg);
}

int telemetry_cursor_encode(const telemetry_cursor_t *c, char *out, size_t outlen)
{
    if (c->ts < 0 || c->seq < 0)
        return -EINVAL;
    int n = snprintf(out, outlen, "%" PRId64 ".%" PRId64, c->ts, c->seq);
    if (n < 0 || (size_t)n >= outlen)
        return -ENOSPC;
    return 0;
}

/* One strict non-negative decimal: 1..19 digits, no leading zero unless
 * it is "0", no sign. Returns the number of bytes consumed or -EINVAL. */
static int decimal(const char *s, int64_t *out)
{
    size_t n = 0;
    int64_t v = 0;
    while (s[n] >= '0' && s[n] <= '9') {
        int d = s[n] - '0';
        if (v > (INT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
        n++;
    }
    if (n == 0 || (n > 1 && s[0] == '0'))
        return -EINVAL;
    *out = v;
    return (int)n;
}

int telemetry_cursor_decode(const char *s, telemetry_cursor_t *out)
{
    if (s == NULL)
        return -EINVAL;
    int64_t ts, seq;
    int n = decimal(s, &ts);
    if (n < 0 || s[n] != '.')
        return -EINVAL;
    s += n + 1;
    n = decimal(s, &seq);
    if (n < 0 || s[n] != '\0')
        return -EINVAL;
    out->ts = ts;
    out->seq = seq;
    return 0;
}

struct query_ctx {
    telemetry_point_fn fn;
    void *arg;
};

static int query_cb(void *arg, const char *metric, int64_t ts, int64_t seq, const store_value_t *v)
{
    struct query_ctx *q = arg;
    telemetry_cursor_t at = {ts, seq};
    return q->fn(q->arg, metric, ts, v, &at);
}

int telemetry_query(store_t *st, int64_t device_key, const char *metric, int64_t since,
                    int64_t until, const telemetry_cursor_t *after, int limit,
                    telemetry_point_fn fn, void *arg)
{
    struct query_ctx q = {fn, arg};
    int64_t after_ts = after != NULL ? after->ts : 0;
    int64_t after_seq = after != NULL ? after->seq : -1;
    return store_telemetry_query(st, device_key, metric, since, until, after_ts, after_seq, limit,
                                 query_cb, &q);
}

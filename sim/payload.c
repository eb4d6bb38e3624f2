/*
 * Device message bodies (see payload.h). Telemetry is printed with
 * snprintf into the caller's buffer; padding is a "pad" string metric of
 * 'x's, which droverd stores like any other metric, so --payload-size
 * also sizes the storage work.
 */
#include "sim/payload.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *p;
    size_t cap, n;
    bool full;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out_t *o, const char *fmt, ...)
{
    if (o->full)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= o->cap - o->n) {
        o->full = true;
        return;
    }
    o->n += (size_t)k;
}

/* Writes the optional members and, when padding, a "pad" member that
 * brings the whole body (plus tail closing bytes) to spec->size. */
static void put_extras(out_t *o, const sim_payload_spec_t *spec, uint64_t seq, int64_t mono_us,
                       size_t tail)
{
    if (spec->seq || spec->relay)
        put(o, ",\"seq\":%" PRIu64, seq);
    if (spec->relay)
        put(o, ",\"p\":%" PRIu32, spec->pub);
    if (spec->sent_us)
        put(o, ",\"t\":%" PRId64, mono_us);
    static const char pad_head[] = ",\"pad\":\"";
    size_t fixed = sizeof(pad_head) - 1 + 1; /* the closing quote */
    if (o->full || spec->size <= o->n + tail + fixed)
        return;
    size_t pad = spec->size - o->n - tail - fixed;
    if (o->n + fixed + pad + tail >= o->cap) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->n, pad_head, sizeof(pad_head) - 1);
    o->n += sizeof(pad_head) - 1;
    memset(o->p + o->n, 'x', pad);
    o->n += pad;
    o->p[o->n++] = '"';
    o->p[o->n] = '\0';
}

int sim_payload_build(char *out, size_t cap, const sim_payload_spec_t *spec, uint64_t seq,
                      int64_t now_ms, int64_t mono_us, size_t *len)
{
    if (cap == 0)
        return -ENOSPC;
    out_t o = {out, cap, 0, false};
    /* Values move a little with seq so the series are not constant; the
     * temperature is printed as integer parts (no float formatting on the
     * hot path): 20.0 .. 29.9. */
    unsigned tw = (unsigned)(20 + seq % 100 / 10), tf = (unsigned)(seq % 10);
    switch (spec->shape) {
    case SIM_SHAPE_SIMPLE:
        put(&o, "{\"temp\":%u.%u,\"hum\":%u", tw, tf, (unsigned)(40 + seq % 20));
        put_extras(&o, spec, seq, mono_us, 1);
        put(&o, "}");
        break;
    case SIM_SHAPE_METRICS:
        put(&o, "{");
        for (uint32_t i = 0; i < spec->n && !o.full; i++)
            put(&o, "%s\"m%u\":%u.%u", i ? "," : "", i, tw + i, tf);
        put_extras(&o, spec, seq, mono_us, 1);
        put(&o, "}");
        break;
    case SIM_SHAPE_BATCH:
        /* n objects a second apart, ending now; the extras ride on the
         * first object. */
        put(&o, "[");
        for (uint32_t i = 0; i < spec->n && !o.full; i++) {
            int64_t ts = now_ms - (int64_t)(spec->n - 1 - i) * 1000;
            put(&o, "%s{\"ts\":%" PRId64 ",\"temp\":%u.%u", i ? "," : "", ts, tw, tf);
            if (i == 0)
                put_extras(&o, spec, seq, mono_us,
                           2 + (size_t)(spec->n - 1) * 40); /* about the rest */
            put(&o, "}");
        }
        put(&o, "]");
        break;
    }
    if (o.full)
        return -ENOSPC;
    *len = o.n;
    return 0;
}

/* The unsigned number after the first "key": in p (at most 18 digits). */
static int scan_number(const uint8_t *p, size_t len, const char *key, size_t kl, int64_t *out)
{
    for (size_t i = 0; i + kl < len; i++) {
        if (p[i] != '"' || memcmp(p + i, key, kl) != 0)
            continue;
        size_t j = i + kl;
        int64_t v = 0;
        size_t digits = 0;
        while (j < len && p[j] >= '0' && p[j] <= '9' && digits < 18) {
            v = v * 10 + (p[j] - '0');
            j++;
            digits++;
        }
        if (digits == 0)
            return -ENOENT;
        *out = v;
        return 0;
    }
    return -ENOENT;
}

int sim_payload_sent_us(const uint8_t *p, size_t len, int64_t *us)
{
    static const char key[] = "\"t\":";
    return scan_number(p, len, key, sizeof(key) - 1, us);
}

int sim_payload_relay_ids(const uint8_t *p, size_t len, uint64_t *pub, uint64_t *seq)
{
    static const char kp[] = "\"p\":", ks[] = "\"seq\":";
    int64_t a, b;
    if (scan_number(p, len, kp, sizeof(kp) - 1, &a) < 0 ||
        scan_number(p, len, ks, sizeof(ks) - 1, &b) < 0)
        return -ENOENT;
    *pub = (uint64_t)a;
    *seq = (uint64_t)b;
    return 0;
}

/* Whether topic starts with devices/{id}/ and the rest equals or starts
 * with what follows; returns the position after devices/{id}/ or 0. */
static size_t device_prefix(const char *topic, size_t tl, const char *id)
{
    size_t il = strlen(id);
    if (tl < 8 + il + 1 || memcmp(topic, "devices/", 8) != 0 || memcmp(topic + 8, id, il) != 0 ||
        topic[8 + il] != '/')
        return 0;
    return 8 + il + 1;
}

bool sim_topic_command(const char *topic, size_t topic_len, const char *id, char *cid, size_t max)
{
    size_t k = device_prefix(topic, topic_len, id);
    static const char cmd[] = "commands/";
    if (k == 0 || topic_len - k < sizeof(cmd) - 1 || memcmp(topic + k, cmd, sizeof(cmd) - 1) != 0)
        return false;
    k += sizeof(cmd) - 1;
    size_t cl = topic_len - k;
    if (cl == 0 || cl >= max || memchr(topic + k, '/', cl))
        return false;
    memcpy(cid, topic + k, cl);
    cid[cl] = '\0';
    return true;
}

bool sim_topic_desired(const char *topic, size_t topic_len, const char *id)
{
    size_t k = device_prefix(topic, topic_len, id);
    static const char d[] = "twin/desired";
    return k != 0 && topic_len - k == sizeof(d) - 1 && memcmp(topic + k, d, sizeof(d) - 1) == 0;
}

int sim_desired_version(const uint8_t *p, size_t len, int64_t *version)
{
    json_error_t e;
    json_t *doc = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &e);
    if (!doc)
        return -EINVAL;
    int rc = -EINVAL;
    json_t *v = json_is_object(doc) ? json_object_get(doc, "version") : NULL;
    if (json_is_integer(v)) {
        *version = (int64_t)json_integer_value(v);
        rc = 0;
    }
    json_decref(doc);
    return rc;
}

static int finish(out_t *o, size_t *len)
{
    if (o->full)
        return -ENOSPC;
    *len = o->n;
    return 0;
}

int sim_command_result(char *out, size_t cap, bool failed, size_t *len)
{
    out_t o = {out, cap, 0, cap == 0};
    if (failed)
        put(&o, "{\"status\":\"failed\",\"output\":{\"error\":\"simulated failure\"}}");
    else
        put(&o, "{\"status\":\"succeeded\",\"output\":{\"sim\":true}}");
    return finish(&o, len);
}

int sim_twin_applied(char *out, size_t cap, int64_t version, size_t *len)
{
    out_t o = {out, cap, 0, cap == 0};
    put(&o, "{\"applied\":%" PRId64 "}", version);
    return finish(&o, len);
}

int sim_twin_report(char *out, size_t cap, int64_t uptime_s, uint64_t n, size_t *len)
{
    out_t o = {out, cap, 0, cap == 0};
    put(&o, "{\"uptime_s\":%" PRId64 ",\"sim\":{\"reports\":%" PRIu64 "}}", uptime_s, n);
    return finish(&o, len);
}

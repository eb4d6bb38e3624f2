/*
 * Telemetry: parsing what devices publish on devices/{id}/telemetry into
 * points, writing them through the store, and reading series back.
 *
 * A payload is a JSON object of metrics ({"temp": 21.5, "door": "open"})
 * with optional "ts" (epoch ms) and "seq", or an array of such objects.
 * Values are numbers, booleans or strings; null, objects and arrays as
 * metric values are rejected, as is an empty batch. Parsing is pure and
 * fuzzable; ingest and query run on the loop thread.
 */
#ifndef DROVER_TELEMETRY_TELEMETRY_H
#define DROVER_TELEMETRY_TELEMETRY_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Limits on one payload. The points limit is a parameter of
 * telemetry_parse (config max_telemetry_points); this is its default. */
#define TELEMETRY_MAX_POINTS 4096
#define TELEMETRY_MAX_METRIC_LEN 128
#define TELEMETRY_MAX_STRING_LEN 1024

typedef struct telemetry_batch {
    store_point_t *points; /* n points; metric and str point into strs */
    int64_t *seq;          /* per point: its object's "seq", or -1 */
    size_t n;
    char *strs; /* one allocation holding every string */
} telemetry_batch_t;

/* Parses payload for device_key; ts defaults to now_ms; at most max_points
 * points (-E2BIG above). On success fills
 * *out (caller calls telemetry_batch_fini). On failure returns -EINVAL (or
 * -E2BIG over a limit, -ENOMEM) and writes a one-line reason to err. */
int telemetry_parse(const char *payload, size_t len, int64_t device_key, int64_t now_ms,
                    size_t max_points, telemetry_batch_t *out, char *err, size_t errlen);
void telemetry_batch_fini(telemetry_batch_t *b);

/* Drops the points whose seq is <= last_seq (already stored: a replay) and
 * writes the highest seq left (or last_seq) to *max_seq. Points without a
 * seq are kept. Returns the number of points dropped. */
size_t telemetry_batch_dedupe(telemetry_batch_t *b, int64_t last_seq, int64_t *max_seq);

/* Stores a parsed batch; done runs once it is durable. The batch may be
 * freed as soon as this returns (the store copies it). */
void telemetry_ingest(store_t *st, const telemetry_batch_t *b, store_done_fn done, void *arg);

/* ---- Reads for the API (synchronous, loop thread only) ------------------ */

/* Latest value of every metric of a device, in metric name order. fn's
 * metric and v are borrowed for the call; a non-zero return stops early.
 * Returns the number visited or a negative errno. */
typedef int (*telemetry_latest_fn)(void *arg, const char *metric, int64_t ts,
                                   const store_value_t *v);
int telemetry_latest(store_t *st, int64_t device_key, telemetry_latest_fn fn, void *arg);

/* Where a page of a series resumes: the (ts, seq) of the last point seen.
 * seq < 0 means "from the start". */
typedef struct telemetry_cursor {
    int64_t ts;
    int64_t seq;
} telemetry_cursor_t;

/* A cursor as text: "<ts>.<seq>", both non-negative decimal integers. */
#define TELEMETRY_CURSOR_MAX 48
/* Writes the text form of (ts, seq) into out (TELEMETRY_CURSOR_MAX bytes is
 * always enough). -ENOSPC if out is too small, -EINVAL if ts or seq < 0. */
int telemetry_cursor_encode(const telemetry_cursor_t *c, char *out, size_t outlen);
/* Parses the text form strictly (no signs, spaces, leading zeros or
 * trailing bytes). -EINVAL if s is not a cursor. */
int telemetry_cursor_decode(const char *s, telemetry_cursor_t *out);

/* A page of one device's points with since <= ts < until, ordered by
 * (ts, seq), after the cursor when after is non-NULL; metric NULL means
 * every metric. fn gets each point (borrowed) and the cursor that resumes
 * after it; a non-zero return stops early. Returns the number visited or a
 * negative errno. */
typedef int (*telemetry_point_fn)(void *arg, const char *metric, int64_t ts, const store_value_t *v,
                                  const telemetry_cursor_t *at);
int telemetry_query(store_t *st, int64_t device_key, const char *metric, int64_t since,
                    int64_t until, const telemetry_cursor_t *after, int limit,
                    telemetry_point_fn fn, void *arg);

#endif

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

/* Limits on one payload. */
#define TELEMETRY_MAX_POINTS 4096
#define TELEMETRY_MAX_METRIC_LEN 128
#define TELEMETRY_MAX_STRING_LEN 1024

typedef struct telemetry_batch {
    store_point_t *points; /* n points; metric and str point into strs */
    size_t n;
    char *strs; /* one allocation holding every string */
} telemetry_batch_t;

/* Parses payload for device_key; ts defaults to now_ms. On success fills
 * *out (caller calls telemetry_batch_fini). On failure returns -EINVAL (or
 * -E2BIG over a limit, -ENOMEM) and writes a one-line reason to err. */
int telemetry_parse(const char *payload, size_t len, int64_t device_key, int64_t now_ms,
                    telemetry_batch_t *out, char *err, size_t errlen);
void telemetry_batch_fini(telemetry_batch_t *b);

/* Stores a parsed batch; done runs once it is durable. The batch may be
 * freed as soon as this returns (the store copies it). */
void telemetry_ingest(store_t *st, const telemetry_batch_t *b, store_done_fn done, void *arg);

#endif

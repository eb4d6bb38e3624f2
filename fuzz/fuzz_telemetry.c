/*
 * fuzz_telemetry: telemetry_parse (src/telemetry/telemetry.c) on arbitrary
 * payloads, as a device would publish them on devices/{id}/telemetry.
 *
 * Each input is parsed twice: with the default points limit and with a
 * small one (SMALL_MAX). On success every point must be sound: metric
 * non-empty, at most TELEMETRY_MAX_METRIC_LEN bytes and not a reserved key,
 * string values at most TELEMETRY_MAX_STRING_LEN bytes, a known value
 * kind, the device key passed in, a timestamp that is either the default
 * or non-negative, and n between 1 and the limit. The count is checked
 * against jansson's own view of the payload (metrics = keys other than
 * "ts" and "seq" over the objects), and the two limits must agree: a
 * batch that fits SMALL_MAX parses the same under both, a larger one is
 * -E2BIG under the small limit. On failure the error text is set and the
 * out-parameter untouched. ASan checks every string stays inside the one
 * string block.
 */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "fuzz_common.h"
#include "telemetry/telemetry.h"

#define DEVICE_KEY 4242
#define NOW_MS INT64_C(1700000000000)
#define SMALL_MAX 3

static void check_batch(const telemetry_batch_t *b, size_t max_points)
{
    CHECK(b->n >= 1 && b->n <= max_points);
    CHECK(b->points != NULL && b->strs != NULL);
    for (size_t i = 0; i < b->n; i++) {
        const store_point_t *p = &b->points[i];
        CHECK(p->device_key == DEVICE_KEY);
        CHECK(p->metric != NULL);
        size_t ml = strlen(p->metric);
        CHECK(ml >= 1 && ml <= TELEMETRY_MAX_METRIC_LEN);
        CHECK(strcmp(p->metric, "ts") != 0 && strcmp(p->metric, "seq") != 0);
        CHECK(p->ts == NOW_MS || p->ts >= 0);
        switch (p->value.kind) {
        case STORE_VALUE_STRING:
            CHECK(p->value.str != NULL);
            CHECK(strlen(p->value.str) <= TELEMETRY_MAX_STRING_LEN);
            break;
        case STORE_VALUE_BOOL:
            CHECK(p->value.num == 0 || p->value.num == 1);
            CHECK(p->value.str == NULL);
            break;
        case STORE_VALUE_NUMBER:
            CHECK(p->value.str == NULL);
            break;
        default:
            CHECK(!"unknown value kind");
        }
    }
}

/* Metrics in the payload as jansson sees it, or -1 if it is not a
 * non-empty object or array of objects. */
static long count_metrics(const uint8_t *data, size_t size)
{
    json_t *root =
        json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (root == NULL)
        return -1;
    long n = 0;
    size_t items = json_is_array(root) ? json_array_size(root) : 1;
    if (!json_is_array(root) && !json_is_object(root))
        n = -1;
    for (size_t i = 0; n >= 0 && i < items; i++) {
        json_t *o = json_is_array(root) ? json_array_get(root, i) : root;
        if (!json_is_object(o)) {
            n = -1;
            break;
        }
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v)
        {
            (void)v;
            if (strcmp(k, "ts") != 0 && strcmp(k, "seq") != 0)
                n++;
        }
    }
    json_decref(root);
    return n;
}

static int parse(const uint8_t *data, size_t size, size_t max_points, telemetry_batch_t *out)
{
    char err[256];
    memset(err, 'x', sizeof(err));
    telemetry_batch_t b;
    memset(&b, 0x5A, sizeof(b));
    telemetry_batch_t before = b;
    int rc = telemetry_parse((const char *)data, size, DEVICE_KEY, NOW_MS, max_points, &b, err,
                             sizeof(err));
    if (rc == 0) {
        check_batch(&b, max_points);
        *out = b;
        return 0;
    }
    CHECK(rc == -EINVAL || rc == -E2BIG || rc == -ENOMEM);
    CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    CHECK(err[0] != '\0');
    CHECK(memcmp(&b, &before, sizeof(b)) == 0);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    telemetry_batch_t big, small;
    int rb = parse(data, size, TELEMETRY_MAX_POINTS, &big);
    int rs = parse(data, size, SMALL_MAX, &small);
    if (rb == 0) {
        long want = count_metrics(data, size);
        CHECK(want >= 1 && (size_t)want == big.n);
        if (big.n <= SMALL_MAX) {
            CHECK(rs == 0 && small.n == big.n);
            for (size_t i = 0; i < big.n; i++) {
                CHECK(strcmp(big.points[i].metric, small.points[i].metric) == 0);
                CHECK(big.points[i].ts == small.points[i].ts);
                CHECK(big.points[i].value.kind == small.points[i].value.kind);
            }
        } else {
            CHECK(rs == -E2BIG);
        }
        telemetry_batch_fini(&big);
        CHECK(big.points == NULL && big.strs == NULL && big.n == 0);
    } else {
        /* A smaller limit never makes a bad payload good. */
        CHECK(rs != 0);
    }
    if (rs == 0)
        telemetry_batch_fini(&small);
    telemetry_batch_fini(NULL);
    return 0;
}

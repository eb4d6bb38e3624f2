/*
 * Telemetry parser and cursor tests: what a device may publish and what is
 * rejected, with the reason and the error code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/telemetry.h"

#define NOW 1700000000000LL

static int parse(const char *s, telemetry_batch_t *b, char *err, size_t errlen)
{
    return telemetry_parse(s, strlen(s), 7, NOW, TELEMETRY_MAX_POINTS, b, err, errlen);
}

static const store_point_t *find(const telemetry_batch_t *b, const char *metric, size_t nth)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->points[i].metric, metric) == 0 && nth-- == 0)
            return &b->points[i];
    return NULL;
}

static void test_object(void **state)
{
    (void)state;
    telemetry_batch_t b;
    char err[128];
    assert_int_equal(
        parse("{\"temp\": 21.5, \"door\": \"open\", \"on\": true, \"n\": 3}", &b, err, sizeof(err)),
        0);
    assert_int_equal(b.n, 4);
    const store_point_t *p = find(&b, "temp", 0);
    assert_non_null(p);
    assert_int_equal(p->device_key, 7);
    assert_int_equal(p->ts, NOW);
    assert_int_equal(p->value.kind, STORE_VALUE_NUMBER);
    assert_true(p->value.num == 21.5);
    p = find(&b, "door", 0);
    assert_non_null(p);
    assert_int_equal(p->value.kind, STORE_VALUE_STRING);
    assert_string_equal(p->value.str, "open");
    p = find(&b, "on", 0);
    assert_int_equal(p->value.kind, STORE_VALUE_BOOL);
    assert_true(p->value.num == 1);
    p = find(&b, "n", 0);
    assert_int_equal(p->value.kind, STORE_VALUE_NUMBER);
    assert_true(p->value.num == 3);
    /* Every string lives in the one block. */
    for (size_t i = 0; i < b.n; i++)
        assert_true(b.points[i].metric >= b.strs);
    telemetry_batch_fini(&b);
    assert_null(b.points);
    assert_null(b.strs);
    telemetry_batch_fini(&b); /* twice is harmless */
    telemetry_batch_fini(NULL);
}

static void test_ts_seq(void **state)
{
    (void)state;
    telemetry_batch_t b;
    char err[128];
    assert_int_equal(
        parse("{\"ts\": 1600000000000, \"seq\": 12, \"x\": false}", &b, err, sizeof(err)), 0);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.points[0].metric, "x");
    assert_int_equal(b.points[0].ts, 1600000000000LL);
    assert_int_equal(b.points[0].value.kind, STORE_VALUE_BOOL);
    assert_true(b.points[0].value.num == 0);
    telemetry_batch_fini(&b);

    assert_int_equal(parse("{\"ts\": 0, \"seq\": 0, \"x\": -1e3}", &b, err, sizeof(err)), 0);
    assert_int_equal(b.points[0].ts, 0);
    assert_true(b.points[0].value.num == -1000);
    telemetry_batch_fini(&b);
}

static void test_array(void **state)
{
    (void)state;
    telemetry_batch_t b;
    char err[128];
    assert_int_equal(
        parse("[{\"ts\": 1, \"t\": 1}, {\"ts\": 2, \"t\": 2, \"s\": \"\"}, {\"t\": 3}]", &b, err,
              sizeof(err)),
        0);
    assert_int_equal(b.n, 4);
    assert_int_equal(find(&b, "t", 0)->ts, 1);
    assert_int_equal(find(&b, "t", 1)->ts, 2);
    assert_int_equal(find(&b, "t", 2)->ts, NOW);
    assert_string_equal(find(&b, "s", 0)->value.str, "");
    telemetry_batch_fini(&b);
}

static void test_unicode_and_limits_ok(void **state)
{
    (void)state;
    telemetry_batch_t b;
    char err[128];
    /* Exactly at the limits is fine. */
    char name[TELEMETRY_MAX_METRIC_LEN + 1];
    memset(name, 'm', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    char *val = malloc(TELEMETRY_MAX_STRING_LEN + 1);
    assert_non_null(val);
    memset(val, 'v', TELEMETRY_MAX_STRING_LEN);
    val[TELEMETRY_MAX_STRING_LEN] = '\0';
    size_t cap = 2 * TELEMETRY_MAX_STRING_LEN;
    char *payload = malloc(cap);
    assert_non_null(payload);
    snprintf(payload, cap, "{\"%s\": \"%s\"}", name, val);
    assert_int_equal(parse(payload, &b, err, sizeof(err)), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(strlen(b.points[0].metric), TELEMETRY_MAX_METRIC_LEN);
    assert_int_equal(strlen(b.points[0].value.str), TELEMETRY_MAX_STRING_LEN);
    telemetry_batch_fini(&b);
    free(payload);
    free(val);

    assert_int_equal(parse("{\"temp\\u00e9rature\": \"\\u2603\"}", &b, err, sizeof(err)), 0);
    assert_string_equal(b.points[0].metric, "temp\xc3\xa9rature");
    assert_string_equal(b.points[0].value.str, "\xe2\x98\x83");
    telemetry_batch_fini(&b);
}

/* Each case must fail with rc and leave *out untouched. */
struct bad {
    const char *payload;
    int rc;
    const char *reason; /* substring of the message */
};

static const struct bad bad_cases[] = {
    {"", -EINVAL, "empty"},
    {"{", -EINVAL, "invalid JSON"},
    {"{\"a\": 1} x", -EINVAL, "invalid JSON"},
    {"{\"a\": 1, \"a\": 2}", -EINVAL, "invalid JSON"},
    {"42", -EINVAL, "object"},
    {"\"str\"", -EINVAL, "object"},
    {"null", -EINVAL, "object"},
    {"true", -EINVAL, "object"},
    {"[]", -EINVAL, "empty array"},
    {"{}", -EINVAL, "no metrics"},
    {"{\"ts\": 5}", -EINVAL, "no metrics"},
    {"{\"ts\": 5, \"seq\": 1}", -EINVAL, "no metrics"},
    {"[{\"a\": 1}, {}]", -EINVAL, "item 1"},
    {"[{\"a\": 1}, 3]", -EINVAL, "item 1"},
    {"[[{\"a\": 1}]]", -EINVAL, "item 0"},
    {"{\"a\": null}", -EINVAL, "\"a\""},
    {"{\"a\": {\"b\": 1}}", -EINVAL, "number, boolean or string"},
    {"{\"a\": [1, 2]}", -EINVAL, "number, boolean or string"},
    {"{\"\": 1}", -EINVAL, "empty metric name"},
    {"{\"ts\": -1, \"a\": 1}", -EINVAL, "\"ts\""},
    {"{\"ts\": 1.5, \"a\": 1}", -EINVAL, "\"ts\""},
    {"{\"ts\": 1e12, \"a\": 1}", -EINVAL, "\"ts\""},
    {"{\"ts\": \"2023-01-01T00:00:00Z\", \"a\": 1}", -EINVAL, "\"ts\""},
    {"{\"ts\": null, \"a\": 1}", -EINVAL, "\"ts\""},
    {"{\"seq\": -3, \"a\": 1}", -EINVAL, "\"seq\""},
    {"{\"seq\": \"1\", \"a\": 1}", -EINVAL, "\"seq\""},
    {"{\"seq\": 0.5, \"a\": 1}", -EINVAL, "\"seq\""},
    {"{\"a\": 1e999}", -EINVAL, "invalid JSON"},
    {"{\"a\": 123456789012345678901234567890}", -EINVAL, "invalid JSON"},
    {"{\"a\": NaN}", -EINVAL, "invalid JSON"},
    {"{\"a\": \"\\u0000\"}", -EINVAL, "invalid JSON"},
    {"{\"a\": \"\xff\"}", -EINVAL, "invalid JSON"},
    {"{'a': 1}", -EINVAL, "invalid JSON"},
};

static void test_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad *c = &bad_cases[i];
        telemetry_batch_t b = {(store_point_t *)0x1, (int64_t *)0x3, 99, (char *)0x2};
        char err[160] = "";
        int rc = parse(c->payload, &b, err, sizeof(err));
        if (rc != c->rc || strstr(err, c->reason) == NULL)
            fail_msg("payload %s: rc %d err \"%s\", want %d \"%s\"", c->payload, rc, err, c->rc,
                     c->reason);
        assert_int_equal(b.n, 99);
        assert_ptr_equal(b.points, (store_point_t *)0x1);
        assert_null(strchr(err, '\n'));
    }
    /* NULL payload and a NULL error buffer are fine. */
    telemetry_batch_t b;
    assert_int_equal(telemetry_parse(NULL, 0, 1, NOW, TELEMETRY_MAX_POINTS, &b, NULL, 0), -EINVAL);
    assert_int_equal(telemetry_parse("[]", 2, 1, NOW, TELEMETRY_MAX_POINTS, &b, NULL, 0), -EINVAL);
    /* A length shorter than the text parses only the prefix. */
    assert_int_equal(telemetry_parse("{\"a\": 1}", 4, 1, NOW, TELEMETRY_MAX_POINTS, &b, NULL, 0),
                     -EINVAL);
}

static void test_too_long(void **state)
{
    (void)state;
    telemetry_batch_t b;
    char err[160];
    char name[TELEMETRY_MAX_METRIC_LEN + 2];
    memset(name, 'm', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    char payload[512];
    snprintf(payload, sizeof(payload), "{\"%s\": 1}", name);
    assert_int_equal(parse(payload, &b, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "metric name longer"));

    size_t vlen = TELEMETRY_MAX_STRING_LEN + 1;
    char *big = malloc(vlen + 32);
    assert_non_null(big);
    memcpy(big, "{\"s\": \"", 7);
    memset(big + 7, 'x', vlen);
    memcpy(big + 7 + vlen, "\"}", 3);
    assert_int_equal(parse(big, &b, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "string value longer"));
    free(big);
}

/* Builds an array of n objects with k metrics each. */
static char *many(size_t n, size_t k)
{
    size_t cap = n * (k * 16 + 8) + 8;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t pos = 0;
    s[pos++] = '[';
    for (size_t i = 0; i < n; i++) {
        pos += (size_t)snprintf(s + pos, cap - pos, "%s{", i ? "," : "");
        for (size_t j = 0; j < k; j++)
            pos += (size_t)snprintf(s + pos, cap - pos, "%s\"m%zu\":%zu", j ? "," : "", j, i);
        s[pos++] = '}';
    }
    s[pos++] = ']';
    s[pos] = '\0';
    return s;
}

static void test_max_points(void **state)
{
    (void)state;
    telemetry_batch_t b;
    char err[160];
    char *s = many(TELEMETRY_MAX_POINTS, 1);
    assert_int_equal(parse(s, &b, err, sizeof(err)), 0);
    assert_int_equal(b.n, TELEMETRY_MAX_POINTS);
    assert_true(b.points[TELEMETRY_MAX_POINTS - 1].value.num == TELEMETRY_MAX_POINTS - 1);
    telemetry_batch_fini(&b);
    free(s);

    s = many(TELEMETRY_MAX_POINTS + 1, 1);
    assert_int_equal(parse(s, &b, err, sizeof(err)), -E2BIG);
    assert_non_null(strstr(err, "points"));
    free(s);

    /* The limit counts points, not objects. */
    s = many(TELEMETRY_MAX_POINTS / 4 + 1, 4);
    assert_int_equal(parse(s, &b, err, sizeof(err)), -E2BIG);
    free(s);
    s = many(TELEMETRY_MAX_POINTS / 4, 4);
    assert_int_equal(parse(s, &b, err, sizeof(err)), 0);
    assert_int_equal(b.n, TELEMETRY_MAX_POINTS);
    telemetry_batch_fini(&b);
    free(s);
}

static void test_small_err_buffer(void **state)
{
    (void)state;
    telemetry_batch_t b;
    char err[8];
    assert_int_equal(parse("{\"a\": null}", &b, err, sizeof(err)), -EINVAL);
    assert_int_equal(strlen(err), sizeof(err) - 1);
}

static void test_cursor(void **state)
{
    (void)state;
    char buf[TELEMETRY_CURSOR_MAX];
    telemetry_cursor_t c = {1700000000123LL, 42}, d;
    assert_int_equal(telemetry_cursor_encode(&c, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "1700000000123.42");
    assert_int_equal(telemetry_cursor_decode(buf, &d), 0);
    assert_int_equal(d.ts, c.ts);
    assert_int_equal(d.seq, c.seq);

    c = (telemetry_cursor_t){INT64_MAX, INT64_MAX};
    assert_int_equal(telemetry_cursor_encode(&c, buf, sizeof(buf)), 0);
    assert_int_equal(telemetry_cursor_decode(buf, &d), 0);
    assert_int_equal(d.ts, INT64_MAX);
    assert_int_equal(d.seq, INT64_MAX);
    assert_int_equal(telemetry_cursor_decode("0.0", &d), 0);
    assert_int_equal(d.ts, 0);

    c = (telemetry_cursor_t){-1, 0};
    assert_int_equal(telemetry_cursor_encode(&c, buf, sizeof(buf)), -EINVAL);
    c = (telemetry_cursor_t){1, 2};
    assert_int_equal(telemetry_cursor_encode(&c, buf, 3), -ENOSPC);

    static const char *bad[] = {
        "",
        ".",
        "1",
        "1.",
        ".1",
        "-1.2",
        "1.-2",
        "+1.2",
        "1.+2",
        " 1.2",
        "1.2 ",
        "01.2",
        "1.02",
        "1.2.3",
        "a.b",
        "1x.2",
        "1.2x",
        "0x1.2",
        "9223372036854775808.1",
        "1.9223372036854775808",
        "99999999999999999999.1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d = (telemetry_cursor_t){5, 5};
        if (telemetry_cursor_decode(bad[i], &d) != -EINVAL)
            fail_msg("cursor \"%s\" accepted", bad[i]);
        assert_int_equal(d.ts, 5);
    }
    assert_int_equal(telemetry_cursor_decode(NULL, &d), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_object),     cmocka_unit_test(test_ts_seq),
        cmocka_unit_test(test_array),      cmocka_unit_test(test_unicode_and_limits_ok),
        cmocka_unit_test(test_bad),        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_max_points), cmocka_unit_test(test_small_err_buffer),
        cmocka_unit_test(test_cursor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

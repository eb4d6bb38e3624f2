/*
 * drover-sim's testable core: the latency histogram (error bound,
 * quantiles, merge/diff), command-line parsing and its safety rules,
 * telemetry and answer bodies, topic parsing, the credentials file, and
 * the statistics merge and JSON report.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/creds.h"
#include "sim/hist.h"
#include "sim/opts.h"
#include "sim/payload.h"
#include "sim/stats.h"

/* ---- histogram ------------------------------------------------------------ */

static void test_hist_error_bound(void **state)
{
    (void)state;
    /* Every value's bucket middle is within 0.8 % of it (exact below 128). */
    for (int64_t v = 0; v < 5000000; v += (v < 1000 ? 1 : v / 997)) {
        double mid = sim_hist_bucket_mid(sim_hist_index(v));
        if (v < 128)
            assert_true(mid == (double)v);
        else
            assert_true(fabs(mid - (double)v) / (double)v < 0.008);
    }
    /* Buckets are monotonic and the top one absorbs the rest. */
    unsigned prev = 0;
    for (int64_t v = 1; v < (INT64_C(1) << 50); v *= 3) {
        unsigned i = sim_hist_index(v);
        assert_true(i >= prev);
        assert_true(i < SIM_HIST_BUCKETS);
        prev = i;
    }
    assert_int_equal(sim_hist_index(INT64_MAX), SIM_HIST_BUCKETS - 1);
    assert_int_equal(sim_hist_index(-5), 0);
}

static void test_hist_quantiles(void **state)
{
    (void)state;
    static sim_hist_t h;
    sim_hist_reset(&h);
    assert_true(sim_hist_quantile(&h, 0.5) == 0);
    for (int64_t v = 1; v <= 1000; v++)
        sim_hist_add(&h, v * 1000); /* 1 ms .. 1 s in µs */
    assert_int_equal(h.n, 1000);
    assert_int_equal(h.min, 1000);
    assert_int_equal(h.max, 1000000);
    assert_true(fabs(sim_hist_quantile(&h, 0.5) - 500000) / 500000 < 0.01);
    assert_true(fabs(sim_hist_quantile(&h, 0.99) - 990000) / 990000 < 0.01);
    assert_true(fabs(sim_hist_quantile(&h, 0.999) - 999000) / 999000 < 0.01);
    assert_true(sim_hist_quantile(&h, 1.0) <= 1000000);
    assert_true(sim_hist_quantile(&h, 0) >= 1000);
    assert_true(fabs(sim_hist_mean(&h) - 500500) < 1);

    /* One sample: every quantile is it (clamped to min/max). */
    sim_hist_reset(&h);
    sim_hist_add(&h, 123457);
    assert_true(sim_hist_quantile(&h, 0.5) == 123457);
    assert_true(sim_hist_quantile(&h, 0.999) == 123457);
}

static void test_hist_merge_diff(void **state)
{
    (void)state;
    static sim_hist_t a, b, all, d;
    sim_hist_reset(&a);
    sim_hist_reset(&b);
    sim_hist_reset(&all);
    for (int64_t v = 0; v < 10000; v++) {
        sim_hist_add(v % 2 ? &a : &b, v * 7);
        sim_hist_add(&all, v * 7);
    }
    static sim_hist_t m;
    sim_hist_reset(&m);
    sim_hist_merge(&m, &a);
    sim_hist_merge(&m, &b);
    assert_int_equal(m.n, all.n);
    assert_int_equal(m.min, all.min);
    assert_int_equal(m.max, all.max);
    assert_memory_equal(m.counts, all.counts, sizeof(all.counts));
    assert_true(sim_hist_quantile(&m, 0.99) == sim_hist_quantile(&all, 0.99));

    /* diff: what was added between two snapshots. */
    static sim_hist_t before;
    before = a;
    for (int i = 0; i < 100; i++)
        sim_hist_add(&a, 5000000);
    sim_hist_diff(&d, &a, &before);
    assert_int_equal(d.n, 100);
    assert_true(fabs(sim_hist_quantile(&d, 0.5) - 5000000) / 5000000 < 0.008);
}

/* ---- options ---------------------------------------------------------------- */

static void test_parse_values(void **state)
{
    (void)state;
    int64_t us;
    assert_int_equal(sim_parse_duration("1s", &us), 0);
    assert_int_equal(us, 1000000);
    assert_int_equal(sim_parse_duration("250ms", &us), 0);
    assert_int_equal(us, 250000);
    assert_int_equal(sim_parse_duration("1.5s", &us), 0);
    assert_int_equal(us, 1500000);
    assert_int_equal(sim_parse_duration("2m", &us), 0);
    assert_int_equal(us, 120000000);
    assert_int_equal(sim_parse_duration("60", &us), 0);
    assert_int_equal(us, 60000000);
    assert_int_equal(sim_parse_duration("100us", &us), 0);
    assert_int_equal(us, 100);
    assert_int_equal(sim_parse_duration("0", &us), 0);
    assert_int_equal(us, 0);
    assert_int_equal(sim_parse_duration("24h", &us), 0);
    assert_int_equal(sim_parse_duration("25h", &us), -EINVAL);
    assert_int_equal(sim_parse_duration("-1s", &us), -EINVAL);
    assert_int_equal(sim_parse_duration("1x", &us), -EINVAL);
    assert_int_equal(sim_parse_duration("", &us), -EINVAL);
    assert_int_equal(sim_parse_duration("s", &us), -EINVAL);
    assert_int_equal(sim_parse_duration("nan", &us), -EINVAL);
    assert_int_equal(sim_parse_duration("1..2s", &us), -EINVAL);

    double v;
    assert_int_equal(sim_parse_share("0.25", &v), 0);
    assert_true(v == 0.25);
    assert_int_equal(sim_parse_share("10%", &v), 0);
    assert_true(fabs(v - 0.1) < 1e-12);
    assert_int_equal(sim_parse_share("1.5", &v), -EINVAL);
    assert_int_equal(sim_parse_share("%", &v), -EINVAL);
    assert_int_equal(sim_parse_rate("2.5k", &v), 0);
    assert_true(v == 2500);
    assert_int_equal(sim_parse_rate("1000/s", &v), 0);
    assert_int_equal(sim_parse_rate("fast", &v), -EINVAL);

    uint64_t u;
    assert_int_equal(sim_parse_size("1k", 65536, &u), 0);
    assert_int_equal(u, 1024);
    assert_int_equal(sim_parse_size("64", 65536, &u), 0);
    assert_int_equal(sim_parse_size("1M", 65536, &u), -EINVAL);
    assert_int_equal(sim_parse_size("1.5", 65536, &u), -EINVAL);
    assert_int_equal(sim_parse_u64("7", 1, 9, &u), 0);
    assert_int_equal(sim_parse_u64("10", 1, 9, &u), -EINVAL);
    assert_int_equal(sim_parse_u64("-1", 0, 9, &u), -EINVAL);

    sim_shape_t sh;
    uint32_t n;
    assert_int_equal(sim_parse_shape("simple", &sh, &n), 0);
    assert_int_equal(sh, SIM_SHAPE_SIMPLE);
    assert_int_equal(sim_parse_shape("metrics:8", &sh, &n), 0);
    assert_int_equal(sh, SIM_SHAPE_METRICS);
    assert_int_equal(n, 8);
    assert_int_equal(sim_parse_shape("batch:10", &sh, &n), 0);
    assert_int_equal(sh, SIM_SHAPE_BATCH);
    assert_int_equal(sim_parse_shape("batch:0", &sh, &n), -EINVAL);
    assert_int_equal(sim_parse_shape("square", &sh, &n), -EINVAL);
}

static void test_parse_targets(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(sim_parse_target("127.0.0.1:1883", false, host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 1883);
    assert_int_equal(sim_parse_target("127.9.8.7:1", false, host, sizeof(host), &port), 0);
    assert_int_equal(sim_parse_target("localhost:80", false, host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    /* Outside 127.0.0.0/8: refused unless allowed. */
    assert_int_equal(sim_parse_target("10.0.0.1:1883", false, host, sizeof(host), &port), -EPERM);
    assert_int_equal(sim_parse_target("10.0.0.1:1883", true, host, sizeof(host), &port), 0);
    assert_int_equal(sim_parse_target("128.0.0.1:1883", false, host, sizeof(host), &port), -EPERM);
    assert_int_equal(sim_parse_target("example.com:1883", true, host, sizeof(host), &port),
                     -EINVAL);
    assert_int_equal(sim_parse_target("127.0.0.1", false, host, sizeof(host), &port), -EINVAL);
    assert_int_equal(sim_parse_url("http://127.0.0.1:8080", false, host, sizeof(host), &port), 0);
    assert_int_equal(port, 8080);
    assert_int_equal(sim_parse_url("http://127.0.0.1:8080/", false, host, sizeof(host), &port), 0);
    assert_int_equal(sim_parse_url("https://127.0.0.1:8443", false, host, sizeof(host), &port),
                     -ENOTSUP);
    assert_int_equal(sim_parse_url("http://192.168.1.1:80", false, host, sizeof(host), &port),
                     -EPERM);
    assert_int_equal(sim_parse_url("127.0.0.1:80", false, host, sizeof(host), &port), -EINVAL);
    assert_int_equal(sim_parse_url("http://127.0.0.1:80/api", false, host, sizeof(host), &port),
                     -EINVAL);
}

/* Parses a NULL-terminated list of arguments. */
static int parse(sim_opts_t *o, char *err, const char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"drover-sim";
    for (; *args && argc < 63; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    return sim_opts_parse(o, argc, argv, err, 256);
}

static void test_opts(void **state)
{
    (void)state;
    static sim_opts_t o;
    char err[256];
    const char *full[] = {"--mqtt",
                          "127.0.0.1:1883",
                          "--api",
                          "http://127.0.0.1:8080",
                          "--token",
                          "T",
                          "--devices",
                          "5000",
                          "--connect-rate",
                          "1000",
                          "--telemetry-interval",
                          "1s",
                          "--qos",
                          "1",
                          "--duration",
                          "60s",
                          "--json",
                          NULL};
    assert_int_equal(parse(&o, err, full), 0);
    assert_string_equal(o.mqtt_host, "127.0.0.1");
    assert_int_equal(o.mqtt_port, 1883);
    assert_true(o.api_given);
    assert_int_equal(o.api_port, 8080);
    assert_int_equal(o.devices, 5000);
    assert_true(o.connect_rate == 1000);
    assert_int_equal(o.telemetry_interval_us, 1000000);
    assert_int_equal(o.qos, 1);
    assert_int_equal(o.duration_us, 60000000);
    assert_true(o.json);
    assert_int_equal(o.version, 4);

    /* Parsing twice works (getopt state is reset). */
    const char *more[] = {"--no-auth", "--protocol",
                          "5",         "--workers",
                          "4",         "--devices",
                          "19000",     "--drop-at",
                          "20s",       "--telemetry-interval",
                          "off",       "--command-fail-share",
                          "10%",       "--command-delay",
                          "250ms",     NULL};
    assert_int_equal(parse(&o, err, more), 0);
    assert_int_equal(o.version, 5);
    assert_int_equal(o.workers, 4);
    assert_int_equal(o.drop_at_us, 20000000);
    assert_int_equal(o.telemetry_interval_us, -1);
    assert_true(fabs(o.command_fail_share - 0.1) < 1e-12);
    assert_int_equal(o.command_delay_us, 250000);

    const char *pace[] = {"--no-auth", "--burst",        "5",  "--topic", "relay",   "--inflight",
                          "8",         "--payload-size", "1k", "--shape", "batch:4", NULL};
    assert_int_equal(parse(&o, err, pace), 0);
    assert_int_equal(o.burst, 5);
    assert_string_equal(o.topic_leaf, "relay");
    assert_int_equal(o.inflight, 8);
    assert_int_equal(o.payload_size, 1024);
    assert_int_equal(o.shape, SIM_SHAPE_BATCH);
    assert_int_equal(o.shape_n, 4);

    /* QoS 2 on both sides; relay mode: topics PREFIX/{id}, no device
     * subscriptions, the subscriber on PREFIX/+ unless told otherwise. */
    const char *relay[] = {"--no-auth", "--qos",          "2",  "--sub-qos", "2", "--relay",
                           "bench",     "--relay-window", "64", NULL};
    assert_int_equal(parse(&o, err, relay), 0);
    assert_int_equal(o.qos, 2);
    assert_int_equal(o.sub_qos, 2);
    assert_string_equal(o.relay_prefix, "bench");
    assert_string_equal(o.subscribe_all, "bench/+");
    assert_false(o.subscribe);
    assert_int_equal(o.relay_window, 64);
    const char *one[] = {"--no-auth",       "--devices",      "1", "--relay", "a/b",
                         "--subscribe-all", "a/b/sim-000000", NULL};
    assert_int_equal(parse(&o, err, one), 0);
    assert_string_equal(o.subscribe_all, "a/b/sim-000000");
    assert_int_equal(o.relay_window, 0);
    /* A window with a plain --subscribe-all subscriber. */
    const char *win[] = {"--no-auth", "--subscribe-all", "x/#", "--relay-window", "1", NULL};
    assert_int_equal(parse(&o, err, win), 0);
    assert_null(o.relay_prefix);
    assert_int_equal(o.relay_window, 1);

    const char *help[] = {"--help", NULL};
    assert_int_equal(parse(&o, err, help), 1);
}

static void test_opts_refusals(void **state)
{
    (void)state;
    static sim_opts_t o;
    char err[256];
    struct {
        const char *args[10];
        const char *says; /* part of the message */
    } cases[] = {
        {{"--no-auth", "--mqtt", "10.1.2.3:1883", NULL}, "--allow-remote"},
        {{"--no-auth", "--tls", NULL}, "not yet supported"},
        {{"--no-auth", "--enroll", "x", NULL}, "not yet supported"},
        {{NULL}, "no credentials"},
        {{"--api", "http://127.0.0.1:1", NULL}, "--token"},
        {{"--creds", "f", "--api", "http://127.0.0.1:1", "--token", "t", NULL}, "either"},
        {{"--no-auth", "--devices", "0", NULL}, "--devices"},
        {{"--no-auth", "--devices", "2000000", NULL}, "--devices"},
        {{"--no-auth", "--duration", "48h", NULL}, "--duration"},
        {{"--no-auth", "--qos", "3", NULL}, "--qos"},
        {{"--no-auth", "--sub-qos", "3", NULL}, "--sub-qos"},
        {{"--no-auth", "--relay", "a/+", NULL}, "--relay"},
        {{"--no-auth", "--relay", "", NULL}, "--relay"},
        {{"--no-auth", "--relay", "a", "--topic", "t", NULL}, "exclude"},
        {{"--no-auth", "--relay-window", "10", NULL}, "needs a subscriber"},
        {{"--no-auth", "--relay", "a", "--relay-window", "0", NULL}, "--relay-window"},
        {{"--no-auth", "--relay", "a", "--relay-window", "8", "--workers", "2", NULL},
         "--workers 1"},
        {{"--no-auth", "--drop-at", "70s", NULL}, "--drop-at"},
        {{"--no-auth", "--devices", "2", "--workers", "3", NULL}, "--workers"},
        {{"--no-auth", "--id-prefix", "bad/prefix", NULL}, "--id-prefix"},
        {{"--no-auth", "--bogus", NULL}, "unknown option"},
        {{"--no-auth", "--devices", NULL}, "needs a value"},
        {{"--no-auth", "stray", NULL}, "unexpected argument"},
        {{"--create-only", "--no-auth", NULL}, "--create-only"},
        {{"--no-auth", "--messages", "10", "--telemetry-interval", "off", NULL}, "--messages"},
        {{"--no-auth", "--topic", "a/+", NULL}, "--topic"},
        {{"--no-auth", "--burst", "0", NULL}, "--burst"},
        {{"--no-auth", "--connect-timeout", "soon", NULL}, "--connect-timeout"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = parse(&o, err, cases[i].args);
        if (rc != -EINVAL || !strstr(err, cases[i].says))
            fail_msg("case %zu: rc %d, err \"%s\", wanted \"%s\"", i, rc, err, cases[i].says);
    }
    /* --allow-remote lifts the loopback rule. */
    const char *remote[] = {"--no-auth", "--mqtt", "10.1.2.3:1883", "--allow-remote", NULL};
    assert_int_equal(parse(&o, err, remote), 0);
}

/* ---- payloads ----------------------------------------------------------------- */

static json_t *load(const char *p, size_t n)
{
    json_error_t e;
    json_t *j = json_loadb(p, n, 0, &e);
    if (!j)
        fail_msg("not JSON (%s): %.*s", e.text, (int)n, p);
    return j;
}

static void test_payload_shapes(void **state)
{
    (void)state;
    char b[8192];
    size_t n;
    sim_payload_spec_t s = {.shape = SIM_SHAPE_SIMPLE};
    assert_int_equal(sim_payload_build(b, sizeof(b), &s, 42, 0, 0, &n), 0);
    json_t *j = load(b, n);
    assert_true(json_is_object(j));
    assert_true(json_is_number(json_object_get(j, "temp")));
    assert_null(json_object_get(j, "seq"));
    json_decref(j);

    /* seq, send time and padding to the requested size. */
    s = (sim_payload_spec_t){.shape = SIM_SHAPE_SIMPLE, .seq = true, .sent_us = true, .size = 256};
    assert_int_equal(sim_payload_build(b, sizeof(b), &s, 7, 0, 123456789, &n), 0);
    assert_int_equal(n, 256);
    j = load(b, n);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "t")), 123456789);
    assert_true(json_is_string(json_object_get(j, "pad")));
    json_decref(j);
    int64_t t;
    assert_int_equal(sim_payload_sent_us((const uint8_t *)b, n, &t), 0);
    assert_int_equal(t, 123456789);
    assert_int_equal(sim_payload_sent_us((const uint8_t *)"{\"x\":1}", 7, &t), -ENOENT);

    /* Relay bodies name their publisher and sequence number, padded to
     * the same size; the subscriber's scan finds both ("pad" is not "p"). */
    s = (sim_payload_spec_t){
        .shape = SIM_SHAPE_SIMPLE, .sent_us = true, .relay = true, .pub = 77, .size = 64};
    assert_int_equal(sim_payload_build(b, sizeof(b), &s, 123456, 0, 42, &n), 0);
    assert_int_equal(n, 64);
    j = load(b, n);
    assert_int_equal(json_integer_value(json_object_get(j, "p")), 77);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 123456);
    json_decref(j);
    uint64_t pub = 0, seq = 0;
    assert_int_equal(sim_payload_relay_ids((const uint8_t *)b, n, &pub, &seq), 0);
    assert_int_equal(pub, 77);
    assert_int_equal(seq, 123456);
    static const char nop[] = "{\"pad\":\"xx\",\"seq\":5}";
    assert_int_equal(sim_payload_relay_ids((const uint8_t *)nop, strlen(nop), &pub, &seq), -ENOENT);
    static const char noseq[] = "{\"p\":1,\"t\":5}";
    assert_int_equal(sim_payload_relay_ids((const uint8_t *)noseq, strlen(noseq), &pub, &seq),
                     -ENOENT);
    /* A cut body: the number at the very end is still read, never past it. */
    static const char cut[] = "{\"p\":12,\"seq\":3";
    assert_int_equal(sim_payload_relay_ids((const uint8_t *)cut, strlen(cut), &pub, &seq), 0);
    assert_int_equal(pub, 12);
    assert_int_equal(seq, 3);

    s = (sim_payload_spec_t){.shape = SIM_SHAPE_METRICS, .n = 10};
    assert_int_equal(sim_payload_build(b, sizeof(b), &s, 1, 0, 0, &n), 0);
    j = load(b, n);
    assert_int_equal(json_object_size(j), 10);
    assert_true(json_is_number(json_object_get(j, "m9")));
    json_decref(j);

    s = (sim_payload_spec_t){.shape = SIM_SHAPE_BATCH, .n = 5, .seq = true};
    assert_int_equal(sim_payload_build(b, sizeof(b), &s, 3, 1700000000000, 0, &n), 0);
    j = load(b, n);
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 5);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 4), "ts")),
                     1700000000000);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 0), "ts")),
                     1700000000000 - 4000);
    json_decref(j);

    /* Too small a buffer is -ENOSPC, not a cut body. */
    s = (sim_payload_spec_t){.shape = SIM_SHAPE_SIMPLE, .size = 500};
    assert_int_equal(sim_payload_build(b, 100, &s, 1, 0, 0, &n), -ENOSPC);
}

static void test_topics_and_answers(void **state)
{
    (void)state;
    char cid[40];
    const char *t = "devices/d-1/commands/abc";
    assert_true(sim_topic_command(t, strlen(t), "d-1", cid, sizeof(cid)));
    assert_string_equal(cid, "abc");
    t = "devices/d-1/commands/abc/result";
    assert_false(sim_topic_command(t, strlen(t), "d-1", cid, sizeof(cid)));
    t = "devices/d-12/commands/abc";
    assert_false(sim_topic_command(t, strlen(t), "d-1", cid, sizeof(cid)));
    t = "devices/d-1/commands/";
    assert_false(sim_topic_command(t, strlen(t), "d-1", cid, sizeof(cid)));
    t = "devices/d-1/commands/0123456789012345678901234567890123456789";
    assert_false(sim_topic_command(t, strlen(t), "d-1", cid, sizeof(cid)));
    t = "devices/d-1/twin/desired";
    assert_true(sim_topic_desired(t, strlen(t), "d-1"));
    assert_false(sim_topic_desired(t, strlen(t) - 1, "d-1"));
    assert_false(sim_topic_command(t, strlen(t), "d-1", cid, sizeof(cid)));

    int64_t v;
    const char *d = "{\"version\": 12, \"state\": {\"a\": 1}}";
    assert_int_equal(sim_desired_version((const uint8_t *)d, strlen(d), &v), 0);
    assert_int_equal(v, 12);
    d = "{\"state\": {}}";
    assert_int_equal(sim_desired_version((const uint8_t *)d, strlen(d), &v), -EINVAL);
    d = "{not json";
    assert_int_equal(sim_desired_version((const uint8_t *)d, strlen(d), &v), -EINVAL);

    char b[256];
    size_t n;
    assert_int_equal(sim_command_result(b, sizeof(b), false, &n), 0);
    json_t *j = load(b, n);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "succeeded");
    assert_true(json_is_object(json_object_get(j, "output")));
    json_decref(j);
    assert_int_equal(sim_command_result(b, sizeof(b), true, &n), 0);
    j = load(b, n);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "failed");
    json_decref(j);
    assert_int_equal(sim_twin_applied(b, sizeof(b), 9, &n), 0);
    assert_int_equal(n, strlen("{\"applied\":9}"));
    assert_memory_equal(b, "{\"applied\":9}", n);
    assert_int_equal(sim_twin_report(b, sizeof(b), 5, 2, &n), 0);
    j = load(b, n);
    assert_int_equal(json_integer_value(json_object_get(j, "uptime_s")), 5);
    json_decref(j);
    assert_int_equal(sim_twin_applied(b, 4, 9, &n), -ENOSPC);
}

/* ---- credentials ---------------------------------------------------------------- */

static void test_creds(void **state)
{
    (void)state;
    sim_cred_t c;
    assert_int_equal(sim_creds_parse_line("dev-1 s3cret\n", &c), 0);
    assert_string_equal(c.id, "dev-1");
    assert_string_equal(c.secret, "s3cret");
    assert_int_equal(sim_creds_parse_line("  dev-2\tabc  \r\n", &c), 0);
    assert_string_equal(c.id, "dev-2");
    assert_int_equal(sim_creds_parse_line("dev-3 -\n", &c), 0);
    assert_string_equal(c.secret, "");
    assert_int_equal(sim_creds_parse_line("# comment\n", &c), -ENOENT);
    assert_int_equal(sim_creds_parse_line("\n", &c), -ENOENT);
    assert_int_equal(sim_creds_parse_line("only-id\n", &c), -EINVAL);
    assert_int_equal(sim_creds_parse_line("a b c\n", &c), -EINVAL);
    assert_int_equal(sim_creds_parse_line("bad/id x\n", &c), -EINVAL);

    char path[] = "/tmp/test_sim_creds.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    sim_cred_t w[3];
    assert_int_equal(sim_creds_generate(w, 3, "t-", 5), 0);
    assert_string_equal(w[0].id, "t-000005");
    assert_string_equal(w[2].id, "t-000007");
    snprintf(w[1].secret, sizeof(w[1].secret), "pw1");
    assert_int_equal(sim_creds_write(path, w, 3), 0);
    sim_cred_t *r = NULL;
    uint32_t n = 0;
    char err[256];
    assert_int_equal(sim_creds_read(path, 100, &r, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    assert_string_equal(r[1].id, "t-000006");
    assert_string_equal(r[1].secret, "pw1");
    assert_string_equal(r[0].secret, "");
    free(r);
    assert_int_equal(sim_creds_read(path, 2, &r, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    free(r);

    FILE *f = fopen(path, "w");
    fputs("# fleet\nok-1 pw\nbroken line here\n", f);
    fclose(f);
    assert_int_equal(sim_creds_read(path, 100, &r, &n, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, ":3:"));
    unlink(path);
    assert_true(sim_creds_read(path, 100, &r, &n, err, sizeof(err)) < 0);
}

/* ---- statistics ---------------------------------------------------------------- */

static void test_stats_merge_report(void **state)
{
    (void)state;
    static sim_stats_t a, b, m;
    sim_stats_init(&a);
    sim_stats_init(&b);
    a.devices = b.devices = 100;
    a.connects = b.connects = 100;
    a.connected = b.connected = 100;
    a.pub_sent = 1000;
    a.pub_acked = 1000;
    b.pub_sent = 3000;
    b.pub_acked = 2999;
    b.errors[SIM_ERR_UNACKED] = 1;
    b.refused[0x86] = 2;
    a.t_start = 1000000;
    b.t_start = 1100000;
    a.t_all_connected = 1500000;
    b.t_all_connected = 2000000;
    a.t_first_pub = 1600000;
    b.t_first_pub = 1550000;
    a.t_last_ack = 3550000;
    b.t_last_ack = 3000000;
    a.t_end = b.t_end = 4000000;
    for (int i = 1; i <= 100; i++) {
        sim_hist_add(&a.puback, i * 100);
        sim_hist_add(&b.puback, i * 100);
    }
    sim_stats_init(&m);
    sim_stats_merge(&m, &a, true);
    sim_stats_merge(&m, &b, false);
    assert_int_equal(m.devices, 200);
    assert_int_equal(m.pub_acked, 3999);
    assert_int_equal(m.t_start, 1000000);
    assert_int_equal(m.t_all_connected, 2000000); /* the last worker's */
    assert_int_equal(m.t_first_pub, 1550000);
    assert_int_equal(m.t_last_ack, 3550000);
    assert_int_equal(m.puback.n, 200);
    assert_int_equal(sim_stats_errors(&m), 1);

    /* A worker that never got everyone connected keeps "all" unset. */
    static sim_stats_t m2;
    b.t_all_connected = 0;
    sim_stats_init(&m2);
    sim_stats_merge(&m2, &a, true);
    sim_stats_merge(&m2, &b, false);
    assert_int_equal(m2.t_all_connected, 0);

    /* The JSON report parses and says what was measured. */
    static sim_opts_t o;
    sim_opts_init(&o);
    o.workers = 2;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(sim_report_json(f, &o, &m, 0, false), 0);
    fclose(f);
    json_t *j = load(buf, len);
    json_t *tel = json_object_get(j, "telemetry");
    assert_int_equal(json_integer_value(json_object_get(tel, "acked")), 3999);
    /* 3999 acknowledged over 1.55 s .. 3.55 s */
    assert_true(fabs(json_real_value(json_object_get(tel, "acked_per_s")) - 1999.5) < 0.01);
    json_t *conn = json_object_get(j, "connections");
    /* 200 devices from 1.0 s to 2.0 s */
    assert_true(fabs(json_real_value(json_object_get(conn, "connects_per_s")) - 200) < 0.01);
    json_t *errs = json_object_get(j, "errors");
    assert_int_equal(json_integer_value(json_object_get(errs, "total")), 1);
    assert_int_equal(json_integer_value(json_object_get(errs, "unacked_at_end")), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(errs, "connack_codes"), "0x86")), 2);
    json_t *lat = json_object_get(tel, "puback_ms");
    assert_true(fabs(json_real_value(json_object_get(lat, "p50")) - 5.0) < 0.1);
    json_decref(j);
    free(buf);

    /* The text report and the live line print without trouble. */
    f = open_memstream(&buf, &len);
    sim_report_text(f, &o, &m, 0, true);
    sim_report_live(f, &m, &a, 3.0, 1.0);
    fclose(f);
    assert_non_null(strstr(buf, "interrupted"));
    assert_non_null(strstr(buf, "unacked_at_end=1"));
    free(buf);
}

/* A QoS 2 relay run: PUBREC latency and the watcher's QoS 2 counters merge
 * and reach both reports. */
static void test_stats_qos2_relay(void **state)
{
    (void)state;
    static sim_stats_t a, b, m;
    sim_stats_init(&a);
    sim_stats_init(&b);
    a.devices = b.devices = 1;
    a.pub_sent = a.pub_acked = 500;
    b.pub_sent = b.pub_acked = 500;
    a.sub_received = 990;
    a.sub_duplicates = 3;
    a.relay_gave_up = 10;
    a.sub_gaps = 5;
    b.sub_gaps = 2;
    b.sub_late = 1;
    b.sub_duplicates = 1;
    a.t_first_pub = b.t_first_pub = 1000000;
    a.t_last_ack = b.t_last_ack = 2000000;
    a.t_first_sub = 1000000;
    a.t_last_sub = 1990000;
    a.t_end = b.t_end = 2500000;
    for (int i = 1; i <= 500; i++) {
        sim_hist_add(&a.pubrec, 100);
        sim_hist_add(&b.pubrec, 300);
        sim_hist_add(&a.puback, 400);
        sim_hist_add(&b.puback, 400);
    }
    sim_stats_init(&m);
    sim_stats_merge(&m, &a, true);
    sim_stats_merge(&m, &b, false);
    assert_int_equal(m.sub_duplicates, 4);
    assert_int_equal(m.relay_gave_up, 10);
    assert_int_equal(m.sub_gaps, 7);
    assert_int_equal(m.sub_late, 1);
    assert_int_equal(m.pubrec.n, 1000);

    static sim_opts_t o;
    char err[256];
    const char *args[] = {"--no-auth", "--qos",          "2",   "--sub-qos", "2", "--relay",
                          "bench",     "--relay-window", "100", NULL};
    assert_int_equal(parse(&o, err, args), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(sim_report_json(f, &o, &m, 0, false), 0);
    fclose(f);
    json_t *j = load(buf, len);
    json_t *tel = json_object_get(j, "telemetry");
    assert_int_equal(json_integer_value(json_object_get(tel, "qos")), 2);
    /* QoS 2 counts as acknowledged at PUBCOMP: a rate is reported. */
    assert_true(fabs(json_real_value(json_object_get(tel, "acked_per_s")) - 1000) < 0.01);
    json_t *rec = json_object_get(tel, "pubrec_ms");
    assert_int_equal(json_integer_value(json_object_get(rec, "n")), 1000);
    assert_true(fabs(json_real_value(json_object_get(rec, "p50")) - 0.1) < 0.01);
    json_t *w = json_object_get(j, "watcher");
    assert_string_equal(json_string_value(json_object_get(w, "filter")), "bench/+");
    assert_int_equal(json_integer_value(json_object_get(w, "qos")), 2);
    assert_int_equal(json_integer_value(json_object_get(w, "received")), 990);
    assert_int_equal(json_integer_value(json_object_get(w, "duplicates")), 4);
    assert_int_equal(json_integer_value(json_object_get(w, "gave_up")), 10);
    assert_int_equal(json_integer_value(json_object_get(w, "gaps")), 7);
    assert_int_equal(json_integer_value(json_object_get(w, "late")), 1);
    assert_int_equal(json_integer_value(json_object_get(w, "relay_window")), 100);
    /* 990 deliveries over 0.99 s */
    assert_true(fabs(json_real_value(json_object_get(w, "per_s")) - 1000) < 0.01);
    json_decref(j);
    free(buf);

    f = open_memstream(&buf, &len);
    sim_report_text(f, &o, &m, 0, false);
    fclose(f);
    assert_non_null(strstr(buf, "PUBLISH->PUBCOMP"));
    assert_non_null(strstr(buf, "PUBLISH->PUBREC"));
    assert_non_null(strstr(buf, "4 duplicates"));
    assert_non_null(strstr(buf, "10 given up"));
    assert_non_null(strstr(buf, "7 skipped over, 1 late"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_error_bound),   cmocka_unit_test(test_hist_quantiles),
        cmocka_unit_test(test_hist_merge_diff),    cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_parse_targets),      cmocka_unit_test(test_opts),
        cmocka_unit_test(test_opts_refusals),      cmocka_unit_test(test_payload_shapes),
        cmocka_unit_test(test_topics_and_answers), cmocka_unit_test(test_creds),
        cmocka_unit_test(test_stats_merge_report), cmocka_unit_test(test_stats_qos2_relay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

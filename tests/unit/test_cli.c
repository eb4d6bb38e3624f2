/*
 * Unit tests of the CLI's pure helpers (cli/cli_util.c): time arguments and
 * formatting, option values, the config file, JSON text and pretty printing,
 * terminal-safe text, aligned tables, and the arguments and progress text of
 * the control commands (params, bulk targets, job progress). No server, no
 * libcurl.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static void test_parse_when_relative(void **state)
{
    (void)state;
    char out[64];
    const int64_t now = 1700000000000LL;
    assert_int_equal(cli_parse_when("-1h", now, out, sizeof(out)), 0);
    assert_string_equal(out, "1699996400000");
    assert_int_equal(cli_parse_when("-15m", now, out, sizeof(out)), 0);
    assert_string_equal(out, "1699999100000");
    assert_int_equal(cli_parse_when("-30s", now, out, sizeof(out)), 0);
    assert_string_equal(out, "1699999970000");
    assert_int_equal(cli_parse_when("-2d", now, out, sizeof(out)), 0);
    assert_string_equal(out, "1699827200000");
    assert_int_equal(cli_parse_when("-1w", now, out, sizeof(out)), 0);
    assert_string_equal(out, "1699395200000");
    assert_int_equal(cli_parse_when("-0s", now, out, sizeof(out)), 0);
    assert_string_equal(out, "1700000000000");
    assert_int_equal(cli_parse_when("now", now, out, sizeof(out)), 0);
    assert_string_equal(out, "1700000000000");
}

static void test_parse_when_absolute(void **state)
{
    (void)state;
    char out[64];
    const int64_t now = 1700000000000LL;
    /* Absolute times are validated, then passed through unchanged. */
    assert_int_equal(cli_parse_when("1700000000000", now, out, sizeof(out)), 0);
    assert_string_equal(out, "1700000000000");
    assert_int_equal(cli_parse_when("2026-11-27T10:00:00.5+02:00", now, out, sizeof(out)), 0);
    assert_string_equal(out, "2026-11-27T10:00:00.5+02:00");
    assert_int_equal(cli_parse_when("-15", now, out, sizeof(out)), 0);
    assert_string_equal(out, "-15");
}

static void test_parse_when_rejects(void **state)
{
    (void)state;
    char out[64];
    const int64_t now = 1700000000000LL;
    const char *bad[] = {"",   "yesterday", "-",    "-h",    "-1x",        "-1hh",
                         "1h", "+1h",       "- 1h", "-1.5h", "2026-11-27", "2026-11-27T10:00:00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(cli_parse_when(bad[i], now, out, sizeof(out)), -EINVAL);
    assert_int_equal(cli_parse_when("-9999999999999999w", now, out, sizeof(out)), -ERANGE);
    assert_int_equal(cli_parse_when("-999999999999999w", now, out, sizeof(out)), -ERANGE);
    char small[8];
    assert_int_equal(cli_parse_when("-1h", now, small, sizeof(small)), -ERANGE);
    assert_int_equal(cli_parse_when("2026-11-27T10:00:00Z", now, small, sizeof(small)), -ERANGE);
}

static void test_format_time(void **state)
{
    (void)state;
    char out[CLI_TIME_MAX];
    set_tz("UTC0");
    assert_int_equal(cli_format_time(1700000000123LL, true, out, sizeof(out)), 0);
    assert_string_equal(out, "2023-11-14T22:13:20.123Z");
    assert_int_equal(cli_format_time(1700000000123LL, false, out, sizeof(out)), 0);
    assert_string_equal(out, "2023-11-14T22:13:20Z");
    assert_int_equal(cli_format_time(-1, true, out, sizeof(out)), 0);
    assert_string_equal(out, "1969-12-31T23:59:59.999Z");
    set_tz("CET-1");
    assert_int_equal(cli_format_time(1700000000000LL, false, out, sizeof(out)), 0);
    assert_string_equal(out, "2023-11-14T23:13:20+01:00");
    set_tz("NST+3:30");
    assert_int_equal(cli_format_time(1700000000007LL, true, out, sizeof(out)), 0);
    assert_string_equal(out, "2023-11-14T18:43:20.007-03:30");
    char small[10];
    assert_int_equal(cli_format_time(0, false, small, sizeof(small)), -ERANGE);
    set_tz("UTC0");
}

static void test_tag_split(void **state)
{
    (void)state;
    size_t kl = 99;
    assert_int_equal(cli_tag_split("site=berlin", &kl), 0);
    assert_int_equal(kl, 4);
    assert_int_equal(cli_tag_split("k=", &kl), 0);
    assert_int_equal(kl, 1);
    assert_int_equal(cli_tag_split("a=b=c", &kl), 0);
    assert_int_equal(kl, 1);
    kl = 99;
    assert_int_equal(cli_tag_split("=v", &kl), -EINVAL);
    assert_int_equal(cli_tag_split("novalue", &kl), -EINVAL);
    assert_int_equal(kl, 99); /* untouched on failure */
}

static void test_parse_numbers(void **state)
{
    (void)state;
    double d = -1;
    assert_int_equal(cli_parse_seconds("2.5", &d), 0);
    assert_true(d == 2.5);
    assert_int_equal(cli_parse_seconds("30", &d), 0);
    assert_true(d == 30);
    assert_int_equal(cli_parse_seconds("0", &d), -ERANGE);
    assert_int_equal(cli_parse_seconds("86401", &d), -ERANGE);
    const char *bad[] = {"", "-1", "1e3", "inf", "nan", ".", "1.2.3", " 1", "0x10", "1s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(cli_parse_seconds(bad[i], &d), -EINVAL);
    assert_true(d == 30);

    int n = -1;
    assert_int_equal(cli_parse_count("5", &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(cli_parse_count("0", &n), -ERANGE);
    assert_int_equal(cli_parse_count("-3", &n), -ERANGE);
    assert_int_equal(cli_parse_count("99999999999", &n), -ERANGE);
    assert_int_equal(cli_parse_count("abc", &n), -EINVAL);
    assert_int_equal(cli_parse_count("", &n), -EINVAL);
    assert_int_equal(n, 5);
}

static void test_config_parse(void **state)
{
    (void)state;
    cli_config_t c;
    const char *text = "# drover CLI\n"
                       "\n"
                       "  server = \"https://fleet.example:8443\"  \r\n"
                       "color=always\n"
                       "token = drv_first\n"
                       "token=drv_second"; /* last wins, no final newline */
    assert_int_equal(cli_config_parse(text, strlen(text), &c, NULL), 0);
    assert_string_equal(c.server, "https://fleet.example:8443");
    assert_string_equal(c.token, "drv_second");
    cli_config_fini(&c);
    assert_null(c.server);

    assert_int_equal(cli_config_parse("", 0, &c, NULL), 0);
    assert_null(c.server);
    assert_null(c.token);
    cli_config_fini(&c);

    int line = 0;
    const char *bad = "server = x\n# ok\njunk line\n";
    assert_int_equal(cli_config_parse(bad, strlen(bad), &c, &line), -EINVAL);
    assert_int_equal(line, 3);
    assert_int_equal(cli_config_parse(" = v\n", 5, &c, &line), -EINVAL);
    assert_int_equal(line, 1);
    /* An embedded NUL is not a line anybody meant. */
    assert_int_equal(cli_config_parse("token = a\0b\n", 12, &c, &line), -EINVAL);
}

static void check_text(json_t *v, const char *want)
{
    char *t = cli_json_text(v);
    assert_non_null(t);
    assert_string_equal(t, want);
    free(t);
    json_decref(v);
}

static void test_json_text(void **state)
{
    (void)state;
    check_text(json_string("open"), "open");
    check_text(json_integer(1700000000000LL), "1700000000000");
    check_text(json_integer(-7), "-7");
    check_text(json_real(0.1), "0.1");
    check_text(json_real(21.5), "21.5");
    check_text(json_real(1.0), "1.0");
    check_text(json_real(1e300), "1e+300");
    check_text(json_real(1.0 / 3), "0.3333333333333333");
    check_text(json_true(), "true");
    check_text(json_false(), "false");
    check_text(json_null(), "-");
    check_text(json_pack("{s:i}", "a", 1), "{\"a\":1}");
}

static void check_pretty(const char *in, const char *want)
{
    json_error_t e;
    json_t *v = json_loads(in, JSON_DECODE_ANY, &e);
    assert_non_null(v);
    cli_buf_t b;
    cli_buf_init(&b, 1 << 20);
    assert_int_equal(cli_json_pretty(v, &b), 0);
    assert_string_equal(b.data, want);
    cli_buf_fini(&b);
    json_decref(v);
}

static void test_json_pretty(void **state)
{
    (void)state;
    check_pretty("{\"devices\":[{\"id\":\"d1\",\"tags\":{},\"v\":0.1,\"n\":null}],\"next\":null}",
                 "{\n"
                 "  \"devices\": [\n"
                 "    {\n"
                 "      \"id\": \"d1\",\n"
                 "      \"tags\": {},\n"
                 "      \"v\": 0.1,\n"
                 "      \"n\": null\n"
                 "    }\n"
                 "  ],\n"
                 "  \"next\": null\n"
                 "}");
    check_pretty("[]", "[]");
    check_pretty("[1,true,\"x\"]", "[\n  1,\n  true,\n  \"x\"\n]");
    check_pretty("\"a\\\"b\\\\c\\n\\u001b[0m\\u007f\"", "\"a\\\"b\\\\c\\n\\u001b[0m\\u007f\"");
    check_pretty("\"caf\\u00e9 \\u2603\"", "\"caf\xc3\xa9 \xe2\x98\x83\"");

    /* Output is capped like every other buffer. */
    json_t *v = json_pack("[s,s]", "0123456789", "0123456789");
    cli_buf_t b;
    cli_buf_init(&b, 16);
    assert_int_equal(cli_json_pretty(v, &b), -EFBIG);
    cli_buf_fini(&b);
    json_decref(v);
}

static void test_buf(void **state)
{
    (void)state;
    cli_buf_t b;
    cli_buf_init(&b, 8);
    assert_int_equal(cli_buf_puts(&b, "abcd"), 0);
    assert_int_equal(cli_buf_append(&b, "efgh", 4), 0);
    assert_int_equal(cli_buf_append(&b, "i", 1), -EFBIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "abcdefgh");
    assert_int_equal(cli_buf_append(&b, "", 0), 0);
    cli_buf_fini(&b);
    assert_null(b.data);
    cli_buf_init(&b, SIZE_MAX);
    assert_int_equal(cli_buf_append(&b, "x", 1), 0);
    assert_int_equal(cli_buf_append(&b, "x", SIZE_MAX), -EFBIG);
    cli_buf_fini(&b);
}

static void check_sanitize(const char *in, size_t max, const char *want)
{
    char *s = cli_sanitize(in, max);
    assert_non_null(s);
    assert_string_equal(s, want);
    free(s);
}

static void test_sanitize(void **state)
{
    (void)state;
    check_sanitize("plain", 0, "plain");
    check_sanitize(NULL, 0, "");
    check_sanitize("\x1b[31mred\x1b[0m", 0, "?[31mred?[0m");
    check_sanitize("a\tb\nc\x7f", 0, "a?b?c?");
    check_sanitize("\xc2\x9b"
                   "2J",
                   0, "?2J");                        /* C1 CSI */
    check_sanitize("caf\xc3\xa9", 0, "caf\xc3\xa9"); /* UTF-8 kept */
    check_sanitize("\xff\xfe"
                   "x\xe2\x98",
                   0, "??x??"); /* malformed bytes */
    check_sanitize("abcdefgh", 5, "ab...");
    check_sanitize("abcde", 5, "abcde");
    check_sanitize("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 5, "\xc3\xa9\xc3\xa9...");
}

static char *print_table(const cli_table_t *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    cli_table_print(t, f);
    fclose(f);
    return buf;
}

static void test_table(void **state)
{
    (void)state;
    cli_table_t t;
    assert_int_equal(cli_table_init(&t, 0), -EINVAL);
    assert_int_equal(cli_table_init(&t, CLI_TABLE_COLS_MAX + 1), -EINVAL);
    assert_int_equal(cli_table_init(&t, 3), 0);
    const char *h[] = {"ID", "ONLINE", "TAGS"};
    const char *r1[] = {"dev-1", "yes", "site=berlin"};
    const char *r2[] = {"caf\xc3\xa9-long", NULL, ""};
    const char *r3[] = {"x\x1b", "no", "a=b"};
    assert_int_equal(cli_table_add(&t, h), 0);
    assert_int_equal(cli_table_add(&t, r1), 0);
    assert_int_equal(cli_table_add(&t, r2), 0);
    assert_int_equal(cli_table_add(&t, r3), 0);
    char *out = print_table(&t);
    assert_string_equal(out, "ID         ONLINE  TAGS\n"
                             "dev-1      yes     site=berlin\n"
                             "caf\xc3\xa9-long  -       -\n"
                             "x?         no      a=b\n");
    free(out);
    cli_table_fini(&t);

    /* Long cells are cut so one value cannot blow up every row. */
    char longcell[200];
    memset(longcell, 'z', sizeof(longcell) - 1);
    longcell[sizeof(longcell) - 1] = '\0';
    assert_int_equal(cli_table_init(&t, 1), 0);
    const char *r[] = {longcell};
    assert_int_equal(cli_table_add(&t, r), 0);
    out = print_table(&t);
    assert_int_equal(strlen(out), CLI_TABLE_CELL_MAX + 1);
    assert_memory_equal(out + CLI_TABLE_CELL_MAX - 3, "...\n", 4);
    free(out);
    cli_table_fini(&t);
}

/* ---- control commands ---------------------------------------------------- */

static char *dump(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(s);
    return s;
}

static void assert_json(const json_t *v, const char *want)
{
    char *s = dump(v);
    assert_string_equal(s, want);
    free(s);
}

static void test_json_arg(void **state)
{
    (void)state;
    json_t *v = NULL;
    char err[200];
    assert_int_equal(cli_json_arg("{\"a\": [1, 2]}", 13, true, &v, err, sizeof(err)), 0);
    assert_json(v, "{\"a\":[1,2]}");
    json_decref(v);
    assert_int_equal(cli_json_arg("[1]", 3, false, &v, err, sizeof(err)), 0);
    json_decref(v);
    v = NULL;
    assert_int_equal(cli_json_arg("[1]", 3, true, &v, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "object"));
    assert_int_equal(cli_json_arg("{\"a\":", 5, true, &v, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not valid JSON"));
    assert_int_equal(cli_json_arg("{} {}", 5, true, &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(cli_json_arg("", 0, true, &v, err, sizeof(err)), -EINVAL);
    assert_null(v); /* untouched on failure */
}

static void test_param_value(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"5", "5"},
        {"-12", "-12"},
        {"2.5", "2.5"},
        {"1e3", "1000.0"},
        {"true", "true"},
        {"false", "false"},
        {"null", "null"},
        {"abc", "\"abc\""},
        {"", "\"\""},
        {"05", "\"05\""},
        {" 5", "\" 5\""},
        {"5 ", "\"5 \""},
        {"+5", "\"+5\""},
        {"1.", "\"1.\""},
        {".5", "\".5\""},
        {"0x10", "\"0x10\""},
        {"True", "\"True\""},
        {"[1]", "\"[1]\""},
        {"{\"a\":1}", "\"{\\\"a\\\":1}\""},
        {"\"q\"", "\"\\\"q\\\"\""},
        {"-l -a", "\"-l -a\""},
        /* Beyond 64 bits: kept as text rather than changed. */
        {"99999999999999999999", "\"99999999999999999999\""},
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = NULL;
        assert_int_equal(cli_param_value(cases[i].in, &v), 0);
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        if (strcmp(s, cases[i].out) != 0)
            fail_msg("'%s' gave %s, want %s", cases[i].in, s, cases[i].out);
        free(s);
        json_decref(v);
    }
    json_t *v = NULL;
    assert_int_equal(cli_param_value("\xff", &v), -EINVAL);
    assert_int_equal(cli_param_value("\xed\xa0\x80", &v), -EINVAL); /* a surrogate */
    assert_int_equal(cli_param_value("\xc0\xaf", &v), -EINVAL);     /* overlong */
    assert_null(v);
}

static void test_params_build(void **state)
{
    (void)state;
    json_t *p = NULL;
    char err[200];
    assert_int_equal(cli_params_build(NULL, NULL, 0, &p, err, sizeof(err)), 0);
    assert_json(p, "{}");
    json_decref(p);

    const char *kv[] = {"n=5", "mode=fast", "args=-l", "eq=a=b", "b=true"};
    assert_int_equal(cli_params_build(NULL, kv, 5, &p, err, sizeof(err)), 0);
    assert_json(p, "{\"n\":5,\"mode\":\"fast\",\"args\":\"-l\",\"eq\":\"a=b\",\"b\":true}");
    json_decref(p);

    /* --param overrides a key of --params; other keys stay. */
    const char *over[] = {"n=7"};
    assert_int_equal(
        cli_params_build("{\"n\": 1, \"args\": [\"-l\"]}", over, 1, &p, err, sizeof(err)), 0);
    assert_json(p, "{\"n\":7,\"args\":[\"-l\"]}");
    json_decref(p);

    p = NULL;
    const char *dup[] = {"a=1", "a=2"};
    assert_int_equal(cli_params_build(NULL, dup, 2, &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "twice"));
    const char *nokey[] = {"=1"};
    assert_int_equal(cli_params_build(NULL, nokey, 1, &p, err, sizeof(err)), -EINVAL);
    const char *noeq[] = {"flag"};
    assert_int_equal(cli_params_build(NULL, noeq, 1, &p, err, sizeof(err)), -EINVAL);
    assert_int_equal(cli_params_build("[1]", NULL, 0, &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--params"));
    assert_int_equal(cli_params_build("{", NULL, 0, &p, err, sizeof(err)), -EINVAL);
    const char *badutf[] = {"k=\xff"};
    assert_int_equal(cli_params_build(NULL, badutf, 1, &p, err, sizeof(err)), -EINVAL);
    assert_null(p);
}

static void test_target_build(void **state)
{
    (void)state;
    json_t *t = NULL;
    char err[200];
    assert_int_equal(cli_target_build("site=berlin", NULL, false, &t, err, sizeof(err)), 0);
    assert_json(t, "{\"tag\":\"site=berlin\"}");
    json_decref(t);
    assert_int_equal(cli_target_build(NULL, NULL, true, &t, err, sizeof(err)), 0);
    assert_json(t, "{\"all\":true}");
    json_decref(t);
    assert_int_equal(cli_target_build(NULL, "a,b.c,d_e-1", false, &t, err, sizeof(err)), 0);
    assert_json(t, "{\"ids\":[\"a\",\"b.c\",\"d_e-1\"]}");
    json_decref(t);
    assert_int_equal(cli_target_build(NULL, "solo", false, &t, err, sizeof(err)), 0);
    assert_json(t, "{\"ids\":[\"solo\"]}");
    json_decref(t);

    t = NULL;
    /* Exactly one of the three. */
    assert_int_equal(cli_target_build(NULL, NULL, false, &t, err, sizeof(err)), -EINVAL);
    assert_int_equal(cli_target_build("a=b", "x", false, &t, err, sizeof(err)), -EINVAL);
    assert_int_equal(cli_target_build("a=b", NULL, true, &t, err, sizeof(err)), -EINVAL);
    assert_int_equal(cli_target_build(NULL, "x", true, &t, err, sizeof(err)), -EINVAL);
    /* Bad tags and ids. */
    assert_int_equal(cli_target_build("novalue", NULL, false, &t, err, sizeof(err)), -EINVAL);
    assert_int_equal(cli_target_build("=v", NULL, false, &t, err, sizeof(err)), -EINVAL);
    const char *bad[] = {"", ",", "a,", ",a", "a,,b", "a b", "a/b", "a,b,a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(cli_target_build(NULL, bad[i], false, &t, err, sizeof(err)), -EINVAL);
    char longid[80];
    memset(longid, 'x', 65);
    longid[65] = '\0';
    assert_int_equal(cli_target_build(NULL, longid, false, &t, err, sizeof(err)), -EINVAL);
    assert_null(t);
}

static void test_command_final(void **state)
{
    (void)state;
    assert_true(cli_command_final("succeeded"));
    assert_true(cli_command_final("failed"));
    assert_true(cli_command_final("rejected"));
    assert_true(cli_command_final("expired"));
    assert_false(cli_command_final("queued"));
    assert_false(cli_command_final("sent"));
    assert_false(cli_command_final(""));
    assert_false(cli_command_final(NULL));
}

static void test_job_progress(void **state)
{
    (void)state;
    char out[200];
    json_t *j = json_loads("{\"id\": \"job_1f\", \"total\": 10000, \"counts\": {\"sent\": 400, "
                           "\"queued\": 100, \"failed\": 100, \"succeeded\": 9400}}",
                           0, NULL);
    assert_non_null(j);
    assert_int_equal(cli_job_pending(j), 500);
    assert_int_equal(cli_job_progress(j, out, sizeof(out)), 0);
    assert_string_equal(out, "job_1f: 9500/10000 done (succeeded 9400, failed 100)");
    char small[20];
    assert_int_equal(cli_job_progress(j, small, sizeof(small)), -ERANGE);
    json_decref(j);

    /* Nothing ended yet: no parenthesis. */
    j = json_loads("{\"id\": \"job_2\", \"total\": 5, \"counts\": {\"pending\": 5}}", 0, NULL);
    assert_int_equal(cli_job_progress(j, out, sizeof(out)), 0);
    assert_string_equal(out, "job_2: 0/5 done");
    json_decref(j);

    /* Twin jobs, deleted devices, a state this CLI does not know. */
    j = json_loads("{\"id\": \"job_3\", \"total\": 6, \"counts\": {\"zapped\": 1, "
                   "\"applied\": 3, \"deleted\": 2}}",
                   0, NULL);
    assert_int_equal(cli_job_pending(j), 0);
    assert_int_equal(cli_job_progress(j, out, sizeof(out)), 0);
    assert_string_equal(out, "job_3: 6/6 done (applied 3, deleted 2, zapped 1)");
    json_decref(j);

    /* Control characters from the server are neutralised. */
    j = json_loads("{\"id\": \"job_\\u001b[2J\", \"total\": 0, \"counts\": {}}", 0, NULL);
    assert_int_equal(cli_job_progress(j, out, sizeof(out)), 0);
    assert_string_equal(out, "job_?[2J: 0/0 done");
    json_decref(j);

    j = json_loads("{\"id\": \"job_4\", \"total\": 5}", 0, NULL);
    assert_int_equal(cli_job_pending(j), -1);
    assert_int_equal(cli_job_progress(j, out, sizeof(out)), -EINVAL);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_when_relative),
        cmocka_unit_test(test_parse_when_absolute),
        cmocka_unit_test(test_parse_when_rejects),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_tag_split),
        cmocka_unit_test(test_parse_numbers),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_json_text),
        cmocka_unit_test(test_json_pretty),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_json_arg),
        cmocka_unit_test(test_param_value),
        cmocka_unit_test(test_params_build),
        cmocka_unit_test(test_target_build),
        cmocka_unit_test(test_command_final),
        cmocka_unit_test(test_job_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The pure helpers of the CLI's PKI commands: the import file's
 * Content-Type, finding a clean PEM block in a CSR or an answer, and the
 * body of `enroll create`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "cmd_pki.h"

static void test_import_type(void **state)
{
    (void)state;
    const char *ct = NULL;
    assert_int_equal(cli_pki_import_type("devices.csv", NULL, &ct), 0);
    assert_string_equal(ct, "text/csv");
    assert_int_equal(cli_pki_import_type("/tmp/x.y/DEVICES.CSV", NULL, &ct), 0);
    assert_string_equal(ct, "text/csv");
    const char *nd[] = {"a.jsonl", "a.ndjson", "a.json", "dir.csv/a.JSONL", NULL};
    for (int i = 0; nd[i] != NULL; i++) {
        ct = NULL;
        assert_int_equal(cli_pki_import_type(nd[i], NULL, &ct), 0);
        assert_string_equal(ct, "application/x-ndjson");
    }
    /* No usable extension: the caller asks for --format. */
    const char *none[] = {"devices", "a.txt", ".csv", "dir.csv/file", "-", "a.csv.bak", NULL};
    for (int i = 0; none[i] != NULL; i++)
        assert_int_equal(cli_pki_import_type(none[i], NULL, &ct), -ENOENT);
    /* --format wins over the name. */
    assert_int_equal(cli_pki_import_type("a.csv", "jsonl", &ct), 0);
    assert_string_equal(ct, "application/x-ndjson");
    assert_int_equal(cli_pki_import_type("-", "ndjson", &ct), 0);
    assert_string_equal(ct, "application/x-ndjson");
    assert_int_equal(cli_pki_import_type("a.jsonl", "csv", &ct), 0);
    assert_string_equal(ct, "text/csv");
    assert_int_equal(cli_pki_import_type("a.csv", "CSV", &ct), -EINVAL);
    assert_int_equal(cli_pki_import_type("a.csv", "xml", &ct), -EINVAL);
    assert_int_equal(cli_pki_import_type("a.csv", "", &ct), -EINVAL);
}

#define CSR_BEGIN "-----BEGIN CERTIFICATE REQUEST-----\n"
#define CSR_END "-----END CERTIFICATE REQUEST-----\n"
#define B64 "MIHgMIGHAgEAMA8xDTALBgNVBAMMBHp0LTEwWTATBgcqhkjOPQIBBggqhkjOPQMB\nBwNCAAQ=\n"

static int block(const char *text, const char *label, bool pre, size_t *off, size_t *len)
{
    return cli_pki_pem_block(text, strlen(text), label, pre, off, len);
}

static void test_pem_block(void **state)
{
    (void)state;
    size_t off = 99, len = 99;
    const char *plain = CSR_BEGIN B64 CSR_END;
    assert_int_equal(block(plain, "CERTIFICATE REQUEST", false, &off, &len), 0);
    assert_int_equal(off, 0);
    assert_int_equal(len, strlen(plain));

    /* CRLF line ends, no final newline, blank lines around. */
    const char *crlf = "\r\n-----BEGIN CERTIFICATE REQUEST-----\r\nQUJD\r\n"
                       "-----END CERTIFICATE REQUEST-----";
    assert_int_equal(block(crlf, "CERTIFICATE REQUEST", false, &off, &len), 0);
    assert_int_equal(off, 2);
    assert_int_equal(len, strlen(crlf) - 2);
    const char *trail = CSR_BEGIN B64 CSR_END "\n\n";
    assert_int_equal(block(trail, "CERTIFICATE REQUEST", false, &off, &len), 0);
    assert_int_equal(len, strlen(plain));

    /* openssl req -text: a dump before the block, only when allowed. */
    const char *dump =
        "Certificate Request:\n    Data:\n        Version: 1 (0x0)\n" CSR_BEGIN B64 CSR_END;
    assert_int_equal(block(dump, "CERTIFICATE REQUEST", false, &off, &len), -EINVAL);
    assert_int_equal(block(dump, "CERTIFICATE REQUEST", true, &off, &len), 0);
    assert_memory_equal(dump + off, plain, strlen(plain));
    assert_int_equal(len, strlen(plain));

    const char *bad[] = {
        "",
        CSR_BEGIN,                                                        /* no END */
        CSR_BEGIN CSR_END,                                                /* no body */
        CSR_BEGIN B64 "-----END CERTIFICATE-----\n",                      /* other END */
        CSR_BEGIN "QUJD!\n" CSR_END,                                      /* not base64 */
        CSR_BEGIN "QU JD\n" CSR_END,                                      /* blank inside a line */
        CSR_BEGIN "QUJD\n\nQUJD\n" CSR_END,                               /* empty line inside */
        CSR_BEGIN B64 CSR_END "junk\n",                                   /* text after */
        CSR_BEGIN B64 CSR_END CSR_BEGIN B64 CSR_END,                      /* two blocks */
        "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n", /* other label */
        CSR_BEGIN "QUJD\x1b[2J\n" CSR_END,                                /* escape sequence */
        "-----BEGIN CERTIFICATE REQUEST-----x\nQUJD\n" CSR_END,           /* damaged armor */
        NULL,
    };
    for (int i = 0; bad[i] != NULL; i++)
        assert_int_equal(block(bad[i], "CERTIFICATE REQUEST", true, &off, &len), -EINVAL);
    /* A NUL inside the given length. */
    const char nul[] = CSR_BEGIN "QU\0D\n" CSR_END;
    assert_int_equal(
        cli_pki_pem_block(nul, sizeof(nul) - 1, "CERTIFICATE REQUEST", true, &off, &len), -EINVAL);
    /* A line longer than PEM's 64 (76 at most). */
    char longline[512];
    snprintf(longline, sizeof(longline), "%s%077d\n%s", CSR_BEGIN, 0, CSR_END);
    assert_int_equal(block(longline, "CERTIFICATE REQUEST", true, &off, &len), -EINVAL);

    /* The label is matched whole: NEW CERTIFICATE REQUEST is another. */
    const char *newreq = "-----BEGIN NEW CERTIFICATE REQUEST-----\nQUJD\n"
                         "-----END NEW CERTIFICATE REQUEST-----\n";
    assert_int_equal(block(newreq, "CERTIFICATE REQUEST", true, &off, &len), -EINVAL);
    assert_int_equal(block(newreq, "NEW CERTIFICATE REQUEST", false, &off, &len), 0);
    /* Out-params untouched on failure. */
    off = len = 7;
    assert_int_equal(block("nothing", "CERTIFICATE", true, &off, &len), -EINVAL);
    assert_int_equal(off, 7);
    assert_int_equal(len, 7);
}

static json_t *spec_ok(const char *name, const char *uses, int64_t exp, const char *const *tags,
                       size_t ntags, const char *group, const json_t *desired)
{
    json_t *out = NULL;
    char err[200] = "";
    int rc =
        cli_pki_enroll_spec(name, uses, exp, tags, ntags, group, desired, &out, err, sizeof(err));
    if (rc != 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(out);
    return out;
}

static void spec_bad(const char *name, const char *uses, const char *const *tags, size_t ntags,
                     const char *group, const json_t *desired, const char *want)
{
    json_t *out = NULL;
    char err[200] = "";
    assert_int_equal(
        cli_pki_enroll_spec(name, uses, 0, tags, ntags, group, desired, &out, err, sizeof(err)),
        -EINVAL);
    assert_null(out);
    if (strstr(err, want) == NULL)
        print_error("error '%s' does not mention '%s'\n", err, want);
    assert_non_null(strstr(err, want));
}

static void test_enroll_spec(void **state)
{
    (void)state;
    /* The least: name and max_uses, nothing else sent. */
    json_t *s = spec_ok("line-1", "5", 0, NULL, 0, NULL, NULL);
    char *text = json_dumps(s, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(text, "{\"max_uses\":5,\"name\":\"line-1\"}");
    free(text);
    json_decref(s);

    /* Everything; tag values are strings, a value may hold '='. */
    const char *tags[] = {"site=lyon", "floor=2", "expr=a=b"};
    json_t *desired = json_pack("{s:i, s:{s:s}}", "interval", 30, "mode", "x", "y");
    s = spec_ok("Line one", "100", 7 * 86400, tags, 3, "sensors", desired);
    text = json_dumps(s, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(text, "{\"desired\":{\"interval\":30,\"mode\":{\"x\":\"y\"}},"
                              "\"expires_in_s\":604800,\"group\":\"sensors\",\"max_uses\":100,"
                              "\"name\":\"Line one\",\"tags\":{\"expr\":\"a=b\",\"floor\":\"2\","
                              "\"site\":\"lyon\"}}");
    free(text);
    json_decref(s);

    spec_bad("", "5", NULL, 0, NULL, NULL, "name");
    char longname[200];
    memset(longname, 'n', 128);
    longname[128] = '\0';
    spec_bad(longname, "5", NULL, 0, NULL, NULL, "127");
    longname[127] = '\0';
    json_decref(spec_ok(longname, "5", 0, NULL, 0, NULL, NULL));
    spec_bad("a\tb", "5", NULL, 0, NULL, NULL, "control");
    spec_bad("\xff\xfe", "5", NULL, 0, NULL, NULL, "UTF-8");
    spec_bad("x", NULL, NULL, 0, NULL, NULL, "--max-uses");
    const char *uses[] = {"0", "-1", "1.5", "abc", "", "99999999999", NULL};
    for (int i = 0; uses[i] != NULL; i++)
        spec_bad("x", uses[i], NULL, 0, NULL, NULL, "--max-uses");
    spec_bad("x", "1", NULL, 0, "bad group", NULL, "--group");
    spec_bad("x", "1", NULL, 0, "", NULL, "--group");
    const char *t1[] = {"novalue"}, *t2[] = {"=v"}, *t3[] = {"k=1", "k=2"};
    spec_bad("x", "1", t1, 1, NULL, NULL, "K=V");
    spec_bad("x", "1", t2, 1, NULL, NULL, "K=V");
    spec_bad("x", "1", t3, 2, NULL, NULL, "twice");
    json_t *arr = json_array();
    spec_bad("x", "1", NULL, 0, NULL, arr, "object");
    json_decref(arr);
    const char *many[65];
    for (int i = 0; i < 65; i++)
        many[i] = "k=v";
    spec_bad("x", "1", many, 65, NULL, NULL, "64");
    json_decref(desired);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_type),
        cmocka_unit_test(test_pem_block),
        cmocka_unit_test(test_enroll_spec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

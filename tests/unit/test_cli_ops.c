/*
 * The pure helpers of the CLI's operator commands: lifetimes
 * ("--expires-in 30d") and the config file rewrite behind `login --save`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "cmd_operators.h"

static void test_duration(void **state)
{
    (void)state;
    int64_t s;
    assert_int_equal(cli_ops_parse_duration("3600", &s), 0);
    assert_int_equal(s, 3600);
    assert_int_equal(cli_ops_parse_duration("90s", &s), 0);
    assert_int_equal(s, 90);
    assert_int_equal(cli_ops_parse_duration("90m", &s), 0);
    assert_int_equal(s, 5400);
    assert_int_equal(cli_ops_parse_duration("12h", &s), 0);
    assert_int_equal(s, 43200);
    assert_int_equal(cli_ops_parse_duration("30d", &s), 0);
    assert_int_equal(s, 30 * 86400);
    assert_int_equal(cli_ops_parse_duration("2w", &s), 0);
    assert_int_equal(s, 14 * 86400);
    assert_int_equal(cli_ops_parse_duration("3650d", &s), 0);
    assert_int_equal(s, 3650LL * 86400);
    assert_int_equal(cli_ops_parse_duration("3651d", &s), -ERANGE);
    assert_int_equal(cli_ops_parse_duration("99999999999999999999", &s), -ERANGE);
    const char *bad[] = {"", "0", "0d", "-5", "d", "5x", "5dd", "5 d", " 5", "1.5h", "5D", NULL};
    for (int i = 0; bad[i] != NULL; i++)
        assert_int_equal(cli_ops_parse_duration(bad[i], &s), -EINVAL);
    assert_int_equal(cli_ops_parse_duration(NULL, &s), -EINVAL);
}

static void rewrite(const char *in, const char *server, const char *want)
{
    cli_buf_t b;
    cli_buf_init(&b, 1 << 16);
    assert_int_equal(cli_ops_config_with_token(in, strlen(in), "drv_NEW", server, &b), 0);
    assert_string_equal(b.data, want);
    cli_buf_fini(&b);
}

static void test_config_rewrite(void **state)
{
    (void)state;
    /* empty: the token, and the server when given */
    rewrite("", NULL, "token = drv_NEW\n");
    rewrite("", "http://h:1", "token = drv_NEW\nserver = http://h:1\n");
    /* the token line is replaced in place; comments, blanks, others kept */
    rewrite("# mine\nserver = http://a:8080\n\ntoken = drv_OLD\nother = 1\n", "http://b:1",
            "# mine\nserver = http://a:8080\n\ntoken = drv_NEW\nother = 1\n");
    /* spacing and quoting of the old line do not matter; extra ones go */
    rewrite("  token\t=  \"drv_OLD\"\ntoken=drv_OLDER\nserver=x\n", NULL,
            "token = drv_NEW\nserver=x\n");
    /* a commented-out token is a comment; no final newline is fine */
    rewrite("#token = drv_X\nserver = s", NULL, "#token = drv_X\nserver = s\ntoken = drv_NEW\n");
    /* "tokens" and "server_x" are other keys */
    rewrite("tokens = 1\nserver_x = 2\n", "S",
            "tokens = 1\nserver_x = 2\ntoken = drv_NEW\nserver = S\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_config_rewrite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

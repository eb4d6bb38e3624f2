#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "core/config.h"
#include <errno.h>
#include <string.h>

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(util_id_valid("dev-1.a_B", 9));
    assert_false(util_id_valid("", 0));
    assert_false(util_id_valid("a/b", 3));
    assert_false(util_id_valid("a+b", 3));
    char long_id[66];
    memset(long_id, 'a', 65);
    long_id[65] = 0;
    assert_true(util_id_valid(long_id, 64));
    assert_false(util_id_valid(long_id, 65));
}

static void test_parse_time(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(util_parse_time("1700000000000", &ms), 0);
    assert_int_equal(ms, 1700000000000LL);
    assert_int_equal(util_parse_time("1970-01-01T00:00:00Z", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(util_parse_time("2023-11-14T22:13:20.5Z", &ms), 0);
    assert_int_equal(ms, 1700000000500LL);
    assert_int_equal(util_parse_time("2023-11-15T00:13:20+02:00", &ms), 0);
    assert_int_equal(ms, 1700000000000LL);
    assert_int_equal(util_parse_time("2023-13-01T00:00:00Z", &ms), -EINVAL);
    assert_int_equal(util_parse_time("yesterday", &ms), -EINVAL);
    assert_int_equal(util_parse_time("2023-11-15T00:13:20", &ms), -EINVAL);
}

static void test_hostport(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(util_parse_hostport("127.0.0.1:1883", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 1883);
    assert_int_equal(util_parse_hostport("[::1]:80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(util_parse_hostport("nohost", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(util_parse_hostport("h:99999", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(util_parse_hostport(":80", host, sizeof(host), &port), -EINVAL);
}

static void test_config(void **state)
{
    (void)state;
    config_t c;
    config_defaults(&c);
    assert_int_equal(config_set(&c, "max-packet-size", "1024"), 0);
    assert_int_equal(c.max_packet_size, 1024);
    assert_int_equal(config_set(&c, "max_inflight", "0"), -EINVAL);
    assert_int_equal(config_set(&c, "no_such_key", "1"), -ENOENT);
    assert_int_equal(config_set(&c, "http_listen", "0.0.0.0:9"), 0);
    assert_string_equal(c.http_listen, "0.0.0.0:9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

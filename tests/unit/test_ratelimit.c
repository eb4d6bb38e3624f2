/*
 * The failure limiter: window, block and its length, forgive/reset,
 * eviction under the entry cap, a disabled limiter, and source keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "security/ratelimit.h"

static void test_block_after_limit(void **state)
{
    (void)state;
    ratelimit_t *rl;
    assert_int_equal(ratelimit_new(3, 60, 100, &rl), 0);
    int64_t t = 1000000;
    assert_int_equal(ratelimit_check(rl, "ip:1.2.3.4", t), 0);
    assert_int_equal(ratelimit_fail(rl, "ip:1.2.3.4", t), 0);
    assert_int_equal(ratelimit_fail(rl, "ip:1.2.3.4", t + 1000), 0);
    assert_int_equal(ratelimit_check(rl, "ip:1.2.3.4", t + 1500), 0);
    /* the third failure reaches the limit: blocked for a whole window */
    assert_int_equal(ratelimit_fail(rl, "ip:1.2.3.4", t + 2000), 60000);
    assert_int_equal(ratelimit_check(rl, "ip:1.2.3.4", t + 2000), 60000);
    assert_int_equal(ratelimit_check(rl, "ip:1.2.3.4", t + 32000), 30000);
    /* other keys are untouched */
    assert_int_equal(ratelimit_check(rl, "ip:1.2.3.5", t + 2000), 0);
    /* a failure while blocked does not extend the block */
    assert_int_equal(ratelimit_fail(rl, "ip:1.2.3.4", t + 42000), 20000);
    assert_int_equal(ratelimit_check(rl, "ip:1.2.3.4", t + 61999), 1);
    /* block over: the key starts afresh and is forgotten */
    assert_int_equal(ratelimit_check(rl, "ip:1.2.3.4", t + 62000), 0);
    assert_int_equal(ratelimit_size(rl), 0);
    assert_int_equal(ratelimit_fail(rl, "ip:1.2.3.4", t + 62000), 0);
    ratelimit_free(rl);
}

static void test_window_expires(void **state)
{
    (void)state;
    ratelimit_t *rl;
    assert_int_equal(ratelimit_new(3, 10, 100, &rl), 0);
    int64_t t = 5000;
    ratelimit_fail(rl, "user:a", t);
    ratelimit_fail(rl, "user:a", t + 9000);
    /* the window opened at t ends at t + 10 s: the count starts over */
    assert_int_equal(ratelimit_fail(rl, "user:a", t + 10000), 0);
    assert_int_equal(ratelimit_fail(rl, "user:a", t + 11000), 0);
    assert_int_equal(ratelimit_fail(rl, "user:a", t + 12000), 10000);
    ratelimit_free(rl);
}

static void test_forgive_and_reset(void **state)
{
    (void)state;
    ratelimit_t *rl;
    assert_int_equal(ratelimit_new(2, 60, 100, &rl), 0);
    ratelimit_fail(rl, "k", 0);
    assert_true(ratelimit_fail(rl, "k", 1) > 0);
    assert_true(ratelimit_check(rl, "k", 2) > 0);
    /* the attempt that reached the limit turned out well: unblocked */
    ratelimit_forgive(rl, "k");
    assert_int_equal(ratelimit_check(rl, "k", 3), 0);
    assert_int_equal(ratelimit_size(rl), 1);
    ratelimit_forgive(rl, "k");
    assert_int_equal(ratelimit_size(rl), 0);
    ratelimit_forgive(rl, "nobody"); /* no-op */
    ratelimit_fail(rl, "k", 4);
    assert_true(ratelimit_fail(rl, "k", 5) > 0);
    ratelimit_reset(rl, "k");
    assert_int_equal(ratelimit_check(rl, "k", 6), 0);
    assert_int_equal(ratelimit_size(rl), 0);
    ratelimit_free(rl);
}

static void test_eviction(void **state)
{
    (void)state;
    ratelimit_t *rl;
    assert_int_equal(ratelimit_new(2, 60, 4, &rl), 0);
    char key[32];
    /* key0 is blocked, then four more keys push it (the oldest) out */
    ratelimit_fail(rl, "key0", 0);
    assert_true(ratelimit_fail(rl, "key0", 1) > 0);
    for (int i = 1; i <= 3; i++) {
        snprintf(key, sizeof(key), "key%d", i);
        ratelimit_fail(rl, key, 10 + i);
    }
    assert_int_equal(ratelimit_size(rl), 4);
    assert_true(ratelimit_check(rl, "key0", 20) > 0);
    ratelimit_fail(rl, "key4", 30);
    assert_int_equal(ratelimit_size(rl), 4);
    assert_int_equal(ratelimit_check(rl, "key0", 31), 0);
    /* a key touched recently survives: key1 fails again, key2 is evicted */
    ratelimit_fail(rl, "key1", 40);
    ratelimit_fail(rl, "key5", 41);
    assert_int_equal(ratelimit_size(rl), 4);
    assert_true(ratelimit_check(rl, "key1", 42) > 0);
    ratelimit_fail(rl, "key2", 43);
    assert_int_equal(ratelimit_check(rl, "key2", 44), 0);
    /* thousands of keys stay within the cap */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "spray%d", i);
        ratelimit_fail(rl, key, 100 + i);
    }
    assert_int_equal(ratelimit_size(rl), 4);
    ratelimit_free(rl);
}

static void test_long_keys(void **state)
{
    (void)state;
    ratelimit_t *rl;
    assert_int_equal(ratelimit_new(1, 60, 10, &rl), 0);
    char a[300], b[300];
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[200] = 'y'; /* differs only after RATELIMIT_KEY_MAX bytes */
    assert_true(ratelimit_fail(rl, a, 0) > 0);
    assert_true(ratelimit_check(rl, b, 1) > 0);
    assert_int_equal(ratelimit_check(rl, "x", 1), 0);
    ratelimit_free(rl);
}

static void test_disabled_and_bad_args(void **state)
{
    (void)state;
    ratelimit_t *rl;
    assert_int_equal(ratelimit_new(0, 60, 10, &rl), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(ratelimit_fail(rl, "k", i), 0);
    assert_int_equal(ratelimit_check(rl, "k", 100), 0);
    assert_int_equal(ratelimit_size(rl), 0);
    ratelimit_free(rl);
    assert_int_equal(ratelimit_new(1, 0, 10, &rl), -EINVAL);
    assert_int_equal(ratelimit_new(1, 60, 0, &rl), -EINVAL);
    assert_int_equal(ratelimit_check(NULL, "k", 0), 0);
    assert_int_equal(ratelimit_fail(NULL, "k", 0), 0);
    ratelimit_free(NULL);
}

static void test_source_key(void **state)
{
    (void)state;
    char k[80];
    assert_int_equal(ratelimit_source_key("127.0.0.1:5555", true, k, sizeof(k)), 1);
    assert_string_equal(k, "ip:127.0.0.1");
    assert_int_equal(ratelimit_source_key("10.1.2.3", false, k, sizeof(k)), 0);
    assert_string_equal(k, "ip:10.1.2.3");
    assert_int_equal(ratelimit_source_key("::1:1883", true, k, sizeof(k)), 1);
    assert_string_equal(k, "ip6:::/64");
    /* one /64 is one source */
    assert_int_equal(ratelimit_source_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", false, k, sizeof(k)),
                     0);
    assert_string_equal(k, "ip6:2001:db8:1:2::/64");
    assert_int_equal(ratelimit_source_key("[2001:db8::5]:80", true, k, sizeof(k)), 0);
    assert_string_equal(k, "ip6:2001:db8::/64");
    assert_int_equal(ratelimit_source_key("::ffff:192.0.2.7", false, k, sizeof(k)), 0);
    assert_string_equal(k, "ip:192.0.2.7");
    assert_int_equal(ratelimit_source_key("::ffff:127.0.0.9", false, k, sizeof(k)), 1);
    assert_string_equal(k, "ip:127.0.0.9");
    assert_int_equal(ratelimit_source_key("127.255.0.1", false, k, sizeof(k)), 1);
    assert_int_equal(ratelimit_source_key("128.0.0.1", false, k, sizeof(k)), 0);
    assert_int_equal(ratelimit_source_key("::2", false, k, sizeof(k)), 0);
    assert_string_equal(k, "ip6:::/64");
    assert_int_equal(ratelimit_source_key("?:0", true, k, sizeof(k)), 0);
    assert_string_equal(k, "ip:?");
    assert_int_equal(ratelimit_source_key("", false, k, sizeof(k)), -EINVAL);
    assert_int_equal(ratelimit_source_key("1.2.3.4", false, k, 4), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_after_limit), cmocka_unit_test(test_window_expires),
        cmocka_unit_test(test_forgive_and_reset), cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_long_keys),         cmocka_unit_test(test_disabled_and_bad_args),
        cmocka_unit_test(test_source_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

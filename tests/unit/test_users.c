/*
 * Operator passwords: scrypt against RFC 7914's test vector, the encoded
 * form and its strict parsing, wrong passwords, tampered strings, cost
 * bounds, and the worker thread (callbacks on the loop, the queue cap,
 * cancellation at free).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "security/users.h"

#define PW "correct horse battery staple"

/* RFC 7914 section 12, third vector: P="pleaseletmein", S="SodiumChloride",
 * N=16384, r=8, p=1, dkLen=64, in this module's encoding. */
static const char rfc_vector[] =
    "$scrypt$ln=14,r=8,p=1$U29kaXVtQ2hsb3JpZGU$"
    "cCO9yzr9c0hGHAbNgf046/2o+7qQT44+qbVD9lRdofLVQylVYT8Pz2LUlwUkKpr55h6F3A1lHkDfzwF7RVdYhw";

static void test_known_answer(void **state)
{
    (void)state;
    assert_int_equal(users_password_verify("pleaseletmein", 13, rfc_vector), 0);
    assert_int_equal(users_password_verify("pleaseletmeim", 13, rfc_vector), -EACCES);
}

static void test_hash_and_verify(void **state)
{
    (void)state;
    char a[USERS_HASH_MAX], b[USERS_HASH_MAX];
    assert_int_equal(users_password_hash(PW, strlen(PW), a, sizeof(a)), 0);
    /* the default costs, a 16-byte salt (22 chars), a 32-byte hash (43) */
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^\\$scrypt\\$ln=15,r=8,p=1\\$[A-Za-z0-9+/]{22}\\$[A-Za-z0-9+/]{43}$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    assert_int_equal(regexec(&re, a, 0, NULL, 0), 0);
    regfree(&re);
    assert_int_equal(users_password_verify(PW, strlen(PW), a), 0);
    assert_int_equal(users_password_verify(PW, strlen(PW) - 1, a), -EACCES);
    assert_int_equal(users_password_verify("Correct horse battery staple", strlen(PW), a), -EACCES);
    /* a fresh salt every time */
    assert_int_equal(users_password_hash(PW, strlen(PW), b, sizeof(b)), 0);
    assert_string_not_equal(a, b);
    /* a missing user: fails, after the same work */
    assert_int_equal(users_password_verify(PW, strlen(PW), NULL), -EACCES);
}

static void test_arguments(void **state)
{
    (void)state;
    char out[USERS_HASH_MAX];
    static char big[USERS_PASSWORD_MAX + 1];
    memset(big, 'p', sizeof(big));
    assert_int_equal(users_password_hash(PW, 0, out, sizeof(out)), -EINVAL);
    assert_int_equal(users_password_hash(big, sizeof(big), out, sizeof(out)), -EINVAL);
    assert_int_equal(users_password_hash(PW, strlen(PW), out, 100), -EINVAL);
    assert_int_equal(users_password_hash_params(PW, strlen(PW), 0, 8, 1, out, sizeof(out)),
                     -EINVAL);
    assert_int_equal(users_password_hash_params(PW, strlen(PW), 21, 8, 1, out, sizeof(out)),
                     -EINVAL);
    /* the longest password is fine, with cheap costs */
    assert_int_equal(users_password_hash_params(big, USERS_PASSWORD_MAX, 4, 1, 1, out, sizeof(out)),
                     0);
    assert_int_equal(users_password_verify(big, USERS_PASSWORD_MAX, out), 0);
}

/* A cheap hash of PW to tamper with. */
static void cheap(char *out)
{
    assert_int_equal(users_password_hash_params(PW, strlen(PW), 4, 2, 1, out, USERS_HASH_MAX), 0);
    assert_int_equal(strncmp(out, "$scrypt$ln=4,r=2,p=1$", 21), 0);
}

static void test_costs_read_back(void **state)
{
    (void)state;
    char enc[USERS_HASH_MAX];
    assert_int_equal(users_password_hash_params(PW, strlen(PW), 6, 4, 2, enc, sizeof(enc)), 0);
    assert_int_equal(strncmp(enc, "$scrypt$ln=6,r=4,p=2$", 21), 0);
    assert_int_equal(users_password_verify(PW, strlen(PW), enc), 0);
    /* the same salt and hash under other costs no longer match */
    char other[USERS_HASH_MAX];
    snprintf(other, sizeof(other), "$scrypt$ln=7,r=4,p=2$%s", enc + 21);
    assert_int_equal(users_password_verify(PW, strlen(PW), other), -EACCES);
}

static void test_tampered(void **state)
{
    (void)state;
    char enc[USERS_HASH_MAX], t[USERS_HASH_MAX + 16];
    cheap(enc);
    size_t n = strlen(enc);

    /* one hash character changed: a mismatch, not a parse error */
    memcpy(t, enc, n + 1);
    t[n - 5] = t[n - 5] == 'A' ? 'B' : 'A';
    assert_int_equal(users_password_verify(PW, strlen(PW), t), -EACCES);
    /* one salt character changed */
    memcpy(t, enc, n + 1);
    t[22] = t[22] == 'A' ? 'B' : 'A';
    assert_int_equal(users_password_verify(PW, strlen(PW), t), -EACCES);

    const char *salt_hash = strchr(enc + 9, '$'); /* "$<salt>$<hash>" */
    assert_non_null(salt_hash);
    const char *bad_prefixes[] = {
        "$scrypt$ln=4,r=2,p=1,x=1",   "$scrypt$ln=04,r=2,p=1",  "$scrypt$ln=4,r=2",
        "$scrypt$r=2,ln=4,p=1",       "$Scrypt$ln=4,r=2,p=1",   "$scrypt$ln=-4,r=2,p=1",
        "$scrypt$ln=21,r=2,p=1",      "$scrypt$ln=4,r=33,p=1",  "$scrypt$ln=4,r=2,p=17",
        "$scrypt$ln=4,r=0,p=1",       "$scrypt$ln=20,r=32,p=1", "$scrypt$ln=4000000,r=2,p=1",
        "$argon2id$v=19,m=1,t=1,p=1",
    };
    for (size_t i = 0; i < sizeof(bad_prefixes) / sizeof(bad_prefixes[0]); i++) {
        snprintf(t, sizeof(t), "%s%s", bad_prefixes[i], salt_hash);
        assert_int_equal(users_password_verify(PW, strlen(PW), t), -EINVAL);
    }
    /* trailing bytes, padding, characters outside the alphabet, a missing
     * hash, an empty string, one too long */
    snprintf(t, sizeof(t), "%s$", enc);
    assert_int_equal(users_password_verify(PW, strlen(PW), t), -EINVAL);
    snprintf(t, sizeof(t), "%s=", enc);
    assert_int_equal(users_password_verify(PW, strlen(PW), t), -EINVAL);
    memcpy(t, enc, n + 1);
    t[n - 3] = '-';
    assert_int_equal(users_password_verify(PW, strlen(PW), t), -EINVAL);
    memcpy(t, enc, n + 1);
    *strrchr(t, '$') = '\0';
    assert_int_equal(users_password_verify(PW, strlen(PW), t), -EINVAL);
    assert_int_equal(users_password_verify(PW, strlen(PW), ""), -EINVAL);
    /* a hash shorter than 16 bytes, a salt shorter than 8 */
    snprintf(t, sizeof(t), "$scrypt$ln=4,r=2,p=1$c2FsdHNhbHQ$c2hvcnQ");
    assert_int_equal(users_password_verify(PW, strlen(PW), t), -EINVAL);
    snprintf(t, sizeof(t), "$scrypt$ln=4,r=2,p=1$c2FsdA$%s", strrchr(enc, '$') + 1);
    assert_int_equal(users_password_verify(PW, strlen(PW), t), -EINVAL);
    /* non-zero leftover bits in the last base64 group (not canonical) */
    memcpy(t, enc, n + 1);
    t[n - 1] = t[n - 1] == 'B' ? 'C' : 'B'; /* 43 chars: the last holds 2 spare bits */
    assert_int_equal(users_password_verify(PW, strlen(PW), t), -EINVAL);
    char huge[USERS_HASH_MAX + 10];
    memset(huge, 'A', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    memcpy(huge, "$scrypt$ln=4,r=2,p=1$", 21);
    assert_int_equal(users_password_verify(PW, strlen(PW), huge), -EINVAL);
}

/* ---- the worker ------------------------------------------------------------ */

struct result {
    int calls;
    int rc;
    char encoded[USERS_HASH_MAX];
    int *outstanding;
};

static void hash_done(void *arg, int rc, const char *encoded)
{
    struct result *r = arg;
    r->calls++;
    r->rc = rc;
    if (encoded != NULL)
        snprintf(r->encoded, sizeof(r->encoded), "%s", encoded);
    --*r->outstanding;
}

static void verify_done(void *arg, int rc)
{
    struct result *r = arg;
    r->calls++;
    r->rc = rc;
    --*r->outstanding;
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    fail_msg("the worker did not answer within 60 s");
}

/* Runs the loop until *outstanding reaches 0, with a deadline. */
static void run_until_done(struct event_base *base, int *outstanding)
{
    struct timeval tv = {60, 0};
    struct event *deadline = evtimer_new(base, deadline_cb, NULL);
    assert_non_null(deadline);
    evtimer_add(deadline, &tv);
    while (*outstanding > 0)
        assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
    event_free(deadline);
}

static void test_worker(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    users_worker_t *w;
    assert_int_equal(users_worker_new(base, &w), 0);
    /* an idle worker keeps no event registered: the loop has nothing to do */
    assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);

    int outstanding = 1;
    struct result h = {.outstanding = &outstanding};
    assert_int_equal(users_hash_async(w, PW, strlen(PW), hash_done, &h), 0);
    assert_int_equal(users_worker_pending(w), 1);
    assert_int_equal(h.calls, 0); /* never from inside the submission */
    run_until_done(base, &outstanding);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.rc, 0);
    assert_int_equal(strncmp(h.encoded, "$scrypt$ln=15,r=8,p=1$", 22), 0);
    assert_int_equal(users_worker_pending(w), 0);

    outstanding = 3;
    struct result good = {.outstanding = &outstanding};
    struct result bad = good, missing = good;
    assert_int_equal(users_verify_async(w, PW, strlen(PW), h.encoded, verify_done, &good), 0);
    assert_int_equal(users_verify_async(w, "nope nope nope", 14, h.encoded, verify_done, &bad), 0);
    assert_int_equal(users_verify_async(w, PW, strlen(PW), NULL, verify_done, &missing), 0);
    run_until_done(base, &outstanding);
    assert_int_equal(good.calls, 1);
    assert_int_equal(good.rc, 0);
    assert_int_equal(bad.calls, 1);
    assert_int_equal(bad.rc, -EACCES);
    assert_int_equal(missing.calls, 1);
    assert_int_equal(missing.rc, -EACCES);

    /* refused at once, without a callback */
    assert_int_equal(users_hash_async(w, PW, 0, hash_done, &h), -EINVAL);
    assert_int_equal(users_verify_async(w, PW, USERS_PASSWORD_MAX + 1, NULL, verify_done, &h),
                     -EINVAL);
    char huge[USERS_HASH_MAX + 1];
    memset(huge, 'a', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    assert_int_equal(users_verify_async(w, PW, strlen(PW), huge, verify_done, &h), -EINVAL);
    assert_int_equal(users_worker_pending(w), 0);

    users_worker_free(w);
    event_base_free(base);
}

static int cancelled, completed;

static void count_done(void *arg, int rc, const char *encoded)
{
    (void)arg;
    if (rc == -ECANCELED) {
        assert_null(encoded);
        cancelled++;
    } else {
        assert_int_equal(rc, 0);
        assert_non_null(encoded);
        completed++;
    }
}

static void test_worker_queue_cap_and_free(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    users_worker_t *w;
    assert_int_equal(users_worker_new(base, &w), 0);
    for (int i = 0; i < USERS_QUEUE_MAX; i++)
        assert_int_equal(users_hash_async(w, PW, strlen(PW), count_done, NULL), 0);
    assert_int_equal(users_hash_async(w, PW, strlen(PW), count_done, NULL), -EAGAIN);
    assert_int_equal(users_worker_pending(w), USERS_QUEUE_MAX);
    /* Free at once: every callback still runs, most of them cancelled. */
    users_worker_free(w);
    assert_int_equal(cancelled + completed, USERS_QUEUE_MAX);
    assert_true(cancelled >= USERS_QUEUE_MAX - 2);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_hash_and_verify),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_costs_read_back),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_worker),
        cmocka_unit_test(test_worker_queue_cap_and_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

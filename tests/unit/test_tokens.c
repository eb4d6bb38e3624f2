/*
 * tokens_verify against a real store: a good token, an expired one (a row
 * inserted with expires_at in the past, which the API cannot make), one
 * that expires exactly now, an unknown role, malformed text, and a deleted
 * token refused at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/crypto.h"
#include "common/util.h"
#include "security/tokens.h"
#include "store/store.h"

typedef struct fix {
    char dir[64];
    struct event_base *base;
    store_t *st;
} fix_t;

typedef struct rec {
    bool called;
    int rc;
} rec_t;

static void on_done(void *arg, int rc, int64_t value)
{
    (void)value;
    rec_t *r = arg;
    r->called = true;
    r->rc = rc;
}

static void wait_for(fix_t *f, rec_t *r)
{
    int64_t deadline = util_mono_us() + 10 * 1000 * 1000;
    while (!r->called) {
        assert_true(util_mono_us() < deadline);
        if (event_base_loop(f->base, EVLOOP_ONCE) == 1)
            usleep(1000);
    }
}

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/drover-tokens-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    assert_non_null(f->base);
    assert_int_equal(store_open(f->dir, f->base, &f->st), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    store_close(f->st);
    event_base_free(f->base);
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", f->dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Inserts a token row for text with the given role and expiry. */
static void add(fix_t *f, const char *id, const char *text, const char *role, int64_t expires_at)
{
    store_token_t t;
    memset(&t, 0, sizeof(t));
    snprintf(t.id, sizeof(t.id), "%s", id);
    snprintf(t.name, sizeof(t.name), "test %s", id);
    snprintf(t.role, sizeof(t.role), "%s", role);
    t.created_at = util_now_ms() - 3600 * 1000;
    t.expires_at = expires_at;
    uint8_t hash[CRYPTO_HASH_LEN];
    crypto_sha256(text, strlen(text), hash);
    rec_t r = {0};
    store_token_insert(f->st, &t, hash, on_done, &r);
    wait_for(f, &r);
    assert_int_equal(r.rc, 0);
}

static void fresh(char *out)
{
    assert_int_equal(crypto_secret_new(TOKENS_PREFIX, out, TOKENS_LEN + 1), 0);
}

static void test_verify(void **state)
{
    fix_t *f = *state;
    char good[TOKENS_LEN + 1], later[TOKENS_LEN + 1], expired[TOKENS_LEN + 1], edge[TOKENS_LEN + 1],
        odd[TOKENS_LEN + 1], unknown[TOKENS_LEN + 1];
    fresh(good);
    fresh(later);
    fresh(expired);
    fresh(edge);
    fresh(odd);
    fresh(unknown);
    int64_t now = util_now_ms();
    add(f, "good", good, "operator", 0);
    add(f, "later", later, "viewer", now + 3600 * 1000);
    add(f, "expired", expired, "admin", now - 1000);
    add(f, "edge", edge, "admin", util_now_ms());
    add(f, "odd", odd, "superuser", 0);

    role_t role = ROLE_NONE;
    store_token_t info;
    assert_int_equal(tokens_verify(f->st, good, &role, &info), 0);
    assert_int_equal(role, ROLE_OPERATOR);
    assert_string_equal(info.id, "good");
    assert_int_equal(tokens_verify(f->st, later, &role, NULL), 0);
    assert_int_equal(role, ROLE_VIEWER);

    /* expired (in the past, and at the very millisecond), an unknown role,
     * an unknown token: all refused, *role untouched */
    role = ROLE_NONE;
    assert_int_equal(tokens_verify(f->st, expired, &role, &info), -EACCES);
    assert_int_equal(tokens_verify(f->st, edge, &role, &info), -EACCES);
    assert_int_equal(tokens_verify(f->st, odd, &role, &info), -EACCES);
    assert_int_equal(tokens_verify(f->st, unknown, &role, &info), -EACCES);
    assert_int_equal(role, ROLE_NONE);

    /* malformed: wrong prefix, length, alphabet, NULL */
    char bad[TOKENS_LEN + 2];
    memcpy(bad, good, TOKENS_LEN + 1);
    bad[0] = 'x';
    assert_int_equal(tokens_verify(f->st, bad, &role, NULL), -EACCES);
    memcpy(bad, good, TOKENS_LEN + 1);
    bad[TOKENS_LEN - 1] = '\0';
    assert_int_equal(tokens_verify(f->st, bad, &role, NULL), -EACCES);
    memcpy(bad, good, TOKENS_LEN + 1);
    bad[TOKENS_LEN] = 'A';
    bad[TOKENS_LEN + 1] = '\0';
    assert_int_equal(tokens_verify(f->st, bad, &role, NULL), -EACCES);
    memcpy(bad, good, TOKENS_LEN + 1);
    bad[10] = '+';
    assert_int_equal(tokens_verify(f->st, bad, &role, NULL), -EACCES);
    assert_int_equal(tokens_verify(f->st, NULL, &role, NULL), -EACCES);
}

static void test_deleted_token_refused_at_once(void **state)
{
    fix_t *f = *state;
    char tok[TOKENS_LEN + 1];
    fresh(tok);
    add(f, "gone", tok, "admin", 0);
    role_t role;
    assert_int_equal(tokens_verify(f->st, tok, &role, NULL), 0);
    rec_t r = {0};
    store_token_delete(f->st, "gone", on_done, &r);
    wait_for(f, &r);
    assert_int_equal(r.rc, 0);
    /* the very next check, with no cache in between, refuses it */
    assert_int_equal(tokens_verify(f->st, tok, &role, NULL), -EACCES);
    store_token_t t;
    assert_int_equal(store_token_get(f->st, "gone", &t), -ENOENT);
    rec_t again = {0};
    store_token_delete(f->st, "gone", on_done, &again);
    wait_for(f, &again);
    assert_int_equal(again.rc, -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_token_refused_at_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

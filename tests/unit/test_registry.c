/*
 * The registry over a real store in a temporary directory and a real
 * event_base: writes are submitted, the loop runs until their callbacks
 * fire, then the table and the store are checked. Covers authentication,
 * rotation, deletion with the revoke hook, presence overlay, reload after
 * a restart, and the hash table under thousands of inserts and deletes.
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

#include "common/util.h"
#include "registry/registry.h"

typedef struct fix {
    char dir[64];
    struct event_base *base;
    store_t *st;
    registry_t *reg;
} fix_t;

/* What a completion reported. */
typedef struct res {
    int called;
    int rc;
    char secret[CRYPTO_SECRET_LEN + 1];
} res_t;

static char g_revoked[16][DROVER_ID_MAX + 1];
static int g_nrevoked;

static void on_revoke(void *ctx, const char *id, registry_reason_t deleted)
{
    (void)ctx;
    (void)deleted;
    if (g_nrevoked < 16)
        snprintf(g_revoked[g_nrevoked], sizeof(g_revoked[0]), "%s", id);
    g_nrevoked++;
}

static void on_secret(void *arg, int rc, const char *secret)
{
    res_t *r = arg;
    r->called++;
    r->rc = rc;
    if (rc == 0) {
        assert_non_null(secret);
        assert_int_equal(strlen(secret), CRYPTO_SECRET_LEN);
        memcpy(r->secret, secret, CRYPTO_SECRET_LEN + 1);
    } else {
        assert_null(secret);
    }
}

static void on_done(void *arg, int rc)
{
    res_t *r = arg;
    r->called++;
    r->rc = rc;
}

/* Runs the loop until *called reaches target (10 s cap). */
static void wait_for(fix_t *f, const int *called, int target)
{
    int64_t deadline = util_mono_us() + 10 * 1000 * 1000;
    while (*called < target) {
        assert_true(util_mono_us() < deadline);
        if (event_base_loop(f->base, EVLOOP_ONCE) == 1)
            usleep(1000);
    }
}

static void open_all(fix_t *f)
{
    assert_int_equal(store_open(f->dir, f->base, &f->st), 0);
    assert_int_equal(registry_new(f->st, &f->reg), 0);
    registry_set_revoke_hook(f->reg, on_revoke, NULL);
}

static void close_all(fix_t *f)
{
    store_close(f->st); /* drains: every completion has run */
    registry_free(f->reg);
    f->st = NULL;
    f->reg = NULL;
}

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/drover-test-registry-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    assert_non_null(f->base);
    open_all(f);
    g_nrevoked = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    close_all(f);
    event_base_free(f->base);
    DIR *d = opendir(f->dir);
    if (d != NULL) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", f->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Creates id and returns its secret in r. */
static void create(fix_t *f, const char *id, const char *tags, res_t *r)
{
    memset(r, 0, sizeof(*r));
    registry_create(f->reg, id, tags, on_secret, r);
    wait_for(f, &r->called, 1);
    assert_int_equal(r->called, 1);
}

static int auth(fix_t *f, const char *id, const char *secret)
{
    return registry_authenticate(f->reg, id, secret, strlen(secret));
}

static void test_create_authenticate(void **state)
{
    fix_t *f = *state;
    res_t r;
    create(f, "dev-1", "{\"site\":\"a\"}", &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(registry_count(f->reg), 1);

    assert_int_equal(auth(f, "dev-1", r.secret), 0);
    char wrong[CRYPTO_SECRET_LEN + 1];
    memcpy(wrong, r.secret, sizeof(wrong));
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
    assert_int_equal(auth(f, "dev-1", wrong), -EACCES);
    assert_int_equal(registry_authenticate(f->reg, "dev-1", r.secret, CRYPTO_SECRET_LEN - 1),
                     -EACCES);
    assert_int_equal(auth(f, "dev-1", ""), -EACCES);
    assert_int_equal(registry_authenticate(f->reg, "dev-1", NULL, 0), -EACCES);
    assert_int_equal(auth(f, "dev-2", r.secret), -ENOENT);
    assert_int_equal(auth(f, "", r.secret), -ENOENT);
    assert_int_equal(registry_authenticate(f->reg, NULL, r.secret, 3), -ENOENT);
    char longid[100];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(auth(f, longid, r.secret), -ENOENT);

    registry_device_t *d = registry_find(f->reg, "dev-1");
    assert_non_null(d);
    assert_string_equal(d->id, "dev-1");
    assert_false(d->online);
    assert_true(d->key > 0);

    store_device_t sd;
    assert_int_equal(registry_get(f->reg, "dev-1", &sd), 0);
    assert_string_equal(sd.id, "dev-1");
    assert_string_equal(sd.tags_json, "{\"site\":\"a\"}");
    assert_false(sd.online);
    assert_int_equal(sd.last_seen, 0);
    assert_true(sd.created_at > 0);
    store_device_fini(&sd);
    assert_int_equal(registry_get(f->reg, "nope", &sd), -ENOENT);
    assert_int_equal(registry_get(f->reg, "bad/id", &sd), -ENOENT);

    /* Taken id, bad ids: refused, the callback still runs once. */
    create(f, "dev-1", NULL, &r);
    assert_int_equal(r.rc, -EEXIST);
    create(f, "bad id", NULL, &r);
    assert_int_equal(r.rc, -EINVAL);
    create(f, "", NULL, &r);
    assert_int_equal(r.rc, -EINVAL);
    create(f, longid, NULL, &r);
    assert_int_equal(r.rc, -EINVAL);
    assert_int_equal(registry_count(f->reg), 1);

    /* NULL tags default to an empty object. */
    create(f, "dev-2", NULL, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(registry_get(f->reg, "dev-2", &sd), 0);
    assert_string_equal(sd.tags_json, "{}");
    store_device_fini(&sd);
    assert_int_equal(g_nrevoked, 0);
}

static void test_rotate(void **state)
{
    fix_t *f = *state;
    res_t c, r;
    create(f, "rot", NULL, &c);
    assert_int_equal(c.rc, 0);
    memset(&r, 0, sizeof(r));
    registry_rotate_secret(f->reg, "rot", on_secret, &r);
    /* Until the store commits, the old secret still works. */
    if (r.called == 0)
        assert_int_equal(auth(f, "rot", c.secret), 0);
    wait_for(f, &r.called, 1);
    assert_int_equal(r.rc, 0);
    assert_string_not_equal(r.secret, c.secret);
    assert_int_equal(auth(f, "rot", c.secret), -EACCES);
    assert_int_equal(auth(f, "rot", r.secret), 0);
    assert_int_equal(g_nrevoked, 1);
    assert_string_equal(g_revoked[0], "rot");

    memset(&r, 0, sizeof(r));
    registry_rotate_secret(f->reg, "ghost", on_secret, &r);
    wait_for(f, &r.called, 1);
    assert_int_equal(r.rc, -ENOENT);
    assert_int_equal(g_nrevoked, 1);
}

static void test_delete(void **state)
{
    fix_t *f = *state;
    res_t c, r;
    create(f, "gone", NULL, &c);
    create(f, "stays", NULL, &c);
    memset(&r, 0, sizeof(r));
    registry_delete(f->reg, "gone", on_done, &r);
    wait_for(f, &r.called, 1);
    assert_int_equal(r.rc, 0);
    assert_int_equal(g_nrevoked, 1);
    assert_string_equal(g_revoked[0], "gone");
    assert_null(registry_find(f->reg, "gone"));
    assert_non_null(registry_find(f->reg, "stays"));
    assert_int_equal(registry_count(f->reg), 1);
    store_device_t sd;
    assert_int_equal(registry_get(f->reg, "gone", &sd), -ENOENT);
    assert_int_equal(auth(f, "gone", c.secret), -ENOENT);
    assert_int_equal(auth(f, "stays", c.secret), 0);

    memset(&r, 0, sizeof(r));
    registry_delete(f->reg, "gone", on_done, &r);
    wait_for(f, &r.called, 1);
    assert_int_equal(r.rc, -ENOENT);
    assert_int_equal(g_nrevoked, 1);

    /* The id can be taken again, with a new key. */
    create(f, "gone", NULL, &c);
    assert_int_equal(c.rc, 0);
    assert_int_equal(auth(f, "gone", c.secret), 0);
}

/* A revoke hook that marks the device offline, as the broker does when it
 * drops the connection. */
static registry_t *g_hook_reg;
static void offline_hook(void *ctx, const char *id, registry_reason_t deleted)
{
    (void)ctx;
    assert_int_equal(deleted, REGISTRY_DELETED);
    registry_device_t *d = registry_find(g_hook_reg, id);
    assert_non_null(d);
    registry_set_offline(g_hook_reg, d, util_now_ms());
    on_revoke(NULL, id, deleted);
}

static void test_presence(void **state)
{
    fix_t *f = *state;
    res_t c, r;
    create(f, "p1", NULL, &c);
    create(f, "p2", NULL, &c);
    registry_device_t *d = registry_find(f->reg, "p1");
    assert_non_null(d);
    registry_set_online(f->reg, d, 1000);
    registry_set_online(f->reg, d, 1001); /* twice counts once */
    assert_int_equal(registry_online_count(f->reg), 1);
    registry_touch(d, 5000);
    assert_true(d->dirty);
    registry_touch(d, 4000); /* never backwards */
    assert_int_equal(d->last_seen, 5000);

    /* Reads take presence from memory before anything is flushed. */
    store_device_t sd;
    assert_int_equal(registry_get(f->reg, "p1", &sd), 0);
    assert_true(sd.online);
    assert_int_equal(sd.last_seen, 5000);
    store_device_fini(&sd);
    assert_int_equal(registry_get(f->reg, "p2", &sd), 0);
    assert_false(sd.online);
    store_device_fini(&sd);

    registry_flush(f->reg);
    assert_false(d->dirty);

    /* Deleting an online device: the hook drops it, counts stay right. */
    g_hook_reg = f->reg;
    registry_set_revoke_hook(f->reg, offline_hook, NULL);
    memset(&r, 0, sizeof(r));
    registry_delete(f->reg, "p1", on_done, &r);
    wait_for(f, &r.called, 1);
    assert_int_equal(r.rc, 0);
    assert_int_equal(g_nrevoked, 1);
    assert_int_equal(registry_online_count(f->reg), 0);

    d = registry_find(f->reg, "p2");
    registry_set_online(f->reg, d, 2000);
    assert_int_equal(registry_online_count(f->reg), 1);
    registry_set_offline(f->reg, d, 3000);
    registry_set_offline(f->reg, d, 3001);
    assert_int_equal(registry_online_count(f->reg), 0);
    assert_int_equal(registry_get(f->reg, "p2", &sd), 0);
    assert_false(sd.online);
    assert_int_equal(sd.last_seen, 3001);
    store_device_fini(&sd);
}

struct seen {
    char ids[8][DROVER_ID_MAX + 1];
    bool online[8];
    int n;
};

static int collect(void *arg, const store_device_t *d)
{
    struct seen *s = arg;
    if (s->n < 8) {
        snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", d->id);
        s->online[s->n] = d->online;
    }
    s->n++;
    return 0;
}

static void test_list(void **state)
{
    fix_t *f = *state;
    res_t c;
    create(f, "c", "{\"k\":\"v\"}", &c);
    create(f, "a", "{\"k\":\"w\"}", &c);
    create(f, "b", "{\"k\":\"v\"}", &c);
    registry_set_online(f->reg, registry_find(f->reg, "b"), 10);

    struct seen s = {0};
    assert_true(registry_list(f->reg, NULL, NULL, NULL, 10, collect, &s) >= 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.ids[0], "a");
    assert_string_equal(s.ids[1], "b");
    assert_true(s.online[1]);
    assert_false(s.online[0]);

    memset(&s, 0, sizeof(s));
    assert_true(registry_list(f->reg, "a", "k", "v", 10, collect, &s) >= 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.ids[0], "b");
    assert_string_equal(s.ids[1], "c");
}

static void test_reload(void **state)
{
    fix_t *f = *state;
    res_t a, b;
    create(f, "keep-a", "{\"x\":1}", &a);
    create(f, "keep-b", NULL, &b);
    registry_device_t *d = registry_find(f->reg, "keep-a");
    registry_set_online(f->reg, d, 7777);
    int64_t key = d->key;

    /* Restart without a clean disconnect: the store says online. */
    close_all(f);
    open_all(f);

    assert_int_equal(registry_count(f->reg), 2);
    assert_int_equal(registry_online_count(f->reg), 0);
    d = registry_find(f->reg, "keep-a");
    assert_non_null(d);
    assert_int_equal(d->key, key);
    assert_false(d->online);
    assert_int_equal(d->last_seen, 7777);
    assert_int_equal(auth(f, "keep-a", a.secret), 0);
    assert_int_equal(auth(f, "keep-b", b.secret), 0);
    assert_int_equal(auth(f, "keep-a", b.secret), -EACCES);
    store_device_t sd;
    assert_int_equal(registry_get(f->reg, "keep-a", &sd), 0);
    assert_false(sd.online);
    assert_int_equal(sd.last_seen, 7777);
    assert_string_equal(sd.tags_json, "{\"x\":1}");
    store_device_fini(&sd);

    /* The stale "online" was written back as offline. */
    close_all(f);
    open_all(f);
    assert_int_equal(registry_get(f->reg, "keep-a", &sd), 0);
    assert_false(sd.online);
    store_device_fini(&sd);
}

#define MANY 5000

static void test_many(void **state)
{
    fix_t *f = *state;
    static res_t rs[MANY];
    static char ids[MANY][16];
    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < MANY; i++) {
        snprintf(ids[i], sizeof(ids[i]), "m-%d", i);
        registry_create(f->reg, ids[i], NULL, on_secret, &rs[i]);
    }
    for (int i = 0; i < MANY; i++) {
        wait_for(f, &rs[i].called, 1);
        assert_int_equal(rs[i].rc, 0);
    }
    assert_int_equal(registry_count(f->reg), MANY);
    for (int i = 0; i < MANY; i++)
        assert_non_null(registry_find(f->reg, ids[i]));

    /* Delete every third: the others must stay findable (backward shift). */
    static res_t del[MANY];
    memset(del, 0, sizeof(del));
    for (int i = 0; i < MANY; i += 3)
        registry_delete(f->reg, ids[i], on_done, &del[i]);
    for (int i = 0; i < MANY; i += 3) {
        wait_for(f, &del[i].called, 1);
        assert_int_equal(del[i].rc, 0);
    }
    int left = 0;
    for (int i = 0; i < MANY; i++) {
        registry_device_t *d = registry_find(f->reg, ids[i]);
        if (i % 3 == 0) {
            assert_null(d);
        } else {
            assert_non_null(d);
            assert_string_equal(d->id, ids[i]);
            left++;
        }
    }
    assert_int_equal(registry_count(f->reg), left);
    assert_int_equal(auth(f, ids[1], rs[1].secret), 0);
    assert_int_equal(auth(f, ids[MANY - 1], rs[MANY - 1].secret), 0);

    close_all(f);
    open_all(f);
    assert_int_equal(registry_count(f->reg), left);
    for (int i = 1; i < MANY; i += 3)
        assert_int_equal(auth(f, ids[i], rs[i].secret), 0);
    assert_int_equal(auth(f, ids[0], rs[0].secret), -ENOENT);
}

/* A completion that arrives after registry_free still reaches the caller
 * and does not touch the freed table (ASan watches). */
static void test_free_with_pending(void **state)
{
    fix_t *f = *state;
    res_t r = {0};
    registry_create(f->reg, "late", NULL, on_secret, &r);
    registry_free(f->reg);
    f->reg = NULL;
    store_close(f->st); /* runs the completion */
    f->st = NULL;
    assert_int_equal(r.called, 1);
    assert_int_equal(r.rc, 0);
    open_all(f);
    assert_non_null(registry_find(f->reg, "late"));
    assert_int_equal(auth(f, "late", r.secret), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_authenticate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_pending, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

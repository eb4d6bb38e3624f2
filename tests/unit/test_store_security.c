/*
 * The store's security section (schema v3): device revocation and bulk
 * import, token listing and deletion, operator users, certificates,
 * enrollment groups and the audit log, against a real SQLite file in a
 * temporary directory and a real event_base, as in test_store.c: writes are
 * submitted, the loop runs until their callbacks fire, then the reads check
 * what landed. To force jobs into one batch, a second connection holds the
 * write lock while the storage thread is stuck on an earlier batch.
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
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "common/util.h"
#include "store/sqlite_internal.h"
#include "store/store.h"
#include "store_fixture.h"

/* 60 s cap on each wait: the bulk import runs under the sanitizers. */
static int setup(void **state)
{
    return store_fix_setup(state, "/tmp/drover-storesec-XXXXXX", 60);
}

static int teardown(void **state)
{
    return store_fix_teardown(state);
}

static int64_t device_count(fix_t *f)
{
    return raw_int(f, "SELECT count(*) FROM devices");
}

/* ---- Schema ------------------------------------------------------------- */

static void test_schema_v3(void **state)
{
    fix_t *f = *state;
    assert_int_equal(store_sqlite_schema_version(), 3);
    assert_int_equal(raw_int(f, "SELECT version FROM schema_version"), 3);
    static const char *const objects[] = {
        "users", "certificates", "certificates_device", "enrollments",
        "audit", "audit_ts",     "audit_actor",         "audit_object",
    };
    for (size_t i = 0; i < ARRAY_SIZE(objects); i++) {
        char sql[160];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM sqlite_master WHERE name = '%s'",
                 objects[i]);
        assert_int_equal(raw_int(f, sql), 1);
    }
    /* enrollments.token_hash is unique: SQLite made an index for it. */
    assert_int_equal(raw_int(f, "SELECT count(*) FROM pragma_index_list('enrollments')"
                                " WHERE \"unique\" = 1 AND origin = 'u'"),
                     1);
    assert_int_equal(raw_int(f, "SELECT dflt_value FROM pragma_table_info('devices')"
                                " WHERE name = 'revoked_at'"),
                     0);
    assert_int_equal(raw_int(f, "SELECT \"notnull\" FROM pragma_table_info('devices')"
                                " WHERE name = 'revoked_at'"),
                     1);
}

/* ---- Device revocation -------------------------------------------------- */

/* revoked_at as get, list and foreach each read it (one device stored). */
static int64_t revoked_of(fix_t *f, const char *id)
{
    return device_i64_of(f, id, offsetof(store_device_t, revoked_at));
}

static void test_device_revoke(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    assert_int_equal(revoked_of(f, "dev-1"), 0);

    rec_t r = {0};
    RUN(f, store_device_revoke(f->st, k, 5000, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.value, 0);
    assert_int_equal(revoked_of(f, "dev-1"), 5000);
    RUN(f, store_device_revoke(f->st, k, 6000, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(revoked_of(f, "dev-1"), 6000);
    /* 0 lifts it (a device given a new credential). */
    RUN(f, store_device_revoke(f->st, k, 0, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(revoked_of(f, "dev-1"), 0);

    RUN(f, store_device_revoke(f->st, k + 1, 5000, on_done, &r));
    assert_int_equal(r.rc, -ENOENT);
    RUN(f, store_device_revoke(f->st, k, -1, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);

    /* An inserted device carries the revoked_at it is given; it survives
     * a reopen. */
    store_device_t d;
    make_device(&d, "dev-2", NULL);
    d.revoked_at = 42;
    RUN(f, store_device_insert(f->st, &d, on_done, &r));
    assert_int_equal(r.rc, 0);
    RUN(f, store_device_revoke(f->st, k, 7, on_done, &r));
    reopen(f);
    store_device_t got;
    assert_int_equal(store_device_get(f->st, "dev-2", &got), 0);
    assert_int_equal(got.revoked_at, 42);
    store_device_fini(&got);
    assert_int_equal(store_device_get(f->st, "dev-1", &got), 0);
    assert_int_equal(got.revoked_at, 7);
    store_device_fini(&got);
}

/* ---- Bulk import -------------------------------------------------------- */

typedef struct key_walk {
    int n;
    int64_t first;
    char prefix[16];
    bool consecutive;
} key_walk_t;

/* Over foreach (key order): the devices named prefix-N have keys first + N. */
static int on_key(void *arg, const store_device_t *d)
{
    key_walk_t *w = arg;
    size_t plen = strlen(w->prefix);
    if (strncmp(d->id, w->prefix, plen) != 0)
        return 0;
    long idx = strtol(d->id + plen, NULL, 10);
    if (d->key != w->first + idx)
        w->consecutive = false;
    w->n++;
    return 0;
}

static store_device_t *make_devices(const char *prefix, size_t n, char (*ids)[32])
{
    store_device_t *v = calloc(n, sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%s%zu", prefix, i);
        make_device(&v[i], ids[i], (i % 2) ? "{\"site\":\"a\"}" : NULL);
        v[i].created_at = 1000 + (int64_t)i;
    }
    return v;
}

static void test_insert_many_10k(void **state)
{
    fix_t *f = *state;
    enum { N = 10000 };
    /* A gap in the keys first: a deleted device's key is never reused. */
    int64_t k0 = insert_device(f, "before", NULL);
    rec_t r = {0};
    RUN(f, store_device_delete(f->st, k0, on_done, &r));
    assert_int_equal(r.rc, 0);

    char(*ids)[32] = calloc(N, sizeof(*ids));
    assert_non_null(ids);
    store_device_t *v = make_devices("bulk-", N, ids);
    int64_t t0 = util_mono_us();
    RUN(f, store_device_insert_many(f->st, v, N, on_done, &r));
    int64_t us = util_mono_us() - t0;
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.value, k0 + 1);
    print_message("      10000 devices in one job: %lld ms\n", (long long)(us / 1000));
    assert_true(us < 20 * 1000 * 1000); /* generous: sanitizers, shared CPU */
    assert_int_equal(device_count(f), N);

    key_walk_t w = {.first = r.value, .consecutive = true};
    snprintf(w.prefix, sizeof(w.prefix), "bulk-");
    assert_int_equal(store_device_foreach(f->st, on_key, &w), 0);
    assert_int_equal(w.n, N);
    assert_true(w.consecutive);

    store_device_t d;
    assert_int_equal(store_device_get(f->st, "bulk-9999", &d), 0);
    assert_int_equal(d.key, r.value + 9999);
    assert_string_equal(d.tags_json, "{\"site\":\"a\"}");
    assert_int_equal(d.created_at, 1000 + 9999);
    assert_memory_equal(d.salt, v[0].salt, sizeof(d.salt));
    assert_memory_equal(d.secret_hash, v[0].secret_hash, sizeof(d.secret_hash));
    assert_int_equal(d.last_seq, -1);
    assert_int_equal(d.revoked_at, 0);
    store_device_fini(&d);
    assert_int_equal(store_device_get(f->st, "bulk-0", &d), 0);
    assert_string_equal(d.tags_json, "{}");
    store_device_fini(&d);
    free(v);
    free(ids);
}

static void test_insert_many_all_or_nothing(void **state)
{
    fix_t *f = *state;
    char ids[5][32];
    store_device_t *v = make_devices("d-", 5, ids);
    rec_t r = {0};

    /* Nothing to insert: rc 0. */
    RUN(f, store_device_insert_many(f->st, v, 0, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.value, 0);

    /* A bad id anywhere refuses the whole job before it is queued. */
    snprintf(v[3].id, sizeof(v[3].id), "bad id");
    RUN(f, store_device_insert_many(f->st, v, 5, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    assert_int_equal(device_count(f), 0);
    snprintf(v[3].id, sizeof(v[3].id), "d-3");

    /* Invalid tags (a CHECK): nothing either. */
    v[4].tags_json = (char *)"[1]";
    RUN(f, store_device_insert_many(f->st, v, 5, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    assert_int_equal(device_count(f), 0);
    v[4].tags_json = NULL;

    /* A duplicate inside the job. */
    snprintf(v[4].id, sizeof(v[4].id), "d-1");
    RUN(f, store_device_insert_many(f->st, v, 5, on_done, &r));
    assert_int_equal(r.rc, -EEXIST);
    assert_int_equal(r.value, 0);
    assert_int_equal(device_count(f), 0);

    /* A duplicate of a stored device. */
    int64_t k = insert_device(f, "d-4", NULL);
    RUN(f, store_device_insert_many(f->st, v, 4, on_done, &r));
    assert_int_equal(r.rc, 0);
    /* The failed jobs' keys were rolled back and are handed out again;
     * nobody ever saw them. */
    assert_int_equal(r.value, k + 1);
    snprintf(v[4].id, sizeof(v[4].id), "d-4");
    RUN(f, store_device_insert_many(f->st, &v[4], 1, on_done, &r));
    assert_int_equal(r.rc, -EEXIST);
    assert_int_equal(device_count(f), 5);
    free(v);
}

/* Bulk imports sharing a batch with other inserts still get consecutive
 * keys, each job its own run, and complete in submission order. */
static void test_insert_many_in_batch(void **state)
{
    fix_t *f = *state;
    enum { N = 300 };
    static char ids_a[N][32], ids_b[N][32], ids_c[N][32];
    store_device_t *a = make_devices("a-", N, ids_a);
    store_device_t *b = make_devices("b-", N, ids_b);
    store_device_t *c = make_devices("c-", N, ids_c);
    snprintf(c[N - 1].id, sizeof(c[N - 1].id), "a-7"); /* c fails whole */
    store_device_t one;
    make_device(&one, "single", NULL);

    rec_t dummy = {0}, ra = {0}, r1 = {0}, rc = {0}, rb = {0};
    sqlite3 *db = hold_writer(f, &dummy);
    store_device_insert_many(f->st, a, N, on_done, &ra);
    store_device_insert(f->st, &one, on_done, &r1);
    store_device_insert_many(f->st, c, N, on_done, &rc);
    store_device_insert_many(f->st, b, N, on_done, &rb);
    release_writer(db);
    wait_done(f, g_done + 5);
    assert_int_equal(ra.rc, 0);
    assert_int_equal(r1.rc, 0);
    assert_int_equal(rc.rc, -EEXIST);
    assert_int_equal(rb.rc, 0);
    assert_true(dummy.order < ra.order && ra.order < r1.order && r1.order < rc.order &&
                rc.order < rb.order);
    assert_int_equal(r1.value, ra.value + N);
    assert_int_equal(rb.value, r1.value + 1);
    assert_int_equal(device_count(f), 2 * N + 1);

    key_walk_t w = {.first = ra.value, .consecutive = true};
    snprintf(w.prefix, sizeof(w.prefix), "a-");
    store_device_foreach(f->st, on_key, &w);
    assert_int_equal(w.n, N);
    assert_true(w.consecutive);
    w = (key_walk_t){.first = rb.value, .consecutive = true};
    snprintf(w.prefix, sizeof(w.prefix), "b-");
    store_device_foreach(f->st, on_key, &w);
    assert_int_equal(w.n, N);
    assert_true(w.consecutive);
    free(a);
    free(b);
    free(c);
}

/* ---- Tokens ------------------------------------------------------------- */

static void make_token(store_token_t *t, const char *id, int64_t created_at)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "%s", id);
    snprintf(t->name, sizeof(t->name), "name of %s", id);
    snprintf(t->role, sizeof(t->role), "admin");
    t->created_at = created_at;
}

typedef struct tok_walk {
    int n;
    char id[8][40];
    int stop_at; /* return 1 at this row (1-based), 0 = never */
} tok_walk_t;

static int on_token(void *arg, const store_token_t *t)
{
    tok_walk_t *w = arg;
    if (w->n < 8)
        snprintf(w->id[w->n], sizeof(w->id[0]), "%s", t->id);
    w->n++;
    return w->n == w->stop_at ? 1 : 0;
}

static int on_token_fail(void *arg, const store_token_t *t)
{
    (void)arg;
    (void)t;
    return -EMLINK;
}

static void test_tokens(void **state)
{
    fix_t *f = *state;
    tok_walk_t w = {0};
    assert_int_equal(store_token_list(f->st, on_token, &w), 0);

    static const struct {
        const char *id;
        int64_t at;
    } toks[] = {{"tok-a", 100}, {"tok-b", 300}, {"tok-c", 200}, {"tok-d", 300}};
    rec_t r = {0};
    for (size_t i = 0; i < ARRAY_SIZE(toks); i++) {
        store_token_t t;
        uint8_t hash[CRYPTO_HASH_LEN];
        make_token(&t, toks[i].id, toks[i].at);
        if (i == 0)
            t.expires_at = 999;
        memset(hash, (int)i + 1, sizeof(hash));
        RUN(f, store_token_insert(f->st, &t, hash, on_done, &r));
        assert_int_equal(r.rc, 0);
    }
    /* Newest first; equal times by id, descending. */
    assert_int_equal(store_token_list(f->st, on_token, &w), 4);
    assert_string_equal(w.id[0], "tok-d");
    assert_string_equal(w.id[1], "tok-b");
    assert_string_equal(w.id[2], "tok-c");
    assert_string_equal(w.id[3], "tok-a");
    w = (tok_walk_t){.stop_at = 2};
    assert_int_equal(store_token_list(f->st, on_token, &w), 2);
    assert_int_equal(store_token_list(f->st, on_token_fail, NULL), -EMLINK);

    store_token_t t;
    assert_int_equal(store_token_get(f->st, "tok-a", &t), 0);
    assert_string_equal(t.name, "name of tok-a");
    assert_string_equal(t.role, "admin");
    assert_int_equal(t.created_at, 100);
    assert_int_equal(t.expires_at, 999);
    assert_int_equal(store_token_get(f->st, "tok-b", &t), 0);
    assert_int_equal(t.expires_at, 0);
    memset(&t, 0x5a, sizeof(t));
    assert_int_equal(store_token_get(f->st, "nope", &t), -ENOENT);
    assert_int_equal(t.created_at, 0x5a5a5a5a5a5a5a5aLL); /* untouched */
    assert_int_equal(store_token_get(f->st, NULL, &t), -EINVAL);

    RUN(f, store_token_delete(f->st, "tok-b", on_done, &r));
    assert_int_equal(r.rc, 0);
    RUN(f, store_token_delete(f->st, "tok-b", on_done, &r));
    assert_int_equal(r.rc, -ENOENT);
    RUN(f, store_token_delete(f->st, NULL, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    RUN(f, store_token_delete(f->st, "", on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    assert_int_equal(store_token_get(f->st, "tok-b", &t), -ENOENT);
    int64_t n = 0;
    assert_int_equal(store_token_count(f->st, &n), 0);
    assert_int_equal(n, 3);
    uint8_t hash[CRYPTO_HASH_LEN];
    memset(hash, 2, sizeof(hash));
    assert_int_equal(store_token_find(f->st, hash, &t), -ENOENT);
}

/* ---- Users -------------------------------------------------------------- */

static void make_user(store_user_t *u, const char *name, const char *role)
{
    memset(u, 0, sizeof(*u));
    snprintf(u->name, sizeof(u->name), "%s", name);
    snprintf(u->role, sizeof(u->role), "%s", role);
    snprintf(u->password_hash, sizeof(u->password_hash), "$argon2id$v=19$m=65536,t=3,p=1$%s", name);
    u->created_at = 1234;
}

typedef struct user_walk {
    int n;
    char name[8][65];
} user_walk_t;

static int on_user(void *arg, const store_user_t *u)
{
    user_walk_t *w = arg;
    if (w->n < 8)
        snprintf(w->name[w->n], sizeof(w->name[0]), "%s", u->name);
    w->n++;
    return 0;
}

static void test_users(void **state)
{
    fix_t *f = *state;
    store_user_t u, got;
    rec_t r = {0};
    make_user(&u, "carol", "viewer");
    RUN(f, store_user_insert(f->st, &u, on_done, &r));
    assert_int_equal(r.rc, 0);
    make_user(&u, "alice", "admin");
    RUN(f, store_user_insert(f->st, &u, on_done, &r));
    assert_int_equal(r.rc, 0);
    make_user(&u, "bob", "operator");
    u.disabled = true;
    RUN(f, store_user_insert(f->st, &u, on_done, &r));
    assert_int_equal(r.rc, 0);
    make_user(&u, "alice", "viewer");
    RUN(f, store_user_insert(f->st, &u, on_done, &r));
    assert_int_equal(r.rc, -EEXIST);

    assert_int_equal(store_user_get(f->st, "alice", &got), 0);
    assert_string_equal(got.role, "admin"); /* the duplicate changed nothing */
    assert_string_equal(got.password_hash, "$argon2id$v=19$m=65536,t=3,p=1$alice");
    assert_int_equal(got.created_at, 1234);
    assert_false(got.disabled);
    assert_int_equal(store_user_get(f->st, "bob", &got), 0);
    assert_true(got.disabled);
    assert_int_equal(store_user_get(f->st, "dave", &got), -ENOENT);
    assert_int_equal(store_user_get(f->st, NULL, &got), -EINVAL);

    user_walk_t w = {0};
    assert_int_equal(store_user_list(f->st, on_user, &w), 3);
    assert_string_equal(w.name[0], "alice");
    assert_string_equal(w.name[1], "bob");
    assert_string_equal(w.name[2], "carol");

    /* Update replaces role, hash and disabled; created_at stays. */
    make_user(&u, "bob", "admin");
    snprintf(u.password_hash, sizeof(u.password_hash), "$scrypt$new");
    u.created_at = 9;
    u.disabled = false;
    RUN(f, store_user_update(f->st, &u, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(store_user_get(f->st, "bob", &got), 0);
    assert_string_equal(got.role, "admin");
    assert_string_equal(got.password_hash, "$scrypt$new");
    assert_false(got.disabled);
    assert_int_equal(got.created_at, 1234);
    make_user(&u, "dave", "admin");
    RUN(f, store_user_update(f->st, &u, on_done, &r));
    assert_int_equal(r.rc, -ENOENT);

    RUN(f, store_user_delete(f->st, "carol", on_done, &r));
    assert_int_equal(r.rc, 0);
    RUN(f, store_user_delete(f->st, "carol", on_done, &r));
    assert_int_equal(r.rc, -ENOENT);
    assert_int_equal(store_user_get(f->st, "carol", &got), -ENOENT);
    w = (user_walk_t){0};
    assert_int_equal(store_user_list(f->st, on_user, &w), 2);

    /* Refused before queueing: empty or unterminated fields. */
    make_user(&u, "", "admin");
    RUN(f, store_user_insert(f->st, &u, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    make_user(&u, "eve", "admin");
    memset(u.role, 'x', sizeof(u.role));
    RUN(f, store_user_insert(f->st, &u, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    make_user(&u, "eve", "admin");
    u.password_hash[0] = '\0';
    RUN(f, store_user_update(f->st, &u, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    RUN(f, store_user_delete(f->st, NULL, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    w = (user_walk_t){0};
    assert_int_equal(store_user_list(f->st, on_user, &w), 2);
}

/* ---- Certificates ------------------------------------------------------- */

static void make_cert(store_cert_t *c, const char *serial, int64_t key, int64_t created_at,
                      int64_t not_after)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->serial, sizeof(c->serial), "%s", serial);
    c->device_key = key;
    c->not_before = created_at;
    c->not_after = not_after;
    c->created_at = created_at;
    c->pem = (char *)"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
}

typedef struct cert_walk {
    fix_t *f;
    int n;
    char serial[8][80];
    int64_t revoked_at[8];
    char device_id[8][DROVER_ID_MAX + 1];
    bool nested; /* read the same certificate again from inside the walk */
} cert_walk_t;

static int on_cert(void *arg, const store_cert_t *c)
{
    cert_walk_t *w = arg;
    if (w->n < 8) {
        snprintf(w->serial[w->n], sizeof(w->serial[0]), "%s", c->serial);
        snprintf(w->device_id[w->n], sizeof(w->device_id[0]), "%s", c->device_id);
        w->revoked_at[w->n] = c->revoked_at;
    }
    assert_non_null(strstr(c->pem, "BEGIN CERTIFICATE"));
    if (w->nested) {
        store_cert_t again;
        assert_int_equal(store_cert_get(w->f->st, c->serial, &again), 0);
        assert_int_equal(again.revoked_at, c->revoked_at);
        store_cert_fini(&again);
        cert_walk_t inner = {.f = w->f};
        assert_true(store_cert_list(w->f->st, c->device_key, on_cert, &inner) >= 1);
    }
    w->n++;
    return 0;
}

static int cert_insert(fix_t *f, const store_cert_t *c)
{
    rec_t r = {0};
    RUN(f, store_cert_insert(f->st, c, on_done, &r));
    assert_int_equal(r.value, 0);
    return r.rc;
}

static int cert_revoke(fix_t *f, const char *serial, int64_t key, int64_t at)
{
    rec_t r = {0};
    RUN(f, store_cert_revoke(f->st, serial, key, at, on_done, &r));
    return r.rc;
}

static void test_certs(void **state)
{
    fix_t *f = *state;
    int64_t k1 = insert_device(f, "dev-1", NULL);
    int64_t k2 = insert_device(f, "dev-2", NULL);
    store_cert_t c;
    make_cert(&c, "0a01", k1, 100, 10000);
    assert_int_equal(cert_insert(f, &c), 0);
    make_cert(&c, "0a02", k1, 300, 20000);
    assert_int_equal(cert_insert(f, &c), 0);
    make_cert(&c, "0a03", k1, 200, 500); /* expires at 500 */
    assert_int_equal(cert_insert(f, &c), 0);
    make_cert(&c, "0b01", k2, 100, 10000);
    assert_int_equal(cert_insert(f, &c), 0);
    make_cert(&c, "0a01", k2, 100, 10000);
    assert_int_equal(cert_insert(f, &c), -EEXIST);
    make_cert(&c, "0c01", k2 + 100, 100, 10000);
    assert_int_equal(cert_insert(f, &c), -ENOENT); /* no such device */
    make_cert(&c, "", k1, 100, 10000);
    assert_int_equal(cert_insert(f, &c), -EINVAL);
    make_cert(&c, "0c02", k1, 100, 10000);
    c.pem = NULL;
    assert_int_equal(cert_insert(f, &c), -EINVAL);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM certificates"), 4);

    store_cert_t got;
    assert_int_equal(store_cert_get(f->st, "0a02", &got), 0);
    assert_int_equal(got.device_key, k1);
    assert_string_equal(got.device_id, "dev-1");
    assert_int_equal(got.not_before, 300);
    assert_int_equal(got.not_after, 20000);
    assert_int_equal(got.created_at, 300);
    assert_int_equal(got.revoked_at, 0);
    assert_string_equal(got.pem, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    store_cert_fini(&got);
    store_cert_fini(&got); /* fini twice is harmless */
    assert_int_equal(store_cert_get(f->st, "ffff", &got), -ENOENT);
    assert_int_equal(store_cert_get(f->st, NULL, &got), -EINVAL);

    /* A device's certificates, newest first, read again from inside. */
    cert_walk_t w = {.f = f, .nested = true};
    assert_int_equal(store_cert_list(f->st, k1, on_cert, &w), 3);
    assert_string_equal(w.serial[0], "0a02");
    assert_string_equal(w.serial[1], "0a03");
    assert_string_equal(w.serial[2], "0a01");
    assert_string_equal(w.device_id[0], "dev-1");
    w = (cert_walk_t){.f = f};
    assert_int_equal(store_cert_list(f->st, k2 + 100, on_cert, &w), 0);

    /* By serial: the first revocation time is kept; a serial of another
     * device, or none, is -ENOENT. */
    assert_int_equal(cert_revoke(f, "0a01", k1, 1000), 0);
    assert_int_equal(cert_revoke(f, "0a01", 0, 2000), 0);
    assert_int_equal(cert_revoke(f, "0b01", k1, 1000), -ENOENT);
    assert_int_equal(cert_revoke(f, "ffff", 0, 1000), -ENOENT);
    assert_int_equal(cert_revoke(f, "0a01", k1, 0), -EINVAL);
    assert_int_equal(cert_revoke(f, NULL, 0, 1000), -EINVAL);
    assert_int_equal(store_cert_get(f->st, "0a01", &got), 0);
    assert_int_equal(got.revoked_at, 1000);
    store_cert_fini(&got);
    assert_int_equal(store_cert_get(f->st, "0b01", &got), 0);
    assert_int_equal(got.revoked_at, 0);
    store_cert_fini(&got);

    /* Every certificate of a device: only those not revoked yet change. */
    assert_int_equal(cert_revoke(f, NULL, k1, 3000), 0);
    w = (cert_walk_t){.f = f};
    assert_int_equal(store_cert_list(f->st, k1, on_cert, &w), 3);
    assert_int_equal(w.revoked_at[0], 3000);                   /* 0a02 */
    assert_int_equal(w.revoked_at[1], 3000);                   /* 0a03 */
    assert_int_equal(w.revoked_at[2], 1000);                   /* 0a01 */
    assert_int_equal(cert_revoke(f, NULL, k2 + 100, 3000), 0); /* none: fine */

    /* The revocation set: revoked and not expired at now. */
    w = (cert_walk_t){.f = f};
    assert_int_equal(store_cert_foreach_revoked(f->st, 400, on_cert, &w), 0);
    assert_int_equal(w.n, 3);
    w = (cert_walk_t){.f = f};
    assert_int_equal(store_cert_foreach_revoked(f->st, 500, on_cert, &w), 0);
    assert_int_equal(w.n, 2);                 /* 0a03's not_after = 500 is not > 500 */
    assert_string_equal(w.serial[0], "0a01"); /* by revocation time */
    assert_string_equal(w.serial[1], "0a02");
    w = (cert_walk_t){.f = f};
    assert_int_equal(store_cert_foreach_revoked(f->st, 15000, on_cert, &w), 0);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.serial[0], "0a02");

    /* Deleting a device deletes its certificates, in the same job. */
    rec_t r = {0};
    RUN(f, store_device_delete(f->st, k1, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM certificates"), 1);
    assert_int_equal(store_cert_get(f->st, "0a02", &got), -ENOENT);
    w = (cert_walk_t){.f = f};
    assert_int_equal(store_cert_foreach_revoked(f->st, 0, on_cert, &w), 0);
    assert_int_equal(w.n, 0);
}

/* A certificate for a device deleted earlier in the same batch. */
static void test_cert_deleted_device_in_batch(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    store_cert_t c;
    make_cert(&c, "01", k, 1, 2);
    rec_t dummy = {0}, a = {0}, b = {0}, d = {0};
    sqlite3 *db = hold_writer(f, &dummy);
    store_cert_insert(f->st, &c, on_done, &a);
    store_device_delete(f->st, k, on_done, &d);
    make_cert(&c, "02", k, 1, 2);
    store_cert_insert(f->st, &c, on_done, &b);
    release_writer(db);
    wait_done(f, g_done + 4);
    assert_int_equal(a.rc, 0);
    assert_int_equal(d.rc, 0);
    assert_int_equal(b.rc, -ENOENT);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM certificates"), 0);
}

/* ---- Enrollment groups -------------------------------------------------- */

static void make_enrollment(store_enrollment_t *e, const char *id, int64_t max_uses,
                            int64_t expires_at, int64_t created_at)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", id);
    snprintf(e->name, sizeof(e->name), "group %s", id);
    e->max_uses = max_uses;
    e->expires_at = expires_at;
    e->created_at = created_at;
    e->tags = (char *)"{\"fleet\":\"north\"}";
    snprintf(e->grp, sizeof(e->grp), "sensors");
    e->desired = (char *)"{\"interval\":30}";
}

static int enroll_insert(fix_t *f, const store_enrollment_t *e, uint8_t fill)
{
    uint8_t hash[CRYPTO_HASH_LEN];
    memset(hash, fill, sizeof(hash));
    rec_t r = {0};
    RUN(f, store_enrollment_insert(f->st, e, hash, on_done, &r));
    return r.rc;
}

static int claim(fix_t *f, const char *eid, int64_t now, const char *dev_id, int64_t *key)
{
    store_device_t d;
    make_device(&d, dev_id, "{\"fleet\":\"north\",\"x\":1}");
    rec_t r = {0};
    RUN(f, store_enrollment_claim(f->st, eid, now, &d, on_done, &r));
    if (key)
        *key = r.value;
    if (r.rc < 0)
        assert_int_equal(r.value, 0);
    return r.rc;
}

static int64_t uses_of(fix_t *f, const char *id)
{
    store_enrollment_t e;
    assert_int_equal(store_enrollment_get(f->st, id, &e), 0);
    int64_t uses = e.uses;
    store_enrollment_fini(&e);
    return uses;
}

typedef struct enroll_walk {
    int n;
    char id[8][40];
} enroll_walk_t;

static int on_enrollment(void *arg, const store_enrollment_t *e)
{
    enroll_walk_t *w = arg;
    if (w->n < 8)
        snprintf(w->id[w->n], sizeof(w->id[0]), "%s", e->id);
    bool plain = strcmp(e->id, "enr-5") == 0; /* inserted without texts */
    assert_string_equal(e->tags, plain ? "{}" : "{\"fleet\":\"north\"}");
    assert_string_equal(e->desired, plain ? "{}" : "{\"interval\":30}");
    assert_string_equal(e->grp, "sensors");
    w->n++;
    return 0;
}

static void test_enrollment_crud(void **state)
{
    fix_t *f = *state;
    store_enrollment_t e, got;
    make_enrollment(&e, "enr-1", 5, 0, 100);
    assert_int_equal(enroll_insert(f, &e, 1), 0);
    make_enrollment(&e, "enr-2", 5, 9000, 300);
    assert_int_equal(enroll_insert(f, &e, 2), 0);
    make_enrollment(&e, "enr-3", 5, 0, 200);
    assert_int_equal(enroll_insert(f, &e, 3), 0);
    make_enrollment(&e, "enr-1", 5, 0, 100);
    assert_int_equal(enroll_insert(f, &e, 4), -EEXIST); /* id */
    make_enrollment(&e, "enr-4", 5, 0, 100);
    assert_int_equal(enroll_insert(f, &e, 1), -EEXIST); /* token hash */
    make_enrollment(&e, "", 5, 0, 100);
    assert_int_equal(enroll_insert(f, &e, 5), -EINVAL);
    make_enrollment(&e, "enr-5", -1, 0, 100);
    assert_int_equal(enroll_insert(f, &e, 5), -EINVAL);
    make_enrollment(&e, "enr-5", 1, 0, 100);
    e.tags = NULL;
    e.desired = NULL;
    assert_int_equal(enroll_insert(f, &e, 5), 0);

    assert_int_equal(store_enrollment_get(f->st, "enr-2", &got), 0);
    assert_string_equal(got.id, "enr-2");
    assert_string_equal(got.name, "group enr-2");
    assert_int_equal(got.max_uses, 5);
    assert_int_equal(got.uses, 0);
    assert_int_equal(got.expires_at, 9000);
    assert_int_equal(got.revoked_at, 0);
    assert_int_equal(got.created_at, 300);
    assert_string_equal(got.tags, "{\"fleet\":\"north\"}");
    assert_string_equal(got.grp, "sensors");
    assert_string_equal(got.desired, "{\"interval\":30}");
    store_enrollment_fini(&got);
    store_enrollment_fini(&got);
    assert_int_equal(store_enrollment_get(f->st, "enr-5", &got), 0);
    assert_string_equal(got.tags, "{}");
    assert_string_equal(got.desired, "{}");
    store_enrollment_fini(&got);
    assert_int_equal(store_enrollment_get(f->st, "nope", &got), -ENOENT);
    assert_int_equal(store_enrollment_get(f->st, NULL, &got), -EINVAL);

    uint8_t hash[CRYPTO_HASH_LEN];
    memset(hash, 3, sizeof(hash));
    assert_int_equal(store_enrollment_find(f->st, hash, &got), 0);
    assert_string_equal(got.id, "enr-3");
    store_enrollment_fini(&got);
    memset(hash, 9, sizeof(hash));
    assert_int_equal(store_enrollment_find(f->st, hash, &got), -ENOENT);

    /* Newest first; equal times by id, descending. */
    enroll_walk_t w = {0};
    assert_int_equal(store_enrollment_list(f->st, on_enrollment, &w), 4);
    assert_string_equal(w.id[0], "enr-2");
    assert_string_equal(w.id[1], "enr-3");
    assert_string_equal(w.id[2], "enr-5");
    assert_string_equal(w.id[3], "enr-1");
    rec_t r = {0};

    /* Revoke: first time kept, missing is -ENOENT, 0 is refused. */
    RUN(f, store_enrollment_revoke(f->st, "enr-1", 700, on_done, &r));
    assert_int_equal(r.rc, 0);
    RUN(f, store_enrollment_revoke(f->st, "enr-1", 800, on_done, &r));
    assert_int_equal(r.rc, 0);
    RUN(f, store_enrollment_revoke(f->st, "nope", 800, on_done, &r));
    assert_int_equal(r.rc, -ENOENT);
    RUN(f, store_enrollment_revoke(f->st, "enr-1", 0, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    assert_int_equal(store_enrollment_get(f->st, "enr-1", &got), 0);
    assert_int_equal(got.revoked_at, 700);
    store_enrollment_fini(&got);
}

static void test_enrollment_claim(void **state)
{
    fix_t *f = *state;
    store_enrollment_t e;
    make_enrollment(&e, "enr-1", 2, 5000, 1);
    assert_int_equal(enroll_insert(f, &e, 1), 0);

    int64_t k = 0;
    assert_int_equal(claim(f, "enr-1", 1000, "dev-1", &k), 0);
    assert_true(k > 0);
    assert_int_equal(uses_of(f, "enr-1"), 1);
    store_device_t d;
    assert_int_equal(store_device_get(f->st, "dev-1", &d), 0);
    assert_int_equal(d.key, k);
    assert_string_equal(d.tags_json, "{\"fleet\":\"north\",\"x\":1}");
    assert_int_equal(d.salt[0], 0x11);
    assert_int_equal(d.secret_hash[0], 0x22);
    assert_int_equal(d.created_at, 1700000000000LL);
    store_device_fini(&d);

    /* The claimed device is a device like any other: telemetry lands. */
    store_point_t p = {k, "temp", 10, {STORE_VALUE_NUMBER, 1.5, NULL}};
    rec_t r = {0};
    RUN(f, store_telemetry_append(f->st, &p, 1, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM telemetry"), 1);

    /* A taken id: -EEXIST, the use is not counted. */
    assert_int_equal(claim(f, "enr-1", 1000, "dev-1", NULL), -EEXIST);
    assert_int_equal(uses_of(f, "enr-1"), 1);
    assert_int_equal(claim(f, "enr-1", 1000, "dev-2", NULL), 0);
    assert_int_equal(uses_of(f, "enr-1"), 2);
    /* Used up. */
    assert_int_equal(claim(f, "enr-1", 1000, "dev-3", NULL), -EDQUOT);
    assert_int_equal(uses_of(f, "enr-1"), 2);
    /* Expired: expires_at <= now. Beats used up. */
    assert_int_equal(claim(f, "enr-1", 5000, "dev-3", NULL), -EKEYEXPIRED);
    /* Revoked beats both. */
    RUN(f, store_enrollment_revoke(f->st, "enr-1", 3000, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(claim(f, "enr-1", 5000, "dev-3", NULL), -EKEYREVOKED);
    assert_int_equal(claim(f, "enr-1", 1000, "dev-3", NULL), -EKEYREVOKED);
    assert_int_equal(claim(f, "nope", 1000, "dev-3", NULL), -ENOENT);
    assert_int_equal(device_count(f), 2);
    assert_int_equal(uses_of(f, "enr-1"), 2);

    /* expires_at 0 never expires; expired but unused still expired. */
    make_enrollment(&e, "enr-2", 1, 0, 1);
    assert_int_equal(enroll_insert(f, &e, 2), 0);
    make_enrollment(&e, "enr-3", 10, 100, 1);
    assert_int_equal(enroll_insert(f, &e, 3), 0);
    assert_int_equal(claim(f, "enr-3", 100, "dev-4", NULL), -EKEYEXPIRED);
    assert_int_equal(claim(f, "enr-3", 99, "dev-4", NULL), 0);
    assert_int_equal(claim(f, "enr-2", INT64_MAX, "dev-5", NULL), 0);
    assert_int_equal(uses_of(f, "enr-2"), 1);

    /* max_uses 0: never usable. */
    make_enrollment(&e, "enr-4", 0, 0, 1);
    assert_int_equal(enroll_insert(f, &e, 4), 0);
    assert_int_equal(claim(f, "enr-4", 1, "dev-6", NULL), -EDQUOT);

    /* Refused before queueing. */
    assert_int_equal(claim(f, "enr-2", 1, "bad id", NULL), -EINVAL);
    assert_int_equal(claim(f, "", 1, "dev-7", NULL), -EINVAL);
    assert_int_equal(claim(f, NULL, 1, "dev-7", NULL), -EINVAL);
    /* Invalid tags fail the insert: nothing counted. */
    make_enrollment(&e, "enr-5", 3, 0, 1);
    assert_int_equal(enroll_insert(f, &e, 5), 0);
    make_device(&d, "dev-8", "[]");
    RUN(f, store_enrollment_claim(f->st, "enr-5", 1, &d, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    assert_int_equal(uses_of(f, "enr-5"), 0);
    assert_int_equal(device_count(f), 4);
}

/* Claims racing for the last uses in one batch: exactly max_uses win, the
 * rest are -EDQUOT and left nothing behind; callbacks in order. */
static void test_enrollment_claim_race(void **state)
{
    fix_t *f = *state;
    enum { N = 8 };
    store_enrollment_t e;
    make_enrollment(&e, "enr-1", 3, 0, 1);
    assert_int_equal(enroll_insert(f, &e, 1), 0);
    rec_t dummy = {0}, r[N];
    memset(r, 0, sizeof(r));
    store_device_t d[N];
    char ids[N][16];
    sqlite3 *db = hold_writer(f, &dummy);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "dev-%d", i);
        make_device(&d[i], ids[i], NULL);
        store_enrollment_claim(f->st, "enr-1", 10, &d[i], on_done, &r[i]);
    }
    release_writer(db);
    wait_done(f, g_done + N + 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].rc, i < 3 ? 0 : -EDQUOT);
        if (i)
            assert_true(r[i - 1].order < r[i].order);
    }
    assert_int_equal(r[1].value, r[0].value + 1);
    assert_int_equal(uses_of(f, "enr-1"), 3);
    assert_int_equal(device_count(f), 3);
}

/* ---- Audit log ---------------------------------------------------------- */

static void make_audit(store_audit_t *a, int64_t seq, int64_t ts, const char *actor,
                       const char *object)
{
    memset(a, 0, sizeof(*a));
    a->seq = seq;
    a->ts = ts;
    snprintf(a->actor, sizeof(a->actor), "%s", actor);
    snprintf(a->action, sizeof(a->action), "device.delete");
    snprintf(a->object, sizeof(a->object), "%s", object);
    snprintf(a->outcome, sizeof(a->outcome), "ok");
    snprintf(a->source, sizeof(a->source), "10.0.0.1");
    a->detail = (char *)"{\"n\":1}";
    memset(a->prev_hash, (int)(seq - 1), sizeof(a->prev_hash));
    memset(a->hash, (int)seq, sizeof(a->hash));
}

static int audit_append(fix_t *f, const store_audit_t *a)
{
    rec_t r = {0};
    RUN(f, store_audit_append(f->st, a, on_done, &r));
    assert_int_equal(r.value, 0);
    return r.rc;
}

typedef struct audit_walk {
    int n;
    int64_t seq[64];
} audit_walk_t;

static int on_audit(void *arg, const store_audit_t *a)
{
    audit_walk_t *w = arg;
    if (w->n < 64)
        w->seq[w->n] = a->seq;
    w->n++;
    /* Borrowed rows are complete. */
    assert_string_equal(a->action, "device.delete");
    assert_string_equal(a->detail, "{\"n\":1}");
    assert_int_equal(a->hash[0], (uint8_t)a->seq);
    assert_int_equal(a->prev_hash[31], (uint8_t)(a->seq - 1));
    return 0;
}

/* The seqs a list call visits, as "1,2,3". */
static const char *audit_seqs(fix_t *f, int64_t after, int64_t since, int64_t until,
                              const char *actor, const char *object, int limit)
{
    static char out[256];
    audit_walk_t w = {0};
    int n = store_audit_list(f->st, after, since, until, actor, object, limit, on_audit, &w);
    assert_int_equal(n, w.n);
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < w.n && i < 64; i++)
        len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%lld", i ? "," : "",
                                (long long)w.seq[i]);
    return out;
}

static void test_audit_append_chain(void **state)
{
    fix_t *f = *state;
    store_audit_t a, last;
    assert_int_equal(store_audit_last(f->st, &last), -ENOENT);
    /* The first entry is seq 1. */
    make_audit(&a, 2, 10, "alice", "dev-1");
    assert_int_equal(audit_append(f, &a), -EINVAL);
    make_audit(&a, 0, 10, "alice", "dev-1");
    assert_int_equal(audit_append(f, &a), -EINVAL);
    make_audit(&a, -5, 10, "alice", "dev-1");
    assert_int_equal(audit_append(f, &a), -EINVAL);
    make_audit(&a, 1, 10, "alice", "dev-1");
    assert_int_equal(audit_append(f, &a), 0);
    assert_int_equal(audit_append(f, &a), -EINVAL); /* again */
    make_audit(&a, 3, 10, "alice", "dev-1");
    assert_int_equal(audit_append(f, &a), -EINVAL); /* a gap */
    make_audit(&a, 2, 11, "bob", "dev-2");
    a.detail = NULL;
    assert_int_equal(audit_append(f, &a), 0);
    make_audit(&a, 3, 12, "", "");
    a.action[0] = '\0';
    assert_int_equal(audit_append(f, &a), -EINVAL); /* an action is required */
    make_audit(&a, 3, 12, "", "");
    memset(a.outcome, 'x', sizeof(a.outcome));
    assert_int_equal(audit_append(f, &a), -EINVAL);
    make_audit(&a, 3, 12, "", "");
    assert_int_equal(audit_append(f, &a), 0);

    assert_int_equal(store_audit_last(f->st, &last), 0);
    assert_int_equal(last.seq, 3);
    assert_int_equal(last.ts, 12);
    assert_string_equal(last.actor, "");
    assert_string_equal(last.action, "device.delete");
    assert_string_equal(last.outcome, "ok");
    assert_string_equal(last.source, "10.0.0.1");
    assert_string_equal(last.detail, "{\"n\":1}");
    assert_memory_equal(last.hash, a.hash, CRYPTO_HASH_LEN);
    assert_memory_equal(last.prev_hash, a.prev_hash, CRYPTO_HASH_LEN);
    store_audit_fini(&last);
    store_audit_fini(&last);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM audit WHERE detail = '{}'"), 1);

    /* In one batch: appends in order land; one out of place fails alone,
     * and the chain continues from the last one that landed. */
    rec_t dummy = {0}, r[5];
    memset(r, 0, sizeof(r));
    store_audit_t b[5];
    make_audit(&b[0], 4, 20, "alice", "x");
    make_audit(&b[1], 5, 21, "alice", "x");
    make_audit(&b[2], 7, 22, "alice", "x");
    make_audit(&b[3], 6, 23, "alice", "x");
    make_audit(&b[4], 7, 24, "alice", "x");
    sqlite3 *db = hold_writer(f, &dummy);
    for (int i = 0; i < 5; i++)
        store_audit_append(f->st, &b[i], on_done, &r[i]);
    release_writer(db);
    wait_done(f, g_done + 6);
    assert_int_equal(r[0].rc, 0);
    assert_int_equal(r[1].rc, 0);
    assert_int_equal(r[2].rc, -EINVAL);
    assert_int_equal(r[3].rc, 0);
    assert_int_equal(r[4].rc, 0);
    assert_int_equal(store_audit_last(f->st, &last), 0);
    assert_int_equal(last.seq, 7);
    assert_int_equal(last.ts, 24);
    store_audit_fini(&last);
    /* Entries are never changed: the table holds exactly the chain. */
    assert_int_equal(raw_int(f, "SELECT count(*) FROM audit"), 7);
    assert_int_equal(raw_int(f, "SELECT max(seq) - min(seq) + 1 FROM audit"), 7);
}

static void test_audit_list(void **state)
{
    fix_t *f = *state;
    /* seq: ts actor object */
    static const struct {
        int64_t ts;
        const char *actor, *object;
    } rows[] = {
        {100, "alice", "dev-1"}, /* 1 */
        {200, "bob", "dev-1"},   /* 2 */
        {150, "alice", "dev-2"}, /* 3: ts out of seq order */
        {300, "carol", "dev-3"}, /* 4 */
        {400, "alice", "dev-1"}, /* 5 */
        {500, "bob", "dev-2"},   /* 6 */
        {600, "alice", "dev-1"}, /* 7 */
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        store_audit_t a;
        make_audit(&a, (int64_t)i + 1, rows[i].ts, rows[i].actor, rows[i].object);
        assert_int_equal(audit_append(f, &a), 0);
    }
    assert_string_equal(audit_seqs(f, 0, 0, 0, NULL, NULL, 100), "1,2,3,4,5,6,7");
    assert_string_equal(audit_seqs(f, 0, 0, 0, NULL, NULL, 3), "1,2,3");
    assert_string_equal(audit_seqs(f, 3, 0, 0, NULL, NULL, 3), "4,5,6");
    assert_string_equal(audit_seqs(f, 6, 0, 0, NULL, NULL, 3), "7");
    assert_string_equal(audit_seqs(f, 7, 0, 0, NULL, NULL, 3), "");
    /* Time window: since <= ts < until, still in seq order. */
    assert_string_equal(audit_seqs(f, 0, 150, 400, NULL, NULL, 100), "2,3,4");
    assert_string_equal(audit_seqs(f, 0, 150, 0, NULL, NULL, 100), "2,3,4,5,6,7");
    assert_string_equal(audit_seqs(f, 0, 0, 200, NULL, NULL, 100), "1,3");
    assert_string_equal(audit_seqs(f, 2, 150, 0, NULL, NULL, 2), "3,4");
    assert_string_equal(audit_seqs(f, 4, 150, 0, NULL, NULL, 2), "5,6");
    /* Actor, object, both, with a window and paging. */
    assert_string_equal(audit_seqs(f, 0, 0, 0, "alice", NULL, 100), "1,3,5,7");
    assert_string_equal(audit_seqs(f, 3, 0, 0, "alice", NULL, 1), "5");
    assert_string_equal(audit_seqs(f, 0, 0, 0, NULL, "dev-1", 100), "1,2,5,7");
    assert_string_equal(audit_seqs(f, 2, 0, 0, NULL, "dev-1", 100), "5,7");
    assert_string_equal(audit_seqs(f, 0, 0, 0, "alice", "dev-1", 100), "1,5,7");
    assert_string_equal(audit_seqs(f, 0, 0, 0, "bob", "dev-2", 100), "6");
    assert_string_equal(audit_seqs(f, 0, 0, 500, "alice", "dev-1", 100), "1,5");
    assert_string_equal(audit_seqs(f, 0, 150, 500, "alice", NULL, 100), "3,5");
    assert_string_equal(audit_seqs(f, 0, 150, 500, NULL, "dev-2", 100), "3");
    /* A statement reused without an object after one with: no stale
     * binding. */
    assert_string_equal(audit_seqs(f, 0, 0, 0, "alice", NULL, 100), "1,3,5,7");
    assert_string_equal(audit_seqs(f, 0, 0, 0, "nobody", NULL, 100), "");
    assert_string_equal(audit_seqs(f, 0, 0, 0, "", NULL, 100), "");
    audit_walk_t w = {0};
    assert_int_equal(store_audit_list(f->st, 0, 0, 0, NULL, NULL, 0, on_audit, &w), -EINVAL);

    /* The filtered reads walk an index in seq order: no sort. */
    sqlite3 *db = raw_open(f);
    static const struct {
        store_sql_t id;
        const char *index;
        bool sorts;
    } plans[] = {
        {SQL_AUDIT_LIST, NULL, false},
        {SQL_AUDIT_LIST_ACTOR, "audit_actor", false},
        {SQL_AUDIT_LIST_OBJECT, "audit_object", false},
        {SQL_AUDIT_LIST_TS, "audit_ts", true},
    };
    for (size_t i = 0; i < ARRAY_SIZE(plans); i++) {
        char sql[1024];
        snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s",
                 store_sqlite_security_sql[plans[i].id - SQL_SECURITY_FIRST_]);
        sqlite3_stmt *s = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
        char plan[512] = "";
        size_t len = 0;
        while (sqlite3_step(s) == SQLITE_ROW)
            len += (size_t)snprintf(plan + len, sizeof(plan) - len, "%s;",
                                    (const char *)sqlite3_column_text(s, 3));
        sqlite3_finalize(s);
        if (plans[i].index)
            assert_non_null(strstr(plan, plans[i].index));
        assert_int_equal(strstr(plan, "TEMP B-TREE") != NULL, plans[i].sorts);
    }
    sqlite3_close(db);
}

/* ---- Order and nesting -------------------------------------------------- */

/* Security jobs of every kind complete in submission order, in one batch. */
static void test_mixed_order(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    store_enrollment_t e;
    make_enrollment(&e, "enr-1", 5, 0, 1);
    assert_int_equal(enroll_insert(f, &e, 1), 0);
    store_user_t u;
    make_user(&u, "alice", "admin");
    store_cert_t c;
    make_cert(&c, "01", k, 1, 100);
    store_audit_t a;
    make_audit(&a, 1, 1, "alice", "dev-1");
    store_device_t d, many[2];
    make_device(&d, "dev-2", NULL);
    make_device(&many[0], "dev-3", NULL);
    make_device(&many[1], "dev-4", NULL);
    store_token_t t;
    make_token(&t, "tok-1", 1);
    uint8_t hash[CRYPTO_HASH_LEN] = {7};

    enum { N = 14 };
    rec_t dummy = {0}, r[N];
    memset(r, 0, sizeof(r));
    sqlite3 *db = hold_writer(f, &dummy);
    store_user_insert(f->st, &u, on_done, &r[0]);
    store_cert_insert(f->st, &c, on_done, &r[1]);
    store_audit_append(f->st, &a, on_done, &r[2]);
    store_enrollment_claim(f->st, "enr-1", 1, &d, on_done, &r[3]);
    store_device_insert_many(f->st, many, 2, on_done, &r[4]);
    store_token_insert(f->st, &t, hash, on_done, &r[5]);
    store_token_delete(f->st, "tok-1", on_done, &r[6]);
    store_cert_revoke(f->st, "01", k, 5, on_done, &r[7]);
    store_device_revoke(f->st, k, 5, on_done, &r[8]);
    store_enrollment_revoke(f->st, "enr-1", 5, on_done, &r[9]);
    u.disabled = true;
    store_user_update(f->st, &u, on_done, &r[10]);
    store_user_delete(f->st, "alice", on_done, &r[11]);
    store_user_delete(f->st, "alice", on_done, &r[12]);
    store_device_delete(f->st, k, on_done, &r[13]);
    release_writer(db);
    wait_done(f, g_done + N + 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].called, 1);
        assert_int_equal(r[i].rc, i == 12 ? -ENOENT : 0);
        assert_true(r[i].order > (i ? r[i - 1].order : dummy.order));
    }
    assert_int_equal(r[4].value, r[3].value + 1);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM certificates"), 0);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM devices"), 3);
    assert_int_equal(uses_of(f, "enr-1"), 1);
}

/* ---- Migration ---------------------------------------------------------- */

/* Versions 1 and 2 as they shipped, with some data. */
static const char V2_SCHEMA[] = STORE_FIX_SCHEMA_V1 STORE_FIX_SCHEMA_V2
    "CREATE TABLE schema_version(version INTEGER NOT NULL);"
    "INSERT INTO schema_version(version) VALUES(2);"
    "PRAGMA journal_mode = WAL;"
    "INSERT INTO devices(id, tags, online, last_seen, created_at, last_seq)"
    " VALUES('old-1', '{\"site\":\"x\"}', 1, 1234, 1000, 17);"
    "INSERT INTO devices(id, created_at) VALUES('old-2', 2000);"
    "DELETE FROM devices WHERE id = 'old-2';"
    "INSERT INTO telemetry(device, metric, ts, kind, num) VALUES(1, 'temp', 5, 0, 21.5);"
    "INSERT INTO tokens(id, name, role, hash, created_at) VALUES('tok-1', 'ci', 'admin',"
    " x'0101010101010101010101010101010101010101010101010101010101010101', 50);"
    "INSERT INTO twins VALUES(1, '{\"a\":1}', 3, 10, '{}', 0, 0);";

static void test_migrate_from_v2(void **state)
{
    fix_t *f = *state;
    store_fix_replace_db(f, V2_SCHEMA);

    assert_int_equal(store_open(f->dir, f->base, &f->st), 0);
    assert_int_equal(raw_int(f, "SELECT version FROM schema_version"), 3);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM schema_version"), 1);
    store_device_t d;
    assert_int_equal(store_device_get(f->st, "old-1", &d), 0);
    assert_int_equal(d.key, 1);
    assert_int_equal(d.last_seq, 17);
    assert_int_equal(d.revoked_at, 0);
    assert_true(d.online);
    assert_int_equal(d.last_seen, 1234);
    assert_string_equal(d.tags_json, "{\"site\":\"x\"}");
    store_device_fini(&d);
    store_twin_t tw;
    assert_int_equal(store_twin_get(f->st, 1, &tw), 0);
    assert_int_equal(tw.desired_version, 3);
    store_twin_fini(&tw);
    store_token_t t;
    assert_int_equal(store_token_get(f->st, "tok-1", &t), 0);
    assert_int_equal(t.created_at, 50);
    assert_int_equal(t.expires_at, 0);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM telemetry"), 1);

    /* The new tables work on the migrated file; keys continue after the
     * deleted device's. */
    store_device_t many[2];
    make_device(&many[0], "new-1", NULL);
    make_device(&many[1], "new-2", NULL);
    rec_t r = {0};
    RUN(f, store_device_insert_many(f->st, many, 2, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.value, 3);
    store_cert_t c;
    make_cert(&c, "01", 1, 1, 100);
    assert_int_equal(cert_insert(f, &c), 0);
    store_audit_t a;
    make_audit(&a, 1, 1, "alice", "old-1");
    assert_int_equal(audit_append(f, &a), 0);
    store_user_t u;
    make_user(&u, "alice", "admin");
    RUN(f, store_user_insert(f->st, &u, on_done, &r));
    assert_int_equal(r.rc, 0);
    store_enrollment_t e;
    make_enrollment(&e, "enr-1", 1, 0, 1);
    assert_int_equal(enroll_insert(f, &e, 1), 0);
    RUN(f, store_device_revoke(f->st, 1, 99, on_done, &r));
    assert_int_equal(r.rc, 0);
    RUN(f, store_device_delete(f->st, 1, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM certificates"), 0);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM telemetry"), 0);

    /* Reopening does not migrate again. */
    reopen(f);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM schema_version"), 1);
    assert_int_equal(raw_int(f, "SELECT version FROM schema_version"), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_v3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insert_many_10k, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insert_many_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insert_many_in_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_deleted_device_in_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrollment_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrollment_claim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrollment_claim_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_append_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mixed_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v2, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

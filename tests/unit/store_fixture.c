/*
 * The store tests' shared fixture (see store_fixture.h). The helpers fail
 * the running test through cmocka's assertions rather than return errors:
 * a fixture that cannot set itself up has nothing useful to report to its
 * caller.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/util.h"
#include "store_fixture.h"

int g_done;
int g_order;

void on_done(void *arg, int rc, int64_t value)
{
    rec_t *r = arg;
    r->called++;
    r->rc = rc;
    r->value = value;
    r->order = ++g_order;
    g_done++;
}

void wait_done(fix_t *f, int target)
{
    int64_t deadline = util_mono_us() + (int64_t)f->wait_s * 1000 * 1000;
    while (g_done < target) {
        assert_true(util_mono_us() < deadline);
        if (event_base_loop(f->base, EVLOOP_ONCE) == 1)
            usleep(1000); /* no event added: nothing pending */
    }
}

void path_of(const fix_t *f, const char *name, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/%s", f->dir, name);
    assert_true(n > 0 && (size_t)n < outlen);
}

void remove_files(const fix_t *f)
{
    static const char *const files[] = {"drover.db", "drover.db-wal", "drover.db-shm"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        char p[128];
        path_of(f, files[i], p, sizeof(p));
        unlink(p);
    }
}

int store_fix_setup(void **state, const char *dir_template, int wait_s)
{
    fix_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s", dir_template);
    assert_non_null(mkdtemp(f->dir));
    f->wait_s = wait_s;
    f->base = event_base_new();
    assert_non_null(f->base);
    assert_int_equal(store_open(f->dir, f->base, &f->st), 0);
    g_done = 0;
    g_order = 0;
    *state = f;
    return 0;
}

int store_fix_teardown(void **state)
{
    fix_t *f = *state;
    store_close(f->st);
    event_base_free(f->base);
    remove_files(f);
    rmdir(f->dir);
    free(f);
    return 0;
}

void reopen(fix_t *f)
{
    store_close(f->st);
    f->st = NULL;
    assert_int_equal(store_open(f->dir, f->base, &f->st), 0);
}

void store_fix_replace_db(fix_t *f, const char *sql)
{
    store_close(f->st);
    f->st = NULL;
    remove_files(f);
    sqlite3 *db = raw_open(f);
    raw_exec(db, sql);
    sqlite3_close(db);
}

sqlite3 *raw_open(const fix_t *f)
{
    char p[128];
    sqlite3 *db = NULL;
    path_of(f, "drover.db", p, sizeof(p));
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

void raw_exec(sqlite3 *db, const char *sql)
{
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
}

int64_t raw_db_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

int64_t raw_int(const fix_t *f, const char *sql)
{
    sqlite3 *db = raw_open(f);
    int64_t v = raw_db_int(db, sql);
    sqlite3_close(db);
    return v;
}

sqlite3 *hold_writer(fix_t *f, rec_t *dummy)
{
    sqlite3 *db = raw_open(f);
    raw_exec(db, "BEGIN IMMEDIATE");
    store_device_set_presence(f->st, 999999, true, 1, on_done, dummy);
    usleep(100 * 1000); /* the thread takes the dummy and waits on the lock */
    return db;
}

void release_writer(sqlite3 *db)
{
    raw_exec(db, "COMMIT");
    sqlite3_close(db);
}

void make_device(store_device_t *d, const char *id, const char *tags)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->id, sizeof(d->id), "%s", id);
    d->tags_json = (char *)tags;
    memset(d->salt, 0x11, sizeof(d->salt));
    memset(d->secret_hash, 0x22, sizeof(d->secret_hash));
    d->created_at = 1700000000000LL;
}

int64_t insert_device(fix_t *f, const char *id, const char *tags)
{
    store_device_t d;
    rec_t r = {0};
    make_device(&d, id, tags);
    RUN(f, store_device_insert(f->st, &d, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_true(r.value > 0);
    return r.value;
}

typedef struct {
    size_t offset;
    int64_t v;
} member_t;

static int on_member(void *arg, const store_device_t *d)
{
    member_t *m = arg;
    memcpy(&m->v, (const char *)d + m->offset, sizeof(m->v));
    return 0;
}

int64_t device_i64_of(fix_t *f, const char *id, size_t offset)
{
    store_device_t d;
    member_t got = {offset, 0};
    assert_int_equal(store_device_get(f->st, id, &d), 0);
    on_member(&got, &d);
    store_device_fini(&d);
    member_t listed = {offset, INT64_MIN}, each = {offset, INT64_MIN};
    assert_int_equal(store_device_list(f->st, NULL, NULL, NULL, 10, on_member, &listed), 1);
    assert_int_equal(store_device_foreach(f->st, on_member, &each), 0);
    assert_int_equal(listed.v, got.v);
    assert_int_equal(each.v, got.v);
    return got.v;
}

/*
 * The store against a real SQLite file in a temporary directory and a real
 * event_base: writes are submitted, the loop runs until their callbacks
 * fire, then the reads check what landed. To force several jobs into one
 * batch, a second connection holds the database's write lock while the
 * storage thread is stuck on an earlier batch and the jobs pile up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "common/util.h"
#include "store/sqlite_internal.h"
#include "store/store.h"
#include "store_fixture.h"

static int setup(void **state)
{
    return store_fix_setup(state, "/tmp/drover-store-XXXXXX", 10);
}

static int teardown(void **state)
{
    return store_fix_teardown(state);
}

/* ---- Open, reopen, migrations ------------------------------------------ */

static void test_open_reopen(void **state)
{
    fix_t *f = *state;
    int64_t key = insert_device(f, "dev-1", "{\"site\":\"berlin\"}");
    reopen(f);
    store_device_t d;
    assert_int_equal(store_device_get(f->st, "dev-1", &d), 0);
    assert_int_equal(d.key, key);
    assert_string_equal(d.id, "dev-1");
    assert_string_equal(d.tags_json, "{\"site\":\"berlin\"}");
    assert_int_equal(d.salt[0], 0x11);
    assert_int_equal(d.secret_hash[31], 0x22);
    assert_false(d.online);
    assert_int_equal(d.last_seen, 0);
    assert_int_equal(d.created_at, 1700000000000LL);
    store_device_fini(&d);
    store_device_fini(&d); /* fini leaves the struct safe to fini again */
    assert_int_equal(store_device_get(f->st, "nope", &d), -ENOENT);
}

static void test_migrations_idempotent(void **state)
{
    fix_t *f = *state;
    insert_device(f, "dev-1", NULL);
    reopen(f);
    reopen(f);
    sqlite3 *db = raw_open(f);
    assert_int_equal(raw_db_int(db, "SELECT count(*) FROM schema_version"), 1);
    assert_int_equal(raw_db_int(db, "SELECT version FROM schema_version"),
                     store_sqlite_schema_version());
    assert_int_equal(raw_db_int(db, "SELECT count(*) FROM devices"), 1);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void test_future_version_refused(void **state)
{
    fix_t *f = *state;
    insert_device(f, "dev-1", NULL);
    store_close(f->st);
    f->st = NULL;
    sqlite3 *db = raw_open(f);
    raw_exec(db, "UPDATE schema_version SET version = version + 1");
    raw_exec(db, "PRAGMA journal_mode = DELETE");
    sqlite3_close(db);

    store_t *st = (store_t *)0x1;
    assert_int_equal(store_open(f->dir, f->base, &st), -EPROTO);
    assert_ptr_equal(st, (store_t *)0x1); /* untouched on failure */

    /* Not even switched to WAL: the file was left as it was. */
    db = raw_open(f);
    assert_int_equal(raw_db_int(db, "SELECT version FROM schema_version"),
                     store_sqlite_schema_version() + 1);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "delete");
    sqlite3_finalize(s);
    raw_exec(db, "UPDATE schema_version SET version = version - 1");
    sqlite3_close(db);
    assert_int_equal(store_open(f->dir, f->base, &f->st), 0);
}

static void test_open_bad_dir(void **state)
{
    fix_t *f = *state;
    store_t *st = NULL;
    assert_true(store_open("/nonexistent/drover/dir", f->base, &st) < 0);
    assert_null(st);
    store_close(NULL);
}

/* ---- Devices ------------------------------------------------------------ */

static void test_duplicate_in_batch(void **state)
{
    fix_t *f = *state;
    rec_t dummy = {0}, a = {0}, dup = {0}, b = {0}, tok = {0};
    store_device_t d;
    store_token_t t = {.id = "t1", .name = "n", .role = "admin", .created_at = 1};
    uint8_t hash[CRYPTO_HASH_LEN] = {1};

    sqlite3 *db = hold_writer(f, &dummy);
    make_device(&d, "a", NULL);
    store_device_insert(f->st, &d, on_done, &a);
    store_device_insert(f->st, &d, on_done, &dup);
    make_device(&d, "b", "{\"x\":1}");
    store_device_insert(f->st, &d, on_done, &b);
    store_token_insert(f->st, &t, hash, on_done, &tok);
    assert_int_equal(store_pending(f->st), 5);
    release_writer(db);
    wait_done(f, 5);
    assert_int_equal(store_pending(f->st), 0);

    assert_int_equal(a.rc, 0);
    assert_int_equal(dup.rc, -EEXIST);
    assert_int_equal(dup.value, 0);
    assert_int_equal(b.rc, 0);
    assert_int_equal(tok.rc, 0);
    assert_true(b.value > a.value);
    /* Callbacks in submission order. */
    assert_true(dummy.order < a.order && a.order < dup.order && dup.order < b.order &&
                b.order < tok.order);

    store_device_t got;
    assert_int_equal(store_device_get(f->st, "b", &got), 0);
    assert_int_equal(got.key, b.value);
    store_device_fini(&got);
    int64_t n = 0;
    assert_int_equal(store_token_count(f->st, &n), 0);
    assert_int_equal(n, 1);
}

static void test_invalid_input(void **state)
{
    fix_t *f = *state;
    rec_t bad_id = {0}, bad_tags = {0}, arr_tags = {0}, bad_pt = {0}, empty = {0};
    store_device_t d;
    make_device(&d, "has/slash", NULL);
    store_device_insert(f->st, &d, on_done, &bad_id);
    make_device(&d, "x", "{not json");
    store_device_insert(f->st, &d, on_done, &bad_tags);
    make_device(&d, "y", "[1,2]");
    store_device_insert(f->st, &d, on_done, &arr_tags);
    store_point_t p = {.device_key = 1, .metric = NULL, .ts = 1};
    store_telemetry_append(f->st, &p, 1, on_done, &bad_pt);
    store_telemetry_append(f->st, NULL, 0, on_done, &empty);
    wait_done(f, 5);
    assert_int_equal(bad_id.rc, -EINVAL);
    assert_int_equal(bad_tags.rc, -EINVAL);
    assert_int_equal(arr_tags.rc, -EINVAL);
    assert_int_equal(bad_pt.rc, -EINVAL);
    assert_int_equal(empty.rc, 0);
    assert_true(bad_id.order < bad_tags.order && bad_tags.order < arr_tags.order &&
                arr_tags.order < bad_pt.order && bad_pt.order < empty.order);
    store_device_t got;
    assert_int_equal(store_device_get(f->st, "x", &got), -ENOENT);
}

static void test_set_secret(void **state)
{
    fix_t *f = *state;
    int64_t key = insert_device(f, "dev-1", NULL);
    uint8_t salt[CRYPTO_SALT_LEN], hash[CRYPTO_HASH_LEN];
    memset(salt, 0xaa, sizeof(salt));
    memset(hash, 0xbb, sizeof(hash));
    rec_t ok = {0}, missing = {0};
    store_device_set_secret(f->st, key, salt, hash, on_done, &ok);
    store_device_set_secret(f->st, key + 100, salt, hash, on_done, &missing);
    wait_done(f, g_done + 2);
    assert_int_equal(ok.rc, 0);
    assert_int_equal(missing.rc, -ENOENT);
    store_device_t d;
    assert_int_equal(store_device_get(f->st, "dev-1", &d), 0);
    assert_memory_equal(d.salt, salt, sizeof(salt));
    assert_memory_equal(d.secret_hash, hash, sizeof(hash));
    store_device_fini(&d);
}

static void test_presence_collapse(void **state)
{
    fix_t *f = *state;
    int64_t k1 = insert_device(f, "dev-1", NULL);
    int64_t k2 = insert_device(f, "dev-2", NULL);
    /* Count the UPDATEs that reach the devices table. */
    sqlite3 *db = raw_open(f);
    raw_exec(db, "CREATE TABLE upd(n INTEGER); INSERT INTO upd VALUES(0);"
                 "CREATE TRIGGER count_upd AFTER UPDATE OF online ON devices"
                 " BEGIN UPDATE upd SET n = n + 1; END;");
    sqlite3_close(db);

    rec_t dummy = {0}, r[5] = {{0}};
    int base_done = g_done;
    db = hold_writer(f, &dummy);
    store_device_set_presence(f->st, k1, true, 100, on_done, &r[0]);
    store_device_set_presence(f->st, k2, true, 150, on_done, &r[1]);
    store_device_set_presence(f->st, k1, false, 200, on_done, &r[2]);
    store_device_set_presence(f->st, k1, true, 300, on_done, &r[3]);
    store_device_set_presence(f->st, 424242, true, 300, on_done, &r[4]); /* missing: ignored */
    release_writer(db);
    wait_done(f, base_done + 6);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r[i].rc, 0);
        if (i)
            assert_true(r[i - 1].order < r[i].order);
    }

    store_device_t d;
    assert_int_equal(store_device_get(f->st, "dev-1", &d), 0);
    assert_true(d.online);
    assert_int_equal(d.last_seen, 300);
    store_device_fini(&d);
    assert_int_equal(store_device_get(f->st, "dev-2", &d), 0);
    assert_true(d.online);
    assert_int_equal(d.last_seen, 150);
    store_device_fini(&d);

    db = raw_open(f);
    /* dummy (missing key, 0 rows), one for k1, one for k2. */
    assert_int_equal(raw_db_int(db, "SELECT n FROM upd"), 2);
    raw_exec(db, "DROP TRIGGER count_upd; DROP TABLE upd;");
    sqlite3_close(db);

    rec_t off = {0};
    store_device_set_presence(f->st, k1, false, 400, on_done, &off);
    wait_done(f, g_done + 1);
    assert_int_equal(store_device_get(f->st, "dev-1", &d), 0);
    assert_false(d.online);
    assert_int_equal(d.last_seen, 400);
    store_device_fini(&d);
}

/* ---- Telemetry ---------------------------------------------------------- */

typedef struct seen {
    int n;
    char metric[8][16];
    int64_t ts[8];
    int64_t seq[8];
    store_value_t v[8];
    char str[8][16];
} seen_t;

static void seen_add(seen_t *s, const char *metric, int64_t ts, int64_t seq, const store_value_t *v)
{
    assert_true(s->n < 8);
    snprintf(s->metric[s->n], sizeof(s->metric[0]), "%s", metric);
    s->ts[s->n] = ts;
    s->seq[s->n] = seq;
    s->v[s->n] = *v;
    if (v->kind == STORE_VALUE_STRING) {
        snprintf(s->str[s->n], sizeof(s->str[0]), "%s", v->str);
        s->v[s->n].str = NULL; /* only valid during the callback */
    }
    s->n++;
}

static int on_latest(void *arg, const char *metric, int64_t ts, const store_value_t *v)
{
    seen_add(arg, metric, ts, -1, v);
    return 0;
}

static int on_point(void *arg, const char *metric, int64_t ts, int64_t seq, const store_value_t *v)
{
    seen_add(arg, metric, ts, seq, v);
    return 0;
}

static int query(fix_t *f, int64_t key, const char *metric, int64_t since, int64_t until,
                 int64_t after_ts, int64_t after_seq, int limit, seen_t *s)
{
    memset(s, 0, sizeof(*s));
    return store_telemetry_query(f->st, key, metric, since, until, after_ts, after_seq, limit,
                                 on_point, s);
}

static void test_telemetry(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    int64_t other = insert_device(f, "dev-2", NULL);
    char door[] = "open";
    char temp[] = "temp";
    store_point_t pts[] = {
        {k, temp, 20, {STORE_VALUE_NUMBER, 21.5, NULL}},
        {k, "door", 10, {STORE_VALUE_STRING, 0, door}},
        {k, "temp", 10, {STORE_VALUE_NUMBER, 19.0, NULL}}, /* older: latest keeps 21.5 */
        {k, "up", 20, {STORE_VALUE_BOOL, 1, NULL}},
        {other, "temp", 15, {STORE_VALUE_NUMBER, 5, NULL}},
    };
    rec_t r1 = {0}, r2 = {0};
    store_telemetry_append(f->st, pts, ARRAY_SIZE(pts), on_done, &r1);
    /* The store copied everything: scribble over the caller's buffers. */
    memset(door, 'X', sizeof(door) - 1);
    memset(temp, 'Y', sizeof(temp) - 1);
    pts[0].ts = -1;
    store_point_t same_ts = {k, "temp", 20, {STORE_VALUE_NUMBER, 22.0, NULL}};
    store_telemetry_append(f->st, &same_ts, 1, on_done, &r2);
    wait_done(f, g_done + 2);
    assert_int_equal(r1.rc, 0);
    assert_int_equal(r2.rc, 0);

    seen_t s = {0};
    assert_int_equal(store_telemetry_latest(f->st, k, on_latest, &s), 3);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.metric[0], "door");
    assert_int_equal(s.v[0].kind, STORE_VALUE_STRING);
    assert_string_equal(s.str[0], "open");
    assert_string_equal(s.metric[1], "temp");
    assert_int_equal(s.ts[1], 20);
    assert_true(s.v[1].num == 22.0); /* equal ts replaces */
    assert_string_equal(s.metric[2], "up");
    assert_int_equal(s.v[2].kind, STORE_VALUE_BOOL);
    assert_true(s.v[2].num == 1);

    /* All points of k, by (ts, seq): door@10, temp@10, temp@20, up@20, temp@20'. */
    assert_int_equal(query(f, k, NULL, 0, INT64_MAX, 0, -1, 100, &s), 5);
    assert_string_equal(s.metric[0], "door");
    assert_string_equal(s.metric[1], "temp");
    assert_int_equal(s.ts[1], 10);
    assert_string_equal(s.metric[2], "temp");
    assert_true(s.v[2].num == 21.5);
    assert_string_equal(s.metric[3], "up");
    assert_true(s.v[4].num == 22.0);
    for (int i = 1; i < s.n; i++)
        assert_true(s.ts[i - 1] < s.ts[i] || (s.ts[i - 1] == s.ts[i] && s.seq[i - 1] < s.seq[i]));
    int64_t seq_of[5];
    for (int i = 0; i < 5; i++)
        seq_of[i] = s.seq[i];

    /* Pages of two, each resuming from the last (ts, seq). */
    assert_int_equal(query(f, k, NULL, 0, INT64_MAX, 0, -1, 2, &s), 2);
    assert_int_equal(s.seq[0], seq_of[0]);
    assert_int_equal(s.seq[1], seq_of[1]);
    assert_int_equal(query(f, k, NULL, 0, INT64_MAX, s.ts[1], s.seq[1], 2, &s), 2);
    assert_int_equal(s.seq[0], seq_of[2]);
    assert_int_equal(s.seq[1], seq_of[3]);
    assert_int_equal(query(f, k, NULL, 0, INT64_MAX, s.ts[1], s.seq[1], 2, &s), 1);
    assert_int_equal(s.seq[0], seq_of[4]);
    assert_int_equal(query(f, k, NULL, 0, INT64_MAX, s.ts[0], s.seq[0], 2, &s), 0);

    /* since <= ts < until */
    assert_int_equal(query(f, k, NULL, 10, 20, 0, -1, 100, &s), 2);
    assert_int_equal(query(f, k, NULL, 11, 21, 0, -1, 100, &s), 3);
    assert_int_equal(s.ts[0], 20);
    /* A cursor before since does not widen the range. */
    assert_int_equal(query(f, k, NULL, 20, 21, 10, seq_of[0], 100, &s), 3);

    /* Metric filter, with a cursor. */
    assert_int_equal(query(f, k, "temp", 0, INT64_MAX, 0, -1, 100, &s), 3);
    assert_int_equal(s.ts[0], 10);
    assert_int_equal(query(f, k, "temp", 0, INT64_MAX, 20, seq_of[2], 100, &s), 1);
    assert_true(s.v[0].num == 22.0);
    assert_int_equal(query(f, k, "nope", 0, INT64_MAX, 0, -1, 100, &s), 0);

    /* Other devices stay apart. */
    assert_int_equal(query(f, other, NULL, 0, INT64_MAX, 0, -1, 100, &s), 1);
    assert_true(s.v[0].num == 5);
    assert_int_equal(query(f, k, NULL, 0, INT64_MAX, 0, -1, 0, &s), -EINVAL);

    /* Points survive a reopen. */
    reopen(f);
    assert_int_equal(query(f, k, NULL, 0, INT64_MAX, 0, -1, 100, &s), 5);
}

static int stop_after_one(void *arg, const char *metric, int64_t ts, int64_t seq,
                          const store_value_t *v)
{
    (void)metric, (void)ts, (void)seq, (void)v;
    ++*(int *)arg;
    return 1;
}

static void test_telemetry_stop_early(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    store_point_t pts[] = {
        {k, "a", 1, {STORE_VALUE_NUMBER, 1, NULL}},
        {k, "a", 2, {STORE_VALUE_NUMBER, 2, NULL}},
    };
    rec_t r = {0};
    store_telemetry_append(f->st, pts, 2, on_done, &r);
    wait_done(f, g_done + 1);
    int calls = 0;
    assert_int_equal(
        store_telemetry_query(f->st, k, NULL, 0, 100, 0, -1, 10, stop_after_one, &calls), 1);
    assert_int_equal(calls, 1);
    /* The statement was reset: a new point is visible to the next read. */
    store_point_t p3 = {k, "a", 3, {STORE_VALUE_NUMBER, 3, NULL}};
    store_telemetry_append(f->st, &p3, 1, on_done, &r);
    wait_done(f, g_done + 1);
    seen_t s;
    assert_int_equal(query(f, k, NULL, 0, 100, 0, -1, 10, &s), 3);
}

/* Latest values are gathered per batch and written once: the result must
 * be what applying the points one by one would give. */
static void test_latest_in_one_batch(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    int64_t gone = insert_device(f, "dev-2", NULL);
    store_point_t stored = {k, "old", 50, {STORE_VALUE_NUMBER, 9, NULL}};
    rec_t r0 = {0};
    store_telemetry_append(f->st, &stored, 1, on_done, &r0);
    wait_done(f, g_done + 1);

    store_point_t j1[] = {
        {k, "temp", 20, {STORE_VALUE_NUMBER, 1, NULL}},
        {k, "old", 40, {STORE_VALUE_NUMBER, 1, NULL}}, /* older than stored: ignored */
        {gone, "temp", 5, {STORE_VALUE_NUMBER, 1, NULL}},
    };
    store_point_t j2[] = {
        {k, "temp", 10, {STORE_VALUE_NUMBER, 2, NULL}}, /* older: ignored */
        {k, "temp", 20, {STORE_VALUE_NUMBER, 3, NULL}}, /* same ts, later: wins */
        {k, "s", 7, {STORE_VALUE_STRING, 0, "a"}},
    };
    store_point_t j3[] = {
        {k, "s", 7, {STORE_VALUE_STRING, 0, "b"}},
        {k, "old", 50, {STORE_VALUE_NUMBER, 10, NULL}}, /* equal to stored: wins */
        {gone, "temp", 6, {STORE_VALUE_NUMBER, 2, NULL}},
    };
    rec_t dummy = {0}, r[4] = {{0}};
    int base_done = g_done;
    sqlite3 *db = hold_writer(f, &dummy);
    store_telemetry_append(f->st, j1, ARRAY_SIZE(j1), on_done, &r[0]);
    store_telemetry_append(f->st, j2, ARRAY_SIZE(j2), on_done, &r[1]);
    store_telemetry_append(f->st, j3, ARRAY_SIZE(j3), on_done, &r[2]);
    store_device_delete(f->st, gone, on_done, &r[3]);
    release_writer(db);
    wait_done(f, base_done + 5);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].rc, 0);

    seen_t s = {0};
    assert_int_equal(store_telemetry_latest(f->st, k, on_latest, &s), 3);
    assert_string_equal(s.metric[0], "old");
    assert_int_equal(s.ts[0], 50);
    assert_true(s.v[0].num == 10);
    assert_string_equal(s.metric[1], "s");
    assert_string_equal(s.str[1], "b");
    assert_string_equal(s.metric[2], "temp");
    assert_int_equal(s.ts[2], 20);
    assert_true(s.v[2].num == 3);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_telemetry_latest(f->st, gone, on_latest, &s), 0);
    sqlite3 *raw = raw_open(f);
    assert_int_equal(raw_db_int(raw, "SELECT count(*) FROM telemetry_latest"), 3);
    assert_int_equal(raw_db_int(raw, "SELECT count(*) FROM telemetry"),
                     8); /* 10 written, 2 of the deleted device gone */
    sqlite3_close(raw);
}

/* A telemetry job that fails halfway (here a trigger aborts it on its
 * second point) gets the error alone: its first point is rolled back, and
 * the jobs around it in the batch commit. */
static void test_failed_job_alone(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    sqlite3 *db = raw_open(f);
    raw_exec(db, "CREATE TRIGGER boom BEFORE INSERT ON telemetry WHEN NEW.metric = 'boom'"
                 " BEGIN SELECT RAISE(ABORT, 'boom'); END;");
    sqlite3_close(db);

    store_point_t good1 = {k, "a", 1, {STORE_VALUE_NUMBER, 1, NULL}};
    store_point_t bad[] = {
        {k, "b", 2, {STORE_VALUE_NUMBER, 2, NULL}},
        {k, "boom", 3, {STORE_VALUE_NUMBER, 3, NULL}},
    };
    store_point_t good2 = {k, "c", 4, {STORE_VALUE_NUMBER, 4, NULL}};
    store_device_t d;
    make_device(&d, "dev-2", NULL);
    rec_t dummy = {0}, r1 = {0}, rb = {0}, r2 = {0}, ins = {0};
    int base_done = g_done;
    db = hold_writer(f, &dummy);
    store_telemetry_append(f->st, &good1, 1, on_done, &r1);
    store_device_insert(f->st, &d, on_done, &ins);
    store_telemetry_append(f->st, bad, 2, on_done, &rb);
    store_telemetry_append(f->st, &good2, 1, on_done, &r2);
    release_writer(db);
    wait_done(f, base_done + 5);
    assert_int_equal(r1.rc, 0);
    assert_int_equal(ins.rc, 0);
    assert_true(ins.value > k);
    assert_int_equal(rb.rc, -EIO);
    assert_int_equal(r2.rc, 0);
    assert_true(r1.order < ins.order && ins.order < rb.order && rb.order < r2.order);

    seen_t s;
    assert_int_equal(query(f, k, NULL, 0, INT64_MAX, 0, -1, 100, &s), 2);
    assert_string_equal(s.metric[0], "a");
    assert_string_equal(s.metric[1], "c");
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_telemetry_latest(f->st, k, on_latest, &s), 2);
    store_device_t got;
    assert_int_equal(store_device_get(f->st, "dev-2", &got), 0);
    assert_int_equal(got.key, ins.value);
    store_device_fini(&got);
}

static void test_delete_cascades(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    int64_t keep = insert_device(f, "dev-2", NULL);
    store_point_t pts[] = {
        {k, "temp", 1, {STORE_VALUE_NUMBER, 1, NULL}},
        {keep, "temp", 1, {STORE_VALUE_NUMBER, 2, NULL}},
    };
    rec_t r = {0}, del = {0}, again = {0}, late = {0};
    store_telemetry_append(f->st, pts, 2, on_done, &r);
    store_device_delete(f->st, k, on_done, &del);
    store_device_delete(f->st, k, on_done, &again);
    store_telemetry_append(f->st, pts, 2, on_done, &late); /* k is gone: its point is dropped */
    wait_done(f, g_done + 4);
    assert_int_equal(r.rc, 0);
    assert_int_equal(del.rc, 0);
    assert_int_equal(again.rc, -ENOENT);
    assert_int_equal(late.rc, 0);

    store_device_t d;
    assert_int_equal(store_device_get(f->st, "dev-1", &d), -ENOENT);
    seen_t s = {0};
    assert_int_equal(store_telemetry_latest(f->st, k, on_latest, &s), 0);
    assert_int_equal(query(f, k, NULL, 0, INT64_MAX, 0, -1, 100, &s), 0);
    assert_int_equal(query(f, keep, NULL, 0, INT64_MAX, 0, -1, 100, &s), 2);

    sqlite3 *db = raw_open(f);
    assert_int_equal(raw_db_int(db, "SELECT count(*) FROM telemetry"), 2);
    assert_int_equal(raw_db_int(db, "SELECT count(*) FROM telemetry_latest"), 1);
    sqlite3_close(db);

    /* A new device never reuses the deleted key. */
    int64_t k3 = insert_device(f, "dev-3", NULL);
    assert_true(k3 > keep);
    store_device_delete(f->st, k3, on_done, &del);
    wait_done(f, g_done + 1);
    assert_true(insert_device(f, "dev-4", NULL) > k3);
}

/* ---- Listing ------------------------------------------------------------ */

typedef struct ids {
    int n;
    char id[16][DROVER_ID_MAX + 1];
    int stop_at; /* stop after this many (0: never) */
} ids_t;

static int on_device(void *arg, const store_device_t *d)
{
    ids_t *l = arg;
    assert_true(l->n < 16);
    snprintf(l->id[l->n], sizeof(l->id[0]), "%s", d->id);
    l->n++;
    return l->stop_at && l->n >= l->stop_at ? 1 : 0;
}

static int list(fix_t *f, const char *after, const char *key, const char *value, int limit,
                ids_t *l)
{
    memset(l, 0, sizeof(*l));
    return store_device_list(f->st, after, key, value, limit, on_device, l);
}

static void test_list_tags(void **state)
{
    fix_t *f = *state;
    insert_device(f, "d1", "{\"site\":\"berlin\"}");
    insert_device(f, "d2", "{\"site\":\"paris\",\"floor\":3}");
    insert_device(f, "d3", "{\"floor\":\"3\",\"site\":\"berlin\"}");
    insert_device(f, "d4", "{\"a.b\\\"c\":\"x\",\"on\":true}");
    insert_device(f, "d0", NULL);
    ids_t l;

    assert_int_equal(list(f, NULL, NULL, NULL, 100, &l), 5);
    assert_string_equal(l.id[0], "d0");
    assert_string_equal(l.id[4], "d4");

    assert_int_equal(list(f, "", "site", "berlin", 100, &l), 2);
    assert_string_equal(l.id[0], "d1");
    assert_string_equal(l.id[1], "d3");

    assert_int_equal(list(f, NULL, "floor", "3", 100, &l), 2); /* number and string */
    assert_string_equal(l.id[0], "d2");
    assert_string_equal(l.id[1], "d3");

    assert_int_equal(list(f, NULL, "a.b\"c", "x", 100, &l), 1); /* key taken literally */
    assert_string_equal(l.id[0], "d4");
    assert_int_equal(list(f, NULL, "on", "true", 100, &l), 1);
    assert_int_equal(list(f, NULL, "site", "Berlin", 100, &l), 0);
    assert_int_equal(list(f, NULL, "$.site", "berlin", 100, &l), 0);

    /* Paging by id. */
    assert_int_equal(list(f, NULL, NULL, NULL, 2, &l), 2);
    assert_string_equal(l.id[1], "d1");
    assert_int_equal(list(f, "d1", NULL, NULL, 2, &l), 2);
    assert_string_equal(l.id[0], "d2");
    assert_string_equal(l.id[1], "d3");
    assert_int_equal(list(f, "d1", "site", "berlin", 2, &l), 1);
    assert_string_equal(l.id[0], "d3");
    assert_int_equal(list(f, "d4", NULL, NULL, 2, &l), 0);
    assert_int_equal(list(f, NULL, NULL, NULL, 0, &l), -EINVAL);

    /* Early stop. */
    memset(&l, 0, sizeof(l));
    l.stop_at = 2;
    assert_int_equal(store_device_list(f->st, NULL, NULL, NULL, 100, on_device, &l), 2);
}

typedef struct nest {
    fix_t *f;
    int outer;
    int inner_total;
} nest_t;

/* A read inside a read callback that needs the same statement. */
static int on_device_nested(void *arg, const store_device_t *d)
{
    nest_t *n = arg;
    (void)d;
    ids_t l;
    n->outer++;
    int rc = list(n->f, NULL, NULL, NULL, 100, &l);
    assert_true(rc >= 0);
    n->inner_total += rc;
    return 0;
}

static int on_foreach(void *arg, const store_device_t *d)
{
    ids_t *l = arg;
    snprintf(l->id[l->n], sizeof(l->id[0]), "%s", d->id);
    l->n++;
    return l->n == l->stop_at ? 7 : 0;
}

static void test_foreach_and_nested_reads(void **state)
{
    fix_t *f = *state;
    insert_device(f, "zz", NULL);
    insert_device(f, "aa", NULL);
    insert_device(f, "mm", NULL);
    ids_t l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_device_foreach(f->st, on_foreach, &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.id[0], "zz"); /* key order, not id order */
    assert_string_equal(l.id[2], "mm");
    memset(&l, 0, sizeof(l));
    l.stop_at = 2;
    assert_int_equal(store_device_foreach(f->st, on_foreach, &l), 7);
    assert_int_equal(l.n, 2);

    nest_t n = {.f = f};
    assert_int_equal(store_device_list(f->st, NULL, NULL, NULL, 100, on_device_nested, &n), 3);
    assert_int_equal(n.outer, 3);
    assert_int_equal(n.inner_total, 9);
}

/* ---- Tokens ------------------------------------------------------------- */

static void test_tokens(void **state)
{
    fix_t *f = *state;
    int64_t n = -1;
    assert_int_equal(store_token_count(f->st, &n), 0);
    assert_int_equal(n, 0);

    store_token_t t = {.id = "tok1", .name = "admin", .role = "admin", .created_at = 5};
    store_token_t t2 = {
        .id = "tok2", .name = "ci", .role = "viewer", .created_at = 6, .expires_at = 1000};
    uint8_t h1[CRYPTO_HASH_LEN], h2[CRYPTO_HASH_LEN], h3[CRYPTO_HASH_LEN];
    crypto_sha256("one", 3, h1);
    crypto_sha256("two", 3, h2);
    crypto_sha256("three", 5, h3);
    rec_t r1 = {0}, r2 = {0}, dup_id = {0}, dup_hash = {0};
    store_token_insert(f->st, &t, h1, on_done, &r1);
    store_token_insert(f->st, &t2, h2, on_done, &r2);
    store_token_insert(f->st, &t, h3, on_done, &dup_id);
    t.id[1] = 'X';
    store_token_insert(f->st, &t, h2, on_done, &dup_hash);
    wait_done(f, 4);
    assert_int_equal(r1.rc, 0);
    assert_int_equal(r2.rc, 0);
    assert_int_equal(dup_id.rc, -EEXIST);
    assert_int_equal(dup_hash.rc, -EEXIST);

    assert_int_equal(store_token_count(f->st, &n), 0);
    assert_int_equal(n, 2);
    store_token_t got;
    assert_int_equal(store_token_find(f->st, h1, &got), 0);
    assert_string_equal(got.id, "tok1");
    assert_string_equal(got.name, "admin");
    assert_string_equal(got.role, "admin");
    assert_int_equal(got.created_at, 5);
    assert_int_equal(got.expires_at, 0);
    assert_int_equal(store_token_find(f->st, h2, &got), 0);
    assert_string_equal(got.id, "tok2");
    assert_int_equal(got.expires_at, 1000);
    memset(&got, 0x5a, sizeof(got));
    assert_int_equal(store_token_find(f->st, h3, &got), -ENOENT);
    assert_int_equal((uint8_t)got.id[0], 0x5a); /* untouched */
}

/* ---- Close ---------------------------------------------------------------- */

typedef struct chain {
    store_t *st;
    rec_t followup;
    int ran;
} chain_t;

static void test_close_drains(void **state)
{
    fix_t *f = *state;
    enum { N = 2000 };
    rec_t *r = calloc(N + 1, sizeof(*r));
    assert_non_null(r);
    int64_t k = insert_device(f, "dev-1", NULL);
    for (int i = 0; i < N; i++) {
        store_point_t p = {k, "seq", i, {STORE_VALUE_NUMBER, i, NULL}};
        store_telemetry_append(f->st, &p, 1, on_done, &r[i]);
    }
    store_device_set_presence(f->st, k, true, 77, on_done, &r[N]);
    store_close(f->st);
    f->st = NULL;
    for (int i = 0; i <= N; i++) {
        assert_int_equal(r[i].called, 1);
        assert_int_equal(r[i].rc, 0);
        if (i)
            assert_true(r[i - 1].order < r[i].order);
    }
    free(r);

    assert_int_equal(store_open(f->dir, f->base, &f->st), 0);
    seen_t s;
    assert_int_equal(query(f, k, "seq", N - 3, INT64_MAX, 0, -1, 8, &s), 3);
    assert_true(s.v[2].num == N - 1);
    assert_int_equal(store_telemetry_latest(f->st, k, on_latest, memset(&s, 0, sizeof(s))), 1);
    assert_int_equal(s.ts[0], N - 1);
    store_device_t d;
    assert_int_equal(store_device_get(f->st, "dev-1", &d), 0);
    assert_true(d.online);
    assert_int_equal(d.last_seen, 77);
    store_device_fini(&d);
}

/* A callback that submits another write while the store is closing. */
static void on_chain(void *arg, int rc, int64_t value)
{
    chain_t *c = arg;
    assert_int_equal(rc, -ENOENT);
    (void)value;
    c->ran++;
    store_device_t d;
    make_device(&d, "from-callback", NULL);
    store_device_insert(c->st, &d, on_done, &c->followup);
}

static void test_close_runs_late_submissions(void **state)
{
    fix_t *f = *state;
    chain_t c = {.st = f->st};
    store_device_delete(f->st, 12345, on_chain, &c);
    store_close(f->st);
    f->st = NULL;
    assert_int_equal(c.ran, 1);
    assert_int_equal(c.followup.called, 1);
    assert_int_equal(c.followup.rc, 0);
    assert_int_equal(store_open(f->dir, f->base, &f->st), 0);
    store_device_t d;
    assert_int_equal(store_device_get(f->st, "from-callback", &d), 0);
    store_device_fini(&d);
}

/* A failed COMMIT: RLIMIT_FSIZE stops the WAL from growing. SQLite sees
 * EFBIG as an I/O error (-EIO; a real ENOSPC would be SQLITE_FULL, -ENOSPC).
 * Every job of the batch gets the error and none of it is stored; once the
 * limit is lifted, writes work again. */
static void test_commit_fails_whole_batch(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    char wal[128];
    struct stat sb;
    path_of(f, "drover.db-wal", wal, sizeof(wal));
    assert_int_equal(stat(wal, &sb), 0);

    static char big[20000];
    memset(big, 'x', sizeof(big) - 1);
    store_point_t p = {k, "blob", 1, {STORE_VALUE_STRING, 0, big}};
    store_device_t d;
    make_device(&d, "dev-2", NULL);
    rec_t r1 = {0}, r2 = {0}, r3 = {0};

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)sb.st_size + 1000;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    store_device_insert(f->st, &d, on_done, &r1);
    store_telemetry_append(f->st, &p, 1, on_done, &r2);
    store_device_set_presence(f->st, k, true, 5, on_done, &r3);
    wait_done(f, g_done + 3);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_sig);

    assert_int_equal(r1.rc, -EIO);
    assert_int_equal(r1.value, 0);
    assert_int_equal(r2.rc, -EIO);
    assert_int_equal(r3.rc, -EIO);
    store_device_t got;
    assert_int_equal(store_device_get(f->st, "dev-2", &got), -ENOENT);
    assert_int_equal(store_device_get(f->st, "dev-1", &got), 0);
    assert_false(got.online);
    store_device_fini(&got);
    seen_t s;
    assert_int_equal(query(f, k, NULL, 0, INT64_MAX, 0, -1, 10, &s), 0);

    /* The same writes succeed with the limit lifted. */
    store_device_insert(f->st, &d, on_done, &r1);
    store_telemetry_append(f->st, &p, 1, on_done, &r2);
    wait_done(f, g_done + 2);
    assert_int_equal(r1.rc, 0);
    assert_int_equal(r2.rc, 0);
    assert_int_equal(store_device_get(f->st, "dev-2", &got), 0);
    store_device_fini(&got);
    assert_int_equal(query(f, k, NULL, 0, INT64_MAX, 0, -1, 10, &s), 1);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_telemetry_latest(f->st, k, on_latest, &s), 1);
}

/* The store keeps the loop alive only while writes are pending, so code
 * that runs the loop until a write lands (start-up) gets it back. */
static void test_dispatch_returns_when_idle(void **state)
{
    fix_t *f = *state;
    rec_t r = {0};
    store_device_t d;
    make_device(&d, "dev-1", NULL);
    store_device_insert(f->st, &d, on_done, &r);
    assert_int_equal(store_pending(f->st), 1);
    assert_int_equal(event_base_dispatch(f->base), 1); /* 1: no events left */
    assert_int_equal(r.called, 1);
    assert_int_equal(r.rc, 0);
    assert_int_equal(store_pending(f->st), 0);
    assert_int_equal(event_base_dispatch(f->base), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrations_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_version_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_bad_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_in_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence_collapse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_telemetry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_stop_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latest_in_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_job_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreach_and_nested_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_fails_whole_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispatch_returns_when_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_runs_late_submissions, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

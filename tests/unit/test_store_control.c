/*
 * The store's control plane (device twins, commands, bulk jobs) and the
 * per-device telemetry seq, against a real SQLite file in a temporary
 * directory and a real event_base, as in test_store.c: writes are
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

static int setup(void **state)
{
    return store_fix_setup(state, "/tmp/drover-storectl-XXXXXX", 20);
}

static int teardown(void **state)
{
    return store_fix_teardown(state);
}

static void make_command(store_command_t *c, const char *id, int64_t key, int64_t created_at,
                         const char *status, const char *job)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", id);
    c->device_key = key;
    snprintf(c->name, sizeof(c->name), "reboot");
    c->params = (char *)"{\"delay\":5}";
    snprintf(c->status, sizeof(c->status), "%s", status);
    c->created_at = created_at;
    c->expires_at = created_at + 60000;
    snprintf(c->job, sizeof(c->job), "%s", job ? job : "");
}

static int insert_commands(fix_t *f, const store_command_t *cmds, size_t n)
{
    rec_t r = {0};
    RUN(f, store_command_insert(f->st, cmds, n, on_done, &r));
    assert_int_equal(r.called, 1);
    return r.rc;
}

/* ---- Telemetry seq ------------------------------------------------------ */

/* last_seq as get, list and foreach each read it (one device stored). */
static int64_t last_seq_of(fix_t *f, const char *id)
{
    return device_i64_of(f, id, offsetof(store_device_t, last_seq));
}

static int64_t last_seq_of_one(fix_t *f, const char *id)
{
    store_device_t d;
    assert_int_equal(store_device_get(f->st, id, &d), 0);
    int64_t v = d.last_seq;
    store_device_fini(&d);
    return v;
}

static void test_last_seq(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    assert_int_equal(last_seq_of(f, "dev-1"), -1);

    rec_t r = {0};
    RUN(f, store_device_set_last_seq(f->st, k, 5, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(last_seq_of(f, "dev-1"), 5);
    RUN(f, store_device_set_last_seq(f->st, k, 3, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(last_seq_of(f, "dev-1"), 5); /* never lowered */
    RUN(f, store_device_set_last_seq(f->st, k, 0, on_done, &r));
    assert_int_equal(last_seq_of(f, "dev-1"), 5);

    /* In one batch the largest wins, whatever the order; every update
     * completes with the one written. */
    rec_t dummy = {0}, a = {0}, b = {0}, c = {0};
    sqlite3 *db = hold_writer(f, &dummy);
    store_device_set_last_seq(f->st, k, 7, on_done, &a);
    store_device_set_last_seq(f->st, k, 20, on_done, &b);
    store_device_set_last_seq(f->st, k, 12, on_done, &c);
    release_writer(db);
    wait_done(f, g_done + 4);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    assert_int_equal(c.rc, 0);
    assert_true(a.order < b.order && b.order < c.order);
    assert_int_equal(last_seq_of(f, "dev-1"), 20);

    /* A missing device is ignored. */
    RUN(f, store_device_set_last_seq(f->st, k + 100, 9, on_done, &r));
    assert_int_equal(r.rc, 0);

    /* It survives a reopen. */
    reopen(f);
    assert_int_equal(last_seq_of(f, "dev-1"), 20);
}

/* Light jobs (last_seq updates) ride along with up to BATCH_MAX others:
 * many interleaved with telemetry, then more of them alone than a batch
 * holds. Callbacks still run in submission order, and each device ends at
 * its largest seq. */
static int g_next; /* submission index the next callback must carry */

static void on_ordered(void *arg, int rc, int64_t value)
{
    (void)value;
    assert_int_equal(rc, 0);
    assert_int_equal((int)(intptr_t)arg, g_next);
    g_next++;
    g_done++;
}

static void test_last_seq_many(void **state)
{
    fix_t *f = *state;
    enum { NDEVS = 10, NMSG = 6000, NSEQ = 9000 };
    int64_t keys[NDEVS];
    char ids[NDEVS][16];
    for (int i = 0; i < NDEVS; i++) {
        snprintf(ids[i], sizeof(ids[i]), "dev-%d", i);
        keys[i] = insert_device(f, ids[i], NULL);
    }
    rec_t dummy = {0};
    sqlite3 *db = hold_writer(f, &dummy);
    int start = g_done;
    g_next = 0;
    int idx = 0;
    for (int m = 0; m < NMSG; m++) {
        store_point_t p = {keys[m % NDEVS], "temp", m, {STORE_VALUE_NUMBER, m, NULL}};
        store_telemetry_append(f->st, &p, 1, on_ordered, (void *)(intptr_t)idx++);
        store_device_set_last_seq(f->st, keys[m % NDEVS], m, on_ordered, (void *)(intptr_t)idx++);
    }
    /* Then the seqs go down again: none of these lowers anything. */
    for (int m = 0; m < NSEQ; m++)
        store_device_set_last_seq(f->st, keys[m % NDEVS], m % 1000, on_ordered,
                                  (void *)(intptr_t)idx++);
    release_writer(db);
    wait_done(f, start + 1 + idx);
    assert_int_equal(dummy.rc, 0);
    assert_int_equal(g_next, idx);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM telemetry"), NMSG);
    for (int i = 0; i < NDEVS; i++)
        assert_int_equal(last_seq_of_one(f, ids[i]), NMSG - NDEVS + i);
}

/* ---- Twins -------------------------------------------------------------- */

static void test_twin_put_get_replace(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    store_twin_t t;
    assert_int_equal(store_twin_get(f->st, k, &t), -ENOENT);

    char desired[64];
    snprintf(desired, sizeof(desired), "{\"fan\":\"on\"}");
    store_twin_t in = {desired, 3, 1000, (char *)"{\"fan\":\"off\"}", 7, 2000};
    rec_t r = {0};
    RUN(f, store_twin_put(f->st, k, &in, on_done, &r));
    memset(desired, 0, sizeof(desired)); /* the store took a copy */
    assert_int_equal(r.rc, 0);
    assert_int_equal(store_twin_get(f->st, k, &t), 0);
    assert_string_equal(t.desired, "{\"fan\":\"on\"}");
    assert_int_equal(t.desired_version, 3);
    assert_int_equal(t.desired_at, 1000);
    assert_string_equal(t.reported, "{\"fan\":\"off\"}");
    assert_int_equal(t.reported_version, 7);
    assert_int_equal(t.reported_at, 2000);
    store_twin_fini(&t);
    store_twin_fini(&t);

    /* Replace the whole row; NULL documents are stored as {}. */
    store_twin_t in2 = {NULL, 4, 3000, (char *)"{\"fan\":\"on\"}", 8, 4000};
    RUN(f, store_twin_put(f->st, k, &in2, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(store_twin_get(f->st, k, &t), 0);
    assert_string_equal(t.desired, "{}");
    assert_int_equal(t.desired_version, 4);
    assert_int_equal(t.desired_at, 3000);
    assert_string_equal(t.reported, "{\"fan\":\"on\"}");
    assert_int_equal(t.reported_version, 8);
    assert_int_equal(t.reported_at, 4000);
    store_twin_fini(&t);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM twins"), 1);
}

static void test_twin_deleted_device(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    store_twin_t in = {(char *)"{\"a\":1}", 1, 1, (char *)"{}", 0, 0};
    rec_t r = {0};

    /* Never existed. */
    RUN(f, store_twin_put(f->st, k + 1000, &in, on_done, &r));
    assert_int_equal(r.rc, 0);
    store_twin_t t;
    assert_int_equal(store_twin_get(f->st, k + 1000, &t), -ENOENT);

    /* Deleted in the same batch, just before the put. */
    rec_t dummy = {0}, del = {0}, put = {0};
    sqlite3 *db = hold_writer(f, &dummy);
    store_device_delete(f->st, k, on_done, &del);
    store_twin_put(f->st, k, &in, on_done, &put);
    release_writer(db);
    wait_done(f, g_done + 3);
    assert_int_equal(del.rc, 0);
    assert_int_equal(put.rc, 0);
    assert_int_equal(store_twin_get(f->st, k, &t), -ENOENT);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM twins"), 0);
}

/* ---- Commands ----------------------------------------------------------- */

typedef struct cmd_seen {
    int n;
    char id[64][40];
    char status[64][12];
    char device_id[64][DROVER_ID_MAX + 1];
    int64_t created_at[64];
    int stop_at;
} cmd_seen_t;

static int on_cmd(void *arg, const store_command_t *c)
{
    cmd_seen_t *s = arg;
    assert_true(s->n < 64);
    assert_non_null(c->params);
    snprintf(s->id[s->n], sizeof(s->id[0]), "%s", c->id);
    snprintf(s->status[s->n], sizeof(s->status[0]), "%s", c->status);
    snprintf(s->device_id[s->n], sizeof(s->device_id[0]), "%s", c->device_id);
    s->created_at[s->n] = c->created_at;
    s->n++;
    return s->stop_at && s->n == s->stop_at ? 1 : 0;
}

static void test_command_insert_get(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    store_command_t c;
    make_command(&c, "cmd-1", k, 1000, "queued", NULL);
    assert_int_equal(insert_commands(f, &c, 1), 0);

    store_command_t got;
    assert_int_equal(store_command_get(f->st, "cmd-1", &got), 0);
    assert_string_equal(got.id, "cmd-1");
    assert_int_equal(got.device_key, k);
    assert_string_equal(got.device_id, "dev-1");
    assert_string_equal(got.name, "reboot");
    assert_string_equal(got.params, "{\"delay\":5}");
    assert_string_equal(got.status, "queued");
    assert_null(got.result);
    assert_int_equal(got.created_at, 1000);
    assert_int_equal(got.sent_at, 0);
    assert_int_equal(got.finished_at, 0);
    assert_int_equal(got.expires_at, 61000);
    assert_string_equal(got.job, "");
    store_command_fini(&got);
    store_command_fini(&got);
    assert_int_equal(store_command_get(f->st, "nope", &got), -ENOENT);

    /* A result given at insert is kept; NULL params are stored as {}. */
    make_command(&c, "cmd-2", k, 1001, "rejected", NULL);
    c.params = NULL;
    c.result = (char *)"{\"why\":\"busy\"}";
    assert_int_equal(insert_commands(f, &c, 1), 0);
    assert_int_equal(store_command_get(f->st, "cmd-2", &got), 0);
    assert_string_equal(got.params, "{}");
    assert_string_equal(got.result, "{\"why\":\"busy\"}");
    store_command_fini(&got);

    /* A device gone before the insert: skipped, as its delete would have. */
    make_command(&c, "cmd-3", k + 1000, 1002, "queued", NULL);
    assert_int_equal(insert_commands(f, &c, 1), 0);
    assert_int_equal(store_command_get(f->st, "cmd-3", &got), -ENOENT);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM commands"), 2);

    /* Refused before queueing: no id, an id that fills its array. */
    rec_t r = {0};
    make_command(&c, "", k, 1, "queued", NULL);
    RUN(f, store_command_insert(f->st, &c, 1, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    make_command(&c, "x", k, 1, "queued", NULL);
    memset(c.id, 'a', sizeof(c.id));
    RUN(f, store_command_insert(f->st, &c, 1, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    RUN(f, store_command_insert(f->st, NULL, 0, on_done, &r));
    assert_int_equal(r.rc, 0);
}

#define NDEV 100
#define NCMD 10000

typedef struct job_walk {
    int n;
    char last[40];
} job_walk_t;

static int on_job_cmd(void *arg, const store_command_t *c)
{
    job_walk_t *w = arg;
    assert_true(strcmp(c->id, w->last) > 0);
    assert_string_equal(c->job, "job-1");
    assert_true(c->device_id[0] != '\0');
    snprintf(w->last, sizeof(w->last), "%s", c->id);
    w->n++;
    return 0;
}

static void test_command_bulk(void **state)
{
    fix_t *f = *state;
    int64_t keys[NDEV];
    for (int i = 0; i < NDEV; i++) {
        char id[16];
        snprintf(id, sizeof(id), "dev-%03d", i);
        keys[i] = insert_device(f, id, NULL);
    }
    store_command_t *cmds = calloc(NCMD, sizeof(*cmds));
    assert_non_null(cmds);
    for (int i = 0; i < NCMD; i++) {
        char id[40];
        snprintf(id, sizeof(id), "cmd-%05d", i);
        make_command(&cmds[i], id, keys[i % NDEV], 5000, "queued", "job-1");
    }
    int64_t t0 = util_mono_us();
    assert_int_equal(insert_commands(f, cmds, NCMD), 0);
    int64_t us = util_mono_us() - t0;
    print_message("  10000 commands in one job: %lld ms\n", (long long)(us / 1000));
    assert_int_equal(raw_int(f, "SELECT count(*) FROM commands"), NCMD);

    /* Paging a job's commands in id order. */
    job_walk_t w = {0};
    int pages = 0, got;
    do {
        got = store_command_list_job(f->st, "job-1", w.n ? w.last : NULL, 999, on_job_cmd, &w);
        assert_true(got >= 0);
        pages++;
    } while (got == 999);
    assert_int_equal(w.n, NCMD);
    assert_int_equal(pages, NCMD / 999 + 1);
    assert_string_equal(w.last, "cmd-09999");
    job_walk_t none = {0};
    assert_int_equal(store_command_list_job(f->st, "job-2", NULL, 10, on_job_cmd, &none), 0);
    assert_int_equal(store_command_list_job(f->st, "", NULL, 10, on_job_cmd, &none), 0);

    /* One duplicate, at the very end, fails the whole job: none of the
     * 10,000 new rows is kept. Jobs before and after in the same batch
     * are not affected. */
    for (int i = 0; i < NCMD; i++)
        snprintf(cmds[i].id, sizeof(cmds[i].id), "new-%05d", i);
    snprintf(cmds[NCMD - 1].id, sizeof(cmds[0].id), "cmd-00042");
    store_command_t before, after;
    make_command(&before, "before", keys[0], 1, "queued", NULL);
    make_command(&after, "after", keys[0], 2, "queued", NULL);
    rec_t dummy = {0}, r1 = {0}, r2 = {0}, r3 = {0};
    sqlite3 *db = hold_writer(f, &dummy);
    store_command_insert(f->st, &before, 1, on_done, &r1);
    store_command_insert(f->st, cmds, NCMD, on_done, &r2);
    store_command_insert(f->st, &after, 1, on_done, &r3);
    release_writer(db);
    wait_done(f, g_done + 4);
    assert_int_equal(r1.rc, 0);
    assert_int_equal(r2.rc, -EEXIST);
    assert_int_equal(r3.rc, 0);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM commands"), NCMD + 2);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM commands WHERE id LIKE 'new-%'"), 0);

    /* A duplicate inside the array itself fails it too. */
    snprintf(cmds[NCMD - 1].id, sizeof(cmds[0].id), "new-00000");
    assert_int_equal(insert_commands(f, cmds, NCMD), -EEXIST);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM commands"), NCMD + 2);
    free(cmds);
}

static void test_command_update(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    store_command_t c, got;
    make_command(&c, "cmd-1", k, 1000, "queued", NULL);
    assert_int_equal(insert_commands(f, &c, 1), 0);
    rec_t r = {0};

    /* Status alone: nothing else moves. */
    RUN(f, store_command_update(f->st, "cmd-1", "sent", NULL, 0, 0, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(store_command_get(f->st, "cmd-1", &got), 0);
    assert_string_equal(got.status, "sent");
    assert_null(got.result);
    assert_int_equal(got.sent_at, 0);
    assert_int_equal(got.finished_at, 0);
    store_command_fini(&got);

    RUN(f, store_command_update(f->st, "cmd-1", "sent", NULL, 1500, 0, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(store_command_get(f->st, "cmd-1", &got), 0);
    assert_int_equal(got.sent_at, 1500);
    assert_int_equal(got.finished_at, 0);
    store_command_fini(&got);

    RUN(f, store_command_update(f->st, "cmd-1", "succeeded", "{\"out\":42}", 0, 2000, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(store_command_get(f->st, "cmd-1", &got), 0);
    assert_string_equal(got.status, "succeeded");
    assert_string_equal(got.result, "{\"out\":42}");
    assert_int_equal(got.sent_at, 1500); /* 0: kept */
    assert_int_equal(got.finished_at, 2000);
    store_command_fini(&got);

    /* NULL result keeps the stored one. */
    RUN(f, store_command_update(f->st, "cmd-1", "expired", NULL, 0, 0, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(store_command_get(f->st, "cmd-1", &got), 0);
    assert_string_equal(got.status, "expired");
    assert_string_equal(got.result, "{\"out\":42}");
    assert_int_equal(got.finished_at, 2000);
    store_command_fini(&got);

    RUN(f, store_command_update(f->st, "cmd-x", "sent", NULL, 1, 0, on_done, &r));
    assert_int_equal(r.rc, -ENOENT);
    RUN(f, store_command_update(f->st, "cmd-1", NULL, NULL, 1, 0, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    RUN(f, store_command_update(f->st, "cmd-1", "much-too-long-status", NULL, 1, 0, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    RUN(f, store_command_update(f->st, NULL, "sent", NULL, 1, 0, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
}

static void test_command_list_paging(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    int64_t other = insert_device(f, "dev-2", NULL);
    /* Created out of order, with ties on created_at broken by id. */
    static const struct {
        const char *id;
        int64_t at;
    } rows[] = {{"c", 200}, {"a", 100}, {"e", 300}, {"b", 200}, {"d", 200}, {"f", 50}};
    store_command_t cmds[ARRAY_SIZE(rows) + 1];
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
        make_command(&cmds[i], rows[i].id, k, rows[i].at, "queued", NULL);
    make_command(&cmds[ARRAY_SIZE(rows)], "z", other, 250, "queued", NULL);
    assert_int_equal(insert_commands(f, cmds, ARRAY_SIZE(cmds)), 0);

    static const char *const want[] = {"e", "d", "c", "b", "a", "f"};
    cmd_seen_t s = {0};
    assert_int_equal(store_command_list(f->st, k, 0, NULL, 100, on_cmd, &s), 6);
    for (int i = 0; i < 6; i++) {
        assert_string_equal(s.id[i], want[i]);
        assert_string_equal(s.device_id[i], "dev-1");
    }

    /* Pages of two, each resuming before the last row of the previous. */
    cmd_seen_t all = {0};
    int64_t cur_ts = 0;
    char cur_id[40] = "";
    for (int page = 0; page < 4; page++) {
        cmd_seen_t p = {0};
        int n = store_command_list(f->st, k, cur_ts, page ? cur_id : NULL, 2, on_cmd, &p);
        assert_int_equal(n, page < 3 ? 2 : 0);
        for (int i = 0; i < n; i++)
            snprintf(all.id[all.n++], sizeof(all.id[0]), "%s", p.id[i]);
        if (n) {
            cur_ts = p.created_at[n - 1];
            snprintf(cur_id, sizeof(cur_id), "%s", p.id[n - 1]);
        }
    }
    assert_int_equal(all.n, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(all.id[i], want[i]);

    /* A cursor on a tie: (200, "c") continues with "b". */
    cmd_seen_t t = {0};
    assert_int_equal(store_command_list(f->st, k, 200, "c", 1, on_cmd, &t), 1);
    assert_string_equal(t.id[0], "b");

    /* fn stops early. */
    cmd_seen_t one = {.stop_at = 1};
    assert_int_equal(store_command_list(f->st, k, 0, NULL, 100, on_cmd, &one), 1);
    assert_int_equal(one.n, 1);
    assert_int_equal(store_command_list(f->st, k, 0, NULL, 0, on_cmd, &one), -EINVAL);
}

static int on_open_nested(void *arg, const store_command_t *c)
{
    fix_t *f = arg;
    /* A read from inside a read: another statement, same connection. */
    store_command_t got;
    assert_int_equal(store_command_get(f->st, c->id, &got), 0);
    assert_string_equal(got.id, c->id);
    store_command_fini(&got);
    return 0;
}

static void test_command_foreach_open(void **state)
{
    fix_t *f = *state;
    int64_t k1 = insert_device(f, "dev-1", NULL);
    int64_t k2 = insert_device(f, "dev-2", NULL);
    store_command_t cmds[6];
    make_command(&cmds[0], "q-late", k1, 900, "queued", NULL);
    make_command(&cmds[1], "done", k1, 100, "succeeded", NULL);
    make_command(&cmds[2], "s-early", k2, 200, "sent", NULL);
    make_command(&cmds[3], "q-tie-b", k2, 500, "queued", NULL);
    make_command(&cmds[4], "q-tie-a", k1, 500, "queued", NULL);
    make_command(&cmds[5], "gone", k2, 300, "expired", NULL);
    assert_int_equal(insert_commands(f, cmds, 6), 0);

    cmd_seen_t s = {0};
    assert_int_equal(store_command_foreach_open(f->st, on_cmd, &s), 0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.id[0], "s-early");
    assert_string_equal(s.device_id[0], "dev-2");
    assert_string_equal(s.id[1], "q-tie-a");
    assert_string_equal(s.id[2], "q-tie-b");
    assert_string_equal(s.id[3], "q-late");
    assert_string_equal(s.status[0], "sent");

    /* Finishing one takes it out. */
    rec_t r = {0};
    RUN(f, store_command_update(f->st, "s-early", "failed", "{}", 0, 1000, on_done, &r));
    assert_int_equal(r.rc, 0);
    cmd_seen_t s2 = {.stop_at = 2};
    assert_int_equal(store_command_foreach_open(f->st, on_cmd, &s2), 1); /* fn's value */
    assert_int_equal(s2.n, 2);
    assert_string_equal(s2.id[0], "q-tie-a");
    assert_int_equal(store_command_foreach_open(f->st, on_open_nested, f), 0);
}

/* ---- Bulk jobs ---------------------------------------------------------- */

static void test_job_put_get(void **state)
{
    fix_t *f = *state;
    store_job_t j = {.total = 10, .created_at = 1000};
    snprintf(j.id, sizeof(j.id), "job-1");
    snprintf(j.kind, sizeof(j.kind), "twin");
    snprintf(j.status, sizeof(j.status), "running");
    j.spec = (char *)"{\"desired\":{\"fan\":\"on\"}}";
    rec_t r = {0};
    RUN(f, store_job_put(f->st, &j, on_done, &r));
    assert_int_equal(r.rc, 0);

    store_job_t got;
    assert_int_equal(store_job_get(f->st, "job-1", &got), 0);
    assert_string_equal(got.id, "job-1");
    assert_string_equal(got.kind, "twin");
    assert_string_equal(got.spec, "{\"desired\":{\"fan\":\"on\"}}");
    assert_string_equal(got.status, "running");
    assert_int_equal(got.total, 10);
    assert_int_equal(got.created_at, 1000);
    assert_int_equal(got.finished_at, 0);
    store_job_fini(&got);
    store_job_fini(&got);

    snprintf(j.status, sizeof(j.status), "done");
    j.finished_at = 5000;
    j.spec = NULL;
    RUN(f, store_job_put(f->st, &j, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(store_job_get(f->st, "job-1", &got), 0);
    assert_string_equal(got.status, "done");
    assert_string_equal(got.spec, "{}");
    assert_int_equal(got.finished_at, 5000);
    store_job_fini(&got);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM jobs"), 1);
    assert_int_equal(store_job_get(f->st, "job-2", &got), -ENOENT);

    j.id[0] = '\0';
    RUN(f, store_job_put(f->st, &j, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
}

typedef struct item_walk {
    int n;
    char last[DROVER_ID_MAX + 1];
    int with_detail;
    char status_of_007[12];
} item_walk_t;

static int on_item(void *arg, const store_job_item_t *it)
{
    item_walk_t *w = arg;
    assert_true(strcmp(it->device_id, w->last) > 0);
    assert_true(it->device_key > 0);
    snprintf(w->last, sizeof(w->last), "%s", it->device_id);
    if (it->detail) {
        assert_string_equal(it->detail, "timeout");
        w->with_detail++;
    }
    if (strcmp(it->device_id, "dev-007") == 0)
        snprintf(w->status_of_007, sizeof(w->status_of_007), "%s", it->status);
    w->n++;
    return 0;
}

static int walk_items(fix_t *f, const char *job, int limit, item_walk_t *w)
{
    memset(w, 0, sizeof(*w));
    int pages = 0, got;
    do {
        got = store_job_items_list(f->st, job, w->n ? w->last : NULL, limit, on_item, w);
        assert_true(got >= 0);
        pages++;
    } while (got == limit);
    return pages;
}

static void test_job_items(void **state)
{
    fix_t *f = *state;
    enum { N = 250 };
    store_job_item_t items[N + 1];
    /* Devices created in reverse id order, so key order is not id order. */
    for (int i = N - 1; i >= 0; i--) {
        char id[16];
        snprintf(id, sizeof(id), "dev-%03d", i);
        memset(&items[i], 0, sizeof(items[i]));
        items[i].device_key = insert_device(f, id, NULL);
        snprintf(items[i].status, sizeof(items[i].status), "pending");
        items[i].detail = i % 10 == 0 ? "timeout" : NULL;
    }
    memset(&items[N], 0, sizeof(items[N]));
    items[N].device_key = 999999; /* no such device: skipped */
    snprintf(items[N].status, sizeof(items[N].status), "pending");
    rec_t r = {0};
    RUN(f, store_job_items_put(f->st, "job-1", items, N + 1, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM job_items"), N);

    item_walk_t w;
    assert_int_equal(walk_items(f, "job-1", 100, &w), 3);
    assert_int_equal(w.n, N);
    assert_int_equal(w.with_detail, N / 10);
    assert_string_equal(w.last, "dev-249");
    assert_string_equal(w.status_of_007, "pending");

    /* Replace one item; another job's items stay apart. */
    store_job_item_t upd = items[7];
    snprintf(upd.status, sizeof(upd.status), "applied");
    RUN(f, store_job_items_put(f->st, "job-1", &upd, 1, on_done, &r));
    assert_int_equal(r.rc, 0);
    RUN(f, store_job_items_put(f->st, "job-2", &items[1], 2, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(walk_items(f, "job-1", 1000, &w), 1);
    assert_int_equal(w.n, N);
    assert_string_equal(w.status_of_007, "applied");
    assert_int_equal(walk_items(f, "job-2", 1, &w), 3);
    assert_int_equal(w.n, 2);
    assert_int_equal(walk_items(f, "job-3", 10, &w), 1);
    assert_int_equal(w.n, 0);

    RUN(f, store_job_items_put(f->st, "", items, 1, on_done, &r));
    assert_int_equal(r.rc, -EINVAL);
    RUN(f, store_job_items_put(f->st, "job-1", NULL, 0, on_done, &r));
    assert_int_equal(r.rc, 0);
}

/* ---- Device delete ------------------------------------------------------ */

static void test_delete_cascades(void **state)
{
    fix_t *f = *state;
    int64_t k = insert_device(f, "dev-1", NULL);
    int64_t keep = insert_device(f, "dev-2", NULL);
    store_twin_t tw = {(char *)"{}", 1, 1, (char *)"{}", 1, 1};
    store_command_t cmds[4];
    make_command(&cmds[0], "k-1", k, 1, "queued", NULL);
    make_command(&cmds[1], "k-2", k, 2, "sent", "job-1");
    make_command(&cmds[2], "keep-1", keep, 1, "queued", NULL);
    make_command(&cmds[3], "keep-2", keep, 2, "queued", "job-1");
    store_job_item_t items[2] = {{.device_key = k}, {.device_key = keep}};
    snprintf(items[0].status, sizeof(items[0].status), "pending");
    snprintf(items[1].status, sizeof(items[1].status), "pending");
    rec_t r[6] = {{0}};
    store_twin_put(f->st, k, &tw, on_done, &r[0]);
    store_twin_put(f->st, keep, &tw, on_done, &r[1]);
    store_command_insert(f->st, cmds, 4, on_done, &r[2]);
    store_job_items_put(f->st, "job-1", items, 2, on_done, &r[3]);
    store_device_delete(f->st, k, on_done, &r[4]);
    store_device_delete(f->st, k, on_done, &r[5]);
    wait_done(f, g_done + 6);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r[i].rc, 0);
    assert_int_equal(r[5].rc, -ENOENT);

    store_twin_t t;
    assert_int_equal(store_twin_get(f->st, k, &t), -ENOENT);
    assert_int_equal(store_twin_get(f->st, keep, &t), 0);
    store_twin_fini(&t);
    store_command_t c;
    assert_int_equal(store_command_get(f->st, "k-1", &c), -ENOENT);
    assert_int_equal(store_command_get(f->st, "keep-1", &c), 0);
    store_command_fini(&c);
    cmd_seen_t s = {0};
    assert_int_equal(store_command_list(f->st, k, 0, NULL, 10, on_cmd, &s), 0);
    assert_int_equal(store_command_list_job(f->st, "job-1", NULL, 10, on_cmd, &s), 1);
    assert_string_equal(s.id[0], "keep-2");
    item_walk_t w;
    walk_items(f, "job-1", 10, &w);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.last, "dev-2");
    assert_int_equal(raw_int(f, "SELECT count(*) FROM twins"), 1);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM commands"), 2);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM job_items"), 1);
}

/* ---- Migration ---------------------------------------------------------- */

/* Version 1 as it shipped, with some data. */
static const char V1_SCHEMA[] = STORE_FIX_SCHEMA_V1
    "CREATE TABLE schema_version(version INTEGER NOT NULL);"
    "INSERT INTO schema_version(version) VALUES(1);"
    "PRAGMA journal_mode = WAL;"
    "INSERT INTO devices(id, tags, online, last_seen, created_at)"
    " VALUES('old-1', '{\"site\":\"x\"}', 1, 1234, 1000);"
    "INSERT INTO telemetry(device, metric, ts, kind, num) VALUES(1, 'temp', 5, 0, 21.5);";

static void test_migrate_from_v1(void **state)
{
    fix_t *f = *state;
    store_fix_replace_db(f, V1_SCHEMA);

    assert_int_equal(store_open(f->dir, f->base, &f->st), 0);
    assert_int_equal(raw_int(f, "SELECT version FROM schema_version"),
                     store_sqlite_schema_version());
    assert_true(store_sqlite_schema_version() >= 2);
    store_device_t d;
    assert_int_equal(store_device_get(f->st, "old-1", &d), 0);
    assert_int_equal(d.key, 1);
    assert_int_equal(d.last_seq, -1);
    assert_true(d.online);
    assert_int_equal(d.last_seen, 1234);
    assert_string_equal(d.tags_json, "{\"site\":\"x\"}");
    store_device_fini(&d);

    /* The new tables work on the migrated file, the old data too. */
    rec_t r = {0};
    RUN(f, store_device_set_last_seq(f->st, 1, 3, on_done, &r));
    assert_int_equal(r.rc, 0);
    store_command_t c;
    make_command(&c, "cmd-1", 1, 10, "queued", NULL);
    assert_int_equal(insert_commands(f, &c, 1), 0);
    store_twin_t tw = {(char *)"{\"a\":1}", 1, 1, (char *)"{}", 0, 0};
    RUN(f, store_twin_put(f->st, 1, &tw, on_done, &r));
    assert_int_equal(r.rc, 0);
    RUN(f, store_device_delete(f->st, 1, on_done, &r));
    assert_int_equal(r.rc, 0);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM telemetry"), 0);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM commands"), 0);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM twins"), 0);

    /* Reopening does not migrate again. */
    reopen(f);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM schema_version"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_last_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_seq_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_twin_put_get_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_twin_deleted_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_insert_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_bulk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_list_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_foreach_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v1, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

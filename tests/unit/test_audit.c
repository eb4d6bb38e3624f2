/*
 * The audit log's hash chain against a real store in a temporary
 * directory: entries are written with audit_log, the loop runs until the
 * store has committed them, then the chain is read back and verified;
 * rows are then edited, deleted or added behind the server's back with a
 * second SQLite connection, as an attacker with the database file would.
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
#include <jansson.h>
#include <sqlite3.h>

#include "common/util.h"
#include "security/audit.h"
#include "store/store.h"

typedef struct fix {
    char dir[64];
    struct event_base *base;
    store_t *st;
    audit_t *audit;
} fix_t;

/* Runs the loop until every submitted store job has completed (10 s cap). */
static void wait_idle(fix_t *f)
{
    int64_t deadline = util_mono_us() + 10 * 1000 * 1000;
    while (store_pending(f->st) > 0) {
        assert_true(util_mono_us() < deadline);
        if (event_base_loop(f->base, EVLOOP_ONCE) == 1)
            usleep(1000);
    }
}

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/drover-audit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    assert_non_null(f->base);
    assert_int_equal(store_open(f->dir, f->base, &f->st), 0);
    assert_int_equal(audit_new(f->st, &f->audit), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    store_close(f->st);
    audit_free(f->audit);
    event_base_free(f->base);
    static const char *const files[] = {"drover.db", "drover.db-wal", "drover.db-shm"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Closes and reopens the store and the audit object (a restart). */
static void restart(fix_t *f)
{
    store_close(f->st);
    audit_free(f->audit);
    f->st = NULL;
    f->audit = NULL;
    assert_int_equal(store_open(f->dir, f->base, &f->st), 0);
    assert_int_equal(audit_new(f->st, &f->audit), 0);
}

static sqlite3 *raw_open(const fix_t *f)
{
    char p[128];
    sqlite3 *db = NULL;
    snprintf(p, sizeof(p), "%s/drover.db", f->dir);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void raw_exec(const fix_t *f, const char *sql)
{
    sqlite3 *db = raw_open(f);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, err ? err : "?");
    sqlite3_close(db);
}

/* Every stored entry, in seq order (at most 64). */
typedef struct rows {
    store_audit_t e[64];
    size_t n;
} rows_t;

static int keep_row(void *arg, const store_audit_t *a)
{
    rows_t *r = arg;
    assert_true(r->n < ARRAY_SIZE(r->e));
    r->e[r->n] = *a;
    r->e[r->n].detail = strdup(a->detail);
    assert_non_null(r->e[r->n].detail);
    r->n++;
    return 0;
}

static void read_rows(fix_t *f, rows_t *r)
{
    r->n = 0;
    assert_true(store_audit_list(f->st, 0, 0, 0, NULL, NULL, 64, keep_row, r) >= 0);
}

static void rows_fini(rows_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->e[i].detail);
    r->n = 0;
}

/* Writes n entries "action-<i>" on device "dev-<i>". */
static void log_n(fix_t *f, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char action[32], object[32];
        snprintf(action, sizeof(action), "action-%d", i);
        snprintf(object, sizeof(object), "dev-%d", i);
        json_t *d = json_pack("{s:i,s:s}", "n", i, "why", "test");
        audit_log(f->audit, "token:admin", action, object, "201", "127.0.0.1:5000", d);
        json_decref(d);
    }
    wait_idle(f);
}

/* ---- The hash ----------------------------------------------------------- */

static store_audit_t sample(void)
{
    store_audit_t e;
    memset(&e, 0, sizeof(e));
    e.seq = 1;
    e.ts = 1700000000000;
    snprintf(e.actor, sizeof(e.actor), "system");
    snprintf(e.action, sizeof(e.action), "test");
    snprintf(e.outcome, sizeof(e.outcome), "ok");
    e.detail = (char *)"{}";
    return e;
}

/* The value in audit.h's example, computed independently (Python hashlib
 * over the byte layout the header defines). */
static void test_known_answer(void **state)
{
    (void)state;
    store_audit_t e = sample();
    uint8_t h[CRYPTO_HASH_LEN];
    char hex[2 * CRYPTO_HASH_LEN + 1];
    assert_int_equal(audit_entry_hash(&e, h), 0);
    util_hex_encode(h, sizeof(h), hex);
    assert_string_equal(hex, "bfa9296757a6f7098d306c6521ae9d79eefa962b3cc36ed56df3fe7174b79a24");
}

/* Every field is covered, and moving bytes between adjacent fields
 * changes the hash (the lengths are part of the input). */
static void test_hash_covers_fields(void **state)
{
    (void)state;
    store_audit_t base = sample();
    uint8_t h0[CRYPTO_HASH_LEN], h[CRYPTO_HASH_LEN];
    assert_int_equal(audit_entry_hash(&base, h0), 0);

    for (int field = 0; field < 9; field++) {
        store_audit_t e = sample();
        switch (field) {
        case 0:
            e.seq = 2;
            break;
        case 1:
            e.ts++;
            break;
        case 2:
            snprintf(e.actor, sizeof(e.actor), "systen");
            break;
        case 3:
            snprintf(e.action, sizeof(e.action), "tesT");
            break;
        case 4:
            snprintf(e.object, sizeof(e.object), "x");
            break;
        case 5:
            snprintf(e.outcome, sizeof(e.outcome), "ko");
            break;
        case 6:
            snprintf(e.source, sizeof(e.source), "1.2.3.4:5");
            break;
        case 7:
            e.detail = (char *)"{ }";
            break;
        case 8:
            e.prev_hash[31] = 1;
            break;
        }
        assert_int_equal(audit_entry_hash(&e, h), 0);
        assert_memory_not_equal(h, h0, sizeof(h));
    }

    store_audit_t a = sample(), b = sample();
    snprintf(a.actor, sizeof(a.actor), "ab");
    snprintf(a.action, sizeof(a.action), "c");
    snprintf(b.actor, sizeof(b.actor), "a");
    snprintf(b.action, sizeof(b.action), "bc");
    assert_int_equal(audit_entry_hash(&a, h0), 0);
    assert_int_equal(audit_entry_hash(&b, h), 0);
    assert_memory_not_equal(h, h0, sizeof(h));

    /* A field that fills its array has no terminator: refused. */
    memset(a.outcome, 'x', sizeof(a.outcome));
    assert_int_equal(audit_entry_hash(&a, h), -EINVAL);
}

/* ---- The chain ---------------------------------------------------------- */

static void test_chain(void **state)
{
    fix_t *f = *state;
    int64_t bad = -1;
    assert_int_equal(audit_verify(f->st, &bad), 0); /* empty: intact */
    int64_t before = util_now_ms();
    log_n(f, 1, 5);
    assert_int_equal(audit_verify(f->st, &bad), 0);

    rows_t r;
    read_rows(f, &r);
    assert_int_equal(r.n, 5);
    uint8_t zero[CRYPTO_HASH_LEN] = {0};
    for (size_t i = 0; i < r.n; i++) {
        const store_audit_t *e = &r.e[i];
        assert_int_equal(e->seq, (int64_t)i + 1);
        assert_true(e->ts >= before && e->ts <= util_now_ms());
        assert_string_equal(e->actor, "token:admin");
        assert_string_equal(e->outcome, "201");
        assert_string_equal(e->source, "127.0.0.1:5000");
        char want[64];
        snprintf(want, sizeof(want), "{\"n\":%zu,\"why\":\"test\"}", i + 1);
        assert_string_equal(e->detail, want); /* compact, keys sorted */
        assert_memory_equal(e->prev_hash, i == 0 ? zero : r.e[i - 1].hash, CRYPTO_HASH_LEN);
        uint8_t h[CRYPTO_HASH_LEN];
        assert_int_equal(audit_entry_hash(e, h), 0);
        assert_memory_equal(h, e->hash, CRYPTO_HASH_LEN);
    }
    rows_fini(&r);
}

/* Filters of the store as the API uses them. */
static int count_row(void *arg, const store_audit_t *a)
{
    (void)a;
    (*(int *)arg)++;
    return 0;
}

static void test_filters(void **state)
{
    fix_t *f = *state;
    log_n(f, 1, 4);
    audit_log(f->audit, "anonymous", "DENY GET /api/v1/audit", "", "401", "10.0.0.1:1", NULL);
    wait_idle(f);
    int n = 0;
    assert_true(store_audit_list(f->st, 0, 0, 0, "anonymous", NULL, 100, count_row, &n) >= 0);
    assert_int_equal(n, 1);
    n = 0;
    assert_true(store_audit_list(f->st, 0, 0, 0, NULL, "dev-2", 100, count_row, &n) >= 0);
    assert_int_equal(n, 1);
    n = 0;
    assert_true(store_audit_list(f->st, 2, 0, 0, NULL, NULL, 100, count_row, &n) >= 0);
    assert_int_equal(n, 3);
    rows_t r;
    read_rows(f, &r);
    assert_string_equal(r.e[4].detail, "{}"); /* NULL detail */
    rows_fini(&r);
}

/* Text is stored clean: control characters and invalid UTF-8 become '?',
 * a long field is cut at a character boundary. */
static void test_text_cleaned(void **state)
{
    fix_t *f = *state;
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    memcpy(longname, "token:", 6);
    /* a 2-byte character straddling the 127-byte cut */
    longname[126] = (char)0xC3;
    longname[127] = (char)0xA9;
    longname[sizeof(longname) - 1] = '\0';
    audit_log(f->audit, longname, "POST\n/x\x1b[2J", "caf\xc3\xa9", "\xff\xfe", NULL, NULL);
    wait_idle(f);
    rows_t r;
    read_rows(f, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(strlen(r.e[0].actor), 126);
    assert_string_equal(r.e[0].action, "POST?/x?[2J");
    assert_string_equal(r.e[0].object, "caf\xc3\xa9");
    assert_string_equal(r.e[0].outcome, "??");
    assert_string_equal(r.e[0].source, "");
    rows_fini(&r);
    int64_t bad;
    assert_int_equal(audit_verify(f->st, &bad), 0);
}

/* ---- Tampering ---------------------------------------------------------- */

static void test_edited_row(void **state)
{
    fix_t *f = *state;
    log_n(f, 1, 6);
    int64_t bad = -1;
    assert_int_equal(audit_verify(f->st, &bad), 0);
    raw_exec(f, "UPDATE audit SET outcome = '403' WHERE seq = 4");
    assert_int_equal(audit_verify(f->st, &bad), -EBADMSG);
    assert_int_equal(bad, 4);
    /* Putting it back heals it: the hash covers the content, not the edit. */
    raw_exec(f, "UPDATE audit SET outcome = '201' WHERE seq = 4");
    assert_int_equal(audit_verify(f->st, &bad), 0);
    raw_exec(f, "UPDATE audit SET detail = '{\"n\":2, \"why\":\"test\"}' WHERE seq = 2");
    assert_int_equal(audit_verify(f->st, &bad), -EBADMSG);
    assert_int_equal(bad, 2);
}

/* Recomputing the edited row's hash moves the break to the next row. */
static void test_rehashed_row(void **state)
{
    fix_t *f = *state;
    log_n(f, 1, 4);
    rows_t r;
    read_rows(f, &r);
    store_audit_t e = r.e[1];
    snprintf(e.actor, sizeof(e.actor), "token:someone-else");
    assert_int_equal(audit_entry_hash(&e, e.hash), 0);
    char hex[2 * CRYPTO_HASH_LEN + 1], sql[256];
    util_hex_encode(e.hash, CRYPTO_HASH_LEN, hex);
    snprintf(sql, sizeof(sql),
             "UPDATE audit SET actor = 'token:someone-else', hash = x'%s' WHERE seq = 2", hex);
    rows_fini(&r);
    raw_exec(f, sql);
    int64_t bad = -1;
    assert_int_equal(audit_verify(f->st, &bad), -EBADMSG);
    assert_int_equal(bad, 3);
}

static void test_deleted_row(void **state)
{
    fix_t *f = *state;
    log_n(f, 1, 5);
    raw_exec(f, "DELETE FROM audit WHERE seq = 3");
    int64_t bad = -1;
    assert_int_equal(audit_verify(f->st, &bad), -EBADMSG);
    assert_int_equal(bad, 4);
    raw_exec(f, "DELETE FROM audit WHERE seq = 1");
    assert_int_equal(audit_verify(f->st, &bad), -EBADMSG);
    assert_int_equal(bad, 2);
}

/* ---- Restart and recovery ----------------------------------------------- */

static void test_restart_continues(void **state)
{
    fix_t *f = *state;
    log_n(f, 1, 3);
    restart(f);
    log_n(f, 4, 2);
    int64_t bad = -1;
    assert_int_equal(audit_verify(f->st, &bad), 0);
    rows_t r;
    read_rows(f, &r);
    assert_int_equal(r.n, 5);
    assert_int_equal(r.e[4].seq, 5);
    assert_memory_equal(r.e[3].prev_hash, r.e[2].hash, CRYPTO_HASH_LEN);
    rows_fini(&r);
    assert_int_equal(audit_lost(f->audit), 0);
}

/* Another writer takes the next seq behind our back: our append fails,
 * the next event reloads the tail, records the loss, and the chain stays
 * whole. */
static void test_lost_append_resyncs(void **state)
{
    fix_t *f = *state;
    log_n(f, 1, 2);
    rows_t r;
    read_rows(f, &r);
    store_audit_t e = r.e[1];
    e.seq = 3;
    e.ts = util_now_ms();
    snprintf(e.actor, sizeof(e.actor), "system");
    snprintf(e.action, sizeof(e.action), "intruder");
    e.object[0] = e.outcome[0] = e.source[0] = '\0';
    e.detail = (char *)"{}";
    memcpy(e.prev_hash, r.e[1].hash, CRYPTO_HASH_LEN);
    assert_int_equal(audit_entry_hash(&e, e.hash), 0);
    char prev[2 * CRYPTO_HASH_LEN + 1], hash[2 * CRYPTO_HASH_LEN + 1], sql[512];
    util_hex_encode(e.prev_hash, CRYPTO_HASH_LEN, prev);
    util_hex_encode(e.hash, CRYPTO_HASH_LEN, hash);
    snprintf(sql, sizeof(sql),
             "INSERT INTO audit(seq, ts, actor, action, object, outcome, source, detail, "
             "prev_hash, hash) VALUES (3, %lld, 'system', 'intruder', '', '', '', '{}', x'%s', "
             "x'%s')",
             (long long)e.ts, prev, hash);
    rows_fini(&r);
    raw_exec(f, sql);

    log_n(f, 3, 1); /* seq 3 again: refused by the store */
    assert_int_equal(audit_lost(f->audit), 1);
    log_n(f, 4, 1); /* reloads the tail (3), writes audit.lost (4), then this (5) */
    int64_t bad = -1;
    assert_int_equal(audit_verify(f->st, &bad), 0);
    read_rows(f, &r);
    assert_int_equal(r.n, 5);
    assert_string_equal(r.e[2].action, "intruder");
    assert_string_equal(r.e[3].action, "audit.lost");
    assert_string_equal(r.e[3].actor, "system");
    assert_string_equal(r.e[3].detail, "{\"lost\":1}");
    assert_string_equal(r.e[4].action, "action-4");
    rows_fini(&r);
}

static void test_big_detail(void **state)
{
    fix_t *f = *state;
    char *big = malloc(AUDIT_DETAIL_MAX + 10);
    assert_non_null(big);
    memset(big, 'x', AUDIT_DETAIL_MAX + 9);
    big[AUDIT_DETAIL_MAX + 9] = '\0';
    json_t *d = json_pack("{s:s}", "big", big);
    free(big);
    audit_log(f->audit, "system", "big", "", "ok", "", d);
    json_decref(d);
    wait_idle(f);
    rows_t r;
    read_rows(f, &r);
    assert_string_equal(r.e[0].detail, "{\"error\":\"detail too large\"}");
    rows_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_hash_covers_fields),
        cmocka_unit_test_setup_teardown(test_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_cleaned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rehashed_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_continues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_append_resyncs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_detail, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The fixture the store's unit tests share (test_store.c,
 * test_store_control.c, test_store_security.c): a store on a real SQLite
 * file in a fresh temporary directory and a real event_base, a completion
 * callback that records what each write returned, a loop runner that waits
 * for a number of callbacks, and a second, raw SQLite connection for
 * checking rows and for setting up states the store's API cannot make.
 *
 * Compiled into each of those three tests (tests/unit/CMakeLists.txt).
 * Single-threaded like the tests: the callbacks run on the loop thread
 * inside wait_done(); the globals below are the tests' shared counters.
 */
#ifndef DROVER_TESTS_STORE_FIXTURE_H
#define DROVER_TESTS_STORE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store/store.h"

struct event_base;

/* What one write's callback reported. */
typedef struct rec {
    int called;
    int rc;
    int64_t value;
    int order; /* g_order when it ran: 1 for the first callback of a test */
} rec_t;

typedef struct fix {
    char dir[64];
    struct event_base *base;
    store_t *st;
    int wait_s; /* wait_done's cap */
} fix_t;

extern int g_done;  /* callbacks run so far in this test */
extern int g_order; /* order stamp handed to the next callback */

/* A store_done_fn: arg is a rec_t. */
void on_done(void *arg, int rc, int64_t value);

/* Runs the loop until `target` callbacks have run in total; fails the
 * test after f->wait_s seconds. */
void wait_done(fix_t *f, int target);

/* Runs one write to completion. */
#define RUN(f, call_with_rec)                                                                      \
    do {                                                                                           \
        int before_ = g_done;                                                                      \
        call_with_rec;                                                                             \
        wait_done((f), before_ + 1);                                                               \
    } while (0)

/* cmocka setup and teardown: a store in a new directory made from
 * dir_template ("/tmp/drover-store-XXXXXX"), counters reset; wait_s caps
 * each wait_done(). teardown closes the store and removes the directory. */
int store_fix_setup(void **state, const char *dir_template, int wait_s);
int store_fix_teardown(void **state);

/* f->dir + "/" + name. */
void path_of(const fix_t *f, const char *name, char *out, size_t outlen);

/* Deletes the database and its WAL and shared-memory files. */
void remove_files(const fix_t *f);

/* Closes and opens the store again on the same directory. */
void reopen(fix_t *f);

/* Closes the store, deletes its files and runs sql on a new database in
 * their place; the test then opens the store on it (migrations). */
void store_fix_replace_db(fix_t *f, const char *sql);

/* A second connection to the same file, for setting up odd states. */
sqlite3 *raw_open(const fix_t *f);
void raw_exec(sqlite3 *db, const char *sql);
/* The first column of the first row of sql: on db, or on a connection
 * opened and closed for it. */
int64_t raw_db_int(sqlite3 *db, const char *sql);
int64_t raw_int(const fix_t *f, const char *sql);

/* Holds the write lock so the storage thread blocks in BEGIN on the batch
 * of a dummy job; the caller's next submissions then queue up together.
 * release_writer() commits and closes the connection. */
sqlite3 *hold_writer(fix_t *f, rec_t *dummy);
void release_writer(sqlite3 *db);

/* A device with fixed salt and secret hash, created_at 1700000000000;
 * tags is borrowed (may be NULL). */
void make_device(store_device_t *d, const char *id, const char *tags);

/* Inserts such a device, waits, and returns its key. */
int64_t insert_device(fix_t *f, const char *id, const char *tags);

/* The int64_t member of store_device_t at offset (offsetof(store_device_t,
 * last_seq)) of device id, as store_device_get, store_device_list and
 * store_device_foreach each read it; fails the test unless all three agree.
 * Only for a store holding that one device. */
int64_t device_i64_of(fix_t *f, const char *id, size_t offset);

/* Schema versions 1 and 2 exactly as they shipped (MIGRATIONS[0] and
 * MIGRATIONS[1] in src/store/sqlite.c), for the migration tests: frozen
 * copies on purpose, so a later edit of the migrations cannot silently
 * change what is being upgraded from. */
#define STORE_FIX_SCHEMA_V1                                                                        \
    "CREATE TABLE devices("                                                                        \
    " key INTEGER PRIMARY KEY AUTOINCREMENT,"                                                      \
    " id TEXT NOT NULL UNIQUE,"                                                                    \
    " tags TEXT NOT NULL DEFAULT '{}'"                                                             \
    "  CHECK (json_valid(tags) AND json_type(tags) = 'object'),"                                   \
    " salt BLOB,"                                                                                  \
    " secret_hash BLOB,"                                                                           \
    " online INTEGER NOT NULL DEFAULT 0,"                                                          \
    " last_seen INTEGER,"                                                                          \
    " created_at INTEGER NOT NULL);"                                                               \
    "CREATE TABLE telemetry("                                                                      \
    " seq INTEGER PRIMARY KEY,"                                                                    \
    " device INTEGER NOT NULL,"                                                                    \
    " metric TEXT NOT NULL,"                                                                       \
    " ts INTEGER NOT NULL,"                                                                        \
    " kind INTEGER NOT NULL,"                                                                      \
    " num REAL,"                                                                                   \
    " str TEXT);"                                                                                  \
    "CREATE INDEX telemetry_device_metric_ts ON telemetry(device, metric, ts);"                    \
    "CREATE INDEX telemetry_device_ts ON telemetry(device, ts);"                                   \
    "CREATE TABLE telemetry_latest("                                                               \
    " device INTEGER NOT NULL,"                                                                    \
    " metric TEXT NOT NULL,"                                                                       \
    " ts INTEGER NOT NULL,"                                                                        \
    " kind INTEGER NOT NULL,"                                                                      \
    " num REAL,"                                                                                   \
    " str TEXT,"                                                                                   \
    " PRIMARY KEY (device, metric)) WITHOUT ROWID;"                                                \
    "CREATE TABLE tokens("                                                                         \
    " id TEXT PRIMARY KEY,"                                                                        \
    " name TEXT NOT NULL,"                                                                         \
    " role TEXT NOT NULL,"                                                                         \
    " hash BLOB NOT NULL UNIQUE,"                                                                  \
    " created_at INTEGER NOT NULL,"                                                                \
    " expires_at INTEGER);"

#define STORE_FIX_SCHEMA_V2                                                                        \
    "ALTER TABLE devices ADD COLUMN last_seq INTEGER NOT NULL DEFAULT -1;"                         \
    "CREATE TABLE twins("                                                                          \
    " device INTEGER PRIMARY KEY,"                                                                 \
    " desired TEXT NOT NULL,"                                                                      \
    " desired_version INTEGER NOT NULL,"                                                           \
    " desired_at INTEGER NOT NULL,"                                                                \
    " reported TEXT NOT NULL,"                                                                     \
    " reported_version INTEGER NOT NULL,"                                                          \
    " reported_at INTEGER NOT NULL);"                                                              \
    "CREATE TABLE commands("                                                                       \
    " id TEXT PRIMARY KEY,"                                                                        \
    " device INTEGER NOT NULL,"                                                                    \
    " name TEXT NOT NULL,"                                                                         \
    " params TEXT NOT NULL,"                                                                       \
    " status TEXT NOT NULL,"                                                                       \
    " result TEXT,"                                                                                \
    " created_at INTEGER NOT NULL,"                                                                \
    " sent_at INTEGER NOT NULL DEFAULT 0,"                                                         \
    " finished_at INTEGER NOT NULL DEFAULT 0,"                                                     \
    " expires_at INTEGER NOT NULL,"                                                                \
    " job TEXT NOT NULL DEFAULT '');"                                                              \
    "CREATE INDEX commands_device ON commands(device, created_at, id);"                            \
    "CREATE INDEX commands_job ON commands(job, id) WHERE job != '';"                              \
    "CREATE INDEX commands_open ON commands(created_at, id) WHERE status IN ('queued', 'sent');"   \
    "CREATE TABLE jobs("                                                                           \
    " id TEXT PRIMARY KEY,"                                                                        \
    " kind TEXT NOT NULL,"                                                                         \
    " spec TEXT NOT NULL,"                                                                         \
    " status TEXT NOT NULL,"                                                                       \
    " total INTEGER NOT NULL,"                                                                     \
    " created_at INTEGER NOT NULL,"                                                                \
    " finished_at INTEGER NOT NULL DEFAULT 0);"                                                    \
    "CREATE TABLE job_items("                                                                      \
    " job TEXT NOT NULL,"                                                                          \
    " device INTEGER NOT NULL,"                                                                    \
    " status TEXT NOT NULL,"                                                                       \
    " detail TEXT,"                                                                                \
    " PRIMARY KEY (job, device)) WITHOUT ROWID;"                                                   \
    "CREATE INDEX job_items_device ON job_items(device);"

#endif

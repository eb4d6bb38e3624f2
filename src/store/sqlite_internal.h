/*
 * Private interface between the store's job machinery (store.c) and its
 * SQLite backend (sqlite.c). Nothing outside src/store includes this.
 *
 * A store_conn_t is one SQLite connection plus its cache of prepared
 * statements. The store holds two: the write connection, used only by the
 * storage thread (and by the loop thread before the thread starts and after
 * it has been joined), and the read-only connection, used only by the loop
 * thread. Each connection is therefore single-threaded and opened without
 * SQLite's per-connection mutex.
 */
#ifndef DROVER_STORE_SQLITE_INTERNAL_H
#define DROVER_STORE_SQLITE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct sqlite3;
struct sqlite3_stmt;

/* Every statement either connection prepares; see the SQL table in sqlite.c. */
typedef enum {
    SQL_BEGIN,
    SQL_COMMIT,
    SQL_ROLLBACK,
    SQL_SAVEPOINT,
    SQL_RELEASE,
    SQL_ROLLBACK_TO,
    SQL_DEVICE_INSERT,
    SQL_DEVICE_DELETE,
    SQL_DEVICE_DELETE_TELEMETRY,
    SQL_DEVICE_DELETE_LATEST,
    SQL_DEVICE_SET_SECRET,
    SQL_DEVICE_SET_PRESENCE,
    SQL_DEVICE_EXISTS,
    SQL_TELEMETRY_INSERT,
    SQL_LATEST_UPSERT,
    SQL_TOKEN_INSERT,
    SQL_DEVICE_ALL,
    SQL_DEVICE_BY_ID,
    SQL_DEVICE_LIST,
    SQL_DEVICE_LIST_TAG,
    SQL_LATEST_BY_DEVICE,
    SQL_TELEMETRY_QUERY,
    SQL_TELEMETRY_QUERY_METRIC,
    SQL_TOKEN_BY_HASH,
    SQL_TOKEN_COUNT,
    SQL_COUNT_
} store_sql_t;

typedef struct store_wstate store_wstate_t;

typedef struct store_conn {
    struct sqlite3 *db;
    struct sqlite3_stmt *stmt[SQL_COUNT_];
    struct store_wstate *w; /* writer only: per-batch state, see sqlite.c */
} store_conn_t;

/* Newest schema version this binary knows (the number of migrations). */
int store_sqlite_schema_version(void);

/* Opens <dir>/drover.db for writing: checks the schema version (-EPROTO if
 * the file is newer than this binary, before anything is written), sets
 * WAL + synchronous=FULL and applies the missing migrations, one
 * transaction each. On failure c is left closed. */
int store_sqlite_open_writer(const char *dir, store_conn_t *c);

/* Opens the read-only connection; the writer must be open (the file exists
 * and is in WAL mode). */
int store_sqlite_open_reader(const char *dir, store_conn_t *c);

/* Finalizes the cached statements and closes. Safe on a closed conn. */
void store_sqlite_close(store_conn_t *c);

/* Maps a SQLite result code to a negative errno (0 for OK/ROW/DONE). */
int store_sqlite_errno(int rc);

/* ---- Write side: storage thread only ------------------------------------ */

/* Runs one of SQL_BEGIN, SQL_COMMIT, SQL_ROLLBACK, SQL_SAVEPOINT, SQL_RELEASE,
 * SQL_ROLLBACK_TO. */
int store_sqlite_txn(store_conn_t *c, store_sql_t which);

/* True while a transaction is open (SQLite may roll one back by itself on
 * I/O errors and disk full; the batch then has to fail as a whole). */
bool store_sqlite_in_txn(store_conn_t *c);

/* Batch hooks. telemetry_latest is not written per point: the newest
 * point of each (device, metric) in a batch is kept aside and upserted once
 * by batch_flush, just before COMMIT. job_end tells the backend whether the
 * job that just ran is kept (its points count) or was rolled back;
 * batch_abort, after a failed batch, drops everything learnt in it. */
void store_sqlite_batch_begin(store_conn_t *c);
void store_sqlite_job_end(store_conn_t *c, bool kept);
int store_sqlite_batch_flush(store_conn_t *c);
void store_sqlite_batch_abort(store_conn_t *c);

int store_sqlite_device_insert(store_conn_t *c, const store_device_t *d, int64_t *key);
int store_sqlite_device_delete(store_conn_t *c, int64_t key);
int store_sqlite_device_set_secret(store_conn_t *c, int64_t key, const uint8_t *salt,
                                   const uint8_t *hash);
int store_sqlite_device_set_presence(store_conn_t *c, int64_t key, bool online, int64_t last_seen);
int store_sqlite_telemetry_append(store_conn_t *c, const store_point_t *pts, size_t n);
int store_sqlite_token_insert(store_conn_t *c, const store_token_t *t, const uint8_t *hash);

/* ---- Read side: loop thread only (the reader connection) ---------------- */

int store_sqlite_device_foreach(store_conn_t *c, int (*fn)(void *arg, const store_device_t *d),
                                void *arg);
int store_sqlite_device_get(store_conn_t *c, const char *id, store_device_t *out);
int store_sqlite_device_list(store_conn_t *c, const char *after, const char *tag_key,
                             const char *tag_value, int limit,
                             int (*fn)(void *arg, const store_device_t *d), void *arg);
int store_sqlite_telemetry_latest(store_conn_t *c, int64_t device_key,
                                  int (*fn)(void *arg, const char *metric, int64_t ts,
                                            const store_value_t *v),
                                  void *arg);
int store_sqlite_telemetry_query(store_conn_t *c, int64_t device_key, const char *metric,
                                 int64_t since, int64_t until, int64_t after_ts, int64_t after_seq,
                                 int limit,
                                 int (*fn)(void *arg, const char *metric, int64_t ts, int64_t seq,
                                           const store_value_t *v),
                                 void *arg);
int store_sqlite_token_find(store_conn_t *c, const uint8_t *hash, store_token_t *out);
int store_sqlite_token_count(store_conn_t *c, int64_t *out);

#endif

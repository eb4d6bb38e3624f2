/*
 * Private interface between the store's job machinery (store.c) and its
 * SQLite backend (sqlite.c, sqlite_control.c for twins, commands and
 * bulk jobs, sqlite_security.c for users, certificates, enrollments and
 * the audit log). Nothing outside src/store includes this.
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
    SQL_DEVICE_SET_LAST_SEQ,
    /* The security section's statements (schema v3); their text is in
     * sqlite_security.c. They sit before the control plane's so that
     * store_sqlite_control_sql keeps its size. */
    SQL_SECURITY_FIRST_,
    SQL_DEVICE_DELETE_CERTS = SQL_SECURITY_FIRST_,
    SQL_DEVICE_REVOKE,
    SQL_TOKEN_DELETE,
    SQL_TOKEN_GET,
    SQL_TOKEN_LIST,
    SQL_USER_INSERT,
    SQL_USER_UPDATE,
    SQL_USER_DELETE,
    SQL_USER_GET,
    SQL_USER_LIST,
    SQL_CERT_INSERT,
    SQL_CERT_REVOKE,
    SQL_CERT_REVOKE_DEVICE,
    SQL_CERT_EXISTS,
    SQL_CERT_GET,
    SQL_CERT_LIST,
    SQL_CERT_REVOKED,
    SQL_ENROLL_INSERT,
    SQL_ENROLL_STATE,
    SQL_ENROLL_USE,
    SQL_ENROLL_REVOKE,
    SQL_ENROLL_EXISTS,
    SQL_ENROLL_GET,
    SQL_ENROLL_FIND,
    SQL_ENROLL_LIST,
    SQL_AUDIT_APPEND,
    SQL_AUDIT_LAST,
    SQL_AUDIT_LIST,
    SQL_AUDIT_LIST_TS,
    SQL_AUDIT_LIST_ACTOR,
    SQL_AUDIT_LIST_OBJECT,
    /* The control plane's statements; their text is in sqlite_control.c. */
    SQL_CONTROL_FIRST_,
    SQL_DEVICE_DELETE_TWIN = SQL_CONTROL_FIRST_,
    SQL_DEVICE_DELETE_COMMANDS,
    SQL_DEVICE_DELETE_JOB_ITEMS,
    SQL_TWIN_PUT,
    SQL_TWIN_GET,
    SQL_COMMAND_INSERT,
    SQL_COMMAND_UPDATE,
    SQL_COMMAND_GET,
    SQL_COMMAND_LIST,
    SQL_COMMAND_LIST_BEFORE,
    SQL_COMMAND_OPEN,
    SQL_COMMAND_LIST_JOB,
    SQL_JOB_PUT,
    SQL_JOB_GET,
    SQL_JOB_ITEM_PUT,
    SQL_JOB_ITEMS_LIST,
    SQL_COUNT_
} store_sql_t;

/* Text of SQL_CONTROL_FIRST_ .. SQL_COUNT_ - 1, in enum order. */
extern const char *const store_sqlite_control_sql[SQL_COUNT_ - SQL_CONTROL_FIRST_];
/* Text of SQL_SECURITY_FIRST_ .. SQL_CONTROL_FIRST_ - 1, in enum order. */
extern const char *const store_sqlite_security_sql[SQL_CONTROL_FIRST_ - SQL_SECURITY_FIRST_];

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

/* Statement helpers shared by sqlite.c and sqlite_control.c.
 * stmt_get hands out the cached statement for id, or a temporary one (*tmp
 * set) if the cached one is mid-iteration further up the stack (a read
 * callback that reads again); stmt_put resets or finalizes it. prep is
 * stmt_get for the writer, whose statements never nest. stmt_run steps a
 * statement that returns no rows and resets it. copy_text copies a text
 * column into a fixed array, truncating. */
int store_sqlite_stmt_get(store_conn_t *c, store_sql_t id, struct sqlite3_stmt **out, bool *tmp);
void store_sqlite_stmt_put(struct sqlite3_stmt *s, bool tmp);
int store_sqlite_prep(store_conn_t *c, store_sql_t id, struct sqlite3_stmt **out);
int store_sqlite_stmt_run(struct sqlite3_stmt *s);
void store_sqlite_copy_text(struct sqlite3_stmt *s, int col, char *out, size_t outlen);

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
int store_sqlite_device_set_last_seq(store_conn_t *c, int64_t key, int64_t seq);

/* Control plane (sqlite_control.c). Rows for a device that no longer
 * exists are skipped (rc 0), as its delete would have removed them. */
int store_sqlite_twin_put(store_conn_t *c, int64_t key, const store_twin_t *t);
int store_sqlite_command_insert(store_conn_t *c, const store_command_t *cmds, size_t n);
int store_sqlite_command_update(store_conn_t *c, const char *id, const char *status,
                                const char *result, int64_t sent_at, int64_t finished_at);
int store_sqlite_job_put(store_conn_t *c, const store_job_t *j);
int store_sqlite_job_items_put(store_conn_t *c, const char *job, const store_job_item_t *items,
                               size_t n);

/* Security section (sqlite_security.c). insert_many inserts n devices
 * through store_sqlite_device_insert and sets *first to the first key; the
 * caller's savepoint makes it all or nothing. claim runs the checks, the
 * device insert and the use count of store_enrollment_claim; it writes
 * nothing before every check has passed. */
int store_sqlite_device_revoke(store_conn_t *c, int64_t key, int64_t revoked_at);
int store_sqlite_device_insert_many(store_conn_t *c, const store_device_t *devs, size_t n,
                                    int64_t *first);
int store_sqlite_token_delete(store_conn_t *c, const char *id);
int store_sqlite_user_insert(store_conn_t *c, const store_user_t *u);
int store_sqlite_user_update(store_conn_t *c, const store_user_t *u);
int store_sqlite_user_delete(store_conn_t *c, const char *name);
int store_sqlite_cert_insert(store_conn_t *c, const store_cert_t *cert);
int store_sqlite_cert_revoke(store_conn_t *c, const char *serial, int64_t device_key,
                             int64_t revoked_at);
int store_sqlite_enrollment_insert(store_conn_t *c, const store_enrollment_t *e,
                                   const uint8_t *token_hash);
int store_sqlite_enrollment_claim(store_conn_t *c, const char *id, int64_t now,
                                  const store_device_t *d, int64_t *key);
int store_sqlite_enrollment_revoke(store_conn_t *c, const char *id, int64_t revoked_at);
int store_sqlite_audit_append(store_conn_t *c, const store_audit_t *a);

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

int store_sqlite_twin_get(store_conn_t *c, int64_t key, store_twin_t *out);
int store_sqlite_command_get(store_conn_t *c, const char *id, store_command_t *out);
int store_sqlite_command_list(store_conn_t *c, int64_t key, int64_t before_ts,
                              const char *before_id, int limit,
                              int (*fn)(void *arg, const store_command_t *cmd), void *arg);
int store_sqlite_command_foreach_open(store_conn_t *c,
                                      int (*fn)(void *arg, const store_command_t *cmd), void *arg);
int store_sqlite_command_list_job(store_conn_t *c, const char *job, const char *after_id, int limit,
                                  int (*fn)(void *arg, const store_command_t *cmd), void *arg);
int store_sqlite_job_get(store_conn_t *c, const char *id, store_job_t *out);
int store_sqlite_job_items_list(store_conn_t *c, const char *job, const char *after_id, int limit,
                                int (*fn)(void *arg, const store_job_item_t *it), void *arg);

int store_sqlite_token_get(store_conn_t *c, const char *id, store_token_t *out);
int store_sqlite_token_list(store_conn_t *c, int (*fn)(void *arg, const store_token_t *t),
                            void *arg);
int store_sqlite_user_get(store_conn_t *c, const char *name, store_user_t *out);
int store_sqlite_user_list(store_conn_t *c, int (*fn)(void *arg, const store_user_t *u), void *arg);
int store_sqlite_cert_get(store_conn_t *c, const char *serial, store_cert_t *out);
int store_sqlite_cert_list(store_conn_t *c, int64_t device_key,
                           int (*fn)(void *arg, const store_cert_t *cert), void *arg);
int store_sqlite_cert_foreach_revoked(store_conn_t *c, int64_t now,
                                      int (*fn)(void *arg, const store_cert_t *cert), void *arg);
int store_sqlite_enrollment_get(store_conn_t *c, const char *id, store_enrollment_t *out);
int store_sqlite_enrollment_find(store_conn_t *c, const uint8_t *token_hash,
                                 store_enrollment_t *out);
int store_sqlite_enrollment_list(store_conn_t *c, int (*fn)(void *arg, const store_enrollment_t *e),
                                 void *arg);
int store_sqlite_audit_last(store_conn_t *c, store_audit_t *out);
int store_sqlite_audit_list(store_conn_t *c, int64_t after_seq, int64_t since, int64_t until,
                            const char *actor, const char *object, int limit,
                            int (*fn)(void *arg, const store_audit_t *a), void *arg);

#endif

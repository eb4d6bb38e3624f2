/*
 * The store: Drover's durable state behind one interface, so that a
 * PostgreSQL backend can stand beside the SQLite one.
 *
 * Threads. store_open() starts one storage thread that owns the write
 * connection. Writes are submitted from the event-loop thread as jobs; the
 * storage thread takes every job waiting in its queue, runs them in one
 * transaction (group commit), commits, and then hands the finished jobs back
 * to the event loop, where each job's completion callback runs. So the loop
 * never waits for fsync, and a callback that reports success means the data
 * is durable (synchronous=FULL in WAL mode).
 *
 * Reads (store_*_get/list/query) run synchronously on the calling thread over
 * a separate read-only connection. They must only be called from the
 * event-loop thread. In WAL mode readers never wait for the writer, and every
 * read sees all writes whose callbacks have already run.
 *
 * Data layout (SQLite, see migrations in sqlite.c):
 *   devices(key INTEGER PRIMARY KEY, id TEXT UNIQUE, tags TEXT (JSON object),
 *           salt BLOB, secret_hash BLOB, online INT, last_seen INT (ms, NULL =
 *           never), created_at INT)
 *   telemetry(device INT, metric TEXT, ts INT, kind INT, num REAL, str TEXT)
 *           indexed by (device, metric, ts) and (device, ts)
 *   telemetry_latest(device, metric, ts, kind, num, str) PRIMARY KEY(device, metric)
 *   tokens(id TEXT PRIMARY KEY, name TEXT, role TEXT, hash BLOB UNIQUE,
 *          created_at INT, expires_at INT or NULL)
 *   schema_version(version INT)
 *
 * Errors: negative errno codes. -EEXIST duplicate, -ENOENT unknown row,
 * -ENOSPC disk full, -EIO any other database failure, -ENOMEM.
 */
#ifndef DROVER_STORE_STORE_H
#define DROVER_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/crypto.h"
#include "common/util.h"

struct event_base;

typedef struct store store_t;

typedef enum {
    STORE_VALUE_NUMBER = 0,
    STORE_VALUE_BOOL = 1,
    STORE_VALUE_STRING = 2,
} store_value_kind_t;

/* One telemetry value. For BOOL, num is 0 or 1. str is only for STRING. */
typedef struct store_value {
    store_value_kind_t kind;
    double num;
    const char *str;
} store_value_t;

typedef struct store_device {
    int64_t key; /* stable row key; assigned by the store on insert */
    char id[DROVER_ID_MAX + 1];
    char *tags_json; /* JSON object text; owned by the struct */
    uint8_t salt[CRYPTO_SALT_LEN];
    uint8_t secret_hash[CRYPTO_HASH_LEN];
    bool online;
    int64_t last_seen; /* epoch ms; 0 = never seen */
    int64_t created_at;
    int64_t last_seq;   /* highest telemetry seq stored; -1 = none */
    int64_t revoked_at; /* every credential revoked at (ms); 0 = not revoked */
} store_device_t;

/* Frees what a store_device_t owns (not the struct itself). NULL-safe. */
void store_device_fini(store_device_t *d);

typedef struct store_point {
    int64_t device_key;
    const char *metric;
    int64_t ts;
    store_value_t value;
} store_point_t;

typedef struct store_token {
    char id[40];
    char name[128];
    char role[16];
    int64_t created_at;
    int64_t expires_at; /* 0 = never */
} store_token_t;

/* Runs on the event-loop thread once the job is durable (rc == 0) or has
 * failed (rc < 0). value: the new row key for inserts, else 0. */
typedef void (*store_done_fn)(void *arg, int rc, int64_t value);

/* Opens (creating if needed) the database in dir, runs migrations, starts
 * the storage thread and hooks its completions into base. Returns 0 or a
 * negative errno; on failure *out is untouched. */
int store_open(const char *dir, struct event_base *base, store_t **out);

/* Drains the queue (every submitted job is committed and its callback run),
 * stops the thread and closes the database. NULL-safe. Must be called from
 * the loop thread while the loop is not running callbacks of this store. */
void store_close(store_t *st);

/* Number of jobs submitted but not yet completed (for /metrics and limits). */
size_t store_pending(const store_t *st);

/* ---- Writes (asynchronous; done may be NULL) ---------------------------- */

/* Inserts a device; d is copied. done's value is the new key.
 * -EEXIST if the id is taken. */
void store_device_insert(store_t *st, const store_device_t *d, store_done_fn done, void *arg);

/* Deletes a device with its telemetry. -ENOENT if absent. */
void store_device_delete(store_t *st, int64_t key, store_done_fn done, void *arg);

/* Replaces the credential of a device. -ENOENT if absent. */
void store_device_set_secret(store_t *st, int64_t key, const uint8_t salt[CRYPTO_SALT_LEN],
                             const uint8_t hash[CRYPTO_HASH_LEN], store_done_fn done, void *arg);

/* Records presence; several updates for one device inside one batch
 * collapse into the last. A missing device is ignored (rc 0). */
void store_device_set_presence(store_t *st, int64_t key, bool online, int64_t last_seen,
                               store_done_fn done, void *arg);

/* Appends n points (copied, strings too) and updates telemetry_latest for
 * points newer than what it holds. Points for a deleted device are dropped
 * silently (rc 0). */
void store_telemetry_append(store_t *st, const store_point_t *pts, size_t n, store_done_fn done,
                            void *arg);

/* Inserts an API token; t is copied. -EEXIST if id or hash is taken. */
void store_token_insert(store_t *st, const store_token_t *t, const uint8_t hash[CRYPTO_HASH_LEN],
                        store_done_fn done, void *arg);

/* ---- Reads (synchronous, loop thread only) ------------------------------ */

/* Calls fn for every device, in key order (used to warm caches at start).
 * Stops early and returns fn's value if it returns non-zero. */
int store_device_foreach(store_t *st, int (*fn)(void *arg, const store_device_t *d), void *arg);

/* Looks a device up by id. On success fills *out (caller calls
 * store_device_fini). -ENOENT if absent. */
int store_device_get(store_t *st, const char *id, store_device_t *out);

/* Devices with id > after (after may be NULL or ""), in id order, at most
 * limit. If tag_key is non-NULL only devices whose tags[tag_key] equals
 * tag_value (compared as text; JSON strings compare by their content).
 * fn returns non-zero to stop early. Returns the number visited or < 0. */
int store_device_list(store_t *st, const char *after, const char *tag_key, const char *tag_value,
                      int limit, int (*fn)(void *arg, const store_device_t *d), void *arg);

/* Latest value of every metric of a device, metric name order. */
int store_telemetry_latest(store_t *st, int64_t device_key,
                           int (*fn)(void *arg, const char *metric, int64_t ts,
                                     const store_value_t *v),
                           void *arg);

/* A page of points of one device, ordered by (ts, seq), where seq is a
 * store-assigned tie breaker. metric NULL = all metrics. Only points with
 * since <= ts < until, and (ts, seq) > (after_ts, after_seq) when
 * after_seq >= 0. fn gets each point's seq so the caller can make a cursor.
 * Returns the number of points visited or < 0. */
int store_telemetry_query(store_t *st, int64_t device_key, const char *metric, int64_t since,
                          int64_t until, int64_t after_ts, int64_t after_seq, int limit,
                          int (*fn)(void *arg, const char *metric, int64_t ts, int64_t seq,
                                    const store_value_t *v),
                          void *arg);

/* Looks a token up by the hash of its secret. -ENOENT if absent. */
int store_token_find(store_t *st, const uint8_t hash[CRYPTO_HASH_LEN], store_token_t *out);

/* Number of tokens (0 on a fresh database: the server then makes one). */
int store_token_count(store_t *st, int64_t *out);

/* ---- Telemetry sequence numbers ----------------------------------------- */

/* devices.last_seq (INTEGER NOT NULL DEFAULT -1) is the highest telemetry
 * "seq" stored for a device; store_device_t.last_seq carries it on reads.
 * Raises it to seq (never lowers it) in the same batch as the points that
 * go with it, so after a crash points and last_seq agree. */
void store_device_set_last_seq(store_t *st, int64_t key, int64_t seq, store_done_fn done,
                               void *arg);

/* ---- Device twin -------------------------------------------------------- */
/*
 *   twins(device INTEGER PRIMARY KEY, desired TEXT NOT NULL, desired_version
 *         INTEGER NOT NULL, desired_at INTEGER NOT NULL, reported TEXT NOT
 *         NULL, reported_version INTEGER NOT NULL, reported_at INTEGER NOT
 *         NULL); deleted with its device.
 */
typedef struct store_twin {
    char *desired; /* JSON object text; owned */
    int64_t desired_version;
    int64_t desired_at; /* epoch ms; 0 = never set */
    char *reported;     /* JSON object text; owned */
    int64_t reported_version;
    int64_t reported_at;
} store_twin_t;

void store_twin_fini(store_twin_t *t);

/* Writes the whole twin row of a device (insert or replace); t is copied.
 * A device that no longer exists: rc 0, nothing written. */
void store_twin_put(store_t *st, int64_t device_key, const store_twin_t *t, store_done_fn done,
                    void *arg);

/* Reads a device's twin. -ENOENT if none was ever written. */
int store_twin_get(store_t *st, int64_t device_key, store_twin_t *out);

/* ---- Commands ----------------------------------------------------------- */
/*
 *   commands(id TEXT PRIMARY KEY, device INTEGER NOT NULL, name TEXT NOT
 *            NULL, params TEXT NOT NULL (JSON), status TEXT NOT NULL, result
 *            TEXT (JSON or NULL), created_at, sent_at, finished_at (0 = not
 *            yet), expires_at INTEGER NOT NULL, job TEXT NOT NULL DEFAULT '')
 *   indexed by (device, created_at, id) and by job; deleted with the device.
 */
typedef struct store_command {
    char id[40];
    int64_t device_key;
    char device_id[DROVER_ID_MAX + 1]; /* filled on reads (join on devices) */
    char name[65];
    char *params;    /* JSON text; owned */
    char status[12]; /* queued, sent, succeeded, failed, rejected, expired */
    char *result;    /* JSON text or NULL; owned */
    int64_t created_at, sent_at, finished_at, expires_at;
    char job[40]; /* "" when not part of a bulk job */
} store_command_t;

void store_command_fini(store_command_t *c);

/* Inserts n commands in one job (all or none: one failure fails them all,
 * e.g. -EEXIST). Copied. */
void store_command_insert(store_t *st, const store_command_t *cmds, size_t n, store_done_fn done,
                          void *arg);

/* Sets status, and result (JSON text, may be NULL = unchanged) and the
 * timestamps that are non-zero. -ENOENT if the command is gone. */
void store_command_update(store_t *st, const char *id, const char *status, const char *result,
                          int64_t sent_at, int64_t finished_at, store_done_fn done, void *arg);

int store_command_get(store_t *st, const char *id, store_command_t *out);

/* A device's commands, newest first: (created_at, id) < (before_ts,
 * before_id) when before_id is non-NULL. fn gets borrowed rows. */
int store_command_list(store_t *st, int64_t device_key, int64_t before_ts, const char *before_id,
                       int limit, int (*fn)(void *arg, const store_command_t *c), void *arg);

/* Every command whose status is queued or sent, oldest first (start-up). */
int store_command_foreach_open(store_t *st, int (*fn)(void *arg, const store_command_t *c),
                               void *arg);

/* Commands of a bulk job in id order after after_id (NULL = from the start). */
int store_command_list_job(store_t *st, const char *job, const char *after_id, int limit,
                           int (*fn)(void *arg, const store_command_t *c), void *arg);

/* ---- Bulk jobs ---------------------------------------------------------- */
/*
 *   jobs(id TEXT PRIMARY KEY, kind TEXT NOT NULL, spec TEXT NOT NULL (JSON),
 *        status TEXT NOT NULL, total INTEGER NOT NULL, created_at INTEGER NOT
 *        NULL, finished_at INTEGER NOT NULL DEFAULT 0)
 *   job_items(job TEXT NOT NULL, device INTEGER NOT NULL, status TEXT NOT
 *        NULL, detail TEXT, PRIMARY KEY (job, device)) -- for twin jobs;
 *        command jobs track their devices through commands.job.
 */
typedef struct store_job {
    char id[40];
    char kind[16];   /* "command" or "twin" */
    char *spec;      /* JSON text; owned */
    char status[12]; /* running, done, failed */
    int64_t total;
    int64_t created_at, finished_at;
} store_job_t;

void store_job_fini(store_job_t *j);

/* Inserts or replaces the job row (copied). */
void store_job_put(store_t *st, const store_job_t *j, store_done_fn done, void *arg);
int store_job_get(store_t *st, const char *id, store_job_t *out);

typedef struct store_job_item {
    int64_t device_key;
    char device_id[DROVER_ID_MAX + 1]; /* filled on reads */
    char status[12];
    const char *detail; /* may be NULL */
} store_job_item_t;

/* Inserts or replaces n items of one job (copied). */
void store_job_items_put(store_t *st, const char *job, const store_job_item_t *items, size_t n,
                         store_done_fn done, void *arg);
/* Items in device id order after after_id (NULL = from the start). */
int store_job_items_list(store_t *st, const char *job, const char *after_id, int limit,
                         int (*fn)(void *arg, const store_job_item_t *it), void *arg);

/* ==== Security (schema v3) ================================================ */

/* ---- Device revocation and bulk import ---------------------------------- */

/* devices.revoked_at INTEGER NOT NULL DEFAULT 0: when every credential of
 * the device was revoked (0 = not revoked); store_device_t.revoked_at
 * carries it on reads. */
void store_device_revoke(store_t *st, int64_t key, int64_t revoked_at, store_done_fn done,
                         void *arg);

/* Inserts n devices in one job, all or none (-EEXIST names nothing: the
 * caller checks ids first; any failure inserts none). Copied. done's value
 * is the key of the first device; the others follow in order (keys are
 * assigned consecutively within the job: first + i). */
void store_device_insert_many(store_t *st, const store_device_t *devs, size_t n, store_done_fn done,
                              void *arg);

/* ---- API tokens (list, revoke) ------------------------------------------- */

/* Every token, newest first (no secret or hash: there is none to show). */
int store_token_list(store_t *st, int (*fn)(void *arg, const store_token_t *t), void *arg);
/* Deletes a token by id. -ENOENT if absent. */
void store_token_delete(store_t *st, const char *id, store_done_fn done, void *arg);
int store_token_get(store_t *st, const char *id, store_token_t *out);

/* ---- Operator users ------------------------------------------------------- */
/*
 *   users(name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT
 *         NULL (an encoded Argon2id or scrypt string), created_at INTEGER
 *         NOT NULL, disabled INTEGER NOT NULL DEFAULT 0)
 */
typedef struct store_user {
    char name[65];
    char role[16];
    char password_hash[256];
    int64_t created_at;
    bool disabled;
} store_user_t;

/* Insert (-EEXIST if the name is taken). */
void store_user_insert(store_t *st, const store_user_t *u, store_done_fn done, void *arg);
/* Replace role, password_hash and disabled of an existing user (-ENOENT). */
void store_user_update(store_t *st, const store_user_t *u, store_done_fn done, void *arg);
void store_user_delete(store_t *st, const char *name, store_done_fn done, void *arg);
int store_user_get(store_t *st, const char *name, store_user_t *out);
int store_user_list(store_t *st, int (*fn)(void *arg, const store_user_t *u), void *arg);

/* ---- Device certificates --------------------------------------------------- */
/*
 *   certificates(serial TEXT PRIMARY KEY (hex), device INTEGER NOT NULL,
 *        not_before INTEGER NOT NULL, not_after INTEGER NOT NULL (epoch ms),
 *        pem TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER
 *        NOT NULL DEFAULT 0); indexed by device; deleted with the device.
 */
typedef struct store_cert {
    char serial[80];
    int64_t device_key;
    char device_id[DROVER_ID_MAX + 1]; /* filled on reads */
    int64_t not_before, not_after, created_at, revoked_at;
    char *pem; /* owned */
} store_cert_t;

void store_cert_fini(store_cert_t *c);
void store_cert_insert(store_t *st, const store_cert_t *c, store_done_fn done, void *arg);
/* Revokes one certificate (by serial) or, with serial NULL, every
 * certificate of device_key. Sets revoked_at where it is 0. */
void store_cert_revoke(store_t *st, const char *serial, int64_t device_key, int64_t revoked_at,
                       store_done_fn done, void *arg);
int store_cert_get(store_t *st, const char *serial, store_cert_t *out);
/* A device's certificates, newest first. */
int store_cert_list(store_t *st, int64_t device_key, int (*fn)(void *arg, const store_cert_t *c),
                    void *arg);
/* Every revoked certificate that has not expired yet (start-up: the
 * revocation set held in memory). */
int store_cert_foreach_revoked(store_t *st, int64_t now,
                               int (*fn)(void *arg, const store_cert_t *c), void *arg);

/* ---- Enrollment groups ------------------------------------------------------ */
/*
 *   enrollments(id TEXT PRIMARY KEY, name TEXT NOT NULL, token_hash BLOB
 *        UNIQUE NOT NULL, max_uses INTEGER NOT NULL, uses INTEGER NOT NULL
 *        DEFAULT 0, expires_at INTEGER NOT NULL (0 = never), revoked_at
 *        INTEGER NOT NULL DEFAULT 0, tags TEXT NOT NULL (JSON object),
 *        grp TEXT NOT NULL DEFAULT '', desired TEXT NOT NULL (JSON object),
 *        created_at INTEGER NOT NULL)
 */
typedef struct store_enrollment {
    char id[40];
    char name[128];
    int64_t max_uses, uses, expires_at, revoked_at, created_at;
    char *tags; /* owned */
    char grp[65];
    char *desired; /* owned */
} store_enrollment_t;

void store_enrollment_fini(store_enrollment_t *e);
void store_enrollment_insert(store_t *st, const store_enrollment_t *e,
                             const uint8_t token_hash[CRYPTO_HASH_LEN], store_done_fn done,
                             void *arg);
/* Uses one claim: in one transaction, checks the enrollment is usable
 * (not revoked, not expired at now, uses < max_uses), increments uses and
 * inserts the device d (copied). rc: 0 (value = the device key), -ENOENT
 * (no such enrollment), -EKEYEXPIRED (expired), -EKEYREVOKED (revoked),
 * -EDQUOT (used up), -EEXIST (device id taken). Nothing changes on error. */
void store_enrollment_claim(store_t *st, const char *enrollment_id, int64_t now,
                            const store_device_t *d, store_done_fn done, void *arg);
void store_enrollment_revoke(store_t *st, const char *id, int64_t revoked_at, store_done_fn done,
                             void *arg);
int store_enrollment_get(store_t *st, const char *id, store_enrollment_t *out);
int store_enrollment_find(store_t *st, const uint8_t token_hash[CRYPTO_HASH_LEN],
                          store_enrollment_t *out);
int store_enrollment_list(store_t *st, int (*fn)(void *arg, const store_enrollment_t *e),
                          void *arg);

/* ---- Audit log ----------------------------------------------------------------- */
/*
 *   audit(seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, actor TEXT NOT NULL,
 *         action TEXT NOT NULL, object TEXT NOT NULL, outcome TEXT NOT NULL,
 *         source TEXT NOT NULL, detail TEXT NOT NULL (JSON), prev_hash BLOB
 *         NOT NULL, hash BLOB NOT NULL); indexes on ts, actor, object.
 * The chain (prev_hash, hash) is computed by the caller (src/security/
 * audit.c); the store only keeps rows in seq order and never changes one.
 */
typedef struct store_audit {
    int64_t seq;
    int64_t ts;
    char actor[128];
    char action[64];
    char object[160];
    char outcome[32];
    char source[64];
    char *detail; /* JSON text; owned on reads */
    uint8_t prev_hash[CRYPTO_HASH_LEN];
    uint8_t hash[CRYPTO_HASH_LEN];
} store_audit_t;

void store_audit_fini(store_audit_t *a);
/* Appends one entry (copied); a seq that is not last+1 is -EINVAL. */
void store_audit_append(store_t *st, const store_audit_t *a, store_done_fn done, void *arg);
/* The newest entry (start-up: where the chain continues). -ENOENT if none. */
int store_audit_last(store_t *st, store_audit_t *out);
/* Entries in seq order with seq > after_seq, filtered (NULL/0 = any):
 * since <= ts < until, actor equal, object equal. Rows are borrowed. */
int store_audit_list(store_t *st, int64_t after_seq, int64_t since, int64_t until,
                     const char *actor, const char *object, int limit,
                     int (*fn)(void *arg, const store_audit_t *a), void *arg);

#endif

/*
 * The SQLite backend of the store: opening the database, its schema and
 * migrations, the prepared statements, and the SQL of the devices,
 * telemetry and tokens; the control plane's SQL (twins, commands, bulk
 * jobs) is in sqlite_control.c, on the same statement cache. It knows
 * nothing of threads or jobs; store.c decides which connection a function
 * runs on (see sqlite_internal.h). The security section's SQL (users,
 * certificates, enrollments, audit) is in sqlite_security.c.
 *
 * File and durability. One file, <dir>/drover.db, in WAL mode with
 * synchronous=FULL: every COMMIT appends to the WAL and fsyncs it, so a
 * committed batch survives power loss, while readers keep reading the last
 * committed snapshot without waiting for the writer.
 *
 * Schema. Versioned by the single row of schema_version. MIGRATIONS[i]
 * takes the database from version i to i+1 and runs in its own
 * transaction together with the version bump, so a crash mid-migration
 * leaves the previous version intact. Migrations are only ever appended,
 * never edited. A file whose version is newer than this binary knows is
 * refused (-EPROTO) before anything is written to it.
 *
 *   devices.key is INTEGER PRIMARY KEY AUTOINCREMENT: keys are cached by
 *   other modules (sessions, the registry), so a deleted device's key must
 *   never be handed to a new device.
 *   telemetry.seq is an explicit INTEGER PRIMARY KEY (the rowid): VACUUM
 *   may renumber an implicit rowid, and seq is part of the query cursors
 *   the API hands out. Both telemetry indexes end, implicitly, in seq, so a
 *   query for one device (and metric) over a time range walks one index
 *   range already in (ts, seq) order.
 *   telemetry_latest is WITHOUT ROWID keyed by (device, metric): the upsert
 *   that keeps it current touches one b-tree.
 *   Version 2 adds devices.last_seq and the control plane's tables; see
 *   sqlite_control.c for their indexes and why.
 *   Version 3 adds devices.revoked_at and the security tables (users,
 *   certificates, enrollments, audit); see sqlite_security.c.
 *
 * There are no declared foreign keys: the store itself deletes a device's
 * telemetry (and twin, commands, job items, certificates) with the
 * device, and checks that a device exists before appending its points
 * (once per device, cached across batches, see "Writer batch state"),
 * which is cheaper than an FK lookup per row.
 *
 * Write path speed. The telemetry rate (tens of thousands of messages a
 * second, each a job) sets the design of the writer: statements prepared
 * once, one transaction per batch, telemetry_latest upserted once per
 * (device, metric) per batch instead of per point, device existence cached,
 * and a long WAL between checkpoints (see the pragmas).
 *
 * Statements are prepared once per connection (SQLITE_PREPARE_PERSISTENT)
 * and kept in store_conn_t. A read callback may call another read; if it
 * needs a statement that is still running, a temporary one is prepared.
 */
#include "store/sqlite_internal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#define DB_FILE "drover.db"
#define BUSY_TIMEOUT_MS 5000

/* Appended to, never edited: MIGRATIONS[i] upgrades version i to i + 1. */
static const char *const MIGRATIONS[] = {
    /* 1: devices, telemetry, latest values, API tokens. */
    "CREATE TABLE devices("
    " key INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL UNIQUE,"
    " tags TEXT NOT NULL DEFAULT '{}'"
    "  CHECK (json_valid(tags) AND json_type(tags) = 'object'),"
    " salt BLOB,"
    " secret_hash BLOB,"
    " online INTEGER NOT NULL DEFAULT 0,"
    " last_seen INTEGER,"
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE telemetry("
    " seq INTEGER PRIMARY KEY,"
    " device INTEGER NOT NULL,"
    " metric TEXT NOT NULL,"
    " ts INTEGER NOT NULL,"
    " kind INTEGER NOT NULL,"
    " num REAL,"
    " str TEXT);"
    "CREATE INDEX telemetry_device_metric_ts ON telemetry(device, metric, ts);"
    "CREATE INDEX telemetry_device_ts ON telemetry(device, ts);"
    "CREATE TABLE telemetry_latest("
    " device INTEGER NOT NULL,"
    " metric TEXT NOT NULL,"
    " ts INTEGER NOT NULL,"
    " kind INTEGER NOT NULL,"
    " num REAL,"
    " str TEXT,"
    " PRIMARY KEY (device, metric)) WITHOUT ROWID;"
    "CREATE TABLE tokens("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " role TEXT NOT NULL,"
    " hash BLOB NOT NULL UNIQUE,"
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER);",
    /* 2: telemetry seq per device, device twins, commands, bulk jobs. */
    "ALTER TABLE devices ADD COLUMN last_seq INTEGER NOT NULL DEFAULT -1;"
    "CREATE TABLE twins("
    " device INTEGER PRIMARY KEY,"
    " desired TEXT NOT NULL,"
    " desired_version INTEGER NOT NULL,"
    " desired_at INTEGER NOT NULL,"
    " reported TEXT NOT NULL,"
    " reported_version INTEGER NOT NULL,"
    " reported_at INTEGER NOT NULL);"
    "CREATE TABLE commands("
    " id TEXT PRIMARY KEY,"
    " device INTEGER NOT NULL,"
    " name TEXT NOT NULL,"
    " params TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " result TEXT,"
    " created_at INTEGER NOT NULL,"
    " sent_at INTEGER NOT NULL DEFAULT 0,"
    " finished_at INTEGER NOT NULL DEFAULT 0,"
    " expires_at INTEGER NOT NULL,"
    " job TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX commands_device ON commands(device, created_at, id);"
    "CREATE INDEX commands_job ON commands(job, id) WHERE job != '';"
    "CREATE INDEX commands_open ON commands(created_at, id) WHERE status IN ('queued', 'sent');"
    "CREATE TABLE jobs("
    " id TEXT PRIMARY KEY,"
    " kind TEXT NOT NULL,"
    " spec TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " total INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " finished_at INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE job_items("
    " job TEXT NOT NULL,"
    " device INTEGER NOT NULL,"
    " status TEXT NOT NULL,"
    " detail TEXT,"
    " PRIMARY KEY (job, device)) WITHOUT ROWID;"
    "CREATE INDEX job_items_device ON job_items(device);",
    /* 3: device revocation, operator users, device certificates, enrollment
     * groups, the audit log. */
    "ALTER TABLE devices ADD COLUMN revoked_at INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE users("
    " name TEXT PRIMARY KEY,"
    " role TEXT NOT NULL,"
    " password_hash TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " disabled INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE certificates("
    " serial TEXT PRIMARY KEY,"
    " device INTEGER NOT NULL,"
    " not_before INTEGER NOT NULL,"
    " not_after INTEGER NOT NULL,"
    " pem TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " revoked_at INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX certificates_device ON certificates(device);"
    "CREATE TABLE enrollments("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " token_hash BLOB UNIQUE NOT NULL,"
    " max_uses INTEGER NOT NULL,"
    " uses INTEGER NOT NULL DEFAULT 0,"
    " expires_at INTEGER NOT NULL,"
    " revoked_at INTEGER NOT NULL DEFAULT 0,"
    " tags TEXT NOT NULL,"
    " grp TEXT NOT NULL DEFAULT '',"
    " desired TEXT NOT NULL,"
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE audit("
    " seq INTEGER PRIMARY KEY,"
    " ts INTEGER NOT NULL,"
    " actor TEXT NOT NULL,"
    " action TEXT NOT NULL,"
    " object TEXT NOT NULL,"
    " outcome TEXT NOT NULL,"
    " source TEXT NOT NULL,"
    " detail TEXT NOT NULL,"
    " prev_hash BLOB NOT NULL,"
    " hash BLOB NOT NULL);"
    "CREATE INDEX audit_ts ON audit(ts);"
    "CREATE INDEX audit_actor ON audit(actor);"
    "CREATE INDEX audit_object ON audit(object);",
};

#define DEVICE_COLS                                                                                \
    "key, id, tags, salt, secret_hash, online, last_seen, created_at, last_seq, revoked_at"

/* The match of a tag: json_each decodes the key, so any key text (quotes,
 * dots, brackets) is bound as a plain value and never parsed as a path.
 * Strings compare by content, numbers by their SQL text, booleans as
 * "true"/"false"; null never matches. */
#define TAG_MATCH                                                                                  \
    "EXISTS (SELECT 1 FROM json_each(devices.tags) AS t WHERE t.key = ?3 AND"                      \
    " (CASE t.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'"                              \
    " ELSE CAST(t.value AS TEXT) END) = ?4)"

/* Query lower bound: ?2/?4 is the (ts, seq) pair every row must exceed,
 * (since, -1) without a cursor. "ts >= ?2" keeps it an index range. */
#define QUERY_COLS "SELECT metric, ts, seq, kind, num, str FROM telemetry WHERE device = ?1"
#define QUERY_RANGE " AND ts >= ?2 AND ts < ?3 AND (ts > ?2 OR seq > ?4) ORDER BY ts, seq LIMIT ?5"

typedef struct latest_slot {
    uint32_t gen;
    uint64_t hash;
    const store_point_t *p;
} latest_slot_t;

struct store_wstate {
    latest_slot_t *slots;
    size_t cap; /* power of two, or 0 */
    uint32_t gen;
    size_t *order; /* live slot indexes, cap / 2 of them at most */
    size_t norder;

    const store_point_t **staged; /* points of the running job */
    size_t nstaged, staged_cap;

    int64_t *known; /* open addressing; 0 = empty (keys start at 1) */
    size_t known_cap, known_used;

    int64_t *deleted;
    size_t ndeleted, deleted_cap;
};

static void wstate_free(store_wstate_t *w);

static const char *const SQL[SQL_CONTROL_FIRST_] = {
    [SQL_BEGIN] = "BEGIN IMMEDIATE",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
    [SQL_SAVEPOINT] = "SAVEPOINT job",
    [SQL_RELEASE] = "RELEASE job",
    [SQL_ROLLBACK_TO] = "ROLLBACK TO job",
    [SQL_DEVICE_INSERT] = "INSERT INTO devices(id, tags, salt, secret_hash, online, last_seen,"
                          " created_at, revoked_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [SQL_DEVICE_DELETE] = "DELETE FROM devices WHERE key = ?1",
    [SQL_DEVICE_DELETE_TELEMETRY] = "DELETE FROM telemetry WHERE device = ?1",
    [SQL_DEVICE_DELETE_LATEST] = "DELETE FROM telemetry_latest WHERE device = ?1",
    [SQL_DEVICE_SET_SECRET] = "UPDATE devices SET salt = ?2, secret_hash = ?3 WHERE key = ?1",
    [SQL_DEVICE_SET_PRESENCE] = "UPDATE devices SET online = ?2, last_seen = ?3 WHERE key = ?1",
    [SQL_DEVICE_EXISTS] = "SELECT 1 FROM devices WHERE key = ?1",
    [SQL_TELEMETRY_INSERT] = "INSERT INTO telemetry(device, metric, ts, kind, num, str)"
                             " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [SQL_LATEST_UPSERT] = "INSERT INTO telemetry_latest(device, metric, ts, kind, num, str)"
                          " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
                          " ON CONFLICT(device, metric) DO UPDATE SET ts = excluded.ts,"
                          " kind = excluded.kind, num = excluded.num, str = excluded.str"
                          " WHERE excluded.ts >= telemetry_latest.ts",
    [SQL_TOKEN_INSERT] = "INSERT INTO tokens(id, name, role, hash, created_at, expires_at)"
                         " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [SQL_DEVICE_ALL] = "SELECT " DEVICE_COLS " FROM devices ORDER BY key",
    [SQL_DEVICE_BY_ID] = "SELECT " DEVICE_COLS " FROM devices WHERE id = ?1",
    [SQL_DEVICE_LIST] = "SELECT " DEVICE_COLS " FROM devices WHERE id > ?1 ORDER BY id LIMIT ?2",
    [SQL_DEVICE_LIST_TAG] =
        "SELECT " DEVICE_COLS " FROM devices WHERE id > ?1 AND " TAG_MATCH " ORDER BY id LIMIT ?2",
    [SQL_LATEST_BY_DEVICE] = "SELECT metric, ts, kind, num, str FROM telemetry_latest"
                             " WHERE device = ?1 ORDER BY metric",
    [SQL_TELEMETRY_QUERY] = QUERY_COLS QUERY_RANGE,
    [SQL_TELEMETRY_QUERY_METRIC] = QUERY_COLS " AND metric = ?6" QUERY_RANGE,
    [SQL_TOKEN_BY_HASH] = "SELECT id, name, role, created_at, expires_at FROM tokens"
                          " WHERE hash = ?1",
    [SQL_TOKEN_COUNT] = "SELECT count(*) FROM tokens",
    /* Only ever raised; an unchanged row is not rewritten. */
    [SQL_DEVICE_SET_LAST_SEQ] = "UPDATE devices SET last_seq = ?2 WHERE key = ?1 AND last_seq < ?2",
};

static const char *sql_text(store_sql_t id)
{
    if (id >= SQL_CONTROL_FIRST_)
        return store_sqlite_control_sql[id - SQL_CONTROL_FIRST_];
    if (id >= SQL_SECURITY_FIRST_)
        return store_sqlite_security_sql[id - SQL_SECURITY_FIRST_];
    return SQL[id];
}

int store_sqlite_schema_version(void)
{
    return (int)ARRAY_SIZE(MIGRATIONS);
}

int store_sqlite_errno(int rc)
{
    switch (rc) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return -EEXIST;
    case SQLITE_CONSTRAINT_CHECK:
    case SQLITE_CONSTRAINT_NOTNULL:
        return -EINVAL;
    default:
        break;
    }
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOMEM:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* ---- Connections and statements ----------------------------------------- */

static int db_path(const char *dir, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/%s", dir, DB_FILE);
    if (n < 0 || (size_t)n >= outlen)
        return -ENAMETOOLONG;
    return 0;
}

static int conn_open(const char *dir, int flags, store_conn_t *c)
{
    char path[PATH_MAX];
    int rc = db_path(dir, path, sizeof(path));
    if (rc < 0)
        return rc;
    memset(c, 0, sizeof(*c));
    /* NOMUTEX: each connection is used by one thread at a time. */
    rc = sqlite3_open_v2(path, &c->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        /* A missing or unreadable directory is worth telling apart. */
        int sys = c->db ? sqlite3_system_errno(c->db) : 0;
        if ((rc & 0xff) == SQLITE_CANTOPEN && sys > 0)
            rc = -sys;
        else
            rc = c->db ? store_sqlite_errno(sqlite3_extended_errcode(c->db)) : -ENOMEM;
        sqlite3_close(c->db);
        c->db = NULL;
        return rc < 0 ? rc : -EIO;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    return 0;
}

void store_sqlite_close(store_conn_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < SQL_COUNT_; i++) {
        sqlite3_finalize(c->stmt[i]);
        c->stmt[i] = NULL;
    }
    /* Closing the last connection checkpoints the WAL into the file. */
    sqlite3_close(c->db);
    c->db = NULL;
    wstate_free(c->w);
    c->w = NULL;
}

/* Hands out the cached statement for id, or a temporary one (*tmp set) if
 * the cached one is mid-iteration in a caller further up the stack. */
static int stmt_get(store_conn_t *c, store_sql_t id, sqlite3_stmt **out, bool *tmp)
{
    assert(id < SQL_COUNT_);
    *tmp = false;
    if (c->stmt[id] && !sqlite3_stmt_busy(c->stmt[id])) {
        *out = c->stmt[id];
        return 0;
    }
    bool cache = c->stmt[id] == NULL;
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v3(c->db, sql_text(id), -1, cache ? SQLITE_PREPARE_PERSISTENT : 0, &s,
                                NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_errno(rc);
    if (cache)
        c->stmt[id] = s;
    else
        *tmp = true;
    *out = s;
    return 0;
}

/* Ends a statement's run: a reset statement holds no read snapshot open,
 * so the next read on this connection sees every commit since. */
static void stmt_put(sqlite3_stmt *s, bool tmp)
{
    if (tmp)
        sqlite3_finalize(s);
    else
        sqlite3_reset(s);
}

/* Runs a statement that returns no rows (or whose rows are ignored). */
static int stmt_run(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    int err = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? 0 : store_sqlite_errno(rc);
    sqlite3_reset(s);
    return err;
}

static int exec(sqlite3 *db, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return store_sqlite_errno(rc == SQLITE_OK ? rc : sqlite3_extended_errcode(db));
}

/* Reads the schema version (0 for a fresh file). */
static int read_version(sqlite3 *db, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    int64_t v = 0;
    int rc = sqlite3_prepare_v2(
        db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
        -1, &s, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        goto fail;
    int64_t have = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    s = NULL;
    if (have) {
        rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_version", -1, &s,
                                NULL);
        if (rc != SQLITE_OK)
            goto fail;
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
            goto fail;
        v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    *out = v;
    return 0;
fail:
    sqlite3_finalize(s);
    rc = store_sqlite_errno(rc);
    return rc < 0 ? rc : -EIO;
}

/* Applies one migration if the file is still below the newest version.
 * The version is re-read inside the write transaction, so two processes
 * opening one file at once cannot both apply a step. *done is set once
 * the file is current. */
static int migrate_step(sqlite3 *db, bool *done)
{
    const int64_t newest = (int64_t)ARRAY_SIZE(MIGRATIONS);
    char bump[96];
    int64_t v;
    int rc = exec(db, "BEGIN IMMEDIATE");
    if (rc < 0)
        return rc;
    rc = exec(db, "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)");
    if (rc < 0)
        goto fail;
    rc = read_version(db, &v);
    if (rc < 0)
        goto fail;
    if (v > newest || v < 0) {
        rc = -EPROTO;
        goto fail;
    }
    if (v == newest) {
        *done = true;
        return exec(db, "COMMIT");
    }
    rc = exec(db, MIGRATIONS[v]);
    if (rc < 0)
        goto fail;
    snprintf(bump, sizeof(bump),
             "DELETE FROM schema_version; INSERT INTO schema_version(version) VALUES(%lld)",
             (long long)(v + 1));
    rc = exec(db, bump);
    if (rc < 0)
        goto fail;
    return exec(db, "COMMIT");
fail:
    exec(db, "ROLLBACK");
    return rc;
}

static pthread_once_t config_once = PTHREAD_ONCE_INIT;

/* Process-wide: SQLite's allocation statistics take a global mutex on every
 * malloc, a measurable cost at this insert rate. Only possible before
 * SQLite initializes; if something else initialized it first, it stays on. */
static void configure_sqlite(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int store_sqlite_open_writer(const char *dir, store_conn_t *c)
{
    int64_t v;
    sqlite3_stmt *s = NULL;
    pthread_once(&config_once, configure_sqlite);
    int rc = conn_open(dir, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, c);
    if (rc < 0)
        return rc;
    c->w = calloc(1, sizeof(*c->w));
    if (!c->w) {
        rc = -ENOMEM;
        goto fail;
    }
    /* Before any pragma: switching to WAL already writes to the file. */
    rc = read_version(c->db, &v);
    if (rc < 0)
        goto fail;
    if (v > store_sqlite_schema_version()) {
        rc = -EPROTO;
        goto fail;
    }
    rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    if (rc != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW ||
        sqlite3_stricmp((const char *)sqlite3_column_text(s, 0), "wal") != 0) {
        rc = -EIO;
        goto fail;
    }
    sqlite3_finalize(s);
    s = NULL;
    /* FULL: the WAL is fsynced at every commit, which is what makes a
     * completion with rc 0 a durability promise. A checkpoint every 8192
     * pages (32 MiB) rather than SQLite's 1000: telemetry rewrites the same
     * index leaves batch after batch, and a longer WAL lets one checkpoint
     * write such a page once for many batches (measured: ~1.5x the
     * throughput). The file is trimmed back to 64 MiB after checkpoints;
     * the 32 MiB cache holds the hot index leaves of a busy fleet. */
    rc = exec(c->db, "PRAGMA synchronous = FULL;"
                     "PRAGMA foreign_keys = OFF;"
                     "PRAGMA temp_store = MEMORY;"
                     "PRAGMA cache_size = -32768;"
                     "PRAGMA wal_autocheckpoint = 8192;"
                     "PRAGMA journal_size_limit = 67108864;");
    if (rc < 0)
        goto fail;
    for (bool done = false; !done;) {
        rc = migrate_step(c->db, &done);
        if (rc < 0)
            goto fail;
    }
    return 0;
fail:
    sqlite3_finalize(s);
    store_sqlite_close(c);
    return rc;
}

int store_sqlite_open_reader(const char *dir, store_conn_t *c)
{
    int rc = conn_open(dir, SQLITE_OPEN_READONLY, c);
    if (rc < 0)
        return rc;
    rc = exec(c->db, "PRAGMA cache_size = -8192");
    if (rc < 0) {
        store_sqlite_close(c);
        return rc;
    }
    return 0;
}

/* ---- Write side --------------------------------------------------------- */

int store_sqlite_txn(store_conn_t *c, store_sql_t which)
{
    assert(which <= SQL_ROLLBACK_TO);
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = stmt_get(c, which, &s, &tmp);
    if (rc < 0)
        return rc;
    rc = stmt_run(s);
    /* A failed COMMIT can leave the transaction open (e.g. SQLITE_BUSY);
     * the caller rolls back. */
    if (tmp)
        sqlite3_finalize(s);
    return rc;
}

bool store_sqlite_in_txn(store_conn_t *c)
{
    return !sqlite3_get_autocommit(c->db);
}

/* Runs a write statement whose parameters the caller bound; used through
 * the bind helpers below. */
static int prep(store_conn_t *c, store_sql_t id, sqlite3_stmt **s)
{
    bool tmp = false;
    int rc = stmt_get(c, id, s, &tmp);
    /* Writes never nest, so a write statement is never busy here. */
    assert(rc < 0 || !tmp);
    return rc;
}

int store_sqlite_stmt_get(store_conn_t *c, store_sql_t id, sqlite3_stmt **out, bool *tmp)
{
    return stmt_get(c, id, out, tmp);
}

void store_sqlite_stmt_put(sqlite3_stmt *s, bool tmp)
{
    stmt_put(s, tmp);
}

int store_sqlite_prep(store_conn_t *c, store_sql_t id, sqlite3_stmt **out)
{
    return prep(c, id, out);
}

int store_sqlite_stmt_run(sqlite3_stmt *s)
{
    return stmt_run(s);
}

static void bind_blob_or_null(sqlite3_stmt *s, int i, const uint8_t *p, size_t n)
{
    if (p)
        sqlite3_bind_blob(s, i, p, (int)n, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

static void bind_point(sqlite3_stmt *s, const store_point_t *p)
{
    sqlite3_bind_int64(s, 1, p->device_key);
    sqlite3_bind_text(s, 2, p->metric, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, p->ts);
    sqlite3_bind_int(s, 4, (int)p->value.kind);
    if (p->value.kind == STORE_VALUE_STRING) {
        sqlite3_bind_null(s, 5);
        sqlite3_bind_text(s, 6, p->value.str ? p->value.str : "", -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_double(s, 5, p->value.num);
        sqlite3_bind_null(s, 6);
    }
}

/* ---- Writer batch state -------------------------------------------------
 *
 * Per-point upserts of telemetry_latest would double the work of a batch, so
 * the writer keeps, per (device, metric), the batch's newest point in an
 * open-addressing table and upserts each once in batch_flush. "Newest" is
 * the last point with the largest ts, which is what applying the points one
 * by one with "replace when ts >= stored ts" would leave. A job's points
 * enter the table only once the job is kept (job_end), so a rolled-back job
 * leaves no trace in it. Entries point into the jobs, which outlive the
 * batch. A slot is live when its gen equals the batch's, so starting a
 * batch is O(1); `order` lists the live slots for the flush.
 *
 * `known` caches device keys seen to exist, across batches: it saves the
 * existence check per message. Any delete, and any failed batch (whose
 * inserts were rolled back), clears it. Keys deleted in this batch are
 * listed in `deleted`, and their pending latest entries are skipped.
 */
#define KNOWN_MAX (1u << 18) /* slots (2 MiB); when full, forget all and refill */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t point_hash(const store_point_t *p)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the metric */
    for (const unsigned char *m = (const unsigned char *)p->metric; *m; m++)
        h = (h ^ *m) * 0x100000001b3ull;
    return mix64(h ^ (uint64_t)p->device_key);
}

static int grow_array(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / elem)
            return -ENOMEM;
        ncap *= 2;
    }
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return -ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static int staged_reserve(store_wstate_t *w, size_t n)
{
    return grow_array((void **)&w->staged, &w->staged_cap, n, sizeof(*w->staged));
}

/* Places p in the table (which has room); keeps the newer of p and what
 * the slot holds. */
static void latest_put(store_wstate_t *w, const store_point_t *p, uint64_t h)
{
    size_t mask = w->cap - 1;
    size_t i = (size_t)h & mask;
    while (w->slots[i].gen == w->gen) {
        const store_point_t *q = w->slots[i].p;
        if (w->slots[i].hash == h && q->device_key == p->device_key &&
            strcmp(q->metric, p->metric) == 0) {
            if (p->ts >= q->ts)
                w->slots[i].p = p;
            return;
        }
        i = (i + 1) & mask;
    }
    w->slots[i] = (latest_slot_t){.gen = w->gen, .hash = h, .p = p};
    w->order[w->norder++] = i;
}

/* Makes room for n more entries at a load factor of at most 1/2. */
static int latest_reserve(store_wstate_t *w, size_t n)
{
    if (n > SIZE_MAX / 4 - w->norder)
        return -ENOMEM;
    size_t need = 2 * (w->norder + n);
    if (need <= w->cap)
        return 0;
    size_t ncap = w->cap ? w->cap : 256;
    while (ncap < need)
        ncap *= 2;
    latest_slot_t *slots = calloc(ncap, sizeof(*slots));
    size_t *order = malloc(ncap / 2 * sizeof(*order));
    if (!slots || !order) {
        free(slots);
        free(order);
        return -ENOMEM;
    }
    latest_slot_t *old = w->slots;
    size_t *old_order = w->order, old_n = w->norder;
    w->slots = slots;
    w->order = order;
    w->cap = ncap;
    w->norder = 0;
    w->gen = 1;
    for (size_t k = 0; k < old_n; k++)
        latest_put(w, old[old_order[k]].p, old[old_order[k]].hash);
    free(old);
    free(old_order);
    return 0;
}

static bool known_has(const store_wstate_t *w, int64_t key)
{
    if (key <= 0 || !w->known_used)
        return false;
    size_t mask = w->known_cap - 1;
    for (size_t i = (size_t)mix64((uint64_t)key) & mask; w->known[i]; i = (i + 1) & mask)
        if (w->known[i] == key)
            return true;
    return false;
}

static void known_clear(store_wstate_t *w)
{
    if (w->known_used)
        memset(w->known, 0, w->known_cap * sizeof(*w->known));
    w->known_used = 0;
}

/* Best effort: without memory the cache simply stays smaller. */
static void known_add(store_wstate_t *w, int64_t key)
{
    if (key <= 0)
        return;
    if (2 * (w->known_used + 1) > w->known_cap) {
        if (w->known_cap >= KNOWN_MAX) {
            known_clear(w);
        } else {
            size_t ncap = w->known_cap ? 2 * w->known_cap : 1024;
            int64_t *nk = calloc(ncap, sizeof(*nk));
            if (!nk)
                return;
            for (size_t i = 0; i < w->known_cap; i++) {
                if (!w->known[i])
                    continue;
                size_t j = (size_t)mix64((uint64_t)w->known[i]) & (ncap - 1);
                while (nk[j])
                    j = (j + 1) & (ncap - 1);
                nk[j] = w->known[i];
            }
            free(w->known);
            w->known = nk;
            w->known_cap = ncap;
        }
    }
    size_t mask = w->known_cap - 1;
    size_t i = (size_t)mix64((uint64_t)key) & mask;
    while (w->known[i] && w->known[i] != key)
        i = (i + 1) & mask;
    if (!w->known[i]) {
        w->known[i] = key;
        w->known_used++;
    }
}

static void wstate_free(store_wstate_t *w)
{
    if (!w)
        return;
    free(w->slots);
    free(w->order);
    free(w->staged);
    free(w->known);
    free(w->deleted);
    free(w);
}

void store_sqlite_batch_begin(store_conn_t *c)
{
    store_wstate_t *w = c->w;
    if (++w->gen == 0) { /* wrapped: old gens could alias */
        if (w->slots)
            memset(w->slots, 0, w->cap * sizeof(*w->slots));
        w->gen = 1;
    }
    w->norder = 0;
    w->nstaged = 0;
    w->ndeleted = 0;
}

void store_sqlite_job_end(store_conn_t *c, bool kept)
{
    store_wstate_t *w = c->w;
    if (kept)
        for (size_t i = 0; i < w->nstaged; i++) /* room reserved by the append */
            latest_put(w, w->staged[i], point_hash(w->staged[i]));
    w->nstaged = 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int store_sqlite_batch_flush(store_conn_t *c)
{
    store_wstate_t *w = c->w;
    sqlite3_stmt *up = NULL;
    if (!w->norder)
        return 0;
    int rc = prep(c, SQL_LATEST_UPSERT, &up);
    if (rc < 0)
        return rc;
    if (w->ndeleted > 1)
        qsort(w->deleted, w->ndeleted, sizeof(*w->deleted), cmp_i64);
    for (size_t k = 0; k < w->norder; k++) {
        const store_point_t *p = w->slots[w->order[k]].p;
        if (w->ndeleted &&
            bsearch(&p->device_key, w->deleted, w->ndeleted, sizeof(*w->deleted), cmp_i64))
            continue;
        bind_point(up, p);
        if ((rc = stmt_run(up)) < 0)
            return rc;
    }
    return 0;
}

void store_sqlite_batch_abort(store_conn_t *c)
{
    store_wstate_t *w = c->w;
    known_clear(w);
    w->norder = 0;
    w->nstaged = 0;
    w->ndeleted = 0;
    if (++w->gen == 0) {
        if (w->slots)
            memset(w->slots, 0, w->cap * sizeof(*w->slots));
        w->gen = 1;
    }
}

int store_sqlite_device_insert(store_conn_t *c, const store_device_t *d, int64_t *key)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(c, SQL_DEVICE_INSERT, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, d->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, d->tags_json ? d->tags_json : "{}", -1, SQLITE_STATIC);
    bind_blob_or_null(s, 3, d->salt, CRYPTO_SALT_LEN);
    bind_blob_or_null(s, 4, d->secret_hash, CRYPTO_HASH_LEN);
    sqlite3_bind_int(s, 5, d->online ? 1 : 0);
    if (d->last_seen)
        sqlite3_bind_int64(s, 6, d->last_seen);
    else
        sqlite3_bind_null(s, 6);
    sqlite3_bind_int64(s, 7, d->created_at);
    sqlite3_bind_int64(s, 8, d->revoked_at);
    rc = stmt_run(s);
    if (rc < 0)
        return rc;
    *key = sqlite3_last_insert_rowid(c->db);
    return 0;
}

/* Removes the device row first: if it is absent nothing else is touched.
 * Then everything kept per device, and the writer forgets the device: no
 * cached existence, and its pending latest values of this batch are not
 * written. */
int store_sqlite_device_delete(store_conn_t *c, int64_t key)
{
    static const store_sql_t steps[] = {
        SQL_DEVICE_DELETE,       SQL_DEVICE_DELETE_TELEMETRY, SQL_DEVICE_DELETE_LATEST,
        SQL_DEVICE_DELETE_TWIN,  SQL_DEVICE_DELETE_COMMANDS,  SQL_DEVICE_DELETE_JOB_ITEMS,
        SQL_DEVICE_DELETE_CERTS,
    };
    store_wstate_t *w = c->w;
    int rc =
        grow_array((void **)&w->deleted, &w->deleted_cap, w->ndeleted + 1, sizeof(*w->deleted));
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
        sqlite3_stmt *s = NULL;
        if ((rc = prep(c, steps[i], &s)) < 0)
            return rc;
        sqlite3_bind_int64(s, 1, key);
        if ((rc = stmt_run(s)) < 0)
            return rc;
        if (i == 0 && sqlite3_changes(c->db) == 0)
            return -ENOENT;
    }
    known_clear(w);
    w->deleted[w->ndeleted++] = key;
    return 0;
}

int store_sqlite_device_set_secret(store_conn_t *c, int64_t key, const uint8_t *salt,
                                   const uint8_t *hash)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(c, SQL_DEVICE_SET_SECRET, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, key);
    bind_blob_or_null(s, 2, salt, CRYPTO_SALT_LEN);
    bind_blob_or_null(s, 3, hash, CRYPTO_HASH_LEN);
    rc = stmt_run(s);
    if (rc < 0)
        return rc;
    return sqlite3_changes(c->db) ? 0 : -ENOENT;
}

int store_sqlite_device_set_presence(store_conn_t *c, int64_t key, bool online, int64_t last_seen)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(c, SQL_DEVICE_SET_PRESENCE, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, key);
    sqlite3_bind_int(s, 2, online ? 1 : 0);
    if (last_seen)
        sqlite3_bind_int64(s, 3, last_seen);
    else
        sqlite3_bind_null(s, 3);
    return stmt_run(s);
}

int store_sqlite_device_set_last_seq(store_conn_t *c, int64_t key, int64_t seq)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(c, SQL_DEVICE_SET_LAST_SEQ, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, key);
    sqlite3_bind_int64(s, 2, seq);
    return stmt_run(s);
}

int store_sqlite_telemetry_append(store_conn_t *c, const store_point_t *pts, size_t n)
{
    store_wstate_t *w = c->w;
    sqlite3_stmt *exists = NULL, *ins = NULL;
    int rc;
    assert(w && w->nstaged == 0);
    if ((rc = prep(c, SQL_DEVICE_EXISTS, &exists)) < 0 ||
        (rc = prep(c, SQL_TELEMETRY_INSERT, &ins)) < 0)
        return rc;
    /* Room for every point first, so that job_end cannot fail after the
     * rows are in. */
    if ((rc = staged_reserve(w, n)) < 0 || (rc = latest_reserve(w, n)) < 0)
        return rc;
    bool checked = false, present = false;
    int64_t checked_key = 0;
    for (size_t i = 0; i < n; i++) {
        const store_point_t *p = &pts[i];
        /* Drop the points of a device deleted meanwhile. Points come in
         * runs for one device, and a device seen once stays known. */
        if (!checked || p->device_key != checked_key) {
            present = known_has(w, p->device_key);
            if (!present) {
                sqlite3_bind_int64(exists, 1, p->device_key);
                rc = sqlite3_step(exists);
                sqlite3_reset(exists);
                if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                    return store_sqlite_errno(rc);
                present = rc == SQLITE_ROW;
                if (present)
                    known_add(w, p->device_key);
            }
            checked = true;
            checked_key = p->device_key;
        }
        if (!present)
            continue;
        bind_point(ins, p);
        if ((rc = stmt_run(ins)) < 0)
            return rc;
        w->staged[w->nstaged++] = p;
    }
    return 0;
}

int store_sqlite_token_insert(store_conn_t *c, const store_token_t *t, const uint8_t *hash)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(c, SQL_TOKEN_INSERT, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, t->role, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, hash, CRYPTO_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, t->created_at);
    if (t->expires_at)
        sqlite3_bind_int64(s, 6, t->expires_at);
    else
        sqlite3_bind_null(s, 6);
    return stmt_run(s);
}

/* ---- Read side ---------------------------------------------------------- */

static void copy_blob(sqlite3_stmt *s, int col, uint8_t *out, size_t n)
{
    const void *p = sqlite3_column_blob(s, col);
    if (p && (size_t)sqlite3_column_bytes(s, col) == n)
        memcpy(out, p, n);
    else
        memset(out, 0, n);
}

/* Fills d from a row of DEVICE_COLS; d->tags_json is a fresh copy. */
static int row_device(sqlite3_stmt *s, store_device_t *d)
{
    const char *id = (const char *)sqlite3_column_text(s, 1);
    const char *tags = (const char *)sqlite3_column_text(s, 2);
    size_t idlen = (size_t)sqlite3_column_bytes(s, 1);
    if (!id || idlen > DROVER_ID_MAX)
        return -EIO;
    memset(d, 0, sizeof(*d));
    d->tags_json = strdup(tags ? tags : "{}");
    if (!d->tags_json)
        return -ENOMEM;
    d->key = sqlite3_column_int64(s, 0);
    memcpy(d->id, id, idlen);
    d->id[idlen] = '\0';
    copy_blob(s, 3, d->salt, sizeof(d->salt));
    copy_blob(s, 4, d->secret_hash, sizeof(d->secret_hash));
    d->online = sqlite3_column_int(s, 5) != 0;
    d->last_seen = sqlite3_column_int64(s, 6); /* NULL reads as 0: never */
    d->created_at = sqlite3_column_int64(s, 7);
    d->last_seq = sqlite3_column_int64(s, 8);
    d->revoked_at = sqlite3_column_int64(s, 9);
    return 0;
}

/* Steps a device statement, calling fn per row. mode_count: return the
 * number of rows visited (list) rather than fn's value (foreach); either
 * way a negative fn value is returned as is. */
static int each_device(sqlite3_stmt *s, bool mode_count,
                       int (*fn)(void *arg, const store_device_t *d), void *arg)
{
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_device_t d;
        int err = row_device(s, &d);
        if (err < 0)
            return err;
        int r = fn(arg, &d);
        store_device_fini(&d);
        n++;
        if (r < 0 || (r && !mode_count))
            return r;
        if (r)
            return n;
    }
    if (rc != SQLITE_DONE)
        return store_sqlite_errno(rc);
    return mode_count ? n : 0;
}

int store_sqlite_device_foreach(store_conn_t *c, int (*fn)(void *arg, const store_device_t *d),
                                void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = stmt_get(c, SQL_DEVICE_ALL, &s, &tmp);
    if (rc < 0)
        return rc;
    rc = each_device(s, false, fn, arg);
    stmt_put(s, tmp);
    return rc;
}

int store_sqlite_device_get(store_conn_t *c, const char *id, store_device_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    store_device_t d;
    int rc = stmt_get(c, SQL_DEVICE_BY_ID, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rc = row_device(s, &d);
    else
        rc = rc == SQLITE_DONE ? -ENOENT : store_sqlite_errno(rc);
    stmt_put(s, tmp);
    if (rc == 0)
        *out = d;
    return rc;
}

int store_sqlite_device_list(store_conn_t *c, const char *after, const char *tag_key,
                             const char *tag_value, int limit,
                             int (*fn)(void *arg, const store_device_t *d), void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = stmt_get(c, tag_key ? SQL_DEVICE_LIST_TAG : SQL_DEVICE_LIST, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, after ? after : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, limit);
    if (tag_key) {
        sqlite3_bind_text(s, 3, tag_key, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, tag_value ? tag_value : "", -1, SQLITE_STATIC);
    }
    rc = each_device(s, true, fn, arg);
    stmt_put(s, tmp);
    return rc;
}

static void row_value(sqlite3_stmt *s, int kind_col, store_value_t *v)
{
    int kind = sqlite3_column_int(s, kind_col);
    v->kind = kind == STORE_VALUE_BOOL     ? STORE_VALUE_BOOL
              : kind == STORE_VALUE_STRING ? STORE_VALUE_STRING
                                           : STORE_VALUE_NUMBER;
    v->num = sqlite3_column_double(s, kind_col + 1);
    v->str = NULL;
    if (v->kind == STORE_VALUE_STRING) {
        v->str = (const char *)sqlite3_column_text(s, kind_col + 2);
        if (!v->str)
            v->str = "";
    }
}

int store_sqlite_telemetry_latest(store_conn_t *c, int64_t device_key,
                                  int (*fn)(void *arg, const char *metric, int64_t ts,
                                            const store_value_t *v),
                                  void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int n = 0;
    int rc = stmt_get(c, SQL_LATEST_BY_DEVICE, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, device_key);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_value_t v;
        row_value(s, 2, &v);
        int r = fn(arg, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1), &v);
        n++;
        if (r) {
            rc = r < 0 ? r : n;
            goto out;
        }
    }
    rc = rc == SQLITE_DONE ? n : store_sqlite_errno(rc);
out:
    stmt_put(s, tmp);
    return rc;
}

int store_sqlite_telemetry_query(store_conn_t *c, int64_t device_key, const char *metric,
                                 int64_t since, int64_t until, int64_t after_ts, int64_t after_seq,
                                 int limit,
                                 int (*fn)(void *arg, const char *metric, int64_t ts, int64_t seq,
                                           const store_value_t *v),
                                 void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int n = 0;
    /* The lower bound is the larger of (since, -1) and the cursor. */
    int64_t lo_ts = since, lo_seq = -1;
    if (after_seq >= 0 && after_ts >= since) {
        lo_ts = after_ts;
        lo_seq = after_seq;
    }
    int rc = stmt_get(c, metric ? SQL_TELEMETRY_QUERY_METRIC : SQL_TELEMETRY_QUERY, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, device_key);
    sqlite3_bind_int64(s, 2, lo_ts);
    sqlite3_bind_int64(s, 3, until);
    sqlite3_bind_int64(s, 4, lo_seq);
    sqlite3_bind_int(s, 5, limit);
    if (metric)
        sqlite3_bind_text(s, 6, metric, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_value_t v;
        row_value(s, 3, &v);
        int r = fn(arg, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1),
                   sqlite3_column_int64(s, 2), &v);
        n++;
        if (r) {
            rc = r < 0 ? r : n;
            goto out;
        }
    }
    rc = rc == SQLITE_DONE ? n : store_sqlite_errno(rc);
out:
    stmt_put(s, tmp);
    return rc;
}

void store_sqlite_copy_text(sqlite3_stmt *s, int col, char *out, size_t outlen)
{
    const char *p = (const char *)sqlite3_column_text(s, col);
    size_t n = p ? (size_t)sqlite3_column_bytes(s, col) : 0;
    if (n >= outlen)
        n = outlen - 1;
    if (n)
        memcpy(out, p, n);
    out[n] = '\0';
}

int store_sqlite_token_find(store_conn_t *c, const uint8_t *hash, store_token_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    store_token_t t;
    int rc = stmt_get(c, SQL_TOKEN_BY_HASH, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_blob(s, 1, hash, CRYPTO_HASH_LEN, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        store_sqlite_copy_text(s, 0, t.id, sizeof(t.id));
        store_sqlite_copy_text(s, 1, t.name, sizeof(t.name));
        store_sqlite_copy_text(s, 2, t.role, sizeof(t.role));
        t.created_at = sqlite3_column_int64(s, 3);
        t.expires_at = sqlite3_column_int64(s, 4); /* NULL reads as 0: never */
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : store_sqlite_errno(rc);
    }
    stmt_put(s, tmp);
    if (rc == 0)
        *out = t;
    return rc;
}

int store_sqlite_token_count(store_conn_t *c, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = stmt_get(c, SQL_TOKEN_COUNT, &s, &tmp);
    if (rc < 0)
        return rc;
    rc = sqlite3_step(s);
    int64_t n = sqlite3_column_int64(s, 0);
    rc = rc == SQLITE_ROW ? 0 : store_sqlite_errno(rc);
    stmt_put(s, tmp);
    if (rc == 0)
        *out = n;
    return rc;
}

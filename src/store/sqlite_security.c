/*
 * The SQLite backend of the security section (schema v3, migration 3 in
 * sqlite.c): device revocation and bulk import, API token listing and
 * deletion, operator users, device certificates, enrollment groups and the
 * audit log. Same rules as sqlite.c and sqlite_control.c: no threads or
 * jobs here, statements prepared once per connection through the shared
 * cache, write functions run on the writer inside the batch's transaction,
 * read functions on the reader.
 *
 * Bulk import. store_sqlite_device_insert_many steps the one cached device
 * insert statement per device (the same function as a single insert), so
 * ten thousand devices cost ten thousand binds and steps in one savepoint
 * and no re-preparing. The keys come out consecutive: devices.key is
 * INTEGER PRIMARY KEY AUTOINCREMENT, and SQLite gives each new row
 * max(largest key ever used, largest key present) + 1. The whole job runs
 * inside the batch's write transaction with nothing else inserting into
 * devices in between (jobs of a batch run one after the other on the one
 * writer connection, and BEGIN IMMEDIATE keeps other processes out), so
 * device i gets first + i. The loop checks it anyway and fails the job
 * (-EIO, rolled back) rather than hand out a wrong key should it ever not
 * hold, e.g. once keys reach 2^63 - 1, where SQLite refuses with SQLITE_FULL.
 *
 * Enrollment claims read the group's state, check it, then insert the
 * device (store_sqlite_device_insert again, so a claimed device is stored
 * exactly as an inserted one) and count the use. Nothing is written before
 * the checks pass; a failing insert (-EEXIST) or count leaves the caller's
 * savepoint to undo the rest. Both happen in the batch's transaction, so
 * two claims of the last use cannot both succeed.
 *
 * Audit appends are one statement, INSERT ... SELECT ... WHERE seq =
 * max(seq) + 1: the chain check and the insert cannot be separated, and
 * max(seq) of an INTEGER PRIMARY KEY is one b-tree descent.
 *
 * Revocations only ever set a revoked_at that is 0 (certificates,
 * enrollments), so the first revocation time is the one kept; revoking
 * again is not an error.
 *
 * Indexes, each for one read:
 *   certificates(device)  a device's certificates; also the cascade of a
 *       device delete, which removes them in its savepoint.
 *   audit(actor), audit(object)  a filtered audit page: SQLite appends the
 *       rowid (seq) to every index, so "actor = ? AND seq > ? ORDER BY seq"
 *       is one index range already in seq order, stopped by LIMIT.
 *   audit(ts)  a time window without actor or object: the window's rows
 *       are found through the index and sorted by seq (a top-N sort bounded
 *       by LIMIT); cost grows with the window, not with the log. Without any
 *       filter the walk is the table itself in seq order.
 *   enrollments.token_hash is UNIQUE: the claim endpoint looks a group up
 *       by the hash of the token it was shown.
 */
#include "store/sqlite_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#define TOKEN_COLS "SELECT id, name, role, created_at, expires_at FROM tokens"
#define USER_COLS "SELECT name, role, password_hash, created_at, disabled FROM users"
#define CERT_COLS                                                                                  \
    "SELECT c.serial, c.device, d.id, c.not_before, c.not_after, c.created_at, c.revoked_at,"      \
    " c.pem FROM certificates AS c JOIN devices AS d ON d.key = c.device"
#define ENROLL_COLS                                                                                \
    "SELECT id, name, max_uses, uses, expires_at, revoked_at, tags, grp, desired, created_at"      \
    " FROM enrollments"
#define AUDIT_COLS                                                                                 \
    "SELECT seq, ts, actor, action, object, outcome, source, detail, prev_hash, hash FROM audit"
/* Every audit list statement numbers its parameters alike: ?1 after_seq,
 * ?2 since, ?3 until, ?4 actor, ?5 object, ?6 limit. */
#define AUDIT_TAIL " ORDER BY seq LIMIT ?6"

const char *const store_sqlite_security_sql[SQL_CONTROL_FIRST_ - SQL_SECURITY_FIRST_] = {
#define S(id) [(id)-SQL_SECURITY_FIRST_]
    S(SQL_DEVICE_DELETE_CERTS) = "DELETE FROM certificates WHERE device = ?1",
    S(SQL_DEVICE_REVOKE) = "UPDATE devices SET revoked_at = ?2 WHERE key = ?1",
    S(SQL_TOKEN_DELETE) = "DELETE FROM tokens WHERE id = ?1",
    S(SQL_TOKEN_GET) = TOKEN_COLS " WHERE id = ?1",
    S(SQL_TOKEN_LIST) = TOKEN_COLS " ORDER BY created_at DESC, id DESC",
    S(SQL_USER_INSERT) = "INSERT INTO users(name, role, password_hash, created_at, disabled)"
                         " VALUES(?1, ?2, ?3, ?4, ?5)",
    S(SQL_USER_UPDATE) = "UPDATE users SET role = ?2, password_hash = ?3, disabled = ?4"
                         " WHERE name = ?1",
    S(SQL_USER_DELETE) = "DELETE FROM users WHERE name = ?1",
    S(SQL_USER_GET) = USER_COLS " WHERE name = ?1",
    S(SQL_USER_LIST) = USER_COLS " ORDER BY name",
    /* A certificate for a device deleted meanwhile is not stored. */
    S(SQL_CERT_INSERT) = "INSERT INTO certificates(serial, device, not_before, not_after, pem,"
                         " created_at, revoked_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7"
                         " WHERE EXISTS (SELECT 1 FROM devices WHERE key = ?2)",
    S(SQL_CERT_REVOKE) = "UPDATE certificates SET revoked_at = ?3"
                         " WHERE serial = ?1 AND (?2 = 0 OR device = ?2) AND revoked_at = 0",
    S(SQL_CERT_REVOKE_DEVICE) = "UPDATE certificates SET revoked_at = ?2"
                                " WHERE device = ?1 AND revoked_at = 0",
    S(SQL_CERT_EXISTS) = "SELECT 1 FROM certificates WHERE serial = ?1 AND (?2 = 0 OR device = ?2)",
    S(SQL_CERT_GET) = CERT_COLS " WHERE c.serial = ?1",
    S(SQL_CERT_LIST) = CERT_COLS " WHERE c.device = ?1 ORDER BY c.created_at DESC, c.serial DESC",
    S(SQL_CERT_REVOKED) = CERT_COLS " WHERE c.revoked_at != 0 AND c.not_after > ?1"
                                    " ORDER BY c.revoked_at, c.serial",
    S(SQL_ENROLL_INSERT) = "INSERT INTO enrollments(id, name, token_hash, max_uses, uses,"
                           " expires_at, revoked_at, tags, grp, desired, created_at)"
                           " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    S(SQL_ENROLL_STATE) = "SELECT max_uses, uses, expires_at, revoked_at FROM enrollments"
                          " WHERE id = ?1",
    S(SQL_ENROLL_USE) = "UPDATE enrollments SET uses = uses + 1 WHERE id = ?1",
    S(SQL_ENROLL_REVOKE) = "UPDATE enrollments SET revoked_at = ?2"
                           " WHERE id = ?1 AND revoked_at = 0",
    S(SQL_ENROLL_EXISTS) = "SELECT 1 FROM enrollments WHERE id = ?1",
    S(SQL_ENROLL_GET) = ENROLL_COLS " WHERE id = ?1",
    S(SQL_ENROLL_FIND) = ENROLL_COLS " WHERE token_hash = ?1",
    S(SQL_ENROLL_LIST) = ENROLL_COLS " ORDER BY created_at DESC, id DESC",
    S(SQL_AUDIT_APPEND) =
        "INSERT INTO audit(seq, ts, actor, action, object, outcome, source, detail, prev_hash,"
        " hash) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10"
        " WHERE ?1 = coalesce((SELECT max(seq) FROM audit), 0) + 1",
    S(SQL_AUDIT_LAST) = AUDIT_COLS " ORDER BY seq DESC LIMIT 1",
    /* The unary + keeps the planner off audit(ts) where the walk in seq
     * order is the better plan. */
    S(SQL_AUDIT_LIST) = AUDIT_COLS " WHERE seq > ?1 AND +ts >= ?2 AND +ts < ?3" AUDIT_TAIL,
    S(SQL_AUDIT_LIST_TS) =
        AUDIT_COLS " INDEXED BY audit_ts WHERE ts >= ?2 AND ts < ?3 AND seq > ?1" AUDIT_TAIL,
    S(SQL_AUDIT_LIST_ACTOR) =
        AUDIT_COLS " INDEXED BY audit_actor WHERE actor = ?4 AND seq > ?1"
                   " AND ts >= ?2 AND ts < ?3 AND (?5 IS NULL OR object = ?5)" AUDIT_TAIL,
    S(SQL_AUDIT_LIST_OBJECT) = AUDIT_COLS " INDEXED BY audit_object WHERE object = ?5 AND seq > ?1"
                                          " AND ts >= ?2 AND ts < ?3" AUDIT_TAIL,
#undef S
};

/* ---- Helpers ------------------------------------------------------------ */

/* A text column as a fresh string (a copy of dflt when NULL). */
static int dup_text(sqlite3_stmt *s, int col, const char *dflt, char **out)
{
    const char *p = (const char *)sqlite3_column_text(s, col);
    char *copy = strdup(p ? p : dflt);
    if (!copy)
        return -ENOMEM;
    *out = copy;
    return 0;
}

/* A text column borrowed from the row (dflt when NULL). */
static const char *col_text(sqlite3_stmt *s, int col, const char *dflt)
{
    const char *p = (const char *)sqlite3_column_text(s, col);
    return p ? p : dflt;
}

static void copy_blob(sqlite3_stmt *s, int col, uint8_t *out, size_t n)
{
    const void *p = sqlite3_column_blob(s, col);
    if (p && (size_t)sqlite3_column_bytes(s, col) == n)
        memcpy(out, p, n);
    else
        memset(out, 0, n);
}

/* Runs a one-statement write keyed by one text (?1) that must hit a row. */
static int run_on_text(store_conn_t *c, store_sql_t id, const char *text)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, id, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
    rc = store_sqlite_stmt_run(s);
    if (rc < 0)
        return rc;
    return sqlite3_changes(c->db) ? 0 : -ENOENT;
}

/* 0 if the statement (bound by the caller) returns a row, -ENOENT if none. */
static int exists(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? -ENOENT : store_sqlite_errno(rc);
}

/* Decodes the current row and hands it to the caller's callback, which
 * ctx (one of the *_cb_t below) carries; returns the callback's value. */
typedef int (*visit_fn)(sqlite3_stmt *s, void *ctx);

/* Steps s, visiting every row, then puts s. count: return the number of
 * rows visited (lists) rather than 0 (foreach); a non-zero callback value
 * stops the walk and is returned as is when negative or when not
 * counting. */
static int walk(sqlite3_stmt *s, bool tmp, bool count, visit_fn visit, void *ctx)
{
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int r = visit(s, ctx);
        n++;
        if (r < 0 || (r && !count)) {
            rc = r;
            goto out;
        }
        if (r) {
            rc = n;
            goto out;
        }
    }
    rc = rc == SQLITE_DONE ? (count ? n : 0) : store_sqlite_errno(rc);
out:
    store_sqlite_stmt_put(s, tmp);
    return rc;
}

/* ---- Write side --------------------------------------------------------- */

int store_sqlite_device_revoke(store_conn_t *c, int64_t key, int64_t revoked_at)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_DEVICE_REVOKE, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, key);
    sqlite3_bind_int64(s, 2, revoked_at);
    rc = store_sqlite_stmt_run(s);
    if (rc < 0)
        return rc;
    return sqlite3_changes(c->db) ? 0 : -ENOENT;
}

int store_sqlite_device_insert_many(store_conn_t *c, const store_device_t *devs, size_t n,
                                    int64_t *first)
{
    int64_t k0 = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t k = 0;
        int rc = store_sqlite_device_insert(c, &devs[i], &k);
        if (rc < 0)
            return rc;
        if (i == 0)
            k0 = k;
        else if (k != k0 + (int64_t)i)
            return -EIO; /* see the essay: cannot happen, and must not pass */
    }
    *first = k0;
    return 0;
}

int store_sqlite_token_delete(store_conn_t *c, const char *id)
{
    return run_on_text(c, SQL_TOKEN_DELETE, id);
}

int store_sqlite_user_insert(store_conn_t *c, const store_user_t *u)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_USER_INSERT, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, u->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, u->role, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, u->password_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, u->created_at);
    sqlite3_bind_int(s, 5, u->disabled ? 1 : 0);
    return store_sqlite_stmt_run(s);
}

int store_sqlite_user_update(store_conn_t *c, const store_user_t *u)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_USER_UPDATE, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, u->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, u->role, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, u->password_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 4, u->disabled ? 1 : 0);
    rc = store_sqlite_stmt_run(s);
    if (rc < 0)
        return rc;
    return sqlite3_changes(c->db) ? 0 : -ENOENT;
}

int store_sqlite_user_delete(store_conn_t *c, const char *name)
{
    return run_on_text(c, SQL_USER_DELETE, name);
}

int store_sqlite_cert_insert(store_conn_t *c, const store_cert_t *cert)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_CERT_INSERT, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, cert->serial, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, cert->device_key);
    sqlite3_bind_int64(s, 3, cert->not_before);
    sqlite3_bind_int64(s, 4, cert->not_after);
    sqlite3_bind_text(s, 5, cert->pem, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, cert->created_at);
    sqlite3_bind_int64(s, 7, cert->revoked_at);
    rc = store_sqlite_stmt_run(s);
    if (rc < 0)
        return rc;
    return sqlite3_changes(c->db) ? 0 : -ENOENT;
}

/* serial: that certificate, if it belongs to device_key (0: any device);
 * -ENOENT if there is none. NULL: every certificate of device_key, rc 0
 * even if it has none. */
int store_sqlite_cert_revoke(store_conn_t *c, const char *serial, int64_t device_key,
                             int64_t revoked_at)
{
    sqlite3_stmt *s = NULL;
    int rc;
    if (!serial) {
        if ((rc = store_sqlite_prep(c, SQL_CERT_REVOKE_DEVICE, &s)) < 0)
            return rc;
        sqlite3_bind_int64(s, 1, device_key);
        sqlite3_bind_int64(s, 2, revoked_at);
        return store_sqlite_stmt_run(s);
    }
    if ((rc = store_sqlite_prep(c, SQL_CERT_REVOKE, &s)) < 0)
        return rc;
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, device_key);
    sqlite3_bind_int64(s, 3, revoked_at);
    if ((rc = store_sqlite_stmt_run(s)) < 0)
        return rc;
    if (sqlite3_changes(c->db))
        return 0;
    /* Nothing changed: revoked already (fine), or not there. */
    if ((rc = store_sqlite_prep(c, SQL_CERT_EXISTS, &s)) < 0)
        return rc;
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, device_key);
    return exists(s);
}

int store_sqlite_enrollment_insert(store_conn_t *c, const store_enrollment_t *e,
                                   const uint8_t *token_hash)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_ENROLL_INSERT, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, e->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, e->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, token_hash, CRYPTO_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, e->max_uses);
    sqlite3_bind_int64(s, 5, e->uses);
    sqlite3_bind_int64(s, 6, e->expires_at);
    sqlite3_bind_int64(s, 7, e->revoked_at);
    sqlite3_bind_text(s, 8, e->tags ? e->tags : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 9, e->grp, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 10, e->desired ? e->desired : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 11, e->created_at);
    return store_sqlite_stmt_run(s);
}

int store_sqlite_enrollment_claim(store_conn_t *c, const char *id, int64_t now,
                                  const store_device_t *d, int64_t *key)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_ENROLL_STATE, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? -ENOENT : store_sqlite_errno(rc);
    }
    int64_t max_uses = sqlite3_column_int64(s, 0), uses = sqlite3_column_int64(s, 1);
    int64_t expires_at = sqlite3_column_int64(s, 2), revoked_at = sqlite3_column_int64(s, 3);
    sqlite3_reset(s);
    if (revoked_at != 0)
        return -EKEYREVOKED;
    if (expires_at != 0 && expires_at <= now)
        return -EKEYEXPIRED;
    if (uses >= max_uses)
        return -EDQUOT;
    int64_t k = 0;
    if ((rc = store_sqlite_device_insert(c, d, &k)) < 0)
        return rc;
    if ((rc = store_sqlite_prep(c, SQL_ENROLL_USE, &s)) < 0)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    if ((rc = store_sqlite_stmt_run(s)) < 0)
        return rc;
    if (sqlite3_changes(c->db) != 1)
        return -EIO; /* read a moment ago in this transaction */
    *key = k;
    return 0;
}

int store_sqlite_enrollment_revoke(store_conn_t *c, const char *id, int64_t revoked_at)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_ENROLL_REVOKE, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, revoked_at);
    if ((rc = store_sqlite_stmt_run(s)) < 0)
        return rc;
    if (sqlite3_changes(c->db))
        return 0;
    if ((rc = store_sqlite_prep(c, SQL_ENROLL_EXISTS, &s)) < 0)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    return exists(s);
}

/* -EINVAL when a.seq is not the last seq + 1 (1 on an empty log). */
int store_sqlite_audit_append(store_conn_t *c, const store_audit_t *a)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_AUDIT_APPEND, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, a->seq);
    sqlite3_bind_int64(s, 2, a->ts);
    sqlite3_bind_text(s, 3, a->actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, a->action, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, a->object, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, a->outcome, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, a->source, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, a->detail ? a->detail : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 9, a->prev_hash, CRYPTO_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(s, 10, a->hash, CRYPTO_HASH_LEN, SQLITE_STATIC);
    rc = store_sqlite_stmt_run(s);
    if (rc < 0)
        return rc;
    return sqlite3_changes(c->db) ? 0 : -EINVAL;
}

/* ---- Read side ---------------------------------------------------------- */

static void row_token(sqlite3_stmt *s, store_token_t *t)
{
    memset(t, 0, sizeof(*t));
    store_sqlite_copy_text(s, 0, t->id, sizeof(t->id));
    store_sqlite_copy_text(s, 1, t->name, sizeof(t->name));
    store_sqlite_copy_text(s, 2, t->role, sizeof(t->role));
    t->created_at = sqlite3_column_int64(s, 3);
    t->expires_at = sqlite3_column_int64(s, 4); /* NULL reads as 0: never */
}

static void row_user(sqlite3_stmt *s, store_user_t *u)
{
    memset(u, 0, sizeof(*u));
    store_sqlite_copy_text(s, 0, u->name, sizeof(u->name));
    store_sqlite_copy_text(s, 1, u->role, sizeof(u->role));
    store_sqlite_copy_text(s, 2, u->password_hash, sizeof(u->password_hash));
    u->created_at = sqlite3_column_int64(s, 3);
    u->disabled = sqlite3_column_int(s, 4) != 0;
}

/* Fills cert from a row of CERT_COLS; pem borrowed from the row. */
static void row_cert(sqlite3_stmt *s, store_cert_t *cert)
{
    memset(cert, 0, sizeof(*cert));
    store_sqlite_copy_text(s, 0, cert->serial, sizeof(cert->serial));
    cert->device_key = sqlite3_column_int64(s, 1);
    store_sqlite_copy_text(s, 2, cert->device_id, sizeof(cert->device_id));
    cert->not_before = sqlite3_column_int64(s, 3);
    cert->not_after = sqlite3_column_int64(s, 4);
    cert->created_at = sqlite3_column_int64(s, 5);
    cert->revoked_at = sqlite3_column_int64(s, 6);
    cert->pem = (char *)col_text(s, 7, "");
}

/* Fills e from a row of ENROLL_COLS; tags and desired borrowed. */
static void row_enrollment(sqlite3_stmt *s, store_enrollment_t *e)
{
    memset(e, 0, sizeof(*e));
    store_sqlite_copy_text(s, 0, e->id, sizeof(e->id));
    store_sqlite_copy_text(s, 1, e->name, sizeof(e->name));
    e->max_uses = sqlite3_column_int64(s, 2);
    e->uses = sqlite3_column_int64(s, 3);
    e->expires_at = sqlite3_column_int64(s, 4);
    e->revoked_at = sqlite3_column_int64(s, 5);
    e->tags = (char *)col_text(s, 6, "{}");
    store_sqlite_copy_text(s, 7, e->grp, sizeof(e->grp));
    e->desired = (char *)col_text(s, 8, "{}");
    e->created_at = sqlite3_column_int64(s, 9);
}

/* Fills a from a row of AUDIT_COLS; detail borrowed. */
static void row_audit(sqlite3_stmt *s, store_audit_t *a)
{
    memset(a, 0, sizeof(*a));
    a->seq = sqlite3_column_int64(s, 0);
    a->ts = sqlite3_column_int64(s, 1);
    store_sqlite_copy_text(s, 2, a->actor, sizeof(a->actor));
    store_sqlite_copy_text(s, 3, a->action, sizeof(a->action));
    store_sqlite_copy_text(s, 4, a->object, sizeof(a->object));
    store_sqlite_copy_text(s, 5, a->outcome, sizeof(a->outcome));
    store_sqlite_copy_text(s, 6, a->source, sizeof(a->source));
    a->detail = (char *)col_text(s, 7, "{}");
    copy_blob(s, 8, a->prev_hash, sizeof(a->prev_hash));
    copy_blob(s, 9, a->hash, sizeof(a->hash));
}

typedef struct token_cb {
    int (*fn)(void *arg, const store_token_t *t);
    void *arg;
} token_cb_t;

typedef struct user_cb {
    int (*fn)(void *arg, const store_user_t *u);
    void *arg;
} user_cb_t;

typedef struct cert_cb {
    int (*fn)(void *arg, const store_cert_t *cert);
    void *arg;
} cert_cb_t;

typedef struct enrollment_cb {
    int (*fn)(void *arg, const store_enrollment_t *e);
    void *arg;
} enrollment_cb_t;

typedef struct audit_cb {
    int (*fn)(void *arg, const store_audit_t *a);
    void *arg;
} audit_cb_t;

static int visit_token(sqlite3_stmt *s, void *ctx)
{
    token_cb_t *cb = ctx;
    store_token_t t;
    row_token(s, &t);
    return cb->fn(cb->arg, &t);
}

static int visit_user(sqlite3_stmt *s, void *ctx)
{
    user_cb_t *cb = ctx;
    store_user_t u;
    row_user(s, &u);
    return cb->fn(cb->arg, &u);
}

static int visit_cert(sqlite3_stmt *s, void *ctx)
{
    cert_cb_t *cb = ctx;
    store_cert_t cert;
    row_cert(s, &cert);
    return cb->fn(cb->arg, &cert);
}

static int visit_enrollment(sqlite3_stmt *s, void *ctx)
{
    enrollment_cb_t *cb = ctx;
    store_enrollment_t e;
    row_enrollment(s, &e);
    return cb->fn(cb->arg, &e);
}

static int visit_audit(sqlite3_stmt *s, void *ctx)
{
    audit_cb_t *cb = ctx;
    store_audit_t a;
    row_audit(s, &a);
    return cb->fn(cb->arg, &a);
}

/* Steps a statement expected to return at most one row: 0 with the row
 * current (the caller decodes it, then puts the statement), -ENOENT or an
 * error with the statement already put. */
static int one_row(sqlite3_stmt *s, bool tmp)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        return 0;
    store_sqlite_stmt_put(s, tmp);
    return rc == SQLITE_DONE ? -ENOENT : store_sqlite_errno(rc);
}

int store_sqlite_token_get(store_conn_t *c, const char *id, store_token_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = store_sqlite_stmt_get(c, SQL_TOKEN_GET, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    if ((rc = one_row(s, tmp)) < 0)
        return rc;
    row_token(s, out);
    store_sqlite_stmt_put(s, tmp);
    return 0;
}

int store_sqlite_token_list(store_conn_t *c, int (*fn)(void *arg, const store_token_t *t),
                            void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = store_sqlite_stmt_get(c, SQL_TOKEN_LIST, &s, &tmp);
    if (rc < 0)
        return rc;
    return walk(s, tmp, true, visit_token, &(token_cb_t){fn, arg});
}

int store_sqlite_user_get(store_conn_t *c, const char *name, store_user_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = store_sqlite_stmt_get(c, SQL_USER_GET, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    if ((rc = one_row(s, tmp)) < 0)
        return rc;
    row_user(s, out);
    store_sqlite_stmt_put(s, tmp);
    return 0;
}

int store_sqlite_user_list(store_conn_t *c, int (*fn)(void *arg, const store_user_t *u), void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = store_sqlite_stmt_get(c, SQL_USER_LIST, &s, &tmp);
    if (rc < 0)
        return rc;
    return walk(s, tmp, true, visit_user, &(user_cb_t){fn, arg});
}

int store_sqlite_cert_get(store_conn_t *c, const char *serial, store_cert_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    store_cert_t cert;
    int rc = store_sqlite_stmt_get(c, SQL_CERT_GET, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    if ((rc = one_row(s, tmp)) < 0)
        return rc;
    row_cert(s, &cert);
    rc = dup_text(s, 7, "", &cert.pem);
    store_sqlite_stmt_put(s, tmp);
    if (rc == 0)
        *out = cert;
    return rc;
}

int store_sqlite_cert_list(store_conn_t *c, int64_t device_key,
                           int (*fn)(void *arg, const store_cert_t *cert), void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = store_sqlite_stmt_get(c, SQL_CERT_LIST, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, device_key);
    return walk(s, tmp, true, visit_cert, &(cert_cb_t){fn, arg});
}

int store_sqlite_cert_foreach_revoked(store_conn_t *c, int64_t now,
                                      int (*fn)(void *arg, const store_cert_t *cert), void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = store_sqlite_stmt_get(c, SQL_CERT_REVOKED, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, now);
    return walk(s, tmp, false, visit_cert, &(cert_cb_t){fn, arg});
}

/* The one row of an enrollment statement bound by the caller, with its
 * texts copied. */
static int enrollment_one(sqlite3_stmt *s, bool tmp, store_enrollment_t *out)
{
    store_enrollment_t e;
    char *tags = NULL, *desired = NULL;
    int rc = one_row(s, tmp);
    if (rc < 0)
        return rc;
    row_enrollment(s, &e);
    if ((rc = dup_text(s, 6, "{}", &tags)) < 0 || (rc = dup_text(s, 8, "{}", &desired)) < 0)
        goto fail;
    store_sqlite_stmt_put(s, tmp);
    e.tags = tags;
    e.desired = desired;
    *out = e;
    return 0;
fail:
    store_sqlite_stmt_put(s, tmp);
    free(tags);
    return rc;
}

int store_sqlite_enrollment_get(store_conn_t *c, const char *id, store_enrollment_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = store_sqlite_stmt_get(c, SQL_ENROLL_GET, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    return enrollment_one(s, tmp, out);
}

int store_sqlite_enrollment_find(store_conn_t *c, const uint8_t *token_hash,
                                 store_enrollment_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = store_sqlite_stmt_get(c, SQL_ENROLL_FIND, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_blob(s, 1, token_hash, CRYPTO_HASH_LEN, SQLITE_STATIC);
    return enrollment_one(s, tmp, out);
}

int store_sqlite_enrollment_list(store_conn_t *c, int (*fn)(void *arg, const store_enrollment_t *e),
                                 void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = store_sqlite_stmt_get(c, SQL_ENROLL_LIST, &s, &tmp);
    if (rc < 0)
        return rc;
    return walk(s, tmp, true, visit_enrollment, &(enrollment_cb_t){fn, arg});
}

int store_sqlite_audit_last(store_conn_t *c, store_audit_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    store_audit_t a;
    int rc = store_sqlite_stmt_get(c, SQL_AUDIT_LAST, &s, &tmp);
    if (rc < 0)
        return rc;
    if ((rc = one_row(s, tmp)) < 0)
        return rc;
    row_audit(s, &a);
    rc = dup_text(s, 7, "{}", &a.detail);
    store_sqlite_stmt_put(s, tmp);
    if (rc == 0)
        *out = a;
    return rc;
}

int store_sqlite_audit_list(store_conn_t *c, int64_t after_seq, int64_t since, int64_t until,
                            const char *actor, const char *object, int limit,
                            int (*fn)(void *arg, const store_audit_t *a), void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    store_sql_t which = actor              ? SQL_AUDIT_LIST_ACTOR
                        : object           ? SQL_AUDIT_LIST_OBJECT
                        : (since || until) ? SQL_AUDIT_LIST_TS
                                           : SQL_AUDIT_LIST;
    int rc = store_sqlite_stmt_get(c, which, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, after_seq);
    sqlite3_bind_int64(s, 2, since ? since : INT64_MIN);
    sqlite3_bind_int64(s, 3, until ? until : INT64_MAX);
    /* Bindings outlive a reset: a NULL must be bound, not left out. */
    if (actor)
        sqlite3_bind_text(s, 4, actor, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 4);
    if (object)
        sqlite3_bind_text(s, 5, object, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 5);
    sqlite3_bind_int(s, 6, limit);
    return walk(s, tmp, true, visit_audit, &(audit_cb_t){fn, arg});
}

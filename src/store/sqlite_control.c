/*
 * The SQLite backend of the control plane: device twins, commands and bulk
 * jobs (tables from migration 2 in sqlite.c). Same rules as sqlite.c: no
 * threads or jobs here, statements prepared once per connection through
 * the shared cache, write functions run on the writer inside the batch's
 * transaction, read functions on the reader.
 *
 * Rows belong to a device and go with it: store_sqlite_device_delete
 * removes a device's twin, commands and job items in its savepoint. A write
 * that arrives for a device deleted meanwhile (the API checked it, then the
 * delete landed first) is skipped in the same statement, INSERT ... SELECT
 * ... WHERE EXISTS, so no orphan row can outlive its device; the outcome is
 * the one the other order would have had. Reads join devices for the
 * device id, and an inner join is safe for the same reason.
 *
 * Indexes, each for one read:
 *   commands(device, created_at, id)  a device's history, newest first,
 *       paged by a (created_at, id) cursor: one index range walked
 *       backwards; also the cascade of a device delete.
 *   commands(job, id) WHERE job != ''  a bulk job's commands in id order;
 *       most commands belong to no job and stay out of it. The queries
 *       repeat "job != ''" so the planner can prove the partial index
 *       applies to a bound parameter.
 *   commands(created_at, id) WHERE status IN ('queued', 'sent')  the open
 *       commands at start-up, oldest first, without visiting the finished
 *       ones, which are nearly all of them.
 *   job_items(job, device) is the key (WITHOUT ROWID: small rows), and
 *       job_items(device) serves the cascade.
 *
 * Bulk writes (command_insert, job_items_put) bind and step one cached
 * statement per row inside the caller's savepoint: ten thousand rows are
 * one job and all or nothing.
 */
#include "store/sqlite_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#define DEVICE_EXISTS(param) "EXISTS (SELECT 1 FROM devices WHERE key = " param ")"

#define COMMAND_COLS                                                                               \
    "SELECT c.id, c.device, d.id, c.name, c.params, c.status, c.result, c.created_at,"             \
    " c.sent_at, c.finished_at, c.expires_at, c.job"                                               \
    " FROM commands AS c JOIN devices AS d ON d.key = c.device"

const char *const store_sqlite_control_sql[SQL_COUNT_ - SQL_CONTROL_FIRST_] = {
#define S(id) [(id)-SQL_CONTROL_FIRST_]
    S(SQL_DEVICE_DELETE_TWIN) = "DELETE FROM twins WHERE device = ?1",
    S(SQL_DEVICE_DELETE_COMMANDS) = "DELETE FROM commands WHERE device = ?1",
    S(SQL_DEVICE_DELETE_JOB_ITEMS) = "DELETE FROM job_items WHERE device = ?1",
    S(SQL_TWIN_PUT) = "INSERT OR REPLACE INTO twins(device, desired, desired_version, desired_at,"
                      " reported, reported_version, reported_at)"
                      " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE " DEVICE_EXISTS("?1"),
    S(SQL_TWIN_GET) = "SELECT desired, desired_version, desired_at, reported, reported_version,"
                      " reported_at FROM twins WHERE device = ?1",
    S(SQL_COMMAND_INSERT) = "INSERT INTO commands(id, device, name, params, status, result,"
                            " created_at, sent_at, finished_at, expires_at, job)"
                            " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11"
                            " WHERE " DEVICE_EXISTS("?2"),
    S(SQL_COMMAND_UPDATE) =
        "UPDATE commands SET status = ?2, result = coalesce(?3, result),"
        " sent_at = CASE WHEN ?4 != 0 THEN ?4 ELSE sent_at END,"
        " finished_at = CASE WHEN ?5 != 0 THEN ?5 ELSE finished_at END WHERE id = ?1",
    S(SQL_COMMAND_GET) = COMMAND_COLS " WHERE c.id = ?1",
    S(SQL_COMMAND_LIST) = COMMAND_COLS " WHERE c.device = ?1"
                                       " ORDER BY c.created_at DESC, c.id DESC LIMIT ?4",
    /* "created_at <= ?2" keeps it one index range; the OR trims the tie. */
    S(SQL_COMMAND_LIST_BEFORE) = COMMAND_COLS
    " WHERE c.device = ?1 AND c.created_at <= ?2 AND (c.created_at < ?2 OR c.id < ?3)"
    " ORDER BY c.created_at DESC, c.id DESC LIMIT ?4",
    S(SQL_COMMAND_OPEN) = COMMAND_COLS " WHERE c.status IN ('queued', 'sent')"
                                       " ORDER BY c.created_at, c.id",
    S(SQL_COMMAND_LIST_JOB) = COMMAND_COLS " WHERE c.job = ?1 AND c.job != '' AND c.id > ?2"
                                           " ORDER BY c.id LIMIT ?3",
    S(SQL_JOB_PUT) = "INSERT OR REPLACE INTO jobs(id, kind, spec, status, total, created_at,"
                     " finished_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    S(SQL_JOB_GET) = "SELECT id, kind, spec, status, total, created_at, finished_at FROM jobs"
                     " WHERE id = ?1",
    S(SQL_JOB_ITEM_PUT) = "INSERT OR REPLACE INTO job_items(job, device, status, detail)"
                          " SELECT ?1, ?2, ?3, ?4 WHERE " DEVICE_EXISTS("?2"),
    S(SQL_JOB_ITEMS_LIST) = "SELECT i.device, d.id, i.status, i.detail"
                            " FROM job_items AS i JOIN devices AS d ON d.key = i.device"
                            " WHERE i.job = ?1 AND d.id > ?2 ORDER BY d.id LIMIT ?3",
#undef S
};

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *text)
{
    if (text)
        sqlite3_bind_text(s, i, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/* A text column as a fresh string (NULL column: NULL, or a copy of dflt). */
static int dup_text(sqlite3_stmt *s, int col, const char *dflt, char **out)
{
    const char *p = (const char *)sqlite3_column_text(s, col);
    *out = NULL;
    if (!p && !dflt)
        return 0;
    *out = strdup(p ? p : dflt);
    return *out ? 0 : -ENOMEM;
}

/* ---- Write side --------------------------------------------------------- */

int store_sqlite_twin_put(store_conn_t *c, int64_t key, const store_twin_t *t)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_TWIN_PUT, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, key);
    sqlite3_bind_text(s, 2, t->desired ? t->desired : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, t->desired_version);
    sqlite3_bind_int64(s, 4, t->desired_at);
    sqlite3_bind_text(s, 5, t->reported ? t->reported : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, t->reported_version);
    sqlite3_bind_int64(s, 7, t->reported_at);
    return store_sqlite_stmt_run(s);
}

int store_sqlite_command_insert(store_conn_t *c, const store_command_t *cmds, size_t n)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_COMMAND_INSERT, &s);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const store_command_t *cmd = &cmds[i];
        sqlite3_bind_text(s, 1, cmd->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, cmd->device_key);
        sqlite3_bind_text(s, 3, cmd->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, cmd->params ? cmd->params : "{}", -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, cmd->status, -1, SQLITE_STATIC);
        bind_text_or_null(s, 6, cmd->result);
        sqlite3_bind_int64(s, 7, cmd->created_at);
        sqlite3_bind_int64(s, 8, cmd->sent_at);
        sqlite3_bind_int64(s, 9, cmd->finished_at);
        sqlite3_bind_int64(s, 10, cmd->expires_at);
        sqlite3_bind_text(s, 11, cmd->job, -1, SQLITE_STATIC);
        if ((rc = store_sqlite_stmt_run(s)) < 0)
            return rc;
    }
    return 0;
}

int store_sqlite_command_update(store_conn_t *c, const char *id, const char *status,
                                const char *result, int64_t sent_at, int64_t finished_at)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_COMMAND_UPDATE, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, status, -1, SQLITE_STATIC);
    bind_text_or_null(s, 3, result);
    sqlite3_bind_int64(s, 4, sent_at);
    sqlite3_bind_int64(s, 5, finished_at);
    rc = store_sqlite_stmt_run(s);
    if (rc < 0)
        return rc;
    return sqlite3_changes(c->db) ? 0 : -ENOENT;
}

int store_sqlite_job_put(store_conn_t *c, const store_job_t *j)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_JOB_PUT, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, j->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, j->spec ? j->spec : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, j->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, j->total);
    sqlite3_bind_int64(s, 6, j->created_at);
    sqlite3_bind_int64(s, 7, j->finished_at);
    return store_sqlite_stmt_run(s);
}

int store_sqlite_job_items_put(store_conn_t *c, const char *job, const store_job_item_t *items,
                               size_t n)
{
    sqlite3_stmt *s = NULL;
    int rc = store_sqlite_prep(c, SQL_JOB_ITEM_PUT, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, job, -1, SQLITE_STATIC);
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_int64(s, 2, items[i].device_key);
        sqlite3_bind_text(s, 3, items[i].status, -1, SQLITE_STATIC);
        bind_text_or_null(s, 4, items[i].detail);
        /* stmt_run resets the statement; bindings, ?1 included, stay. */
        if ((rc = store_sqlite_stmt_run(s)) < 0)
            return rc;
    }
    return 0;
}

/* ---- Read side ---------------------------------------------------------- */

int store_sqlite_twin_get(store_conn_t *c, int64_t key, store_twin_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    store_twin_t t = {0};
    int rc = store_sqlite_stmt_get(c, SQL_TWIN_GET, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, key);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if ((rc = dup_text(s, 0, "{}", &t.desired)) < 0 ||
            (rc = dup_text(s, 3, "{}", &t.reported)) < 0)
            goto fail;
        t.desired_version = sqlite3_column_int64(s, 1);
        t.desired_at = sqlite3_column_int64(s, 2);
        t.reported_version = sqlite3_column_int64(s, 4);
        t.reported_at = sqlite3_column_int64(s, 5);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : store_sqlite_errno(rc);
    }
    store_sqlite_stmt_put(s, tmp);
    if (rc == 0)
        *out = t;
    return rc;
fail:
    store_sqlite_stmt_put(s, tmp);
    store_twin_fini(&t);
    return rc;
}

/* Fills cmd from a row of COMMAND_COLS. own: params and result are fresh
 * copies (the caller finis); otherwise they borrow the row's text, valid
 * until the statement moves on. */
static int row_command(sqlite3_stmt *s, bool own, store_command_t *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
    store_sqlite_copy_text(s, 0, cmd->id, sizeof(cmd->id));
    cmd->device_key = sqlite3_column_int64(s, 1);
    store_sqlite_copy_text(s, 2, cmd->device_id, sizeof(cmd->device_id));
    store_sqlite_copy_text(s, 3, cmd->name, sizeof(cmd->name));
    store_sqlite_copy_text(s, 5, cmd->status, sizeof(cmd->status));
    cmd->created_at = sqlite3_column_int64(s, 7);
    cmd->sent_at = sqlite3_column_int64(s, 8);
    cmd->finished_at = sqlite3_column_int64(s, 9);
    cmd->expires_at = sqlite3_column_int64(s, 10);
    store_sqlite_copy_text(s, 11, cmd->job, sizeof(cmd->job));
    if (!own) {
        const char *params = (const char *)sqlite3_column_text(s, 4);
        cmd->params = (char *)(params ? params : "{}");
        cmd->result = (char *)sqlite3_column_text(s, 6);
        return 0;
    }
    int rc = dup_text(s, 4, "{}", &cmd->params);
    if (rc == 0)
        rc = dup_text(s, 6, NULL, &cmd->result);
    if (rc < 0)
        store_command_fini(cmd);
    return rc;
}

/* Steps a command statement, calling fn per borrowed row. mode_count:
 * return the number of rows visited (list) rather than 0 (foreach); a
 * non-zero fn value stops the walk, and is returned as is when negative
 * or when not counting. */
static int each_command(sqlite3_stmt *s, bool mode_count,
                        int (*fn)(void *arg, const store_command_t *cmd), void *arg)
{
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_command_t cmd;
        row_command(s, false, &cmd);
        int r = fn(arg, &cmd);
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

int store_sqlite_command_get(store_conn_t *c, const char *id, store_command_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    store_command_t cmd;
    int rc = store_sqlite_stmt_get(c, SQL_COMMAND_GET, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rc = row_command(s, true, &cmd);
    else
        rc = rc == SQLITE_DONE ? -ENOENT : store_sqlite_errno(rc);
    store_sqlite_stmt_put(s, tmp);
    if (rc == 0)
        *out = cmd;
    return rc;
}

int store_sqlite_command_list(store_conn_t *c, int64_t key, int64_t before_ts,
                              const char *before_id, int limit,
                              int (*fn)(void *arg, const store_command_t *cmd), void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc =
        store_sqlite_stmt_get(c, before_id ? SQL_COMMAND_LIST_BEFORE : SQL_COMMAND_LIST, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 1, key);
    if (before_id) {
        sqlite3_bind_int64(s, 2, before_ts);
        sqlite3_bind_text(s, 3, before_id, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int(s, 4, limit);
    rc = each_command(s, true, fn, arg);
    store_sqlite_stmt_put(s, tmp);
    return rc;
}

int store_sqlite_command_foreach_open(store_conn_t *c,
                                      int (*fn)(void *arg, const store_command_t *cmd), void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = store_sqlite_stmt_get(c, SQL_COMMAND_OPEN, &s, &tmp);
    if (rc < 0)
        return rc;
    rc = each_command(s, false, fn, arg);
    store_sqlite_stmt_put(s, tmp);
    return rc;
}

int store_sqlite_command_list_job(store_conn_t *c, const char *job, const char *after_id, int limit,
                                  int (*fn)(void *arg, const store_command_t *cmd), void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int rc = store_sqlite_stmt_get(c, SQL_COMMAND_LIST_JOB, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, job, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, after_id ? after_id : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, limit);
    rc = each_command(s, true, fn, arg);
    store_sqlite_stmt_put(s, tmp);
    return rc;
}

int store_sqlite_job_get(store_conn_t *c, const char *id, store_job_t *out)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    store_job_t j = {0};
    int rc = store_sqlite_stmt_get(c, SQL_JOB_GET, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        store_sqlite_copy_text(s, 0, j.id, sizeof(j.id));
        store_sqlite_copy_text(s, 1, j.kind, sizeof(j.kind));
        rc = dup_text(s, 2, "{}", &j.spec);
        store_sqlite_copy_text(s, 3, j.status, sizeof(j.status));
        j.total = sqlite3_column_int64(s, 4);
        j.created_at = sqlite3_column_int64(s, 5);
        j.finished_at = sqlite3_column_int64(s, 6);
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : store_sqlite_errno(rc);
    }
    store_sqlite_stmt_put(s, tmp);
    if (rc == 0)
        *out = j;
    return rc;
}

int store_sqlite_job_items_list(store_conn_t *c, const char *job, const char *after_id, int limit,
                                int (*fn)(void *arg, const store_job_item_t *it), void *arg)
{
    sqlite3_stmt *s = NULL;
    bool tmp = false;
    int n = 0;
    int rc = store_sqlite_stmt_get(c, SQL_JOB_ITEMS_LIST, &s, &tmp);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, job, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, after_id ? after_id : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_job_item_t it;
        memset(&it, 0, sizeof(it));
        it.device_key = sqlite3_column_int64(s, 0);
        store_sqlite_copy_text(s, 1, it.device_id, sizeof(it.device_id));
        store_sqlite_copy_text(s, 2, it.status, sizeof(it.status));
        it.detail = (const char *)sqlite3_column_text(s, 3);
        int r = fn(arg, &it);
        n++;
        if (r) {
            rc = r < 0 ? r : n;
            goto out;
        }
    }
    rc = rc == SQLITE_DONE ? n : store_sqlite_errno(rc);
out:
    store_sqlite_stmt_put(s, tmp);
    return rc;
}

/*
 * Twin cache and write path. Entries are keyed by device id in a strmap;
 * each holds both documents as jansson values, the versions and times, and
 * the device's store key. Writes copy the serialized row into the store
 * job, so the cache may change again while the write is queued; writes of
 * one device commit in submission order, so the last one wins in the
 * database as it does in the cache.
 */
#include "twin/twin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/strmap.h"
#include "common/util.h"

typedef struct entry {
    char id[DROVER_ID_MAX + 1];
    int64_t key;
    json_t *desired, *reported;
    int64_t desired_version, desired_at;
    int64_t reported_version, reported_at;
} entry_t;

struct twin {
    store_t *st;
    registry_t *reg;
    const config_t *cfg;
    strmap_t cache;
    twin_notify_fn notify;
    void *notify_ctx;
};

static void entry_free(entry_t *e)
{
    if (e == NULL)
        return;
    json_decref(e->desired);
    json_decref(e->reported);
    free(e);
}

int twin_new(store_t *st, registry_t *reg, const config_t *cfg, twin_t **out)
{
    twin_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->st = st;
    t->reg = reg;
    t->cfg = cfg;
    strmap_init(&t->cache);
    *out = t;
    return 0;
}

void twin_free(twin_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->cache.cap; i++) {
        if (t->cache.slots[i].key)
            entry_free(t->cache.slots[i].val);
    }
    strmap_fini(&t->cache);
    free(t);
}

void twin_set_notify(twin_t *t, twin_notify_fn fn, void *ctx)
{
    t->notify = fn;
    t->notify_ctx = ctx;
}

static json_t *parse_object(const char *text)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    if (!json_is_object(v)) {
        json_decref(v);
        v = json_object();
    }
    return v;
}

/* The cached entry of a registered device, loading it on first use. */
static int entry_get(twin_t *t, const char *id, entry_t **out)
{
    entry_t *e = strmap_get(&t->cache, id, strlen(id));
    registry_device_t *d = registry_find(t->reg, id);
    if (d == NULL) {
        if (e != NULL)
            twin_forget(t, id);
        return -ENOENT;
    }
    if (e != NULL && e->key == d->key) {
        *out = e;
        return 0;
    }
    if (e != NULL)
        twin_forget(t, id); /* a new device under an old id */
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->key = d->key;
    store_twin_t row;
    int rc = store_twin_get(t->st, d->key, &row);
    if (rc == 0) {
        e->desired = parse_object(row.desired);
        e->reported = parse_object(row.reported);
        e->desired_version = row.desired_version;
        e->desired_at = row.desired_at;
        e->reported_version = row.reported_version;
        e->reported_at = row.reported_at;
        store_twin_fini(&row);
    } else if (rc == -ENOENT) {
        e->desired = json_object();
        e->reported = json_object();
    } else {
        free(e);
        return rc;
    }
    if (e->desired == NULL || e->reported == NULL ||
        strmap_put(&t->cache, e->id, strlen(e->id), e) < 0) {
        entry_free(e);
        return -ENOMEM;
    }
    *out = e;
    return 0;
}

void twin_forget(twin_t *t, const char *device_id)
{
    entry_free(strmap_del(&t->cache, device_id, strlen(device_id)));
}

/* Size and depth limits on a document. */
static int check_doc(const twin_t *t, const json_t *doc, char *err, size_t errlen)
{
    if (json_util_depth(doc) > (int)t->cfg->max_twin_depth) {
        snprintf(err, errlen, "document nested deeper than %u levels", t->cfg->max_twin_depth);
        return -E2BIG;
    }
    char *s = json_util_dump(doc);
    if (s == NULL)
        return -ENOMEM;
    size_t n = strlen(s);
    free(s);
    if (n > t->cfg->max_twin_bytes) {
        snprintf(err, errlen, "document of %zu bytes is over the %u-byte limit", n,
                 t->cfg->max_twin_bytes);
        return -E2BIG;
    }
    return 0;
}

typedef struct wop {
    twin_t *t;
    char id[DROVER_ID_MAX + 1];
    int64_t key;
    int64_t version;
    bool desired;
    twin_done_fn done;
    void *arg;
} wop_t;

static void write_done(void *arg, int rc, int64_t value)
{
    (void)value;
    wop_t *op = arg;
    twin_t *t = op->t;
    if (rc < 0) {
        twin_forget(t, op->id); /* reload what the database really holds */
    } else if (op->desired && t->notify) {
        entry_t *e = strmap_get(&t->cache, op->id, strlen(op->id));
        /* Only the newest version goes out: the device needs no history. */
        if (e != NULL && e->key == op->key && e->desired_version == op->version) {
            char *msg;
            size_t len;
            if (twin_desired_message(t, op->id, &msg, &len) == 0) {
                t->notify(t->notify_ctx, op->id, msg, len);
                free(msg);
            }
        }
    }
    if (op->done)
        op->done(op->arg, rc, op->version);
    free(op);
}

/* Writes the whole twin of e; done runs after commit. */
static int write_entry(twin_t *t, entry_t *e, bool desired, twin_done_fn done, void *arg)
{
    wop_t *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return -ENOMEM;
    store_twin_t row = {
        .desired = json_util_dump(e->desired),
        .desired_version = e->desired_version,
        .desired_at = e->desired_at,
        .reported = json_util_dump(e->reported),
        .reported_version = e->reported_version,
        .reported_at = e->reported_at,
    };
    if (row.desired == NULL || row.reported == NULL) {
        free(row.desired);
        free(row.reported);
        free(op);
        return -ENOMEM;
    }
    op->t = t;
    snprintf(op->id, sizeof(op->id), "%s", e->id);
    op->key = e->key;
    op->version = desired ? e->desired_version : e->reported_version;
    op->desired = desired;
    op->done = done;
    op->arg = arg;
    store_twin_put(t->st, e->key, &row, write_done, op);
    free(row.desired);
    free(row.reported);
    return 0;
}

void twin_desired_update(twin_t *t, const char *device_id, const json_t *doc, bool patch,
                         int64_t if_match, twin_done_fn done, void *arg)
{
    char err[128];
    entry_t *e;
    int rc = entry_get(t, device_id, &e);
    if (rc < 0)
        goto fail;
    if (!json_is_object(doc)) {
        rc = -EINVAL;
        goto fail;
    }
    if (if_match >= 0 && if_match != e->desired_version) {
        rc = -ESTALE;
        goto fail;
    }
    rc = check_doc(t, doc, err, sizeof(err));
    if (rc < 0)
        goto fail;
    json_t *next;
    if (patch) {
        next = json_deep_copy(e->desired);
        if (next == NULL || json_util_merge_patch(&next, doc) < 0) {
            json_decref(next);
            rc = -ENOMEM;
            goto fail;
        }
    } else {
        next = json_deep_copy(doc);
        if (next == NULL) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    rc = check_doc(t, next, err, sizeof(err));
    if (rc < 0) {
        json_decref(next);
        goto fail;
    }
    json_decref(e->desired);
    e->desired = next;
    e->desired_version++;
    e->desired_at = util_now_ms();
    rc = write_entry(t, e, true, done, arg);
    if (rc < 0) {
        twin_forget(t, device_id);
        goto fail;
    }
    return;
fail:
    if (done)
        done(arg, rc, 0);
}

int twin_reported_patch(twin_t *t, const char *device_id, const char *payload, size_t len,
                        twin_done_fn done, void *arg, char *err, size_t errlen)
{
    entry_t *e;
    int rc = entry_get(t, device_id, &e);
    if (rc < 0) {
        snprintf(err, errlen, "unknown device");
        return rc;
    }
    if (len > t->cfg->max_twin_bytes) {
        snprintf(err, errlen, "patch of %zu bytes is over the %u-byte limit", len,
                 t->cfg->max_twin_bytes);
        return -E2BIG;
    }
    char jerr[128];
    json_t *p = json_util_parse(payload, len, jerr, sizeof(jerr));
    if (p == NULL) {
        snprintf(err, errlen, "invalid JSON: %s", jerr);
        return -EINVAL;
    }
    json_t *next = NULL;
    if (!json_is_object(p)) {
        snprintf(err, errlen, "a reported patch must be a JSON object");
        rc = -EINVAL;
        goto out;
    }
    rc = check_doc(t, p, err, errlen);
    if (rc < 0)
        goto out;
    next = json_deep_copy(e->reported);
    if (next == NULL || json_util_merge_patch(&next, p) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    rc = check_doc(t, next, err, errlen);
    if (rc < 0)
        goto out;
    json_decref(e->reported);
    e->reported = next;
    next = NULL;
    e->reported_version++;
    e->reported_at = util_now_ms();
    rc = write_entry(t, e, false, done, arg);
    if (rc < 0)
        twin_forget(t, device_id);
out:
    json_decref(next);
    json_decref(p);
    return rc;
}

static json_t *time_or_null(int64_t ms)
{
    return ms > 0 ? json_integer(ms) : json_null();
}

int twin_get(twin_t *t, const char *device_id, json_t **out)
{
    entry_t *e;
    int rc = entry_get(t, device_id, &e);
    if (rc < 0)
        return rc;
    json_t *delta = json_util_delta(e->desired, e->reported);
    json_t *o =
        json_pack("{s:O, s:I, s:o, s:O, s:I, s:o, s:o}", "desired", e->desired, "desired_version",
                  (json_int_t)e->desired_version, "desired_at", time_or_null(e->desired_at),
                  "reported", e->reported, "reported_version", (json_int_t)e->reported_version,
                  "reported_at", time_or_null(e->reported_at), "delta", delta);
    if (o == NULL)
        return -ENOMEM;
    *out = o;
    return 0;
}

int twin_desired_message(twin_t *t, const char *device_id, char **payload, size_t *len)
{
    entry_t *e = strmap_get(&t->cache, device_id, strlen(device_id));
    registry_device_t *d = registry_find(t->reg, device_id);
    if (d == NULL)
        return -ENOENT;
    if (e == NULL || e->key != d->key) {
        /* Not cached: build the message from the stored row without
         * caching it. Every device asks for this at each subscribe, and a
         * cache entry (two documents) per connected device would cost more
         * memory than the connection itself. */
        store_twin_t row;
        int rc = store_twin_get(t->st, d->key, &row);
        if (rc == -ENOENT) {
            *payload = strdup("{\"version\":0,\"state\":{}}");
            if (*payload == NULL)
                return -ENOMEM;
            *len = strlen(*payload);
            return 0;
        }
        if (rc < 0)
            return rc;
        size_t n = strlen(row.desired) + 48;
        char *s = malloc(n);
        if (s == NULL) {
            store_twin_fini(&row);
            return -ENOMEM;
        }
        /* The stored text is a compact JSON object written by this module. */
        int w = snprintf(s, n, "{\"version\":%lld,\"state\":%s}", (long long)row.desired_version,
                         row.desired);
        store_twin_fini(&row);
        *payload = s;
        *len = (size_t)w;
        return 0;
    }
    json_t *o =
        json_pack("{s:I, s:O}", "version", (json_int_t)e->desired_version, "state", e->desired);
    char *s = o ? json_util_dump(o) : NULL;
    json_decref(o);
    if (s == NULL)
        return -ENOMEM;
    *payload = s;
    *len = strlen(s);
    return 0;
}

/*
 * Job records live in a strmap by id. Counts are kept per state name in a
 * small fixed table; "pending" is the sum of the states that can still
 * change (queued and sent for commands, pending for twin patches).
 */
#include "commands/jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/strmap.h"
#include "common/util.h"

static const char *const states[] = {"queued",  "sent",    "succeeded", "failed", "rejected",
                                     "expired", "deleted", "pending",   "applied"};
#define NSTATES (sizeof(states) / sizeof(states[0]))

typedef struct jobrec {
    jobs_t *jobs;
    char id[40];
    char kind[16];
    char status[12];
    int64_t total, created_at, finished_at;
    int64_t counts[NSTATES];
    char *spec;
} jobrec_t;

struct jobs {
    store_t *st;
    registry_t *reg;
    commands_t *cmds;
    twin_t *twin;
    const config_t *cfg;
    strmap_t byid;
};

static int state_index(const char *s)
{
    for (size_t i = 0; i < NSTATES; i++) {
        if (strcmp(states[i], s) == 0)
            return (int)i;
    }
    return -1;
}

static int64_t pending(const jobrec_t *r)
{
    return r->counts[state_index("queued")] + r->counts[state_index("sent")] +
           r->counts[state_index("pending")];
}

static void rec_free(jobrec_t *r)
{
    if (r) {
        free(r->spec);
        free(r);
    }
}

static void persist(jobrec_t *r)
{
    store_job_t sj;
    memset(&sj, 0, sizeof(sj));
    snprintf(sj.id, sizeof(sj.id), "%s", r->id);
    snprintf(sj.kind, sizeof(sj.kind), "%s", r->kind);
    snprintf(sj.status, sizeof(sj.status), "%s", r->status);
    sj.spec = r->spec;
    sj.total = r->total;
    sj.created_at = r->created_at;
    sj.finished_at = r->finished_at;
    store_job_put(r->jobs->st, &sj, NULL, NULL);
}

static void maybe_done(jobrec_t *r)
{
    if (strcmp(r->status, "running") == 0 && pending(r) == 0) {
        snprintf(r->status, sizeof(r->status), "done");
        r->finished_at = util_now_ms();
        persist(r);
    }
}

struct counter {
    jobrec_t *r;
    char last[80]; /* the page's last key, for the next page */
};

static int count_cmd(void *arg, const store_command_t *c)
{
    struct counter *cnt = arg;
    int i = state_index(c->status);
    if (i >= 0)
        cnt->r->counts[i]++;
    snprintf(cnt->last, sizeof(cnt->last), "%s", c->id);
    return 0;
}

static int count_item(void *arg, const store_job_item_t *it)
{
    struct counter *cnt = arg;
    int i = state_index(it->status);
    if (i >= 0)
        cnt->r->counts[i]++;
    snprintf(cnt->last, sizeof(cnt->last), "%s", it->device_id);
    return 0;
}

/* The in-memory record of a job, rebuilt from the store if needed. */
static jobrec_t *rec_get(jobs_t *j, const char *id)
{
    jobrec_t *r = strmap_get(&j->byid, id, strlen(id));
    if (r != NULL)
        return r;
    store_job_t sj;
    if (store_job_get(j->st, id, &sj) < 0)
        return NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        store_job_fini(&sj);
        return NULL;
    }
    r->jobs = j;
    snprintf(r->id, sizeof(r->id), "%s", sj.id);
    snprintf(r->kind, sizeof(r->kind), "%s", sj.kind);
    snprintf(r->status, sizeof(r->status), "%s", sj.status);
    r->total = sj.total;
    r->created_at = sj.created_at;
    r->finished_at = sj.finished_at;
    r->spec = sj.spec;
    sj.spec = NULL;
    store_job_fini(&sj);
    /* Count every device's state, a page at a time. */
    struct counter cnt = {r, ""};
    for (;;) {
        int n;
        const char *after = cnt.last[0] ? cnt.last : NULL;
        char prev[80];
        snprintf(prev, sizeof(prev), "%s", cnt.last);
        if (strcmp(r->kind, "command") == 0)
            n = store_command_list_job(j->st, r->id, after, 1000, count_cmd, &cnt);
        else
            n = store_job_items_list(j->st, r->id, after, 1000, count_item, &cnt);
        if (n < 1000 || strcmp(prev, cnt.last) == 0)
            break;
    }
    if (strmap_put(&j->byid, r->id, strlen(r->id), r) < 0) {
        rec_free(r);
        return NULL;
    }
    return r;
}

static void job_hook(void *ctx, const char *job, const char *old_status, const char *new_status)
{
    jobs_t *j = ctx;
    jobrec_t *r = rec_get(j, job);
    if (r == NULL)
        return;
    int o = state_index(old_status), n = state_index(new_status);
    if (o >= 0 && r->counts[o] > 0)
        r->counts[o]--;
    if (n >= 0)
        r->counts[n]++;
    maybe_done(r);
}

int jobs_new(store_t *st, registry_t *reg, commands_t *cmds, twin_t *twin, const config_t *cfg,
             jobs_t **out)
{
    jobs_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    j->st = st;
    j->reg = reg;
    j->cmds = cmds;
    j->twin = twin;
    j->cfg = cfg;
    strmap_init(&j->byid);
    commands_set_job_hook(cmds, job_hook, j);
    *out = j;
    return 0;
}

void jobs_free(jobs_t *j)
{
    if (j == NULL)
        return;
    commands_set_job_hook(j->cmds, NULL, NULL);
    for (size_t i = 0; i < j->byid.cap; i++) {
        if (j->byid.slots[i].key)
            rec_free(j->byid.slots[i].val);
    }
    strmap_fini(&j->byid);
    free(j);
}

/* ---- Targets ------------------------------------------------------------ */

typedef struct idlist {
    char (*ids)[DROVER_ID_MAX + 1];
    size_t n, cap, max;
    bool over;
} idlist_t;

static int idlist_add(idlist_t *l, const char *id)
{
    if (l->n >= l->max) {
        l->over = true;
        return 1;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        void *p = realloc(l->ids, cap * sizeof(*l->ids));
        if (p == NULL)
            return -ENOMEM;
        l->ids = p;
        l->cap = cap;
    }
    snprintf(l->ids[l->n++], DROVER_ID_MAX + 1, "%s", id);
    return 0;
}

static int add_listed(void *arg, const store_device_t *d)
{
    return idlist_add(arg, d->id);
}

/* Resolves a target into device ids. */
static int resolve(jobs_t *j, const json_t *target, idlist_t *l, char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    l->max = j->cfg->max_bulk_devices;
    if (!json_is_object(target)) {
        snprintf(err, errlen,
                 "target must be {\"ids\": [...]}, {\"tag\": \"k=v\"} or "
                 "{\"all\": true}");
        return -EINVAL;
    }
    json_t *ids = json_object_get(target, "ids");
    json_t *tag = json_object_get(target, "tag");
    json_t *all = json_object_get(target, "all");
    if ((ids != NULL) + (tag != NULL) + (all != NULL) != 1) {
        snprintf(err, errlen, "target must name exactly one of ids, tag or all");
        return -EINVAL;
    }
    int rc = 0;
    if (ids != NULL) {
        if (!json_is_array(ids) || json_array_size(ids) == 0) {
            snprintf(err, errlen, "target.ids must be a non-empty array of device ids");
            return -EINVAL;
        }
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v)
        {
            const char *id = json_string_value(v);
            if (id == NULL || !util_id_valid(id, strlen(id))) {
                snprintf(err, errlen, "target.ids[%zu] is not a valid device id", i);
                rc = -EINVAL;
                goto fail;
            }
            if (registry_find(j->reg, id) == NULL) {
                snprintf(err, errlen, "unknown device '%s'", id);
                rc = -ENOENT;
                goto fail;
            }
            rc = idlist_add(l, id);
            if (rc != 0)
                break;
        }
    } else {
        char key[65] = "", *value = NULL;
        if (tag != NULL) {
            const char *t = json_string_value(tag);
            const char *eq = t ? strchr(t, '=') : NULL;
            if (eq == NULL || eq == t || (size_t)(eq - t) >= sizeof(key)) {
                snprintf(err, errlen, "target.tag must be \"key=value\"");
                return -EINVAL;
            }
            memcpy(key, t, (size_t)(eq - t));
            key[eq - t] = '\0';
            value = (char *)eq + 1;
        } else if (!json_is_true(all)) {
            snprintf(err, errlen, "target.all must be true");
            return -EINVAL;
        }
        char after[DROVER_ID_MAX + 1] = "";
        for (;;) {
            size_t before = l->n;
            rc = registry_list(j->reg, after, tag ? key : NULL, value, 1000, add_listed, l);
            if (rc < 0)
                goto fail;
            if (l->over || l->n == before)
                break;
            snprintf(after, sizeof(after), "%s", l->ids[l->n - 1]);
            if (rc < 1000)
                break;
        }
        rc = 0;
    }
    if (rc < 0)
        goto fail;
    if (l->over) {
        snprintf(err, errlen, "the target holds more than %zu devices (max_bulk_devices)", l->max);
        rc = -E2BIG;
        goto fail;
    }
    if (l->n == 0) {
        snprintf(err, errlen, "the target matches no device");
        rc = -ENOENT;
        goto fail;
    }
    return 0;
fail:
    free(l->ids);
    memset(l, 0, sizeof(*l));
    return rc;
}

static jobrec_t *rec_new(jobs_t *j, const char *kind, json_t *spec, size_t total)
{
    jobrec_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->jobs = j;
    uint8_t rnd[12];
    if (crypto_random(rnd, sizeof(rnd)) < 0)
        goto fail;
    memcpy(r->id, "job_", 4);
    util_hex_encode(rnd, sizeof(rnd), r->id + 4);
    snprintf(r->kind, sizeof(r->kind), "%s", kind);
    snprintf(r->status, sizeof(r->status), "running");
    r->total = (int64_t)total;
    r->created_at = util_now_ms();
    r->spec = json_util_dump(spec);
    if (r->spec == NULL || strmap_put(&j->byid, r->id, strlen(r->id), r) < 0)
        goto fail;
    return r;
fail:
    rec_free(r);
    return NULL;
}

static json_t *rec_json(const jobrec_t *r)
{
    json_t *counts = json_object();
    for (size_t i = 0; i < NSTATES; i++) {
        if (r->counts[i])
            json_object_set_new(counts, states[i], json_integer(r->counts[i]));
    }
    json_t *spec = json_loads(r->spec ? r->spec : "{}", 0, NULL);
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:o, s:o}", "id", r->id, "kind", r->kind,
                     "status", r->status, "total", (json_int_t)r->total, "created_at",
                     (json_int_t)r->created_at, "finished_at",
                     r->finished_at ? json_integer(r->finished_at) : json_null(), "counts", counts,
                     "spec", spec ? spec : json_object());
}

static void bulk_created(void *arg, int rc, size_t created)
{
    jobrec_t *r = arg;
    int q = state_index("queued");
    if (rc < 0) {
        r->counts[q] = 0;
        snprintf(r->status, sizeof(r->status), "failed");
        r->finished_at = util_now_ms();
        persist(r);
        return;
    }
    /* Devices deleted between resolving the target and the write. */
    int64_t missing = r->total - (int64_t)created;
    r->counts[q] -= missing;
    r->counts[state_index("deleted")] += missing;
    maybe_done(r);
}

int jobs_start_command(jobs_t *j, const json_t *target, const commands_spec_t *spec, json_t **out,
                       char *err, size_t errlen)
{
    int rc = commands_spec_check(j->cmds, spec, err, errlen);
    if (rc < 0)
        return rc;
    idlist_t l;
    rc = resolve(j, target, &l, err, errlen);
    if (rc < 0)
        return rc;
    json_t *params = spec->params ? json_incref((json_t *)spec->params) : json_object();
    json_t *specj = json_pack("{s:O, s:s, s:o, s:I}", "target", target, "name", spec->name,
                              "params", params, "timeout_s", (json_int_t)spec->timeout_s);
    jobrec_t *r = specj ? rec_new(j, "command", specj, l.n) : NULL;
    json_decref(specj);
    const char **ids = r ? malloc(l.n * sizeof(*ids)) : NULL;
    if (ids == NULL) {
        if (r) {
            strmap_del(&j->byid, r->id, strlen(r->id));
            rec_free(r);
        }
        free(l.ids);
        return -ENOMEM;
    }
    for (size_t i = 0; i < l.n; i++)
        ids[i] = l.ids[i];
    persist(r);
    /* Every command starts queued; the job hook moves them on, starting
     * with those the creation callback sends at once. */
    r->counts[state_index("queued")] = (int64_t)l.n;
    commands_create_bulk(j->cmds, r->id, ids, l.n, spec, bulk_created, r);
    free(ids);
    free(l.ids);
    *out = rec_json(r);
    return *out ? 0 : -ENOMEM;
}

typedef struct twinop {
    jobrec_t *r;
    int64_t key;
    char id[DROVER_ID_MAX + 1];
    char status[12];
} twinop_t;

/* The device's row is durable: only now does the job count it, so a job
 * that says "done" never shows a device still pending. */
static void item_written(void *arg, int rc, int64_t value)
{
    (void)value;
    twinop_t *op = arg;
    job_hook(op->r->jobs, op->r->id, "pending", rc == 0 ? op->status : "failed");
    free(op);
}

static void twin_applied(void *arg, int rc, int64_t version)
{
    (void)version;
    twinop_t *op = arg;
    jobrec_t *r = op->r;
    store_job_item_t it;
    memset(&it, 0, sizeof(it));
    registry_device_t *d = registry_find(r->jobs->reg, op->id);
    it.device_key = d ? d->key : op->key;
    snprintf(op->status, sizeof(op->status), "%s", rc == 0 ? "applied" : "failed");
    snprintf(it.status, sizeof(it.status), "%s", op->status);
    it.detail = rc == 0 ? NULL : strerror(-rc);
    store_job_items_put(r->jobs->st, r->id, &it, 1, item_written, op);
}

int jobs_start_twin(jobs_t *j, const json_t *target, const json_t *patch, json_t **out, char *err,
                    size_t errlen)
{
    if (!json_is_object(patch)) {
        snprintf(err, errlen, "patch must be a JSON object (an RFC 7396 merge patch)");
        return -EINVAL;
    }
    idlist_t l;
    int rc = resolve(j, target, &l, err, errlen);
    if (rc < 0)
        return rc;
    json_t *specj = json_pack("{s:O, s:O}", "target", target, "patch", patch);
    jobrec_t *r = specj ? rec_new(j, "twin", specj, l.n) : NULL;
    json_decref(specj);
    store_job_item_t *items = r ? calloc(l.n, sizeof(*items)) : NULL;
    if (items == NULL) {
        if (r) {
            strmap_del(&j->byid, r->id, strlen(r->id));
            rec_free(r);
        }
        free(l.ids);
        return -ENOMEM;
    }
    persist(r);
    size_t n = 0;
    for (size_t i = 0; i < l.n; i++) {
        registry_device_t *d = registry_find(j->reg, l.ids[i]);
        if (d == NULL)
            continue;
        items[n].device_key = d->key;
        snprintf(items[n].status, sizeof(items[n].status), "pending");
        n++;
    }
    store_job_items_put(j->st, r->id, items, n, NULL, NULL);
    free(items);
    r->counts[state_index("pending")] = (int64_t)n;
    r->counts[state_index("deleted")] = r->total - (int64_t)n;
    for (size_t i = 0; i < l.n; i++) {
        registry_device_t *d = registry_find(j->reg, l.ids[i]);
        if (d == NULL)
            continue;
        twinop_t *op = calloc(1, sizeof(*op));
        if (op == NULL) {
            job_hook(j, r->id, "pending", "failed");
            continue;
        }
        op->r = r;
        op->key = d->key;
        snprintf(op->id, sizeof(op->id), "%s", d->id);
        twin_desired_update(j->twin, d->id, patch, true, -1, twin_applied, op);
    }
    free(l.ids);
    maybe_done(r);
    *out = rec_json(r);
    return *out ? 0 : -ENOMEM;
}

struct page {
    json_t *arr;
    char last[80];
};

static int page_cmd(void *arg, const store_command_t *c)
{
    struct page *p = arg;
    json_array_append_new(p->arr, json_pack("{s:s, s:s, s:s}", "device", c->device_id, "command",
                                            c->id, "status", c->status));
    snprintf(p->last, sizeof(p->last), "%s", c->id);
    return 0;
}

static int page_item(void *arg, const store_job_item_t *it)
{
    struct page *p = arg;
    json_t *o = json_pack("{s:s, s:s}", "device", it->device_id, "status", it->status);
    if (o != NULL && it->detail != NULL)
        json_object_set_new(o, "detail", json_string(it->detail));
    json_array_append_new(p->arr, o);
    snprintf(p->last, sizeof(p->last), "%s", it->device_id);
    return 0;
}

int jobs_get(jobs_t *j, const char *id, const char *after, int limit, json_t **out)
{
    jobrec_t *r = rec_get(j, id);
    if (r == NULL)
        return -ENOENT;
    struct page p = {json_array(), ""};
    if (p.arr == NULL)
        return -ENOMEM;
    int n;
    if (strcmp(r->kind, "command") == 0)
        n = store_command_list_job(j->st, r->id, after, limit, page_cmd, &p);
    else
        n = store_job_items_list(j->st, r->id, after, limit, page_item, &p);
    if (n < 0) {
        json_decref(p.arr);
        return n;
    }
    json_t *o = rec_json(r);
    if (o == NULL) {
        json_decref(p.arr);
        return -ENOMEM;
    }
    json_object_set_new(o, "devices", p.arr);
    json_object_set_new(o, "next", n == limit && p.last[0] ? json_string(p.last) : json_null());
    *out = o;
    return 0;
}

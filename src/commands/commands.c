/*
 * Open commands in memory: a strmap by command id and, per device, a
 * doubly linked list (a strmap from device id to its list head), so that
 * delivery on subscribe touches only that device's commands. A command
 * leaves the open set only after its final state is durable; while that
 * write is in flight it is marked `ending`, so a second result for it is
 * refused and the expiry sweep leaves it alone.
 */
#include "commands/commands.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/strmap.h"
#include "common/util.h"

typedef struct ocmd ocmd_t;

struct commands_waiter {
    commands_t *c;
    char id[40];
    struct event *timer;
    commands_done_fn done;
    void *arg;
    commands_waiter_t *prev, *next; /* c->waiters */
};

struct ocmd {
    store_command_t cmd; /* params owned; result unused */
    bool ending;
    ocmd_t *dprev, *dnext; /* the device's list */
};

typedef struct devlist {
    char id[DROVER_ID_MAX + 1];
    ocmd_t *head;
    size_t n;
} devlist_t;

struct commands {
    struct event_base *base;
    store_t *st;
    registry_t *reg;
    const config_t *cfg;
    strmap_t byid;  /* id -> ocmd_t */
    strmap_t bydev; /* device id -> devlist_t */
    commands_waiter_t *waiters;
    struct event *sweep;
    commands_send_fn send;
    void *send_ctx;
    commands_job_fn job;
    void *job_ctx;
};

static void ocmd_free(ocmd_t *o)
{
    free(o->cmd.params);
    free(o);
}

static devlist_t *devlist(commands_t *c, const char *id, bool create)
{
    devlist_t *l = strmap_get(&c->bydev, id, strlen(id));
    if (l != NULL || !create)
        return l;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    snprintf(l->id, sizeof(l->id), "%s", id);
    if (strmap_put(&c->bydev, l->id, strlen(l->id), l) < 0) {
        free(l);
        return NULL;
    }
    return l;
}

/* Adds a stored command to the open set (takes a copy of params). */
static ocmd_t *open_add(commands_t *c, const store_command_t *cmd)
{
    ocmd_t *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->cmd = *cmd;
    o->cmd.params = strdup(cmd->params ? cmd->params : "{}");
    o->cmd.result = NULL;
    devlist_t *l = devlist(c, cmd->device_id, true);
    if (o->cmd.params == NULL || l == NULL ||
        strmap_put(&c->byid, o->cmd.id, strlen(o->cmd.id), o) < 0) {
        ocmd_free(o);
        return NULL;
    }
    /* Append, so a device gets its commands in creation order. */
    ocmd_t **pp = &l->head, *prev = NULL;
    while (*pp) {
        prev = *pp;
        pp = &(*pp)->dnext;
    }
    *pp = o;
    o->dprev = prev;
    l->n++;
    return o;
}

static void open_remove(commands_t *c, ocmd_t *o)
{
    strmap_del(&c->byid, o->cmd.id, strlen(o->cmd.id));
    devlist_t *l = devlist(c, o->cmd.device_id, false);
    if (l != NULL) {
        if (o->dprev)
            o->dprev->dnext = o->dnext;
        else
            l->head = o->dnext;
        if (o->dnext)
            o->dnext->dprev = o->dprev;
        if (--l->n == 0) {
            strmap_del(&c->bydev, l->id, strlen(l->id));
            free(l);
        }
    }
    ocmd_free(o);
}

static int load_one(void *arg, const store_command_t *cmd)
{
    return open_add(arg, cmd) ? 0 : -ENOMEM;
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg);

int commands_new(struct event_base *base, store_t *st, registry_t *reg, const config_t *cfg,
                 commands_t **out)
{
    commands_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->base = base;
    c->st = st;
    c->reg = reg;
    c->cfg = cfg;
    strmap_init(&c->byid);
    strmap_init(&c->bydev);
    int rc = store_command_foreach_open(st, load_one, c);
    if (rc < 0)
        goto fail;
    c->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, c);
    if (c->sweep == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    struct timeval tv = {0, 250000};
    event_add(c->sweep, &tv);
    *out = c;
    return 0;
fail:
    commands_free(c);
    return rc;
}

void commands_free(commands_t *c)
{
    if (c == NULL)
        return;
    if (c->sweep)
        event_free(c->sweep);
    while (c->waiters)
        commands_wait_cancel(c->waiters);
    for (size_t i = 0; i < c->byid.cap; i++) {
        if (c->byid.slots[i].key)
            ocmd_free(c->byid.slots[i].val);
    }
    for (size_t i = 0; i < c->bydev.cap; i++) {
        if (c->bydev.slots[i].key)
            free(c->bydev.slots[i].val);
    }
    strmap_fini(&c->byid);
    strmap_fini(&c->bydev);
    free(c);
}

void commands_set_sender(commands_t *c, commands_send_fn fn, void *ctx)
{
    c->send = fn;
    c->send_ctx = ctx;
}

void commands_set_job_hook(commands_t *c, commands_job_fn fn, void *ctx)
{
    c->job = fn;
    c->job_ctx = ctx;
}

size_t commands_open_count(const commands_t *c)
{
    return c->byid.count;
}

json_t *commands_json(const store_command_t *cmd)
{
    json_t *params = cmd->params ? json_loads(cmd->params, JSON_DECODE_ANY, NULL) : NULL;
    json_t *result = cmd->result ? json_loads(cmd->result, JSON_DECODE_ANY, NULL) : NULL;
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:o, s:s, s:o, s:I, s:o, s:o, s:I}", "id", cmd->id, "device",
                  cmd->device_id, "name", cmd->name, "params", params ? params : json_object(),
                  "status", cmd->status, "result", result ? result : json_null(), "created_at",
                  (json_int_t)cmd->created_at, "sent_at",
                  cmd->sent_at ? json_integer(cmd->sent_at) : json_null(), "finished_at",
                  cmd->finished_at ? json_integer(cmd->finished_at) : json_null(), "expires_at",
                  (json_int_t)cmd->expires_at);
    if (o != NULL && cmd->job[0])
        json_object_set_new(o, "job", json_string(cmd->job));
    return o;
}

/* The message a device receives on devices/{id}/commands/{cid}. */
static char *command_message(const store_command_t *cmd)
{
    json_t *params = json_loads(cmd->params ? cmd->params : "{}", JSON_DECODE_ANY, NULL);
    json_t *o =
        json_pack("{s:s, s:s, s:o, s:I}", "id", cmd->id, "name", cmd->name, "params",
                  params ? params : json_object(), "expires_at", (json_int_t)cmd->expires_at);
    char *s = o ? json_util_dump(o) : NULL;
    json_decref(o);
    return s;
}

static void set_status(commands_t *c, ocmd_t *o, const char *status)
{
    char old[12];
    snprintf(old, sizeof(old), "%s", o->cmd.status);
    snprintf(o->cmd.status, sizeof(o->cmd.status), "%s", status);
    if (o->cmd.job[0] && c->job)
        c->job(c->job_ctx, o->cmd.job, old, status);
}

/* Final states: write, then leave the open set, tell the job and waiters. */
typedef struct endop {
    commands_t *c;
    char id[40];
    char status[12];
    commands_result_fn done;
    void *arg;
} endop_t;

static void fire_waiters(commands_t *c, const char *id)
{
    store_command_t cmd;
    bool have = false;
    for (commands_waiter_t *w = c->waiters, *next; w; w = next) {
        next = w->next;
        if (strcmp(w->id, id) != 0)
            continue;
        if (!have) {
            if (commands_get(c, id, &cmd) < 0)
                return; /* gone with its device: the timers answer */
            have = true;
        }
        commands_done_fn done = w->done;
        void *arg = w->arg;
        commands_wait_cancel(w);
        done(arg, 0, &cmd);
    }
    if (have)
        store_command_fini(&cmd);
}

static void end_done(void *arg, int rc, int64_t value)
{
    (void)value;
    endop_t *op = arg;
    commands_t *c = op->c;
    ocmd_t *o = strmap_get(&c->byid, op->id, strlen(op->id));
    if (o != NULL) {
        if (rc == 0 || rc == -ENOENT) {
            set_status(c, o, op->status);
            open_remove(c, o);
        } else {
            o->ending = false; /* try again: a later result or the sweep */
        }
    }
    if (rc == 0)
        fire_waiters(c, op->id);
    if (op->done)
        op->done(op->arg, rc);
    free(op);
}

static int end_command(commands_t *c, ocmd_t *o, const char *status, const char *result,
                       commands_result_fn done, void *arg)
{
    endop_t *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return -ENOMEM;
    op->c = c;
    snprintf(op->id, sizeof(op->id), "%s", o->cmd.id);
    snprintf(op->status, sizeof(op->status), "%s", status);
    op->done = done;
    op->arg = arg;
    o->ending = true;
    store_command_update(c->st, o->cmd.id, status, result, 0, util_now_ms(), end_done, op);
    return 0;
}

/* Offers an open command to its device; marks it sent if taken. */
static void offer(commands_t *c, ocmd_t *o, int64_t now)
{
    if (o->ending || c->send == NULL)
        return;
    if (o->cmd.expires_at <= now) {
        end_command(c, o, "expired", NULL, NULL, NULL);
        return;
    }
    char *msg = command_message(&o->cmd);
    if (msg == NULL)
        return;
    char topic[160];
    snprintf(topic, sizeof(topic), "devices/%s/commands/%s", o->cmd.device_id, o->cmd.id);
    bool taken = c->send(c->send_ctx, o->cmd.device_id, topic, msg, strlen(msg));
    free(msg);
    if (taken && strcmp(o->cmd.status, "queued") == 0) {
        o->cmd.sent_at = now;
        set_status(c, o, "sent");
        store_command_update(c->st, o->cmd.id, "sent", NULL, now, 0, NULL, NULL);
    }
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    commands_t *c = arg;
    int64_t now = util_now_ms();
    /* Collect first: ending a command may change the map. */
    size_t n = 0, cap = 0;
    ocmd_t **due = NULL;
    for (size_t i = 0; i < c->byid.cap; i++) {
        ocmd_t *o = c->byid.slots[i].key ? c->byid.slots[i].val : NULL;
        if (o == NULL || o->ending || o->cmd.expires_at > now)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            ocmd_t **d = realloc(due, ncap * sizeof(*d));
            if (d == NULL)
                break;
            due = d;
            cap = ncap;
        }
        due[n++] = o;
    }
    for (size_t i = 0; i < n; i++)
        end_command(c, due[i], "expired", NULL, NULL, NULL);
    free(due);
}

int commands_spec_check(const commands_t *c, const commands_spec_t *spec, char *err, size_t errlen)
{
    if (spec->name == NULL || !util_id_valid(spec->name, strlen(spec->name))) {
        snprintf(err, errlen, "name must be 1 to 64 characters of [A-Za-z0-9._-]");
        return -EINVAL;
    }
    if (spec->params != NULL && !json_is_object(spec->params)) {
        snprintf(err, errlen, "params must be a JSON object");
        return -EINVAL;
    }
    if (spec->timeout_s < 0 || spec->timeout_s > (int64_t)c->cfg->max_command_timeout_s) {
        snprintf(err, errlen, "timeout_s must be between 1 and %u", c->cfg->max_command_timeout_s);
        return -EINVAL;
    }
    if (spec->params != NULL) {
        char *s = json_util_dump(spec->params);
        size_t len = s ? strlen(s) : 0;
        free(s);
        if (len > c->cfg->max_command_bytes) {
            snprintf(err, errlen, "params of %zu bytes are over the %u-byte limit", len,
                     c->cfg->max_command_bytes);
            return -E2BIG;
        }
    }
    return 0;
}

/* Fills cmd for a new command of device d (params text malloc'd). */
static int make_command(commands_t *c, const registry_device_t *d, const commands_spec_t *spec,
                        const char *job, int64_t now, store_command_t *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
    uint8_t rnd[16];
    if (crypto_random(rnd, sizeof(rnd)) < 0)
        return -EIO;
    memcpy(cmd->id, "cmd_", 4);
    util_hex_encode(rnd, sizeof(rnd), cmd->id + 4);
    cmd->device_key = d->key;
    snprintf(cmd->device_id, sizeof(cmd->device_id), "%s", d->id);
    snprintf(cmd->name, sizeof(cmd->name), "%s", spec->name);
    cmd->params = spec->params ? json_util_dump(spec->params) : strdup("{}");
    if (cmd->params == NULL)
        return -ENOMEM;
    snprintf(cmd->status, sizeof(cmd->status), "queued");
    cmd->created_at = now;
    int64_t timeout = spec->timeout_s > 0 ? spec->timeout_s : c->cfg->command_timeout_s;
    cmd->expires_at = now + timeout * 1000;
    snprintf(cmd->job, sizeof(cmd->job), "%s", job ? job : "");
    return 0;
}

typedef struct createop {
    commands_t *c;
    store_command_t *cmds;
    size_t n;
    commands_done_fn done;
    commands_bulk_fn bulk_done;
    void *arg;
} createop_t;

static void createop_free(createop_t *op)
{
    for (size_t i = 0; i < op->n; i++)
        free(op->cmds[i].params);
    free(op->cmds);
    free(op);
}

static void create_done(void *arg, int rc, int64_t value)
{
    (void)value;
    createop_t *op = arg;
    commands_t *c = op->c;
    int64_t now = util_now_ms();
    if (rc == 0) {
        for (size_t i = 0; i < op->n; i++) {
            ocmd_t *o = open_add(c, &op->cmds[i]);
            if (o != NULL) {
                offer(c, o, now);
                /* Report what is known now (queued or sent). */
                snprintf(op->cmds[i].status, sizeof(op->cmds[i].status), "%s", o->cmd.status);
                op->cmds[i].sent_at = o->cmd.sent_at;
            }
        }
    }
    if (op->done)
        op->done(op->arg, rc, rc == 0 ? &op->cmds[0] : NULL);
    if (op->bulk_done)
        op->bulk_done(op->arg, rc, rc == 0 ? op->n : 0);
    createop_free(op);
}

void commands_create(commands_t *c, const char *device_id, const commands_spec_t *spec,
                     commands_done_fn done, void *arg)
{
    char err[128];
    int rc = commands_spec_check(c, spec, err, sizeof(err));
    if (rc < 0)
        goto fail;
    registry_device_t *d = registry_find(c->reg, device_id);
    if (d == NULL) {
        rc = -ENOENT;
        goto fail;
    }
    devlist_t *l = devlist(c, device_id, false);
    if (l != NULL && l->n >= c->cfg->max_open_commands) {
        rc = -EBUSY;
        goto fail;
    }
    createop_t *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    op->c = c;
    op->done = done;
    op->arg = arg;
    op->cmds = calloc(1, sizeof(*op->cmds));
    if (op->cmds == NULL) {
        free(op);
        rc = -ENOMEM;
        goto fail;
    }
    op->n = 1;
    rc = make_command(c, d, spec, NULL, util_now_ms(), &op->cmds[0]);
    if (rc < 0) {
        createop_free(op);
        goto fail;
    }
    store_command_insert(c->st, op->cmds, 1, create_done, op);
    return;
fail:
    if (done)
        done(arg, rc, NULL);
}

void commands_create_bulk(commands_t *c, const char *job, const char *const *ids, size_t n,
                          const commands_spec_t *spec, commands_bulk_fn done, void *arg)
{
    createop_t *op = calloc(1, sizeof(*op));
    if (op == NULL)
        goto nomem;
    op->c = c;
    op->bulk_done = done;
    op->arg = arg;
    op->cmds = calloc(n ? n : 1, sizeof(*op->cmds));
    if (op->cmds == NULL)
        goto nomem;
    int64_t now = util_now_ms();
    for (size_t i = 0; i < n; i++) {
        registry_device_t *d = registry_find(c->reg, ids[i]);
        if (d == NULL)
            continue;
        if (make_command(c, d, spec, job, now, &op->cmds[op->n]) < 0)
            goto nomem;
        op->n++;
    }
    store_command_insert(c->st, op->cmds, op->n, create_done, op);
    return;
nomem:
    if (op)
        createop_free(op);
    if (done)
        done(arg, -ENOMEM, 0);
}

int commands_get(commands_t *c, const char *id, store_command_t *out)
{
    int rc = store_command_get(c->st, id, out);
    if (rc < 0)
        return rc;
    /* The open set may be ahead of the database by a queued write. */
    ocmd_t *o = strmap_get(&c->byid, id, strlen(id));
    if (o != NULL && !o->ending) {
        snprintf(out->status, sizeof(out->status), "%s", o->cmd.status);
        if (o->cmd.sent_at)
            out->sent_at = o->cmd.sent_at;
    }
    return 0;
}

int commands_list(commands_t *c, const char *device_id, int64_t before_ts, const char *before_id,
                  int limit, int (*fn)(void *arg, const store_command_t *cmd), void *arg)
{
    registry_device_t *d = registry_find(c->reg, device_id);
    if (d == NULL)
        return -ENOENT;
    return store_command_list(c->st, d->key, before_ts, before_id, limit, fn, arg);
}

static void wait_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    commands_waiter_t *w = arg;
    commands_t *c = w->c;
    store_command_t cmd;
    int rc = commands_get(c, w->id, &cmd);
    commands_done_fn done = w->done;
    void *darg = w->arg;
    commands_wait_cancel(w);
    if (rc < 0) {
        done(darg, rc, NULL);
        return;
    }
    done(darg, -ETIMEDOUT, &cmd);
    store_command_fini(&cmd);
}

commands_waiter_t *commands_wait(commands_t *c, const char *id, int64_t timeout_ms,
                                 commands_done_fn done, void *arg)
{
    store_command_t cmd;
    int rc = commands_get(c, id, &cmd);
    if (rc < 0) {
        done(arg, rc, NULL);
        return NULL;
    }
    ocmd_t *o = strmap_get(&c->byid, id, strlen(id));
    if (o == NULL || timeout_ms <= 0) {
        done(arg, o == NULL ? 0 : -ETIMEDOUT, &cmd);
        store_command_fini(&cmd);
        return NULL;
    }
    store_command_fini(&cmd);
    commands_waiter_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        done(arg, -ENOMEM, NULL);
        return NULL;
    }
    w->c = c;
    snprintf(w->id, sizeof(w->id), "%s", id);
    w->done = done;
    w->arg = arg;
    w->timer = evtimer_new(c->base, wait_timeout, w);
    if (w->timer == NULL) {
        free(w);
        done(arg, -ENOMEM, NULL);
        return NULL;
    }
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    evtimer_add(w->timer, &tv);
    w->next = c->waiters;
    if (c->waiters)
        c->waiters->prev = w;
    c->waiters = w;
    return w;
}

void commands_wait_cancel(commands_waiter_t *w)
{
    if (w == NULL)
        return;
    commands_t *c = w->c;
    if (w->prev)
        w->prev->next = w->next;
    else
        c->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    event_free(w->timer);
    free(w);
}

void commands_device_ready(commands_t *c, const char *device_id)
{
    devlist_t *l = devlist(c, device_id, false);
    if (l == NULL)
        return;
    int64_t now = util_now_ms();
    /* offer() may end (expire) a command, which unlinks it: walk safely. */
    size_t n = l->n;
    ocmd_t **list = malloc(n * sizeof(*list));
    if (list == NULL)
        return;
    size_t k = 0;
    for (ocmd_t *o = l->head; o && k < n; o = o->dnext)
        list[k++] = o;
    for (size_t i = 0; i < k; i++)
        offer(c, list[i], now);
    free(list);
}

int commands_result(commands_t *c, const char *device_id, const char *cid, const char *payload,
                    size_t len, commands_result_fn done, void *arg, char *err, size_t errlen)
{
    ocmd_t *o = strmap_get(&c->byid, cid, strlen(cid));
    if (o == NULL || strcmp(o->cmd.device_id, device_id) != 0) {
        if (o == NULL) {
            store_command_t cmd;
            if (store_command_get(c->st, cid, &cmd) == 0) {
                bool mine = strcmp(cmd.device_id, device_id) == 0;
                store_command_fini(&cmd);
                if (mine) {
                    snprintf(err, errlen, "command %s has already ended", cid);
                    return -EALREADY;
                }
            }
        }
        snprintf(err, errlen, "no command %s for this device", cid);
        return -ENOENT;
    }
    if (o->ending) {
        snprintf(err, errlen, "command %s has already ended", cid);
        return -EALREADY;
    }
    char jerr[128];
    json_t *p = json_util_parse(payload, len, jerr, sizeof(jerr));
    if (p == NULL) {
        snprintf(err, errlen, "invalid JSON: %s", jerr);
        return -EINVAL;
    }
    int rc = -EINVAL;
    char *result = NULL;
    const char *status = json_string_value(json_object_get(p, "status"));
    if (!json_is_object(p) || status == NULL ||
        (strcmp(status, "succeeded") != 0 && strcmp(status, "failed") != 0 &&
         strcmp(status, "rejected") != 0)) {
        snprintf(err, errlen,
                 "a result is {\"status\": \"succeeded\"|\"failed\"|\"rejected\", "
                 "\"output\": ...}");
        goto out;
    }
    json_t *output = json_object_get(p, "output");
    result = json_util_dump(output ? output : json_null());
    if (result == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (strlen(result) > c->cfg->max_command_bytes) {
        snprintf(err, errlen, "output over the %u-byte limit", c->cfg->max_command_bytes);
        rc = -E2BIG;
        goto out;
    }
    rc = end_command(c, o, status, result, done, arg);
out:
    free(result);
    json_decref(p);
    return rc;
}

void commands_forget_device(commands_t *c, const char *device_id)
{
    devlist_t *l = devlist(c, device_id, false);
    while (l != NULL && l->head != NULL) {
        ocmd_t *o = l->head;
        bool last = l->n == 1;
        if (o->cmd.job[0] && c->job)
            c->job(c->job_ctx, o->cmd.job, o->cmd.status, "deleted");
        open_remove(c, o); /* frees l with the last one */
        if (last)
            break;
    }
}

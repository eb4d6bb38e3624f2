/*
 * The device registry: the in-memory table of every device, its credential
 * and its presence, kept in step with the store.
 *
 * Table. An open-addressing hash table with linear probing over an array of
 * {hash, device *} slots whose size is a power of two, grown (doubled and
 * rehashed) before it is 70% full and never shrunk. Deletion shifts the
 * following cluster back instead of leaving tombstones, so lookups stay
 * short however many devices come and go. Each device is its own heap
 * object, so the registry_device_t pointers handed out stay put when the
 * table grows. 100k devices cost about 4 MiB of slots plus the devices.
 * The hash is FNV-1a over the id, seeded per process from the CSPRNG and
 * finished with a 64-bit mixer: ids are chosen by operators, not by the
 * network, and a connecting client can only look ids up, never add them,
 * so it cannot build the long clusters a keyed hash like SipHash guards
 * against; the seed still keeps the layout unpredictable.
 *
 * Credentials. A device's secret is 256 random bits; the table keeps a
 * 16-byte random salt and HMAC-SHA-256(salt, secret). Authentication
 * recomputes the HMAC and compares in constant time. An unknown id is
 * checked against a random dummy credential with the same work, so the
 * answer time does not tell which ids exist.
 *
 * Durability. create, delete and rotate go to the store first; the table
 * changes only in the store's completion callback, once the change is
 * committed, so the table never shows what a crash could take back.
 * Pending operations are linked to the registry; registry_free detaches
 * them, so a completion that arrives later (store_close drains) still runs
 * the caller's callback but no longer touches the freed table.
 *
 * Presence (online, last_seen) lives in memory and is written behind:
 * connect and disconnect submit a presence write at once, other traffic
 * only marks last_seen dirty and registry_flush writes the dirty ones. The
 * API's reads take presence from memory, which is always fresher. At start
 * no device is connected, so devices the store still shows online (the
 * last run ended without a clean disconnect) are written back offline.
 *
 * Loop thread only.
 */
#include "registry/registry.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    uint64_t hash;
    registry_device_t *dev; /* NULL: empty */
};

enum op_kind { OP_CREATE, OP_DELETE, OP_ROTATE, OP_REVOKE };

/* One create/delete/rotate waiting for the store. */
struct op {
    registry_t *reg; /* NULL once the registry is freed */
    struct op *prev, *next;
    enum op_kind kind;
    char id[DROVER_ID_MAX + 1];
    int64_t key;
    uint8_t salt[CRYPTO_SALT_LEN];
    uint8_t hash[CRYPTO_HASH_LEN];
    char secret[CRYPTO_SECRET_LEN + 1];
    registry_secret_fn secret_done;
    registry_done_fn done;
    void *arg;
};

struct registry {
    store_t *st;
    struct slot *slots;
    size_t cap; /* power of two */
    size_t count;
    size_t online;
    uint64_t seed;
    registry_revoke_fn revoke;
    void *revoke_ctx;
    uint8_t dummy_salt[CRYPTO_SALT_LEN];
    uint8_t dummy_hash[CRYPTO_HASH_LEN];
    struct op *ops;
};

#define INITIAL_CAP 1024

/* ---- Hash table ---------------------------------------------------------- */

static uint64_t hash_id(const registry_t *reg, const char *id, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ reg->seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 0x100000001b3ULL;
    }
    /* splitmix64 finaliser: FNV's low bits alone cluster badly. */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

/* Slot holding id, or the empty slot where it would go. */
static size_t probe(const registry_t *reg, const char *id, uint64_t h)
{
    size_t mask = reg->cap - 1;
    size_t i = (size_t)h & mask;
    while (reg->slots[i].dev != NULL) {
        if (reg->slots[i].hash == h && strcmp(reg->slots[i].dev->id, id) == 0)
            break;
        i = (i + 1) & mask;
    }
    return i;
}

static int grow(registry_t *reg)
{
    size_t ncap = reg->cap * 2;
    struct slot *ns = calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < reg->cap; i++) {
        if (reg->slots[i].dev == NULL)
            continue;
        size_t j = (size_t)reg->slots[i].hash & (ncap - 1);
        while (ns[j].dev != NULL)
            j = (j + 1) & (ncap - 1);
        ns[j] = reg->slots[i];
    }
    free(reg->slots);
    reg->slots = ns;
    reg->cap = ncap;
    return 0;
}

/* Adds d (the table takes ownership). -EEXIST if its id is present. */
static int table_add(registry_t *reg, registry_device_t *d)
{
    if ((reg->count + 1) * 10 > reg->cap * 7) {
        int rc = grow(reg);
        if (rc < 0)
            return rc;
    }
    uint64_t h = hash_id(reg, d->id, strlen(d->id));
    size_t i = probe(reg, d->id, h);
    if (reg->slots[i].dev != NULL)
        return -EEXIST;
    reg->slots[i].hash = h;
    reg->slots[i].dev = d;
    reg->count++;
    if (d->online)
        reg->online++;
    return 0;
}

/* Removes and frees d, which must be in the table. */
static void table_remove(registry_t *reg, registry_device_t *d)
{
    size_t mask = reg->cap - 1;
    uint64_t h = hash_id(reg, d->id, strlen(d->id));
    size_t i = probe(reg, d->id, h);
    if (reg->slots[i].dev != d)
        return;
    reg->slots[i].dev = NULL;
    /* Backward shift: pull later members of the cluster into the hole
     * unless their home slot lies cyclically in (hole, j]. */
    for (size_t j = (i + 1) & mask; reg->slots[j].dev != NULL; j = (j + 1) & mask) {
        size_t home = (size_t)reg->slots[j].hash & mask;
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        reg->slots[i] = reg->slots[j];
        reg->slots[j].dev = NULL;
        i = j;
    }
    reg->count--;
    if (d->online)
        reg->online--;
    free(d);
}

registry_device_t *registry_find(registry_t *reg, const char *id)
{
    if (id == NULL)
        return NULL;
    size_t len = strnlen(id, DROVER_ID_MAX + 1);
    if (len == 0 || len > DROVER_ID_MAX)
        return NULL;
    size_t i = probe(reg, id, hash_id(reg, id, len));
    return reg->slots[i].dev;
}

size_t registry_count(const registry_t *reg)
{
    return reg->count;
}

size_t registry_online_count(const registry_t *reg)
{
    return reg->online;
}

/* ---- Life cycle ---------------------------------------------------------- */

struct load {
    registry_t *reg;
    int rc;
};

static int load_one(void *arg, const store_device_t *sd)
{
    struct load *l = arg;
    registry_device_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        l->rc = -ENOMEM;
        return -ENOMEM;
    }
    d->key = sd->key;
    memcpy(d->id, sd->id, sizeof(d->id));
    d->id[DROVER_ID_MAX] = '\0';
    memcpy(d->salt, sd->salt, sizeof(d->salt));
    memcpy(d->secret_hash, sd->secret_hash, sizeof(d->secret_hash));
    d->last_seen = sd->last_seen;
    d->last_seq = sd->last_seq;
    d->revoked = sd->revoked_at != 0;
    d->online = false;
    int rc = table_add(l->reg, d);
    if (rc < 0) {
        free(d);
        if (rc != -EEXIST) { /* ids are unique in the store; skip, don't fail */
            l->rc = rc;
            return rc;
        }
        return 0;
    }
    if (sd->online) /* stale from a run that did not end cleanly */
        store_device_set_presence(l->reg->st, d->key, false, d->last_seen, NULL, NULL);
    return 0;
}

int registry_new(store_t *st, registry_t **out)
{
    int rc;
    registry_t *reg = calloc(1, sizeof(*reg));
    if (reg == NULL)
        return -ENOMEM;
    reg->st = st;
    reg->cap = INITIAL_CAP;
    reg->slots = calloc(reg->cap, sizeof(*reg->slots));
    if (reg->slots == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = crypto_random((uint8_t *)&reg->seed, sizeof(reg->seed))) < 0 ||
        (rc = crypto_random(reg->dummy_salt, sizeof(reg->dummy_salt))) < 0 ||
        (rc = crypto_random(reg->dummy_hash, sizeof(reg->dummy_hash))) < 0)
        goto fail;

    struct load l = {reg, 0};
    rc = store_device_foreach(st, load_one, &l);
    if (l.rc < 0)
        rc = l.rc;
    if (rc < 0)
        goto fail;
    *out = reg;
    return 0;

fail:
    registry_free(reg);
    return rc;
}

void registry_free(registry_t *reg)
{
    if (reg == NULL)
        return;
    for (struct op *op = reg->ops; op != NULL; op = op->next)
        op->reg = NULL;
    if (reg->slots != NULL) {
        for (size_t i = 0; i < reg->cap; i++)
            free(reg->slots[i].dev);
        free(reg->slots);
    }
    free(reg);
}

void registry_set_revoke_hook(registry_t *reg, registry_revoke_fn fn, void *ctx)
{
    reg->revoke = fn;
    reg->revoke_ctx = ctx;
}

/* ---- Authentication ------------------------------------------------------ */

int registry_authenticate(registry_t *reg, const char *id, const char *secret, size_t len)
{
    registry_device_t *d = registry_find(reg, id);
    const uint8_t *salt = d != NULL ? d->salt : reg->dummy_salt;
    const uint8_t *want = d != NULL ? d->secret_hash : reg->dummy_hash;
    uint8_t got[CRYPTO_HASH_LEN];
    crypto_hash_secret(salt, secret != NULL ? secret : "", secret != NULL ? len : 0, got);
    int equal = crypto_equal(got, want, sizeof(got));
    OPENSSL_cleanse(got, sizeof(got));
    if (d == NULL)
        return -ENOENT;
    return equal && !d->revoked ? 0 : -EACCES;
}

/* ---- Presence ------------------------------------------------------------ */

void registry_set_online(registry_t *reg, registry_device_t *d, int64_t now)
{
    if (!d->online) {
        d->online = true;
        reg->online++;
    }
    d->last_seen = now;
    d->dirty = false;
    store_device_set_presence(reg->st, d->key, true, now, NULL, NULL);
}

void registry_set_offline(registry_t *reg, registry_device_t *d, int64_t now)
{
    if (d->online) {
        d->online = false;
        reg->online--;
    }
    d->last_seen = now;
    d->dirty = false;
    store_device_set_presence(reg->st, d->key, false, now, NULL, NULL);
}

void registry_touch(registry_device_t *d, int64_t now)
{
    if (now > d->last_seen) {
        d->last_seen = now;
        d->dirty = true;
    }
}

void registry_flush(registry_t *reg)
{
    for (size_t i = 0; i < reg->cap; i++) {
        registry_device_t *d = reg->slots[i].dev;
        if (d == NULL || !d->dirty)
            continue;
        d->dirty = false;
        store_device_set_presence(reg->st, d->key, d->online, d->last_seen, NULL, NULL);
    }
}

/* ---- Durable changes ----------------------------------------------------- */

static struct op *op_new(registry_t *reg, enum op_kind kind, const char *id)
{
    struct op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->reg = reg;
    op->kind = kind;
    size_t len = strnlen(id, DROVER_ID_MAX);
    memcpy(op->id, id, len);
    op->id[len] = '\0';
    op->next = reg->ops;
    if (reg->ops != NULL)
        reg->ops->prev = op;
    reg->ops = op;
    return op;
}

static void op_free(struct op *op)
{
    if (op->reg != NULL) {
        if (op->prev != NULL)
            op->prev->next = op->next;
        else
            op->reg->ops = op->next;
        if (op->next != NULL)
            op->next->prev = op->prev;
    }
    OPENSSL_cleanse(op->secret, sizeof(op->secret));
    free(op);
}

/* Fresh secret, salt and hash into op. */
static int op_new_secret(struct op *op)
{
    int rc = crypto_secret_new("", op->secret, sizeof(op->secret));
    if (rc < 0)
        return rc;
    rc = crypto_random(op->salt, sizeof(op->salt));
    if (rc < 0)
        return rc;
    crypto_hash_secret(op->salt, op->secret, strlen(op->secret), op->hash);
    return 0;
}

static void create_done(void *arg, int rc, int64_t key)
{
    struct op *op = arg;
    registry_t *reg = op->reg;
    if (rc == 0 && reg != NULL) {
        registry_device_t *d = calloc(1, sizeof(*d));
        /* The row is committed either way; without memory for the table
         * entry the device cannot connect until the next start, which is
         * the best that can be done, so creation still reports success. */
        if (d != NULL) {
            d->key = key;
            memcpy(d->id, op->id, sizeof(d->id));
            memcpy(d->salt, op->salt, sizeof(d->salt));
            memcpy(d->secret_hash, op->hash, sizeof(d->secret_hash));
            d->last_seq = -1;
            registry_device_t *old = registry_find(reg, d->id);
            if (old != NULL)
                table_remove(reg, old);
            if (table_add(reg, d) < 0)
                free(d);
        }
    }
    registry_secret_fn done = op->secret_done;
    void *cb_arg = op->arg;
    char secret[CRYPTO_SECRET_LEN + 1];
    memcpy(secret, op->secret, sizeof(secret));
    op_free(op);
    if (done != NULL)
        done(cb_arg, rc, rc == 0 ? secret : NULL);
    OPENSSL_cleanse(secret, sizeof(secret));
}

void registry_create(registry_t *reg, const char *id, const char *tags_json,
                     registry_secret_fn done, void *arg)
{
    int rc;
    struct op *op = NULL;
    if (id == NULL || !util_id_valid(id, strnlen(id, DROVER_ID_MAX + 1))) {
        rc = -EINVAL;
        goto fail;
    }
    if (registry_find(reg, id) != NULL) {
        rc = -EEXIST;
        goto fail;
    }
    op = op_new(reg, OP_CREATE, id);
    if (op == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    op->secret_done = done;
    op->arg = arg;
    rc = op_new_secret(op);
    if (rc < 0)
        goto fail;

    store_device_t d;
    memset(&d, 0, sizeof(d));
    memcpy(d.id, op->id, sizeof(d.id));
    d.tags_json = (char *)(tags_json != NULL ? tags_json : "{}"); /* the store copies */
    memcpy(d.salt, op->salt, sizeof(d.salt));
    memcpy(d.secret_hash, op->hash, sizeof(d.secret_hash));
    d.online = false;
    d.last_seen = 0;
    d.created_at = util_now_ms();
    store_device_insert(reg->st, &d, create_done, op);
    return;

fail:
    if (op != NULL)
        op_free(op);
    if (done != NULL)
        done(arg, rc, NULL);
}

/* Finishes an op: frees it, then reports rc to its caller. */
static void op_finish(struct op *op, int rc)
{
    registry_done_fn done = op->done;
    void *cb_arg = op->arg;
    op_free(op);
    if (done != NULL)
        done(cb_arg, rc);
}

static void delete_done(void *arg, int rc, int64_t value)
{
    (void)value;
    struct op *op = arg;
    registry_t *reg = op->reg;
    if (reg != NULL && (rc == 0 || rc == -ENOENT)) {
        registry_device_t *d = registry_find(reg, op->id);
        if (d != NULL && d->key == op->key) {
            /* The hook runs while d is still in the table, so a disconnect
             * it triggers can still mark d offline; d is gone after it. */
            if (reg->revoke != NULL)
                reg->revoke(reg->revoke_ctx, op->id, REGISTRY_DELETED);
            d = registry_find(reg, op->id);
            if (d != NULL && d->key == op->key)
                table_remove(reg, d);
        }
    }
    op_finish(op, rc);
}

/* An op on an existing device, or NULL after reporting -ENOENT/-ENOMEM. */
static struct op *device_op(registry_t *reg, const char *id, enum op_kind kind,
                            registry_done_fn done, void *arg)
{
    registry_device_t *d = registry_find(reg, id);
    struct op *op = d != NULL ? op_new(reg, kind, d->id) : NULL;
    if (op == NULL) {
        if (done != NULL)
            done(arg, d == NULL ? -ENOENT : -ENOMEM);
        return NULL;
    }
    op->key = d->key;
    op->done = done;
    op->arg = arg;
    return op;
}

void registry_delete(registry_t *reg, const char *id, registry_done_fn done, void *arg)
{
    struct op *op = device_op(reg, id, OP_DELETE, done, arg);
    if (op != NULL)
        store_device_delete(reg->st, op->key, delete_done, op);
}

static void rotate_done(void *arg, int rc, int64_t value)
{
    (void)value;
    struct op *op = arg;
    registry_t *reg = op->reg;
    if (rc == 0 && reg != NULL) {
        registry_device_t *d = registry_find(reg, op->id);
        if (d != NULL && d->key == op->key) {
            memcpy(d->salt, op->salt, sizeof(d->salt));
            memcpy(d->secret_hash, op->hash, sizeof(d->secret_hash));
            if (reg->revoke != NULL)
                reg->revoke(reg->revoke_ctx, op->id, REGISTRY_ROTATED);
        }
    }
    registry_secret_fn done = op->secret_done;
    void *cb_arg = op->arg;
    char secret[CRYPTO_SECRET_LEN + 1];
    memcpy(secret, op->secret, sizeof(secret));
    op_free(op);
    if (done != NULL)
        done(cb_arg, rc, rc == 0 ? secret : NULL);
    OPENSSL_cleanse(secret, sizeof(secret));
}

void registry_rotate_secret(registry_t *reg, const char *id, registry_secret_fn done, void *arg)
{
    int rc;
    struct op *op = NULL;
    registry_device_t *d = registry_find(reg, id);
    if (d == NULL) {
        rc = -ENOENT;
        goto fail;
    }
    op = op_new(reg, OP_ROTATE, d->id);
    if (op == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    op->key = d->key;
    op->secret_done = done;
    op->arg = arg;
    rc = op_new_secret(op);
    if (rc < 0)
        goto fail;
    store_device_set_secret(reg->st, d->key, op->salt, op->hash, rotate_done, op);
    return;

fail:
    if (op != NULL)
        op_free(op);
    if (done != NULL)
        done(arg, rc, NULL);
}

/* ---- Reads --------------------------------------------------------------- */

/* Memory knows presence better than the store: it is written behind. A
 * device the table does not hold (its creation is committed but the
 * completion has not run yet) cannot be connected. */
static void overlay(registry_t *reg, store_device_t *d)
{
    registry_device_t *m = registry_find(reg, d->id);
    if (m != NULL && m->key == d->key) {
        d->online = m->online;
        d->last_seen = m->last_seen;
    } else {
        d->online = false;
    }
}

int registry_get(registry_t *reg, const char *id, store_device_t *out)
{
    if (id == NULL || !util_id_valid(id, strnlen(id, DROVER_ID_MAX + 1)))
        return -ENOENT;
    store_device_t d;
    int rc = store_device_get(reg->st, id, &d);
    if (rc < 0)
        return rc;
    overlay(reg, &d);
    *out = d;
    return 0;
}

struct list_ctx {
    registry_t *reg;
    int (*fn)(void *arg, const store_device_t *d);
    void *arg;
};

static int list_one(void *arg, const store_device_t *sd)
{
    struct list_ctx *l = arg;
    store_device_t d = *sd; /* shallow: tags_json stays the store's */
    overlay(l->reg, &d);
    return l->fn(l->arg, &d);
}

int registry_list(registry_t *reg, const char *after, const char *tag_key, const char *tag_value,
                  int limit, int (*fn)(void *arg, const store_device_t *d), void *arg)
{
    struct list_ctx l = {reg, fn, arg};
    return store_device_list(reg->st, after, tag_key, tag_value, limit, list_one, &l);
}

/* ---- Revocation, adoption, import ------------------------------------------ */

static void revoke_done(void *arg, int rc, int64_t value)
{
    (void)value;
    struct op *op = arg;
    registry_t *reg = op->reg;
    if (rc == 0 && reg != NULL) {
        registry_device_t *d = registry_find(reg, op->id);
        if (d != NULL && d->key == op->key) {
            d->revoked = true;
            if (reg->revoke != NULL)
                reg->revoke(reg->revoke_ctx, op->id, REGISTRY_REVOKED);
        }
    }
    op_finish(op, rc);
}

void registry_revoke(registry_t *reg, const char *id, registry_done_fn done, void *arg)
{
    struct op *op = device_op(reg, id, OP_REVOKE, done, arg);
    if (op == NULL)
        return;
    int64_t now = util_now_ms();
    /* Both writes land in order; the device's completion comes last, so
     * when it reports success the certificates are revoked too. */
    store_cert_revoke(reg->st, NULL, op->key, now, NULL, NULL);
    store_device_revoke(reg->st, op->key, now, revoke_done, op);
}

int registry_adopt(registry_t *reg, const store_device_t *sd)
{
    if (registry_find(reg, sd->id) != NULL)
        return -EEXIST;
    registry_device_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->key = sd->key;
    snprintf(d->id, sizeof(d->id), "%s", sd->id);
    memcpy(d->salt, sd->salt, sizeof(d->salt));
    memcpy(d->secret_hash, sd->secret_hash, sizeof(d->secret_hash));
    d->last_seen = sd->last_seen;
    d->last_seq = sd->last_seq;
    d->revoked = sd->revoked_at != 0;
    int rc = table_add(reg, d);
    if (rc < 0)
        free(d);
    return rc;
}

struct import_op {
    registry_t *reg;
    size_t n;
    store_device_t *devs;
    char (*secrets)[CRYPTO_SECRET_LEN + 1];
    registry_import_fn done;
    void *arg;
};

static void import_free(struct import_op *op)
{
    if (op->devs != NULL) {
        for (size_t i = 0; i < op->n; i++)
            free(op->devs[i].tags_json);
    }
    if (op->secrets != NULL)
        OPENSSL_cleanse(op->secrets, op->n * sizeof(*op->secrets));
    free(op->devs);
    free(op->secrets);
    free(op);
}

static void import_done(void *arg, int rc, int64_t first_key)
{
    struct import_op *op = arg;
    const char **secrets = NULL;
    if (rc == 0) {
        secrets = malloc(op->n * sizeof(*secrets));
        for (size_t i = 0; i < op->n; i++) {
            op->devs[i].key = first_key + (int64_t)i;
            op->devs[i].last_seq = -1;
            registry_adopt(op->reg, &op->devs[i]);
            if (secrets != NULL)
                secrets[i] = op->secrets[i];
        }
        if (secrets == NULL)
            rc = -ENOMEM; /* created, but the secrets cannot be handed out */
    }
    if (op->done != NULL)
        op->done(op->arg, rc, rc == 0 ? secrets : NULL, rc == 0 ? op->n : 0);
    free(secrets);
    import_free(op);
}

void registry_import(registry_t *reg, const char *const *ids, const char *const *tags_json,
                     size_t n, registry_import_fn done, void *arg)
{
    int rc = -ENOMEM;
    struct import_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        goto fail;
    op->reg = reg;
    op->n = n;
    op->done = done;
    op->arg = arg;
    op->devs = calloc(n ? n : 1, sizeof(*op->devs));
    op->secrets = calloc(n ? n : 1, sizeof(*op->secrets));
    if (op->devs == NULL || op->secrets == NULL)
        goto fail;
    int64_t now = util_now_ms();
    for (size_t i = 0; i < n; i++) {
        store_device_t *d = &op->devs[i];
        if (!util_id_valid(ids[i], strnlen(ids[i], DROVER_ID_MAX + 1))) {
            rc = -EINVAL;
            goto fail;
        }
        if (registry_find(reg, ids[i]) != NULL) {
            rc = -EEXIST;
            goto fail;
        }
        snprintf(d->id, sizeof(d->id), "%s", ids[i]);
        d->tags_json = strdup(tags_json[i] != NULL ? tags_json[i] : "{}");
        if (d->tags_json == NULL)
            goto fail;
        if (crypto_secret_new("", op->secrets[i], sizeof(op->secrets[i])) < 0 ||
            crypto_random(d->salt, sizeof(d->salt)) < 0) {
            rc = -EIO;
            goto fail;
        }
        crypto_hash_secret(d->salt, op->secrets[i], strlen(op->secrets[i]), d->secret_hash);
        d->created_at = now;
    }
    store_device_insert_many(reg->st, op->devs, n, import_done, op);
    return;
fail:
    if (op != NULL)
        import_free(op);
    if (done != NULL)
        done(arg, rc, NULL, 0);
}

const char *registry_tags_check(const json_t *tags)
{
    if (!json_is_object(tags))
        return "\"tags\" must be an object";
    if (json_object_size(tags) > 64)
        return "at most 64 tags";
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)tags, k, v)
    {
        size_t klen = strlen(k);
        if (klen == 0 || klen > 64)
            return "a tag key must be 1 to 64 bytes";
        if (strchr(k, '=') != NULL)
            return "a tag key must not contain '=' (the list filter is key=value)";
        if (json_is_string(v)) {
            if (json_string_length(v) > 256)
                return "a tag value must be at most 256 bytes";
        } else if (!json_is_number(v) && !json_is_boolean(v)) {
            return "a tag value must be a string, a number or a boolean";
        }
    }
    return NULL;
}

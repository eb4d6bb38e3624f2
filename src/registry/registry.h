/*
 * The device registry: every device's identity, credential and presence.
 *
 * It keeps an in-memory table of all devices (id -> key, salted secret
 * hash, online, last_seen), loaded from the store at start, so that
 * authenticating a CONNECT is a hash lookup and an HMAC, never a database
 * round trip. Durable changes go through the store first and reach the
 * table only once committed, so the table never shows what a crash could
 * take back. Presence is kept in memory and written behind: at every
 * connect and disconnect, and every flush interval for last_seen.
 *
 * Loop thread only.
 */
#ifndef DROVER_REGISTRY_REGISTRY_H
#define DROVER_REGISTRY_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/crypto.h"
#include "common/util.h"
#include "store/store.h"

typedef struct registry registry_t;

typedef struct registry_device {
    int64_t key;
    char id[DROVER_ID_MAX + 1];
    uint8_t salt[CRYPTO_SALT_LEN];
    uint8_t secret_hash[CRYPTO_HASH_LEN];
    bool online;
    bool dirty; /* last_seen changed since it was last written */
    int64_t last_seen;
    int64_t last_seq; /* highest telemetry seq accepted; -1 = none */
    bool revoked;     /* every credential revoked: nothing authenticates it */
} registry_device_t;

/* Why a device's credentials stopped being valid. */
typedef enum {
    REGISTRY_ROTATED = 0, /* the secret was replaced */
    REGISTRY_DELETED = 1, /* the device is going away (still in the table) */
    REGISTRY_REVOKED = 2, /* every credential of the device was revoked */
} registry_reason_t;

/* Called when a device's credential stops being valid: whoever holds its
 * connection must drop it (and, unless rotated, its session). */
typedef void (*registry_revoke_fn)(void *ctx, const char *id, registry_reason_t why);

/* Loads every device from st. Borrows st, which must outlive the registry. */
int registry_new(store_t *st, registry_t **out);
void registry_free(registry_t *reg);

void registry_set_revoke_hook(registry_t *reg, registry_revoke_fn fn, void *ctx);

/* Borrowed pointer valid until the device is removed; NULL if unknown. */
registry_device_t *registry_find(registry_t *reg, const char *id);
size_t registry_count(const registry_t *reg);
size_t registry_online_count(const registry_t *reg);

/* 0 if id/secret match, -ENOENT unknown device, -EACCES wrong secret.
 * The comparison is constant-time in the secret. */
int registry_authenticate(registry_t *reg, const char *id, const char *secret, size_t len);

/* Presence, from the connection itself. */
void registry_set_online(registry_t *reg, registry_device_t *d, int64_t now);
void registry_set_offline(registry_t *reg, registry_device_t *d, int64_t now);
/* Any packet from the device: updates last_seen in memory. */
void registry_touch(registry_device_t *d, int64_t now);
/* Writes every dirty last_seen to the store (called by a timer). */
void registry_flush(registry_t *reg);

/* Completion of create / rotate: secret is the new plain-text secret (only
 * on rc == 0; borrowed for the call). */
typedef void (*registry_secret_fn)(void *arg, int rc, const char *secret);
typedef void (*registry_done_fn)(void *arg, int rc);

/* Creates a device with a fresh secret. tags_json is a JSON object text
 * (copied). rc: 0, -EINVAL bad id, -EEXIST taken, or a store error. */
void registry_create(registry_t *reg, const char *id, const char *tags_json,
                     registry_secret_fn done, void *arg);
/* Deletes a device, its telemetry and its credential; its live connection
 * is dropped through the revoke hook. -ENOENT if unknown. */
void registry_delete(registry_t *reg, const char *id, registry_done_fn done, void *arg);
/* Issues a new secret; the old one stops working at once and a live
 * connection is dropped. -ENOENT if unknown. */
void registry_rotate_secret(registry_t *reg, const char *id, registry_secret_fn done, void *arg);

/* Revokes every credential of a device (its secret, and, through the
 * store, its certificates): it can no longer authenticate; its live
 * connection and session are dropped through the revoke hook.
 * -ENOENT if unknown. */
void registry_revoke(registry_t *reg, const char *id, registry_done_fn done, void *arg);

/* Adds a device the store already holds (inserted by enrollment or
 * import) to the table. -EEXIST if the id is present. */
int registry_adopt(registry_t *reg, const store_device_t *d);

/* Creates n devices in one all-or-nothing write, each with a fresh secret.
 * tags_json[i] may be NULL ({}). done gets rc and, on success, the n
 * secrets in order (borrowed for the call). -EEXIST when an id is taken
 * (nothing created), -EINVAL for a bad id. */
typedef void (*registry_import_fn)(void *arg, int rc, const char *const *secrets, size_t n);
void registry_import(registry_t *reg, const char *const *ids, const char *const *tags_json,
                     size_t n, registry_import_fn done, void *arg);

/* Checks a device's tags: a JSON object of at most 64 tags whose keys are
 * 1 to 64 bytes without '=' (the list filter is key=value) and whose values
 * are strings of at most 256 bytes, numbers or booleans. Returns NULL when
 * valid, else a one-line reason. Pure. */
const char *registry_tags_check(const json_t *tags);

/* Reads for the API (through the store; presence from memory). */
int registry_get(registry_t *reg, const char *id, store_device_t *out);
int registry_list(registry_t *reg, const char *after, const char *tag_key, const char *tag_value,
                  int limit, int (*fn)(void *arg, const store_device_t *d), void *arg);

#endif

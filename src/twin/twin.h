/*
 * The device twin: per device a desired document (set by operators) and a
 * reported document (sent by the device as RFC 7396 merge patches), each
 * with a version that grows by one per change and the time of the change.
 *
 * The loop thread holds a cache of the twins it has touched, and every
 * change is applied there first and then written whole through the store;
 * so two patches in quick succession always merge onto each other, never
 * onto a stale copy from the database. A change is reported done (and a
 * desired change is pushed to the device through the notify hook) only
 * after its write has committed. If a write fails, the cached twin is
 * dropped and reloaded from the database on next use.
 *
 * Limits: max_twin_bytes (serialized) and max_twin_depth, checked on the
 * patch and on the result; a refused change leaves the twin untouched.
 * Loop thread only.
 */
#ifndef DROVER_TWIN_TWIN_H
#define DROVER_TWIN_TWIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "registry/registry.h"
#include "store/store.h"

typedef struct twin twin_t;

/* A desired state committed: send {"version": N, "state": ...} (payload,
 * borrowed for the call) to the device. */
typedef void (*twin_notify_fn)(void *ctx, const char *device_id, const char *payload, size_t len);

/* rc 0 on success with the new version; or -ENOENT (unknown device),
 * -EINVAL (not a JSON object / bad patch), -E2BIG (over a limit), -ESTALE
 * (If-Match version differs), or a store error. */
typedef void (*twin_done_fn)(void *arg, int rc, int64_t version);

int twin_new(store_t *st, registry_t *reg, const config_t *cfg, twin_t **out);
void twin_free(twin_t *t);
void twin_set_notify(twin_t *t, twin_notify_fn fn, void *ctx);

/* Operator change of the desired state: replace (patch false) or merge
 * patch. doc is borrowed. if_match < 0: no version check. done may run
 * before this returns (validation errors). */
void twin_desired_update(twin_t *t, const char *device_id, const json_t *doc, bool patch,
                         int64_t if_match, twin_done_fn done, void *arg);

/* A device's reported merge patch, raw from MQTT. Validation errors return
 * < 0 at once (done is not called) with a reason in err; else 0 and done
 * runs once the new reported state is durable. */
int twin_reported_patch(twin_t *t, const char *device_id, const char *payload, size_t len,
                        twin_done_fn done, void *arg, char *err, size_t errlen);

/* The GET /twin answer: {"desired", "desired_version", "desired_at",
 * "reported", "reported_version", "reported_at", "delta"}. Caller owns it. */
int twin_get(twin_t *t, const char *device_id, json_t **out);

/* The message for devices/{id}/twin/desired, malloc'd (caller frees). */
int twin_desired_message(twin_t *t, const char *device_id, char **payload, size_t *len);

/* The device is gone: forget its cached twin. */
void twin_forget(twin_t *t, const char *device_id);

#endif

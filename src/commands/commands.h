/*
 * Commands: operator requests a device runs and answers.
 *
 * States: queued -> sent -> succeeded | failed | rejected, or expired when
 * no result came by expires_at. Every command is written to the store
 * before anything else happens to it; the loop thread keeps the open ones
 * (queued or sent) in memory, indexed by id and by device, loaded again at
 * start-up. Delivery goes through the send hook (the MQTT gateway), which
 * says whether the device's session took the message: a command is "sent"
 * once it did, and every open command is offered again when the device
 * (re)subscribes to its command topic, so a command is delivered at least
 * once unless it expires first. An expired command is never sent.
 *
 * Bulk jobs fan one command (or one desired-state patch, see jobs.h) out to
 * many devices. Waiters (the API's ?wait=N) are told when a command ends.
 * Loop thread only.
 */
#ifndef DROVER_COMMANDS_COMMANDS_H
#define DROVER_COMMANDS_COMMANDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "registry/registry.h"
#include "store/store.h"

struct event_base;

typedef struct commands commands_t;

/* Offers a command message to a device's session. Returns true if the
 * session took it (delivered, or queued in its persistent session). */
typedef bool (*commands_send_fn)(void *ctx, const char *device_id, const char *topic,
                                 const char *payload, size_t len);
/* A command of a bulk job changed state (for job progress). */
typedef void (*commands_job_fn)(void *ctx, const char *job, const char *old_status,
                                const char *new_status);

int commands_new(struct event_base *base, store_t *st, registry_t *reg, const config_t *cfg,
                 commands_t **out);
void commands_free(commands_t *c);
void commands_set_sender(commands_t *c, commands_send_fn fn, void *ctx);
void commands_set_job_hook(commands_t *c, commands_job_fn fn, void *ctx);

/* A new command. rc: 0 with the stored command (borrowed for the call),
 * -ENOENT unknown device, -EINVAL bad name/params/timeout, -E2BIG params
 * too large, -EBUSY too many open commands for the device, or a store
 * error. done may run before this returns. */
typedef void (*commands_done_fn)(void *arg, int rc, const store_command_t *cmd);

/* What a new command is: name (1..64 of [A-Za-z0-9._-]), params (an
 * object, borrowed; NULL = {}), timeout_s (0 = the configured default). */
typedef struct commands_spec {
    const char *name;
    const json_t *params;
    int64_t timeout_s;
} commands_spec_t;

/* Validates a spec; on error writes a reason and returns -EINVAL/-E2BIG. */
int commands_spec_check(const commands_t *c, const commands_spec_t *spec, char *err, size_t errlen);

void commands_create(commands_t *c, const char *device_id, const commands_spec_t *spec,
                     commands_done_fn done, void *arg);

/* One command per device in ids (n of them) for bulk job `job`, in one
 * store write. done gets rc and (unused) NULL. Unknown ids are skipped and
 * counted in *skipped. */
typedef void (*commands_bulk_fn)(void *arg, int rc, size_t created);
void commands_create_bulk(commands_t *c, const char *job, const char *const *ids, size_t n,
                          const commands_spec_t *spec, commands_bulk_fn done, void *arg);

/* Reads, through the store: the current state of a command. */
int commands_get(commands_t *c, const char *id, store_command_t *out);
/* A device's commands, newest first, before (before_ts, before_id) when
 * before_id is non-NULL. -ENOENT for an unknown device; else the count. */
int commands_list(commands_t *c, const char *device_id, int64_t before_ts, const char *before_id,
                  int limit, int (*fn)(void *arg, const store_command_t *cmd), void *arg);

/* JSON form of a command, as the API shows it. Caller owns it. */
json_t *commands_json(const store_command_t *cmd);

/* Calls done once the command has ended (rc 0, the final command) or when
 * timeout_ms has passed (rc -ETIMEDOUT, the command as it is), at once if
 * it has already ended. Returns a handle for commands_wait_cancel. */
typedef struct commands_waiter commands_waiter_t;
commands_waiter_t *commands_wait(commands_t *c, const char *id, int64_t timeout_ms,
                                 commands_done_fn done, void *arg);
/* Forgets a waiter whose requester went away (done is not called). */
void commands_wait_cancel(commands_waiter_t *w);

/* Device side. The device subscribed to its command topic: offer every
 * open command of it again. */
void commands_device_ready(commands_t *c, const char *device_id);

/* A result from devices/{id}/commands/{cid}/result. Returns < 0 at once
 * (-ENOENT unknown or another device's, -EALREADY already ended, -EINVAL
 * bad payload, with a reason in err); else 0 and done runs (rc) once the
 * result is durable. */
typedef void (*commands_result_fn)(void *arg, int rc);
int commands_result(commands_t *c, const char *device_id, const char *cid, const char *payload,
                    size_t len, commands_result_fn done, void *arg, char *err, size_t errlen);

/* The device was deleted: its open commands are gone with it. */
void commands_forget_device(commands_t *c, const char *device_id);

size_t commands_open_count(const commands_t *c);

#endif

/*
 * Bulk jobs: one command or one desired-state patch for many devices,
 * chosen by a list of ids, a tag selector or "all". A job is written to
 * the store with its target and spec, its per-device work is submitted in
 * one store write (commands) or device by device (twin), and its progress
 * is counted in memory as the work moves; GET reads the counts and a page
 * of per-device states. A job is "done" once no device is still pending;
 * its final status is written then. After a restart, counts of an old job
 * are rebuilt from the store on first read. Loop thread only.
 */
#ifndef DROVER_COMMANDS_JOBS_H
#define DROVER_COMMANDS_JOBS_H

#include <jansson.h>

#include "commands/commands.h"
#include "twin/twin.h"

typedef struct jobs jobs_t;

int jobs_new(store_t *st, registry_t *reg, commands_t *cmds, twin_t *twin, const config_t *cfg,
             jobs_t **out);
void jobs_free(jobs_t *j);

/* target: {"ids": [...]} | {"tag": "k=v"} | {"all": true}. On success
 * *out is the new job as JSON (caller owns). Errors: -EINVAL (err says
 * why), -ENOENT (an id in "ids" is unknown; err names it), -E2BIG (more
 * than max_bulk_devices), -ENOMEM. */
int jobs_start_command(jobs_t *j, const json_t *target, const commands_spec_t *spec, json_t **out,
                       char *err, size_t errlen);
int jobs_start_twin(jobs_t *j, const json_t *target, const json_t *patch, json_t **out, char *err,
                    size_t errlen);

/* The job with its counts and up to limit per-device entries after the
 * device id `after` (NULL = first). -ENOENT if unknown. */
int jobs_get(jobs_t *j, const char *id, const char *after, int limit, json_t **out);

#endif

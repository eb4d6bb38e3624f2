/*
 * Creating the simulated fleet through droverd's REST API:
 * POST /api/v1/devices for each device, many requests in flight over
 * keep-alive connections (libcurl multi), so 20,000 devices take seconds,
 * not minutes. A device that already exists (409, e.g. a second run with
 * the same --id-prefix) gets a fresh secret with
 * POST /api/v1/devices/{id}/secret instead. 503 (the store is busy) and
 * transport errors are retried a few times; any other answer stops the
 * creation with the server's reply in err.
 */
#ifndef DROVER_SIM_FLEET_H
#define DROVER_SIM_FLEET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sim/creds.h"
#include "sim/opts.h"

typedef struct sim_fleet_result {
    uint32_t created;  /* 201 */
    uint32_t existing; /* 409, then a new secret */
    double elapsed_s;
} sim_fleet_result_t;

/* Fills the secrets of c[0..n) (ids already set) and *res. Progress lines
 * go to progress (NULL: quiet). Returns 0, or a negative errno with err
 * set. */
int sim_fleet_create(const sim_opts_t *o, sim_cred_t *c, uint32_t n, FILE *progress,
                     sim_fleet_result_t *res, char *err, size_t errlen);

#endif

/*
 * The fleet's credentials: one (device id, secret) pair per simulated
 * device, read from or written to a text file of "id secret" lines (the
 * format --creds and --write-creds use, and bench/ passes around).
 * Blank lines and lines starting with '#' are ignored on reading.
 */
#ifndef DROVER_SIM_CREDS_H
#define DROVER_SIM_CREDS_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define SIM_SECRET_MAX 128

typedef struct sim_cred {
    char id[DROVER_ID_MAX + 1];
    char secret[SIM_SECRET_MAX]; /* "" = no password */
} sim_cred_t;

/* One line (without or with its '\n'): 0 and *out set; -ENOENT for a blank
 * or comment line; -EINVAL when it is not "id secret" with a valid device
 * id and a secret of 1..127 printable bytes. A secret of "-" means none. */
int sim_creds_parse_line(const char *line, sim_cred_t *out);

/* Reads at most max pairs from path into a new array (caller frees).
 * -errno on I/O errors, -EINVAL on a bad line (err says which). */
int sim_creds_read(const char *path, uint32_t max, sim_cred_t **out, uint32_t *n, char *err,
                   size_t errlen);

/* Writes n pairs to path (mode 0600: these are passwords). */
int sim_creds_write(const char *path, const sim_cred_t *c, uint32_t n);

/* Fills c[0..n) with ids prefix%06u starting at first and empty secrets. */
int sim_creds_generate(sim_cred_t *c, uint32_t n, const char *prefix, uint32_t first);

#endif

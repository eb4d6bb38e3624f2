/*
 * The agent runtime: one loop thread that samples health, keeps the MQTT
 * connection (libmosquitto driven from our own poll loop), forwards the
 * telemetry queue, applies desired state and runs commands. See agent.c.
 */
#ifndef DROVER_AGENT_AGENT_H
#define DROVER_AGENT_AGENT_H

#include <stddef.h>

#include "agent_config.h"

typedef struct agent agent_t;

/* Opens the data directory (lock, queue, sequence counter, applied
 * state). cfg must have passed agent_config_check(). On error returns < 0
 * with a reason in err. Caller frees with agent_free(). */
int agent_new(const agent_config_t *cfg, agent_t **out, char *err, size_t errlen);

/* Runs until SIGTERM or SIGINT. Returns 0 after a clean stop. */
int agent_run(agent_t *a);

/* Accepts NULL. */
void agent_free(agent_t *a);

#endif

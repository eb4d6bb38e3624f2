/*
 * Reconnect delays: exponential backoff with full jitter. The window
 * starts at base and doubles at every failed attempt up to max; the delay
 * is uniform in [0, window]. Full jitter (rather than window/2 + jitter)
 * spreads a fleet that lost the server at the same instant over the whole
 * window, so a thousand agents do not come back in one burst.
 *
 * Pure; the caller supplies the randomness so the tests are deterministic.
 */
#ifndef DROVER_AGENT_BACKOFF_H
#define DROVER_AGENT_BACKOFF_H

#include <stdint.h>

typedef struct agent_backoff {
    uint32_t base_ms;
    uint32_t max_ms;
    uint32_t attempt; /* failed attempts since the last reset */
} agent_backoff_t;

void agent_backoff_init(agent_backoff_t *b, uint32_t base_ms, uint32_t max_ms);

/* The current window: min(max, base * 2^attempt). */
uint32_t agent_backoff_window(const agent_backoff_t *b);

/* The delay before the next attempt, uniform in [0, window] given a
 * uniform 32-bit rnd; then widens the window. */
uint32_t agent_backoff_next(agent_backoff_t *b, uint32_t rnd);

/* After a connection that stayed up long enough. */
void agent_backoff_reset(agent_backoff_t *b);

#endif

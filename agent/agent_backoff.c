/* Jittered exponential backoff (see agent_backoff.h). */
#include "agent_backoff.h"

void agent_backoff_init(agent_backoff_t *b, uint32_t base_ms, uint32_t max_ms)
{
    b->base_ms = base_ms > 0 ? base_ms : 1;
    b->max_ms = max_ms >= b->base_ms ? max_ms : b->base_ms;
    b->attempt = 0;
}

uint32_t agent_backoff_window(const agent_backoff_t *b)
{
    uint64_t w = b->base_ms;
    for (uint32_t i = 0; i < b->attempt && w < b->max_ms; i++)
        w *= 2;
    return w > b->max_ms ? b->max_ms : (uint32_t)w;
}

uint32_t agent_backoff_next(agent_backoff_t *b, uint32_t rnd)
{
    uint64_t w = agent_backoff_window(b);
    uint32_t d = (uint32_t)(((uint64_t)rnd * (w + 1)) >> 32);
    if (agent_backoff_window(b) < b->max_ms)
        b->attempt++;
    return d;
}

void agent_backoff_reset(agent_backoff_t *b)
{
    b->attempt = 0;
}

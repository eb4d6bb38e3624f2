/*
 * The agent's side of the device twin: parsing a desired document and
 * building the reported merge patch.
 *
 * The agent reports the state it applied, so reported converges to desired
 * and the server's delta empties. It sends only the change since the state
 * it applied before, as an RFC 7396 merge patch: keys that left the
 * desired state are sent as null (removed), nested objects are diffed
 * recursively. Keys starting with '$' are the agent's own bookkeeping
 * ("$applied_version", "$apply_error", ...), see docs/agent.md.
 *
 * Pure; no logging.
 */
#ifndef DROVER_AGENT_TWIN_H
#define DROVER_AGENT_TWIN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Parses {"version": N, "state": {...}}: N a non-negative integer, state
 * an object. Caller owns *state. -EINVAL on anything else. */
int agent_twin_parse_desired(const char *payload, size_t len, int64_t *version, json_t **state);

/* The merge patch that turns object old (NULL = {}) into object new.
 * Empty when they are equal. Caller owns the result; NULL on ENOMEM. */
json_t *agent_twin_diff(const json_t *old_state, const json_t *new_state);

#endif

/*
 * Zero-touch provisioning: the first start of a device that has a claim
 * token and no certificate. The agent makes its key, sends a CSR with the
 * token to POST api_url/api/v1/provision over HTTPS (libcurl, blocking, on
 * the agent's one thread, before the MQTT loop starts) and stores the
 * certificate and the fleet CA in the data directory (agent_cert.h).
 *
 * Retries: a network error, a timeout or a 5xx/429 answer is retried after
 * the agent's jittered backoff, for ever. A refusal that cannot change by
 * asking again (400 bad request, 401 unknown token, 403 token used up,
 * expired or revoked, 409 id taken) ends provisioning: the agent logs why
 * and exits, so a wrong token does not hammer the server.
 */
#ifndef DROVER_AGENT_PROVISION_H
#define DROVER_AGENT_PROVISION_H

#include <stdbool.h>
#include <stdint.h>

#include "agent_config.h"

/* How provisioning waits and learns that it should stop (SIGTERM). */
typedef struct agent_provision_ops {
    /* True once the agent should stop; polled during requests too. */
    bool (*stopped)(void *ctx);
    /* Sleeps up to ms, returning early when stopped. */
    void (*sleep_ms)(void *ctx, uint32_t ms);
    void *ctx;
} agent_provision_ops_t;

/* Provisions the device (cfg has passed agent_config_check(); claim_token
 * is the token itself, from the file or the config). Logs every attempt.
 * Returns 0 once device.key, device.crt and ca.crt are in cfg->data_dir;
 * -EACCES when the server refused for good; -EPROTO when the server
 * answered 201 with a certificate that fails the checks; -ENOENT when
 * there is no CA to verify the server with; -EINTR when stopped; another
 * negative errno when the data directory cannot be written. */
int agent_provision_run(const agent_config_t *cfg, const char *claim_token,
                        const agent_provision_ops_t *ops);

/* Whether an HTTP status from POST /api/v1/provision is final (asking
 * again cannot help). */
bool agent_provision_status_final(long status);

#endif

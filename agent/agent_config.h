/*
 * drover-agent's configuration: defaults, then the config file. The file is
 * "key = value" lines like droverd's; '#' at the start of a line begins a
 * comment; the value is the rest of the line with surrounding blanks
 * trimmed (no quoting, so paths may hold spaces). docs/agent.md lists every
 * key; agent/drover-agent.conf.example is a commented example.
 *
 * Pure data and parsing: no I/O besides reading the file, no logging.
 */
#ifndef DROVER_AGENT_CONFIG_H
#define DROVER_AGENT_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define AGENT_PATH_MAX 512

/* mqtt_tls: auto means TLS when ca_file is set or certificates are used. */
#define AGENT_TLS_AUTO (-1)
#define AGENT_TLS_OFF 0
#define AGENT_TLS_ON 1

typedef struct agent_config {
    char server[256]; /* MQTT endpoint "host:port" */
    char device_id[DROVER_ID_MAX + 1];
    char secret[256];
    char data_dir[AGENT_PATH_MAX];
    char ca_file[AGENT_PATH_MAX]; /* the CA that signed droverd's TLS certificate */
    char log_level[16];

    /* Certificates (mutual TLS) instead of a secret. A claim token lets the
     * agent provision itself once (POST api_url/api/v1/provision); after
     * that data_dir holds device.key and device.crt, renewed over MQTT. */
    char claim_token[256];
    char claim_token_file[AGENT_PATH_MAX];
    char api_url[256];       /* https://host:port of droverd's HTTPS API */
    bool insecure_bootstrap; /* provision without verifying the server (TOFU) */
    int mqtt_tls;            /* AGENT_TLS_AUTO, AGENT_TLS_OFF or AGENT_TLS_ON */
    double renew_before;     /* renew when less than this share of the lifetime is left */

    uint32_t protocol;          /* MQTT protocol level: 4 (3.1.1) or 5 */
    uint32_t keepalive_s;       /* MQTT keepalive */
    uint32_t connect_timeout_s; /* TCP connect + CONNACK deadline */

    uint32_t telemetry_interval_s; /* one health sample every N seconds */
    uint64_t queue_max_bytes;      /* store-and-forward cap (live records) */
    uint32_t max_inflight;         /* unacknowledged telemetry publishes */

    uint32_t backoff_base_ms;  /* first reconnect window */
    uint32_t backoff_max_ms;   /* the window never grows past this */
    uint32_t backoff_stable_s; /* a connection this old resets the backoff */

    char desired_hook[AGENT_PATH_MAX]; /* run with the desired state on stdin */
    uint32_t hook_timeout_s;
    char reboot_hook[AGENT_PATH_MAX];  /* the "reboot" command runs this */
    char commands_dir[AGENT_PATH_MAX]; /* user commands: executables here */
    uint32_t command_timeout_s;
    uint32_t command_output_max; /* bytes of stdout+stderr kept */
    uint32_t max_commands;       /* user commands running at once */
} agent_config_t;

void agent_config_defaults(agent_config_t *c);

/* Sets one key from text ('-' and '_' are the same in key names). Returns
 * 0, -ENOENT for an unknown key, -EINVAL for a bad value, -ENAMETOOLONG for
 * a string that does not fit. */
int agent_config_set(agent_config_t *c, const char *key, const char *value);

/* Parses config text (the whole file). On error returns < 0 and writes
 * "line N: reason" into err. */
int agent_config_parse(agent_config_t *c, const char *text, size_t len, char *err, size_t errlen);

/* Reads and parses a file (at most 1 MiB). On error returns < 0 and writes
 * "path: reason" or "path:N: reason" into err. */
int agent_config_load_file(agent_config_t *c, const char *path, char *err, size_t errlen);

/* Checks what the daemon needs (server, device id, data dir; a secret, or
 * none for certificates) and cross-field limits. Returns 0 or -EINVAL with
 * a reason in err. Whether a certificate exists is not checked here (no
 * I/O): agent_new() does that. */
int agent_config_check(const agent_config_t *c, char *err, size_t errlen);

/* True when the device authenticates with a client certificate (no
 * secret configured). */
bool agent_config_uses_cert(const agent_config_t *c);

/* True when the MQTT connection uses TLS. */
bool agent_config_mqtt_tls(const agent_config_t *c);

/* The effective configuration as a JSON object, without the secret and the
 * claim token (for the get-config command). Caller owns the result; NULL
 * on ENOMEM. */
json_t *agent_config_to_json(const agent_config_t *c);

#endif

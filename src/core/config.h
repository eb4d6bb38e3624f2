/*
 * droverd's configuration: defaults, then the config file, then flags
 * (flags win). The file is "key = value" lines; '#' starts a comment; keys
 * are the long flag names without the leading dashes (docs/config.md).
 * Every limit that network input can grow has a key here.
 */
#ifndef DROVER_CORE_CONFIG_H
#define DROVER_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct config {
    char data_dir[512];
    char mqtt_listen[128];
    char http_listen[128];
    char log_level[16];

    /* TLS and the fleet CA */
    char mqtts_listen[128]; /* "" = off; "HOST" alone means port 8883 */
    char https_listen[128]; /* "" = off; "HOST" alone means port 8443 */
    char tls_cert[512];     /* server certificate (PEM); "" = issue one from the CA */
    char tls_key[512];
    char ca_cert[512]; /* external CA; "" = <data_dir>/ca.crt, created if missing */
    char ca_key[512];
    uint32_t cert_lifetime_s;        /* device certificates */
    uint32_t server_cert_lifetime_s; /* the self-issued server certificate */
    uint32_t claim_max_uses;         /* cap on an enrollment's max_uses */

    /* MQTT limits */
    uint32_t max_packet_size;    /* bytes, whole packet */
    uint32_t max_connections;    /* concurrent MQTT connections */
    uint32_t max_inflight;       /* unacknowledged QoS 1 messages out, per session */
    uint32_t max_queued;         /* QoS 1 messages queued for an offline session */
    uint32_t max_topic_len;      /* bytes */
    uint32_t max_topic_depth;    /* levels */
    uint32_t max_subscriptions;  /* per session */
    uint32_t max_keepalive;      /* seconds; 0 = accept what the client asks */
    uint32_t connect_timeout;    /* seconds to wait for CONNECT after accept */
    uint32_t session_expiry_max; /* seconds an offline persistent session is kept */
    uint32_t receive_maximum;    /* inbound QoS 1/2 publishes awaiting their ack */
    uint32_t topic_alias_max;    /* aliases a client may set (0 = none) */
    uint32_t max_queued_bytes;   /* payload bytes queued per session */
    uint32_t max_retained;       /* retained messages held */
    uint32_t publish_rate;       /* per-connection PUBLISH quota, msgs/s (0 = none) */
    uint32_t publish_burst;      /* ... and the burst above it */
    uint32_t takeover_limit;     /* takeovers of one client id per minute before a ban */
    uint32_t allow_anonymous;    /* 1: clients without credentials may connect */
    char deny_subscribe[1024];   /* comma-separated filters nobody may subscribe to */

    /* HTTP */
    uint32_t max_body; /* bytes of a request body */

    /* Failed logins and device authentications, per source and per identity */
    uint32_t auth_fail_limit;    /* failures per window before a block (0 = no limit) */
    uint32_t auth_fail_window_s; /* the window, and the length of a block */
    uint32_t auth_fail_loopback; /* 1: limit loopback sources per source too */

    /* Telemetry */
    uint32_t max_telemetry_points; /* points in one payload */

    /* Presence */
    uint32_t presence_flush_ms; /* how often dirty last_seen values are written */

    /* Twin and commands */
    uint32_t max_twin_bytes;    /* serialized size of desired or reported */
    uint32_t max_twin_depth;    /* nesting depth of a twin document */
    uint32_t max_command_bytes; /* serialized params, and a result's output */
    uint32_t command_timeout_s; /* default when a command names none */
    uint32_t max_command_timeout_s;
    uint32_t max_open_commands; /* queued or sent, per device */
    uint32_t max_bulk_devices;  /* targets of one bulk job */
} config_t;

void config_defaults(config_t *c);

/* Sets one key from text. Returns 0, -ENOENT for an unknown key, -EINVAL
 * for a bad value. */
int config_set(config_t *c, const char *key, const char *value);

/* Reads a config file. On error returns < 0 and writes "file:line: reason"
 * into err. */
int config_load_file(config_t *c, const char *path, char *err, size_t errlen);

#endif

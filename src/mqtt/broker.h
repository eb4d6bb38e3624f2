/*
 * The MQTT 3.1.1 / 5.0 broker: listener, connections, sessions, routing.
 *
 * It knows nothing of devices or storage. The device-management layer
 * plugs in through mqtt_hooks_t: it authenticates a CONNECT (and returns
 * the topic prefix the client is confined to), hears about connects and
 * disconnects, and may take over an inbound PUBLISH, in which case the
 * PUBACK (or PUBREC) waits until the hook completes the message's ticket,
 * for example once telemetry is durably stored. Acknowledgements always
 * leave in the order the PUBLISH packets arrived ([MQTT-4.6.0-2]).
 *
 * Runs on the event-loop thread only.
 */
#ifndef DROVER_MQTT_BROKER_H
#define DROVER_MQTT_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

struct event_base;
struct evbuffer;

typedef struct mqtt_broker mqtt_broker_t;
typedef struct mqtt_ticket mqtt_ticket_t;

/* What a CONNECT offers for authentication. Strings are not
 * NUL-terminated; they are valid for the duration of the hook call. */
typedef struct mqtt_auth {
    uint8_t version;
    const char *client_id;
    size_t client_id_len;
    bool has_username, has_password;
    const char *username;
    size_t username_len;
    const uint8_t *password;
    size_t password_len;
    const char *peer; /* "ip:port" */
    void *tls;        /* the connection's SSL (OpenSSL) over TLS, else NULL */
} mqtt_auth_t;

/* The result of a successful authentication. */
typedef struct mqtt_grant {
    void *user;           /* handed back to every later hook */
    char acl_prefix[128]; /* "" = no restriction; else every topic and
                             filter must start with it */
    char deny_prefix[64]; /* "" = none; else no topic may start with it:
                             publishes and literal filters there are refused,
                             and wildcard subscriptions never deliver from it */
} mqtt_grant_t;

/* The publish hook's answers. */
#define MQTT_HOOK_ROUTE 0   /* route to subscribers and acknowledge now */
#define MQTT_HOOK_PENDING 1 /* route now; the hook completes the ticket */
/* Any value >= 0x80 refuses the message with that reason code. */

typedef struct mqtt_hooks {
    /* Returns 0 to accept (and fills *grant) or an MQTT 5 CONNACK reason
     * code (0x86 bad credentials, 0x87 not authorized, 0x85 bad client id,
     * 0x8A banned, 0x88 unavailable). */
    uint8_t (*authenticate)(void *ctx, const mqtt_auth_t *a, mqtt_grant_t *grant);
    void (*connected)(void *ctx, void *user);
    /* clean: the client sent DISCONNECT (normal); else a network error,
     * keepalive expiry, protocol error or a takeover. */
    void (*disconnected)(void *ctx, void *user, bool clean);
    /* Inbound PUBLISH that passed the ACL. ticket is non-NULL for QoS > 0;
     * with MQTT_HOOK_PENDING the hook must call mqtt_ticket_complete(ticket)
     * exactly once, later, on the loop thread. *reason_string may be set to
     * a static string explaining a refusal (MQTT 5 reason string). */
    int (*publish)(void *ctx, void *user, const char *topic, size_t topic_len,
                   const uint8_t *payload, size_t payload_len, uint8_t qos, mqtt_ticket_t *ticket,
                   const char **reason_string);
    /* A subscription was granted (called after the SUBACK is queued, once
     * per granted filter), so the hook can send what the subscriber should
     * see at once. May be NULL. */
    void (*subscribed)(void *ctx, void *user, const char *filter, size_t filter_len);
} mqtt_hooks_t;

/* Statistics for /metrics. */
typedef struct mqtt_stats {
    uint64_t connections;     /* currently open */
    uint64_t sessions;        /* including offline persistent ones */
    uint64_t accepted_total;  /* TCP connections accepted */
    uint64_t connect_refused; /* CONNECTs refused (auth, protocol, limits) */
    uint64_t protocol_errors; /* connections closed for malformed input */
    uint64_t acl_denied;      /* publishes and subscriptions refused by ACL */
    uint64_t msgs_received;   /* PUBLISH packets in */
    uint64_t msgs_sent;       /* PUBLISH packets out */
    uint64_t msgs_dropped;    /* dropped: queue full, slow consumer, no session */
    uint64_t keepalive_timeouts;
    uint64_t subscriptions;
} mqtt_stats_t;

/* Creates a broker bound to host:port on base. cfg and hooks are borrowed
 * and must outlive it. Returns 0, -EADDRINUSE, -EACCES or -EINVAL. */
int mqtt_broker_new(struct event_base *base, const config_t *cfg, const char *host, int port,
                    const mqtt_hooks_t *hooks, void *hooks_ctx, mqtt_broker_t **out);

/* Adds a TLS listener on host:port using ctx (an SSL_CTX, borrowed; it
 * must outlive the broker). Returns 0, -EADDRINUSE, -EACCES or -EINVAL. */
struct ssl_ctx_st;
int mqtt_broker_listen_tls(mqtt_broker_t *b, const char *host, int port, struct ssl_ctx_st *ctx);

/* Drops every retained message whose topic starts with prefix (a revoked
 * device's). Returns how many. */
size_t mqtt_broker_drop_retained(mqtt_broker_t *b, const char *prefix);

/* Closes every connection (v5 clients get DISCONNECT 0x8B) and frees
 * everything. Pending tickets may still be completed afterwards; they are
 * then no-ops. NULL-safe. */
void mqtt_broker_free(mqtt_broker_t *b);

/* Completes a ticket handed to the publish hook: reason 0 accepts (the
 * PUBACK/PUBREC goes out when every earlier one has), >= 0x80 refuses.
 * reason_string (static) is sent to v5 clients that allow it. */
void mqtt_ticket_complete(mqtt_ticket_t *t, uint8_t reason, const char *reason_string);

/* Publishes a message from the server itself (no ACL). Copies everything.
 * Returns the number of sessions it was delivered or queued to, or < 0. */
int mqtt_broker_publish(mqtt_broker_t *b, const char *topic, const uint8_t *payload, size_t len,
                        uint8_t qos, bool retain);

/* Offers a message to one client's session only, if it has a subscription
 * matching topic (delivered now, or queued in its persistent session).
 * Returns true if the session took it. Copies everything. */
bool mqtt_broker_send(mqtt_broker_t *b, const char *client_id, const char *topic,
                      const uint8_t *payload, size_t len, uint8_t qos);

/* Drops the live connection of client_id (v5: DISCONNECT with reason) and,
 * if discard_session, its session too. Returns 0 or -ENOENT. */
int mqtt_broker_kick(mqtt_broker_t *b, const char *client_id, uint8_t reason, bool discard_session);

/* Serves an already connected socket as if it had been accepted (takes
 * ownership of fd). For tests and fuzzing over socketpair(2). Returns 0 or
 * -ENOMEM/-EMFILE (fd is closed then). */
int mqtt_broker_adopt(mqtt_broker_t *b, int fd, const char *peer);

void mqtt_broker_stats(const mqtt_broker_t *b, mqtt_stats_t *out);

/* Appends Prometheus text lines for the broker's counters. */
void mqtt_broker_metrics(const mqtt_broker_t *b, struct evbuffer *buf);

#endif

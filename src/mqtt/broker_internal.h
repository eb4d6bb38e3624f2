/*
 * Broker internals shared by broker.c (listener, connections, read loop),
 * session.c (sessions, queues, delivery) and the handle_<packet>.c files.
 *
 * Ownership:
 *   mqtt_broker_t owns every conn_t (list) and every session_t (map by
 *   client id). A conn_t points at its session while attached; a session
 *   points back at its conn while online. A msg_t is refcounted: each
 *   session queue entry and inflight slot holds one reference.
 *   A conn_t is freed only when it is closed AND no ticket (pending ack)
 *   still points at it, so a storage completion that arrives after the
 *   client left finds valid memory and does nothing.
 *
 * Connection state machine (docs/architecture.md has the diagram):
 *   AWAIT_CONNECT --CONNECT ok--> ACTIVE --DISCONNECT/error/timeout--> CLOSED
 *   AWAIT_CONNECT --bad/timeout--> CLOSED
 */
#ifndef DROVER_MQTT_BROKER_INTERNAL_H
#define DROVER_MQTT_BROKER_INTERNAL_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common/strmap.h"
#include "mqtt/broker.h"
#include "mqtt/codec.h"
#include "mqtt/topic.h"

typedef struct msg {
    uint32_t refs;
    uint8_t qos;
    bool retain;
    uint16_t topic_len;
    uint32_t props_len; /* v5 properties to forward (no topic alias/sub id) */
    uint32_t payload_len;
    int64_t expire_at; /* ms; 0 = never (message expiry interval) */
    char *topic;       /* points into data */
    uint8_t *props;
    uint8_t *payload;
    char data[];
} msg_t;

msg_t *msg_new(const char *topic, size_t topic_len, const uint8_t *props, size_t props_len,
               const uint8_t *payload, size_t payload_len, uint8_t qos, bool retain);
void msg_unref(msg_t *m);
/* A message whose v5 properties are copied from a validated block minus
 * those that are per hop (will delay, topic alias, subscription id,
 * message expiry: the remaining expiry is written at each send from
 * expire_at, which this sets from the block's Message Expiry Interval). */
msg_t *msg_from_props(const char *topic, size_t tlen, const mqtt_bin_t *props,
                      const uint8_t *payload, size_t plen, uint8_t qos, bool retain);

typedef struct outmsg {
    msg_t *msg;
    uint16_t packet_id;
    uint8_t qos;
    bool retain;   /* the RETAIN flag this delivery carries */
    uint8_t state; /* OUT_SENT, or OUT_RELEASED (QoS 2: PUBREL sent) */
} outmsg_t;

enum { OUT_SENT = 0, OUT_RELEASED = 1 };

/* What a topic-tree owner is: a session, or a shared subscription group. */
enum { OWNER_SESSION = 1, OWNER_SHARED = 2 };

typedef struct session session_t;

/* $share/{group}/{filter}: one tree entry for the group; each message goes
 * to one member, round robin, online members first. */
typedef struct shared {
    int kind;   /* OWNER_SHARED; first, like session_t's */
    char *name; /* "$share/{group}/{filter}", the map key */
    size_t name_len;
    const char *filter; /* points into name */
    size_t filter_len;
    struct shared_member {
        session_t *s;
        uint8_t opts;
    } * members;
    uint32_t n, cap, next;
    uint64_t match_gen;
    struct shared *match_next;
} shared_t;

typedef struct conn conn_t;

struct session {
    int kind; /* OWNER_SESSION; first, like shared_t's */
    mqtt_broker_t *broker;
    char *client_id;
    size_t client_id_len;
    conn_t *conn;       /* NULL while offline */
    char *deny_prefix;  /* copied from the client's grant; NULL = none */
    char *allow_prefix; /* likewise: only topics under it are delivered */
    bool persistent;
    uint32_t expiry_s; /* after disconnect; UINT32_MAX = never */
    int64_t expire_at; /* ms; while offline */
    /* Subscriptions: filter text and options, mirrored in the tree. */
    struct sub_entry {
        char *filter; /* as subscribed, "$share/g/f" included */
        uint16_t len;
        uint8_t opts;
        uint32_t sub_id; /* v5 subscription identifier; 0 = none */
    } * subs;
    uint32_t nsubs, subs_cap;
    /* Outgoing QoS 1 messages sent and not yet acknowledged. */
    outmsg_t *inflight;
    uint32_t ninflight, inflight_cap;
    /* Messages waiting for an inflight slot or for the client to return. */
    outmsg_t *queue; /* ring */
    uint32_t qhead, qlen, qcap;
    uint64_t queued_bytes; /* payload bytes in queue */
    /* A will waiting out its Will Delay Interval (MQTT 5). */
    msg_t *will;
    struct event *will_timer;
    uint16_t next_packet_id;
    /* Inbound QoS 2 packet ids awaiting PUBREL (de-duplication). */
    uint16_t *qos2_ids;
    uint32_t nqos2;
    /* Routing scratch: de-duplicates a session matched by several filters. */
    uint64_t match_gen;
    uint8_t match_qos;
    bool match_rap; /* a matching subscription has Retain As Published */
    bool matched;
    struct session *match_next;
};

typedef enum {
    CONN_AWAIT_CONNECT,
    CONN_ACTIVE,
    CONN_CLOSED,
} conn_state_t;

/* One acknowledgement owed to a client, in arrival order. */
struct mqtt_ticket {
    struct mqtt_ticket *next;
    conn_t *conn;
    uint16_t packet_id;
    uint8_t type; /* MQTT_PUBACK or MQTT_PUBREC */
    uint8_t reason;
    bool done;
    const char *reason_string;
};

struct conn {
    mqtt_broker_t *broker;
    conn_t *prev, *next; /* broker's list of open connections */
    struct bufferevent *bev;
    struct ssl_st *ssl; /* over TLS: owned by bev */
    conn_state_t state;
    uint8_t version;
    uint16_t keepalive;
    char peer[64];
    session_t *session;
    void *user; /* from the authenticate hook */
    bool authed;
    char *acl_prefix; /* NULL = unrestricted */
    size_t acl_prefix_len;
    char *deny_prefix; /* NULL = none */
    size_t deny_prefix_len;
    /* Limits the client announced (v5). */
    uint32_t client_max_packet; /* 0 = no limit */
    uint16_t client_receive_max;
    uint16_t client_alias_max; /* aliases we may use towards the client */
    char **aliases_in;         /* [1..broker_alias_max]: the client's aliases */
    uint32_t broker_alias_max; /* topic_alias_max announced to this client */
    strmap_t aliases_out;      /* topic -> alias we assigned (keys owned) */
    uint16_t next_alias_out;
    /* PUBLISH quota (token bucket), see publish_rate. */
    double tokens;
    int64_t tokens_at; /* monotonic us of the last refill */
    bool throttled;
    struct event *throttle_timer;
    bool problem_info; /* v5 "request problem information" (default 1) */
    /* Pending acknowledgements (tickets), FIFO. */
    struct mqtt_ticket *ack_head, *ack_tail;
    uint32_t nacks;
    bool read_paused;
    /* Will message, published on an unclean end. */
    msg_t *will;
    uint32_t will_delay;
    bool clean_disconnect;
    uint32_t refs;          /* 1 while open + 1 per ticket */
    int64_t last_packet_ms; /* last whole packet (accept time before CONNECT) */
};

struct mqtt_broker {
    struct event_base *base;
    const config_t *cfg;
    const mqtt_hooks_t *hooks;
    void *hooks_ctx;
    struct evconnlistener *listener;
    struct evconnlistener *tls_listener;
    struct ssl_ctx_st *tls_ctx;
    struct event *sweep; /* expires offline sessions */
    conn_t *conns;
    uint64_t nconns;
    strmap_t sessions;
    strmap_t shared;    /* "$share/g/f" -> shared_t */
    strmap_t retained;  /* topic -> msg_t (retain set) */
    strmap_t takeovers; /* client id -> struct takeover (abuse limit) */
    topic_tree_t *tree;
    uint64_t match_gen;
    mqtt_stats_t stats;
    uint64_t throttled;    /* times a client hit its publish quota */
    uint64_t tls_failures; /* handshakes that failed */
    int64_t last_session_sweep;
    struct closing *lingering; /* closed connections still flushing */
    bool shutting_down;
};

/* Takeovers of one client id in the current minute (takeover_limit). */
struct takeover {
    char *id; /* the map key; in the same allocation */
    int64_t window_start;
    uint32_t count;
};

/* broker.c */
void conn_send(conn_t *c, const uint8_t *data, size_t len);
/* Closes the connection: v5 clients get DISCONNECT(reason) first when
 * reason != 0 and CONNECT was accepted (or a CONNACK for pre-CONNECT
 * errors is sent by the caller). Detaches the session, fires the will
 * unless the client disconnected cleanly. Idempotent. */
void conn_close(conn_t *c, uint8_t reason);
void conn_unref(conn_t *c);
bool conn_acl_ok(const conn_t *c, const char *topic, size_t len);
size_t conn_outbuf_len(const conn_t *c);
/* Re-enables reading and drains packets already buffered. */
void conn_resume_read(conn_t *c);
/* Appends an acknowledgement owed for packet_id to the FIFO. */
mqtt_ticket_t *conn_ticket_new(conn_t *c, uint8_t type, uint16_t packet_id);
/* Sends (or, behind pending tickets, queues) an acknowledgement. */
void conn_ack(conn_t *c, uint8_t type, uint16_t packet_id, uint8_t reason);

/* session.c */
session_t *session_find(mqtt_broker_t *b, const char *id, size_t len);
session_t *session_new(mqtt_broker_t *b, const char *id, size_t len);
void session_free(session_t *s);
/* Removes the session from the broker (tree, map) and frees it. */
void session_discard(session_t *s);
/* Returns 0 (new), 1 (replaced an existing one), -ENOSPC (over
 * max_subscriptions), -EINVAL (a malformed $share name), -ENOMEM. */
int session_subscribe(session_t *s, const char *filter, size_t len, uint8_t opts, uint32_t sub_id);
int session_unsubscribe(session_t *s, const char *filter, size_t len);
/* Sends inflight (DUP) and queued messages to the freshly attached conn. */
void session_resume(session_t *s);
/* Offers a message to a session at the given QoS with the given RETAIN
 * flag. Returns false if it was dropped (offline at QoS 0, queue full,
 * stalled reader, expired, no memory). */
bool session_deliver(session_t *s, msg_t *m, uint8_t qos, bool retain);
/* PUBREC / PUBCOMP from the client for an outgoing QoS 2 message. */
int session_pubrec(session_t *s, uint16_t packet_id);
int session_pubcomp(session_t *s, uint16_t packet_id);
/* Drops an outgoing message the client refused (PUBREC >= 0x80). */
int session_forget(session_t *s, uint16_t packet_id);
/* Sends the retained messages matching filter (after a SUBSCRIBE). */
void session_send_retained(session_t *s, const char *filter, size_t len, uint8_t opts);
/* Stores or clears (empty payload) the retained message of m's topic. */
void broker_retain(mqtt_broker_t *b, msg_t *m);
/* Publishes and drops a will that waited for its delay. */
void session_fire_will(session_t *s);
void shared_free(shared_t *g);
/* False when the session's deny prefix covers topic. */
bool session_may_see(const session_t *s, const char *topic, size_t len);
/* The highest QoS of the session's subscriptions matching topic, or -1. */
int session_match(const session_t *s, const char *topic, size_t len);
/* PUBACK from the client. Returns 0 or -ENOENT. */
int session_ack(session_t *s, uint16_t packet_id);
/* Routes a message to every matching session; returns the count. */
/* from: the publishing session (for the v5 No Local option), or NULL. */
int broker_route(mqtt_broker_t *b, msg_t *m, const session_t *from);
void broker_sweep_sessions(mqtt_broker_t *b, int64_t now);

/* handle_*.c: each returns 0, or a reason code > 0 to close the connection
 * with (a negative errno from the codec is mapped before the call). */
int handle_connect(conn_t *c, const uint8_t *body, size_t len);
int handle_publish(conn_t *c, uint8_t first, const uint8_t *body, size_t len);
int handle_puback(conn_t *c, uint8_t type, const uint8_t *body, size_t len);
int handle_subscribe(conn_t *c, uint8_t type, const uint8_t *body, size_t len);
int handle_disconnect(conn_t *c, const uint8_t *body, size_t len);

/* Maps a codec error to an MQTT 5 reason code. */
uint8_t mqtt_reason_from_errno(int err);

#endif

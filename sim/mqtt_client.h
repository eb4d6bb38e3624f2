/*
 * The client side of MQTT 3.1.1 and 5.0 that drover-sim needs, as pure
 * functions over byte buffers (no I/O, no allocation), so they are unit
 * tested and fuzzable without sockets.
 *
 * Encoders write one whole packet into (out, cap) and return its length in
 * *len; -ENOSPC when it does not fit (nothing useful is written then),
 * -EINVAL for arguments MQTT cannot carry (a string over 65535 bytes, QoS
 * above 2). The sim only ever sends: CONNECT, PUBLISH, PUBACK, PUBREC,
 * PUBREL, PUBCOMP, SUBSCRIBE, PINGREQ and DISCONNECT. MQTT 5 packets carry
 * no properties except the session expiry interval in CONNECT; the QoS
 * acknowledgements use the 2-byte form (success), valid in both versions.
 *
 * QoS 2 takes four packets: the sender's PUBLISH, the receiver's PUBREC,
 * the sender's PUBREL (the only one with fixed-header flags 0010) and the
 * receiver's PUBCOMP, all carrying the PUBLISH's packet id.
 *
 * Decoders take one packet's body (after the fixed header, exactly
 * `remaining length` bytes) and return 0 or -EPROTO for anything malformed;
 * they never read past len. MQTT 5 properties are skipped (their length is
 * checked, their content is not needed by the sim). Pointers in decoded
 * structs borrow from the input buffer.
 */
#ifndef DROVER_SIM_MQTT_CLIENT_H
#define DROVER_SIM_MQTT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    SIM_MQTT_CONNECT = 1,
    SIM_MQTT_CONNACK = 2,
    SIM_MQTT_PUBLISH = 3,
    SIM_MQTT_PUBACK = 4,
    SIM_MQTT_PUBREC = 5,
    SIM_MQTT_PUBREL = 6,
    SIM_MQTT_PUBCOMP = 7,
    SIM_MQTT_SUBSCRIBE = 8,
    SIM_MQTT_SUBACK = 9,
    SIM_MQTT_UNSUBSCRIBE = 10,
    SIM_MQTT_UNSUBACK = 11,
    SIM_MQTT_PINGREQ = 12,
    SIM_MQTT_PINGRESP = 13,
    SIM_MQTT_DISCONNECT = 14,
    SIM_MQTT_AUTH = 15,
};

/* Largest fixed header: one type byte and four length bytes. */
#define SIM_MQTT_HEADER_MAX 5
/* Largest remaining length the 4-byte varint can express. */
#define SIM_MQTT_REMAINING_MAX 268435455u

typedef struct sim_mqtt_connect {
    int version;             /* 4 (3.1.1) or 5 */
    const char *client_id;   /* required, may be "" */
    const char *username;    /* NULL: none */
    const char *password;    /* NULL: none */
    uint16_t keepalive;      /* seconds */
    bool clean;              /* clean session / clean start */
    uint32_t session_expiry; /* MQTT 5 only; 0 = not sent */
} sim_mqtt_connect_t;

int sim_mqtt_encode_connect(uint8_t *out, size_t cap, const sim_mqtt_connect_t *c, size_t *len);

/* The head of a PUBLISH (fixed header, topic, packet id, MQTT 5 empty
 * properties) for a payload of payload_len bytes that the caller appends
 * right after it; pid is ignored at QoS 0. */
int sim_mqtt_encode_publish_head(uint8_t *out, size_t cap, int version, const char *topic,
                                 size_t topic_len, int qos, bool dup, uint16_t pid,
                                 size_t payload_len, size_t *len);

/* A whole PUBLISH. */
int sim_mqtt_encode_publish(uint8_t *out, size_t cap, int version, const char *topic,
                            size_t topic_len, int qos, uint16_t pid, const void *payload,
                            size_t payload_len, size_t *len);

/* SUBSCRIBE of n filters, each at qos[i]. */
int sim_mqtt_encode_subscribe(uint8_t *out, size_t cap, int version, uint16_t pid,
                              const char *const *filters, const uint8_t *qos, size_t n,
                              size_t *len);

/* PUBACK (success; the 2-byte form is valid in both versions). */
int sim_mqtt_encode_puback(uint8_t *out, size_t cap, uint16_t pid, size_t *len);
/* PUBACK, PUBREC, PUBREL or PUBCOMP (type SIM_MQTT_PUB*), success, 2-byte
 * form; PUBREL gets its required flags 0010. -EINVAL for another type or
 * packet id 0. */
int sim_mqtt_encode_ack(uint8_t *out, size_t cap, uint8_t type, uint16_t pid, size_t *len);
int sim_mqtt_encode_pingreq(uint8_t *out, size_t cap, size_t *len);
/* DISCONNECT, normal (reason 0 in MQTT 5). */
int sim_mqtt_encode_disconnect(uint8_t *out, size_t cap, size_t *len);

/* Whether the fixed-header flags are the ones MQTT requires for a packet
 * of this type coming from a server: anything for PUBLISH (its QoS is
 * checked by the decoder), 0010 for PUBREL, 0000 for the rest. */
bool sim_mqtt_flags_ok(uint8_t type, uint8_t flags);

/* Fixed header at the start of buf: 0 with *type, *flags, *remaining and
 * *header_len set; -EAGAIN when buf holds only part of the header;
 * -EPROTO when the length needs more than four bytes. */
int sim_mqtt_parse_header(const uint8_t *buf, size_t len, uint8_t *type, uint8_t *flags,
                          uint32_t *remaining, size_t *header_len);

typedef struct sim_mqtt_connack {
    bool session_present;
    uint8_t code; /* 3.1.1 return code or MQTT 5 reason code */
} sim_mqtt_connack_t;

typedef struct sim_mqtt_ack {
    uint16_t pid;
    uint8_t reason; /* 0 when absent (3.1.1, or MQTT 5 short form) */
} sim_mqtt_ack_t;

typedef struct sim_mqtt_publish {
    const char *topic; /* not NUL-terminated */
    size_t topic_len;
    int qos;
    bool dup, retain;
    uint16_t pid; /* 0 at QoS 0 */
    const uint8_t *payload;
    size_t payload_len;
} sim_mqtt_publish_t;

int sim_mqtt_decode_connack(const uint8_t *body, size_t len, int version, sim_mqtt_connack_t *out);
/* PUBACK, PUBREC, PUBREL and PUBCOMP (same shape). */
int sim_mqtt_decode_ack(const uint8_t *body, size_t len, int version, sim_mqtt_ack_t *out);
/* SUBACK: packet id and up to max return codes into codes (*n set); a
 * SUBACK with more codes than max is -EPROTO. */
int sim_mqtt_decode_suback(const uint8_t *body, size_t len, int version, uint16_t *pid,
                           uint8_t *codes, size_t max, size_t *n);
int sim_mqtt_decode_publish(uint8_t flags, const uint8_t *body, size_t len, int version,
                            sim_mqtt_publish_t *out);
/* DISCONNECT from the server (MQTT 5; 3.1.1 servers never send one):
 * *reason is 0 for an empty body. */
int sim_mqtt_decode_disconnect(const uint8_t *body, size_t len, int version, uint8_t *reason);

/* Human name of a CONNACK code ("bad user name or password"), for reports. */
const char *sim_mqtt_connack_str(int version, uint8_t code);
/* Whether a refused CONNACK is worth retrying later (server busy or
 * unavailable, quota) rather than a permanent refusal (credentials,
 * identifier, protocol). */
bool sim_mqtt_connack_retryable(int version, uint8_t code);

#endif

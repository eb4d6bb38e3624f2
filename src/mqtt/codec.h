/*
 * MQTT 3.1.1 and 5.0 packet codec: pure functions over (const uint8_t *,
 * size_t), no I/O, no allocation, so that every decoder can be fuzzed
 * without sockets.
 *
 * Decoders borrow: every string and binary field in a decoded struct points
 * into the caller's packet buffer and is valid only as long as it is.
 * Strings are validated as MQTT UTF-8 (well-formed, no U+0000, no
 * surrogates) before they are handed out.
 *
 * Errors: -EAGAIN (need more bytes), -EPROTO (malformed packet: 0x81),
 * -EBADMSG (protocol error: 0x82), -ENOTSUP (unsupported protocol level),
 * -E2BIG (over a size limit).
 */
#ifndef DROVER_MQTT_CODEC_H
#define DROVER_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
    MQTT_AUTH = 15,
};

#define MQTT_V311 4
#define MQTT_V5 5

/* MQTT 5 reason codes used by the server. */
enum {
    MQTT_RC_SUCCESS = 0x00,
    MQTT_RC_GRANTED_QOS1 = 0x01,
    MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    MQTT_RC_UNSPECIFIED = 0x80,
    MQTT_RC_MALFORMED = 0x81,
    MQTT_RC_PROTOCOL_ERROR = 0x82,
    MQTT_RC_IMPL_SPECIFIC = 0x83,
    MQTT_RC_UNSUPPORTED_VERSION = 0x84,
    MQTT_RC_CLIENT_ID_INVALID = 0x85,
    MQTT_RC_BAD_USER_OR_PASSWORD = 0x86,
    MQTT_RC_NOT_AUTHORIZED = 0x87,
    MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT_RC_SERVER_BUSY = 0x89,
    MQTT_RC_BANNED = 0x8A,
    MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    MQTT_RC_KEEPALIVE_TIMEOUT = 0x8D,
    MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT_RC_PACKET_ID_IN_USE = 0x91,
    MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT_RC_PACKET_TOO_LARGE = 0x95,
    MQTT_RC_QUOTA_EXCEEDED = 0x97,
    MQTT_RC_ADMIN_ACTION = 0x98,
    MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    MQTT_RC_SHARED_SUB_NOT_SUPPORTED = 0x9E,
    MQTT_RC_SUB_ID_NOT_SUPPORTED = 0xA1,
    MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED = 0xA2,
};

/* MQTT 3.1.1 CONNACK return codes. */
enum {
    MQTT311_CONNACK_ACCEPTED = 0,
    MQTT311_CONNACK_BAD_PROTOCOL = 1,
    MQTT311_CONNACK_ID_REJECTED = 2,
    MQTT311_CONNACK_UNAVAILABLE = 3,
    MQTT311_CONNACK_BAD_CREDENTIALS = 4,
    MQTT311_CONNACK_NOT_AUTHORIZED = 5,
};

/* MQTT 5 property identifiers. */
enum {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,
    MQTT_PROP_CONTENT_TYPE = 0x03,
    MQTT_PROP_RESPONSE_TOPIC = 0x08,
    MQTT_PROP_CORRELATION_DATA = 0x09,
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT_PROP_SESSION_EXPIRY = 0x11,
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
    MQTT_PROP_SERVER_KEEPALIVE = 0x13,
    MQTT_PROP_AUTH_METHOD = 0x15,
    MQTT_PROP_AUTH_DATA = 0x16,
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT_PROP_WILL_DELAY = 0x18,
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
    MQTT_PROP_RESPONSE_INFO = 0x1A,
    MQTT_PROP_SERVER_REFERENCE = 0x1C,
    MQTT_PROP_REASON_STRING = 0x1F,
    MQTT_PROP_RECEIVE_MAXIMUM = 0x21,
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
    MQTT_PROP_TOPIC_ALIAS = 0x23,
    MQTT_PROP_MAXIMUM_QOS = 0x24,
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,
    MQTT_PROP_USER_PROPERTY = 0x26,
    MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

typedef struct mqtt_str {
    const char *p;
    uint16_t len;
} mqtt_str_t;

typedef struct mqtt_bin {
    const uint8_t *p;
    uint32_t len;
} mqtt_bin_t;

/* The MQTT 5 properties the server acts on; the rest are validated and
 * kept only as the raw block (forwarded as they are for PUBLISH). */
typedef struct mqtt_props {
    uint64_t present; /* bit (1 << id) for every property id seen (ids < 64) */
    uint32_t session_expiry;
    uint32_t message_expiry;
    uint32_t will_delay;
    uint32_t max_packet_size;
    uint32_t sub_id;
    uint16_t receive_max;
    uint16_t topic_alias_max;
    uint16_t topic_alias;
    uint8_t payload_format;
    uint8_t request_problem_info;
    uint8_t request_response_info;
    mqtt_str_t auth_method;
    mqtt_str_t response_topic;
    mqtt_bin_t raw; /* the whole property block, without its length */
} mqtt_props_t;

bool mqtt_props_has(const mqtt_props_t *p, uint8_t id);

typedef struct mqtt_connect {
    uint8_t version; /* MQTT_V311 or MQTT_V5 */
    bool clean_start;
    uint16_t keepalive;
    mqtt_str_t client_id;
    bool has_username, has_password;
    mqtt_str_t username;
    mqtt_bin_t password;
    bool will;
    uint8_t will_qos;
    bool will_retain;
    mqtt_str_t will_topic;
    mqtt_bin_t will_payload;
    mqtt_props_t will_props;
    mqtt_props_t props;
} mqtt_connect_t;

typedef struct mqtt_publish {
    uint8_t qos;
    bool retain, dup;
    mqtt_str_t topic;
    uint16_t packet_id; /* 0 for QoS 0 */
    mqtt_props_t props;
    const uint8_t *payload;
    uint32_t payload_len;
} mqtt_publish_t;

/* SUBSCRIBE and UNSUBSCRIBE: the entries are walked with
 * mqtt_codec_sub_next() after the packet has been validated whole. */
typedef struct mqtt_subscribe {
    uint16_t packet_id;
    mqtt_props_t props;
    const uint8_t *entries; /* first entry */
    size_t entries_len;
    uint32_t count;
    bool unsubscribe;
} mqtt_subscribe_t;

typedef struct mqtt_sub_entry {
    mqtt_str_t filter;
    uint8_t options; /* SUBSCRIBE: the options byte; UNSUBSCRIBE: 0 */
} mqtt_sub_entry_t;

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
typedef struct mqtt_ack {
    uint16_t packet_id;
    uint8_t reason;
} mqtt_ack_t;

typedef struct mqtt_disconnect {
    uint8_t reason;
    mqtt_props_t props;
} mqtt_disconnect_t;

/* Fixed header. On success *hdr_len is 2..5 and *remaining the declared
 * remaining length; the caller checks the total against its limit before
 * buffering the body. -EAGAIN if buf holds too few bytes to tell, -EPROTO
 * for a remaining length of more than four bytes. */
int mqtt_codec_fixed_header(const uint8_t *buf, size_t len, uint8_t *first, uint32_t *remaining,
                            size_t *hdr_len);

/* Checks the flags nibble of the first byte for every type but PUBLISH
 * ([MQTT-2.2.2-1]). Returns 0 or -EPROTO; also -EPROTO for type 0. */
int mqtt_codec_check_flags(uint8_t first);

/* Body decoders: body/len is the variable header + payload. */
int mqtt_codec_decode_connect(const uint8_t *body, size_t len, mqtt_connect_t *out);
int mqtt_codec_decode_publish(uint8_t first, const uint8_t *body, size_t len, uint8_t version,
                              mqtt_publish_t *out);
int mqtt_codec_decode_subscribe(uint8_t type, const uint8_t *body, size_t len, uint8_t version,
                                mqtt_subscribe_t *out);
/* Walks validated entries: *pos starts at 0. Returns 1 with an entry, 0 at
 * the end. */
int mqtt_codec_sub_next(const mqtt_subscribe_t *s, size_t *pos, mqtt_sub_entry_t *out);
int mqtt_codec_decode_ack(const uint8_t *body, size_t len, uint8_t version, mqtt_ack_t *out);
int mqtt_codec_decode_disconnect(const uint8_t *body, size_t len, uint8_t version,
                                 mqtt_disconnect_t *out);

/* MQTT UTF-8 validation ([MQTT-1.5.4-1..3]). */
bool mqtt_codec_utf8_valid(const char *s, size_t len);

/* ---- Encoders: write into out (cap bytes), return the length, or
 * -E2BIG if cap is too small. ---- */

/* Appends a variable byte integer; returns its length (1..4). */
size_t mqtt_codec_put_varint(uint8_t *out, uint32_t v);

/* A property block builder for server-sent properties. */
typedef struct mqtt_prop_buf {
    uint8_t data[512];
    size_t len;
    bool overflow;
} mqtt_prop_buf_t;

void mqtt_prop_u8(mqtt_prop_buf_t *b, uint8_t id, uint8_t v);
void mqtt_prop_u16(mqtt_prop_buf_t *b, uint8_t id, uint16_t v);
void mqtt_prop_u32(mqtt_prop_buf_t *b, uint8_t id, uint32_t v);
void mqtt_prop_varint(mqtt_prop_buf_t *b, uint8_t id, uint32_t v);
void mqtt_prop_str(mqtt_prop_buf_t *b, uint8_t id, const char *s, size_t len);

/* props may be NULL (no properties; for v5 an empty block is written). */
int mqtt_codec_encode_connack(uint8_t *out, size_t cap, uint8_t version, bool session_present,
                              uint8_t reason, const mqtt_prop_buf_t *props);
/* type: MQTT_PUBACK/PUBREC/PUBREL/PUBCOMP/UNSUBACK-less acks. */
int mqtt_codec_encode_ack(uint8_t *out, size_t cap, uint8_t type, uint8_t version,
                          uint16_t packet_id, uint8_t reason);
int mqtt_codec_encode_suback(uint8_t *out, size_t cap, uint8_t type, uint8_t version,
                             uint16_t packet_id, const uint8_t *codes, size_t n);
int mqtt_codec_encode_disconnect(uint8_t *out, size_t cap, uint8_t version, uint8_t reason);
int mqtt_codec_encode_pingresp(uint8_t *out, size_t cap);

/* The PUBLISH packet up to (not including) the payload. props is the raw
 * property block to send (v5 only; may be NULL/0). Returns header length. */
int mqtt_codec_encode_publish_header(uint8_t *out, size_t cap, uint8_t version, uint8_t qos,
                                     bool retain, bool dup, const char *topic, uint16_t topic_len,
                                     uint16_t packet_id, const uint8_t *props, size_t props_len,
                                     size_t payload_len);

#endif

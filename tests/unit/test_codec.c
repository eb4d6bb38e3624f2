/*
 * Unit tests for the MQTT packet codec (src/mqtt/codec.c).
 *
 * Every case is byte-exact and tagged with the clause of the OASIS MQTT
 * 3.1.1 or 5.0 specification it checks: "[MQTT-x.y.z-n]" for a numbered
 * conformance statement, "v5 §x.y.z" for a rule of section x.y.z of 5.0
 * that has no number of its own. Where both versions share a rule, the
 * 3.1.1 number is given.
 *
 * Packets are built with a small independent builder (pb_*) rather than
 * with the codec's own encoders, so a bug shared by an encoder and a
 * decoder cannot cancel out. Every failing decode is also checked to have
 * left its out-parameter untouched (house style: out-params are written
 * only on success), and every encoder is run with each too-small capacity
 * in an exactly sized heap buffer so ASan sees any write past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mqtt/codec.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- Packet builder ------------------------------------------------------ */

typedef struct pb {
    uint8_t b[2048];
    size_t n;
} pb_t;

static void pb_raw(pb_t *p, const void *d, size_t n)
{
    assert_true(p->n + n <= sizeof(p->b));
    if (n > 0)
        memcpy(p->b + p->n, d, n);
    p->n += n;
}

static void pb_u8(pb_t *p, uint8_t v)
{
    pb_raw(p, &v, 1);
}

static void pb_u16(pb_t *p, uint16_t v)
{
    uint8_t d[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    pb_raw(p, d, 2);
}

static void pb_u32(pb_t *p, uint32_t v)
{
    uint8_t d[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    pb_raw(p, d, 4);
}

/* Variable byte integer, written here independently of the codec. */
static void pb_varint(pb_t *p, uint32_t v)
{
    do {
        uint8_t b = v % 128;
        v /= 128;
        if (v > 0)
            b |= 0x80;
        pb_u8(p, b);
    } while (v > 0);
}

static void pb_bin(pb_t *p, const void *d, size_t n)
{
    pb_u16(p, (uint16_t)n);
    pb_raw(p, d, n);
}

static void pb_str(pb_t *p, const char *s)
{
    pb_bin(p, s, strlen(s));
}

/* A property block: length, then the properties. NULL is an empty block. */
static void pb_props(pb_t *p, const pb_t *props)
{
    pb_varint(p, props ? (uint32_t)props->n : 0);
    if (props)
        pb_raw(p, props->b, props->n);
}

static void pb_user_prop(pb_t *p, const char *k, const char *v)
{
    pb_u8(p, MQTT_PROP_USER_PROPERTY);
    pb_str(p, k);
    pb_str(p, v);
}

/* CONNECT body (variable header + payload). The flags byte is written as
 * given and the payload fields are written when non-NULL, independently,
 * so that flags and fields can be made to disagree. */
typedef struct connect_spec {
    const char *proto; /* NULL: "MQTT" */
    uint8_t level;
    uint8_t flags;
    uint16_t keepalive;
    const pb_t *props; /* v5: NULL writes an empty block */
    const char *client_id;
    const pb_t *will_props; /* v5, with will_topic */
    const char *will_topic;
    const void *will_payload;
    size_t will_payload_len;
    const char *username;
    const void *password;
    size_t password_len;
} connect_spec_t;

static void build_connect(pb_t *p, const connect_spec_t *s)
{
    memset(p, 0, sizeof(*p));
    pb_str(p, s->proto ? s->proto : "MQTT");
    pb_u8(p, s->level);
    pb_u8(p, s->flags);
    pb_u16(p, s->keepalive);
    if (s->level == MQTT_V5)
        pb_props(p, s->props);
    pb_str(p, s->client_id ? s->client_id : "");
    if (s->will_topic) {
        if (s->level == MQTT_V5)
            pb_props(p, s->will_props);
        pb_str(p, s->will_topic);
        pb_bin(p, s->will_payload, s->will_payload_len);
    }
    if (s->username)
        pb_str(p, s->username);
    if (s->password)
        pb_bin(p, s->password, s->password_len);
}

/* A minimal CONNECT (clean start, keepalive 60) whose client id is the
 * given raw bytes. */
static void build_connect_cid(pb_t *p, uint8_t level, const void *cid, size_t n)
{
    memset(p, 0, sizeof(*p));
    pb_str(p, "MQTT");
    pb_u8(p, level);
    pb_u8(p, 0x02);
    pb_u16(p, 60);
    if (level == MQTT_V5)
        pb_u8(p, 0);
    pb_bin(p, cid, n);
}

/* A v5 CONNECT with the given CONNECT property block. */
static void build_connect_v5_props(pb_t *p, const pb_t *props)
{
    connect_spec_t s = {.level = MQTT_V5, .flags = 0x02, .props = props, .client_id = "c"};
    build_connect(p, &s);
}

static bool within(const void *ptr, const void *buf, size_t len)
{
    const uint8_t *q = ptr, *b = buf;
    return q >= b && q <= b + len;
}

/* ---- Decoder wrappers: check that a failure leaves *out untouched -------- */

#define POISON 0xA5

static int dec_connect(const uint8_t *b, size_t n, mqtt_connect_t *out)
{
    mqtt_connect_t before;
    memset(out, POISON, sizeof(*out));
    memset(&before, POISON, sizeof(before));
    int rc = mqtt_codec_decode_connect(b, n, out);
    if (rc < 0)
        assert_memory_equal(out, &before, sizeof(before));
    return rc;
}

static int dec_connect_pb(const pb_t *p, mqtt_connect_t *out)
{
    return dec_connect(p->b, p->n, out);
}

static int dec_publish(uint8_t first, const uint8_t *b, size_t n, uint8_t v, mqtt_publish_t *out)
{
    mqtt_publish_t before;
    memset(out, POISON, sizeof(*out));
    memset(&before, POISON, sizeof(before));
    int rc = mqtt_codec_decode_publish(first, b, n, v, out);
    if (rc < 0)
        assert_memory_equal(out, &before, sizeof(before));
    return rc;
}

static int dec_sub(uint8_t type, const uint8_t *b, size_t n, uint8_t v, mqtt_subscribe_t *out)
{
    mqtt_subscribe_t before;
    memset(out, POISON, sizeof(*out));
    memset(&before, POISON, sizeof(before));
    int rc = mqtt_codec_decode_subscribe(type, b, n, v, out);
    if (rc < 0)
        assert_memory_equal(out, &before, sizeof(before));
    return rc;
}

static int dec_ack(const uint8_t *b, size_t n, uint8_t v, mqtt_ack_t *out)
{
    mqtt_ack_t before;
    memset(out, POISON, sizeof(*out));
    memset(&before, POISON, sizeof(before));
    int rc = mqtt_codec_decode_ack(b, n, v, out);
    if (rc < 0)
        assert_memory_equal(out, &before, sizeof(before));
    return rc;
}

static int dec_disconnect(const uint8_t *b, size_t n, uint8_t v, mqtt_disconnect_t *out)
{
    mqtt_disconnect_t before;
    memset(out, POISON, sizeof(*out));
    memset(&before, POISON, sizeof(before));
    int rc = mqtt_codec_decode_disconnect(b, n, v, out);
    if (rc < 0)
        assert_memory_equal(out, &before, sizeof(before));
    return rc;
}

static void assert_str(mqtt_str_t s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.p, want, s.len);
}

/* ---- Fixed header (3.1.1 §2.2.3, v5 §1.5.5 and §2.1.4) ------------------- */

static void test_fixed_header_lengths(void **state)
{
    (void)state;
    /* Remaining Length table of 3.1.1 §2.2.3 / v5 §1.5.5: the edges of
     * every encoded length, 1 to 4 bytes. */
    static const struct {
        uint8_t bytes[6];
        size_t len;
        uint32_t remaining;
    } cases[] = {
        {{0x30, 0x00}, 2, 0},
        {{0x30, 0x7F}, 2, 127},
        {{0x30, 0x80, 0x01}, 3, 128},
        {{0x30, 0xFF, 0x7F}, 3, 16383},
        {{0x30, 0x80, 0x80, 0x01}, 4, 16384},
        {{0x30, 0xFF, 0xFF, 0x7F}, 4, 2097151},
        {{0x30, 0x80, 0x80, 0x80, 0x01}, 5, 2097152},
        {{0x30, 0xFF, 0xFF, 0xFF, 0x7F}, 5, 268435455},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t first = 0;
        uint32_t rem = 0;
        size_t hdr = 0;
        /* Extra bytes after the header (the body) do not matter. */
        uint8_t buf[8];
        memset(buf, 0x55, sizeof(buf));
        memcpy(buf, cases[i].bytes, cases[i].len);
        assert_int_equal(mqtt_codec_fixed_header(buf, sizeof(buf), &first, &rem, &hdr), 0);
        assert_int_equal(first, 0x30);
        assert_int_equal(rem, cases[i].remaining);
        assert_int_equal(hdr, cases[i].len);
        /* Exactly the header, nothing more. */
        assert_int_equal(mqtt_codec_fixed_header(cases[i].bytes, cases[i].len, &first, &rem, &hdr),
                         0);
        assert_int_equal(rem, cases[i].remaining);
        /* And the encoder writes the same bytes. */
        uint8_t enc[4];
        assert_int_equal(mqtt_codec_put_varint(enc, cases[i].remaining), cases[i].len - 1);
        assert_memory_equal(enc, cases[i].bytes + 1, cases[i].len - 1);
    }
}

static void test_fixed_header_too_long(void **state)
{
    (void)state;
    /* v5 §1.5.5 / 3.1.1 §2.2.3: at most four bytes of Remaining Length; a
     * fifth is a malformed packet. */
    static const uint8_t five[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F};
    static const uint8_t four_cont[] = {0x30, 0x80, 0x80, 0x80, 0x80};
    uint8_t first = 0x11;
    uint32_t rem = 0x22;
    size_t hdr = 0x33;
    assert_int_equal(mqtt_codec_fixed_header(five, sizeof(five), &first, &rem, &hdr), -EPROTO);
    assert_int_equal(mqtt_codec_fixed_header(four_cont, sizeof(four_cont), &first, &rem, &hdr),
                     -EPROTO);
    assert_int_equal(first, 0x11);
    assert_int_equal(rem, 0x22);
    assert_int_equal(hdr, 0x33);
}

static void test_fixed_header_truncated(void **state)
{
    (void)state;
    static const uint8_t cont3[] = {0x30, 0xFF, 0xFF, 0xFF};
    static const uint8_t cont1[] = {0x30, 0x80};
    uint8_t first = 0x11;
    uint32_t rem = 0x22;
    size_t hdr = 0x33;
    assert_int_equal(mqtt_codec_fixed_header(cont3, 0, &first, &rem, &hdr), -EAGAIN);
    assert_int_equal(mqtt_codec_fixed_header(cont3, 1, &first, &rem, &hdr), -EAGAIN);
    assert_int_equal(mqtt_codec_fixed_header(cont1, sizeof(cont1), &first, &rem, &hdr), -EAGAIN);
    for (size_t n = 2; n <= sizeof(cont3); n++)
        assert_int_equal(mqtt_codec_fixed_header(cont3, n, &first, &rem, &hdr), -EAGAIN);
    assert_int_equal(first, 0x11);
    assert_int_equal(rem, 0x22);
    assert_int_equal(hdr, 0x33);
}

/* ---- Flags nibble ([MQTT-2.2.2-1], [MQTT-2.2.2-2]; v5 [MQTT-2.1.3-1]) ---- */

static void test_check_flags_all(void **state)
{
    (void)state;
    for (unsigned b = 0; b < 256; b++) {
        unsigned type = b >> 4, flags = b & 0x0F;
        int want;
        if (type == 0)
            want = -EPROTO; /* type 0 is reserved (3.1.1 §2.2.1) */
        else if (type == MQTT_PUBLISH)
            want = 0; /* DUP/QoS/RETAIN: checked by the PUBLISH decoder */
        else if (type == MQTT_PUBREL || type == MQTT_SUBSCRIBE || type == MQTT_UNSUBSCRIBE)
            want = flags == 0x2 ? 0 : -EPROTO;
        else
            want = flags == 0 ? 0 : -EPROTO;
        if (mqtt_codec_check_flags((uint8_t)b) != want)
            fail_msg("check_flags(0x%02X): want %d", b, want);
    }
}

static void test_check_flags_named(void **state)
{
    (void)state;
    /* [MQTT-3.8.1-1] SUBSCRIBE, [MQTT-3.6.1-1] PUBREL, [MQTT-3.10.1-1]
     * UNSUBSCRIBE: bits 3..0 are 0,0,1,0. */
    assert_int_equal(mqtt_codec_check_flags(0x82), 0);
    assert_int_equal(mqtt_codec_check_flags(0x62), 0);
    assert_int_equal(mqtt_codec_check_flags(0xA2), 0);
    assert_int_equal(mqtt_codec_check_flags(0x80), -EPROTO);
    assert_int_equal(mqtt_codec_check_flags(0x83), -EPROTO);
    assert_int_equal(mqtt_codec_check_flags(0x8A), -EPROTO);
    assert_int_equal(mqtt_codec_check_flags(0x60), -EPROTO);
    assert_int_equal(mqtt_codec_check_flags(0xA0), -EPROTO);
    /* [MQTT-2.2.2-1]: every other type has a zero nibble. */
    assert_int_equal(mqtt_codec_check_flags(0x10), 0);
    assert_int_equal(mqtt_codec_check_flags(0x12), -EPROTO);
    assert_int_equal(mqtt_codec_check_flags(0x40), 0);
    assert_int_equal(mqtt_codec_check_flags(0x42), -EPROTO);
    assert_int_equal(mqtt_codec_check_flags(0xC0), 0);
    assert_int_equal(mqtt_codec_check_flags(0xC1), -EPROTO);
    assert_int_equal(mqtt_codec_check_flags(0xE0), 0);
    assert_int_equal(mqtt_codec_check_flags(0xE8), -EPROTO);
    assert_int_equal(mqtt_codec_check_flags(0xF0), 0);
    assert_int_equal(mqtt_codec_check_flags(0xF2), -EPROTO);
    /* Type 0 is reserved, whatever its flags. */
    assert_int_equal(mqtt_codec_check_flags(0x00), -EPROTO);
    assert_int_equal(mqtt_codec_check_flags(0x02), -EPROTO);
    /* PUBLISH: any nibble passes here. */
    assert_int_equal(mqtt_codec_check_flags(0x3F), 0);
}

/* ---- CONNECT ------------------------------------------------------------- */

static void test_connect_v311_minimal_bytes(void **state)
{
    (void)state;
    /* 3.1.1 §3.1.2: "MQTT", level 4, clean session, keepalive 60, id "abc". */
    static const uint8_t body[] = {0x00, 0x04, 'M',  'Q',  'T', 'T', 0x04, 0x02,
                                   0x00, 0x3C, 0x00, 0x03, 'a', 'b', 'c'};
    mqtt_connect_t c;
    assert_int_equal(dec_connect(body, sizeof(body), &c), 0);
    assert_int_equal(c.version, MQTT_V311);
    assert_true(c.clean_start);
    assert_int_equal(c.keepalive, 60);
    assert_str(c.client_id, "abc");
    assert_ptr_equal(c.client_id.p, (const char *)body + 12); /* borrowed, not copied */
    assert_false(c.will);
    assert_false(c.has_username);
    assert_false(c.has_password);
}

static void test_connect_v311_full(void **state)
{
    (void)state;
    static const uint8_t will_payload[] = {'o', 'f', 'f', 0x00, 0xFF}; /* binary */
    static const uint8_t password[] = {0x00, 0xFF, 'p'};
    /* username, password, will retain, will QoS 1, will, clean session */
    connect_spec_t s = {
        .level = MQTT_V311,
        .flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02,
        .keepalive = 0x1234,
        .client_id = "dev-1",
        .will_topic = "devices/dev-1/status",
        .will_payload = will_payload,
        .will_payload_len = sizeof(will_payload),
        .username = "alice",
        .password = password,
        .password_len = sizeof(password),
    };
    pb_t p;
    build_connect(&p, &s);
    mqtt_connect_t c;
    assert_int_equal(dec_connect_pb(&p, &c), 0);
    assert_int_equal(c.version, MQTT_V311);
    assert_true(c.clean_start);
    assert_int_equal(c.keepalive, 0x1234);
    assert_str(c.client_id, "dev-1");
    assert_true(c.will);
    assert_int_equal(c.will_qos, 1);
    assert_true(c.will_retain);
    assert_str(c.will_topic, "devices/dev-1/status");
    assert_int_equal(c.will_payload.len, sizeof(will_payload));
    assert_memory_equal(c.will_payload.p, will_payload, sizeof(will_payload));
    assert_true(c.has_username);
    assert_str(c.username, "alice");
    assert_true(c.has_password);
    assert_int_equal(c.password.len, sizeof(password));
    assert_memory_equal(c.password.p, password, sizeof(password));
    assert_true(within(c.client_id.p, p.b, p.n));
    assert_true(within(c.will_topic.p, p.b, p.n));
    assert_true(within(c.will_payload.p, p.b, p.n));
    assert_true(within(c.username.p, p.b, p.n));
    assert_true(within(c.password.p, p.b, p.n));

    /* Will QoS 2, no retain, no clean session, empty client id (allowed by
     * the codec; [MQTT-3.1.3-7] is the server's decision). */
    connect_spec_t s2 = {.level = MQTT_V311,
                         .flags = 0x10 | 0x04,
                         .will_topic = "w",
                         .will_payload = "",
                         .will_payload_len = 0};
    build_connect(&p, &s2);
    assert_int_equal(dec_connect_pb(&p, &c), 0);
    assert_false(c.clean_start);
    assert_true(c.will);
    assert_int_equal(c.will_qos, 2);
    assert_false(c.will_retain);
    assert_int_equal(c.client_id.len, 0);
    assert_int_equal(c.will_payload.len, 0);
}

static void test_connect_v5_full(void **state)
{
    (void)state;
    pb_t props = {.n = 0};
    pb_u8(&props, MQTT_PROP_SESSION_EXPIRY);
    pb_u32(&props, 3600);
    pb_u8(&props, MQTT_PROP_RECEIVE_MAXIMUM);
    pb_u16(&props, 20);
    pb_u8(&props, MQTT_PROP_MAXIMUM_PACKET_SIZE);
    pb_u32(&props, 65536);
    pb_u8(&props, MQTT_PROP_TOPIC_ALIAS_MAXIMUM);
    pb_u16(&props, 10);
    pb_u8(&props, MQTT_PROP_REQUEST_PROBLEM_INFO);
    pb_u8(&props, 0);
    pb_u8(&props, MQTT_PROP_REQUEST_RESPONSE_INFO);
    pb_u8(&props, 1);
    /* v5 §3.1.2.11.8: the User Property may appear several times. */
    pb_user_prop(&props, "site", "berlin");
    pb_user_prop(&props, "site", "paris");

    pb_t will_props = {.n = 0};
    pb_u8(&will_props, MQTT_PROP_WILL_DELAY);
    pb_u32(&will_props, 30);
    pb_u8(&will_props, MQTT_PROP_PAYLOAD_FORMAT);
    pb_u8(&will_props, 1);
    pb_u8(&will_props, MQTT_PROP_MESSAGE_EXPIRY);
    pb_u32(&will_props, 120);
    pb_u8(&will_props, MQTT_PROP_CONTENT_TYPE);
    pb_str(&will_props, "text/plain");
    pb_user_prop(&will_props, "k", "v");

    static const uint8_t password[] = {'s', 'e', 'c', 'r', 'e', 't'};
    /* username, password, will QoS 2, will, clean start */
    connect_spec_t s = {
        .level = MQTT_V5,
        .flags = 0x80 | 0x40 | 0x10 | 0x04 | 0x02,
        .keepalive = 30,
        .props = &props,
        .client_id = "dev-\xC3\xA9", /* UTF-8 "dev-é" */
        .will_props = &will_props,
        .will_topic = "devices/dev/status",
        .will_payload = "gone",
        .will_payload_len = 4,
        .username = "bob",
        .password = password,
        .password_len = sizeof(password),
    };
    pb_t p;
    build_connect(&p, &s);
    mqtt_connect_t c;
    assert_int_equal(dec_connect_pb(&p, &c), 0);
    assert_int_equal(c.version, MQTT_V5);
    assert_true(c.clean_start);
    assert_int_equal(c.keepalive, 30);
    assert_str(c.client_id, "dev-\xC3\xA9");
    assert_true(c.will);
    assert_int_equal(c.will_qos, 2);
    assert_false(c.will_retain);
    assert_str(c.will_topic, "devices/dev/status");
    assert_int_equal(c.will_payload.len, 4);
    assert_memory_equal(c.will_payload.p, "gone", 4);
    assert_str(c.username, "bob");
    assert_int_equal(c.password.len, sizeof(password));
    assert_memory_equal(c.password.p, password, sizeof(password));

    assert_true(mqtt_props_has(&c.props, MQTT_PROP_SESSION_EXPIRY));
    assert_int_equal(c.props.session_expiry, 3600);
    assert_true(mqtt_props_has(&c.props, MQTT_PROP_RECEIVE_MAXIMUM));
    assert_int_equal(c.props.receive_max, 20);
    assert_true(mqtt_props_has(&c.props, MQTT_PROP_MAXIMUM_PACKET_SIZE));
    assert_int_equal(c.props.max_packet_size, 65536);
    assert_true(mqtt_props_has(&c.props, MQTT_PROP_TOPIC_ALIAS_MAXIMUM));
    assert_int_equal(c.props.topic_alias_max, 10);
    assert_true(mqtt_props_has(&c.props, MQTT_PROP_REQUEST_PROBLEM_INFO));
    assert_int_equal(c.props.request_problem_info, 0);
    assert_true(mqtt_props_has(&c.props, MQTT_PROP_REQUEST_RESPONSE_INFO));
    assert_int_equal(c.props.request_response_info, 1);
    assert_true(mqtt_props_has(&c.props, MQTT_PROP_USER_PROPERTY));
    assert_false(mqtt_props_has(&c.props, MQTT_PROP_AUTH_METHOD));
    assert_int_equal(c.props.raw.len, props.n);
    assert_memory_equal(c.props.raw.p, props.b, props.n);
    assert_true(within(c.props.raw.p, p.b, p.n));

    assert_true(mqtt_props_has(&c.will_props, MQTT_PROP_WILL_DELAY));
    assert_int_equal(c.will_props.will_delay, 30);
    assert_int_equal(c.will_props.payload_format, 1);
    assert_int_equal(c.will_props.message_expiry, 120);
    assert_true(mqtt_props_has(&c.will_props, MQTT_PROP_CONTENT_TYPE));
    assert_false(mqtt_props_has(&c.will_props, MQTT_PROP_SESSION_EXPIRY));
    assert_int_equal(c.will_props.raw.len, will_props.n);
    assert_memory_equal(c.will_props.raw.p, will_props.b, will_props.n);

    /* Auth method is kept for the server's "not supported" answer. */
    pb_t auth = {.n = 0};
    pb_u8(&auth, MQTT_PROP_AUTH_METHOD);
    pb_str(&auth, "SCRAM-SHA-1");
    build_connect_v5_props(&p, &auth);
    assert_int_equal(dec_connect_pb(&p, &c), 0);
    assert_true(mqtt_props_has(&c.props, MQTT_PROP_AUTH_METHOD));
    assert_str(c.props.auth_method, "SCRAM-SHA-1");

    /* v5 §3.1.2.9: a password without a user name is allowed in 5.0. */
    connect_spec_t s2 = {.level = MQTT_V5,
                         .flags = 0x40 | 0x02,
                         .client_id = "c",
                         .password = "pw",
                         .password_len = 2};
    build_connect(&p, &s2);
    assert_int_equal(dec_connect_pb(&p, &c), 0);
    assert_false(c.has_username);
    assert_true(c.has_password);
    assert_int_equal(c.password.len, 2);
    assert_int_equal(c.props.raw.len, 0);
}

static void test_connect_protocol(void **state)
{
    (void)state;
    mqtt_connect_t c;
    pb_t p;
    /* [MQTT-3.1.2-1] / [MQTT-3.1.2-2]: MQTT 3.1 ("MQIsdp", level 3) is an
     * unacceptable protocol version, answered with return code 1. */
    connect_spec_t s = {.proto = "MQIsdp", .level = 3, .flags = 0x02, .client_id = "c"};
    build_connect(&p, &s);
    assert_int_equal(dec_connect_pb(&p, &c), -ENOTSUP);
    /* [MQTT-3.1.2-2]: "MQTT" with a level other than 4 or 5. */
    static const uint8_t levels[] = {0, 1, 2, 3, 6, 0xFF};
    for (size_t i = 0; i < sizeof(levels); i++) {
        connect_spec_t sl = {.level = levels[i], .flags = 0x02, .client_id = "c"};
        build_connect(&p, &sl);
        assert_int_equal(dec_connect_pb(&p, &c), -ENOTSUP);
    }
    /* Other names, e.g. lower case. */
    connect_spec_t sn = {.proto = "mqtt", .level = 4, .flags = 0x02, .client_id = "c"};
    build_connect(&p, &sn);
    assert_int_equal(dec_connect_pb(&p, &c), -ENOTSUP);
}

static void test_connect_flags(void **state)
{
    (void)state;
    mqtt_connect_t c;
    pb_t p;
    static const uint8_t versions[] = {MQTT_V311, MQTT_V5};
    for (size_t v = 0; v < 2; v++) {
        uint8_t lv = versions[v];
        /* [MQTT-3.1.2-3]: the reserved flag bit 0 must be zero. */
        connect_spec_t s1 = {.level = lv, .flags = 0x03, .client_id = "c"};
        build_connect(&p, &s1);
        assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
        /* [MQTT-3.1.2-14] (v5 §3.1.2.6): Will QoS 3. */
        connect_spec_t s2 = {.level = lv,
                             .flags = 0x18 | 0x04 | 0x02,
                             .client_id = "c",
                             .will_topic = "w",
                             .will_payload = "x",
                             .will_payload_len = 1};
        build_connect(&p, &s2);
        assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
        /* [MQTT-3.1.2-13]: Will flag 0 with Will QoS 1 or 2. */
        connect_spec_t s3 = {.level = lv, .flags = 0x08 | 0x02, .client_id = "c"};
        build_connect(&p, &s3);
        assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
        s3.flags = 0x10 | 0x02;
        build_connect(&p, &s3);
        assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
        /* [MQTT-3.1.2-15]: Will flag 0 with Will Retain. */
        s3.flags = 0x20 | 0x02;
        build_connect(&p, &s3);
        assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
        /* Will flag 0 with Will QoS 3 and Will Retain: still rejected. */
        s3.flags = 0x38 | 0x02;
        build_connect(&p, &s3);
        assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
    }
    /* [MQTT-3.1.2-22]: in 3.1.1 a password needs a user name. */
    connect_spec_t s4 = {.level = MQTT_V311,
                         .flags = 0x40 | 0x02,
                         .client_id = "c",
                         .password = "pw",
                         .password_len = 2};
    build_connect(&p, &s4);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
}

static void test_connect_trailing_and_truncated(void **state)
{
    (void)state;
    mqtt_connect_t c;
    pb_t p;
    pb_t props = {.n = 0};
    pb_u8(&props, MQTT_PROP_SESSION_EXPIRY);
    pb_u32(&props, 10);
    pb_t will_props = {.n = 0};
    pb_u8(&will_props, MQTT_PROP_WILL_DELAY);
    pb_u32(&will_props, 5);
    static const uint8_t versions[] = {MQTT_V311, MQTT_V5};
    for (size_t v = 0; v < 2; v++) {
        connect_spec_t s = {.level = versions[v],
                            .flags = 0xC0 | 0x0C | 0x02,
                            .keepalive = 5,
                            .props = &props,
                            .client_id = "client",
                            .will_props = &will_props,
                            .will_topic = "a/b",
                            .will_payload = "bye",
                            .will_payload_len = 3,
                            .username = "u",
                            .password = "p",
                            .password_len = 1};
        build_connect(&p, &s);
        assert_int_equal(dec_connect_pb(&p, &c), 0);
        /* [MQTT-3.1.2] fields are read by the flags; anything after the
         * last one is a malformed packet (v5 §4.13.1). */
        pb_u8(&p, 0x00);
        assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
        p.n--;
        /* Every truncation of a valid CONNECT: a declared length that runs
         * past the packet, or a missing field, is malformed. */
        for (size_t n = 0; n < p.n; n++) {
            if (dec_connect(p.b, n, &c) != -EPROTO)
                fail_msg("v%u CONNECT truncated to %zu bytes was not -EPROTO", versions[v], n);
        }
    }
    /* A client id whose length runs past the end. */
    static const uint8_t body[] = {0x00, 0x04, 'M',  'Q',  'T', 'T', 0x04, 0x02,
                                   0x00, 0x3C, 0x00, 0x0A, 'a', 'b', 'c'};
    assert_int_equal(dec_connect(body, sizeof(body), &c), -EPROTO);
    /* A user name flagged but missing. */
    connect_spec_t s2 = {.level = MQTT_V311, .flags = 0x80 | 0x02, .client_id = "c"};
    build_connect(&p, &s2);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
}

static void test_connect_client_id_utf8(void **state)
{
    (void)state;
    mqtt_connect_t c;
    pb_t p;
    /* [MQTT-1.5.3-1] (v5 [MQTT-1.5.4-1]): ill-formed UTF-8, surrogates;
     * [MQTT-1.5.3-2] (v5 [MQTT-1.5.4-2]): U+0000; [MQTT-3.1.3-4]: the
     * client id is a UTF-8 string. */
    static const struct {
        uint8_t b[4];
        size_t n;
    } bad[] = {
        {{0xC3, 0x28}, 2},       /* bad continuation */
        {{0xC0, 0x80}, 2},       /* overlong U+0000 */
        {{'a', 0x00, 'b'}, 3},   /* U+0000 */
        {{0xED, 0xA0, 0x80}, 3}, /* U+D800 */
        {{0xC3}, 1},             /* truncated */
    };
    static const uint8_t versions[] = {MQTT_V311, MQTT_V5};
    for (size_t v = 0; v < 2; v++) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            build_connect_cid(&p, versions[v], bad[i].b, bad[i].n);
            if (dec_connect_pb(&p, &c) != -EPROTO)
                fail_msg("v%u bad client id #%zu accepted", versions[v], i);
        }
        build_connect_cid(&p, versions[v], "\xC3\xA9", 2);
        assert_int_equal(dec_connect_pb(&p, &c), 0);
    }
    /* Also in the user name and will topic. */
    connect_spec_t s = {
        .level = MQTT_V311, .flags = 0x80 | 0x02, .client_id = "c", .username = "\xED\xA0\x80"};
    build_connect(&p, &s);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
    connect_spec_t s2 = {.level = MQTT_V311,
                         .flags = 0x04 | 0x02,
                         .client_id = "c",
                         .will_topic = "\xC0\x80",
                         .will_payload = "",
                         .will_payload_len = 0};
    build_connect(&p, &s2);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
}

static void test_connect_v5_props_errors(void **state)
{
    (void)state;
    mqtt_connect_t c;
    pb_t p, props;

    /* v5 §3.1.2.11.2: Session Expiry Interval twice is a Protocol Error. */
    memset(&props, 0, sizeof(props));
    pb_u8(&props, MQTT_PROP_SESSION_EXPIRY);
    pb_u32(&props, 1);
    pb_u8(&props, MQTT_PROP_SESSION_EXPIRY);
    pb_u32(&props, 2);
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EBADMSG);

    /* v5 §2.2.2.2: an unknown identifier is a Malformed Packet. */
    memset(&props, 0, sizeof(props));
    pb_u8(&props, 0x7F);
    pb_u8(&props, 0x00);
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
    memset(&props, 0, sizeof(props));
    pb_u8(&props, 0x00); /* 0 is not an identifier either */
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);

    /* v5 §2.2.2.2: an identifier not valid for CONNECT (Topic Alias, a
     * PUBLISH property) is a Malformed Packet. */
    memset(&props, 0, sizeof(props));
    pb_u8(&props, MQTT_PROP_TOPIC_ALIAS);
    pb_u16(&props, 1);
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
    /* Will Delay belongs to the will properties, not CONNECT's. */
    memset(&props, 0, sizeof(props));
    pb_u8(&props, MQTT_PROP_WILL_DELAY);
    pb_u32(&props, 1);
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
    /* A server-only CONNACK property. */
    memset(&props, 0, sizeof(props));
    pb_u8(&props, MQTT_PROP_MAXIMUM_QOS);
    pb_u8(&props, 1);
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);

    /* v5 §3.1.2.11.3: Receive Maximum 0 is a Protocol Error. */
    memset(&props, 0, sizeof(props));
    pb_u8(&props, MQTT_PROP_RECEIVE_MAXIMUM);
    pb_u16(&props, 0);
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EBADMSG);
    /* v5 §3.1.2.11.4: Maximum Packet Size 0 is a Protocol Error. */
    memset(&props, 0, sizeof(props));
    pb_u8(&props, MQTT_PROP_MAXIMUM_PACKET_SIZE);
    pb_u32(&props, 0);
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EBADMSG);
    /* v5 §3.1.2.11.7: Request Problem Information other than 0/1. */
    memset(&props, 0, sizeof(props));
    pb_u8(&props, MQTT_PROP_REQUEST_PROBLEM_INFO);
    pb_u8(&props, 2);
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EBADMSG);
    /* v5 §3.1.2.11.6: Request Response Information other than 0/1. */
    memset(&props, 0, sizeof(props));
    pb_u8(&props, MQTT_PROP_REQUEST_RESPONSE_INFO);
    pb_u8(&props, 2);
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EBADMSG);

    /* A property whose value runs past the property block. */
    memset(&props, 0, sizeof(props));
    pb_u8(&props, MQTT_PROP_SESSION_EXPIRY);
    pb_u16(&props, 1); /* two bytes of a four-byte integer */
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
    /* A user property whose value is not UTF-8 ([MQTT-1.5.7-1]). */
    memset(&props, 0, sizeof(props));
    pb_u8(&props, MQTT_PROP_USER_PROPERTY);
    pb_str(&props, "k");
    pb_bin(&props, "\xED\xA0\x80", 3);
    build_connect_v5_props(&p, &props);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);

    /* Will properties: a CONNECT-only property in the will block. */
    pb_t wp = {.n = 0};
    pb_u8(&wp, MQTT_PROP_SESSION_EXPIRY);
    pb_u32(&wp, 1);
    connect_spec_t s = {.level = MQTT_V5,
                        .flags = 0x04 | 0x02,
                        .client_id = "c",
                        .will_props = &wp,
                        .will_topic = "w",
                        .will_payload = "",
                        .will_payload_len = 0};
    build_connect(&p, &s);
    assert_int_equal(dec_connect_pb(&p, &c), -EPROTO);
    /* Payload Format Indicator other than 0/1 (v5 §3.1.3.2.3). */
    memset(&wp, 0, sizeof(wp));
    pb_u8(&wp, MQTT_PROP_PAYLOAD_FORMAT);
    pb_u8(&wp, 2);
    build_connect(&p, &s);
    assert_int_equal(dec_connect_pb(&p, &c), -EBADMSG);
    /* Will Delay twice. */
    memset(&wp, 0, sizeof(wp));
    pb_u8(&wp, MQTT_PROP_WILL_DELAY);
    pb_u32(&wp, 1);
    pb_u8(&wp, MQTT_PROP_WILL_DELAY);
    pb_u32(&wp, 1);
    build_connect(&p, &s);
    assert_int_equal(dec_connect_pb(&p, &c), -EBADMSG);
}

/* ---- PUBLISH ------------------------------------------------------------- */

static void test_publish_v311(void **state)
{
    (void)state;
    mqtt_publish_t p;
    /* QoS 0: no packet identifier ([MQTT-2.3.1-5]). */
    static const uint8_t q0[] = {0x00, 0x03, 'a', '/', 'b', 'h', 'i'};
    assert_int_equal(dec_publish(0x30, q0, sizeof(q0), MQTT_V311, &p), 0);
    assert_int_equal(p.qos, 0);
    assert_false(p.retain);
    assert_false(p.dup);
    assert_str(p.topic, "a/b");
    assert_ptr_equal(p.topic.p, (const char *)q0 + 2);
    assert_int_equal(p.packet_id, 0);
    assert_ptr_equal(p.payload, q0 + 5);
    assert_int_equal(p.payload_len, 2);

    /* QoS 1 with packet id 10, retain. */
    static const uint8_t q1[] = {0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 'x', 'y', 'z'};
    assert_int_equal(dec_publish(0x33, q1, sizeof(q1), MQTT_V311, &p), 0);
    assert_int_equal(p.qos, 1);
    assert_true(p.retain);
    assert_int_equal(p.packet_id, 10);
    assert_ptr_equal(p.payload, q1 + 7);
    assert_int_equal(p.payload_len, 3);

    /* QoS 2 with DUP, packet id 0xFFFF. */
    static const uint8_t q2[] = {0x00, 0x01, 't', 0xFF, 0xFF, 0x01};
    assert_int_equal(dec_publish(0x3C, q2, sizeof(q2), MQTT_V311, &p), 0);
    assert_int_equal(p.qos, 2);
    assert_true(p.dup);
    assert_false(p.retain);
    assert_int_equal(p.packet_id, 0xFFFF);
    assert_int_equal(p.payload_len, 1);
    assert_int_equal(p.payload[0], 0x01);

    /* Empty payload ([MQTT-3.3.3] a zero-length payload is valid). */
    static const uint8_t e0[] = {0x00, 0x01, 't'};
    assert_int_equal(dec_publish(0x30, e0, sizeof(e0), MQTT_V311, &p), 0);
    assert_int_equal(p.payload_len, 0);
    assert_ptr_equal(p.payload, e0 + sizeof(e0));
    static const uint8_t e1[] = {0x00, 0x01, 't', 0x00, 0x07};
    assert_int_equal(dec_publish(0x32, e1, sizeof(e1), MQTT_V311, &p), 0);
    assert_int_equal(p.packet_id, 7);
    assert_int_equal(p.payload_len, 0);

    /* A payload is opaque: NULs and non-UTF-8 bytes pass. */
    static const uint8_t bin[] = {0x00, 0x01, 't', 0x00, 0xFF, 0xC0};
    assert_int_equal(dec_publish(0x30, bin, sizeof(bin), MQTT_V311, &p), 0);
    assert_int_equal(p.payload_len, 3);
    assert_memory_equal(p.payload, bin + 3, 3);
}

static void test_publish_errors(void **state)
{
    (void)state;
    mqtt_publish_t p;
    static const uint8_t q1[] = {0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 'x'};
    static const uint8_t versions[] = {MQTT_V311, MQTT_V5};
    for (size_t v = 0; v < 2; v++) {
        uint8_t ver = versions[v];
        /* [MQTT-3.3.1-4]: both QoS bits set is malformed. */
        assert_int_equal(dec_publish(0x36, q1, sizeof(q1), ver, &p), -EPROTO);
        assert_int_equal(dec_publish(0x3F, q1, sizeof(q1), ver, &p), -EPROTO);
        /* [MQTT-3.3.1-2]: DUP must be 0 for QoS 0. */
        static const uint8_t q0[] = {0x00, 0x01, 't', 0x00};
        assert_int_equal(dec_publish(0x38, q0, sizeof(q0), ver, &p), -EPROTO);
        /* [MQTT-2.3.1-1] (v5 [MQTT-2.2.1-3]): QoS > 0 needs a non-zero
         * packet identifier. */
        static const uint8_t id0[] = {0x00, 0x01, 't', 0x00, 0x00, 0x00};
        assert_int_equal(dec_publish(0x32, id0, sizeof(id0), ver, &p), -EPROTO);
        assert_int_equal(dec_publish(0x34, id0, sizeof(id0), ver, &p), -EPROTO);
        /* [MQTT-3.3.2-2]: no wildcards in a topic name. */
        static const uint8_t plus[] = {0x00, 0x03, 'a', '/', '+', 0x00};
        static const uint8_t hash[] = {0x00, 0x03, 'a', '/', '#', 0x00};
        static const uint8_t mid[] = {0x00, 0x03, 'a', '#', 'b', 0x00};
        assert_int_equal(dec_publish(0x30, plus, sizeof(plus), ver, &p), -EBADMSG);
        assert_int_equal(dec_publish(0x30, hash, sizeof(hash), ver, &p), -EBADMSG);
        assert_int_equal(dec_publish(0x30, mid, sizeof(mid), ver, &p), -EBADMSG);
        /* [MQTT-3.3.2-1]: the topic is a UTF-8 string. */
        static const uint8_t badutf[] = {0x00, 0x02, 0xC3, 0x28};
        assert_int_equal(dec_publish(0x30, badutf, sizeof(badutf), ver, &p), -EPROTO);
        static const uint8_t nul[] = {0x00, 0x03, 'a', 0x00, 'b'};
        assert_int_equal(dec_publish(0x30, nul, sizeof(nul), ver, &p), -EPROTO);
        /* Topic length past the end; packet id cut short. */
        static const uint8_t cut[] = {0x00, 0x09, 'a'};
        assert_int_equal(dec_publish(0x30, cut, sizeof(cut), ver, &p), -EPROTO);
        static const uint8_t cutid[] = {0x00, 0x01, 't', 0x00};
        assert_int_equal(dec_publish(0x32, cutid, sizeof(cutid), ver, &p), -EPROTO);
        assert_int_equal(dec_publish(0x30, q1, 0, ver, &p), -EPROTO);
        assert_int_equal(dec_publish(0x30, q1, 1, ver, &p), -EPROTO);
    }
    /* v5: the property block is required; here it is missing. */
    static const uint8_t noprops[] = {0x00, 0x01, 't', 0x00, 0x01};
    assert_int_equal(dec_publish(0x32, noprops, sizeof(noprops), MQTT_V5, &p), -EPROTO);
    /* v5: a property block longer than the packet. */
    static const uint8_t longprops[] = {0x00, 0x01, 't', 0x05, 0x01, 0x01};
    assert_int_equal(dec_publish(0x30, longprops, sizeof(longprops), MQTT_V5, &p), -EPROTO);
}

static void test_publish_v5(void **state)
{
    (void)state;
    mqtt_publish_t p;
    /* QoS 1, id 5, Topic Alias 5, Payload Format 1 (UTF-8), payload "ok". */
    static const uint8_t b[] = {0x00, 0x01, 't',  0x00, 0x05, 0x05, 0x23,
                                0x00, 0x05, 0x01, 0x01, 'o',  'k'};
    assert_int_equal(dec_publish(0x32, b, sizeof(b), MQTT_V5, &p), 0);
    assert_int_equal(p.packet_id, 5);
    assert_true(mqtt_props_has(&p.props, MQTT_PROP_TOPIC_ALIAS));
    assert_int_equal(p.props.topic_alias, 5);
    assert_true(mqtt_props_has(&p.props, MQTT_PROP_PAYLOAD_FORMAT));
    assert_int_equal(p.props.payload_format, 1);
    assert_false(mqtt_props_has(&p.props, MQTT_PROP_MESSAGE_EXPIRY));
    assert_ptr_equal(p.props.raw.p, b + 6);
    assert_int_equal(p.props.raw.len, 5);
    assert_ptr_equal(p.payload, b + 11);
    assert_int_equal(p.payload_len, 2);

    /* QoS 0, empty property block, empty payload. */
    static const uint8_t e[] = {0x00, 0x01, 't', 0x00};
    assert_int_equal(dec_publish(0x30, e, sizeof(e), MQTT_V5, &p), 0);
    assert_int_equal(p.props.present, 0);
    assert_int_equal(p.props.raw.len, 0);
    assert_int_equal(p.payload_len, 0);

    /* All forwardable PUBLISH properties: message expiry, response topic,
     * correlation data, user properties. */
    pb_t props = {.n = 0};
    pb_u8(&props, MQTT_PROP_MESSAGE_EXPIRY);
    pb_u32(&props, 60);
    pb_u8(&props, MQTT_PROP_RESPONSE_TOPIC);
    pb_str(&props, "reply/1");
    pb_u8(&props, MQTT_PROP_CORRELATION_DATA);
    pb_bin(&props, "\x00\x01\xFF", 3);
    pb_user_prop(&props, "a", "1");
    pb_user_prop(&props, "a", "2");
    pb_t body = {.n = 0};
    pb_str(&body, "t/1");
    pb_props(&body, &props);
    pb_raw(&body, "payload", 7);
    assert_int_equal(dec_publish(0x30, body.b, body.n, MQTT_V5, &p), 0);
    assert_int_equal(p.props.message_expiry, 60);
    assert_true(mqtt_props_has(&p.props, MQTT_PROP_RESPONSE_TOPIC));
    assert_true(mqtt_props_has(&p.props, MQTT_PROP_CORRELATION_DATA));
    assert_true(mqtt_props_has(&p.props, MQTT_PROP_USER_PROPERTY));
    assert_int_equal(p.props.raw.len, props.n);
    assert_memory_equal(p.props.raw.p, props.b, props.n);
    assert_int_equal(p.payload_len, 7);
    assert_memory_equal(p.payload, "payload", 7);

    /* [MQTT-3.3.4-6]: a PUBLISH from a client must not carry a
     * Subscription Identifier; a Protocol Error. */
    static const uint8_t sid[] = {0x00, 0x01, 't', 0x02, 0x0B, 0x01};
    assert_int_equal(dec_publish(0x30, sid, sizeof(sid), MQTT_V5, &p), -EBADMSG);
    /* v5 §2.2.2.2: a property not valid in PUBLISH (Session Expiry). */
    static const uint8_t se[] = {0x00, 0x01, 't', 0x05, 0x11, 0x00, 0x00, 0x00, 0x01};
    assert_int_equal(dec_publish(0x30, se, sizeof(se), MQTT_V5, &p), -EPROTO);
    /* v5 §3.3.2.3.2: Payload Format Indicator other than 0/1. */
    static const uint8_t pf[] = {0x00, 0x01, 't', 0x02, 0x01, 0x02};
    assert_int_equal(dec_publish(0x30, pf, sizeof(pf), MQTT_V5, &p), -EBADMSG);
    /* v5 §2.2.2.2: a repeated property (Topic Alias) is a Protocol Error. */
    static const uint8_t dup[] = {0x00, 0x01, 't', 0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02};
    assert_int_equal(dec_publish(0x30, dup, sizeof(dup), MQTT_V5, &p), -EBADMSG);
    /* v5 §3.3.2.1: a zero-length topic is accepted by the codec (legal
     * with a Topic Alias); the handler decides. */
    static const uint8_t empty_topic[] = {0x00, 0x00, 0x03, 0x23, 0x00, 0x01};
    assert_int_equal(dec_publish(0x30, empty_topic, sizeof(empty_topic), MQTT_V5, &p), 0);
    assert_int_equal(p.topic.len, 0);
    assert_int_equal(p.props.topic_alias, 1);
}

/* Property identifiers are up to 0x2A; "present" is one bit per id, so
 * ids 32 apart must not be confused. Content Type (0x03) and Topic Alias
 * (0x23) are both valid in PUBLISH. */
static void test_publish_v5_content_type_and_alias(void **state)
{
    (void)state;
    mqtt_publish_t p;
    /* Content Type "a/b" alone: no Topic Alias. */
    static const uint8_t ct[] = {0x00, 0x01, 't', 0x06, 0x03, 0x00, 0x03, 'a', '/', 'b'};
    assert_int_equal(dec_publish(0x30, ct, sizeof(ct), MQTT_V5, &p), 0);
    assert_true(mqtt_props_has(&p.props, MQTT_PROP_CONTENT_TYPE));
    assert_false(mqtt_props_has(&p.props, MQTT_PROP_TOPIC_ALIAS));
    /* Content Type and Topic Alias together: each appears once. */
    static const uint8_t both[] = {0x00, 0x01, 't', 0x09, 0x03, 0x00, 0x03,
                                   'a',  '/',  'b', 0x23, 0x00, 0x02};
    assert_int_equal(dec_publish(0x30, both, sizeof(both), MQTT_V5, &p), 0);
    assert_true(mqtt_props_has(&p.props, MQTT_PROP_CONTENT_TYPE));
    assert_true(mqtt_props_has(&p.props, MQTT_PROP_TOPIC_ALIAS));
    assert_int_equal(p.props.topic_alias, 2);
    /* Payload Format alone: not a Receive Maximum (0x21). */
    static const uint8_t pf[] = {0x00, 0x01, 't', 0x02, 0x01, 0x01};
    assert_int_equal(dec_publish(0x30, pf, sizeof(pf), MQTT_V5, &p), 0);
    assert_false(mqtt_props_has(&p.props, MQTT_PROP_RECEIVE_MAXIMUM));
}

/* ---- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------- */

static void test_subscribe_v311(void **state)
{
    (void)state;
    mqtt_subscribe_t s;
    static const uint8_t b[] = {0x00, 0x0A, 0x00, 0x03, 'a',  '/',  'b',  0x01, 0x00,
                                0x03, 'c',  '/',  '#',  0x02, 0x00, 0x01, '+',  0x00};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, b, sizeof(b), MQTT_V311, &s), 0);
    assert_int_equal(s.packet_id, 10);
    assert_int_equal(s.count, 3);
    assert_false(s.unsubscribe);
    assert_ptr_equal(s.entries, b + 2);
    assert_int_equal(s.entries_len, sizeof(b) - 2);

    size_t pos = 0;
    mqtt_sub_entry_t e;
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 1);
    assert_str(e.filter, "a/b");
    assert_ptr_equal(e.filter.p, (const char *)b + 4);
    assert_int_equal(e.options, 1);
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 1);
    assert_str(e.filter, "c/#");
    assert_int_equal(e.options, 2);
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 1);
    assert_str(e.filter, "+");
    assert_int_equal(e.options, 0);
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 0);
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 0);
    assert_int_equal(pos, s.entries_len);
}

static void test_subscribe_v5(void **state)
{
    (void)state;
    mqtt_subscribe_t s;
    /* Subscription Identifier 200 (varint C8 01), a user property; options
     * 0x2D = QoS 1, No Local, Retain As Published, Retain Handling 2. */
    static const uint8_t b[] = {0x00, 0x0B, 0x09, 0x0B, 0xC8, 0x01, 0x26, 0x00, 0x01, 'k', 0x00,
                                0x00, 0x00, 0x03, 'a',  '/',  '+',  0x2D, 0x00, 0x01, 'x', 0x12};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, b, sizeof(b), MQTT_V5, &s), 0);
    assert_int_equal(s.packet_id, 11);
    assert_true(mqtt_props_has(&s.props, MQTT_PROP_SUBSCRIPTION_ID));
    assert_int_equal(s.props.sub_id, 200);
    assert_true(mqtt_props_has(&s.props, MQTT_PROP_USER_PROPERTY));
    assert_int_equal(s.count, 2);
    size_t pos = 0;
    mqtt_sub_entry_t e;
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 1);
    assert_str(e.filter, "a/+");
    assert_int_equal(e.options, 0x2D);
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 1);
    assert_str(e.filter, "x");
    assert_int_equal(e.options, 0x12); /* QoS 2, Retain Handling 1 */
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 0);
}

static void test_subscribe_errors(void **state)
{
    (void)state;
    mqtt_subscribe_t s;
    /* [MQTT-3.8.3-3]: SUBSCRIBE with no payload is a protocol violation. */
    static const uint8_t empty3[] = {0x00, 0x01};
    static const uint8_t empty5[] = {0x00, 0x01, 0x00};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, empty3, sizeof(empty3), MQTT_V311, &s), -EPROTO);
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, empty5, sizeof(empty5), MQTT_V5, &s), -EPROTO);
    /* [MQTT-3.10.3-2]: likewise UNSUBSCRIBE. */
    assert_int_equal(dec_sub(MQTT_UNSUBSCRIBE, empty3, sizeof(empty3), MQTT_V311, &s), -EPROTO);
    assert_int_equal(dec_sub(MQTT_UNSUBSCRIBE, empty5, sizeof(empty5), MQTT_V5, &s), -EPROTO);

    /* [MQTT-3-8.3-4]: 3.1.1 reserved bits 7..2 of the options byte. */
    for (unsigned bit = 2; bit < 8; bit++) {
        uint8_t b[] = {0x00, 0x01, 0x00, 0x01, 'a', (uint8_t)(1u << bit)};
        assert_int_equal(dec_sub(MQTT_SUBSCRIBE, b, sizeof(b), MQTT_V311, &s), -EPROTO);
    }
    /* [MQTT-3-8.3-4]: QoS 3 is malformed in 3.1.1; v5 §3.8.3.1 calls it a
     * protocol error (0x82). */
    static const uint8_t q3v3[] = {0x00, 0x01, 0x00, 0x01, 'a', 0x03};
    static const uint8_t q3v5[] = {0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x03};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, q3v3, sizeof(q3v3), MQTT_V311, &s), -EPROTO);
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, q3v5, sizeof(q3v5), MQTT_V5, &s), -EBADMSG);
    /* v5 §3.8.3.1: Retain Handling 3 is a protocol error. */
    static const uint8_t rh3[] = {0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x30};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, rh3, sizeof(rh3), MQTT_V5, &s), -EBADMSG);
    /* [MQTT-3.8.3-5]: v5 reserved bits 7 and 6. */
    static const uint8_t r6[] = {0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x40};
    static const uint8_t r7[] = {0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x80};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, r6, sizeof(r6), MQTT_V5, &s), -EPROTO);
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, r7, sizeof(r7), MQTT_V5, &s), -EPROTO);
    /* The second entry is the bad one. */
    static const uint8_t second[] = {0x00, 0x01, 0x00, 0x01, 'a', 0x01, 0x00, 0x01, 'b', 0x03};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, second, sizeof(second), MQTT_V311, &s), -EPROTO);

    /* [MQTT-2.3.1-1]: packet identifier 0. */
    static const uint8_t id0[] = {0x00, 0x00, 0x00, 0x01, 'a', 0x00};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, id0, sizeof(id0), MQTT_V311, &s), -EPROTO);
    static const uint8_t uid0[] = {0x00, 0x00, 0x00, 0x01, 'a'};
    assert_int_equal(dec_sub(MQTT_UNSUBSCRIBE, uid0, sizeof(uid0), MQTT_V311, &s), -EPROTO);

    /* Truncations: the options byte missing, a filter cut short, the
     * packet id cut short. */
    static const uint8_t noopt[] = {0x00, 0x01, 0x00, 0x01, 'a'};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, noopt, sizeof(noopt), MQTT_V311, &s), -EPROTO);
    static const uint8_t cut[] = {0x00, 0x01, 0x00, 0x05, 'a', 'b'};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, cut, sizeof(cut), MQTT_V311, &s), -EPROTO);
    assert_int_equal(dec_sub(MQTT_UNSUBSCRIBE, cut, sizeof(cut), MQTT_V311, &s), -EPROTO);
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, cut, 1, MQTT_V311, &s), -EPROTO);
    /* [MQTT-3.8.3-1]: filters are UTF-8 strings. */
    static const uint8_t bad[] = {0x00, 0x01, 0x00, 0x02, 0xC0, 0x80, 0x00};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, bad, sizeof(bad), MQTT_V311, &s), -EPROTO);

    /* v5 §3.8.2.1.2: Subscription Identifier 0 is a Protocol Error. */
    static const uint8_t sid0[] = {0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, 'a', 0x00};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, sid0, sizeof(sid0), MQTT_V5, &s), -EBADMSG);
    /* v5 §3.8.2.1.2: a second Subscription Identifier too. */
    static const uint8_t sid2[] = {0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, 'a', 0x00};
    assert_int_equal(dec_sub(MQTT_SUBSCRIBE, sid2, sizeof(sid2), MQTT_V5, &s), -EBADMSG);
    /* v5 §3.10.2.1: UNSUBSCRIBE carries only user properties. */
    static const uint8_t usid[] = {0x00, 0x01, 0x02, 0x0B, 0x01, 0x00, 0x01, 'a'};
    assert_int_equal(dec_sub(MQTT_UNSUBSCRIBE, usid, sizeof(usid), MQTT_V5, &s), -EPROTO);
}

static void test_unsubscribe(void **state)
{
    (void)state;
    mqtt_subscribe_t s;
    /* 3.1.1: filters only, no options bytes. */
    static const uint8_t b3[] = {0x00, 0x0C, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01, '#'};
    assert_int_equal(dec_sub(MQTT_UNSUBSCRIBE, b3, sizeof(b3), MQTT_V311, &s), 0);
    assert_true(s.unsubscribe);
    assert_int_equal(s.packet_id, 12);
    assert_int_equal(s.count, 2);
    size_t pos = 0;
    mqtt_sub_entry_t e;
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 1);
    assert_str(e.filter, "a/b");
    assert_int_equal(e.options, 0);
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 1);
    assert_str(e.filter, "#");
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 0);

    /* v5: a property block with a user property, then filters. */
    static const uint8_t b5[] = {0x00, 0x0D, 0x05, 0x26, 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x01, 'x',  0x00, 0x01, 'y'};
    assert_int_equal(dec_sub(MQTT_UNSUBSCRIBE, b5, sizeof(b5), MQTT_V5, &s), 0);
    assert_int_equal(s.count, 2);
    pos = 0;
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 1);
    assert_str(e.filter, "x");
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 1);
    assert_str(e.filter, "y");
    assert_int_equal(mqtt_codec_sub_next(&s, &pos, &e), 0);
}

/* ---- Acks and DISCONNECT ------------------------------------------------- */

static void test_ack_decode(void **state)
{
    (void)state;
    mqtt_ack_t a;
    /* 3.1.1 §3.4: two bytes, the packet identifier. */
    static const uint8_t v3[] = {0x12, 0x34};
    assert_int_equal(dec_ack(v3, sizeof(v3), MQTT_V311, &a), 0);
    assert_int_equal(a.packet_id, 0x1234);
    assert_int_equal(a.reason, 0);
    static const uint8_t v3long[] = {0x12, 0x34, 0x00};
    assert_int_equal(dec_ack(v3long, sizeof(v3long), MQTT_V311, &a), -EPROTO);
    assert_int_equal(dec_ack(v3, 1, MQTT_V311, &a), -EPROTO);
    assert_int_equal(dec_ack(v3, 0, MQTT_V311, &a), -EPROTO);
    /* [MQTT-2.3.1-1]: packet identifiers are non-zero. */
    static const uint8_t id0[] = {0x00, 0x00};
    assert_int_equal(dec_ack(id0, sizeof(id0), MQTT_V311, &a), -EPROTO);
    assert_int_equal(dec_ack(id0, sizeof(id0), MQTT_V5, &a), -EPROTO);

    /* v5 §3.4.2.1: remaining length 2 means reason 0x00. */
    assert_int_equal(dec_ack(v3, sizeof(v3), MQTT_V5, &a), 0);
    assert_int_equal(a.packet_id, 0x1234);
    assert_int_equal(a.reason, 0);
    /* v5 with a reason code and no properties. */
    static const uint8_t r[] = {0x00, 0x01, 0x10};
    assert_int_equal(dec_ack(r, sizeof(r), MQTT_V5, &a), 0);
    assert_int_equal(a.packet_id, 1);
    assert_int_equal(a.reason, 0x10);
    /* v5 with a reason code and properties: Reason String, User Property. */
    static const uint8_t rp[] = {0x00, 0x02, 0x80, 0x0B, 0x1F, 0x00, 0x02, 'n',
                                 'o',  0x26, 0x00, 0x01, 'k',  0x00, 0x00};
    assert_int_equal(dec_ack(rp, sizeof(rp), MQTT_V5, &a), 0);
    assert_int_equal(a.packet_id, 2);
    assert_int_equal(a.reason, 0x80);
    /* An empty property block. */
    static const uint8_t rp0[] = {0x00, 0x02, 0x00, 0x00};
    assert_int_equal(dec_ack(rp0, sizeof(rp0), MQTT_V5, &a), 0);
    /* v5 §3.4.2.2: only those two properties are valid in an ack. */
    static const uint8_t bad[] = {0x00, 0x02, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x01};
    assert_int_equal(dec_ack(bad, sizeof(bad), MQTT_V5, &a), -EPROTO);
    /* Properties longer than the packet, and bytes after them. */
    static const uint8_t cut[] = {0x00, 0x02, 0x00, 0x05, 0x1F, 0x00};
    assert_int_equal(dec_ack(cut, sizeof(cut), MQTT_V5, &a), -EPROTO);
    static const uint8_t trail[] = {0x00, 0x02, 0x00, 0x00, 0x00};
    assert_int_equal(dec_ack(trail, sizeof(trail), MQTT_V5, &a), -EPROTO);
}

static void test_disconnect_decode(void **state)
{
    (void)state;
    mqtt_disconnect_t d;
    /* 3.1.1 §3.14: no variable header, no payload. */
    assert_int_equal(dec_disconnect(NULL, 0, MQTT_V311, &d), 0);
    assert_int_equal(d.reason, 0);
    static const uint8_t one[] = {0x00};
    assert_int_equal(dec_disconnect(one, sizeof(one), MQTT_V311, &d), -EPROTO);

    /* v5 §3.14.2.1: remaining length 0 means reason 0x00. */
    assert_int_equal(dec_disconnect(NULL, 0, MQTT_V5, &d), 0);
    assert_int_equal(d.reason, 0);
    assert_false(mqtt_props_has(&d.props, MQTT_PROP_SESSION_EXPIRY));
    /* Reason 0x04, disconnect with will message, no properties. */
    static const uint8_t r[] = {0x04};
    assert_int_equal(dec_disconnect(r, sizeof(r), MQTT_V5, &d), 0);
    assert_int_equal(d.reason, 0x04);
    /* v5 §3.14.2.2.2: Session Expiry Interval in DISCONNECT. */
    static const uint8_t se[] = {0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x3C};
    assert_int_equal(dec_disconnect(se, sizeof(se), MQTT_V5, &d), 0);
    assert_int_equal(d.reason, 0);
    assert_true(mqtt_props_has(&d.props, MQTT_PROP_SESSION_EXPIRY));
    assert_int_equal(d.props.session_expiry, 60);
    assert_ptr_equal(d.props.raw.p, se + 2);
    assert_int_equal(d.props.raw.len, 5);
    /* Reason String and Server Reference are valid too. */
    static const uint8_t rs[] = {0x81, 0x05, 0x1F, 0x00, 0x02, 'b', 'y'};
    assert_int_equal(dec_disconnect(rs, sizeof(rs), MQTT_V5, &d), 0);
    assert_int_equal(d.reason, 0x81);
    /* A CONNECT-only property is not. */
    static const uint8_t rm[] = {0x00, 0x03, 0x21, 0x00, 0x0A};
    assert_int_equal(dec_disconnect(rm, sizeof(rm), MQTT_V5, &d), -EPROTO);
    /* Session Expiry twice. */
    static const uint8_t se2[] = {0x00, 0x0A, 0x11, 0x00, 0x00, 0x00,
                                  0x01, 0x11, 0x00, 0x00, 0x00, 0x02};
    assert_int_equal(dec_disconnect(se2, sizeof(se2), MQTT_V5, &d), -EBADMSG);
    /* Cut short, and trailing bytes. */
    static const uint8_t cut[] = {0x00, 0x05, 0x11, 0x00};
    assert_int_equal(dec_disconnect(cut, sizeof(cut), MQTT_V5, &d), -EPROTO);
    static const uint8_t trail[] = {0x00, 0x00, 0x00};
    assert_int_equal(dec_disconnect(trail, sizeof(trail), MQTT_V5, &d), -EPROTO);
}

/* ---- Encoders ------------------------------------------------------------ */

/* Runs `call` (which writes to `o`, capacity `cap`) with every capacity
 * from 0 to one short, in an exactly sized heap buffer, expecting -E2BIG;
 * then with the exact capacity, expecting the bytes given. */
#define ASSERT_ENCODES(call, ...)                                                                  \
    do {                                                                                           \
        static const uint8_t exp_[] = {__VA_ARGS__};                                               \
        for (size_t cap = 0; cap <= sizeof(exp_); cap++) {                                         \
            uint8_t *o = malloc(cap > 0 ? cap : 1);                                                \
            assert_non_null(o);                                                                    \
            if (cap < sizeof(exp_)) {                                                              \
                assert_int_equal((call), -E2BIG);                                                  \
            } else {                                                                               \
                assert_int_equal((call), (int)sizeof(exp_));                                       \
                assert_memory_equal(o, exp_, sizeof(exp_));                                        \
            }                                                                                      \
            free(o);                                                                               \
        }                                                                                          \
    } while (0)

static void test_put_varint(void **state)
{
    (void)state;
    uint8_t o[4];
    assert_int_equal(mqtt_codec_put_varint(o, 0), 1);
    assert_int_equal(o[0], 0x00);
    assert_int_equal(mqtt_codec_put_varint(o, 321), 2);
    assert_int_equal(o[0], 0xC1);
    assert_int_equal(o[1], 0x02);
}

static void test_encode_connack(void **state)
{
    (void)state;
    /* 3.1.1 §3.2: 20 02, session present 0, return code 0. */
    ASSERT_ENCODES(mqtt_codec_encode_connack(o, cap, MQTT_V311, false, 0, NULL), 0x20, 0x02, 0x00,
                   0x00);
    /* [MQTT-3.2.2-4]: session present is 0 with a non-zero return code;
     * the codec writes what it is given. */
    ASSERT_ENCODES(
        mqtt_codec_encode_connack(o, cap, MQTT_V311, true, MQTT311_CONNACK_ACCEPTED, NULL), 0x20,
        0x02, 0x01, 0x00);
    ASSERT_ENCODES(
        mqtt_codec_encode_connack(o, cap, MQTT_V311, false, MQTT311_CONNACK_NOT_AUTHORIZED, NULL),
        0x20, 0x02, 0x00, 0x05);
    /* v5 §3.2.2.3: an empty property block is still written. */
    ASSERT_ENCODES(mqtt_codec_encode_connack(o, cap, MQTT_V5, false, MQTT_RC_BANNED, NULL), 0x20,
                   0x03, 0x00, 0x8A, 0x00);
}

static void test_encode_connack_v5_props(void **state)
{
    (void)state;
    mqtt_prop_buf_t props;
    memset(&props, 0, sizeof(props));
    mqtt_prop_u32(&props, MQTT_PROP_SESSION_EXPIRY, 3600);
    mqtt_prop_u16(&props, MQTT_PROP_RECEIVE_MAXIMUM, 20);
    mqtt_prop_u32(&props, MQTT_PROP_MAXIMUM_PACKET_SIZE, 65536);
    mqtt_prop_u16(&props, MQTT_PROP_TOPIC_ALIAS_MAXIMUM, 0);
    assert_false(props.overflow);
    /* v5 §3.2: 20, remaining 19, session present 1, reason 0, property
     * length 16, then the properties in the order they were added. */
    ASSERT_ENCODES(mqtt_codec_encode_connack(o, cap, MQTT_V5, true, 0, &props), 0x20, 0x13, 0x01,
                   0x00, 0x10, 0x11, 0x00, 0x00, 0x0E, 0x10, 0x21, 0x00, 0x14, 0x27, 0x00, 0x01,
                   0x00, 0x00, 0x22, 0x00, 0x00);

    /* Round trip: the fixed header parses back, and the property block,
     * put into a CONNECT (where these four properties are also valid), is
     * decoded to the same values by the codec's property reader. */
    uint8_t pkt[64];
    int n = mqtt_codec_encode_connack(pkt, sizeof(pkt), MQTT_V5, true, 0, &props);
    assert_int_equal(n, 21);
    uint8_t first;
    uint32_t rem;
    size_t hdr;
    assert_int_equal(mqtt_codec_fixed_header(pkt, (size_t)n, &first, &rem, &hdr), 0);
    assert_int_equal(first, 0x20);
    assert_int_equal(hdr + rem, (size_t)n);
    pb_t block = {.n = 0};
    pb_raw(&block, pkt + 5, pkt[4]);
    pb_t p;
    build_connect_v5_props(&p, &block);
    mqtt_connect_t c;
    assert_int_equal(dec_connect_pb(&p, &c), 0);
    assert_true(mqtt_props_has(&c.props, MQTT_PROP_SESSION_EXPIRY));
    assert_int_equal(c.props.session_expiry, 3600);
    assert_int_equal(c.props.receive_max, 20);
    assert_int_equal(c.props.max_packet_size, 65536);
    assert_true(mqtt_props_has(&c.props, MQTT_PROP_TOPIC_ALIAS_MAXIMUM));
    assert_int_equal(c.props.topic_alias_max, 0);
    assert_int_equal(c.props.raw.len, 16);

    /* The CONNACK-only properties the server sends (handle_connect.c). */
    memset(&props, 0, sizeof(props));
    mqtt_prop_str(&props, MQTT_PROP_ASSIGNED_CLIENT_ID, "auto-1", 6);
    mqtt_prop_u16(&props, MQTT_PROP_SERVER_KEEPALIVE, 30);
    mqtt_prop_u8(&props, MQTT_PROP_RETAIN_AVAILABLE, 0);
    mqtt_prop_u8(&props, MQTT_PROP_SUB_ID_AVAILABLE, 0);
    mqtt_prop_u8(&props, MQTT_PROP_SHARED_SUB_AVAILABLE, 0);
    ASSERT_ENCODES(mqtt_codec_encode_connack(o, cap, MQTT_V5, false, 0, &props), 0x20, 0x15, 0x00,
                   0x00, 0x12, 0x12, 0x00, 0x06, 'a', 'u', 't', 'o', '-', '1', 0x13, 0x00, 0x1E,
                   0x25, 0x00, 0x29, 0x00, 0x2A, 0x00);

    /* Variable byte integer properties. */
    memset(&props, 0, sizeof(props));
    mqtt_prop_varint(&props, MQTT_PROP_SUBSCRIPTION_ID, 200);
    mqtt_prop_varint(&props, MQTT_PROP_SUBSCRIPTION_ID, 268435455);
    static const uint8_t vexp[] = {0x0B, 0xC8, 0x01, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F};
    assert_int_equal(props.len, sizeof(vexp));
    assert_memory_equal(props.data, vexp, sizeof(vexp));

    /* A property block over its 512 bytes is remembered and refused. */
    static char big[600];
    memset(big, 'x', sizeof(big));
    memset(&props, 0, sizeof(props));
    mqtt_prop_str(&props, MQTT_PROP_REASON_STRING, big, sizeof(big));
    assert_true(props.overflow);
    assert_true(props.len <= sizeof(props.data));
    mqtt_prop_u8(&props, MQTT_PROP_RETAIN_AVAILABLE, 0);
    assert_true(props.overflow);
    assert_int_equal(mqtt_codec_encode_connack(pkt, sizeof(pkt), MQTT_V5, false, 0, &props),
                     -E2BIG);
    memset(&props, 0, sizeof(props));
    mqtt_prop_str(&props, MQTT_PROP_REASON_STRING, big, 70000); /* > u16, never read */
    assert_true(props.overflow);
    assert_int_equal(props.len, 0);
}

static void test_encode_acks(void **state)
{
    (void)state;
    /* 3.1.1 §3.4-3.7: type, 02, packet id. PUBREL has flags 0x2. */
    ASSERT_ENCODES(mqtt_codec_encode_ack(o, cap, MQTT_PUBACK, MQTT_V311, 1, 0), 0x40, 0x02, 0x00,
                   0x01);
    ASSERT_ENCODES(mqtt_codec_encode_ack(o, cap, MQTT_PUBREC, MQTT_V311, 0xABCD, 0), 0x50, 0x02,
                   0xAB, 0xCD);
    ASSERT_ENCODES(mqtt_codec_encode_ack(o, cap, MQTT_PUBREL, MQTT_V311, 2, 0), 0x62, 0x02, 0x00,
                   0x02);
    ASSERT_ENCODES(mqtt_codec_encode_ack(o, cap, MQTT_PUBCOMP, MQTT_V311, 3, 0), 0x70, 0x02, 0x00,
                   0x03);
    /* 3.1.1 has no reason code: one given is not written. */
    ASSERT_ENCODES(mqtt_codec_encode_ack(o, cap, MQTT_PUBACK, MQTT_V311, 1, 0x87), 0x40, 0x02, 0x00,
                   0x01);
    /* v5 §3.4.2.1: reason 0x87 (not authorized) with no properties. */
    ASSERT_ENCODES(mqtt_codec_encode_ack(o, cap, MQTT_PUBACK, MQTT_V5, 1, MQTT_RC_NOT_AUTHORIZED),
                   0x40, 0x03, 0x00, 0x01, 0x87);
    ASSERT_ENCODES(
        mqtt_codec_encode_ack(o, cap, MQTT_PUBREC, MQTT_V5, 9, MQTT_RC_NO_MATCHING_SUBSCRIBERS),
        0x50, 0x03, 0x00, 0x09, 0x10);
    ASSERT_ENCODES(
        mqtt_codec_encode_ack(o, cap, MQTT_PUBREL, MQTT_V5, 9, MQTT_RC_PACKET_ID_NOT_FOUND), 0x62,
        0x03, 0x00, 0x09, 0x92);
    /* v5 §3.4.2.1: reason 0 may be omitted with no properties. */
    ASSERT_ENCODES(mqtt_codec_encode_ack(o, cap, MQTT_PUBACK, MQTT_V5, 1, 0), 0x40, 0x02, 0x00,
                   0x01);

    /* What the encoder writes, the decoder reads back. */
    uint8_t pkt[8];
    int n = mqtt_codec_encode_ack(pkt, sizeof(pkt), MQTT_PUBACK, MQTT_V5, 77, 0x87);
    assert_int_equal(n, 5);
    assert_int_equal(mqtt_codec_check_flags(pkt[0]), 0);
    mqtt_ack_t a;
    assert_int_equal(dec_ack(pkt + 2, pkt[1], MQTT_V5, &a), 0);
    assert_int_equal(a.packet_id, 77);
    assert_int_equal(a.reason, 0x87);
    n = mqtt_codec_encode_ack(pkt, sizeof(pkt), MQTT_PUBREL, MQTT_V311, 5, 0);
    assert_int_equal(mqtt_codec_check_flags(pkt[0]), 0);
}

static void test_encode_suback(void **state)
{
    (void)state;
    static const uint8_t codes[] = {0x01, 0x80};
    /* 3.1.1 §3.9: packet id, one return code per filter. */
    ASSERT_ENCODES(mqtt_codec_encode_suback(o, cap, MQTT_SUBACK, MQTT_V311, 10, codes, 2), 0x90,
                   0x04, 0x00, 0x0A, 0x01, 0x80);
    /* v5 §3.9: packet id, empty property block, reason codes. */
    ASSERT_ENCODES(mqtt_codec_encode_suback(o, cap, MQTT_SUBACK, MQTT_V5, 10, codes, 2), 0x90, 0x05,
                   0x00, 0x0A, 0x00, 0x01, 0x80);
    /* 3.1.1 §3.11: UNSUBACK has no payload. */
    ASSERT_ENCODES(mqtt_codec_encode_suback(o, cap, MQTT_UNSUBACK, MQTT_V311, 11, codes, 2), 0xB0,
                   0x02, 0x00, 0x0B);
    /* v5 §3.11.3: UNSUBACK has one reason code per filter. */
    static const uint8_t ucodes[] = {MQTT_RC_SUCCESS, MQTT_RC_NO_SUBSCRIPTION_EXISTED};
    ASSERT_ENCODES(mqtt_codec_encode_suback(o, cap, MQTT_UNSUBACK, MQTT_V5, 11, ucodes, 2), 0xB0,
                   0x05, 0x00, 0x0B, 0x00, 0x00, 0x11);
    /* A SUBACK big enough to need a two-byte remaining length. */
    uint8_t many[200];
    memset(many, 0x02, sizeof(many));
    uint8_t pkt[256];
    int n = mqtt_codec_encode_suback(pkt, sizeof(pkt), MQTT_SUBACK, MQTT_V311, 1, many, 200);
    assert_int_equal(n, 205);
    assert_int_equal(pkt[1], 0xCA); /* 202 = CA 01 */
    assert_int_equal(pkt[2], 0x01);
    assert_int_equal(mqtt_codec_encode_suback(pkt, 204, MQTT_SUBACK, MQTT_V311, 1, many, 200),
                     -E2BIG);
}

static void test_encode_disconnect_pingresp(void **state)
{
    (void)state;
    /* v5 §3.14: reason 0x8E, session taken over. */
    ASSERT_ENCODES(mqtt_codec_encode_disconnect(o, cap, MQTT_V5, MQTT_RC_SESSION_TAKEN_OVER), 0xE0,
                   0x01, 0x8E);
    ASSERT_ENCODES(mqtt_codec_encode_disconnect(o, cap, MQTT_V311, 0), 0xE0, 0x00);
    /* 3.1.1 §3.13: PINGRESP. */
    ASSERT_ENCODES(mqtt_codec_encode_pingresp(o, cap), 0xD0, 0x00);
}

static void test_encode_publish_header(void **state)
{
    (void)state;
    /* 3.1.1 §3.3: QoS 0, topic "a/b", 200-byte payload: remaining length
     * 205 takes two bytes (CD 01). */
    ASSERT_ENCODES(mqtt_codec_encode_publish_header(o, cap, MQTT_V311, 0, false, false, "a/b", 3, 0,
                                                    NULL, 0, 200),
                   0x30, 0xCD, 0x01, 0x00, 0x03, 'a', '/', 'b');
    /* QoS 1, retain, DUP, packet id 0x1234, 10-byte payload. */
    ASSERT_ENCODES(mqtt_codec_encode_publish_header(o, cap, MQTT_V311, 1, true, true, "t", 1,
                                                    0x1234, NULL, 0, 10),
                   0x3B, 0x0F, 0x00, 0x01, 't', 0x12, 0x34);
    /* QoS 2. */
    ASSERT_ENCODES(
        mqtt_codec_encode_publish_header(o, cap, MQTT_V311, 2, false, false, "t", 1, 1, NULL, 0, 0),
        0x34, 0x05, 0x00, 0x01, 't', 0x00, 0x01);
    /* v5 §3.3.2.3: an empty property block. */
    ASSERT_ENCODES(
        mqtt_codec_encode_publish_header(o, cap, MQTT_V5, 0, false, false, "t", 1, 0, NULL, 0, 0),
        0x30, 0x04, 0x00, 0x01, 't', 0x00);
    /* v5 with properties (Payload Format 1, Message Expiry 60), QoS 1,
     * id 7, 3-byte payload: remaining = 2+1 + 2 + 1+7 + 3 = 16. */
    static const uint8_t props[] = {0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x3C};
    ASSERT_ENCODES(mqtt_codec_encode_publish_header(o, cap, MQTT_V5, 1, false, false, "t", 1, 7,
                                                    props, sizeof(props), 3),
                   0x32, 0x10, 0x00, 0x01, 't', 0x00, 0x07, 0x07, 0x01, 0x01, 0x02, 0x00, 0x00,
                   0x00, 0x3C);

    /* Round trip the v5 packet through the decoders. */
    uint8_t pkt[64];
    int n = mqtt_codec_encode_publish_header(pkt, sizeof(pkt), MQTT_V5, 1, false, false, "t", 1, 7,
                                             props, sizeof(props), 3);
    assert_int_equal(n, 15);
    memcpy(pkt + n, "abc", 3);
    uint8_t first;
    uint32_t rem;
    size_t hdr;
    assert_int_equal(mqtt_codec_fixed_header(pkt, (size_t)n + 3, &first, &rem, &hdr), 0);
    assert_int_equal(hdr + rem, (size_t)n + 3);
    mqtt_publish_t p;
    assert_int_equal(dec_publish(first, pkt + hdr, rem, MQTT_V5, &p), 0);
    assert_int_equal(p.qos, 1);
    assert_int_equal(p.packet_id, 7);
    assert_str(p.topic, "t");
    assert_int_equal(p.props.payload_format, 1);
    assert_int_equal(p.props.message_expiry, 60);
    assert_int_equal(p.payload_len, 3);
    assert_memory_equal(p.payload, "abc", 3);

    /* The 200-byte v3 one too: the header says 205 bytes follow it. */
    n = mqtt_codec_encode_publish_header(pkt, sizeof(pkt), MQTT_V311, 0, false, false, "a/b", 3, 0,
                                         NULL, 0, 200);
    assert_int_equal(mqtt_codec_fixed_header(pkt, (size_t)n, &first, &rem, &hdr), 0);
    assert_int_equal(rem, 205);
    assert_int_equal(hdr, 3);

    /* Over the largest remaining length (268,435,455). */
    assert_int_equal(mqtt_codec_encode_publish_header(pkt, sizeof(pkt), MQTT_V311, 0, false, false,
                                                      "t", 1, 0, NULL, 0, 268435455),
                     -E2BIG);
    /* Exactly the largest: 3 + 268435452 = 268435455, a 4-byte length. */
    n = mqtt_codec_encode_publish_header(pkt, sizeof(pkt), MQTT_V311, 0, false, false, "t", 1, 0,
                                         NULL, 0, 268435452);
    assert_int_equal(n, 8);
    assert_int_equal(mqtt_codec_fixed_header(pkt, (size_t)n, &first, &rem, &hdr), 0);
    assert_int_equal(rem, 268435455);
}

/* ---- UTF-8 ([MQTT-1.5.3-1..3]; v5 [MQTT-1.5.4-1..3]) --------------------- */

static bool u8v(const char *s, size_t n)
{
    return mqtt_codec_utf8_valid(s, n);
}

#define U8_OK(lit) assert_true(u8v(lit, sizeof(lit) - 1))
#define U8_BAD(lit) assert_false(u8v(lit, sizeof(lit) - 1))

static void test_utf8(void **state)
{
    (void)state;
    /* Well-formed. */
    U8_OK("");
    U8_OK("hello/world");
    U8_OK("\x7F");
    U8_OK("\x01");             /* control characters are SHOULD NOT, not MUST NOT */
    U8_OK("\xC2\x80");         /* U+0080, smallest 2-byte */
    U8_OK("\xC3\xA9");         /* é */
    U8_OK("\xDF\xBF");         /* U+07FF */
    U8_OK("\xE0\xA0\x80");     /* U+0800, smallest 3-byte */
    U8_OK("\xE2\x82\xAC");     /* € */
    U8_OK("\xED\x9F\xBF");     /* U+D7FF, just below the surrogates */
    U8_OK("\xEE\x80\x80");     /* U+E000, just above */
    U8_OK("\xEF\xBF\xBF");     /* U+FFFF: a non-character, still allowed */
    U8_OK("\xEF\xBB\xBF");     /* [MQTT-1.5.3-3]: BOM is U+FEFF, kept */
    U8_OK("\xF0\x90\x80\x80"); /* U+10000, smallest 4-byte */
    U8_OK("\xF0\x9F\x98\x80"); /* 😀 */
    U8_OK("\xF4\x8F\xBF\xBF"); /* U+10FFFF, the largest */
    U8_OK("a\xC3\xA9z\xE2\x82\xAC\xF0\x9F\x98\x80!");

    /* Ill-formed ([MQTT-1.5.3-1]). */
    U8_BAD("\xC3\x28"); /* second byte not a continuation */
    U8_BAD("\x80");     /* lone continuation */
    U8_BAD("\xBF");
    U8_BAD("a\x80z");
    U8_BAD("\xFE");
    U8_BAD("\xFF");
    U8_BAD("\xF8\x88\x80\x80\x80"); /* 5-byte form */
    U8_BAD("\xFC\x84\x80\x80\x80\x80");
    /* Overlong forms. */
    U8_BAD("\xC0\x80"); /* U+0000 */
    U8_BAD("\xC0\xAF"); /* '/' */
    U8_BAD("\xC1\xBF"); /* U+007F */
    U8_BAD("\xE0\x80\x80");
    U8_BAD("\xE0\x9F\xBF"); /* U+07FF in three bytes */
    U8_BAD("\xF0\x80\x80\x80");
    U8_BAD("\xF0\x8F\xBF\xBF"); /* U+FFFF in four bytes */
    /* Surrogates U+D800..U+DFFF. */
    U8_BAD("\xED\xA0\x80");
    U8_BAD("\xED\xAD\xBF");
    U8_BAD("\xED\xB0\x80");
    U8_BAD("\xED\xBF\xBF");
    U8_BAD("\xED\xA0\xBD\xED\xB8\x80"); /* a CESU-8 pair */
    /* Beyond U+10FFFF. */
    U8_BAD("\xF4\x90\x80\x80");
    U8_BAD("\xF5\x80\x80\x80");
    U8_BAD("\xF7\xBF\xBF\xBF");
    /* Truncated sequences, at the end and before other bytes. */
    U8_BAD("\xC3");
    U8_BAD("\xE2\x82");
    U8_BAD("\xF0\x9F\x98");
    U8_BAD("ab\xC3");
    U8_BAD("\xE2\x82"
           "A");
    U8_BAD("\xF0\x9F\x98"
           "A");
    U8_BAD("\xF0\x9F"
           "AB");
    /* The length given is what counts, not a terminator. */
    assert_false(u8v("\xC3\xA9", 1));
    assert_true(u8v("ab\xC3\xA9", 2));
    /* [MQTT-1.5.3-2]: U+0000, embedded or at either end. */
    U8_BAD("a\0b");
    U8_BAD("\0");
    U8_BAD("abc\0");
    U8_BAD("\0abc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_header_lengths),
        cmocka_unit_test(test_fixed_header_too_long),
        cmocka_unit_test(test_fixed_header_truncated),
        cmocka_unit_test(test_check_flags_all),
        cmocka_unit_test(test_check_flags_named),
        cmocka_unit_test(test_connect_v311_minimal_bytes),
        cmocka_unit_test(test_connect_v311_full),
        cmocka_unit_test(test_connect_v5_full),
        cmocka_unit_test(test_connect_protocol),
        cmocka_unit_test(test_connect_flags),
        cmocka_unit_test(test_connect_trailing_and_truncated),
        cmocka_unit_test(test_connect_client_id_utf8),
        cmocka_unit_test(test_connect_v5_props_errors),
        cmocka_unit_test(test_publish_v311),
        cmocka_unit_test(test_publish_errors),
        cmocka_unit_test(test_publish_v5),
        cmocka_unit_test(test_publish_v5_content_type_and_alias),
        cmocka_unit_test(test_subscribe_v311),
        cmocka_unit_test(test_subscribe_v5),
        cmocka_unit_test(test_subscribe_errors),
        cmocka_unit_test(test_unsubscribe),
        cmocka_unit_test(test_ack_decode),
        cmocka_unit_test(test_disconnect_decode),
        cmocka_unit_test(test_put_varint),
        cmocka_unit_test(test_encode_connack),
        cmocka_unit_test(test_encode_connack_v5_props),
        cmocka_unit_test(test_encode_acks),
        cmocka_unit_test(test_encode_suback),
        cmocka_unit_test(test_encode_disconnect_pingresp),
        cmocka_unit_test(test_encode_publish_header),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * drover-sim's MQTT client codec (sim/mqtt_client.c): encoders checked
 * byte for byte against the 3.1.1 and 5.0 layouts, decoders against valid
 * packets, truncations and malformed fields; the QoS 2 exchange (PUBLISH,
 * PUBREC, PUBREL, PUBCOMP) from both the sender's and the receiver's side.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sim/mqtt_client.h"

static void test_connect_311(void **state)
{
    (void)state;
    uint8_t b[128];
    size_t n;
    sim_mqtt_connect_t c = {.version = 4,
                            .client_id = "d1",
                            .username = "d1",
                            .password = "pw",
                            .keepalive = 60,
                            .clean = true};
    assert_int_equal(sim_mqtt_encode_connect(b, sizeof(b), &c, &n), 0);
    static const uint8_t want[] = {0x10, 22, 0,   4,   'M', 'Q', 'T', 'T', 4, 0xc2, 0,   60,
                                   0,    2,  'd', '1', 0,   2,   'd', '1', 0, 2,    'p', 'w'};
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(b, want, sizeof(want));

    /* No user, no password, not clean. */
    c.username = c.password = NULL;
    c.clean = false;
    assert_int_equal(sim_mqtt_encode_connect(b, sizeof(b), &c, &n), 0);
    assert_int_equal(n, 2 + 10 + 4);
    assert_int_equal(b[9], 0x00);

    /* Too small a buffer: -ENOSPC; bad version: -EINVAL. */
    c.username = "d1";
    assert_int_equal(sim_mqtt_encode_connect(b, 10, &c, &n), -ENOSPC);
    c.version = 3;
    assert_int_equal(sim_mqtt_encode_connect(b, sizeof(b), &c, &n), -EINVAL);
}

static void test_connect_5(void **state)
{
    (void)state;
    uint8_t b[128];
    size_t n;
    sim_mqtt_connect_t c = {.version = 5, .client_id = "d", .keepalive = 30, .clean = true};
    assert_int_equal(sim_mqtt_encode_connect(b, sizeof(b), &c, &n), 0);
    static const uint8_t want[] = {0x10, 14,   0, 4,  'M', 'Q', 'T', 'T',
                                   5,    0x02, 0, 30, 0,   0,   1,   'd'};
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(b, want, sizeof(want));
    c.session_expiry = 300;
    assert_int_equal(sim_mqtt_encode_connect(b, sizeof(b), &c, &n), 0);
    static const uint8_t props[] = {5, 0x11, 0, 0, 1, 44};
    assert_int_equal(b[1], 19);
    assert_memory_equal(b + 12, props, sizeof(props));
}

static void test_publish(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t n;
    assert_int_equal(sim_mqtt_encode_publish(b, sizeof(b), 4, "a/b", 3, 1, 7, "hi", 2, &n), 0);
    static const uint8_t q1[] = {0x32, 9, 0, 3, 'a', '/', 'b', 0, 7, 'h', 'i'};
    assert_int_equal(n, sizeof(q1));
    assert_memory_equal(b, q1, sizeof(q1));

    assert_int_equal(sim_mqtt_encode_publish(b, sizeof(b), 5, "a/b", 3, 0, 0, "hi", 2, &n), 0);
    static const uint8_t q0v5[] = {0x30, 8, 0, 3, 'a', '/', 'b', 0, 'h', 'i'};
    assert_int_equal(n, sizeof(q0v5));
    assert_memory_equal(b, q0v5, sizeof(q0v5));

    /* The head alone, for a payload written after it; DUP flag. */
    assert_int_equal(sim_mqtt_encode_publish_head(b, sizeof(b), 4, "t", 1, 1, true, 1, 200, &n), 0);
    assert_int_equal(b[0], 0x3a);
    assert_int_equal(b[1], (uint8_t)(0x80 | ((2 + 1 + 2 + 200) & 0x7f)));
    assert_int_equal(b[2], (2 + 1 + 2 + 200) >> 7);
    assert_int_equal(n, 3 + 2 + 1 + 2);

    /* QoS 1 needs a packet id; QoS 3 does not exist; no room. */
    assert_int_equal(sim_mqtt_encode_publish(b, sizeof(b), 4, "t", 1, 1, 0, "x", 1, &n), -EINVAL);
    assert_int_equal(sim_mqtt_encode_publish(b, sizeof(b), 4, "t", 1, 3, 1, "x", 1, &n), -EINVAL);
    assert_int_equal(sim_mqtt_encode_publish(b, 8, 4, "t", 1, 1, 1, "abcdef", 6, &n), -ENOSPC);
}

static void test_subscribe_and_small(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t n;
    const char *f[] = {"x/+", "y"};
    const uint8_t q[] = {1, 0};
    assert_int_equal(sim_mqtt_encode_subscribe(b, sizeof(b), 4, 0xffff, f, q, 2, &n), 0);
    static const uint8_t s4[] = {0x82, 12, 0xff, 0xff, 0, 3, 'x', '/', '+', 1, 0, 1, 'y', 0};
    assert_int_equal(n, sizeof(s4));
    assert_memory_equal(b, s4, sizeof(s4));
    assert_int_equal(sim_mqtt_encode_subscribe(b, sizeof(b), 5, 2, f, q, 1, &n), 0);
    static const uint8_t s5[] = {0x82, 9, 0, 2, 0, 0, 3, 'x', '/', '+', 1};
    assert_int_equal(n, sizeof(s5));
    assert_memory_equal(b, s5, sizeof(s5));
    assert_int_equal(sim_mqtt_encode_subscribe(b, sizeof(b), 4, 0, f, q, 1, &n), -EINVAL);

    assert_int_equal(sim_mqtt_encode_puback(b, sizeof(b), 0x1234, &n), 0);
    static const uint8_t pa[] = {0x40, 2, 0x12, 0x34};
    assert_memory_equal(b, pa, 4);
    assert_int_equal(sim_mqtt_encode_pingreq(b, sizeof(b), &n), 0);
    assert_int_equal(b[0], 0xc0);
    assert_int_equal(sim_mqtt_encode_disconnect(b, sizeof(b), &n), 0);
    assert_int_equal(b[0], 0xe0);
    assert_int_equal(n, 2);
    assert_int_equal(sim_mqtt_encode_pingreq(b, 1, &n), -ENOSPC);
}

static void test_header(void **state)
{
    (void)state;
    uint8_t t, f;
    uint32_t rem;
    size_t hl;
    static const uint8_t h1[] = {0x20, 0x02};
    assert_int_equal(sim_mqtt_parse_header(h1, 2, &t, &f, &rem, &hl), 0);
    assert_int_equal(t, SIM_MQTT_CONNACK);
    assert_int_equal(rem, 2);
    assert_int_equal(hl, 2);
    static const uint8_t h2[] = {0x33, 0xff, 0xff, 0xff, 0x7f};
    assert_int_equal(sim_mqtt_parse_header(h2, 5, &t, &f, &rem, &hl), 0);
    assert_int_equal(rem, SIM_MQTT_REMAINING_MAX);
    assert_int_equal(f, 3);
    assert_int_equal(hl, 5);
    /* Partial headers wait; a fifth length byte is malformed. */
    assert_int_equal(sim_mqtt_parse_header(h2, 1, &t, &f, &rem, &hl), -EAGAIN);
    assert_int_equal(sim_mqtt_parse_header(h2, 3, &t, &f, &rem, &hl), -EAGAIN);
    static const uint8_t h3[] = {0x30, 0x80, 0x80, 0x80, 0x80, 0x01};
    assert_int_equal(sim_mqtt_parse_header(h3, sizeof(h3), &t, &f, &rem, &hl), -EPROTO);
}

static void test_decode_connack_ack(void **state)
{
    (void)state;
    sim_mqtt_connack_t ca;
    static const uint8_t c4[] = {0x01, 0x00};
    assert_int_equal(sim_mqtt_decode_connack(c4, 2, 4, &ca), 0);
    assert_true(ca.session_present);
    assert_int_equal(ca.code, 0);
    static const uint8_t c5[] = {0x00, 0x86, 3, 0x21, 0x00, 0x10};
    assert_int_equal(sim_mqtt_decode_connack(c5, sizeof(c5), 5, &ca), 0);
    assert_int_equal(ca.code, 0x86);
    /* 3.1.1 form to a 5 client (a server that only speaks 3.1.1). */
    static const uint8_t c5short[] = {0x00, 0x01};
    assert_int_equal(sim_mqtt_decode_connack(c5short, 2, 5, &ca), 0);
    assert_int_equal(ca.code, 1);
    /* Properties longer than the packet; reserved flag bits; extra bytes. */
    static const uint8_t bad1[] = {0x00, 0x00, 9, 0x21};
    assert_int_equal(sim_mqtt_decode_connack(bad1, sizeof(bad1), 5, &ca), -EPROTO);
    static const uint8_t bad2[] = {0x02, 0x00};
    assert_int_equal(sim_mqtt_decode_connack(bad2, 2, 4, &ca), -EPROTO);
    static const uint8_t bad3[] = {0x00, 0x00, 0x00};
    assert_int_equal(sim_mqtt_decode_connack(bad3, 3, 4, &ca), -EPROTO);
    assert_int_equal(sim_mqtt_decode_connack(bad3, 1, 4, &ca), -EPROTO);

    sim_mqtt_ack_t a;
    static const uint8_t a4[] = {0x00, 0x07};
    assert_int_equal(sim_mqtt_decode_ack(a4, 2, 4, &a), 0);
    assert_int_equal(a.pid, 7);
    assert_int_equal(a.reason, 0);
    static const uint8_t a5[] = {0x00, 0x07, 0x99};
    assert_int_equal(sim_mqtt_decode_ack(a5, 3, 5, &a), 0);
    assert_int_equal(a.reason, 0x99);
    static const uint8_t a5p[] = {0x00, 0x07, 0x87, 0x00};
    assert_int_equal(sim_mqtt_decode_ack(a5p, 4, 5, &a), 0);
    assert_int_equal(a.reason, 0x87);
    assert_int_equal(sim_mqtt_decode_ack(a5, 3, 4, &a), -EPROTO);
    static const uint8_t zero[] = {0x00, 0x00};
    assert_int_equal(sim_mqtt_decode_ack(zero, 2, 4, &a), -EPROTO);
}

static void test_decode_suback_publish_disconnect(void **state)
{
    (void)state;
    uint16_t pid;
    uint8_t codes[4];
    size_t nc;
    static const uint8_t s4[] = {0xff, 0xff, 0x01, 0x80};
    assert_int_equal(sim_mqtt_decode_suback(s4, 4, 4, &pid, codes, 4, &nc), 0);
    assert_int_equal(pid, 0xffff);
    assert_int_equal(nc, 2);
    assert_int_equal(codes[1], 0x80);
    static const uint8_t s5[] = {0x00, 0x02, 0x00, 0x87};
    assert_int_equal(sim_mqtt_decode_suback(s5, 4, 5, &pid, codes, 4, &nc), 0);
    assert_int_equal(nc, 1);
    assert_int_equal(codes[0], 0x87);
    assert_int_equal(sim_mqtt_decode_suback(s4, 4, 4, &pid, codes, 1, &nc), -EPROTO);
    assert_int_equal(sim_mqtt_decode_suback(s4, 2, 4, &pid, codes, 4, &nc), -EPROTO);

    sim_mqtt_publish_t m;
    static const uint8_t p1[] = {0, 3, 'a', '/', 'b', 0, 9, '{', '}'};
    assert_int_equal(sim_mqtt_decode_publish(0x02, p1, sizeof(p1), 4, &m), 0);
    assert_int_equal(m.qos, 1);
    assert_int_equal(m.pid, 9);
    assert_int_equal(m.topic_len, 3);
    assert_memory_equal(m.topic, "a/b", 3);
    assert_int_equal(m.payload_len, 2);
    assert_memory_equal(m.payload, "{}", 2);
    static const uint8_t p5[] = {0, 1, 't', 2, 0x01, 0x01, 'x'};
    assert_int_equal(sim_mqtt_decode_publish(0x00, p5, sizeof(p5), 5, &m), 0);
    assert_int_equal(m.qos, 0);
    assert_int_equal(m.payload_len, 1);
    assert_int_equal(m.payload[0], 'x');
    /* QoS 3, topic past the end, packet id 0, empty topic. */
    assert_int_equal(sim_mqtt_decode_publish(0x06, p1, sizeof(p1), 4, &m), -EPROTO);
    assert_int_equal(sim_mqtt_decode_publish(0x00, p1, 3, 4, &m), -EPROTO);
    static const uint8_t p0[] = {0, 1, 't', 0, 0};
    assert_int_equal(sim_mqtt_decode_publish(0x02, p0, sizeof(p0), 4, &m), -EPROTO);
    static const uint8_t pe[] = {0, 0, 'x'};
    assert_int_equal(sim_mqtt_decode_publish(0x00, pe, sizeof(pe), 4, &m), -EPROTO);

    uint8_t r;
    static const uint8_t none[1] = {0};
    assert_int_equal(sim_mqtt_decode_disconnect(none, 0, 5, &r), 0);
    assert_int_equal(r, 0);
    static const uint8_t d5[] = {0x8d, 0x00};
    assert_int_equal(sim_mqtt_decode_disconnect(d5, 2, 5, &r), 0);
    assert_int_equal(r, 0x8d);
    assert_int_equal(sim_mqtt_decode_disconnect(d5, 2, 4, &r), -EPROTO);
}

/* QoS 2, sender's side: PUBLISH QoS 2 out, PUBREC in, PUBREL out,
 * PUBCOMP in; receiver's side: PUBLISH QoS 2 in, PUBREC out, PUBREL in,
 * PUBCOMP out. */
static void test_qos2_exchange(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t n;

    /* The sender's PUBLISH: QoS bits 10, packet id after the topic. */
    assert_int_equal(sim_mqtt_encode_publish(b, sizeof(b), 4, "r/1", 3, 2, 0x0102, "x", 1, &n), 0);
    static const uint8_t q2[] = {0x34, 8, 0, 3, 'r', '/', '1', 0x01, 0x02, 'x'};
    assert_int_equal(n, sizeof(q2));
    assert_memory_equal(b, q2, sizeof(q2));
    assert_int_equal(sim_mqtt_encode_publish(b, sizeof(b), 5, "r", 1, 2, 0, "x", 1, &n), -EINVAL);
    /* DUP on a resent QoS 2 head. */
    assert_int_equal(sim_mqtt_encode_publish_head(b, sizeof(b), 5, "r", 1, 2, true, 9, 0, &n), 0);
    assert_int_equal(b[0], 0x3c);

    /* The four acknowledgements: PUBREL alone has flags 0010. */
    static const struct {
        uint8_t type, first;
    } acks[] = {{SIM_MQTT_PUBACK, 0x40},
                {SIM_MQTT_PUBREC, 0x50},
                {SIM_MQTT_PUBREL, 0x62},
                {SIM_MQTT_PUBCOMP, 0x70}};
    for (size_t i = 0; i < sizeof(acks) / sizeof(acks[0]); i++) {
        memset(b, 0xee, sizeof(b));
        assert_int_equal(sim_mqtt_encode_ack(b, sizeof(b), acks[i].type, 0xbeef, &n), 0);
        assert_int_equal(n, 4);
        const uint8_t want[] = {acks[i].first, 2, 0xbe, 0xef};
        assert_memory_equal(b, want, 4);
        assert_int_equal(b[4], 0xee); /* nothing past the packet */
        /* What we send is what a server's copy of it decodes to. */
        uint8_t t, f;
        uint32_t rem;
        size_t hl;
        assert_int_equal(sim_mqtt_parse_header(b, n, &t, &f, &rem, &hl), 0);
        assert_int_equal(t, acks[i].type);
        assert_true(sim_mqtt_flags_ok(t, f));
        sim_mqtt_ack_t a;
        assert_int_equal(sim_mqtt_decode_ack(b + hl, rem, 4, &a), 0);
        assert_int_equal(a.pid, 0xbeef);
        assert_int_equal(sim_mqtt_encode_ack(b, 3, acks[i].type, 1, &n), -ENOSPC);
        assert_int_equal(sim_mqtt_encode_ack(b, sizeof(b), acks[i].type, 0, &n), -EINVAL);
    }
    assert_int_equal(sim_mqtt_encode_ack(b, sizeof(b), SIM_MQTT_SUBACK, 1, &n), -EINVAL);
    assert_int_equal(sim_mqtt_encode_ack(b, sizeof(b), SIM_MQTT_CONNACK, 1, &n), -EINVAL);

    /* The receiver's PUBLISH: QoS 2 with its id; id 0 is malformed. */
    sim_mqtt_publish_t m;
    static const uint8_t p2[] = {0, 3, 'r', '/', '1', 0x12, 0x34, '{', '}'};
    assert_int_equal(sim_mqtt_decode_publish(0x04, p2, sizeof(p2), 4, &m), 0);
    assert_int_equal(m.qos, 2);
    assert_int_equal(m.pid, 0x1234);
    assert_false(m.dup);
    assert_int_equal(sim_mqtt_decode_publish(0x0d, p2, sizeof(p2), 4, &m), 0);
    assert_true(m.dup);
    assert_true(m.retain);
    static const uint8_t p2zero[] = {0, 1, 'r', 0, 0, 'x'};
    assert_int_equal(sim_mqtt_decode_publish(0x04, p2zero, sizeof(p2zero), 4, &m), -EPROTO);
    static const uint8_t p2v5[] = {0, 1, 'r', 0, 7, 3, 0x23, 0x00, 0x01, 'x'}; /* topic alias */
    assert_int_equal(sim_mqtt_decode_publish(0x04, p2v5, sizeof(p2v5), 5, &m), 0);
    assert_int_equal(m.pid, 7);
    assert_int_equal(m.payload_len, 1);

    /* PUBREC / PUBREL / PUBCOMP bodies from an MQTT 5 server: the short
     * form, a reason code (0x92 packet identifier not found), properties. */
    sim_mqtt_ack_t a;
    static const uint8_t rel5[] = {0x00, 0x07, 0x92, 0x03, 0x1f, 0x00, 0x00};
    assert_int_equal(sim_mqtt_decode_ack(rel5, sizeof(rel5), 5, &a), 0);
    assert_int_equal(a.reason, 0x92);
    assert_int_equal(sim_mqtt_decode_ack(rel5, 2, 5, &a), 0);
    assert_int_equal(a.reason, 0);
    static const uint8_t rec_bad[] = {0x00, 0x07, 0x80, 0x05, 0x00};
    assert_int_equal(sim_mqtt_decode_ack(rec_bad, sizeof(rec_bad), 5, &a), -EPROTO);

    /* Fixed-header flags a server must use. */
    assert_true(sim_mqtt_flags_ok(SIM_MQTT_PUBREL, 0x02));
    assert_false(sim_mqtt_flags_ok(SIM_MQTT_PUBREL, 0x00));
    assert_false(sim_mqtt_flags_ok(SIM_MQTT_PUBREC, 0x02));
    assert_false(sim_mqtt_flags_ok(SIM_MQTT_PUBCOMP, 0x01));
    assert_true(sim_mqtt_flags_ok(SIM_MQTT_PUBCOMP, 0x00));
    assert_true(sim_mqtt_flags_ok(SIM_MQTT_PUBLISH, 0x0d));
    assert_false(sim_mqtt_flags_ok(SIM_MQTT_CONNACK, 0x01));
    assert_true(sim_mqtt_flags_ok(SIM_MQTT_SUBACK, 0x00));

    /* A QoS 2 subscription; QoS 3 does not exist. */
    const char *f[] = {"r/+"};
    uint8_t q[] = {2};
    assert_int_equal(sim_mqtt_encode_subscribe(b, sizeof(b), 4, 5, f, q, 1, &n), 0);
    assert_int_equal(b[n - 1], 2);
    q[0] = 3;
    assert_int_equal(sim_mqtt_encode_subscribe(b, sizeof(b), 4, 5, f, q, 1, &n), -EINVAL);
}

static void test_connack_names(void **state)
{
    (void)state;
    assert_string_equal(sim_mqtt_connack_str(4, 4), "bad user name or password");
    assert_string_equal(sim_mqtt_connack_str(5, 0x86), "bad user name or password");
    assert_string_equal(sim_mqtt_connack_str(5, 0x89), "server busy");
    assert_true(sim_mqtt_connack_retryable(4, 3));
    assert_false(sim_mqtt_connack_retryable(4, 4));
    assert_true(sim_mqtt_connack_retryable(5, 0x89));
    assert_false(sim_mqtt_connack_retryable(5, 0x86));
}

/* Every truncation of valid packets is -EPROTO or fine, never a read
 * past the end (ASan watches). */
static void test_truncations(void **state)
{
    (void)state;
    static const uint8_t p[] = {0, 3, 'a', '/', 'b', 0, 9, 4, 0x01, 0x01, 0x02, 0x00, '{', '}'};
    for (size_t k = 0; k <= sizeof(p); k++) {
        uint8_t *b = malloc(k ? k : 1);
        memcpy(b, p, k);
        sim_mqtt_publish_t m;
        sim_mqtt_ack_t a;
        sim_mqtt_connack_t ca;
        uint16_t pid;
        uint8_t codes[16], r;
        size_t nc;
        (void)sim_mqtt_decode_publish(0x02, b, k, 5, &m);
        (void)sim_mqtt_decode_publish(0x04, b, k, 5, &m);
        (void)sim_mqtt_decode_ack(b, k, 5, &a);
        (void)sim_mqtt_decode_connack(b, k, 5, &ca);
        (void)sim_mqtt_decode_suback(b, k, 5, &pid, codes, sizeof(codes), &nc);
        (void)sim_mqtt_decode_disconnect(b, k, 5, &r);
        free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_311),
        cmocka_unit_test(test_connect_5),
        cmocka_unit_test(test_publish),
        cmocka_unit_test(test_subscribe_and_small),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_decode_connack_ack),
        cmocka_unit_test(test_decode_suback_publish_disconnect),
        cmocka_unit_test(test_qos2_exchange),
        cmocka_unit_test(test_connack_names),
        cmocka_unit_test(test_truncations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

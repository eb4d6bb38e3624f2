/*
 * fuzz_codec: every decoder of src/mqtt/codec.c on arbitrary bytes.
 *
 * The input is used two ways. As a wire packet: the fixed header is
 * decoded and, when the declared body is all there, the body goes to the
 * decoder its type selects, for both protocol versions. And as a raw body:
 * data[1..] goes to every decoder whatever the type (PUBLISH with every
 * one of the 16 flag nibbles, SUBSCRIBE and UNSUBSCRIBE, the acks,
 * DISCONNECT, CONNECT), so a decoder is exercised even on inputs whose
 * fixed header says something else.
 *
 * Whenever a decode succeeds the result is checked against what the codec
 * promises (codec.h and the spec): every borrowed pointer lies inside the
 * body, lengths add up, strings are MQTT UTF-8, flag combinations the spec
 * forbids never come out, and a decoded PUBLISH or ack re-encodes to bytes
 * that decode to the same thing. mqtt_codec_utf8_valid is compared with a
 * second validator written here from the Unicode table of well-formed
 * sequences. Any disagreement aborts.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqtt/codec.h"

/* Unicode 15, table 3-7, minus U+0000 ([MQTT-1.5.4-2]). Deliberately a
 * different construction from the codec's (ranges of second bytes, not
 * decoded code points). */
static bool ref_utf8(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        uint8_t lo = 0x80, hi = 0xBF;
        size_t n;
        if (c == 0x00)
            return false;
        if (c <= 0x7F) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c == 0xE0) {
            n = 2;
            lo = 0xA0;
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            n = 2;
        } else if (c == 0xED) {
            n = 2;
            hi = 0x9F;
        } else if (c == 0xF0) {
            n = 3;
            lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            n = 3;
        } else if (c == 0xF4) {
            n = 3;
            hi = 0x8F;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= n; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return false;
        }
        i += n + 1;
    }
    return true;
}

static void check_str(const mqtt_str_t *s, const uint8_t *body, size_t len)
{
    CHECK(s->p != NULL);
    CHECK(fuzz_inside(s->p, s->len, body, len));
    CHECK(mqtt_codec_utf8_valid(s->p, s->len));
    CHECK(ref_utf8((const uint8_t *)s->p, s->len));
}

static void check_bin(const mqtt_bin_t *b, const uint8_t *body, size_t len)
{
    CHECK(b->p != NULL);
    CHECK(fuzz_inside(b->p, b->len, body, len));
}

/* Properties are all-zero for 3.1.1 and otherwise hold only known ids
 * with values the decoder is meant to have refused otherwise. */
static void check_props(const mqtt_props_t *p, uint8_t version, const uint8_t *body, size_t len)
{
    if (version != MQTT_V5) {
        CHECK(p->present == 0);
        CHECK(p->raw.len == 0);
        return;
    }
    check_bin(&p->raw, body, len);
    static const uint8_t known[] = {
        MQTT_PROP_PAYLOAD_FORMAT,
        MQTT_PROP_MESSAGE_EXPIRY,
        MQTT_PROP_CONTENT_TYPE,
        MQTT_PROP_RESPONSE_TOPIC,
        MQTT_PROP_CORRELATION_DATA,
        MQTT_PROP_SUBSCRIPTION_ID,
        MQTT_PROP_SESSION_EXPIRY,
        MQTT_PROP_ASSIGNED_CLIENT_ID,
        MQTT_PROP_SERVER_KEEPALIVE,
        MQTT_PROP_AUTH_METHOD,
        MQTT_PROP_AUTH_DATA,
        MQTT_PROP_REQUEST_PROBLEM_INFO,
        MQTT_PROP_WILL_DELAY,
        MQTT_PROP_REQUEST_RESPONSE_INFO,
        MQTT_PROP_RESPONSE_INFO,
        MQTT_PROP_SERVER_REFERENCE,
        MQTT_PROP_REASON_STRING,
        MQTT_PROP_RECEIVE_MAXIMUM,
        MQTT_PROP_TOPIC_ALIAS_MAXIMUM,
        MQTT_PROP_TOPIC_ALIAS,
        MQTT_PROP_MAXIMUM_QOS,
        MQTT_PROP_RETAIN_AVAILABLE,
        MQTT_PROP_USER_PROPERTY,
        MQTT_PROP_MAXIMUM_PACKET_SIZE,
        MQTT_PROP_WILDCARD_SUB_AVAILABLE,
        MQTT_PROP_SUB_ID_AVAILABLE,
        MQTT_PROP_SHARED_SUB_AVAILABLE,
    };
    uint64_t mask = 0;
    for (size_t i = 0; i < sizeof(known); i++)
        mask |= UINT64_C(1) << known[i];
    CHECK((p->present & ~mask) == 0);
    if (p->present != 0)
        CHECK(p->raw.len > 0);
    CHECK(p->payload_format <= 1);
    CHECK(p->request_problem_info <= 1);
    CHECK(p->request_response_info <= 1);
    if (mqtt_props_has(p, MQTT_PROP_RECEIVE_MAXIMUM))
        CHECK(p->receive_max != 0);
    else
        CHECK(p->receive_max == 0);
    if (mqtt_props_has(p, MQTT_PROP_MAXIMUM_PACKET_SIZE))
        CHECK(p->max_packet_size != 0);
    if (mqtt_props_has(p, MQTT_PROP_SUBSCRIPTION_ID))
        CHECK(p->sub_id != 0 && p->sub_id <= 268435455);
    if (mqtt_props_has(p, MQTT_PROP_AUTH_METHOD))
        check_str(&p->auth_method, body, len);
    /* A property block is at least one byte per property present. */
    CHECK((uint64_t)p->raw.len >= (uint64_t)__builtin_popcountll(p->present));
}

static void check_connect(const mqtt_connect_t *c, const uint8_t *body, size_t len)
{
    CHECK(c->version == MQTT_V311 || c->version == MQTT_V5);
    /* Protocol name (6) + level + flags + keepalive + client id length. */
    CHECK(len >= 12);
    check_str(&c->client_id, body, len);
    check_props(&c->props, c->version, body, len);
    CHECK(c->will_qos <= 2);
    if (c->will) {
        check_str(&c->will_topic, body, len);
        check_bin(&c->will_payload, body, len);
        check_props(&c->will_props, c->version, body, len);
        CHECK(c->will_topic.p > c->client_id.p);
    } else {
        CHECK(c->will_qos == 0 && !c->will_retain);
        CHECK(c->will_topic.p == NULL && c->will_topic.len == 0);
        CHECK(c->will_props.present == 0);
    }
    if (c->has_username)
        check_str(&c->username, body, len);
    else
        CHECK(c->username.p == NULL && c->username.len == 0);
    if (c->has_password)
        check_bin(&c->password, body, len);
    else
        CHECK(c->password.p == NULL && c->password.len == 0);
    if (c->version == MQTT_V311 && c->has_password)
        CHECK(c->has_username);
    /* The flags byte the decoder accepted round-trips through the struct. */
    uint8_t flags = (uint8_t)((c->clean_start ? 0x02 : 0) | (c->will ? 0x04 : 0) |
                              c->will_qos << 3 | (c->will_retain ? 0x20 : 0) |
                              (c->has_password ? 0x40 : 0) | (c->has_username ? 0x80 : 0));
    CHECK(body[7] == flags);
    CHECK(body[6] == c->version);
    CHECK((uint16_t)(body[8] << 8 | body[9]) == c->keepalive);
}

static void check_publish(uint8_t first, const mqtt_publish_t *p, uint8_t version,
                          const uint8_t *body, size_t len)
{
    CHECK(p->qos <= 2);
    CHECK(p->qos == ((first >> 1) & 3));
    CHECK(p->retain == ((first & 1) != 0));
    CHECK(p->dup == ((first & 8) != 0));
    CHECK(!(p->qos == 0 && p->dup));
    CHECK((p->qos == 0) == (p->packet_id == 0));
    check_str(&p->topic, body, len);
    CHECK(p->topic.p == (const char *)body + 2);
    for (size_t i = 0; i < p->topic.len; i++)
        CHECK(p->topic.p[i] != '+' && p->topic.p[i] != '#');
    check_props(&p->props, version, body, len);
    CHECK(!mqtt_props_has(&p->props, MQTT_PROP_SUBSCRIPTION_ID));
    /* The payload is exactly the rest of the body. */
    CHECK(p->payload != NULL);
    CHECK(p->payload + p->payload_len == body + len);
    CHECK(fuzz_inside(p->payload, p->payload_len, body, len));

    /* Re-encode and decode again: same message. */
    size_t plen = version == MQTT_V5 ? p->props.raw.len : 0;
    size_t cap = 16 + p->topic.len + plen + p->payload_len;
    uint8_t *pkt = malloc(cap);
    CHECK(pkt != NULL);
    int n = mqtt_codec_encode_publish_header(pkt, cap, version, p->qos, p->retain, p->dup,
                                             p->topic.p, p->topic.len, p->packet_id,
                                             plen ? p->props.raw.p : NULL, plen, p->payload_len);
    CHECK(n > 0 && (size_t)n + p->payload_len <= cap);
    if (p->payload_len)
        memcpy(pkt + n, p->payload, p->payload_len);
    size_t total = (size_t)n + p->payload_len;
    uint8_t f2;
    uint32_t rem;
    size_t hl;
    CHECK(mqtt_codec_fixed_header(pkt, total, &f2, &rem, &hl) == 0);
    CHECK(f2 == (uint8_t)(MQTT_PUBLISH << 4 | (first & 0x0F)));
    CHECK(hl + rem == total);
    mqtt_publish_t q;
    CHECK(mqtt_codec_decode_publish(f2, pkt + hl, rem, version, &q) == 0);
    CHECK(q.qos == p->qos && q.retain == p->retain && q.dup == p->dup);
    CHECK(q.packet_id == p->packet_id);
    CHECK(q.topic.len == p->topic.len && memcmp(q.topic.p, p->topic.p, p->topic.len) == 0);
    CHECK(q.payload_len == p->payload_len);
    CHECK(p->payload_len == 0 || memcmp(q.payload, p->payload, p->payload_len) == 0);
    CHECK(q.props.present == p->props.present);
    CHECK(q.props.raw.len == p->props.raw.len);
    free(pkt);
}

static void check_subscribe(const mqtt_subscribe_t *s, uint8_t type, uint8_t version,
                            const uint8_t *body, size_t len)
{
    CHECK(s->unsubscribe == (type == MQTT_UNSUBSCRIBE));
    CHECK(s->packet_id != 0);
    CHECK(s->count >= 1);
    check_props(&s->props, version, body, len);
    CHECK(s->entries != NULL);
    CHECK(s->entries + s->entries_len == body + len);
    CHECK(fuzz_inside(s->entries, s->entries_len, body, len));
    size_t pos = 0, last = 0;
    uint32_t n = 0;
    mqtt_sub_entry_t e;
    while (mqtt_codec_sub_next(s, &pos, &e)) {
        CHECK(pos > last && pos <= s->entries_len);
        last = pos;
        check_str(&e.filter, body, len);
        CHECK(fuzz_inside(e.filter.p, e.filter.len, s->entries, s->entries_len));
        if (s->unsubscribe) {
            CHECK(e.options == 0);
        } else {
            CHECK((e.options & 3) != 3);
            if (version == MQTT_V311)
                CHECK((e.options & 0xFC) == 0);
            else
                CHECK((e.options & 0xC0) == 0 && ((e.options >> 4) & 3) != 3);
        }
        n++;
        CHECK(n <= s->count);
    }
    /* The walk sees every entry the decoder counted and nothing else. */
    CHECK(n == s->count);
    CHECK(pos == s->entries_len);
    /* Walking past the end stays at the end. */
    CHECK(mqtt_codec_sub_next(s, &pos, &e) == 0);
    CHECK(pos == s->entries_len);
}

static void check_ack(const mqtt_ack_t *a, uint8_t version, const uint8_t *body, size_t len)
{
    CHECK(a->packet_id != 0);
    CHECK(len >= 2);
    CHECK((uint16_t)(body[0] << 8 | body[1]) == a->packet_id);
    if (version == MQTT_V311) {
        CHECK(len == 2);
        CHECK(a->reason == 0);
    } else if (len >= 3) {
        CHECK(a->reason == body[2]);
    } else {
        CHECK(a->reason == 0);
    }
    /* The encoder's output decodes to the same ack, for every type. */
    static const uint8_t types[] = {MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP};
    for (size_t i = 0; i < sizeof(types); i++) {
        uint8_t pkt[8];
        int n = mqtt_codec_encode_ack(pkt, sizeof(pkt), types[i], version, a->packet_id, a->reason);
        CHECK(n > 0);
        uint8_t first;
        uint32_t rem;
        size_t hl;
        CHECK(mqtt_codec_fixed_header(pkt, (size_t)n, &first, &rem, &hl) == 0);
        CHECK(first >> 4 == types[i]);
        CHECK(mqtt_codec_check_flags(first) == 0);
        CHECK(hl + rem == (size_t)n);
        mqtt_ack_t b;
        CHECK(mqtt_codec_decode_ack(pkt + hl, rem, version, &b) == 0);
        CHECK(b.packet_id == a->packet_id && b.reason == a->reason);
    }
}

static void check_disconnect(const mqtt_disconnect_t *d, uint8_t version, const uint8_t *body,
                             size_t len)
{
    if (version == MQTT_V311) {
        CHECK(len == 0);
        CHECK(d->reason == 0 && d->props.present == 0);
        return;
    }
    CHECK(d->reason == (len > 0 ? body[0] : 0));
    if (len <= 1)
        CHECK(d->props.present == 0);
    else
        check_props(&d->props, version, body, len);
}

static int known_error(int rc)
{
    return rc == -EPROTO || rc == -EBADMSG || rc == -ENOTSUP || rc == -E2BIG || rc == -EAGAIN;
}

/* Runs every decoder that applies to (type, body) for both versions. */
static void decode_all(uint8_t first, const uint8_t *body, size_t len, bool only_type)
{
    uint8_t type = first >> 4;
    static const uint8_t versions[] = {MQTT_V311, MQTT_V5};

    if (!only_type || type == MQTT_CONNECT) {
        mqtt_connect_t c;
        memset(&c, 0xA5, sizeof(c)); /* out-params are written only on success */
        mqtt_connect_t before;
        memcpy(&before, &c, sizeof(c));
        int rc = mqtt_codec_decode_connect(body, len, &c);
        CHECK(rc == 0 || known_error(rc));
        if (rc == 0)
            check_connect(&c, body, len);
        else
            CHECK(memcmp(&c, &before, sizeof(c)) == 0);
    }
    for (size_t v = 0; v < sizeof(versions); v++) {
        uint8_t ver = versions[v];
        if (!only_type || type == MQTT_PUBLISH) {
            /* Every flag nibble when probing; the packet's own otherwise. */
            for (unsigned fl = 0; fl < 16; fl++) {
                uint8_t f = (uint8_t)(MQTT_PUBLISH << 4 | fl);
                if (only_type && f != first)
                    continue;
                mqtt_publish_t p;
                int rc = mqtt_codec_decode_publish(f, body, len, ver, &p);
                CHECK(rc == 0 || known_error(rc));
                if (rc == 0)
                    check_publish(f, &p, ver, body, len);
            }
        }
        static const uint8_t subs[] = {MQTT_SUBSCRIBE, MQTT_UNSUBSCRIBE};
        for (size_t i = 0; i < sizeof(subs); i++) {
            if (only_type && type != subs[i])
                continue;
            mqtt_subscribe_t s;
            int rc = mqtt_codec_decode_subscribe(subs[i], body, len, ver, &s);
            CHECK(rc == 0 || known_error(rc));
            if (rc == 0)
                check_subscribe(&s, subs[i], ver, body, len);
        }
        if (!only_type || (type >= MQTT_PUBACK && type <= MQTT_PUBCOMP)) {
            mqtt_ack_t a;
            int rc = mqtt_codec_decode_ack(body, len, ver, &a);
            CHECK(rc == 0 || known_error(rc));
            if (rc == 0)
                check_ack(&a, ver, body, len);
        }
        if (!only_type || type == MQTT_DISCONNECT) {
            mqtt_disconnect_t d;
            int rc = mqtt_codec_decode_disconnect(body, len, ver, &d);
            CHECK(rc == 0 || known_error(rc));
            if (rc == 0)
                check_disconnect(&d, ver, body, len);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* UTF-8: the codec's validator against the reference, whole input. */
    CHECK(mqtt_codec_utf8_valid((const char *)data, size) == ref_utf8(data, size));

    /* As a wire packet. */
    uint8_t first;
    uint32_t remaining;
    size_t hlen;
    int rc = mqtt_codec_fixed_header(data, size, &first, &remaining, &hlen);
    CHECK(rc == 0 || rc == -EAGAIN || rc == -EPROTO);
    if (rc == 0) {
        CHECK(hlen >= 2 && hlen <= 5 && hlen <= size);
        CHECK(first == data[0]);
        CHECK(remaining <= 268435455);
        /* The varint re-encodes to the same bytes it was read from... */
        uint8_t vi[4];
        size_t vn = mqtt_codec_put_varint(vi, remaining);
        /* ...unless the client used a non-minimal encoding, which MQTT
         * forbids but the decoder need not reject: then only the value
         * must agree. */
        CHECK(vn <= hlen - 1);
        if (vn == hlen - 1)
            CHECK(memcmp(vi, data + 1, vn) == 0);
        int fr = mqtt_codec_check_flags(first);
        CHECK(fr == 0 || fr == -EPROTO);
        if ((first >> 4) == 0)
            CHECK(fr == -EPROTO);
        if (remaining <= size - hlen)
            decode_all(first, data + hlen, remaining, true);
    } else if (rc == -EAGAIN) {
        /* Too short to tell: fewer than 5 bytes with continuation bits. */
        CHECK(size < 5);
    }

    /* As a raw body behind data[0], through every decoder. */
    if (size >= 1)
        decode_all(data[0], data + 1, size - 1, false);
    return 0;
}

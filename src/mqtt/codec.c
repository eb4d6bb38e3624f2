/*
 * MQTT packet codec. A small cursor (struct rd) walks the body; every read
 * checks the bytes left first, so a declared length can never carry a read
 * past the packet. Properties are checked against a table of their type and
 * of the packets they may appear in ([MQTT-2.2.2]).
 */
#include "mqtt/codec.h"

#include <errno.h>
#include <string.h>

struct rd {
    const uint8_t *p;
    size_t left;
};

static int rd_u8(struct rd *r, uint8_t *v)
{
    if (r->left < 1)
        return -EPROTO;
    *v = r->p[0];
    r->p++;
    r->left--;
    return 0;
}

static int rd_u16(struct rd *r, uint16_t *v)
{
    if (r->left < 2)
        return -EPROTO;
    *v = (uint16_t)(r->p[0] << 8 | r->p[1]);
    r->p += 2;
    r->left -= 2;
    return 0;
}

static int rd_u32(struct rd *r, uint32_t *v)
{
    if (r->left < 4)
        return -EPROTO;
    *v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    r->left -= 4;
    return 0;
}

static int rd_varint(struct rd *r, uint32_t *v)
{
    uint32_t val = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t b;
        if (rd_u8(r, &b) < 0)
            return -EPROTO;
        val |= (uint32_t)(b & 0x7F) << (7 * i);
        if ((b & 0x80) == 0) {
            *v = val;
            return 0;
        }
    }
    return -EPROTO;
}

static int rd_bin(struct rd *r, mqtt_bin_t *b)
{
    uint16_t n;
    if (rd_u16(r, &n) < 0 || r->left < n)
        return -EPROTO;
    b->p = r->p;
    b->len = n;
    r->p += n;
    r->left -= n;
    return 0;
}

static int rd_str(struct rd *r, mqtt_str_t *s)
{
    mqtt_bin_t b;
    if (rd_bin(r, &b) < 0)
        return -EPROTO;
    if (!mqtt_codec_utf8_valid((const char *)b.p, b.len))
        return -EPROTO;
    s->p = (const char *)b.p;
    s->len = (uint16_t)b.len;
    return 0;
}

bool mqtt_codec_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        uint32_t cp;
        size_t n;
        if (c == 0)
            return false; /* [MQTT-1.5.4-2] */
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            cp = c & 0x1F;
            n = 1;
        } else if ((c & 0xF0) == 0xE0) {
            cp = c & 0x0F;
            n = 2;
        } else if ((c & 0xF8) == 0xF0) {
            cp = c & 0x07;
            n = 3;
        } else {
            return false;
        }
        if (i + n >= len)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        /* Overlong forms, surrogates ([MQTT-1.5.4-1]) and beyond U+10FFFF. */
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000))
            return false;
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return false;
        if (cp > 0x10FFFF)
            return false;
        i += n + 1;
    }
    return true;
}

bool mqtt_props_has(const mqtt_props_t *p, uint8_t id)
{
    return id < 64 && (p->present & (UINT64_C(1) << id)) != 0;
}

/* Property types. */
enum { PT_U8, PT_U16, PT_U32, PT_VARINT, PT_STR, PT_BIN, PT_PAIR };

/* Which packets a property may appear in: bit per packet type, plus bit 0
 * for the will properties of CONNECT. */
#define IN(t) (1u << (t))
#define IN_WILL 1u

static const struct {
    uint8_t type;
    uint16_t where;
} prop_table[43] = {
    [MQTT_PROP_PAYLOAD_FORMAT] = {PT_U8, IN(MQTT_PUBLISH) | IN_WILL},
    [MQTT_PROP_MESSAGE_EXPIRY] = {PT_U32, IN(MQTT_PUBLISH) | IN_WILL},
    [MQTT_PROP_CONTENT_TYPE] = {PT_STR, IN(MQTT_PUBLISH) | IN_WILL},
    [MQTT_PROP_RESPONSE_TOPIC] = {PT_STR, IN(MQTT_PUBLISH) | IN_WILL},
    [MQTT_PROP_CORRELATION_DATA] = {PT_BIN, IN(MQTT_PUBLISH) | IN_WILL},
    [MQTT_PROP_SUBSCRIPTION_ID] = {PT_VARINT, IN(MQTT_PUBLISH) | IN(MQTT_SUBSCRIBE)},
    [MQTT_PROP_SESSION_EXPIRY] = {PT_U32,
                                  IN(MQTT_CONNECT) | IN(MQTT_CONNACK) | IN(MQTT_DISCONNECT)},
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = {PT_STR, IN(MQTT_CONNACK)},
    [MQTT_PROP_SERVER_KEEPALIVE] = {PT_U16, IN(MQTT_CONNACK)},
    [MQTT_PROP_AUTH_METHOD] = {PT_STR, IN(MQTT_CONNECT) | IN(MQTT_CONNACK) | IN(MQTT_AUTH)},
    [MQTT_PROP_AUTH_DATA] = {PT_BIN, IN(MQTT_CONNECT) | IN(MQTT_CONNACK) | IN(MQTT_AUTH)},
    [MQTT_PROP_REQUEST_PROBLEM_INFO] = {PT_U8, IN(MQTT_CONNECT)},
    [MQTT_PROP_WILL_DELAY] = {PT_U32, IN_WILL},
    [MQTT_PROP_REQUEST_RESPONSE_INFO] = {PT_U8, IN(MQTT_CONNECT)},
    [MQTT_PROP_RESPONSE_INFO] = {PT_STR, IN(MQTT_CONNACK)},
    [MQTT_PROP_SERVER_REFERENCE] = {PT_STR, IN(MQTT_CONNACK) | IN(MQTT_DISCONNECT)},
    [MQTT_PROP_REASON_STRING] = {PT_STR, IN(MQTT_CONNACK) | IN(MQTT_PUBACK) | IN(MQTT_PUBREC) |
                                             IN(MQTT_PUBREL) | IN(MQTT_PUBCOMP) | IN(MQTT_SUBACK) |
                                             IN(MQTT_UNSUBACK) | IN(MQTT_DISCONNECT) |
                                             IN(MQTT_AUTH)},
    [MQTT_PROP_RECEIVE_MAXIMUM] = {PT_U16, IN(MQTT_CONNECT) | IN(MQTT_CONNACK)},
    [MQTT_PROP_TOPIC_ALIAS_MAXIMUM] = {PT_U16, IN(MQTT_CONNECT) | IN(MQTT_CONNACK)},
    [MQTT_PROP_TOPIC_ALIAS] = {PT_U16, IN(MQTT_PUBLISH)},
    [MQTT_PROP_MAXIMUM_QOS] = {PT_U8, IN(MQTT_CONNACK)},
    [MQTT_PROP_RETAIN_AVAILABLE] = {PT_U8, IN(MQTT_CONNACK)},
    [MQTT_PROP_USER_PROPERTY] = {PT_PAIR, 0xFFFF},
    [MQTT_PROP_MAXIMUM_PACKET_SIZE] = {PT_U32, IN(MQTT_CONNECT) | IN(MQTT_CONNACK)},
    [MQTT_PROP_WILDCARD_SUB_AVAILABLE] = {PT_U8, IN(MQTT_CONNACK)},
    [MQTT_PROP_SUB_ID_AVAILABLE] = {PT_U8, IN(MQTT_CONNACK)},
    [MQTT_PROP_SHARED_SUB_AVAILABLE] = {PT_U8, IN(MQTT_CONNACK)},
};

/* Reads a property block for packet type `where` (a bit mask as in the
 * table). Unknown ids and ids not allowed there are malformed; a repeated
 * id is a protocol error, except user properties (and subscription ids in
 * PUBLISH, which only the server sends). */
static int rd_props(struct rd *r, uint16_t where, mqtt_props_t *out)
{
    memset(out, 0, sizeof(*out));
    uint32_t len;
    if (rd_varint(r, &len) < 0 || r->left < len)
        return -EPROTO;
    struct rd pr = {r->p, len};
    out->raw.p = r->p;
    out->raw.len = len;
    r->p += len;
    r->left -= len;

    while (pr.left > 0) {
        uint32_t id;
        if (rd_varint(&pr, &id) < 0)
            return -EPROTO;
        if (id >= sizeof(prop_table) / sizeof(prop_table[0]) || prop_table[id].where == 0)
            return -EPROTO;
        if ((prop_table[id].where & where) == 0)
            return -EPROTO;
        if (id != MQTT_PROP_USER_PROPERTY && mqtt_props_has(out, (uint8_t)id))
            return -EBADMSG;
        out->present |= UINT64_C(1) << id;
        uint8_t u8 = 0;
        uint16_t u16 = 0;
        uint32_t u32 = 0;
        mqtt_str_t s = {0};
        mqtt_bin_t b;
        int rc = 0;
        switch (prop_table[id].type) {
        case PT_U8:
            rc = rd_u8(&pr, &u8);
            break;
        case PT_U16:
            rc = rd_u16(&pr, &u16);
            break;
        case PT_U32:
            rc = rd_u32(&pr, &u32);
            break;
        case PT_VARINT:
            rc = rd_varint(&pr, &u32);
            break;
        case PT_STR:
            rc = rd_str(&pr, &s);
            break;
        case PT_BIN:
            rc = rd_bin(&pr, &b);
            break;
        case PT_PAIR:
            rc = rd_str(&pr, &s);
            if (rc == 0)
                rc = rd_str(&pr, &s);
            break;
        }
        if (rc < 0)
            return rc;
        switch (id) {
        case MQTT_PROP_PAYLOAD_FORMAT:
            if (u8 > 1)
                return -EBADMSG;
            out->payload_format = u8;
            break;
        case MQTT_PROP_MESSAGE_EXPIRY:
            out->message_expiry = u32;
            break;
        case MQTT_PROP_SUBSCRIPTION_ID:
            if (u32 == 0)
                return -EBADMSG;
            out->sub_id = u32;
            break;
        case MQTT_PROP_SESSION_EXPIRY:
            out->session_expiry = u32;
            break;
        case MQTT_PROP_AUTH_METHOD:
            out->auth_method = s;
            break;
        case MQTT_PROP_RESPONSE_TOPIC:
            /* A topic name: no wildcards ([MQTT-3.3.2-14]), not empty. */
            if (s.len == 0 || memchr(s.p, '+', s.len) || memchr(s.p, '#', s.len))
                return -EBADMSG;
            out->response_topic = s;
            break;
        case MQTT_PROP_REQUEST_PROBLEM_INFO:
            if (u8 > 1)
                return -EBADMSG;
            out->request_problem_info = u8;
            break;
        case MQTT_PROP_REQUEST_RESPONSE_INFO:
            if (u8 > 1)
                return -EBADMSG;
            out->request_response_info = u8;
            break;
        case MQTT_PROP_WILL_DELAY:
            out->will_delay = u32;
            break;
        case MQTT_PROP_RECEIVE_MAXIMUM:
            if (u16 == 0)
                return -EBADMSG; /* [MQTT-3.1.2-?] receive maximum 0 */
            out->receive_max = u16;
            break;
        case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
            out->topic_alias_max = u16;
            break;
        case MQTT_PROP_TOPIC_ALIAS:
            out->topic_alias = u16;
            break;
        case MQTT_PROP_MAXIMUM_PACKET_SIZE:
            if (u32 == 0)
                return -EBADMSG;
            out->max_packet_size = u32;
            break;
        default:
            break;
        }
    }
    return 0;
}

int mqtt_codec_fixed_header(const uint8_t *buf, size_t len, uint8_t *first, uint32_t *remaining,
                            size_t *hdr_len)
{
    if (len < 2)
        return -EAGAIN;
    uint32_t val = 0;
    for (size_t i = 0; i < 4; i++) {
        if (1 + i >= len)
            return -EAGAIN;
        uint8_t b = buf[1 + i];
        val |= (uint32_t)(b & 0x7F) << (7 * i);
        if ((b & 0x80) == 0) {
            *first = buf[0];
            *remaining = val;
            *hdr_len = 2 + i;
            return 0;
        }
    }
    return -EPROTO;
}

int mqtt_codec_check_flags(uint8_t first)
{
    uint8_t type = first >> 4, flags = first & 0x0F;
    switch (type) {
    case 0:
        return -EPROTO;
    case MQTT_PUBLISH:
        return 0;
    case MQTT_PUBREL:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return flags == 0x02 ? 0 : -EPROTO;
    default:
        return flags == 0 ? 0 : -EPROTO;
    }
}

int mqtt_codec_decode_connect(const uint8_t *body, size_t len, mqtt_connect_t *out)
{
    struct rd r = {body, len};
    mqtt_connect_t c;
    memset(&c, 0, sizeof(c));
    mqtt_bin_t name;
    uint8_t level, flags;
    if (rd_bin(&r, &name) < 0 || rd_u8(&r, &level) < 0)
        return -EPROTO;
    if (name.len != 4 || memcmp(name.p, "MQTT", 4) != 0) {
        /* 3.1's "MQIsdp" and anything else: unacceptable protocol. */
        return -ENOTSUP;
    }
    if (level != MQTT_V311 && level != MQTT_V5)
        return -ENOTSUP; /* [MQTT-3.1.2-2] */
    c.version = level;
    if (rd_u8(&r, &flags) < 0 || rd_u16(&r, &c.keepalive) < 0)
        return -EPROTO;
    if (flags & 0x01)
        return -EPROTO; /* [MQTT-3.1.2-3] reserved flag */
    c.clean_start = (flags & 0x02) != 0;
    c.will = (flags & 0x04) != 0;
    c.will_qos = (flags >> 3) & 0x03;
    c.will_retain = (flags & 0x20) != 0;
    c.has_password = (flags & 0x40) != 0;
    c.has_username = (flags & 0x80) != 0;
    if (c.will_qos == 3)
        return -EPROTO; /* [MQTT-3.1.2-14] */
    if (!c.will && (c.will_qos != 0 || c.will_retain))
        return -EPROTO; /* [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15] */
    if (level == MQTT_V311 && c.has_password && !c.has_username)
        return -EPROTO; /* [MQTT-3.1.2-22] */
    if (level == MQTT_V5) {
        int rc = rd_props(&r, IN(MQTT_CONNECT), &c.props);
        if (rc < 0)
            return rc;
    }
    if (rd_str(&r, &c.client_id) < 0)
        return -EPROTO;
    if (c.will) {
        if (level == MQTT_V5) {
            int rc = rd_props(&r, IN_WILL, &c.will_props);
            if (rc < 0)
                return rc;
        }
        if (rd_str(&r, &c.will_topic) < 0 || rd_bin(&r, &c.will_payload) < 0)
            return -EPROTO;
    }
    if (c.has_username && rd_str(&r, &c.username) < 0)
        return -EPROTO;
    if (c.has_password && rd_bin(&r, &c.password) < 0)
        return -EPROTO;
    if (r.left != 0)
        return -EPROTO;
    *out = c;
    return 0;
}

int mqtt_codec_decode_publish(uint8_t first, const uint8_t *body, size_t len, uint8_t version,
                              mqtt_publish_t *out)
{
    struct rd r = {body, len};
    mqtt_publish_t p;
    memset(&p, 0, sizeof(p));
    p.qos = (first >> 1) & 0x03;
    p.retain = (first & 0x01) != 0;
    p.dup = (first & 0x08) != 0;
    if (p.qos == 3)
        return -EPROTO; /* [MQTT-3.3.1-4] */
    if (p.qos == 0 && p.dup)
        return -EPROTO; /* [MQTT-3.3.1-2] */
    if (rd_str(&r, &p.topic) < 0)
        return -EPROTO;
    if (p.qos > 0) {
        if (rd_u16(&r, &p.packet_id) < 0)
            return -EPROTO;
        if (p.packet_id == 0)
            return -EPROTO; /* [MQTT-2.3.1-1] */
    }
    if (version == MQTT_V5) {
        int rc = rd_props(&r, IN(MQTT_PUBLISH), &p.props);
        if (rc < 0)
            return rc;
        if (mqtt_props_has(&p.props, MQTT_PROP_SUBSCRIPTION_ID))
            return -EBADMSG; /* [MQTT-3.3.4-6]: only the server sends these */
    }
    for (size_t i = 0; i < p.topic.len; i++) {
        if (p.topic.p[i] == '+' || p.topic.p[i] == '#')
            return -EBADMSG; /* [MQTT-3.3.2-2] */
    }
    p.payload = r.p;
    p.payload_len = (uint32_t)r.left;
    *out = p;
    return 0;
}

int mqtt_codec_decode_subscribe(uint8_t type, const uint8_t *body, size_t len, uint8_t version,
                                mqtt_subscribe_t *out)
{
    struct rd r = {body, len};
    mqtt_subscribe_t s;
    memset(&s, 0, sizeof(s));
    s.unsubscribe = type == MQTT_UNSUBSCRIBE;
    if (rd_u16(&r, &s.packet_id) < 0)
        return -EPROTO;
    if (s.packet_id == 0)
        return -EPROTO;
    if (version == MQTT_V5) {
        int rc = rd_props(&r, IN(type), &s.props);
        if (rc < 0)
            return rc;
    }
    s.entries = r.p;
    s.entries_len = r.left;
    while (r.left > 0) {
        mqtt_str_t f;
        if (rd_str(&r, &f) < 0)
            return -EPROTO;
        if (!s.unsubscribe) {
            uint8_t opt;
            if (rd_u8(&r, &opt) < 0)
                return -EPROTO;
            if (version == MQTT_V311 && (opt & 0xFC))
                return -EPROTO; /* [MQTT-3.8.3-4] */
            if (version == MQTT_V5 && (opt & 0xC0))
                return -EPROTO; /* [MQTT-3.8.3-5] reserved bits: malformed */
            if ((opt & 3) == 3 || (version == MQTT_V5 && ((opt >> 4) & 3) == 3))
                return version == MQTT_V5 ? -EBADMSG : -EPROTO; /* 5.0: protocol error */
        }
        s.count++;
    }
    if (s.count == 0)
        return -EPROTO; /* [MQTT-3.8.3-3], [MQTT-3.10.3-2] */
    *out = s;
    return 0;
}

int mqtt_codec_sub_next(const mqtt_subscribe_t *s, size_t *pos, mqtt_sub_entry_t *out)
{
    if (*pos >= s->entries_len)
        return 0;
    struct rd r = {s->entries + *pos, s->entries_len - *pos};
    mqtt_sub_entry_t e = {{0}, 0};
    if (rd_str(&r, &e.filter) < 0)
        return 0;
    if (!s->unsubscribe && rd_u8(&r, &e.options) < 0)
        return 0;
    *pos = (size_t)(r.p - s->entries);
    *out = e;
    return 1;
}

int mqtt_codec_decode_ack(const uint8_t *body, size_t len, uint8_t version, mqtt_ack_t *out)
{
    struct rd r = {body, len};
    mqtt_ack_t a = {0, 0};
    if (rd_u16(&r, &a.packet_id) < 0)
        return -EPROTO;
    if (a.packet_id == 0)
        return -EPROTO;
    if (version == MQTT_V5 && r.left > 0) {
        if (rd_u8(&r, &a.reason) < 0)
            return -EPROTO;
        if (r.left > 0) {
            mqtt_props_t props;
            int rc = rd_props(
                &r, IN(MQTT_PUBACK) | IN(MQTT_PUBREC) | IN(MQTT_PUBREL) | IN(MQTT_PUBCOMP), &props);
            if (rc < 0)
                return rc;
        }
    }
    if (r.left != 0)
        return -EPROTO;
    *out = a;
    return 0;
}

int mqtt_codec_decode_disconnect(const uint8_t *body, size_t len, uint8_t version,
                                 mqtt_disconnect_t *out)
{
    struct rd r = {body, len};
    mqtt_disconnect_t d;
    memset(&d, 0, sizeof(d));
    if (version == MQTT_V311) {
        if (len != 0)
            return -EPROTO;
        *out = d;
        return 0;
    }
    if (r.left > 0 && rd_u8(&r, &d.reason) < 0)
        return -EPROTO;
    if (r.left > 0) {
        int rc = rd_props(&r, IN(MQTT_DISCONNECT), &d.props);
        if (rc < 0)
            return rc;
    }
    if (r.left != 0)
        return -EPROTO;
    *out = d;
    return 0;
}

/* ---- Encoders ---------------------------------------------------------- */

size_t mqtt_codec_put_varint(uint8_t *out, uint32_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        if (v)
            b |= 0x80;
        out[n++] = b;
    } while (v && n < 4);
    return n;
}

static size_t varint_len(uint32_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

static void prop_put(mqtt_prop_buf_t *b, const uint8_t *d, size_t n)
{
    if (b->overflow || b->len + n > sizeof(b->data)) {
        b->overflow = true;
        return;
    }
    memcpy(b->data + b->len, d, n);
    b->len += n;
}

void mqtt_prop_u8(mqtt_prop_buf_t *b, uint8_t id, uint8_t v)
{
    uint8_t d[2] = {id, v};
    prop_put(b, d, 2);
}

void mqtt_prop_u16(mqtt_prop_buf_t *b, uint8_t id, uint16_t v)
{
    uint8_t d[3] = {id, (uint8_t)(v >> 8), (uint8_t)v};
    prop_put(b, d, 3);
}

void mqtt_prop_u32(mqtt_prop_buf_t *b, uint8_t id, uint32_t v)
{
    uint8_t d[5] = {id, (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    prop_put(b, d, 5);
}

void mqtt_prop_varint(mqtt_prop_buf_t *b, uint8_t id, uint32_t v)
{
    uint8_t d[5];
    d[0] = id;
    size_t n = mqtt_codec_put_varint(d + 1, v);
    prop_put(b, d, n + 1);
}

void mqtt_prop_str(mqtt_prop_buf_t *b, uint8_t id, const char *s, size_t len)
{
    if (len > 65535) {
        b->overflow = true;
        return;
    }
    uint8_t d[3] = {id, (uint8_t)(len >> 8), (uint8_t)len};
    prop_put(b, d, 3);
    prop_put(b, (const uint8_t *)s, len);
}

/* Writes the fixed header for a packet whose remaining length is rem. */
static int put_fixed(uint8_t *out, size_t cap, uint8_t first, uint32_t rem, size_t *pos)
{
    if (cap < 1 + varint_len(rem) + rem)
        return -E2BIG;
    out[0] = first;
    *pos = 1 + mqtt_codec_put_varint(out + 1, rem);
    return 0;
}

static void put_props(uint8_t *out, size_t *pos, const uint8_t *props, size_t len)
{
    *pos += mqtt_codec_put_varint(out + *pos, (uint32_t)len);
    if (len)
        memcpy(out + *pos, props, len);
    *pos += len;
}

int mqtt_codec_encode_connack(uint8_t *out, size_t cap, uint8_t version, bool session_present,
                              uint8_t reason, const mqtt_prop_buf_t *props)
{
    size_t plen = props ? props->len : 0;
    if (props && props->overflow)
        return -E2BIG;
    uint32_t rem = 2;
    if (version == MQTT_V5)
        rem += (uint32_t)(varint_len((uint32_t)plen) + plen);
    size_t pos;
    if (put_fixed(out, cap, MQTT_CONNACK << 4, rem, &pos) < 0)
        return -E2BIG;
    out[pos++] = session_present ? 1 : 0;
    out[pos++] = reason;
    if (version == MQTT_V5)
        put_props(out, &pos, props ? props->data : NULL, plen);
    return (int)pos;
}

int mqtt_codec_encode_ack(uint8_t *out, size_t cap, uint8_t type, uint8_t version,
                          uint16_t packet_id, uint8_t reason)
{
    /* v5 may omit the reason code when it is 0 ([MQTT-3.4.2.1]). */
    bool with_reason = version == MQTT_V5 && reason != 0;
    uint32_t rem = with_reason ? 3 : 2;
    size_t pos;
    uint8_t first = (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 0x02 : 0));
    if (put_fixed(out, cap, first, rem, &pos) < 0)
        return -E2BIG;
    out[pos++] = (uint8_t)(packet_id >> 8);
    out[pos++] = (uint8_t)packet_id;
    if (with_reason)
        out[pos++] = reason;
    return (int)pos;
}

int mqtt_codec_encode_suback(uint8_t *out, size_t cap, uint8_t type, uint8_t version,
                             uint16_t packet_id, const uint8_t *codes, size_t n)
{
    /* 3.1.1 UNSUBACK carries no payload. */
    bool payload = !(type == MQTT_UNSUBACK && version == MQTT_V311);
    uint32_t rem = 2 + (version == MQTT_V5 ? 1 : 0) + (payload ? (uint32_t)n : 0);
    size_t pos;
    if (put_fixed(out, cap, (uint8_t)(type << 4), rem, &pos) < 0)
        return -E2BIG;
    out[pos++] = (uint8_t)(packet_id >> 8);
    out[pos++] = (uint8_t)packet_id;
    if (version == MQTT_V5)
        out[pos++] = 0; /* no properties */
    if (payload) {
        memcpy(out + pos, codes, n);
        pos += n;
    }
    return (int)pos;
}

int mqtt_codec_encode_disconnect(uint8_t *out, size_t cap, uint8_t version, uint8_t reason)
{
    size_t pos;
    uint32_t rem = version == MQTT_V5 ? 1 : 0;
    if (put_fixed(out, cap, MQTT_DISCONNECT << 4, rem, &pos) < 0)
        return -E2BIG;
    if (version == MQTT_V5)
        out[pos++] = reason;
    return (int)pos;
}

int mqtt_codec_encode_pingresp(uint8_t *out, size_t cap)
{
    if (cap < 2)
        return -E2BIG;
    out[0] = MQTT_PINGRESP << 4;
    out[1] = 0;
    return 2;
}

int mqtt_codec_encode_publish_header(uint8_t *out, size_t cap, uint8_t version, uint8_t qos,
                                     bool retain, bool dup, const char *topic, uint16_t topic_len,
                                     uint16_t packet_id, const uint8_t *props, size_t props_len,
                                     size_t payload_len)
{
    size_t vh = 2 + (size_t)topic_len + (qos ? 2 : 0);
    if (version == MQTT_V5)
        vh += varint_len((uint32_t)props_len) + props_len;
    size_t rem = vh + payload_len;
    if (rem > 268435455)
        return -E2BIG;
    size_t hdr = 1 + varint_len((uint32_t)rem);
    if (cap < hdr + vh)
        return -E2BIG;
    uint8_t first = (uint8_t)(MQTT_PUBLISH << 4 | (dup ? 0x08 : 0) | qos << 1 | (retain ? 1 : 0));
    out[0] = first;
    size_t pos = 1 + mqtt_codec_put_varint(out + 1, (uint32_t)rem);
    out[pos++] = (uint8_t)(topic_len >> 8);
    out[pos++] = (uint8_t)topic_len;
    memcpy(out + pos, topic, topic_len);
    pos += topic_len;
    if (qos) {
        out[pos++] = (uint8_t)(packet_id >> 8);
        out[pos++] = (uint8_t)packet_id;
    }
    if (version == MQTT_V5)
        put_props(out, &pos, props, props_len);
    return (int)pos;
}

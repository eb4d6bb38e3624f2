/*
 * MQTT 3.1.1 / 5.0 client codec for drover-sim (see mqtt_client.h).
 *
 * Encoders compute the remaining length first, check it against cap, then
 * write front to back; nothing is written past cap. Decoders walk the
 * body with a cursor (p, end) and fail with -EPROTO on the first field
 * that does not fit.
 */
#include "sim/mqtt_client.h"

#include <errno.h>
#include <string.h>

static size_t varint_size(size_t v)
{
    size_t n = 1;
    while (v >= 128) {
        v /= 128;
        n++;
    }
    return n;
}

static size_t put_varint(uint8_t *p, size_t v)
{
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v % 128);
        v /= 128;
        if (v > 0)
            b |= 0x80;
        p[n++] = b;
    } while (v > 0);
    return n;
}

static size_t put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

static size_t put_str(uint8_t *p, const char *s, size_t len)
{
    put_u16(p, (uint16_t)len);
    if (len)
        memcpy(p + 2, s, len);
    return len + 2;
}

/* Room for a packet of remaining length rem: -EINVAL beyond what MQTT can
 * carry, -ENOSPC beyond cap. */
static int check_room(size_t rem, size_t cap)
{
    if (rem > SIM_MQTT_REMAINING_MAX)
        return -EINVAL;
    if (1 + varint_size(rem) + rem > cap)
        return -ENOSPC;
    return 0;
}

int sim_mqtt_encode_connect(uint8_t *out, size_t cap, const sim_mqtt_connect_t *c, size_t *len)
{
    if (c->version != 4 && c->version != 5)
        return -EINVAL;
    size_t idl = strlen(c->client_id);
    size_t ul = c->username ? strlen(c->username) : 0;
    size_t pl = c->password ? strlen(c->password) : 0;
    if (idl > 65535 || ul > 65535 || pl > 65535)
        return -EINVAL;
    size_t props = 0;
    if (c->version == 5 && c->session_expiry)
        props = 5; /* 0x11 + four bytes */
    size_t rem = 10 + (c->version == 5 ? varint_size(props) + props : 0) + 2 + idl +
                 (c->username ? 2 + ul : 0) + (c->password ? 2 + pl : 0);
    int rc = check_room(rem, cap);
    if (rc < 0)
        return rc;
    size_t n = 0;
    out[n++] = SIM_MQTT_CONNECT << 4;
    n += put_varint(out + n, rem);
    n += put_str(out + n, "MQTT", 4);
    out[n++] = (uint8_t)c->version;
    out[n++] =
        (uint8_t)((c->clean ? 0x02 : 0) | (c->username ? 0x80 : 0) | (c->password ? 0x40 : 0));
    n += put_u16(out + n, c->keepalive);
    if (c->version == 5) {
        n += put_varint(out + n, props);
        if (props) {
            out[n++] = 0x11;
            out[n++] = (uint8_t)(c->session_expiry >> 24);
            out[n++] = (uint8_t)(c->session_expiry >> 16);
            out[n++] = (uint8_t)(c->session_expiry >> 8);
            out[n++] = (uint8_t)c->session_expiry;
        }
    }
    n += put_str(out + n, c->client_id, idl);
    if (c->username)
        n += put_str(out + n, c->username, ul);
    if (c->password)
        n += put_str(out + n, c->password, pl);
    *len = n;
    return 0;
}

int sim_mqtt_encode_publish_head(uint8_t *out, size_t cap, int version, const char *topic,
                                 size_t topic_len, int qos, bool dup, uint16_t pid,
                                 size_t payload_len, size_t *len)
{
    if (qos < 0 || qos > 2 || topic_len > 65535 || (qos > 0 && pid == 0))
        return -EINVAL;
    size_t rem = 2 + topic_len + (qos ? 2 : 0) + (version == 5 ? 1 : 0) + payload_len;
    if (rem > SIM_MQTT_REMAINING_MAX)
        return -EINVAL;
    size_t head = 1 + varint_size(rem) + rem - payload_len;
    if (head > cap)
        return -ENOSPC;
    size_t n = 0;
    out[n++] = (uint8_t)(SIM_MQTT_PUBLISH << 4 | (dup ? 0x08 : 0) | qos << 1);
    n += put_varint(out + n, rem);
    n += put_str(out + n, topic, topic_len);
    if (qos)
        n += put_u16(out + n, pid);
    if (version == 5)
        out[n++] = 0; /* no properties */
    *len = n;
    return 0;
}

int sim_mqtt_encode_publish(uint8_t *out, size_t cap, int version, const char *topic,
                            size_t topic_len, int qos, uint16_t pid, const void *payload,
                            size_t payload_len, size_t *len)
{
    size_t head;
    int rc = sim_mqtt_encode_publish_head(out, cap, version, topic, topic_len, qos, false, pid,
                                          payload_len, &head);
    if (rc < 0)
        return rc;
    if (payload_len > cap - head)
        return -ENOSPC;
    if (payload_len)
        memcpy(out + head, payload, payload_len);
    *len = head + payload_len;
    return 0;
}

int sim_mqtt_encode_subscribe(uint8_t *out, size_t cap, int version, uint16_t pid,
                              const char *const *filters, const uint8_t *qos, size_t n, size_t *len)
{
    if (n == 0 || pid == 0)
        return -EINVAL;
    size_t rem = 2 + (version == 5 ? 1 : 0);
    for (size_t i = 0; i < n; i++) {
        size_t fl = strlen(filters[i]);
        if (fl > 65535 || qos[i] > 2)
            return -EINVAL;
        rem += 2 + fl + 1;
    }
    int rc = check_room(rem, cap);
    if (rc < 0)
        return rc;
    size_t k = 0;
    out[k++] = SIM_MQTT_SUBSCRIBE << 4 | 0x02; /* reserved bits 0010 */
    k += put_varint(out + k, rem);
    k += put_u16(out + k, pid);
    if (version == 5)
        out[k++] = 0;
    for (size_t i = 0; i < n; i++) {
        k += put_str(out + k, filters[i], strlen(filters[i]));
        out[k++] = qos[i];
    }
    *len = k;
    return 0;
}

int sim_mqtt_encode_ack(uint8_t *out, size_t cap, uint8_t type, uint16_t pid, size_t *len)
{
    if (type < SIM_MQTT_PUBACK || type > SIM_MQTT_PUBCOMP || pid == 0)
        return -EINVAL;
    if (cap < 4)
        return -ENOSPC;
    out[0] = (uint8_t)(type << 4 | (type == SIM_MQTT_PUBREL ? 0x02 : 0));
    out[1] = 2;
    put_u16(out + 2, pid);
    *len = 4;
    return 0;
}

int sim_mqtt_encode_puback(uint8_t *out, size_t cap, uint16_t pid, size_t *len)
{
    return sim_mqtt_encode_ack(out, cap, SIM_MQTT_PUBACK, pid, len);
}

static int encode_empty(uint8_t *out, size_t cap, uint8_t type, size_t *len)
{
    if (cap < 2)
        return -ENOSPC;
    out[0] = (uint8_t)(type << 4);
    out[1] = 0;
    *len = 2;
    return 0;
}

int sim_mqtt_encode_pingreq(uint8_t *out, size_t cap, size_t *len)
{
    return encode_empty(out, cap, SIM_MQTT_PINGREQ, len);
}

int sim_mqtt_encode_disconnect(uint8_t *out, size_t cap, size_t *len)
{
    return encode_empty(out, cap, SIM_MQTT_DISCONNECT, len);
}

bool sim_mqtt_flags_ok(uint8_t type, uint8_t flags)
{
    if (type == SIM_MQTT_PUBLISH)
        return true;
    return flags == (type == SIM_MQTT_PUBREL ? 0x02 : 0x00);
}

int sim_mqtt_parse_header(const uint8_t *buf, size_t len, uint8_t *type, uint8_t *flags,
                          uint32_t *remaining, size_t *header_len)
{
    if (len < 2)
        return -EAGAIN;
    uint32_t v = 0, mul = 1;
    for (size_t i = 1; i <= 4; i++) {
        if (i >= len)
            return -EAGAIN;
        v += (uint32_t)(buf[i] & 0x7f) * mul;
        if (!(buf[i] & 0x80)) {
            *type = buf[0] >> 4;
            *flags = buf[0] & 0x0f;
            *remaining = v;
            *header_len = i + 1;
            return 0;
        }
        mul *= 128;
    }
    return -EPROTO;
}

/* ---- decoding ------------------------------------------------------------ */

typedef struct {
    const uint8_t *p, *end;
} cursor_t;

static int get_u8(cursor_t *c, uint8_t *v)
{
    if (c->p >= c->end)
        return -EPROTO;
    *v = *c->p++;
    return 0;
}

static int get_u16(cursor_t *c, uint16_t *v)
{
    if (c->end - c->p < 2)
        return -EPROTO;
    *v = (uint16_t)(c->p[0] << 8 | c->p[1]);
    c->p += 2;
    return 0;
}

static int get_varint(cursor_t *c, uint32_t *v)
{
    uint32_t r = 0, mul = 1;
    for (int i = 0; i < 4; i++) {
        uint8_t b;
        if (get_u8(c, &b) < 0)
            return -EPROTO;
        r += (uint32_t)(b & 0x7f) * mul;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
        mul *= 128;
    }
    return -EPROTO;
}

/* Skips an MQTT 5 property block, checking only that it fits. */
static int skip_props(cursor_t *c)
{
    uint32_t n;
    if (get_varint(c, &n) < 0 || (size_t)(c->end - c->p) < n)
        return -EPROTO;
    c->p += n;
    return 0;
}

int sim_mqtt_decode_connack(const uint8_t *body, size_t len, int version, sim_mqtt_connack_t *out)
{
    cursor_t c = {body, body + len};
    uint8_t flags, code;
    if (get_u8(&c, &flags) < 0 || get_u8(&c, &code) < 0 || (flags & 0xfe))
        return -EPROTO;
    /* A server that does not speak 5 answers a 5 CONNECT with the 3.1.1
     * two-byte form (code 1, unacceptable protocol); accept that. */
    if (version == 5 && c.p < c.end && skip_props(&c) < 0)
        return -EPROTO;
    if (c.p != c.end)
        return -EPROTO;
    out->session_present = flags & 1;
    out->code = code;
    return 0;
}

int sim_mqtt_decode_ack(const uint8_t *body, size_t len, int version, sim_mqtt_ack_t *out)
{
    cursor_t c = {body, body + len};
    uint16_t pid;
    uint8_t reason = 0;
    if (get_u16(&c, &pid) < 0 || pid == 0)
        return -EPROTO;
    if (version == 5) {
        if (c.p < c.end && get_u8(&c, &reason) < 0)
            return -EPROTO;
        if (c.p < c.end && skip_props(&c) < 0)
            return -EPROTO;
    }
    if (c.p != c.end)
        return -EPROTO;
    out->pid = pid;
    out->reason = reason;
    return 0;
}

int sim_mqtt_decode_suback(const uint8_t *body, size_t len, int version, uint16_t *pid,
                           uint8_t *codes, size_t max, size_t *n)
{
    cursor_t c = {body, body + len};
    uint16_t id;
    if (get_u16(&c, &id) < 0 || id == 0)
        return -EPROTO;
    if (version == 5 && skip_props(&c) < 0)
        return -EPROTO;
    size_t k = (size_t)(c.end - c.p);
    if (k == 0 || k > max)
        return -EPROTO;
    memcpy(codes, c.p, k);
    *pid = id;
    *n = k;
    return 0;
}

int sim_mqtt_decode_publish(uint8_t flags, const uint8_t *body, size_t len, int version,
                            sim_mqtt_publish_t *out)
{
    cursor_t c = {body, body + len};
    int qos = (flags >> 1) & 3;
    if (qos == 3)
        return -EPROTO;
    uint16_t tl;
    if (get_u16(&c, &tl) < 0 || (size_t)(c.end - c.p) < tl || tl == 0)
        return -EPROTO;
    const char *topic = (const char *)c.p;
    c.p += tl;
    uint16_t pid = 0;
    if (qos > 0 && (get_u16(&c, &pid) < 0 || pid == 0))
        return -EPROTO;
    if (version == 5 && skip_props(&c) < 0)
        return -EPROTO;
    out->topic = topic;
    out->topic_len = tl;
    out->qos = qos;
    out->dup = flags & 0x08;
    out->retain = flags & 0x01;
    out->pid = pid;
    out->payload = c.p;
    out->payload_len = (size_t)(c.end - c.p);
    return 0;
}

int sim_mqtt_decode_disconnect(const uint8_t *body, size_t len, int version, uint8_t *reason)
{
    cursor_t c = {body, body + len};
    uint8_t r = 0;
    if (version != 5) {
        if (len != 0)
            return -EPROTO;
        *reason = 0;
        return 0;
    }
    if (c.p < c.end && get_u8(&c, &r) < 0)
        return -EPROTO;
    if (c.p < c.end && skip_props(&c) < 0)
        return -EPROTO;
    if (c.p != c.end)
        return -EPROTO;
    *reason = r;
    return 0;
}

const char *sim_mqtt_connack_str(int version, uint8_t code)
{
    if (version != 5 || code < 0x80) {
        switch (code) {
        case 0:
            return "accepted";
        case 1:
            return "unacceptable protocol version";
        case 2:
            return "identifier rejected";
        case 3:
            return "server unavailable";
        case 4:
            return "bad user name or password";
        case 5:
            return "not authorized";
        default:
            return "unknown";
        }
    }
    switch (code) {
    case 0x80:
        return "unspecified error";
    case 0x81:
        return "malformed packet";
    case 0x82:
        return "protocol error";
    case 0x84:
        return "unsupported protocol version";
    case 0x85:
        return "client identifier not valid";
    case 0x86:
        return "bad user name or password";
    case 0x87:
        return "not authorized";
    case 0x88:
        return "server unavailable";
    case 0x89:
        return "server busy";
    case 0x8A:
        return "banned";
    case 0x8C:
        return "bad authentication method";
    case 0x95:
        return "packet too large";
    case 0x97:
        return "quota exceeded";
    case 0x9F:
        return "connection rate exceeded";
    default:
        return "unknown";
    }
}

bool sim_mqtt_connack_retryable(int version, uint8_t code)
{
    if (version != 5 || code < 0x80)
        return code == 3;
    return code == 0x80 || code == 0x88 || code == 0x89 || code == 0x97 || code == 0x9F;
}

/*
 * CONNECT: decode, authenticate through the hook, take over or resume the
 * session, answer CONNACK. Everything a CONNECT can be refused for gets a
 * CONNACK with the reason (3.1.1: the nearest return code) before close.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/log.h"
#include "common/util.h"
#include "mqtt/broker_internal.h"

static uint8_t v311_code(uint8_t reason)
{
    switch (reason) {
    case MQTT_RC_UNSUPPORTED_VERSION:
        return MQTT311_CONNACK_BAD_PROTOCOL;
    case MQTT_RC_CLIENT_ID_INVALID:
        return MQTT311_CONNACK_ID_REJECTED;
    case MQTT_RC_BAD_USER_OR_PASSWORD:
        return MQTT311_CONNACK_BAD_CREDENTIALS;
    case MQTT_RC_SERVER_UNAVAILABLE:
    case MQTT_RC_SERVER_BUSY:
    case MQTT_RC_SERVER_SHUTTING_DOWN:
        return MQTT311_CONNACK_UNAVAILABLE;
    default:
        return MQTT311_CONNACK_NOT_AUTHORIZED;
    }
}

/* Sends a refusing CONNACK and returns the code that closes the conn (the
 * CONNACK is all the client gets: no DISCONNECT follows before CONNECT
 * was accepted). */
static int refuse(conn_t *c, uint8_t version, uint8_t reason)
{
    uint8_t pkt[16];
    int n;
    if (version == MQTT_V5)
        n = mqtt_codec_encode_connack(pkt, sizeof(pkt), MQTT_V5, false, reason, NULL);
    else
        n = mqtt_codec_encode_connack(pkt, sizeof(pkt), MQTT_V311, false, v311_code(reason), NULL);
    if (n > 0)
        conn_send(c, pkt, (size_t)n);
    c->broker->stats.connect_refused++;
    return reason;
}

/* Copies a validated v5 property block without the per-hop properties
 * (will delay, topic alias, subscription id, message expiry); the Message
 * Expiry Interval, if any, goes to *expiry (else stays as it was). */
static size_t strip_props(const uint8_t *raw, size_t len, uint8_t *out, uint32_t *expiry)
{
    size_t i = 0, o = 0;
    while (i < len) {
        uint8_t id = raw[i];
        size_t start = i++;
        size_t vl;
        switch (id) {
        case MQTT_PROP_PAYLOAD_FORMAT:
        case MQTT_PROP_REQUEST_PROBLEM_INFO:
        case MQTT_PROP_REQUEST_RESPONSE_INFO:
        case MQTT_PROP_MAXIMUM_QOS:
        case MQTT_PROP_RETAIN_AVAILABLE:
        case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
        case MQTT_PROP_SUB_ID_AVAILABLE:
        case MQTT_PROP_SHARED_SUB_AVAILABLE:
            vl = 1;
            break;
        case MQTT_PROP_SERVER_KEEPALIVE:
        case MQTT_PROP_RECEIVE_MAXIMUM:
        case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
        case MQTT_PROP_TOPIC_ALIAS:
            vl = 2;
            break;
        case MQTT_PROP_MESSAGE_EXPIRY:
        case MQTT_PROP_SESSION_EXPIRY:
        case MQTT_PROP_WILL_DELAY:
        case MQTT_PROP_MAXIMUM_PACKET_SIZE:
            vl = 4;
            break;
        case MQTT_PROP_SUBSCRIPTION_ID:
            vl = 0;
            while (i + vl < len && (raw[i + vl] & 0x80))
                vl++;
            vl++;
            break;
        case MQTT_PROP_USER_PROPERTY: {
            size_t k1 = (size_t)(raw[i] << 8 | raw[i + 1]);
            size_t k2 = (size_t)(raw[i + 2 + k1] << 8 | raw[i + 3 + k1]);
            vl = 4 + k1 + k2;
            break;
        }
        default: /* strings and binary data */
            vl = 2 + (size_t)(raw[i] << 8 | raw[i + 1]);
            break;
        }
        i += vl;
        if (id == MQTT_PROP_MESSAGE_EXPIRY) {
            const uint8_t *v = raw + start + 1;
            *expiry = (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 | v[3];
            continue;
        }
        if (id == MQTT_PROP_WILL_DELAY || id == MQTT_PROP_TOPIC_ALIAS ||
            id == MQTT_PROP_SUBSCRIPTION_ID)
            continue;
        memcpy(out + o, raw + start, i - start);
        o += i - start;
    }
    return o;
}

msg_t *msg_from_props(const char *topic, size_t tlen, const mqtt_bin_t *props,
                      const uint8_t *payload, size_t plen, uint8_t qos, bool retain)
{
    uint8_t *tmp = NULL;
    size_t n = 0;
    uint32_t expiry = UINT32_MAX;
    if (props != NULL && props->len > 0) {
        tmp = malloc(props->len);
        if (tmp == NULL)
            return NULL;
        n = strip_props(props->p, props->len, tmp, &expiry);
    }
    msg_t *m = msg_new(topic, tlen, tmp, n, payload, plen, qos, retain);
    free(tmp);
    if (m != NULL && expiry != UINT32_MAX)
        m->expire_at = util_now_ms() + (int64_t)expiry * 1000;
    return m;
}

/* One client id taking its own session over again and again (two clients
 * fighting over an id, or an attack) is refused for a minute once it has
 * done so takeover_limit times in a minute. */
/* Whether id is refused now: it took its own session over more than
 * takeover_limit times within the current minute. A takeover counts
 * (taking_over) before the verdict; the ban then holds for the rest of the
 * minute whether or not the id is connected. */
static bool takeover_banned(mqtt_broker_t *b, const char *id, size_t len, bool taking_over)
{
    uint32_t limit = b->cfg->takeover_limit;
    if (limit == 0)
        return false;
    int64_t now = util_now_ms();
    struct takeover *t = strmap_get(&b->takeovers, id, len);
    if (t != NULL && now - t->window_start > 60000) {
        t->window_start = now;
        t->count = 0;
    }
    if (!taking_over)
        return t != NULL && t->count > limit;
    if (t == NULL) {
        t = calloc(1, sizeof(*t) + len + 1);
        if (t == NULL)
            return false;
        t->id = (char *)(t + 1);
        memcpy(t->id, id, len);
        if (strmap_put(&b->takeovers, t->id, len, t) < 0) {
            free(t);
            return false;
        }
        t->window_start = now;
    }
    return ++t->count > limit;
}

int handle_connect(conn_t *c, const uint8_t *body, size_t len)
{
    mqtt_broker_t *b = c->broker;
    const config_t *cfg = b->cfg;
    mqtt_connect_t ck;
    int rc = mqtt_codec_decode_connect(body, len, &ck);
    if (rc == -ENOTSUP)
        return refuse(c, MQTT_V311, MQTT_RC_UNSUPPORTED_VERSION); /* [MQTT-3.1.2-2] */
    if (rc < 0) {
        log_debug("mqtt %s: malformed CONNECT", c->peer);
        /* A v5 client hears why; 3.1.1 has no code for it ([MQTT-3.1.4-1]). */
        if (len > 6 && body[6] == MQTT_V5)
            return refuse(c, MQTT_V5, mqtt_reason_from_errno(rc));
        b->stats.connect_refused++;
        return mqtt_reason_from_errno(rc);
    }
    c->version = ck.version;

    if (ck.version == MQTT_V5 && mqtt_props_has(&ck.props, MQTT_PROP_AUTH_METHOD))
        return refuse(c, MQTT_V5, MQTT_RC_BAD_AUTH_METHOD); /* no enhanced auth */

    /* Client identifier: an empty one gets a server-assigned id, for 3.1.1
     * only with a clean session ([MQTT-3.1.3-7], [MQTT-3.1.3-8]). */
    char assigned[40];
    const char *cid = ck.client_id.p;
    size_t cid_len = ck.client_id.len;
    bool was_assigned = false;
    if (cid_len == 0) {
        if (ck.version == MQTT_V311 && !ck.clean_start)
            return refuse(c, MQTT_V311, MQTT_RC_CLIENT_ID_INVALID);
        uint8_t rnd[12];
        if (crypto_random(rnd, sizeof(rnd)) < 0)
            return refuse(c, ck.version, MQTT_RC_SERVER_UNAVAILABLE);
        memcpy(assigned, "auto-", 5);
        util_hex_encode(rnd, sizeof(rnd), assigned + 5);
        cid = assigned;
        cid_len = strlen(assigned);
        was_assigned = true;
    }

    if (ck.will && !topic_name_valid(ck.will_topic.p, ck.will_topic.len, cfg->max_topic_len,
                                     cfg->max_topic_depth))
        return refuse(c, ck.version, MQTT_RC_TOPIC_NAME_INVALID);

    mqtt_auth_t a = {
        .version = ck.version,
        .client_id = cid,
        .client_id_len = cid_len,
        .has_username = ck.has_username,
        .has_password = ck.has_password,
        .username = ck.username.p,
        .username_len = ck.username.len,
        .password = ck.password.p,
        .password_len = ck.password.len,
        .peer = c->peer,
        .tls = c->ssl,
    };
    mqtt_grant_t grant;
    memset(&grant, 0, sizeof(grant));
    uint8_t reason = b->hooks->authenticate(b->hooks_ctx, &a, &grant);
    if (reason != 0)
        return refuse(c, ck.version, reason);
    c->user = grant.user;
    c->authed = true;
    if (grant.acl_prefix[0] != '\0') {
        c->acl_prefix = strdup(grant.acl_prefix);
        if (c->acl_prefix == NULL)
            return refuse(c, ck.version, MQTT_RC_SERVER_UNAVAILABLE);
        c->acl_prefix_len = strlen(grant.acl_prefix);
    }
    if (grant.deny_prefix[0] != '\0') {
        c->deny_prefix = strdup(grant.deny_prefix);
        if (c->deny_prefix == NULL)
            return refuse(c, ck.version, MQTT_RC_SERVER_UNAVAILABLE);
        c->deny_prefix_len = strlen(grant.deny_prefix);
    }
    if (ck.will && !conn_acl_ok(c, ck.will_topic.p, ck.will_topic.len)) {
        b->stats.acl_denied++;
        log_warn("mqtt %s: will topic outside the client's namespace refused", c->peer);
        return refuse(c, ck.version, MQTT_RC_NOT_AUTHORIZED);
    }

    if (ck.will) {
        c->will = msg_from_props(
            ck.will_topic.p, ck.will_topic.len, ck.version == MQTT_V5 ? &ck.will_props.raw : NULL,
            ck.will_payload.p, ck.will_payload.len, ck.will_qos, ck.will_retain);
        if (c->will == NULL)
            return refuse(c, ck.version, MQTT_RC_SERVER_UNAVAILABLE);
        c->will_delay = ck.will_props.will_delay;
    }

    if (ck.version == MQTT_V5) {
        c->client_receive_max =
            mqtt_props_has(&ck.props, MQTT_PROP_RECEIVE_MAXIMUM) ? ck.props.receive_max : 65535;
        c->client_max_packet = ck.props.max_packet_size;
        c->client_alias_max = ck.props.topic_alias_max;
        c->broker_alias_max = cfg->topic_alias_max;
        if (mqtt_props_has(&ck.props, MQTT_PROP_REQUEST_PROBLEM_INFO))
            c->problem_info = ck.props.request_problem_info != 0;
    }

    /* Session: take over a live one ([MQTT-3.1.4-2]), resume or start. */
    session_t *s = session_find(b, cid, cid_len);
    if (takeover_banned(b, cid, cid_len, s != NULL && s->conn != NULL)) {
        log_warn("mqtt %s: client '%.*s' refused: more than %u takeovers in a minute", c->peer,
                 (int)cid_len, cid, cfg->takeover_limit);
        return refuse(c, ck.version, MQTT_RC_SERVER_BUSY);
    }
    if (s != NULL && s->conn != NULL) {
        conn_t *old = s->conn;
        log_info("mqtt %s: client '%.*s' taken over from %s", c->peer, (int)cid_len, cid,
                 old->peer);
        conn_close(old, MQTT_RC_SESSION_TAKEN_OVER);
        s = session_find(b, cid, cid_len); /* closing may have discarded it */
    }
    bool present = false;
    if (s != NULL && ck.clean_start) {
        session_discard(s);
        s = NULL;
    }
    if (s != NULL) {
        present = true;
        /* Back before its Will Delay ran out: the will is not sent. */
        if (s->will != NULL) {
            msg_unref(s->will);
            s->will = NULL;
            if (s->will_timer)
                evtimer_del(s->will_timer);
        }
    } else {
        s = session_new(b, cid, cid_len);
        if (s == NULL)
            return refuse(c, ck.version, MQTT_RC_SERVER_UNAVAILABLE);
    }
    if (ck.version == MQTT_V5) {
        uint32_t e = ck.props.session_expiry;
        s->expiry_s = e > cfg->session_expiry_max ? cfg->session_expiry_max : e;
        s->persistent = s->expiry_s > 0;
    } else {
        s->persistent = !ck.clean_start;
        s->expiry_s = cfg->session_expiry_max;
    }
    free(s->deny_prefix);
    free(s->allow_prefix);
    s->deny_prefix = c->deny_prefix ? strdup(c->deny_prefix) : NULL;
    s->allow_prefix = c->acl_prefix ? strdup(c->acl_prefix) : NULL;
    if ((c->deny_prefix != NULL && s->deny_prefix == NULL) ||
        (c->acl_prefix != NULL && s->allow_prefix == NULL)) {
        session_discard(s);
        return refuse(c, ck.version, MQTT_RC_SERVER_UNAVAILABLE);
    }
    s->conn = c;
    c->session = s;

    c->keepalive = ck.keepalive;
    bool server_keepalive = false;
    if (ck.version == MQTT_V5 && cfg->max_keepalive &&
        (ck.keepalive == 0 || ck.keepalive > cfg->max_keepalive)) {
        c->keepalive = (uint16_t)cfg->max_keepalive;
        server_keepalive = true;
    }

    uint8_t pkt[600];
    int n;
    if (ck.version == MQTT_V5) {
        mqtt_prop_buf_t props;
        memset(&props, 0, sizeof(props));
        if (was_assigned)
            mqtt_prop_str(&props, MQTT_PROP_ASSIGNED_CLIENT_ID, cid, cid_len);
        if (server_keepalive)
            mqtt_prop_u16(&props, MQTT_PROP_SERVER_KEEPALIVE, c->keepalive);
        if (s->expiry_s != ck.props.session_expiry)
            mqtt_prop_u32(&props, MQTT_PROP_SESSION_EXPIRY, s->expiry_s);
        mqtt_prop_u16(&props, MQTT_PROP_RECEIVE_MAXIMUM, (uint16_t)cfg->receive_maximum);
        mqtt_prop_u32(&props, MQTT_PROP_MAXIMUM_PACKET_SIZE, cfg->max_packet_size);
        if (cfg->topic_alias_max > 0)
            mqtt_prop_u16(&props, MQTT_PROP_TOPIC_ALIAS_MAXIMUM, (uint16_t)cfg->topic_alias_max);
        n = mqtt_codec_encode_connack(pkt, sizeof(pkt), MQTT_V5, present, 0, &props);
    } else {
        n = mqtt_codec_encode_connack(pkt, sizeof(pkt), MQTT_V311, present, 0, NULL);
    }
    if (n < 0)
        return MQTT_RC_UNSPECIFIED;
    conn_send(c, pkt, (size_t)n);
    c->state = CONN_ACTIVE;
    if (b->hooks->connected)
        b->hooks->connected(b->hooks_ctx, c->user);
    log_debug("mqtt %s: '%.*s' connected (v%s, keepalive %u, %s session)", c->peer, (int)cid_len,
              cid, ck.version == MQTT_V5 ? "5.0" : "3.1.1", c->keepalive,
              present ? "resumed" : "new");
    if (present)
        session_resume(s);
    return 0;
}

int handle_disconnect(conn_t *c, const uint8_t *body, size_t len)
{
    mqtt_disconnect_t d;
    int rc = mqtt_codec_decode_disconnect(body, len, c->version, &d);
    if (rc < 0)
        return mqtt_reason_from_errno(rc);
    session_t *s = c->session;
    if (c->version == MQTT_V5 && mqtt_props_has(&d.props, MQTT_PROP_SESSION_EXPIRY) && s) {
        /* [MQTT-3.14.2-2]: 0 at CONNECT cannot become non-zero here. */
        if (s->expiry_s == 0 && d.props.session_expiry != 0)
            return MQTT_RC_PROTOCOL_ERROR;
        uint32_t e = d.props.session_expiry;
        s->expiry_s =
            e > c->broker->cfg->session_expiry_max ? c->broker->cfg->session_expiry_max : e;
        s->persistent = s->expiry_s > 0;
    }
    /* 0x04 "disconnect with will message" keeps the will ([MQTT-3.14.4-3]). */
    c->clean_disconnect = !(c->version == MQTT_V5 && d.reason == 0x04);
    conn_close(c, 0);
    return 0;
}

/*
 * PUBLISH in, and the acknowledgements of both directions (PUBACK,
 * PUBREC, PUBREL, PUBCOMP).
 *
 * Inbound QoS 1 and 2 messages get a ticket in the connection's ack FIFO
 * before the publish hook runs, so that a message the hook stores
 * asynchronously is acknowledged only once durable, and always in arrival
 * order. QoS 2 packet ids are remembered in the session until PUBREL, so
 * a retransmitted PUBLISH (DUP) is acknowledged but not delivered twice.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mqtt/broker_internal.h"

static bool qos2_seen(const session_t *s, uint16_t id)
{
    for (uint32_t i = 0; i < s->nqos2; i++) {
        if (s->qos2_ids[i] == id)
            return true;
    }
    return false;
}

static int qos2_add(session_t *s, uint16_t id, uint32_t cap)
{
    if (s->nqos2 >= cap)
        return -ENOSPC;
    if (s->qos2_ids == NULL) {
        s->qos2_ids = malloc(cap * sizeof(*s->qos2_ids));
        if (s->qos2_ids == NULL)
            return -ENOMEM;
    }
    s->qos2_ids[s->nqos2++] = id;
    return 0;
}

static bool qos2_remove(session_t *s, uint16_t id)
{
    for (uint32_t i = 0; i < s->nqos2; i++) {
        if (s->qos2_ids[i] == id) {
            s->qos2_ids[i] = s->qos2_ids[--s->nqos2];
            return true;
        }
    }
    return false;
}

/* Topic Alias from the client ([MQTT-3.3.2-7..12]): a topic with an alias
 * sets it, an empty topic uses it. */
static int apply_alias(conn_t *c, mqtt_publish_t *p)
{
    uint16_t a = p->props.topic_alias;
    if (a == 0 || a > c->broker_alias_max)
        return MQTT_RC_TOPIC_ALIAS_INVALID;
    if (c->aliases_in == NULL) {
        c->aliases_in = calloc(c->broker_alias_max + 1, sizeof(*c->aliases_in));
        if (c->aliases_in == NULL)
            return MQTT_RC_UNSPECIFIED;
    }
    if (p->topic.len > 0) {
        char *t = malloc(p->topic.len + 1);
        if (t == NULL)
            return MQTT_RC_UNSPECIFIED;
        memcpy(t, p->topic.p, p->topic.len);
        t[p->topic.len] = '\0';
        free(c->aliases_in[a]);
        c->aliases_in[a] = t;
        return 0;
    }
    if (c->aliases_in[a] == NULL)
        return MQTT_RC_PROTOCOL_ERROR; /* an alias never set */
    p->topic.p = c->aliases_in[a];
    p->topic.len = (uint16_t)strlen(c->aliases_in[a]);
    return 0;
}

int handle_publish(conn_t *c, uint8_t first, const uint8_t *body, size_t len)
{
    mqtt_broker_t *b = c->broker;
    const config_t *cfg = b->cfg;
    mqtt_publish_t p;
    int rc = mqtt_codec_decode_publish(first, body, len, c->version, &p);
    if (rc < 0) {
        log_debug("mqtt %s: malformed PUBLISH", c->peer);
        return mqtt_reason_from_errno(rc);
    }
    b->stats.msgs_received++;
    if (c->version == MQTT_V5 && mqtt_props_has(&p.props, MQTT_PROP_TOPIC_ALIAS)) {
        rc = apply_alias(c, &p);
        if (rc != 0)
            return rc;
    }
    if (!topic_name_valid(p.topic.p, p.topic.len, cfg->max_topic_len, cfg->max_topic_depth))
        return p.topic.len == 0 ? MQTT_RC_PROTOCOL_ERROR : MQTT_RC_TOPIC_NAME_INVALID;

    uint8_t ack_type = p.qos == 2 ? MQTT_PUBREC : MQTT_PUBACK;
    session_t *s = c->session;

    if (!conn_acl_ok(c, p.topic.p, p.topic.len)) {
        b->stats.acl_denied++;
        log_warn("mqtt %s: publish to '%.*s' outside the client's namespace refused", c->peer,
                 (int)p.topic.len, p.topic.p);
        /* 3.1.1 has no negative acknowledgement: the message is dropped and
         * acknowledged so the client does not resend it for ever. */
        if (p.qos > 0)
            conn_ack(c, ack_type, p.packet_id, MQTT_RC_NOT_AUTHORIZED);
        return 0;
    }

    if (p.qos == 2 && s != NULL) {
        if (qos2_seen(s, p.packet_id)) {
            conn_ack(c, MQTT_PUBREC, p.packet_id, 0); /* a retransmission */
            return 0;
        }
        rc = qos2_add(s, p.packet_id, cfg->receive_maximum);
        if (rc == -ENOSPC)
            return MQTT_RC_RECEIVE_MAX_EXCEEDED;
        if (rc < 0)
            return MQTT_RC_UNSPECIFIED;
    }

    mqtt_ticket_t *t = NULL;
    if (p.qos > 0) {
        t = conn_ticket_new(c, ack_type, p.packet_id);
        if (t == NULL)
            return MQTT_RC_UNSPECIFIED;
    }
    const char *why = NULL;
    int verdict = MQTT_HOOK_ROUTE;
    if (b->hooks->publish)
        verdict = b->hooks->publish(b->hooks_ctx, c->user, p.topic.p, p.topic.len, p.payload,
                                    p.payload_len, p.qos, t, &why);
    if (verdict >= 0x80) {
        if (t)
            mqtt_ticket_complete(t, (uint8_t)verdict, why);
        return 0;
    }
    msg_t *m = msg_from_props(p.topic.p, p.topic.len, c->version == MQTT_V5 ? &p.props.raw : NULL,
                              p.payload, p.payload_len, p.qos, p.retain);
    if (m != NULL) {
        /* [MQTT-3.3.1-5]: a retained message replaces (or, empty, clears)
         * the topic's retained message, then goes to subscribers. */
        if (p.retain)
            broker_retain(b, m);
        broker_route(b, m, s);
        msg_unref(m);
    } else {
        b->stats.msgs_dropped++;
    }
    if (t && verdict != MQTT_HOOK_PENDING)
        mqtt_ticket_complete(t, m ? 0 : MQTT_RC_UNSPECIFIED, NULL);
    return 0;
}

int handle_puback(conn_t *c, uint8_t type, const uint8_t *body, size_t len)
{
    mqtt_ack_t a;
    int rc = mqtt_codec_decode_ack(body, len, c->version, &a);
    if (rc < 0)
        return mqtt_reason_from_errno(rc);
    session_t *s = c->session;
    if (s == NULL)
        return 0;
    switch (type) {
    case MQTT_PUBACK:
        if (session_ack(s, a.packet_id) < 0)
            log_debug("mqtt %s: PUBACK for unknown packet id %u", c->peer, a.packet_id);
        return 0;
    case MQTT_PUBREL: {
        bool known = qos2_remove(s, a.packet_id);
        conn_ack(c, MQTT_PUBCOMP, a.packet_id, known ? 0 : MQTT_RC_PACKET_ID_NOT_FOUND);
        return 0;
    }
    case MQTT_PUBREC:
        /* A PUBREC with an error code ends the flow ([MQTT-4.3.3]); an
         * unknown id is answered as the spec asks. */
        if (a.reason >= 0x80) {
            session_forget(s, a.packet_id);
        } else if (session_pubrec(s, a.packet_id) < 0) {
            conn_ack(c, MQTT_PUBREL, a.packet_id, MQTT_RC_PACKET_ID_NOT_FOUND);
        }
        return 0;
    default: /* PUBCOMP */
        if (session_pubcomp(s, a.packet_id) < 0)
            log_debug("mqtt %s: PUBCOMP for unknown packet id %u", c->peer, a.packet_id);
        return 0;
    }
}

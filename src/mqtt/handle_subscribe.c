/*
 * SUBSCRIBE and UNSUBSCRIBE. Each filter is judged on its own: an invalid
 * filter, one outside the client's namespace, one on the deny list or one
 * over the per-session limit gets a failure code in its SUBACK slot while
 * the others are granted ([MQTT-3.9.3-1]). Shared subscriptions
 * ($share/{group}/{filter}) and subscription identifiers are supported;
 * retained messages follow the SUBACK.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mqtt/broker_internal.h"

/* Whether f is one of the comma-separated filters of the deny list. */
static bool filter_denied(const char *list, const char *f, size_t fl)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        if ((size_t)(t - p) == fl && memcmp(p, f, fl) == 0)
            return true;
        p = e;
    }
    return false;
}

int handle_subscribe(conn_t *c, uint8_t type, const uint8_t *body, size_t len)
{
    mqtt_broker_t *b = c->broker;
    const config_t *cfg = b->cfg;
    mqtt_subscribe_t sub;
    int rc = mqtt_codec_decode_subscribe(type, body, len, c->version, &sub);
    if (rc < 0)
        return mqtt_reason_from_errno(rc);
    session_t *s = c->session;
    if (s == NULL)
        return MQTT_RC_UNSPECIFIED;
    bool v5 = c->version == MQTT_V5;
    uint32_t sub_id = v5 ? sub.props.sub_id : 0;

    /* codes[i]: the SUBACK/UNSUBACK code; fresh[i]: a new subscription
     * (for Retain Handling 1). */
    uint8_t *codes = malloc(2 * (size_t)sub.count);
    if (codes == NULL)
        return MQTT_RC_UNSPECIFIED;
    uint8_t *fresh = codes + sub.count;
    size_t pos = 0;
    mqtt_sub_entry_t e;
    int fatal = 0;
    for (uint32_t i = 0; mqtt_codec_sub_next(&sub, &pos, &e); i++) {
        const char *f = e.filter.p;
        size_t fl = e.filter.len;
        bool shared = fl >= 7 && memcmp(f, "$share/", 7) == 0;
        uint8_t code;
        fresh[i] = 0;
        if (!topic_filter_valid(f, fl, cfg->max_topic_len, cfg->max_topic_depth)) {
            code = v5 ? MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
        } else if (shared && !sub.unsubscribe && (e.options & 0x04) && v5) {
            /* [MQTT-3.8.3-4]: No Local on a shared subscription. */
            fatal = MQTT_RC_PROTOCOL_ERROR;
            break;
        } else if (!sub.unsubscribe && filter_denied(cfg->deny_subscribe, f, fl)) {
            b->stats.acl_denied++;
            log_info("mqtt %s: subscribe '%.*s' refused by deny_subscribe", c->peer, (int)fl, f);
            code = 0x80; /* a policy refusal: Unspecified error in both versions */
        } else if (!conn_acl_ok(c, f, fl)) {
            b->stats.acl_denied++;
            log_warn("mqtt %s: %s '%.*s' outside the client's namespace refused", c->peer,
                     sub.unsubscribe ? "unsubscribe" : "subscribe", (int)fl, f);
            code = v5 ? MQTT_RC_NOT_AUTHORIZED : 0x80;
            if (sub.unsubscribe && !v5)
                code = 0;
        } else if (sub.unsubscribe) {
            code = session_unsubscribe(s, f, fl) == 0 ? 0 : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
        } else {
            uint8_t qos = e.options & 3;
            rc = session_subscribe(s, f, fl, e.options, sub_id);
            if (rc == -ENOSPC)
                code = v5 ? MQTT_RC_QUOTA_EXCEEDED : 0x80;
            else if (rc == -EINVAL)
                code = v5 ? MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
            else if (rc < 0)
                code = v5 ? MQTT_RC_UNSPECIFIED : 0x80;
            else
                code = qos;
            fresh[i] = rc == 0;
        }
        codes[i] = code;
    }
    if (fatal) {
        free(codes);
        return fatal;
    }
    size_t cap = 8 + sub.count;
    uint8_t *pkt = malloc(cap);
    if (pkt == NULL) {
        free(codes);
        return MQTT_RC_UNSPECIFIED;
    }
    int n = mqtt_codec_encode_suback(pkt, cap, sub.unsubscribe ? MQTT_UNSUBACK : MQTT_SUBACK,
                                     c->version, sub.packet_id, codes, sub.count);
    if (n > 0)
        conn_send(c, pkt, (size_t)n);
    free(pkt);
    /* With the SUBACK on its way: retained messages ([MQTT-3.3.1-9], by
     * Retain Handling in v5), then whatever the hook sends a new
     * subscriber (the device's desired state). */
    if (!sub.unsubscribe) {
        pos = 0;
        for (uint32_t i = 0; mqtt_codec_sub_next(&sub, &pos, &e); i++) {
            if (codes[i] >= 0x80 || c->state != CONN_ACTIVE)
                continue;
            bool shared = e.filter.len >= 7 && memcmp(e.filter.p, "$share/", 7) == 0;
            uint8_t rh = v5 ? (e.options >> 4) & 3 : 0;
            if (!shared && (rh == 0 || (rh == 1 && fresh[i])))
                session_send_retained(s, e.filter.p, e.filter.len, e.options);
            if (b->hooks->subscribed)
                b->hooks->subscribed(b->hooks_ctx, c->user, e.filter.p, e.filter.len);
        }
    }
    free(codes);
    return 0;
}

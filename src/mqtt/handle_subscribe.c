/*
 * SUBSCRIBE and UNSUBSCRIBE. Each filter is judged on its own: an invalid
 * filter, one outside the client's namespace, a shared subscription (not
 * offered yet) or one over the per-session limit gets a failure code in
 * its SUBACK slot while the others are granted ([MQTT-3.8.4-?]). The
 * granted QoS is at most 1 until outgoing QoS 2 exists.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mqtt/broker_internal.h"

int handle_subscribe(conn_t *c, uint8_t type, const uint8_t *body, size_t len)
{
    mqtt_broker_t *b = c->broker;
    const config_t *cfg = b->cfg;
    mqtt_subscribe_t sub;
    int rc = mqtt_codec_decode_subscribe(type, body, len, c->version, &sub);
    if (rc < 0)
        return mqtt_reason_from_errno(rc);
    if (c->version == MQTT_V5 && mqtt_props_has(&sub.props, MQTT_PROP_SUBSCRIPTION_ID))
        return MQTT_RC_SUB_ID_NOT_SUPPORTED; /* announced as unavailable */
    session_t *s = c->session;
    if (s == NULL)
        return MQTT_RC_UNSPECIFIED;

    uint8_t *codes = malloc(sub.count);
    if (codes == NULL)
        return MQTT_RC_UNSPECIFIED;
    bool v5 = c->version == MQTT_V5;
    size_t pos = 0;
    mqtt_sub_entry_t e;
    for (uint32_t i = 0; mqtt_codec_sub_next(&sub, &pos, &e); i++) {
        const char *f = e.filter.p;
        size_t fl = e.filter.len;
        uint8_t code;
        if (!topic_filter_valid(f, fl, cfg->max_topic_len, cfg->max_topic_depth)) {
            code = v5 ? MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
        } else if (!sub.unsubscribe && fl >= 7 && memcmp(f, "$share/", 7) == 0) {
            code = v5 ? MQTT_RC_SHARED_SUB_NOT_SUPPORTED : 0x80;
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
            if (qos > 1)
                qos = 1;
            uint8_t opts = (uint8_t)((e.options & ~3) | qos);
            rc = session_subscribe(s, f, fl, opts);
            if (rc == -ENOSPC)
                code = v5 ? MQTT_RC_QUOTA_EXCEEDED : 0x80;
            else if (rc < 0)
                code = v5 ? MQTT_RC_UNSPECIFIED : 0x80;
            else
                code = qos;
        }
        codes[i] = code;
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
    /* Now that the SUBACK is on its way, the hook may send what a new
     * subscriber should see at once (the device's desired state). */
    if (!sub.unsubscribe && b->hooks->subscribed) {
        pos = 0;
        for (uint32_t i = 0; mqtt_codec_sub_next(&sub, &pos, &e); i++) {
            if (codes[i] < 0x80 && c->state == CONN_ACTIVE)
                b->hooks->subscribed(b->hooks_ctx, c->user, e.filter.p, e.filter.len);
        }
    }
    free(codes);
    return 0;
}

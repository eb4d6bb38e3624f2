/*
 * Sessions: subscriptions, the outgoing QoS 1 window and the queue behind
 * it, and routing a message to every session whose filters match.
 *
 * A session outlives its connection when the client asked for one
 * (3.1.1 clean session 0; 5.0 session expiry > 0): its subscriptions stay
 * in the tree, and QoS 1 messages for it wait in a bounded ring queue
 * (max_queued; the newest are dropped and counted when it is full) until
 * the client returns or the session expires. QoS 0 messages are never
 * queued for an offline session. The inflight window is bounded by
 * max_inflight and by the client's Receive Maximum.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "mqtt/broker_internal.h"

/* Above this many bytes waiting in a connection's output buffer, QoS 0
 * messages to it are dropped: a stalled reader must not grow our memory. */
#define OUTBUF_QOS0_CAP (1024 * 1024)

session_t *session_find(mqtt_broker_t *b, const char *id, size_t len)
{
    return strmap_get(&b->sessions, id, len);
}

session_t *session_new(mqtt_broker_t *b, const char *id, size_t len)
{
    session_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->client_id = malloc(len + 1);
    if (s->client_id == NULL)
        goto fail;
    memcpy(s->client_id, id, len);
    s->client_id[len] = '\0';
    s->client_id_len = len;
    s->broker = b;
    s->next_packet_id = 1;
    if (strmap_put(&b->sessions, s->client_id, len, s) < 0)
        goto fail;
    return s;
fail:
    free(s->client_id);
    free(s);
    return NULL;
}

void session_free(session_t *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->nsubs; i++)
        free(s->subs[i].filter);
    free(s->subs);
    for (uint32_t i = 0; i < s->ninflight; i++)
        msg_unref(s->inflight[i].msg);
    free(s->inflight);
    for (uint32_t i = 0; i < s->qlen; i++)
        msg_unref(s->queue[(s->qhead + i) % s->qcap].msg);
    free(s->queue);
    free(s->qos2_ids);
    free(s->client_id);
    free(s);
}

void session_discard(session_t *s)
{
    mqtt_broker_t *b = s->broker;
    for (uint32_t i = 0; i < s->nsubs; i++)
        topic_tree_remove(b->tree, s->subs[i].filter, s->subs[i].len, s);
    strmap_del(&b->sessions, s->client_id, s->client_id_len);
    if (s->conn)
        s->conn->session = NULL;
    session_free(s);
}

int session_subscribe(session_t *s, const char *filter, size_t len, uint8_t opts)
{
    for (uint32_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i].len == len && memcmp(s->subs[i].filter, filter, len) == 0) {
            s->subs[i].opts = opts;
            return topic_tree_add(s->broker->tree, filter, len, s, opts) < 0 ? -ENOMEM : 1;
        }
    }
    if (s->nsubs >= s->broker->cfg->max_subscriptions)
        return -ENOSPC;
    if (s->nsubs == s->subs_cap) {
        uint32_t cap = s->subs_cap ? s->subs_cap * 2 : 2;
        struct sub_entry *n = realloc(s->subs, cap * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        s->subs = n;
        s->subs_cap = cap;
    }
    char *f = malloc(len + 1);
    if (f == NULL)
        return -ENOMEM;
    memcpy(f, filter, len);
    f[len] = '\0';
    if (topic_tree_add(s->broker->tree, f, len, s, opts) < 0) {
        free(f);
        return -ENOMEM;
    }
    s->subs[s->nsubs++] = (struct sub_entry){f, (uint16_t)len, opts};
    return 0;
}

int session_unsubscribe(session_t *s, const char *filter, size_t len)
{
    for (uint32_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i].len == len && memcmp(s->subs[i].filter, filter, len) == 0) {
            topic_tree_remove(s->broker->tree, filter, len, s);
            free(s->subs[i].filter);
            s->subs[i] = s->subs[--s->nsubs];
            return 0;
        }
    }
    return -ENOENT;
}

static uint32_t window(const session_t *s)
{
    uint32_t w = s->broker->cfg->max_inflight;
    if (s->conn && s->conn->client_receive_max && s->conn->client_receive_max < w)
        w = s->conn->client_receive_max;
    return w;
}

static bool packet_id_in_use(const session_t *s, uint16_t id)
{
    for (uint32_t i = 0; i < s->ninflight; i++) {
        if (s->inflight[i].packet_id == id)
            return true;
    }
    return false;
}

static uint16_t next_packet_id(session_t *s)
{
    for (;;) {
        uint16_t id = s->next_packet_id++;
        if (s->next_packet_id == 0)
            s->next_packet_id = 1;
        if (id != 0 && !packet_id_in_use(s, id))
            return id;
    }
}

/* Writes one PUBLISH to the session's connection. Returns false if it
 * could not be sent (too big for the client, or no memory). */
static bool send_publish(session_t *s, const msg_t *m, uint8_t qos, uint16_t packet_id, bool dup)
{
    conn_t *c = s->conn;
    uint8_t stack[512];
    size_t need = 16 + m->topic_len + m->props_len;
    uint8_t *hdr = need <= sizeof(stack) ? stack : malloc(need);
    if (hdr == NULL)
        return false;
    size_t plen = c->version == MQTT_V5 ? m->props_len : 0;
    int n =
        mqtt_codec_encode_publish_header(hdr, need, c->version, qos, false, dup, m->topic,
                                         m->topic_len, packet_id, m->props, plen, m->payload_len);
    bool ok = n > 0;
    if (ok && c->client_max_packet && (size_t)n + m->payload_len > c->client_max_packet)
        ok = false; /* [MQTT-3.1.2-25]: the client would not take it */
    if (ok) {
        conn_send(c, hdr, (size_t)n);
        conn_send(c, m->payload, m->payload_len);
        s->broker->stats.msgs_sent++;
    }
    if (hdr != stack)
        free(hdr);
    return ok;
}

static bool queue_push(session_t *s, msg_t *m, uint8_t qos)
{
    if (s->qlen >= s->broker->cfg->max_queued)
        return false;
    if (s->qlen == s->qcap) {
        uint32_t cap = s->qcap ? s->qcap * 2 : 4;
        if (cap > s->broker->cfg->max_queued)
            cap = s->broker->cfg->max_queued;
        outmsg_t *q = malloc(cap * sizeof(*q));
        if (q == NULL)
            return false;
        for (uint32_t i = 0; i < s->qlen; i++)
            q[i] = s->queue[(s->qhead + i) % s->qcap];
        free(s->queue);
        s->queue = q;
        s->qcap = cap;
        s->qhead = 0;
    }
    m->refs++;
    s->queue[(s->qhead + s->qlen) % s->qcap] = (outmsg_t){m, 0, qos};
    s->qlen++;
    return true;
}

/* Moves one message into the inflight window and sends it. */
static bool send_inflight(session_t *s, msg_t *m, uint8_t qos)
{
    if (s->ninflight == s->inflight_cap) {
        uint32_t cap = s->inflight_cap ? s->inflight_cap * 2 : 4;
        outmsg_t *n = realloc(s->inflight, cap * sizeof(*n));
        if (n == NULL)
            return false;
        s->inflight = n;
        s->inflight_cap = cap;
    }
    uint16_t id = next_packet_id(s);
    if (!send_publish(s, m, qos, id, false))
        return false;
    m->refs++;
    s->inflight[s->ninflight++] = (outmsg_t){m, id, qos};
    return true;
}

static void pump(session_t *s)
{
    while (s->qlen > 0 && s->conn && s->conn->state == CONN_ACTIVE && s->ninflight < window(s)) {
        outmsg_t o = s->queue[s->qhead];
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
        if (!send_inflight(s, o.msg, o.qos))
            s->broker->stats.msgs_dropped++;
        msg_unref(o.msg);
    }
}

bool session_deliver(session_t *s, msg_t *m, uint8_t qos)
{
    conn_t *c = s->conn;
    bool online = c != NULL && c->state == CONN_ACTIVE;
    bool ok;
    if (qos == 0)
        ok = online && conn_outbuf_len(c) <= OUTBUF_QOS0_CAP && send_publish(s, m, 0, 0, false);
    else if (online && s->qlen == 0 && s->ninflight < window(s))
        ok = send_inflight(s, m, qos);
    else
        ok = queue_push(s, m, qos);
    if (!ok)
        s->broker->stats.msgs_dropped++;
    return ok;
}

int session_match(const session_t *s, const char *topic, size_t len)
{
    int best = -1;
    for (uint32_t i = 0; i < s->nsubs; i++) {
        if (topic_matches(s->subs[i].filter, s->subs[i].len, topic, len) &&
            (s->subs[i].opts & 3) > best)
            best = s->subs[i].opts & 3;
    }
    return best;
}

int session_ack(session_t *s, uint16_t packet_id)
{
    for (uint32_t i = 0; i < s->ninflight; i++) {
        if (s->inflight[i].packet_id == packet_id) {
            msg_unref(s->inflight[i].msg);
            /* Keep order: later resends go out in the original order. */
            memmove(&s->inflight[i], &s->inflight[i + 1],
                    (s->ninflight - i - 1) * sizeof(s->inflight[0]));
            s->ninflight--;
            pump(s);
            return 0;
        }
    }
    return -ENOENT;
}

void session_resume(session_t *s)
{
    /* [MQTT-4.4.0-1]: resend unacknowledged PUBLISH packets with DUP set. */
    for (uint32_t i = 0; i < s->ninflight; i++)
        send_publish(s, s->inflight[i].msg, s->inflight[i].qos, s->inflight[i].packet_id, true);
    pump(s);
}

struct route_ctx {
    mqtt_broker_t *b;
    session_t *head;
    uint64_t gen;
};

static void route_match(void *arg, void *owner, uint8_t opts)
{
    struct route_ctx *rc = arg;
    session_t *s = owner;
    uint8_t q = opts & 3;
    if (s->match_gen != rc->gen) {
        s->match_gen = rc->gen;
        s->match_qos = q;
        s->matched = (opts & 0x04) == 0; /* remembers "No Local" below */
        s->match_next = rc->head;
        rc->head = s;
        return;
    }
    if (q > s->match_qos)
        s->match_qos = q;
    if ((opts & 0x04) == 0)
        s->matched = true;
}

int broker_route(mqtt_broker_t *b, msg_t *m, const session_t *from)
{
    struct route_ctx rc = {b, NULL, ++b->match_gen};
    topic_tree_match(b->tree, m->topic, m->topic_len, route_match, &rc);
    int n = 0;
    for (session_t *s = rc.head; s != NULL; s = s->match_next) {
        /* No Local ([MQTT-3.8.3-3]) applies when every matching
         * subscription of the publisher has it. */
        if (s == from && !s->matched)
            continue;
        uint8_t qos = m->qos < s->match_qos ? m->qos : s->match_qos;
        if (qos > 1)
            qos = 1; /* outgoing QoS 2 is not offered yet: granted max is 1 */
        session_deliver(s, m, qos);
        n++;
    }
    return n;
}

void broker_sweep_sessions(mqtt_broker_t *b, int64_t now)
{
    session_t *expired = NULL;
    for (size_t i = 0; i < b->sessions.cap; i++) {
        if (b->sessions.slots[i].key == NULL)
            continue;
        session_t *s = b->sessions.slots[i].val;
        if (s->conn == NULL && s->expire_at <= now) {
            s->match_next = expired;
            expired = s;
        }
    }
    while (expired) {
        session_t *s = expired;
        expired = s->match_next;
        session_discard(s);
    }
}

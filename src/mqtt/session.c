/*
 * Sessions: subscriptions, the outgoing window of QoS 1 and 2 messages and
 * the queue behind it, retained messages, shared subscriptions, and
 * routing a message to every session whose filters match.
 *
 * A session outlives its connection when the client asked for one
 * (3.1.1 clean session 0; 5.0 session expiry > 0): its subscriptions stay
 * in the tree, and QoS 1/2 messages for it wait in a bounded ring queue
 * (max_queued messages and max_queued_bytes of payload; past either, new
 * messages are dropped and counted) until the client returns or the
 * session expires. QoS 0 messages are never queued for an offline session.
 * The window is bounded by max_inflight and by the client's Receive
 * Maximum.
 *
 * Per-hop properties are written at each send, not stored with the
 * message: the remaining Message Expiry Interval, the Subscription
 * Identifiers of the subscriptions that matched, and a Topic Alias when the
 * client allows them. Messages past their expiry are dropped, not sent.
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
    s->kind = OWNER_SESSION;
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
    if (s->will_timer)
        event_free(s->will_timer);
    msg_unref(s->will);
    free(s->deny_prefix);
    free(s->allow_prefix);
    free(s->client_id);
    free(s);
}

/* ---- Shared subscriptions ------------------------------------------------ */

void shared_free(shared_t *g)
{
    if (g == NULL)
        return;
    free(g->members);
    free(g->name);
    free(g);
}

/* Splits "$share/{group}/{filter}"; the group is non-empty and holds no
 * wildcard ([MQTT-4.8.2-1], [MQTT-4.8.2-2]). */
static bool shared_split(const char *f, size_t len, const char **filter, size_t *flen)
{
    if (len < 7 || memcmp(f, "$share/", 7) != 0)
        return false;
    const char *g = f + 7;
    const char *slash = memchr(g, '/', len - 7);
    if (slash == NULL || slash == g)
        return false;
    for (const char *p = g; p < slash; p++) {
        if (*p == '+' || *p == '#')
            return false;
    }
    *filter = slash + 1;
    *flen = len - (size_t)(slash + 1 - f);
    return *flen > 0;
}

static int shared_join(session_t *s, const char *name, size_t len, uint8_t opts)
{
    mqtt_broker_t *b = s->broker;
    const char *f;
    size_t fl;
    if (!shared_split(name, len, &f, &fl))
        return -EINVAL;
    shared_t *g = strmap_get(&b->shared, name, len);
    if (g == NULL) {
        g = calloc(1, sizeof(*g));
        if (g == NULL)
            return -ENOMEM;
        g->kind = OWNER_SHARED;
        g->name = malloc(len + 1);
        if (g->name == NULL) {
            free(g);
            return -ENOMEM;
        }
        memcpy(g->name, name, len);
        g->name[len] = '\0';
        g->name_len = len;
        g->filter = g->name + (f - name);
        g->filter_len = fl;
        if (strmap_put(&b->shared, g->name, len, g) < 0) {
            shared_free(g);
            return -ENOMEM;
        }
        if (topic_tree_add(b->tree, g->filter, g->filter_len, g, 0) < 0) {
            strmap_del(&b->shared, g->name, len);
            shared_free(g);
            return -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < g->n; i++) {
        if (g->members[i].s == s) {
            g->members[i].opts = opts;
            return 1;
        }
    }
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 4;
        struct shared_member *m = realloc(g->members, cap * sizeof(*m));
        if (m == NULL)
            return -ENOMEM;
        g->members = m;
        g->cap = cap;
    }
    g->members[g->n++] = (struct shared_member){s, opts};
    return 0;
}

static void shared_leave(session_t *s, const char *name, size_t len)
{
    mqtt_broker_t *b = s->broker;
    shared_t *g = strmap_get(&b->shared, name, len);
    if (g == NULL)
        return;
    for (uint32_t i = 0; i < g->n; i++) {
        if (g->members[i].s == s) {
            memmove(&g->members[i], &g->members[i + 1], (g->n - i - 1) * sizeof(g->members[0]));
            g->n--;
            break;
        }
    }
    if (g->n == 0) {
        topic_tree_remove(b->tree, g->filter, g->filter_len, g);
        strmap_del(&b->shared, g->name, g->name_len);
        shared_free(g);
    }
}

static bool is_shared(const char *f, size_t len)
{
    return len >= 7 && memcmp(f, "$share/", 7) == 0;
}

/* ---- Subscriptions --------------------------------------------------------- */

void session_discard(session_t *s)
{
    mqtt_broker_t *b = s->broker;
    for (uint32_t i = 0; i < s->nsubs; i++) {
        if (is_shared(s->subs[i].filter, s->subs[i].len))
            shared_leave(s, s->subs[i].filter, s->subs[i].len);
        else
            topic_tree_remove(b->tree, s->subs[i].filter, s->subs[i].len, s);
    }
    strmap_del(&b->sessions, s->client_id, s->client_id_len);
    if (s->conn)
        s->conn->session = NULL;
    /* A will still waiting for its delay goes out when its session ends
     * ([MQTT-3.1.3-9]), unless the server itself is going down. */
    if (s->will != NULL && !b->shutting_down)
        session_fire_will(s);
    session_free(s);
}

int session_subscribe(session_t *s, const char *filter, size_t len, uint8_t opts, uint32_t sub_id)
{
    bool shared = is_shared(filter, len);
    for (uint32_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i].len == len && memcmp(s->subs[i].filter, filter, len) == 0) {
            s->subs[i].opts = opts;
            s->subs[i].sub_id = sub_id;
            int rc = shared ? shared_join(s, filter, len, opts)
                            : topic_tree_add(s->broker->tree, filter, len, s, opts);
            return rc < 0 ? rc : 1;
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
    int rc =
        shared ? shared_join(s, f, len, opts) : topic_tree_add(s->broker->tree, f, len, s, opts);
    if (rc < 0) {
        free(f);
        return rc;
    }
    s->subs[s->nsubs++] = (struct sub_entry){f, (uint16_t)len, opts, sub_id};
    return 0;
}

int session_unsubscribe(session_t *s, const char *filter, size_t len)
{
    for (uint32_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i].len == len && memcmp(s->subs[i].filter, filter, len) == 0) {
            if (is_shared(filter, len))
                shared_leave(s, filter, len);
            else
                topic_tree_remove(s->broker->tree, filter, len, s);
            free(s->subs[i].filter);
            s->subs[i] = s->subs[--s->nsubs];
            return 0;
        }
    }
    return -ENOENT;
}

/* The filter a subscription matches topics with ("$share/g/f" -> f). */
static void sub_filter(const struct sub_entry *e, const char **f, size_t *fl)
{
    if (!shared_split(e->filter, e->len, f, fl)) {
        *f = e->filter;
        *fl = e->len;
    }
}

int session_match(const session_t *s, const char *topic, size_t len)
{
    int best = -1;
    for (uint32_t i = 0; i < s->nsubs; i++) {
        const char *f;
        size_t fl;
        sub_filter(&s->subs[i], &f, &fl);
        if (topic_matches(f, fl, topic, len) && (s->subs[i].opts & 3) > best)
            best = s->subs[i].opts & 3;
    }
    return best;
}

/* ---- Sending --------------------------------------------------------------- */

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

static bool expired(const msg_t *m, int64_t now)
{
    return m->expire_at != 0 && m->expire_at <= now;
}

static size_t put_prop_varint(uint8_t *out, uint8_t id, uint32_t v)
{
    out[0] = id;
    return 1 + mqtt_codec_put_varint(out + 1, v);
}

/* The alias to send topic with: *alias set and *send_topic false when the
 * client already knows it, a new alias with the topic when there is room,
 * else no alias. */
static void pick_alias(conn_t *c, const msg_t *m, uint16_t *alias, bool *send_topic)
{
    *alias = 0;
    *send_topic = true;
    if (c->version != MQTT_V5 || c->client_alias_max == 0)
        return;
    uintptr_t a = (uintptr_t)strmap_get(&c->aliases_out, m->topic, m->topic_len);
    if (a != 0) {
        *alias = (uint16_t)a;
        *send_topic = false;
        return;
    }
    if (c->next_alias_out >= c->client_alias_max)
        return;
    char *key = malloc(m->topic_len + 1);
    if (key == NULL)
        return;
    memcpy(key, m->topic, m->topic_len + 1);
    uint16_t next = (uint16_t)(c->next_alias_out + 1);
    if (strmap_put(&c->aliases_out, key, m->topic_len, (void *)(uintptr_t)next) < 0) {
        free(key);
        return;
    }
    c->next_alias_out = next;
    *alias = next;
}

/* Writes one PUBLISH to the session's connection. Returns false if it
 * could not be sent (too big for the client, expired, or no memory). */
static bool send_publish(session_t *s, const outmsg_t *o, bool dup)
{
    conn_t *c = s->conn;
    const msg_t *m = o->msg;
    int64_t now = util_now_ms();
    if (expired(m, now))
        return false;
    bool v5 = c->version == MQTT_V5;

    /* v5 properties: the message's own, then the per-hop ones. */
    uint32_t nids = 0;
    for (uint32_t i = 0; v5 && i < s->nsubs; i++)
        nids += s->subs[i].sub_id != 0;
    size_t pcap = v5 ? m->props_len + 16 + 6 * (size_t)nids : 0;
    uint8_t pstack[256];
    uint8_t *props = pcap <= sizeof(pstack) ? pstack : malloc(pcap);
    if (props == NULL)
        return false;
    size_t plen = 0;
    uint16_t alias = 0;
    bool send_topic = true;
    if (v5) {
        memcpy(props, m->props, m->props_len);
        plen = m->props_len;
        if (m->expire_at) {
            int64_t left = (m->expire_at - now + 999) / 1000;
            uint32_t v = (uint32_t)(left < 1 ? 1 : left);
            props[plen++] = MQTT_PROP_MESSAGE_EXPIRY;
            props[plen++] = (uint8_t)(v >> 24);
            props[plen++] = (uint8_t)(v >> 16);
            props[plen++] = (uint8_t)(v >> 8);
            props[plen++] = (uint8_t)v;
        }
        for (uint32_t i = 0; i < s->nsubs; i++) {
            const char *f;
            size_t fl;
            if (s->subs[i].sub_id == 0)
                continue;
            sub_filter(&s->subs[i], &f, &fl);
            if (topic_matches(f, fl, m->topic, m->topic_len))
                plen += put_prop_varint(props + plen, MQTT_PROP_SUBSCRIPTION_ID, s->subs[i].sub_id);
        }
        pick_alias(c, m, &alias, &send_topic);
        if (alias) {
            props[plen++] = MQTT_PROP_TOPIC_ALIAS;
            props[plen++] = (uint8_t)(alias >> 8);
            props[plen++] = (uint8_t)alias;
        }
    }

    uint8_t stack[512];
    size_t need = 16 + m->topic_len + plen;
    uint8_t *hdr = need <= sizeof(stack) ? stack : malloc(need);
    bool ok = hdr != NULL;
    if (ok) {
        int n = mqtt_codec_encode_publish_header(hdr, need, c->version, o->qos, o->retain, dup,
                                                 m->topic, send_topic ? m->topic_len : 0,
                                                 o->packet_id, props, plen, m->payload_len);
        ok = n > 0;
        if (ok && c->client_max_packet && (size_t)n + m->payload_len > c->client_max_packet)
            ok = false; /* [MQTT-3.1.2-25]: the client would not take it */
        if (ok) {
            conn_send(c, hdr, (size_t)n);
            conn_send(c, m->payload, m->payload_len);
            s->broker->stats.msgs_sent++;
        }
    }
    if (hdr != stack)
        free(hdr);
    if (props != pstack)
        free(props);
    return ok;
}

static void send_pubrel(session_t *s, uint16_t id)
{
    uint8_t pkt[8];
    int n = mqtt_codec_encode_ack(pkt, sizeof(pkt), MQTT_PUBREL, s->conn->version, id, 0);
    if (n > 0)
        conn_send(s->conn, pkt, (size_t)n);
}

static bool queue_push(session_t *s, msg_t *m, uint8_t qos, bool retain)
{
    const config_t *cfg = s->broker->cfg;
    if (s->qlen >= cfg->max_queued || s->queued_bytes + m->payload_len > cfg->max_queued_bytes)
        return false;
    if (s->qlen == s->qcap) {
        uint32_t cap = s->qcap ? s->qcap * 2 : 4;
        if (cap > cfg->max_queued)
            cap = cfg->max_queued;
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
    s->queue[(s->qhead + s->qlen) % s->qcap] = (outmsg_t){m, 0, qos, retain, OUT_SENT};
    s->qlen++;
    s->queued_bytes += m->payload_len;
    return true;
}

/* Moves one message into the window and sends it. */
static bool send_inflight(session_t *s, msg_t *m, uint8_t qos, bool retain)
{
    if (s->ninflight == s->inflight_cap) {
        uint32_t cap = s->inflight_cap ? s->inflight_cap * 2 : 4;
        outmsg_t *n = realloc(s->inflight, cap * sizeof(*n));
        if (n == NULL)
            return false;
        s->inflight = n;
        s->inflight_cap = cap;
    }
    outmsg_t o = {m, next_packet_id(s), qos, retain, OUT_SENT};
    if (!send_publish(s, &o, false))
        return false;
    m->refs++;
    s->inflight[s->ninflight++] = o;
    return true;
}

static void pump(session_t *s)
{
    while (s->qlen > 0 && s->conn && s->conn->state == CONN_ACTIVE && s->ninflight < window(s)) {
        outmsg_t o = s->queue[s->qhead];
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
        s->queued_bytes -= o.msg->payload_len;
        if (!send_inflight(s, o.msg, o.qos, o.retain))
            s->broker->stats.msgs_dropped++;
        msg_unref(o.msg);
    }
}

bool session_deliver(session_t *s, msg_t *m, uint8_t qos, bool retain)
{
    conn_t *c = s->conn;
    bool online = c != NULL && c->state == CONN_ACTIVE;
    bool ok;
    if (expired(m, util_now_ms())) {
        ok = false;
    } else if (qos == 0) {
        outmsg_t o = {m, 0, 0, retain, OUT_SENT};
        ok = online && conn_outbuf_len(c) <= OUTBUF_QOS0_CAP && send_publish(s, &o, false);
    } else if (online && s->qlen == 0 && s->ninflight < window(s)) {
        ok = send_inflight(s, m, qos, retain);
    } else {
        ok = queue_push(s, m, qos, retain);
    }
    if (!ok)
        s->broker->stats.msgs_dropped++;
    return ok;
}

static outmsg_t *inflight_find(session_t *s, uint16_t id, uint32_t *idx)
{
    for (uint32_t i = 0; i < s->ninflight; i++) {
        if (s->inflight[i].packet_id == id) {
            *idx = i;
            return &s->inflight[i];
        }
    }
    return NULL;
}

static void inflight_remove(session_t *s, uint32_t i)
{
    msg_unref(s->inflight[i].msg);
    /* Keep order: later resends go out in the original order. */
    memmove(&s->inflight[i], &s->inflight[i + 1], (s->ninflight - i - 1) * sizeof(s->inflight[0]));
    s->ninflight--;
    pump(s);
}

int session_ack(session_t *s, uint16_t packet_id)
{
    uint32_t i;
    outmsg_t *o = inflight_find(s, packet_id, &i);
    if (o == NULL || o->qos != 1)
        return -ENOENT;
    inflight_remove(s, i);
    return 0;
}

int session_forget(session_t *s, uint16_t packet_id)
{
    uint32_t i;
    if (inflight_find(s, packet_id, &i) == NULL)
        return -ENOENT;
    inflight_remove(s, i);
    return 0;
}

int session_pubrec(session_t *s, uint16_t packet_id)
{
    uint32_t i;
    outmsg_t *o = inflight_find(s, packet_id, &i);
    if (o == NULL || o->qos != 2)
        return -ENOENT;
    o->state = OUT_RELEASED; /* [MQTT-4.3.3-4]: the message is delivered */
    send_pubrel(s, packet_id);
    return 0;
}

int session_pubcomp(session_t *s, uint16_t packet_id)
{
    uint32_t i;
    outmsg_t *o = inflight_find(s, packet_id, &i);
    if (o == NULL || o->qos != 2 || o->state != OUT_RELEASED)
        return -ENOENT;
    inflight_remove(s, i);
    return 0;
}

void session_resume(session_t *s)
{
    /* [MQTT-4.4.0-1]: resend unacknowledged PUBLISH packets with DUP set,
     * and PUBREL for QoS 2 messages already received by the client. */
    for (uint32_t i = 0; i < s->ninflight;) {
        outmsg_t *o = &s->inflight[i];
        if (o->state == OUT_RELEASED) {
            send_pubrel(s, o->packet_id);
        } else if (!send_publish(s, o, true)) {
            /* Expired while waiting: it is not sent again. */
            s->broker->stats.msgs_dropped++;
            msg_unref(o->msg);
            memmove(o, o + 1, (s->ninflight - i - 1) * sizeof(*o));
            s->ninflight--;
            continue;
        }
        i++;
    }
    pump(s);
}

/* ---- Retained messages ------------------------------------------------------ */

void broker_retain(mqtt_broker_t *b, msg_t *m)
{
    msg_t *old = strmap_get(&b->retained, m->topic, m->topic_len);
    if (m->payload_len == 0) {
        /* An empty retained message clears it ([MQTT-3.3.1-10]). */
        if (old != NULL) {
            strmap_del(&b->retained, m->topic, m->topic_len);
            msg_unref(old);
        }
        return;
    }
    if (old == NULL && b->retained.count >= b->cfg->max_retained)
        return;
    m->refs++;
    if (strmap_put(&b->retained, m->topic, m->topic_len, m) < 0) {
        msg_unref(m);
        return;
    }
    msg_unref(old);
}

void session_send_retained(session_t *s, const char *filter, size_t len, uint8_t opts)
{
    mqtt_broker_t *b = s->broker;
    int64_t now = util_now_ms();
    /* Collect first: expired entries are dropped from the map as found. */
    msg_t **hits = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < b->retained.cap; i++) {
        msg_t *m = b->retained.slots[i].key ? b->retained.slots[i].val : NULL;
        if (m == NULL || !topic_matches(filter, len, m->topic, m->topic_len))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            msg_t **h = realloc(hits, nc * sizeof(*h));
            if (h == NULL)
                break;
            hits = h;
            cap = nc;
        }
        hits[n++] = m;
    }
    for (size_t i = 0; i < n; i++) {
        msg_t *m = hits[i];
        if (expired(m, now)) {
            strmap_del(&b->retained, m->topic, m->topic_len);
            msg_unref(m);
            continue;
        }
        if (!session_may_see(s, m->topic, m->topic_len))
            continue;
        uint8_t q = m->qos < (opts & 3) ? m->qos : (opts & 3);
        session_deliver(s, m, q, true); /* [MQTT-3.3.1-8]: RETAIN set */
    }
    free(hits);
}

/* ---- Routing ------------------------------------------------------------------ */

/* Delivery applies the client's ACL too: a filter such as
 * "devices/d1/#" also matches the parent "devices/d1" ([MQTT-4.7.1-2]),
 * which lies outside the namespace the client was granted (found by the
 * handler fuzzer). */
bool session_may_see(const session_t *s, const char *topic, size_t len)
{
    if (s->allow_prefix != NULL) {
        size_t n = strlen(s->allow_prefix);
        if (len <= n || memcmp(topic, s->allow_prefix, n) != 0)
            return false;
    }
    if (s->deny_prefix == NULL)
        return true;
    size_t n = strlen(s->deny_prefix);
    return len < n || memcmp(topic, s->deny_prefix, n) != 0;
}

struct route_ctx {
    mqtt_broker_t *b;
    session_t *head;
    shared_t *groups;
    uint64_t gen;
};

static void route_match(void *arg, void *owner, uint8_t opts)
{
    struct route_ctx *rc = arg;
    if (*(int *)owner == OWNER_SHARED) {
        shared_t *g = owner;
        if (g->match_gen != rc->gen) {
            g->match_gen = rc->gen;
            g->match_next = rc->groups;
            rc->groups = g;
        }
        return;
    }
    session_t *s = owner;
    uint8_t q = opts & 3;
    bool rap = (opts & 0x08) != 0;
    if (s->match_gen != rc->gen) {
        s->match_gen = rc->gen;
        s->match_qos = q;
        s->match_rap = rap;
        s->matched = (opts & 0x04) == 0; /* remembers "No Local" below */
        s->match_next = rc->head;
        rc->head = s;
        return;
    }
    if (q > s->match_qos)
        s->match_qos = q;
    s->match_rap = s->match_rap || rap;
    if ((opts & 0x04) == 0)
        s->matched = true;
}

/* One member of a shared group, round robin, preferring online ones. */
static struct shared_member *shared_pick(shared_t *g, const msg_t *m)
{
    struct shared_member *any = NULL;
    for (uint32_t k = 0; k < g->n; k++) {
        uint32_t i = (g->next + k) % g->n;
        struct shared_member *mb = &g->members[i];
        if (!session_may_see(mb->s, m->topic, m->topic_len))
            continue;
        if (mb->s->conn && mb->s->conn->state == CONN_ACTIVE) {
            g->next = (i + 1) % g->n;
            return mb;
        }
        if (any == NULL)
            any = mb;
    }
    if (any != NULL)
        g->next = (uint32_t)((any - g->members) + 1) % g->n;
    return any;
}

int broker_route(mqtt_broker_t *b, msg_t *m, const session_t *from)
{
    struct route_ctx rc = {b, NULL, NULL, ++b->match_gen};
    topic_tree_match(b->tree, m->topic, m->topic_len, route_match, &rc);
    int n = 0;
    for (session_t *s = rc.head; s != NULL; s = s->match_next) {
        /* No Local ([MQTT-3.8.3-3]) applies when every matching
         * subscription of the publisher has it. */
        if (s == from && !s->matched)
            continue;
        if (!session_may_see(s, m->topic, m->topic_len))
            continue;
        uint8_t qos = m->qos < s->match_qos ? m->qos : s->match_qos;
        /* [MQTT-3.3.1-12/13]: RETAIN only with Retain As Published. */
        session_deliver(s, m, qos, s->match_rap && m->retain);
        n++;
    }
    for (shared_t *g = rc.groups; g != NULL; g = g->match_next) {
        struct shared_member *mb = shared_pick(g, m);
        if (mb == NULL)
            continue;
        uint8_t qos = m->qos < (mb->opts & 3) ? m->qos : (mb->opts & 3);
        session_deliver(mb->s, m, qos, false);
        n++;
    }
    return n;
}

/* ---- Wills and expiry ---------------------------------------------------------- */

void session_fire_will(session_t *s)
{
    msg_t *w = s->will;
    s->will = NULL;
    if (s->will_timer) {
        event_free(s->will_timer);
        s->will_timer = NULL;
    }
    if (w == NULL)
        return;
    if (w->retain)
        broker_retain(s->broker, w);
    broker_route(s->broker, w, NULL);
    msg_unref(w);
}

void broker_sweep_sessions(mqtt_broker_t *b, int64_t now)
{
    session_t *expired_list = NULL;
    for (size_t i = 0; i < b->sessions.cap; i++) {
        if (b->sessions.slots[i].key == NULL)
            continue;
        session_t *s = b->sessions.slots[i].val;
        if (s->conn == NULL && s->expire_at <= now) {
            s->match_next = expired_list;
            expired_list = s;
        }
    }
    while (expired_list) {
        session_t *s = expired_list;
        expired_list = s->match_next;
        session_discard(s);
    }
    /* Forget takeover counts of ids that have been quiet for two minutes. */
    for (size_t i = 0; i < b->takeovers.cap;) {
        struct takeover *t = b->takeovers.slots[i].key ? b->takeovers.slots[i].val : NULL;
        if (t != NULL && now - t->window_start > 120000) {
            strmap_del(&b->takeovers, t->id, strlen(t->id));
            free(t);
            continue; /* the deletion may have moved another entry here */
        }
        i++;
    }
}

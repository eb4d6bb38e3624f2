/*
 * Broker core: the listener, the connection lifecycle and the read loop.
 *
 * Each connection is a libevent bufferevent. The read callback takes whole
 * packets off the input buffer: it decodes the fixed header, refuses a
 * declared length over max_packet_size before buffering the body (so a
 * client that announces 256 MB costs nothing), checks the reserved flags,
 * then dispatches on the packet type to handle_<packet>(). The bufferevent
 * read high-water mark bounds what one connection can make us buffer.
 *
 * Keepalive uses the bufferevent read timeout: 1.5 x keepalive after
 * CONNECT, connect_timeout before it. A connection is never freed inside a
 * callback that may still touch it: conn_close() only marks it CLOSED and
 * drops the bufferevent; the memory goes when the last reference does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "common/util.h"
#include "mqtt/broker_internal.h"

uint8_t mqtt_reason_from_errno(int err)
{
    switch (err) {
    case -EPROTO:
        return MQTT_RC_MALFORMED;
    case -EBADMSG:
        return MQTT_RC_PROTOCOL_ERROR;
    case -ENOTSUP:
        return MQTT_RC_UNSUPPORTED_VERSION;
    case -E2BIG:
        return MQTT_RC_PACKET_TOO_LARGE;
    default:
        return MQTT_RC_UNSPECIFIED;
    }
}

msg_t *msg_new(const char *topic, size_t topic_len, const uint8_t *props, size_t props_len,
               const uint8_t *payload, size_t payload_len, uint8_t qos, bool retain)
{
    msg_t *m = malloc(sizeof(*m) + topic_len + 1 + props_len + payload_len);
    if (m == NULL)
        return NULL;
    m->refs = 1;
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)topic_len;
    m->props_len = (uint32_t)props_len;
    m->payload_len = (uint32_t)payload_len;
    m->expire_at = 0;
    m->topic = m->data;
    memcpy(m->topic, topic, topic_len);
    m->topic[topic_len] = '\0';
    m->props = (uint8_t *)m->data + topic_len + 1;
    if (props_len)
        memcpy(m->props, props, props_len);
    m->payload = m->props + props_len;
    if (payload_len)
        memcpy(m->payload, payload, payload_len);
    return m;
}

void msg_unref(msg_t *m)
{
    if (m != NULL && --m->refs == 0)
        free(m);
}

size_t conn_outbuf_len(const conn_t *c)
{
    return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

void conn_send(conn_t *c, const uint8_t *data, size_t len)
{
    if (c->state == CONN_CLOSED || c->bev == NULL)
        return;
    bufferevent_write(c->bev, data, len);
}

bool conn_acl_ok(const conn_t *c, const char *topic, size_t len)
{
    if (c->deny_prefix != NULL && len >= c->deny_prefix_len &&
        memcmp(topic, c->deny_prefix, c->deny_prefix_len) == 0)
        return false;
    if (c->acl_prefix == NULL)
        return true;
    return len > c->acl_prefix_len && memcmp(topic, c->acl_prefix, c->acl_prefix_len) == 0;
}

static void conn_free(conn_t *c)
{
    if (c->aliases_in) {
        for (uint32_t i = 0; i <= c->broker_alias_max; i++)
            free(c->aliases_in[i]);
        free(c->aliases_in);
    }
    for (size_t i = 0; i < c->aliases_out.cap; i++)
        free((char *)c->aliases_out.slots[i].key);
    strmap_fini(&c->aliases_out);
    if (c->throttle_timer)
        event_free(c->throttle_timer);
    free(c->acl_prefix);
    free(c->deny_prefix);
    msg_unref(c->will);
    free(c);
}

void conn_unref(conn_t *c)
{
    if (--c->refs == 0)
        conn_free(c);
}

/* A closed connection still flushing its last bytes, or lingering after
 * a half-close. The broker lists them so that shutdown frees them too. */
struct closing {
    mqtt_broker_t *b;
    struct bufferevent *bev;
    struct closing *prev, *next;
};

static void closing_free(struct closing *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        l->b->lingering = l->next;
    if (l->next)
        l->next->prev = l->prev;
    bufferevent_free(l->bev);
    free(l);
}

static void close_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    closing_free(arg);
}

static void discard_input(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

/* Once the last bytes (a DISCONNECT, a refusing CONNACK) are out: over
 * plain TCP, half-close and read and discard until the client closes (or
 * two seconds pass), so the client reads our reason instead of failing a
 * write on a reset socket; over TLS, close at once. */
static void close_after_flush(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) != 0)
        return;
    if (bufferevent_openssl_get_ssl(bev) != NULL || shutdown(bufferevent_getfd(bev), SHUT_WR) < 0) {
        closing_free(arg);
        return;
    }
    struct timeval tv = {2, 0};
    bufferevent_setcb(bev, discard_input, NULL, close_event, arg);
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bufferevent_set_timeouts(bev, &tv, NULL);
    bufferevent_disable(bev, EV_WRITE);
    bufferevent_enable(bev, EV_READ);
}

static void will_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session_fire_will(arg);
}

/* The will of a connection that ended without DISCONNECT: published now,
 * or, with a Will Delay Interval and a session that outlives the
 * connection, handed to the session to publish when the delay or the
 * session ends, whichever comes first ([MQTT-3.1.3-9]). */
static void fire_will(conn_t *c, session_t *s)
{
    msg_t *w = c->will;
    c->will = NULL;
    if (w == NULL)
        return;
    if (c->clean_disconnect) {
        msg_unref(w);
        return;
    }
    if (c->will_delay > 0 && s != NULL && s->persistent && s->expiry_s > 0 &&
        !c->broker->shutting_down) {
        uint32_t delay = c->will_delay < s->expiry_s ? c->will_delay : s->expiry_s;
        msg_unref(s->will);
        s->will = w;
        if (s->will_timer == NULL)
            s->will_timer = evtimer_new(c->broker->base, will_timer_cb, s);
        if (s->will_timer != NULL) {
            struct timeval tv = {(time_t)delay, 0};
            evtimer_add(s->will_timer, &tv);
            return;
        }
        s->will = NULL;
    }
    if (w->retain)
        broker_retain(c->broker, w);
    broker_route(c->broker, w, NULL);
    msg_unref(w);
}

void conn_close(conn_t *c, uint8_t reason)
{
    if (c->state == CONN_CLOSED)
        return;
    mqtt_broker_t *b = c->broker;
    bool was_active = c->state == CONN_ACTIVE;
    c->state = CONN_CLOSED;

    if (c->bev != NULL) {
        struct closing *l;
        struct bufferevent *bev = c->bev;
        c->bev = NULL;
        bufferevent_disable(bev, EV_READ);
        if (reason != 0 && was_active && c->version == MQTT_V5) {
            uint8_t pkt[8];
            int n = mqtt_codec_encode_disconnect(pkt, sizeof(pkt), MQTT_V5, reason);
            if (n > 0)
                bufferevent_write(bev, pkt, (size_t)n);
        }
        if (b->shutting_down && c->ssl == NULL) {
            /* The loop will not run again: write what fits in the socket
             * now (best effort) and free at once. */
            evbuffer_write(bufferevent_get_output(bev), bufferevent_getfd(bev));
            bufferevent_free(bev);
        } else if (b->shutting_down) {
            bufferevent_free(bev);
        } else if (evbuffer_get_length(bufferevent_get_output(bev)) > 0 &&
                   (l = calloc(1, sizeof(*l))) != NULL) {
            /* Let what is queued (a CONNACK with a refusal, a DISCONNECT)
             * reach the client, but not for ever. */
            l->b = b;
            l->bev = bev;
            l->next = b->lingering;
            if (b->lingering)
                b->lingering->prev = l;
            b->lingering = l;
            struct timeval tv = {2, 0};
            bufferevent_set_timeouts(bev, NULL, &tv);
            bufferevent_setcb(bev, NULL, close_after_flush, close_event, l);
            bufferevent_enable(bev, EV_WRITE);
        } else {
            bufferevent_free(bev);
        }
    }

    if (c->prev)
        c->prev->next = c->next;
    else
        b->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    b->nconns--;

    if (was_active) {
        session_t *s = c->session;
        bool keep = s != NULL && s->persistent && s->expiry_s > 0 && !b->shutting_down;
        fire_will(c, keep ? s : NULL);
        if (s != NULL) {
            s->conn = NULL;
            c->session = NULL;
            if (!keep)
                session_discard(s);
            else
                s->expire_at = s->expiry_s == UINT32_MAX
                                   ? INT64_MAX
                                   : util_now_ms() + (int64_t)s->expiry_s * 1000;
        }
    }
    /* Every authenticated client hears of its end, even one refused after
     * authentication, so the hook can release what it gave out. */
    if (c->authed && b->hooks->disconnected)
        b->hooks->disconnected(b->hooks_ctx, c->user, c->clean_disconnect);
    c->authed = false;
    conn_unref(c);
}

/* Reading was paused with packets possibly still in the input buffer: no
 * new bytes may come to wake the read callback, so run it (deferred, never
 * from inside a handler) to drain what is there. */
void conn_resume_read(conn_t *c)
{
    if (c->bev == NULL || c->read_paused || c->throttled)
        return;
    bufferevent_enable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}

/* Failures that say nothing about the message itself. */
static bool transient(uint8_t reason)
{
    return reason == MQTT_RC_UNSPECIFIED || reason == MQTT_RC_SERVER_BUSY ||
           reason == MQTT_RC_QUOTA_EXCEEDED || reason == MQTT_RC_SERVER_UNAVAILABLE;
}

/* Sends every completed acknowledgement at the head of the FIFO. */
static void flush_acks(conn_t *c)
{
    while (c->ack_head != NULL && c->ack_head->done) {
        struct mqtt_ticket *t = c->ack_head;
        c->ack_head = t->next;
        if (c->ack_head == NULL)
            c->ack_tail = NULL;
        c->nacks--;
        if (c->state == CONN_ACTIVE && c->version == MQTT_V311 && transient(t->reason)) {
            /* 3.1.1 cannot refuse a message: closing without the PUBACK
             * makes the client send it again on its next connection. */
            conn_close(c, 0);
        } else if (c->state == CONN_ACTIVE) {
            uint8_t pkt[8];
            int n = mqtt_codec_encode_ack(pkt, sizeof(pkt), t->type, c->version, t->packet_id,
                                          t->reason);
            if (n > 0)
                conn_send(c, pkt, (size_t)n);
            if (t->type == MQTT_PUBREC && t->reason >= 0x80 && c->session) {
                /* A refused QoS 2 message ends its flow here ([MQTT-4.3.3]). */
                session_t *s = c->session;
                for (uint32_t i = 0; i < s->nqos2; i++) {
                    if (s->qos2_ids[i] == t->packet_id) {
                        s->qos2_ids[i] = s->qos2_ids[--s->nqos2];
                        break;
                    }
                }
            }
        }
        free(t);
        conn_unref(c);
    }
    if (c->read_paused && c->state == CONN_ACTIVE && c->nacks < c->broker->cfg->receive_maximum) {
        c->read_paused = false;
        conn_resume_read(c);
    }
}

void mqtt_ticket_complete(mqtt_ticket_t *t, uint8_t reason, const char *reason_string)
{
    t->done = true;
    t->reason = reason;
    t->reason_string = reason_string;
    conn_t *c = t->conn;
    c->refs++;
    flush_acks(c);
    conn_unref(c);
}

/* Queues an acknowledgement owed for packet_id. done = can go now. */
mqtt_ticket_t *conn_ticket_new(conn_t *c, uint8_t type, uint16_t packet_id)
{
    struct mqtt_ticket *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->conn = c;
    t->type = type;
    t->packet_id = packet_id;
    c->refs++;
    if (c->ack_tail)
        c->ack_tail->next = t;
    else
        c->ack_head = t;
    c->ack_tail = t;
    c->nacks++;
    if (c->nacks >= c->broker->cfg->receive_maximum && !c->read_paused && c->bev) {
        /* Backpressure: stop reading until storage catches up. */
        c->read_paused = true;
        bufferevent_disable(c->bev, EV_READ);
    }
    return t;
}

static int dispatch(conn_t *c, uint8_t first, const uint8_t *body, size_t len)
{
    uint8_t type = first >> 4;
    if (mqtt_codec_check_flags(first) < 0)
        return MQTT_RC_MALFORMED; /* [MQTT-2.2.2-2] */
    if (c->state == CONN_AWAIT_CONNECT) {
        if (type != MQTT_CONNECT)
            return MQTT_RC_PROTOCOL_ERROR; /* [MQTT-3.1.0-1] */
        return handle_connect(c, body, len);
    }
    switch (type) {
    case MQTT_CONNECT:
        return MQTT_RC_PROTOCOL_ERROR; /* [MQTT-3.1.0-2] */
    case MQTT_PUBLISH:
        return handle_publish(c, first, body, len);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return handle_puback(c, type, body, len);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return handle_subscribe(c, type, body, len);
    case MQTT_PINGREQ: {
        if (len != 0)
            return MQTT_RC_MALFORMED;
        uint8_t pkt[2];
        mqtt_codec_encode_pingresp(pkt, sizeof(pkt));
        conn_send(c, pkt, 2);
        return 0;
    }
    case MQTT_DISCONNECT:
        return handle_disconnect(c, body, len);
    case MQTT_AUTH:
        /* No enhanced authentication: AUTH after CONNECT is a protocol
         * error ([MQTT-4.12.0-1]). */
        return MQTT_RC_PROTOCOL_ERROR;
    default:
        /* CONNACK, SUBACK, UNSUBACK, PINGRESP: server-to-client only. */
        return MQTT_RC_PROTOCOL_ERROR;
    }
}

/* Deadlines are checked by the broker's sweep (every 250 ms), not by
 * socket read timeouts: a read timeout is re-armed by every byte, so a
 * client trickling one byte at a time could hold a connection for ever.
 * What counts is a whole control packet ([MQTT-3.1.2-24]), and before
 * CONNECT a fixed deadline from accept. */
static void check_deadlines(mqtt_broker_t *b, int64_t now)
{
    for (conn_t *c = b->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->state == CONN_AWAIT_CONNECT) {
            if (now - c->last_packet_ms >= (int64_t)b->cfg->connect_timeout * 1000) {
                b->stats.connect_refused++;
                conn_close(c, 0);
            }
        } else if (c->state == CONN_ACTIVE && c->keepalive > 0 &&
                   now - c->last_packet_ms >= (int64_t)c->keepalive * 1500) {
            b->stats.keepalive_timeouts++;
            conn_close(c, MQTT_RC_KEEPALIVE_TIMEOUT);
        }
    }
}

static void throttle_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_t *c = arg;
    c->throttled = false;
    conn_resume_read(c);
}

/* Takes one token of the connection's PUBLISH quota, or pauses reading
 * until the bucket has refilled one and returns false. */
static bool quota_take(conn_t *c)
{
    const config_t *cfg = c->broker->cfg;
    int64_t now = util_mono_us();
    if (c->tokens_at == 0) {
        c->tokens = cfg->publish_burst;
        c->tokens_at = now;
    }
    c->tokens += (double)(now - c->tokens_at) * cfg->publish_rate / 1e6;
    if (c->tokens > cfg->publish_burst)
        c->tokens = cfg->publish_burst;
    c->tokens_at = now;
    if (c->tokens >= 1) {
        c->tokens -= 1;
        return true;
    }
    if (c->throttle_timer == NULL)
        c->throttle_timer = evtimer_new(c->broker->base, throttle_cb, c);
    if (c->throttle_timer == NULL)
        return true; /* cannot wait: let it through rather than stall */
    int64_t wait_us = (int64_t)((1 - c->tokens) * 1e6 / cfg->publish_rate) + 1;
    struct timeval tv = {(time_t)(wait_us / 1000000), (suseconds_t)(wait_us % 1000000)};
    c->throttled = true;
    c->broker->throttled++;
    bufferevent_disable(c->bev, EV_READ);
    evtimer_add(c->throttle_timer, &tv);
    return false;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->refs++;
    while (c->state != CONN_CLOSED && !c->read_paused && !c->throttled) {
        uint8_t hdr[5];
        size_t have = evbuffer_get_length(in);
        if (have < 2)
            break;
        ev_ssize_t got = evbuffer_copyout(in, hdr, have < 5 ? have : 5);
        if (got < 2)
            break;
        uint8_t first;
        uint32_t remaining;
        size_t hlen;
        int rc = mqtt_codec_fixed_header(hdr, (size_t)got, &first, &remaining, &hlen);
        if (rc == -EAGAIN)
            break;
        if (rc < 0) {
            c->broker->stats.protocol_errors++;
            conn_close(c, MQTT_RC_MALFORMED);
            break;
        }
        size_t total = hlen + remaining;
        if (total > c->broker->cfg->max_packet_size) {
            /* [MQTT-3.2.2-? / 4.13]: over our Maximum Packet Size. */
            c->broker->stats.protocol_errors++;
            conn_close(c, MQTT_RC_PACKET_TOO_LARGE);
            break;
        }
        if (have < total)
            break;
        const uint8_t *pkt = evbuffer_pullup(in, (ev_ssize_t)total);
        if (pkt == NULL) {
            conn_close(c, MQTT_RC_UNSPECIFIED);
            break;
        }
        if ((first >> 4) == MQTT_PUBLISH && c->broker->cfg->publish_rate > 0 && !quota_take(c))
            break; /* throttled: resumed by the timer */
        rc = dispatch(c, first, pkt + hlen, remaining);
        evbuffer_drain(in, total);
        c->last_packet_ms = util_now_ms();
        if (rc != 0) {
            if (rc == MQTT_RC_MALFORMED || rc == MQTT_RC_PROTOCOL_ERROR)
                c->broker->stats.protocol_errors++;
            conn_close(c, (uint8_t)rc);
            break;
        }
    }
    conn_unref(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    conn_t *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return; /* the TLS handshake finished */
    if ((what & BEV_EVENT_ERROR) && c->ssl != NULL && c->state == CONN_AWAIT_CONNECT) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        c->broker->stats.protocol_errors++;
        c->broker->tls_failures++;
        char buf[160] = "";
        if (e)
            ERR_error_string_n(e, buf, sizeof(buf));
        log_debug("mqtt %s: TLS handshake failed: %s", c->peer, buf[0] ? buf : "closed");
    }
    /* EOF or a socket error: an unclean end unless DISCONNECT came first. */
    conn_close(c, 0);
}

/* Makes a connection of fd (plain when ssl is NULL). Takes ownership of
 * fd and ssl. */
static int conn_start(mqtt_broker_t *b, int fd, const char *peer, SSL *ssl)
{
    b->stats.accepted_total++;
    if (b->nconns >= b->cfg->max_connections || b->shutting_down) {
        b->stats.connect_refused++;
        evutil_closesocket(fd);
        return -EMFILE;
    }
    evutil_make_socket_nonblocking(fd);
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        return -ENOMEM;
    }
    if (ssl != NULL) {
        c->bev = bufferevent_openssl_socket_new(b->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (c->bev != NULL) {
            /* A client that drops the TCP connection without close_notify
             * is an ordinary unclean disconnect, not an error to report. */
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
            c->ssl = ssl;
        }
    } else {
        c->bev = bufferevent_socket_new(b->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (c->bev == NULL) {
        free(c);
        if (ssl)
            SSL_free(ssl);
        evutil_closesocket(fd);
        return -ENOMEM;
    }
    c->broker = b;
    c->state = CONN_AWAIT_CONNECT;
    c->refs = 1;
    c->problem_info = true;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->next = b->conns;
    if (b->conns)
        b->conns->prev = c;
    b->conns = c;
    b->nconns++;
    /* A whole maximum-size packet may sit in the input buffer, no more. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, (size_t)b->cfg->max_packet_size + 5);
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    c->last_packet_ms = util_now_ms(); /* the CONNECT deadline runs from here */
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return 0;
}

int mqtt_broker_adopt(mqtt_broker_t *b, int fd, const char *peer)
{
    return conn_start(b, fd, peer, NULL);
}

static void peer_name(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, len, "%s:%d", ip, port);
}

static void tls_accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    (void)lis;
    (void)salen;
    mqtt_broker_t *b = arg;
    char peer[64];
    peer_name(sa, peer, sizeof(peer));
    SSL *ssl = SSL_new(b->tls_ctx);
    if (ssl == NULL) {
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn_start(b, fd, peer, ssl);
}

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)lis;
    (void)salen;
    char peer[64];
    peer_name(sa, peer, sizeof(peer));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    mqtt_broker_adopt(arg, fd, peer);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mqtt_broker_t *b = arg;
    int64_t now = util_now_ms();
    check_deadlines(b, now);
    if (now - b->last_session_sweep >= 1000) {
        b->last_session_sweep = now;
        broker_sweep_sessions(b, now);
    }
}

/* Binds host:port for accept_fn. */
static int listen_on(mqtt_broker_t *b, const char *host, int port, evconnlistener_cb accept_fn,
                     struct evconnlistener **out)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        sl = sizeof(*in4);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*in6);
    } else {
        return -EINVAL;
    }
    errno = 0;
    struct evconnlistener *l =
        evconnlistener_new_bind(b->base, accept_fn, b, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                1024, (struct sockaddr *)&ss, (int)sl);
    if (l == NULL)
        return errno ? -errno : -EADDRINUSE;
    *out = l;
    return 0;
}

int mqtt_broker_listen_tls(mqtt_broker_t *b, const char *host, int port, struct ssl_ctx_st *ctx)
{
    if (b->tls_listener != NULL)
        return -EINVAL;
    b->tls_ctx = ctx;
    return listen_on(b, host, port, tls_accept_cb, &b->tls_listener);
}

int mqtt_broker_new(struct event_base *base, const config_t *cfg, const char *host, int port,
                    const mqtt_hooks_t *hooks, void *hooks_ctx, mqtt_broker_t **out)
{

    mqtt_broker_t *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->base = base;
    b->cfg = cfg;
    b->hooks = hooks;
    b->hooks_ctx = hooks_ctx;
    strmap_init(&b->sessions);
    strmap_init(&b->shared);
    strmap_init(&b->retained);
    strmap_init(&b->takeovers);
    int rc = topic_tree_new(&b->tree);
    if (rc < 0)
        goto fail;
    rc = listen_on(b, host, port, accept_cb, &b->listener);
    if (rc < 0)
        goto fail;
    b->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, b);
    if (b->sweep == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    struct timeval tv = {0, 250000};
    event_add(b->sweep, &tv);
    *out = b;
    return 0;
fail:
    if (b->listener)
        evconnlistener_free(b->listener);
    topic_tree_free(b->tree);
    strmap_fini(&b->sessions);
    free(b);
    return rc;
}

void mqtt_broker_free(mqtt_broker_t *b)
{
    if (b == NULL)
        return;
    b->shutting_down = true;
    if (b->listener)
        evconnlistener_free(b->listener);
    if (b->tls_listener)
        evconnlistener_free(b->tls_listener);
    if (b->sweep)
        event_free(b->sweep);
    while (b->conns) {
        conn_t *c = b->conns;
        /* Shutting down is not the client's fault: no will. */
        c->clean_disconnect = true;
        conn_close(c, MQTT_RC_SERVER_SHUTTING_DOWN);
    }
    while (b->lingering)
        closing_free(b->lingering);
    for (size_t i = 0; i < b->sessions.cap; i++) {
        if (b->sessions.slots[i].key) {
            session_t *s = b->sessions.slots[i].val;
            b->sessions.slots[i].key = NULL;
            session_free(s);
        }
    }
    strmap_fini(&b->sessions);
    for (size_t i = 0; i < b->shared.cap; i++) {
        if (b->shared.slots[i].key)
            shared_free(b->shared.slots[i].val);
    }
    strmap_fini(&b->shared);
    for (size_t i = 0; i < b->retained.cap; i++) {
        if (b->retained.slots[i].key)
            msg_unref(b->retained.slots[i].val);
    }
    strmap_fini(&b->retained);
    for (size_t i = 0; i < b->takeovers.cap; i++) {
        if (b->takeovers.slots[i].key)
            free(b->takeovers.slots[i].val);
    }
    strmap_fini(&b->takeovers);
    topic_tree_free(b->tree);
    free(b);
}

int mqtt_broker_publish(mqtt_broker_t *b, const char *topic, const uint8_t *payload, size_t len,
                        uint8_t qos, bool retain)
{
    size_t tl = strlen(topic);
    /* A topic a client could not decode would make the PUBLISH malformed. */
    if (!topic_name_valid(topic, tl, 65535, 65535) || !mqtt_codec_utf8_valid(topic, tl) || qos > 2)
        return -EINVAL;
    msg_t *m = msg_new(topic, tl, NULL, 0, payload, len, qos, retain);
    if (m == NULL)
        return -ENOMEM;
    if (retain)
        broker_retain(b, m);
    int n = broker_route(b, m, NULL);
    msg_unref(m);
    return n;
}

bool mqtt_broker_send(mqtt_broker_t *b, const char *client_id, const char *topic,
                      const uint8_t *payload, size_t len, uint8_t qos)
{
    session_t *s = session_find(b, client_id, strlen(client_id));
    if (s == NULL)
        return false;
    size_t tl = strlen(topic);
    if (!topic_name_valid(topic, tl, 65535, 65535) || !mqtt_codec_utf8_valid(topic, tl) || qos > 2)
        return false;
    int granted = session_match(s, topic, tl);
    if (granted < 0 || !session_may_see(s, topic, tl))
        return false;
    msg_t *m = msg_new(topic, tl, NULL, 0, payload, len, qos, false);
    if (m == NULL)
        return false;
    uint8_t q = qos < granted ? qos : (uint8_t)granted;
    bool ok = session_deliver(s, m, q, false);
    msg_unref(m);
    return ok;
}

int mqtt_broker_kick(mqtt_broker_t *b, const char *client_id, uint8_t reason, bool discard_session)
{
    session_t *s = session_find(b, client_id, strlen(client_id));
    if (s == NULL)
        return -ENOENT;
    if (s->conn) {
        conn_t *c = s->conn;
        if (discard_session)
            s->persistent = false; /* conn_close discards it */
        /* An administrative drop is not the device's doing: no will. */
        c->clean_disconnect = true;
        conn_close(c, reason);
    } else if (discard_session) {
        session_discard(s);
    }
    return 0;
}

size_t mqtt_broker_drop_retained(mqtt_broker_t *b, const char *prefix)
{
    size_t pl = strlen(prefix), n = 0;
    for (size_t i = 0; i < b->retained.cap;) {
        msg_t *m = b->retained.slots[i].key ? b->retained.slots[i].val : NULL;
        if (m != NULL && m->topic_len >= pl && memcmp(m->topic, prefix, pl) == 0) {
            strmap_del(&b->retained, m->topic, m->topic_len);
            msg_unref(m);
            n++;
            continue; /* the deletion may have moved another entry here */
        }
        i++;
    }
    return n;
}

void mqtt_broker_stats(const mqtt_broker_t *b, mqtt_stats_t *out)
{
    *out = b->stats;
    out->connections = b->nconns;
    out->sessions = b->sessions.count;
    out->subscriptions = topic_tree_count(b->tree);
}

void mqtt_broker_metrics(const mqtt_broker_t *b, struct evbuffer *buf)
{
    mqtt_stats_t s;
    mqtt_broker_stats(b, &s);
    const struct {
        const char *name, *type, *help;
        uint64_t v;
    } rows[] = {
        {"drover_mqtt_connections", "gauge", "Open MQTT connections", s.connections},
        {"drover_mqtt_sessions", "gauge", "MQTT sessions, online and offline", s.sessions},
        {"drover_mqtt_subscriptions", "gauge", "Active subscriptions", s.subscriptions},
        {"drover_mqtt_accepted_total", "counter", "TCP connections accepted", s.accepted_total},
        {"drover_mqtt_connect_refused_total", "counter", "CONNECTs refused", s.connect_refused},
        {"drover_mqtt_protocol_errors_total", "counter", "Connections closed for bad input",
         s.protocol_errors},
        {"drover_mqtt_acl_denied_total", "counter", "Publishes and subscriptions refused by ACL",
         s.acl_denied},
        {"drover_mqtt_messages_received_total", "counter", "PUBLISH packets received",
         s.msgs_received},
        {"drover_mqtt_messages_sent_total", "counter", "PUBLISH packets sent", s.msgs_sent},
        {"drover_mqtt_messages_dropped_total", "counter",
         "Messages dropped (queue full, slow consumer)", s.msgs_dropped},
        {"drover_mqtt_keepalive_timeouts_total", "counter", "Connections closed by keepalive",
         s.keepalive_timeouts},
        {"drover_mqtt_retained", "gauge", "Retained messages held", b->retained.count},
        {"drover_mqtt_throttled_total", "counter", "Times a client hit its publish quota",
         b->throttled},
        {"drover_mqtt_tls_handshake_failures_total", "counter", "TLS handshakes that failed",
         b->tls_failures},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
        evbuffer_add_printf(buf, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", rows[i].name,
                            rows[i].help, rows[i].name, rows[i].type, rows[i].name,
                            (unsigned long long)rows[i].v);
}

void conn_ack(conn_t *c, uint8_t type, uint16_t packet_id, uint8_t reason)
{
    if (c->ack_head == NULL) {
        uint8_t pkt[8];
        int n = mqtt_codec_encode_ack(pkt, sizeof(pkt), type, c->version, packet_id, reason);
        if (n > 0)
            conn_send(c, pkt, (size_t)n);
        return;
    }
    mqtt_ticket_t *t = conn_ticket_new(c, type, packet_id);
    if (t != NULL)
        mqtt_ticket_complete(t, reason, NULL);
}

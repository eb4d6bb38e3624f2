/*
 * fuzz_handlers: the broker's per-packet handlers (src/mqtt/broker.c,
 * session.c, handle_*.c) driven through real sockets, the way a client
 * reaches them.
 *
 * One event_base lives for the whole run (LLVMFuzzerInitialize); each
 * input gets a fresh mqtt_broker_t, so that nothing an input leaves behind
 * (retained messages, takeover counts, offline sessions) changes how the
 * next one runs, and every allocation an input causes is freed by its end,
 * which lets libFuzzer's per-input leak check name the input that leaked.
 * An input is a script of operations on up to NCLIENTS client connections;
 * a connection is a socketpair(2) whose server end is handed to
 * mqtt_broker_adopt and whose client end the harness writes and drains:
 *
 *   op = one byte: kind = op & 7, client = (op >> 3) % NCLIENTS, aux = op >> 5
 *   0 WRITE   next byte n, then n bytes written to the client
 *   1 WRITE   next two bytes n (big-endian), then n bytes
 *   2 WRITE   every remaining byte of the input
 *   3 CLOSE   the client end (the server sees EOF; an unclean end: wills)
 *   4 KICK    mqtt_broker_kick of the aux-th client id seen so far;
 *             the session is discarded when bit 3 of op is set
 *   5 PUBLISH next byte n, n bytes of topic: mqtt_broker_publish, QoS
 *             aux & 3, retained when aux & 4
 *   6 aux 0-3 ACKS: complete the pending tickets now, not on the next tick
 *     aux 4-5 SEND: next byte n, n bytes of topic: mqtt_broker_send to the
 *             newest client id seen, QoS aux & 1
 *     aux 6-7 RESTART: mqtt_broker_free with everything live, then a new
 *             broker (clients see the shutdown and reconnect on next WRITE)
 *   7 CONNECT write canned CONNECT number aux (make_seeds.py lists them)
 *
 * A WRITE to a client that is closed (by the script or by the server)
 * opens a fresh connection first, so one input can reconnect, take a
 * session over, resume a persistent session, and have one client's
 * PUBLISH routed to another's subscription. After every operation the
 * loop runs (EVLOOP_NONBLOCK) until quiescent, bounded by MAX_SPIN
 * iterations, and whatever the server wrote is read back and checked.
 *
 * Hooks: authenticate confines client ids starting with "dev" to
 * "devices/<id>/", gives every other id except those starting with "root"
 * the deny prefix "secret/", and refuses usernames "deny" (0x87) and "bad"
 * (0x86). The publish hook routes, except topics ending in "/bad"
 * (refused 0x99) and "/telemetry" (MQTT_HOOK_PENDING; the tickets are
 * completed from a zero-timeout timer on a later iteration, refused 0x97
 * when the payload starts with '!'); topics ending in "/echo" are also
 * published back by the server from inside the hook. The subscribed hook
 * sends a message to the subscriber (mqtt_broker_send) when the filter,
 * without wildcards, ends in "/sync".
 *
 * Oracles (abort on violation):
 *   - the server's output is a stream of well-formed server-to-client
 *     packets: CONNACK first and once, nothing after a refusing CONNACK or
 *     a DISCONNECT; every PUBLISH parses (by a parser written here, not
 *     the codec's client-side one), its properties are PUBLISH properties,
 *     a topic alias is one the client allowed and resolves, the topic is
 *     valid and inside the client's ACL prefix and outside its deny
 *     prefix, and no packet exceeds the client's Maximum Packet Size;
 *   - hooks see only what the header promises: a known live user, topics
 *     that passed the ACL and the topic limits, a ticket iff QoS > 0;
 *   - connected/disconnected pair up with successful authentications;
 *   - once the loop is quiet, a connection the server keeps open has had
 *     an answer to every packet it wrote that needs one (PUBACK/PUBREC
 *     for QoS 1/2, PUBCOMP, PUBREL, SUBACK, UNSUBACK, PINGRESP);
 *   - mqtt_broker_publish refuses what it cannot send (QoS 3, wildcards,
 *     empty or non-UTF-8 topics) with -EINVAL;
 *   - at the end of every input, once all clients are closed and every
 *     client id kicked with its session discarded, the broker reports no
 *     connection, session or subscription left.
 * DROVER_FUZZ_TRACE=1 in the environment prints the operations and every
 * packet the server sends, to see what a corpus file does.
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "core/config.h"
#include "fuzz_common.h"
#include "mqtt/broker.h"
#include "mqtt/codec.h"
#include "mqtt/topic.h"

#define NCLIENTS 3
#define MAX_SPIN 200
#define BUF_CAP (256 * 1024) /* bytes kept per client, each direction */
#define MAX_RECS 64
#define MAX_ALIASES 64 /* topic aliases tracked per connection */
#define DENY_PREFIX "secret/"

/* ---- Harness state ---------------------------------------------------- */

/* One successful authentication; the broker's `user` pointer. */
struct rec {
    char *id; /* NUL-terminated copy of the client id */
    char prefix[128];
    char deny[64];
    bool live;      /* authenticated, disconnected hook not yet called */
    bool connected; /* connected hook called */
};

struct client {
    int fd;          /* -1 = closed */
    unsigned serial; /* in the peer name "fuzz:<serial>" */
    struct rec *rec; /* the authentication of this connection, if any */
    /* What the client wrote, parsed as the server will parse it, to know
     * how many answers the server owes (see sent_packet). */
    uint8_t *in;
    size_t inlen;
    bool sent_connect;
    bool desync; /* wrote something the server must close the connection for */
    unsigned owed, answered;
    uint16_t alias_max;  /* Topic Alias Maximum the client announced */
    uint32_t max_packet; /* Maximum Packet Size the client announced; 0 = none */
    /* The server's output not yet checked, and what it told us so far. */
    uint8_t *out;
    size_t outlen;
    bool overflow;
    bool got_connack;
    bool ended; /* refusing CONNACK or DISCONNECT seen: nothing may follow */
    bool eof;   /* the server closed its end */
    uint8_t version;
    char *aliases[MAX_ALIASES + 1]; /* topic of each alias the server set */
};

struct pending {
    mqtt_ticket_t *t;
    uint8_t reason;
};

static struct event_base *base;
static config_t cfg;
static mqtt_broker_t *broker;
static struct event *ticket_ev;
static struct pending *pend;
static size_t npend, pend_cap;
static struct rec *recs[MAX_RECS];
static size_t nrecs;
static struct client clients[NCLIENTS];
static unsigned serial;
static bool trace; /* DROVER_FUZZ_TRACE=1: print what the server sends */

static bool has_prefix(const char *s, size_t len, const char *pre)
{
    size_t n = strlen(pre);
    return len >= n && memcmp(s, pre, n) == 0;
}

static bool has_suffix(const char *s, size_t len, const char *suf)
{
    size_t n = strlen(suf);
    return len >= n && memcmp(s + len - n, suf, n) == 0;
}

/* ---- Hooks -------------------------------------------------------------- */

static struct rec *user_rec(void *user)
{
    for (size_t i = 0; i < nrecs; i++) {
        if (recs[i] == user)
            return recs[i];
    }
    CHECK(!"hook called with a user the authenticate hook never gave out");
    return NULL;
}

static uint8_t hook_authenticate(void *ctx, const mqtt_auth_t *a, mqtt_grant_t *grant)
{
    (void)ctx;
    CHECK(a->version == MQTT_V311 || a->version == MQTT_V5);
    CHECK(a->client_id != NULL && a->client_id_len > 0);
    CHECK(mqtt_codec_utf8_valid(a->client_id, a->client_id_len));
    CHECK(a->peer != NULL && strncmp(a->peer, "fuzz:", 5) == 0);
    if (!a->has_username)
        CHECK(a->username_len == 0);
    if (!a->has_password)
        CHECK(a->password_len == 0);
    if (a->has_username && a->username_len == 4 && memcmp(a->username, "deny", 4) == 0)
        return MQTT_RC_NOT_AUTHORIZED;
    if (a->has_username && a->username_len == 3 && memcmp(a->username, "bad", 3) == 0)
        return MQTT_RC_BAD_USER_OR_PASSWORD;
    if (nrecs == MAX_RECS)
        return MQTT_RC_SERVER_BUSY;
    struct rec *r = calloc(1, sizeof(*r));
    CHECK(r != NULL);
    r->id = malloc(a->client_id_len + 1);
    CHECK(r->id != NULL);
    memcpy(r->id, a->client_id, a->client_id_len);
    r->id[a->client_id_len] = '\0';
    if (has_prefix(a->client_id, a->client_id_len, "dev")) {
        int n = snprintf(r->prefix, sizeof(r->prefix), "devices/%.*s/", (int)a->client_id_len,
                         a->client_id);
        if (n < 0 || (size_t)n >= sizeof(r->prefix)) {
            free(r->id);
            free(r);
            return MQTT_RC_CLIENT_ID_INVALID;
        }
    } else if (!has_prefix(a->client_id, a->client_id_len, "root")) {
        snprintf(r->deny, sizeof(r->deny), "%s", DENY_PREFIX);
    }
    r->live = true;
    recs[nrecs++] = r;
    /* Which of our connections this is: the peer names it. */
    for (int k = 0; k < NCLIENTS; k++) {
        char peer[32];
        snprintf(peer, sizeof(peer), "fuzz:%u", clients[k].serial);
        if (clients[k].fd >= 0 && strcmp(peer, a->peer) == 0)
            clients[k].rec = r;
    }
    snprintf(grant->acl_prefix, sizeof(grant->acl_prefix), "%s", r->prefix);
    snprintf(grant->deny_prefix, sizeof(grant->deny_prefix), "%s", r->deny);
    grant->user = r;
    return 0;
}

static void hook_connected(void *ctx, void *user)
{
    (void)ctx;
    struct rec *r = user_rec(user);
    CHECK(r->live && !r->connected);
    r->connected = true;
}

static void hook_disconnected(void *ctx, void *user, bool clean)
{
    (void)ctx;
    (void)clean;
    struct rec *r = user_rec(user);
    CHECK(r->live);
    r->live = false;
}

static void pend_push(mqtt_ticket_t *t, uint8_t reason)
{
    if (npend == pend_cap) {
        size_t cap = pend_cap ? pend_cap * 2 : 16;
        struct pending *n = realloc(pend, cap * sizeof(*n));
        CHECK(n != NULL);
        pend = n;
        pend_cap = cap;
    }
    pend[npend++] = (struct pending){t, reason};
    struct timeval zero = {0, 0};
    evtimer_add(ticket_ev, &zero);
}

static void complete_pending(void)
{
    /* Completing can close a connection (3.1.1 and a transient refusal);
     * nothing here re-enters the hook, but take the list first anyway. */
    struct pending *list = pend;
    size_t n = npend;
    pend = NULL;
    npend = pend_cap = 0;
    for (size_t i = 0; i < n; i++)
        mqtt_ticket_complete(list[i].t, list[i].reason, list[i].reason ? "fuzz refusal" : NULL);
    free(list);
}

static void ticket_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    complete_pending();
}

/* Whether topic is one the client r may publish to or hear from. */
static bool topic_allowed(const struct rec *r, const char *topic, size_t len)
{
    size_t pl = strlen(r->prefix);
    if (pl > 0 && !(len > pl && memcmp(topic, r->prefix, pl) == 0))
        return false;
    return r->deny[0] == '\0' || !has_prefix(topic, len, r->deny);
}

static int hook_publish(void *ctx, void *user, const char *topic, size_t topic_len,
                        const uint8_t *payload, size_t payload_len, uint8_t qos,
                        mqtt_ticket_t *ticket, const char **reason_string)
{
    (void)ctx;
    struct rec *r = user_rec(user);
    CHECK(r->live && r->connected);
    CHECK(qos <= 2);
    CHECK((ticket != NULL) == (qos > 0));
    CHECK(topic_name_valid(topic, topic_len, cfg.max_topic_len, cfg.max_topic_depth));
    CHECK(mqtt_codec_utf8_valid(topic, topic_len));
    CHECK(topic_allowed(r, topic, topic_len));
    CHECK(payload_len == 0 || payload != NULL);
    if (has_suffix(topic, topic_len, "/bad")) {
        *reason_string = "fuzz: refused by the hook";
        return MQTT_RC_PAYLOAD_FORMAT_INVALID;
    }
    if (has_suffix(topic, topic_len, "/echo") && topic_len < 512) {
        char t[512];
        memcpy(t, topic, topic_len);
        t[topic_len] = '\0';
        int n = mqtt_broker_publish(broker, t, payload, payload_len, qos, false);
        CHECK(n >= 0);
    }
    if (has_suffix(topic, topic_len, "/telemetry")) {
        if (ticket != NULL)
            pend_push(ticket, payload_len > 0 && payload[0] == '!' ? MQTT_RC_QUOTA_EXCEEDED : 0);
        return MQTT_HOOK_PENDING;
    }
    return MQTT_HOOK_ROUTE;
}

static void hook_subscribed(void *ctx, void *user, const char *filter, size_t filter_len)
{
    (void)ctx;
    struct rec *r = user_rec(user);
    CHECK(r->live && r->connected);
    CHECK(topic_filter_valid(filter, filter_len, cfg.max_topic_len, cfg.max_topic_depth));
    if (has_suffix(filter, filter_len, "/sync") && filter_len < 512 &&
        topic_name_valid(filter, filter_len, cfg.max_topic_len, cfg.max_topic_depth)) {
        char t[512];
        memcpy(t, filter, filter_len);
        t[filter_len] = '\0';
        (void)mqtt_broker_send(broker, r->id, t, (const uint8_t *)"sync", 4, 1);
    }
}

static const mqtt_hooks_t hooks = {
    .authenticate = hook_authenticate,
    .connected = hook_connected,
    .disconnected = hook_disconnected,
    .publish = hook_publish,
    .subscribed = hook_subscribed,
};

/* ---- Checking what the server sends ------------------------------------- */

struct rd {
    const uint8_t *p;
    size_t left;
};

static bool rd_take(struct rd *r, size_t n, const uint8_t **out)
{
    if (r->left < n)
        return false;
    *out = r->p;
    r->p += n;
    r->left -= n;
    return true;
}

static bool rd_varint(struct rd *r, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        const uint8_t *b;
        if (!rd_take(r, 1, &b))
            return false;
        *v |= (uint32_t)(b[0] & 0x7F) << (7 * i);
        if ((b[0] & 0x80) == 0)
            return true;
    }
    return false;
}

/* A two-byte length and that many bytes. */
static bool rd_lstr(struct rd *r, const uint8_t **s, size_t *len)
{
    const uint8_t *l;
    if (!rd_take(r, 2, &l))
        return false;
    *len = (size_t)(l[0] << 8 | l[1]);
    return rd_take(r, *len, s);
}

static bool rd_utf8(struct rd *r)
{
    const uint8_t *s;
    size_t n;
    return rd_lstr(r, &s, &n) && mqtt_codec_utf8_valid((const char *)s, n);
}

static void check_publish_out(struct client *c, uint8_t first, const uint8_t *body, uint32_t len)
{
    struct rd r = {body, len};
    uint8_t qos = (first >> 1) & 3;
    CHECK(qos <= 2);
    CHECK(!(qos == 0 && (first & 0x08)));
    const uint8_t *t;
    size_t tl;
    CHECK(rd_lstr(&r, &t, &tl));
    CHECK(mqtt_codec_utf8_valid((const char *)t, tl));
    if (qos > 0) {
        const uint8_t *id;
        CHECK(rd_take(&r, 2, &id) && (id[0] | id[1]) != 0);
    }
    uint16_t alias = 0;
    if (c->version == MQTT_V5) {
        uint32_t plen;
        CHECK(rd_varint(&r, &plen) && plen <= r.left);
        struct rd pr = {r.p, plen};
        r.p += plen;
        r.left -= plen;
        uint64_t seen = 0;
        while (pr.left > 0) {
            uint32_t id;
            const uint8_t *v;
            CHECK(rd_varint(&pr, &id) && id < 64);
            /* Only Subscription Identifier and User Property repeat. */
            if (id != MQTT_PROP_SUBSCRIPTION_ID && id != MQTT_PROP_USER_PROPERTY)
                CHECK((seen & (UINT64_C(1) << id)) == 0);
            seen |= UINT64_C(1) << id;
            switch (id) {
            case MQTT_PROP_PAYLOAD_FORMAT:
                CHECK(rd_take(&pr, 1, &v) && v[0] <= 1);
                break;
            case MQTT_PROP_MESSAGE_EXPIRY:
                CHECK(rd_take(&pr, 4, &v));
                break;
            case MQTT_PROP_CONTENT_TYPE:
            case MQTT_PROP_RESPONSE_TOPIC:
                CHECK(rd_utf8(&pr));
                break;
            case MQTT_PROP_CORRELATION_DATA: {
                const uint8_t *s;
                size_t n;
                CHECK(rd_lstr(&pr, &s, &n));
                break;
            }
            case MQTT_PROP_SUBSCRIPTION_ID: {
                uint32_t sid;
                CHECK(rd_varint(&pr, &sid) && sid != 0);
                break;
            }
            case MQTT_PROP_TOPIC_ALIAS:
                CHECK(rd_take(&pr, 2, &v));
                alias = (uint16_t)(v[0] << 8 | v[1]);
                /* [MQTT-3.3.2-9]: never above what the client allowed. */
                CHECK(alias != 0 && alias <= c->alias_max);
                break;
            case MQTT_PROP_USER_PROPERTY:
                CHECK(rd_utf8(&pr) && rd_utf8(&pr));
                break;
            default:
                CHECK(!"server sent a property that has no place in PUBLISH");
            }
        }
    }
    /* Resolve the alias: an empty topic uses it, a topic (re)defines it. */
    const char *topic = (const char *)t;
    if (alias != 0 && tl == 0) {
        if (alias > MAX_ALIASES)
            return; /* not tracked */
        CHECK(c->aliases[alias] != NULL);
        topic = c->aliases[alias];
        tl = strlen(topic);
    } else if (alias != 0 && alias <= MAX_ALIASES) {
        free(c->aliases[alias]);
        c->aliases[alias] = strndup(topic, tl);
        CHECK(c->aliases[alias] != NULL);
    }
    CHECK(topic_name_valid(topic, tl, 65535, 65535));
    if (c->rec != NULL)
        CHECK(topic_allowed(c->rec, topic, tl));
}

static void check_packet(struct client *c, uint8_t first, const uint8_t *body, uint32_t len,
                         size_t total)
{
    uint8_t type = first >> 4;
    if (trace)
        fprintf(stderr, "  client %d <- type %u flags %x len %u%s\n", (int)(c - clients), type,
                first & 0x0F, len,
                type == MQTT_CONNACK && len >= 2 ? (body[1] ? " (refused)" : " (accepted)") : "");
    CHECK(!c->ended);
    if (!c->got_connack)
        CHECK(type == MQTT_CONNACK);
    if (c->max_packet != 0 && type != MQTT_CONNACK)
        CHECK(total <= c->max_packet); /* [MQTT-3.1.2-24] */
    switch (type) {
    case MQTT_CONNACK:
        CHECK(!c->got_connack);
        CHECK(mqtt_codec_check_flags(first) == 0);
        CHECK(len >= 2);
        CHECK(body[0] <= 1);
        c->got_connack = true;
        if (len == 2) {
            c->version = MQTT_V311;
            CHECK(body[1] <= MQTT311_CONNACK_NOT_AUTHORIZED);
        } else {
            c->version = MQTT_V5;
            CHECK(body[1] == 0 || body[1] >= 0x80);
        }
        if (body[1] != 0) {
            CHECK(body[0] == 0); /* no session present on a refusal */
            c->ended = true;
        }
        break;
    case MQTT_PUBLISH:
        check_publish_out(c, first, body, len);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: {
        c->answered++;
        CHECK(mqtt_codec_check_flags(first) == 0);
        mqtt_ack_t a;
        CHECK(mqtt_codec_decode_ack(body, len, c->version, &a) == 0);
        break;
    }
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        c->answered++;
        CHECK(mqtt_codec_check_flags(first) == 0);
        CHECK(len >= 2 && (body[0] | body[1]) != 0);
        if (c->version == MQTT_V5)
            CHECK(len >= 4); /* id, properties, at least one code */
        break;
    case MQTT_PINGRESP:
        c->answered++;
        CHECK(first == MQTT_PINGRESP << 4 && len == 0);
        break;
    case MQTT_DISCONNECT:
        CHECK(c->version == MQTT_V5);
        CHECK(mqtt_codec_check_flags(first) == 0);
        CHECK(len >= 1 && body[0] >= 0x80);
        c->ended = true;
        break;
    default:
        CHECK(!"server sent a client-to-server packet type");
    }
}

/* Checks every whole packet at the start of c->out and drops it. */
static void check_output(struct client *c)
{
    size_t pos = 0;
    while (!c->overflow) {
        uint8_t first;
        uint32_t rem;
        size_t hl;
        int rc = mqtt_codec_fixed_header(c->out + pos, c->outlen - pos, &first, &rem, &hl);
        if (rc == -EAGAIN)
            break;
        CHECK(rc == 0);
        if (c->outlen - pos - hl < rem)
            break;
        check_packet(c, first, c->out + pos + hl, rem, hl + rem);
        pos += hl + rem;
    }
    if (pos > 0) {
        memmove(c->out, c->out + pos, c->outlen - pos);
        c->outlen -= pos;
    }
}

/* Reads what the server wrote to client c. Returns whether any came. */
static bool drain(struct client *c)
{
    bool any = false;
    if (c->fd < 0)
        return false;
    for (;;) {
        uint8_t buf[16384];
        ssize_t n = read(c->fd, buf, sizeof(buf));
        if (n == 0)
            c->eof = true;
        if (n <= 0)
            break;
        any = true;
        if (c->overflow)
            continue;
        if (c->outlen + (size_t)n > BUF_CAP) {
            c->overflow = true; /* stop checking this connection */
            continue;
        }
        memcpy(c->out + c->outlen, buf, (size_t)n);
        c->outlen += (size_t)n;
        check_output(c);
    }
    return any;
}

/* Runs the loop until nothing moves for a few iterations. */
static void spin(void)
{
    int idle = 0;
    for (int i = 0; i < MAX_SPIN && idle < 3; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        bool any = false;
        for (int k = 0; k < NCLIENTS; k++)
            any |= drain(&clients[k]);
        idle = any || npend > 0 ? 0 : idle + 1;
    }
}

/* ---- Clients ------------------------------------------------------------ */

/* One whole packet the client wrote, seen as the server's read loop sees
 * it. Packets the server answers one for one: PUBLISH QoS 1/2 (PUBACK,
 * PUBREC), PUBREL (PUBCOMP), PUBREC (PUBREL, unless it refuses the message
 * with a v5 reason >= 0x80, which ends the flow), SUBSCRIBE, UNSUBSCRIBE,
 * PINGREQ. Anything the server must close the connection for (not CONNECT
 * first, a second CONNECT, reserved flags, QoS 3, over max_packet_size)
 * ends the bookkeeping: the connection is going away. */
static void sent_packet(struct client *c, uint8_t first, const uint8_t *body, size_t len)
{
    uint8_t type = first >> 4;
    if (!c->sent_connect) {
        mqtt_connect_t ck;
        c->sent_connect = true;
        if (type != MQTT_CONNECT || mqtt_codec_decode_connect(body, len, &ck) < 0) {
            c->desync = true;
            return;
        }
        if (ck.version == MQTT_V5) {
            c->alias_max = ck.props.topic_alias_max;
            c->max_packet = ck.props.max_packet_size;
        }
        return;
    }
    if (mqtt_codec_check_flags(first) < 0 || type == MQTT_CONNECT) {
        c->desync = true;
        return;
    }
    switch (type) {
    case MQTT_PUBLISH:
        if (((first >> 1) & 3) == 3)
            c->desync = true;
        else if (((first >> 1) & 3) != 0)
            c->owed++;
        break;
    case MQTT_PUBREC:
        if (!(c->version == MQTT_V5 && len >= 3 && body[2] >= 0x80))
            c->owed++;
        break;
    case MQTT_PUBREL:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
    case MQTT_PINGREQ:
        c->owed++;
        break;
    default:
        break;
    }
}

static void track_written(struct client *c, const uint8_t *p, size_t n)
{
    if (c->desync)
        return;
    if (c->inlen + n > BUF_CAP) {
        c->desync = true;
        return;
    }
    memcpy(c->in + c->inlen, p, n);
    c->inlen += n;
    size_t pos = 0;
    while (!c->desync) {
        uint8_t first;
        uint32_t rem;
        size_t hl;
        int rc = mqtt_codec_fixed_header(c->in + pos, c->inlen - pos, &first, &rem, &hl);
        if (rc == -EAGAIN)
            break;
        if (rc < 0 || hl + rem > cfg.max_packet_size) {
            c->desync = true;
            break;
        }
        if (c->inlen - pos < hl + rem)
            break;
        sent_packet(c, first, c->in + pos + hl, rem);
        pos += hl + rem;
    }
    memmove(c->in, c->in + pos, c->inlen - pos);
    c->inlen -= pos;
}

/* Once the loop is quiet, a connection the server still holds open has
 * had every packet it wrote handled: each one that needs an answer has
 * had it. A packet left unanswered here sits in the server's input
 * buffer with nothing to wake the read loop for it. */
static void check_answered(void)
{
    for (int k = 0; k < NCLIENTS; k++) {
        struct client *c = &clients[k];
        CHECK(c->answered <= c->owed || c->desync || c->overflow);
        if (c->fd < 0 || c->eof || c->ended || c->desync || c->overflow || !c->got_connack)
            continue;
        if (c->answered != c->owed)
            fprintf(stderr, "client %d: %u packets written that need an answer, %u answered\n", k,
                    c->owed, c->answered);
        CHECK(c->answered == c->owed);
    }
}

static void client_reset(struct client *c)
{
    c->rec = NULL;
    c->inlen = 0;
    c->sent_connect = false;
    c->desync = false;
    c->owed = c->answered = 0;
    c->alias_max = 0;
    c->max_packet = 0;
    c->outlen = 0;
    c->overflow = false;
    c->got_connack = false;
    c->ended = false;
    c->eof = false;
    c->version = 0;
    for (int i = 0; i <= MAX_ALIASES; i++) {
        free(c->aliases[i]);
        c->aliases[i] = NULL;
    }
}

static void client_open(struct client *c)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    client_reset(c);
    c->serial = ++serial;
    c->fd = sv[0];
    char peer[32];
    snprintf(peer, sizeof(peer), "fuzz:%u", c->serial);
    CHECK(mqtt_broker_adopt(broker, sv[1], peer) == 0);
}

static void client_close(struct client *c)
{
    if (c->fd < 0)
        return;
    drain(c);
    close(c->fd);
    c->fd = -1;
    spin();
}

static void client_write(struct client *c, const uint8_t *p, size_t n)
{
    /* Writing to a connection the server has closed reconnects. */
    if (c->fd >= 0 && c->eof)
        client_close(c);
    if (c->fd < 0)
        client_open(c);
    for (int tries = 0; n > 0 && tries < 64; tries++) {
        ssize_t w = write(c->fd, p, n);
        if (w > 0) {
            track_written(c, p, (size_t)w);
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            break; /* the server closed: EPIPE */
        spin();
    }
    spin();
}

/* Canned CONNECT packets (op 7), so that scripts reach the interesting
 * states without the fuzzer having to invent a CONNECT first; generated
 * by make_seeds.py, which describes them. */
static const uint8_t connect_v311_dev1[] = {0x10, 0x10, 0x00, 0x04, 'M',  'Q', 'T', 'T', 0x04,
                                            0x02, 0x00, 0x3C, 0x00, 0x04, 'd', 'e', 'v', '1'};
static const uint8_t connect_v311_dev1_persist[] = {0x10, 0x10, 0x00, 0x04, 'M',  'Q',
                                                    'T',  'T',  0x04, 0x00, 0x00, 0x3C,
                                                    0x00, 0x04, 'd',  'e',  'v',  '1'};
static const uint8_t connect_v5_dev2_expiry[] = {0x10, 0x16, 0x00, 0x04, 'M',  'Q',  'T',  'T',
                                                 0x05, 0x02, 0x00, 0x3C, 0x05, 0x11, 0x00, 0x00,
                                                 0x00, 0x3C, 0x00, 0x04, 'd',  'e',  'v',  '2'};
static const uint8_t connect_v5_app_will[] = {
    0x10, 0x3B, 0x00, 0x04, 'M',  'Q',  'T',  'T',  0x05, 0x0E, 0x00, 0x3C, 0x08, 0x11, 0x00, 0x00,
    0x00, 0x3C, 0x22, 0x00, 0x08, 0x00, 0x03, 'a',  'p',  'p',  0x07, 0x18, 0x00, 0x00, 0x00, 0x05,
    0x01, 0x01, 0x00, 0x13, 'd',  'e',  'v',  'i',  'c',  'e',  's',  '/',  'd',  'e',  'v',  '1',
    '/',  's',  't',  'a',  't',  'u',  's',  0x00, 0x04, 'g',  'o',  'n',  'e'};
static const uint8_t connect_v311_app_will[] = {
    0x10, 0x1E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00, 0x3C, 0x00, 0x03, 'a', 'p',
    'p',  0x00, 0x08, 'a',  'p', 'p', '/', 'w', 'i',  'l',  'l',  0x00, 0x03, 'b',  'y', 'e'};
static const uint8_t connect_v5_assigned[] = {0x10, 0x0D, 0x00, 0x04, 'M',  'Q',  'T', 'T',
                                              0x05, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00};
static const uint8_t connect_v311_deny[] = {0x10, 0x16, 0x00, 0x04, 'M',  'Q',  'T', 'T',
                                            0x04, 0x82, 0x00, 0x3C, 0x00, 0x04, 'd', 'e',
                                            'v',  '1',  0x00, 0x04, 'd',  'e',  'n', 'y'};
static const uint8_t connect_v5_dev1_small[] = {
    0x10, 0x1E, 0x00, 0x04, 'M',  'Q',  'T',  'T',  0x05, 0x02, 0x00, 0x3C, 0x0D, 0x21, 0x00, 0x01,
    0x27, 0x00, 0x00, 0x00, 0x40, 0x22, 0x00, 0x04, 0x17, 0x00, 0x00, 0x04, 'd',  'e',  'v',  '1'};
static const struct {
    const uint8_t *p;
    size_t n;
} canned[8] = {
    {connect_v311_dev1, sizeof(connect_v311_dev1)},
    {connect_v311_dev1_persist, sizeof(connect_v311_dev1_persist)},
    {connect_v5_dev2_expiry, sizeof(connect_v5_dev2_expiry)},
    {connect_v5_app_will, sizeof(connect_v5_app_will)},
    {connect_v311_app_will, sizeof(connect_v311_app_will)},
    {connect_v5_assigned, sizeof(connect_v5_assigned)},
    {connect_v311_deny, sizeof(connect_v311_deny)},
    {connect_v5_dev1_small, sizeof(connect_v5_dev1_small)},
};

/* ---- The broker's life -------------------------------------------------- */

static void broker_start(void)
{
    CHECK(mqtt_broker_new(base, &cfg, "127.0.0.1", 0, &hooks, NULL, &broker) == 0);
}

/* Frees the broker with whatever is live; every authenticated client must
 * hear of its end, and completing tickets afterwards must be harmless. */
static void broker_stop(void)
{
    mqtt_broker_free(broker);
    broker = NULL;
    complete_pending();
    spin();
    for (size_t i = 0; i < nrecs; i++)
        CHECK(!recs[i]->live);
}

static void free_recs(void)
{
    for (int k = 0; k < NCLIENTS; k++)
        clients[k].rec = NULL;
    for (size_t i = 0; i < nrecs; i++) {
        free(recs[i]->id);
        free(recs[i]);
        recs[i] = NULL;
    }
    nrecs = 0;
}

static void teardown(void)
{
    for (int k = 0; k < NCLIENTS; k++) {
        if (clients[k].fd >= 0)
            close(clients[k].fd);
        clients[k].fd = -1;
        client_reset(&clients[k]);
        free(clients[k].out);
        clients[k].out = NULL;
        free(clients[k].in);
        clients[k].in = NULL;
    }
    complete_pending();
    mqtt_broker_free(broker);
    broker = NULL;
    event_free(ticket_ev);
    /* Bufferevents still flushing a goodbye are freed with the base. */
    event_base_free(base);
    base = NULL;
    free_recs();
    libevent_global_shutdown();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* The server writes to sockets whose client end may be closed. */
    signal(SIGPIPE, SIG_IGN);
    trace = getenv("DROVER_FUZZ_TRACE") != NULL;
    log_set_level(LOG_LEVEL_ERROR);
    config_defaults(&cfg);
    /* Small limits, so inputs of a few KB reach them: backpressure on
     * pending acks, the offline queue (count and bytes), the subscription
     * cap, retained messages, topic aliases, the packet size cap, topic
     * length and depth. */
    cfg.max_packet_size = 2048;
    cfg.max_inflight = 4;
    cfg.receive_maximum = 4;
    cfg.max_queued = 8;
    cfg.max_queued_bytes = 4096;
    cfg.max_subscriptions = 8;
    cfg.max_retained = 8;
    cfg.topic_alias_max = 4;
    cfg.max_topic_len = 128;
    cfg.max_topic_depth = 8;
    cfg.max_keepalive = 300;
    snprintf(cfg.deny_subscribe, sizeof(cfg.deny_subscribe), "forbidden/#, $SYS/#");
    base = event_base_new();
    CHECK(base != NULL);
    ticket_ev = evtimer_new(base, ticket_cb, NULL);
    CHECK(ticket_ev != NULL);
    /* The canned CONNECTs are what they claim to be. */
    for (size_t k = 0; k < sizeof(canned) / sizeof(canned[0]); k++) {
        uint8_t first;
        uint32_t rem;
        size_t hl;
        mqtt_connect_t ck;
        CHECK(mqtt_codec_fixed_header(canned[k].p, canned[k].n, &first, &rem, &hl) == 0);
        CHECK(first == MQTT_CONNECT << 4 && hl + rem == canned[k].n);
        CHECK(mqtt_codec_decode_connect(canned[k].p + hl, rem, &ck) == 0);
    }
    for (int k = 0; k < NCLIENTS; k++) {
        clients[k].fd = -1;
        clients[k].out = malloc(BUF_CAP);
        clients[k].in = malloc(BUF_CAP);
        CHECK(clients[k].out != NULL && clients[k].in != NULL);
    }
    atexit(teardown);
    return 0;
}

/* Closes everything the input opened and checks nothing is left. */
static void finish_input(void)
{
    for (int k = 0; k < NCLIENTS; k++)
        client_close(&clients[k]);
    complete_pending();
    spin();
    for (size_t i = 0; i < nrecs; i++)
        (void)mqtt_broker_kick(broker, recs[i]->id, MQTT_RC_ADMIN_ACTION, true);
    spin();
    CHECK(npend == 0);
    mqtt_stats_t st;
    mqtt_broker_stats(broker, &st);
    CHECK(st.connections == 0);
    CHECK(st.sessions == 0);
    CHECK(st.subscriptions == 0);
    /* Every accepted authentication heard of its end. */
    for (size_t i = 0; i < nrecs; i++)
        CHECK(!recs[i]->live);
    broker_stop();
    free_recs();
    for (int k = 0; k < NCLIENTS; k++)
        client_reset(&clients[k]);
}

/* n bytes of topic after data[*i] (n from the byte at *i) into buf. */
static void read_topic(const uint8_t *data, size_t size, size_t *i, char *buf, size_t buflen)
{
    size_t n = 0;
    if (*i < size)
        n = data[(*i)++];
    if (n > size - *i)
        n = size - *i;
    if (n >= buflen)
        n = buflen - 1;
    memcpy(buf, data + *i, n);
    buf[n] = '\0';
    *i += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (trace)
        fprintf(stderr, "input of %zu bytes\n", size);
    broker_start();
    size_t i = 0;
    while (i < size) {
        uint8_t op = data[i++];
        unsigned kind = op & 7, aux = op >> 5;
        struct client *c = &clients[(op >> 3) % NCLIENTS];
        if (trace)
            fprintf(stderr, "op %u client %d aux %u\n", kind, (int)(c - clients), aux);
        size_t n;
        char topic[256];
        switch (kind) {
        case 0:
        case 1:
            if (kind == 0) {
                if (i >= size)
                    break;
                n = data[i++];
            } else {
                if (i + 2 > size)
                    break;
                n = (size_t)(data[i] << 8 | data[i + 1]);
                i += 2;
            }
            if (n > size - i)
                n = size - i;
            client_write(c, data + i, n);
            i += n;
            break;
        case 2:
            client_write(c, data + i, size - i);
            i = size;
            break;
        case 3:
            client_close(c);
            break;
        case 4:
            if (nrecs > 0) {
                (void)mqtt_broker_kick(broker, recs[aux % nrecs]->id, MQTT_RC_ADMIN_ACTION,
                                       (op & 8) != 0);
                spin();
            }
            break;
        case 5: {
            read_topic(data, size, &i, topic, sizeof(topic));
            /* Invalid topics (wildcards, empty, not UTF-8: a PUBLISH
             * carrying one is malformed for every client) and QoS 3 are
             * refused, not sent. */
            size_t tl = strlen(topic);
            bool utf8 = mqtt_codec_utf8_valid(topic, tl);
            int rc = mqtt_broker_publish(broker, topic, (const uint8_t *)"srv", 3,
                                         (uint8_t)(aux & 3), (aux & 4) != 0);
            CHECK(rc >= 0 || rc == -EINVAL);
            if ((aux & 3) > 2 || tl == 0 || !utf8)
                CHECK(rc == -EINVAL);
            spin();
            break;
        }
        case 6:
            if (aux < 4) {
                complete_pending();
            } else if (aux < 6) {
                read_topic(data, size, &i, topic, sizeof(topic));
                if (nrecs > 0)
                    (void)mqtt_broker_send(broker, recs[nrecs - 1]->id, topic,
                                           (const uint8_t *)"snd", 3, (uint8_t)(aux & 1));
            } else {
                broker_stop();
                broker_start();
            }
            spin();
            break;
        case 7:
            client_write(c, canned[aux].p, canned[aux].n);
            break;
        }
        check_answered();
    }
    finish_input();
    return 0;
}

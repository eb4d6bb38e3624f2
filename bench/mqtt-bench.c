/*
 * mqtt-bench: an MQTT 3.1.1 load generator for droverd (and, for
 * comparison, any other broker on loopback).
 *
 * What it owns: M TCP connections to one broker, driven from a single
 * epoll loop on one thread (no thread per connection, so the generator
 * costs little CPU next to the server it measures). The protocol subset is
 * written here, self-contained: encode CONNECT, PUBLISH (QoS 0/1), PINGREQ
 * and DISCONNECT; decode CONNACK, PUBACK and PINGRESP. Anything else the
 * broker sends is a protocol error for this tool and closes that
 * connection (we never subscribe, so nothing else is expected).
 *
 * Phases: (1) connect every client, at most MAX_PENDING handshakes at a
 * time so a large M does not overflow the listen backlog; (2) once every
 * client has its CONNACK (or failed), the clock starts and each connected
 * client publishes its share of the N messages, keeping at most W QoS 1
 * messages unacknowledged; (3) the clock stops at the last PUBACK (QoS 1)
 * or the last byte handed to the kernel (QoS 0).
 *
 * Data layout: one conn_t per client in a flat array. A QoS 1 message in
 * flight occupies one of the client's W slots; its packet id is slot + 1,
 * so a PUBACK finds its send timestamp in O(1) and a stray packet id is
 * detected. Outgoing packets are built in one shared scratch buffer and
 * written at once; only what the kernel does not take is copied into a
 * per-connection pending buffer, so memory stays small for large M.
 * PUBACK latencies go into a log-linear histogram (256 sub-buckets per
 * power of two, < 0.8 % error) whose size does not depend on N.
 *
 * Bounds: hosts outside 127.0.0.0/8 are refused (this is a loopback
 * benchmark, not a load tool to point at other people's machines); the
 * whole run stops at --timeout seconds; inbound packets larger than a
 * few bytes are rejected.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"

#define MAX_PENDING 256       /* handshakes in progress at once */
#define PER_SOURCE_ADDR 20000 /* connections per 127.0.0.x source address */
#define SCRATCH_SIZE (256 * 1024)
#define QOS0_BATCH 64           /* QoS 0 messages built per write */
#define MAX_PAYLOAD (64 * 1024) /* well under SCRATCH_SIZE */
#define MAX_TOPIC 1024
#define MAX_CRED 256
#define HIST_SUB 256
#define HIST_MAX_SHIFT 40
#define HIST_BUCKETS (HIST_SUB + HIST_MAX_SHIFT * (HIST_SUB / 2))

enum conn_state {
    ST_IDLE,       /* not started yet */
    ST_CONNECTING, /* TCP connect in progress */
    ST_CONNACK,    /* CONNECT sent, waiting for CONNACK */
    ST_READY,      /* connected; publishing once the run starts */
    ST_DONE,       /* published and (QoS 1) acknowledged its whole share */
    ST_DEAD,       /* failed or closed; counted in the errors */
};

typedef struct {
    int fd;
    enum conn_state state;
    char *id;     /* client id and username */
    char *secret; /* password, or NULL */
    char *topic;  /* topic template with {id} expanded */
    size_t topic_len;
    uint64_t share; /* messages this client publishes */
    uint64_t sent;  /* messages built and handed to the socket */
    uint64_t acked; /* PUBACKs received */
    uint32_t inflight;
    uint32_t nfree; /* free slots on free_slots */
    uint16_t *free_slots;
    int64_t *slot_ts; /* send time (µs) per slot, -1 when free */
    uint8_t *pend;    /* bytes the kernel did not take yet */
    size_t pend_len, pend_off;
    uint8_t in[16]; /* a partial inbound packet */
    size_t in_len;
    uint32_t events; /* epoll events currently registered */
    int64_t last_tx_us;
} conn_t;

typedef struct {
    const char *host;
    int port;
    uint32_t connections;
    uint64_t messages;
    int qos;
    uint32_t inflight;
    uint32_t payload_size;
    const char *topic_template;
    const char *creds_file;
    const char *id_prefix;
    uint32_t timeout_s;
    uint32_t keepalive;
    uint32_t source_addrs;
    bool json;
} opts_t;

typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t n;
    int64_t max;
    double sum;
} hist_t;

typedef struct {
    uint64_t connect_failed;
    uint64_t connack_refused;
    uint64_t refused_by_code[6];
    uint64_t disconnects;
    uint64_t protocol;
    bool timed_out;
} errors_t;

static opts_t o = {
    .host = "127.0.0.1",
    .port = 1883,
    .connections = 100,
    .messages = 100000,
    .qos = 1,
    .inflight = 32,
    .payload_size = 64,
    .topic_template = "devices/{id}/telemetry",
    .id_prefix = "bench-",
    .timeout_s = 120,
    .keepalive = 60,
};

static conn_t *conns;
static uint32_t nconns;
static int epfd = -1;
static uint8_t scratch[SCRATCH_SIZE];
static hist_t hist;
static errors_t err;
static struct in_addr dst_addr;
static bool publishing;
static uint32_t pending_handshakes, settled, connacked, publishers, finished;
static uint64_t total_sent, total_acked;
static int64_t t_start_us, t_connected_us, t_last_us;
static volatile sig_atomic_t interrupted;

/* ---- histogram ---------------------------------------------------------- */

static size_t hist_index(int64_t v)
{
    if (v < 0)
        v = 0;
    if (v < HIST_SUB)
        return (size_t)v;
    int msb = 63 - __builtin_clzll((unsigned long long)v);
    int shift = msb - 7; /* v >> shift lands in [128, 255] */
    if (shift > HIST_MAX_SHIFT)
        return HIST_BUCKETS - 1;
    return HIST_SUB + (size_t)(shift - 1) * (HIST_SUB / 2) + (size_t)((v >> shift) - HIST_SUB / 2);
}

/* The middle of bucket i's range, in the same unit as the samples. */
static double hist_value(size_t i)
{
    if (i < HIST_SUB)
        return (double)i;
    size_t k = i - HIST_SUB;
    int shift = (int)(k / (HIST_SUB / 2)) + 1;
    uint64_t lo = (uint64_t)(k % (HIST_SUB / 2) + HIST_SUB / 2) << shift;
    return (double)lo + (double)((uint64_t)1 << shift) / 2.0;
}

static void hist_add(hist_t *h, int64_t v)
{
    h->counts[hist_index(v)]++;
    h->n++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
}

static double hist_quantile(const hist_t *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n);
    if (rank >= h->n)
        rank = h->n - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen > rank) {
            double v = hist_value(i);
            return v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

/* ---- MQTT 3.1.1 encoding ------------------------------------------------ */

static size_t put_varint(uint8_t *p, size_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v % 128;
        v /= 128;
        if (v > 0)
            b |= 0x80;
        p[n++] = b;
    } while (v > 0);
    return n;
}

static size_t put_str(uint8_t *p, const char *s, size_t len)
{
    p[0] = (uint8_t)(len >> 8);
    p[1] = (uint8_t)len;
    memcpy(p + 2, s, len);
    return len + 2;
}

/* Writes a CONNECT into out (room for cap bytes); returns its length or 0
 * when it does not fit. */
static size_t encode_connect(uint8_t *out, size_t cap, const char *id, const char *user,
                             const char *pass, uint16_t keepalive)
{
    size_t idl = strlen(id), ul = user ? strlen(user) : 0, pl = pass ? strlen(pass) : 0;
    size_t rem = 10 + 2 + idl + (user ? 2 + ul : 0) + (pass ? 2 + pl : 0);
    if (rem + 5 > cap)
        return 0;
    size_t n = 0;
    out[n++] = 0x10;
    n += put_varint(out + n, rem);
    n += put_str(out + n, "MQTT", 4);
    out[n++] = 4; /* protocol level 3.1.1 */
    out[n++] = (uint8_t)(0x02 | (user ? 0x80 : 0) | (pass ? 0x40 : 0));
    out[n++] = (uint8_t)(keepalive >> 8);
    out[n++] = (uint8_t)keepalive;
    n += put_str(out + n, id, idl);
    if (user)
        n += put_str(out + n, user, ul);
    if (pass)
        n += put_str(out + n, pass, pl);
    return n;
}

/* A PUBLISH of message seq on c's topic with packet id pid (QoS 1) into
 * out; returns its length or 0 when it does not fit. The body is a
 * telemetry object {"temp":..,"seq":..,"pad":"xx.."} padded with 'x' so
 * the whole object is about payload_size bytes. */
static size_t encode_publish(uint8_t *out, size_t cap, const conn_t *c, uint64_t seq, uint16_t pid)
{
    char head[96];
    int hl = snprintf(head, sizeof(head), "{\"temp\":%.1f,\"seq\":%" PRIu64 ",\"pad\":\"",
                      20.0 + (double)(seq % 100) / 10.0, seq);
    if (hl < 0 || (size_t)hl >= sizeof(head))
        return 0;
    size_t pad = o.payload_size > (size_t)hl + 2 ? o.payload_size - (size_t)hl - 2 : 0;
    size_t bl = (size_t)hl + pad + 2;
    size_t rem = 2 + c->topic_len + (o.qos ? 2 : 0) + bl;
    if (rem + 5 > cap)
        return 0;
    size_t n = 0;
    out[n++] = (uint8_t)(0x30 | (o.qos << 1));
    n += put_varint(out + n, rem);
    n += put_str(out + n, c->topic, c->topic_len);
    if (o.qos) {
        out[n++] = (uint8_t)(pid >> 8);
        out[n++] = (uint8_t)pid;
    }
    memcpy(out + n, head, (size_t)hl);
    n += (size_t)hl;
    memset(out + n, 'x', pad);
    n += pad;
    out[n++] = '"';
    out[n++] = '}';
    return n;
}

/* ---- connection plumbing ------------------------------------------------ */

static void set_events(conn_t *c, uint32_t ev)
{
    if (c->fd < 0 || c->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->events = ev;
}

/* Closes c; counts it as failed unless it already finished its share. */
static void conn_close(conn_t *c, enum conn_state final)
{
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->state == ST_CONNECTING || c->state == ST_CONNACK) {
        pending_handshakes--;
        settled++;
    }
    if (publishing && c->state == ST_READY)
        finished++; /* a publisher that died has ended its part of the run */
    free(c->pend);
    c->pend = NULL;
    c->pend_len = c->pend_off = 0;
    c->state = final;
}

static void conn_fail(conn_t *c, uint64_t *counter)
{
    if (counter)
        (*counter)++;
    conn_close(c, ST_DEAD);
}

/* Hands buf to the kernel; keeps the rest in c->pend. Returns 0 or -1 when
 * the connection broke (and was closed). */
static int conn_send(conn_t *c, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    if (c->pend_len == 0) {
        while (off < len) {
            ssize_t w = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
                continue;
            }
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            conn_fail(c, &err.disconnects);
            return -1;
        }
    }
    c->last_tx_us = util_mono_us();
    if (off == len)
        return 0;
    size_t rest = len - off;
    size_t have = c->pend_len - c->pend_off;
    uint8_t *p = malloc(have + rest);
    if (!p) {
        conn_fail(c, &err.protocol);
        return -1;
    }
    if (have)
        memcpy(p, c->pend + c->pend_off, have);
    memcpy(p + have, buf + off, rest);
    free(c->pend);
    c->pend = p;
    c->pend_len = have + rest;
    c->pend_off = 0;
    set_events(c, EPOLLIN | EPOLLOUT);
    return 0;
}

/* Writes what is pending; 1 when drained, 0 when the kernel is full, -1
 * when the connection broke. */
static int conn_flush(conn_t *c)
{
    while (c->pend_off < c->pend_len) {
        ssize_t w = send(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->pend_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        conn_fail(c, &err.disconnects);
        return -1;
    }
    free(c->pend);
    c->pend = NULL;
    c->pend_len = c->pend_off = 0;
    c->last_tx_us = util_mono_us();
    return 1;
}

static void conn_check_done(conn_t *c)
{
    if (!publishing || c->state != ST_READY || c->sent < c->share)
        return;
    if (o.qos == 1 && c->acked < c->share)
        return;
    if (o.qos == 0 && c->pend_len > 0)
        return;
    c->state = ST_DONE;
    finished++;
    t_last_us = util_mono_us();
}

/* Builds as many PUBLISHes as the window (QoS 1) or the batch (QoS 0)
 * allows and sends them in one write. */
static void conn_pump(conn_t *c)
{
    if (!publishing || c->state != ST_READY || c->pend_len > 0)
        return;
    size_t n = 0;
    int64_t now = util_mono_us();
    uint32_t batch = 0;
    while (c->sent < c->share) {
        uint16_t pid = 0;
        if (o.qos == 1) {
            if (c->nfree == 0)
                break;
            pid = (uint16_t)(c->free_slots[c->nfree - 1] + 1);
        } else if (batch >= QOS0_BATCH) {
            break;
        }
        size_t k = encode_publish(scratch + n, sizeof(scratch) - n, c, total_sent, pid);
        if (k == 0)
            break;
        n += k;
        if (o.qos == 1) {
            c->nfree--;
            c->slot_ts[pid - 1] = now;
            c->inflight++;
        }
        c->sent++;
        total_sent++;
        batch++;
    }
    if (n == 0) {
        conn_check_done(c);
        return;
    }
    if (conn_send(c, scratch, n) < 0)
        return;
    conn_check_done(c);
}

/* Writability matters while bytes are pending, and for QoS 0 (no PUBACK to
 * wake us) while there is more to publish. */
static void update_events(conn_t *c)
{
    bool more0 = o.qos == 0 && publishing && c->state == ST_READY && c->sent < c->share;
    set_events(c, c->pend_len > 0 || more0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

static void start_publishing(void)
{
    uint32_t live = 0;
    for (uint32_t i = 0; i < nconns; i++)
        if (conns[i].state == ST_READY)
            live++;
    publishers = live;
    t_connected_us = util_mono_us();
    t_last_us = t_connected_us;
    publishing = true;
    if (live == 0)
        return;
    uint64_t each = o.messages / live, extra = o.messages % live;
    uint32_t k = 0;
    for (uint32_t i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (c->state != ST_READY)
            continue;
        c->share = each + (k < extra ? 1 : 0);
        k++;
    }
    for (uint32_t i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (c->state != ST_READY)
            continue;
        if (c->share == 0) {
            c->state = ST_DONE;
            finished++;
            continue;
        }
        conn_pump(c);
        if (c->state != ST_DEAD)
            update_events(c);
    }
}

static void on_connack(conn_t *c, const uint8_t *p, size_t len)
{
    if (c->state != ST_CONNACK || len != 2) {
        conn_fail(c, &err.protocol);
        return;
    }
    if (p[1] != 0) {
        err.refused_by_code[p[1] < 6 ? p[1] : 0]++;
        conn_fail(c, &err.connack_refused);
        return;
    }
    c->state = ST_READY;
    pending_handshakes--;
    settled++;
    connacked++;
}

static void on_puback(conn_t *c, const uint8_t *p, size_t len)
{
    if (len != 2 || o.qos != 1 || c->state != ST_READY) {
        conn_fail(c, &err.protocol);
        return;
    }
    uint16_t pid = (uint16_t)(p[0] << 8 | p[1]);
    if (pid == 0 || pid > o.inflight || c->slot_ts[pid - 1] < 0) {
        conn_fail(c, &err.protocol);
        return;
    }
    int64_t now = util_mono_us();
    hist_add(&hist, now - c->slot_ts[pid - 1]);
    c->slot_ts[pid - 1] = -1;
    c->free_slots[c->nfree++] = (uint16_t)(pid - 1);
    c->inflight--;
    c->acked++;
    total_acked++;
    t_last_us = now;
}

/* Parses whole packets from buf; returns bytes consumed or -1 when c was
 * closed. A short tail is left for the caller to keep. */
static ssize_t parse_packets(conn_t *c, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        uint8_t type = buf[off] >> 4;
        size_t rem = 0, mul = 1, i = off + 1;
        bool complete = false;
        for (int k = 0; k < 4 && i < len; k++, i++) {
            rem += (size_t)(buf[i] & 0x7f) * mul;
            mul *= 128;
            if (!(buf[i] & 0x80)) {
                complete = true;
                i++;
                break;
            }
        }
        /* Only CONNACK, PUBACK and PINGRESP are expected; all are tiny. */
        if (type != 2 && type != 4 && type != 13) {
            conn_fail(c, &err.protocol);
            return -1;
        }
        if (!complete) {
            if (i - off >= 5) {
                conn_fail(c, &err.protocol);
                return -1;
            }
            break;
        }
        if (rem > 2) {
            conn_fail(c, &err.protocol);
            return -1;
        }
        if (len - i < rem)
            break;
        if (type == 2)
            on_connack(c, buf + i, rem);
        else if (type == 4)
            on_puback(c, buf + i, rem);
        if (c->state == ST_DEAD)
            return -1;
        off = i + rem;
    }
    return (ssize_t)off;
}

static void on_readable(conn_t *c)
{
    for (;;) {
        size_t have = c->in_len;
        memcpy(scratch, c->in, have);
        ssize_t r = recv(c->fd, scratch + have, sizeof(scratch) - have, 0);
        if (r == 0) {
            conn_fail(c, c->state == ST_CONNACK ? &err.connack_refused : &err.disconnects);
            return;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            conn_fail(c, &err.disconnects);
            return;
        }
        size_t total = have + (size_t)r;
        ssize_t used = parse_packets(c, scratch, total);
        if (used < 0)
            return;
        c->in_len = total - (size_t)used;
        if (c->in_len > sizeof(c->in)) {
            conn_fail(c, &err.protocol);
            return;
        }
        memcpy(c->in, scratch + used, c->in_len);
        if ((size_t)r < sizeof(scratch) - have)
            return;
    }
}

static void on_connected(conn_t *c)
{
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
        conn_fail(c, &err.connect_failed);
        return;
    }
    c->state = ST_CONNACK;
    set_events(c, EPOLLIN);
    size_t n =
        encode_connect(scratch, sizeof(scratch), c->id, c->id, c->secret, (uint16_t)o.keepalive);
    if (n == 0) {
        conn_fail(c, &err.protocol);
        return;
    }
    conn_send(c, scratch, n);
}

static void conn_start(conn_t *c, uint32_t index)
{
    c->state = ST_CONNECTING;
    pending_handshakes++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (o.source_addrs > 1) {
        /* Bind the source address now, the port at connect time, so each
         * 127.0.0.x contributes its own ephemeral port range. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + index % o.source_addrs);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
            goto fail_fd;
    }
    struct sockaddr_in dst = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)o.port), .sin_addr = dst_addr};
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)
        goto fail_fd;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        goto fail_fd;
    c->fd = fd;
    c->events = EPOLLOUT;
    return;
fail_fd:
    close(fd);
fail:
    c->fd = -1;
    conn_fail(c, &err.connect_failed);
}

static void send_pings(int64_t now)
{
    if (o.keepalive == 0)
        return;
    int64_t idle = (int64_t)o.keepalive * 1000000 / 2;
    static const uint8_t ping[2] = {0xc0, 0x00};
    for (uint32_t i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (c->fd >= 0 && (c->state == ST_READY || c->state == ST_DONE) && c->pend_len == 0 &&
            now - c->last_tx_us > idle)
            conn_send(c, ping, sizeof(ping));
    }
}

static void on_event(conn_t *c, uint32_t ev)
{
    if (c->state == ST_CONNECTING) {
        on_connected(c);
        return;
    }
    if (ev & EPOLLIN) {
        on_readable(c);
        if (c->state == ST_DEAD)
            return;
    } else if (ev & (EPOLLERR | EPOLLHUP)) {
        conn_fail(c, &err.disconnects);
        return;
    }
    if ((ev & EPOLLOUT) && c->pend_len > 0 && conn_flush(c) <= 0)
        return; /* broken, or the kernel is still full */
    conn_pump(c);
    conn_check_done(c);
    if (c->state != ST_DEAD)
        update_events(c);
}

/* ---- setup -------------------------------------------------------------- */

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static char *expand_topic(const char *tmpl, const char *id)
{
    char out[MAX_TOPIC];
    size_t n = 0, idl = strlen(id);
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{id}", 4) == 0) {
            if (n + idl >= sizeof(out))
                return NULL;
            memcpy(out + n, id, idl);
            n += idl;
            p += 4;
        } else {
            if (n + 1 >= sizeof(out))
                return NULL;
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return strdup(out);
}

/* Reads "id secret" lines into the first conns; returns how many, or -1. */
static int64_t load_creds(const char *path, uint32_t max)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "mqtt-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[2 * MAX_CRED + 8];
    uint32_t n = 0;
    uint64_t lineno = 0;
    while (n < max && fgets(line, sizeof(line), f)) {
        lineno++;
        char id[MAX_CRED], secret[MAX_CRED];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%255s %255s", id, secret) != 2) {
            fprintf(stderr, "mqtt-bench: %s:%" PRIu64 ": expected \"id secret\"\n", path, lineno);
            fclose(f);
            return -1;
        }
        conns[n].id = strdup(id);
        conns[n].secret = strdup(secret);
        if (!conns[n].id || !conns[n].secret) {
            fclose(f);
            return -1;
        }
        n++;
    }
    fclose(f);
    return n;
}

static int parse_u32(const char *name, const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    int64_t v;
    if (util_parse_i64(s, &v) < 0 || v < lo || v > hi) {
        fprintf(stderr, "mqtt-bench: --%s wants an integer in %u..%u\n", name, lo, hi);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mqtt-bench [options]\n"
            "  --host ADDR            broker address, 127.0.0.0/8 only "
            "(127.0.0.1)\n"
            "  --port N               broker port (1883)\n"
            "  --connections M        clients (100)\n"
            "  --messages N           messages in total over all clients "
            "(100000)\n"
            "  --qos 0|1              (1)\n"
            "  --inflight W           unacknowledged QoS 1 messages per client "
            "(32)\n"
            "  --payload-size B       JSON telemetry object of about B bytes "
            "(64)\n"
            "  --topic-template T     {id} is the client id "
            "(devices/{id}/telemetry)\n"
            "  --creds FILE           lines \"id secret\": client id = username "
            "= id, password = secret\n"
            "  --id-prefix P          without --creds: client ids P0, P1, ... "
            "and no password (bench-)\n"
            "  --keepalive S          MQTT keepalive (60; 0 disables)\n"
            "  --source-addrs K       spread clients over 127.0.0.1..K (auto: "
            "one per %d)\n"
            "  --timeout S            stop the whole run after S seconds (120)\n"
            "  --json                 print a JSON object instead of one line\n"
            "exit status: 0 all messages acknowledged without errors, 1 "
            "otherwise, 2 usage\n",
            PER_SOURCE_ADDR);
}

static int parse_args(int argc, char **argv)
{
    enum { O_HOST = 256, O_TOPIC, O_CREDS, O_PREFIX, O_PAYLOAD, O_SRC, O_KA };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, 'p'},
        {"connections", required_argument, NULL, 'c'},
        {"messages", required_argument, NULL, 'n'},
        {"qos", required_argument, NULL, 'q'},
        {"inflight", required_argument, NULL, 'w'},
        {"payload-size", required_argument, NULL, O_PAYLOAD},
        {"topic-template", required_argument, NULL, O_TOPIC},
        {"creds", required_argument, NULL, O_CREDS},
        {"id-prefix", required_argument, NULL, O_PREFIX},
        {"keepalive", required_argument, NULL, O_KA},
        {"source-addrs", required_argument, NULL, O_SRC},
        {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool conns_given = false;
    int ch;
    uint32_t v;
    int64_t n64;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case O_HOST:
            o.host = optarg;
            break;
        case 'p':
            if (parse_u32("port", optarg, 1, 65535, &v) < 0)
                return -1;
            o.port = (int)v;
            break;
        case 'c':
            if (parse_u32("connections", optarg, 1, 1000000, &o.connections) < 0)
                return -1;
            conns_given = true;
            break;
        case 'n':
            if (util_parse_i64(optarg, &n64) < 0 || n64 < 1 || n64 > INT64_C(1000000000000)) {
                fprintf(stderr, "mqtt-bench: --messages wants a positive integer\n");
                return -1;
            }
            o.messages = (uint64_t)n64;
            break;
        case 'q':
            if (parse_u32("qos", optarg, 0, 1, &v) < 0)
                return -1;
            o.qos = (int)v;
            break;
        case 'w':
            if (parse_u32("inflight", optarg, 1, 65535, &o.inflight) < 0)
                return -1;
            break;
        case O_PAYLOAD:
            if (parse_u32("payload-size", optarg, 0, MAX_PAYLOAD - 128, &o.payload_size) < 0)
                return -1;
            break;
        case O_TOPIC:
            o.topic_template = optarg;
            break;
        case O_CREDS:
            o.creds_file = optarg;
            break;
        case O_PREFIX:
            o.id_prefix = optarg;
            break;
        case O_KA:
            if (parse_u32("keepalive", optarg, 0, 65535, &o.keepalive) < 0)
                return -1;
            break;
        case O_SRC:
            if (parse_u32("source-addrs", optarg, 1, 254, &o.source_addrs) < 0)
                return -1;
            break;
        case 't':
            if (parse_u32("timeout", optarg, 1, 86400, &o.timeout_s) < 0)
                return -1;
            break;
        case 'j':
            o.json = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mqtt-bench: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    if (inet_pton(AF_INET, o.host, &dst_addr) != 1 || (ntohl(dst_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "mqtt-bench: --host must be an IPv4 address in 127.0.0.0/8\n");
        return -1;
    }
    (void)conns_given;
    return conns_given ? 1 : 0;
}

static int raise_fd_limit(uint32_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if (rl.rlim_cur < need) {
        rl.rlim_cur = need <= rl.rlim_max ? need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur >= need ? 0 : -1;
}

/* ---- report ------------------------------------------------------------- */

static void report(void)
{
    double connect_s = (double)(t_connected_us - t_start_us) / 1e6;
    double run_s = publishing ? (double)(t_last_us - t_connected_us) / 1e6 : 0;
    uint64_t done = o.qos == 1 ? total_acked : total_sent;
    double rate = run_s > 0 ? (double)done / run_s : 0;
    uint32_t connected = connacked;
    uint64_t errors = err.connect_failed + err.connack_refused + err.disconnects + err.protocol +
                      (err.timed_out ? 1 : 0);
    double p50 = hist_quantile(&hist, 0.50) / 1000.0;
    double p90 = hist_quantile(&hist, 0.90) / 1000.0;
    double p99 = hist_quantile(&hist, 0.99) / 1000.0;
    double p999 = hist_quantile(&hist, 0.999) / 1000.0;
    double mean = hist.n ? hist.sum / (double)hist.n / 1000.0 : 0;
    double maxv = (double)hist.max / 1000.0;
    if (o.json) {
        printf("{\"host\":\"%s\",\"port\":%d,\"connections\":%u,"
               "\"connected\":%u,\"messages\":%" PRIu64 ",\"qos\":%d,"
               "\"inflight\":%u,\"payload_size\":%u,\"sent\":%" PRIu64 ",\"acked\":%" PRIu64
               ",\"connect_s\":%.3f,\"elapsed_s\":%.3f,"
               "\"msgs_per_s\":%.1f,",
               o.host, o.port, nconns, connected, o.messages, o.qos, o.inflight, o.payload_size,
               total_sent, total_acked, connect_s, run_s, rate);
        if (o.qos == 1 && hist.n > 0)
            printf("\"puback_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
                   "\"p999\":%.3f,\"mean\":%.3f,\"max\":%.3f},",
                   p50, p90, p99, p999, mean, maxv);
        else
            printf("\"puback_ms\":null,");
        printf("\"errors\":{\"total\":%" PRIu64 ",\"connect_failed\":%" PRIu64
               ",\"connack_refused\":%" PRIu64 ",\"disconnects\":%" PRIu64 ",\"protocol\":%" PRIu64
               ",\"timed_out\":%s,"
               "\"interrupted\":%s}}\n",
               errors, err.connect_failed, err.connack_refused, err.disconnects, err.protocol,
               err.timed_out ? "true" : "false", interrupted ? "true" : "false");
    } else {
        printf("mqtt-bench: %" PRIu64 "/%" PRIu64 " msgs %s in %.2f s = %.0f "
               "msg/s (qos %d, %u/%u conns, inflight %u, %u B)",
               done, o.messages, o.qos == 1 ? "acked" : "sent", run_s, rate, o.qos, connected,
               nconns, o.inflight, o.payload_size);
        if (o.qos == 1 && hist.n > 0)
            printf("; PUBACK p50 %.2f ms p99 %.2f ms p99.9 %.2f ms max %.2f ms", p50, p99, p999,
                   maxv);
        printf("; connect %.2f s; errors %" PRIu64, connect_s, errors);
        if (errors)
            printf(" (connect %" PRIu64 ", refused %" PRIu64 ", disconnect %" PRIu64
                   ", protocol %" PRIu64 "%s)",
                   err.connect_failed, err.connack_refused, err.disconnects, err.protocol,
                   err.timed_out ? ", timed out" : "");
        if (interrupted)
            printf("; interrupted");
        printf("\n");
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int given = parse_args(argc, argv);
    if (given < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    nconns = o.connections;
    conns = calloc(nconns, sizeof(*conns));
    if (!conns) {
        fprintf(stderr, "mqtt-bench: out of memory\n");
        return 2;
    }
    if (o.creds_file) {
        int64_t got = load_creds(o.creds_file, nconns);
        if (got <= 0) {
            fprintf(stderr, "mqtt-bench: no credentials in %s\n", o.creds_file);
            return 2;
        }
        if ((uint64_t)got < nconns) {
            if (given) {
                fprintf(stderr, "mqtt-bench: %s has %" PRId64 " credentials, %u wanted\n",
                        o.creds_file, got, nconns);
                return 2;
            }
            nconns = (uint32_t)got;
        }
    }
    for (uint32_t i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        c->fd = -1;
        if (!c->id) {
            char id[MAX_CRED];
            int k = snprintf(id, sizeof(id), "%s%u", o.id_prefix, i);
            if (k < 0 || (size_t)k >= sizeof(id) || !(c->id = strdup(id))) {
                fprintf(stderr, "mqtt-bench: bad --id-prefix\n");
                return 2;
            }
        }
        c->topic = expand_topic(o.topic_template, c->id);
        if (!c->topic) {
            fprintf(stderr, "mqtt-bench: topic longer than %d bytes\n", MAX_TOPIC);
            return 2;
        }
        c->topic_len = strlen(c->topic);
        if (o.qos == 1) {
            c->free_slots = malloc(o.inflight * sizeof(*c->free_slots));
            c->slot_ts = malloc(o.inflight * sizeof(*c->slot_ts));
            if (!c->free_slots || !c->slot_ts) {
                fprintf(stderr, "mqtt-bench: out of memory\n");
                return 2;
            }
            /* Lowest packet ids first: slot k is popped from the top. */
            for (uint32_t s = 0; s < o.inflight; s++) {
                c->free_slots[s] = (uint16_t)(o.inflight - 1 - s);
                c->slot_ts[s] = -1;
            }
            c->nfree = o.inflight;
        }
    }
    if (o.source_addrs == 0)
        o.source_addrs = (nconns + PER_SOURCE_ADDR - 1) / PER_SOURCE_ADDR;
    if (raise_fd_limit(nconns + 32) < 0) {
        fprintf(stderr,
                "mqtt-bench: %u connections need %u file descriptors; raise "
                "ulimit -n\n",
                nconns, nconns + 32);
        return 2;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        perror("mqtt-bench: epoll_create1");
        return 2;
    }

    t_start_us = util_mono_us();
    t_connected_us = t_start_us;
    int64_t deadline = t_start_us + (int64_t)o.timeout_s * 1000000;
    int64_t next_ping = t_start_us + 1000000;
    uint32_t next = 0;
    struct epoll_event evs[512];
    for (;;) {
        while (next < nconns && pending_handshakes < MAX_PENDING) {
            conn_start(&conns[next], next);
            next++;
        }
        if (!publishing && settled == nconns)
            start_publishing();
        if (publishing && finished >= publishers)
            break;
        if (interrupted)
            break;
        int64_t now = util_mono_us();
        if (now >= deadline) {
            err.timed_out = true;
            if (!publishing)
                t_connected_us = now;
            break;
        }
        if (now >= next_ping) {
            send_pings(now);
            next_ping = now + 1000000;
        }
        int64_t wait_us = (next_ping < deadline ? next_ping : deadline) - now;
        int n = epoll_wait(epfd, evs, (int)ARRAY_SIZE(evs), (int)(wait_us / 1000) + 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("mqtt-bench: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->state != ST_DEAD)
                on_event(c, evs[i].events);
        }
    }

    /* Say goodbye politely so the broker does not count unclean disconnects
     * (and publish wills) for a benchmark that went well. */
    static const uint8_t disconnect[2] = {0xe0, 0x00};
    for (uint32_t i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (c->fd >= 0 && (c->state == ST_READY || c->state == ST_DONE) && c->pend_len == 0)
            (void)send(c->fd, disconnect, sizeof(disconnect), MSG_NOSIGNAL);
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
    }
    close(epfd);
    report();
    uint64_t done = o.qos == 1 ? total_acked : total_sent;
    bool clean = done == o.messages && err.connect_failed == 0 && err.connack_refused == 0 &&
                 err.disconnects == 0 && err.protocol == 0 && !err.timed_out && !interrupted;
    for (uint32_t i = 0; i < nconns; i++) {
        free(conns[i].id);
        free(conns[i].secret);
        free(conns[i].topic);
        free(conns[i].free_slots);
        free(conns[i].slot_ts);
        free(conns[i].pend);
    }
    free(conns);
    return clean ? 0 : 1;
}

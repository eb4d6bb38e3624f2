/*
 * drover-sim's worker engine: N simulated devices (and optionally the
 * fan-in "watcher") on one thread and one epoll loop, no thread per
 * connection.
 *
 * Device life cycle (dstate_t):
 *
 *   WAIT --(slot free, pacing)--> CONNECTING --(TCP up, CONNECT sent)--> CONNACK
 *   CONNACK --(accepted)--> READY --(lost / --drop-at)--> BACKOFF --> WAIT
 *   CONNACK --(refused, retryable)--> BACKOFF;  (refused otherwise) --> DEAD
 *   anything --(end of run)--> DONE
 *
 * At most --max-pending handshakes run at once; first connections are paced
 * at the worker's share of --connect-rate; reconnections are paced only by
 * their jittered exponential backoff (full jitter between 0 and
 * min(backoff_max, backoff_min * 2^attempt)).
 *
 * Timers: every device has at most one wake-up time (the earliest of its
 * connect deadline, next telemetry tick, next ping, next command answer
 * or twin report, reconnect time), kept in one binary min-heap indexed by
 * device, so a tick costs O(log N) and idle devices cost nothing.
 *
 * Output: packets for one device are built straight into one shared write
 * buffer (wbuf) and handed to the kernel with one send() when the event or
 * timer that produced them is done; only what the kernel does not take is
 * copied to the device's own pending buffer (so idle devices hold no
 * buffers). Input: recv() into a shared read buffer; only a partial packet
 * is kept per device, capped at IN_MAX.
 *
 * QoS 1 and 2: telemetry uses packet ids 1..W (W = --inflight, a
 * free-slot stack and send timestamps); command results and twin reports
 * (always QoS 1) use the CTRL ids above W. A PUBACK, PUBREC or PUBCOMP
 * finds its slot in O(1), so latency is exact per message. At QoS 2 a slot
 * stays taken from the PUBLISH through PUBREC (we answer PUBREL) to
 * PUBCOMP; slot_rec marks the slots whose PUBREC has come.
 *
 * Receiving QoS 2 (the watcher with --sub-qos 2): PUBREC at once, and the
 * message counts as delivered on its PUBLISH; the watcher keeps a bitmap
 * of the ids between PUBLISH and PUBREL, so a resent PUBLISH is counted as
 * a duplicate, not a second delivery. PUBREL gets PUBCOMP.
 *
 * Relay window (--relay-window W, one worker): at most W messages are
 * published and not yet delivered to the watcher (relay_out). Publishers
 * wait when it is full; each batch of deliveries refills it, round robin
 * over the publishers. In relay mode with one worker, bodies carry the
 * publisher's index and sequence number ("p", "seq") and the watcher keeps
 * the next sequence number it expects from each publisher (rx_next): a
 * delivery past it means the messages in between were skipped (lost, if
 * the server keeps each publisher's order, as MQTT requires); their window
 * slots are freed with it, so a server that loses messages does not shrink
 * the window for the rest of the run. If nothing is delivered for
 * RELAY_STALL_US while the window is full, what is outstanding is written
 * off (relay_gave_up), so a lost tail cannot stall the run either.
 *
 * The engine runs in a forked worker; its statistics go to the parent as
 * snapshots (engine.h). Single-threaded; no locks.
 */
#include "sim/engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "sim/mqtt_client.h"
#include "sim/payload.h"

#define RBUF_SIZE (1024 * 1024)
#define WBUF_SIZE (256 * 1024)
#define IN_MAX (256 * 1024 + 8)    /* largest inbound packet kept */
#define OUT_MAX (16 * 1024 * 1024) /* pending output before we give up */
#define OUT_BACKLOG (64 * 1024)    /* telemetry waits while this much is pending */
#define CTRL 16                    /* QoS 1 ids for results and reports */
#define CMDQ_MAX 32                /* waiting command answers per device */
#define QOS0_BATCH 64              /* QoS 0 saturating: messages per write */
#define SUB_PID 0xffff
#define TOPIC_MAX 160
#define NO_HEAP UINT32_MAX
#define WATCHER_QUIET_US 300000
#define RELAY_STALL_US 1000000
#define RX_IDS_BYTES (65536 / 8)

typedef enum {
    D_WAIT,
    D_CONNECTING,
    D_CONNACK,
    D_READY,
    D_BACKOFF,
    D_DEAD,
    D_DONE,
} dstate_t;

typedef enum { CK_NONE, CK_RESULT, CK_TWIN } ctrl_kind_t;

typedef struct {
    int64_t due, arrived;
    int64_t version; /* CK_TWIN */
    uint8_t kind;    /* ctrl_kind_t */
    bool failed;
    char cid[40];
} outq_t;

typedef struct dev {
    int fd;
    uint8_t state;
    bool watcher;
    bool subscribed; /* SUBACK seen, or nothing to subscribe */
    bool ever_connected;
    bool queued; /* in the reconnect FIFO */
    uint32_t heap_pos;
    int64_t wake;
    const sim_cred_t *cred;
    uint32_t index; /* in this worker */
    int64_t t_conn;
    int64_t next_pub, next_ping, next_twin, reconnect_at;
    uint32_t attempt;
    uint64_t seq, twin_reports;
    uint64_t rx_next; /* relay: the next "seq" the watcher expects from this device */
    /* telemetry window */
    uint16_t nfree;
    uint16_t *free_slots;
    int64_t *slot_ts;
    uint8_t *slot_rec; /* QoS 2: PUBREC seen for the slot */
    /* the watcher at QoS 2: ids between PUBLISH and PUBREL, a bit each */
    uint8_t *rx_ids;
    /* result / report window */
    int64_t ctrl_ts[CTRL];
    uint8_t ctrl_kind[CTRL];
    uint8_t nctrl;
    /* answers waiting for their time or a free id */
    outq_t *outq;
    uint8_t noutq;
    /* I/O */
    uint8_t *out;
    size_t out_len, out_off;
    uint8_t *in;
    size_t in_len;
    int64_t last_tx;
    uint32_t events;
} simdev_t;

typedef struct engine {
    const sim_engine_cfg_t *cfg;
    const sim_opts_t *o;
    simdev_t *devs;
    uint32_t ndev; /* devices + the watcher */
    uint32_t ndevices;
    int epfd;
    struct in_addr dst;
    uint8_t *rbuf, *wbuf;
    char *pbuf;
    size_t wlen;
    simdev_t *wdev;
    uint32_t *heap;
    uint32_t hn;
    uint32_t *fifo; /* reconnect FIFO (ring) */
    uint32_t fhead, fcount;
    uint32_t next_first; /* next device never connected yet */
    uint32_t pending;    /* handshakes in flight */
    bool gate_open;      /* devices may start connecting (watcher subscribed) */
    bool publishing;     /* telemetry may flow */
    bool stopping;
    int64_t drain_until;
    int64_t t_first; /* when first connections started */
    uint64_t budget; /* messages left to publish; UINT64_MAX = no limit */
    uint64_t ctrl_inflight;
    uint64_t relay_out;       /* --relay-window: published, not yet delivered */
    int64_t relay_full_since; /* when the window filled up; 0 = not full */
    uint32_t relay_cursor;    /* next publisher to refill from */
    uint64_t rng;
    sim_payload_spec_t spec;
    sim_stats_t st;
    bool sent_all_ready, sent_recovered;
    bool ctl_closed;
} engine_t;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* ---- small helpers ------------------------------------------------------- */

static uint64_t rnd(engine_t *e)
{
    /* xorshift64*: fast, and plenty for jitter and failure choice. */
    uint64_t x = e->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    e->rng = x;
    return x * UINT64_C(2685821657736338717);
}

static double rnd01(engine_t *e)
{
    return (double)(rnd(e) >> 11) / 9007199254740992.0;
}

static int64_t rnd_below(engine_t *e, int64_t n)
{
    return n > 0 ? (int64_t)(rnd(e) % (uint64_t)n) : 0;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static bool needs_sub(const engine_t *e, const simdev_t *d)
{
    return d->watcher || e->o->subscribe;
}

static bool telemetry_on(const engine_t *e)
{
    return e->o->telemetry_interval_us >= 0;
}

/* Whether the relay window lets one more message go. */
static bool relay_room(const engine_t *e)
{
    return e->o->relay_window == 0 || e->relay_out < e->o->relay_window;
}

/* ---- timer heap ---------------------------------------------------------- */

static void heap_swap(engine_t *e, uint32_t a, uint32_t b)
{
    uint32_t t = e->heap[a];
    e->heap[a] = e->heap[b];
    e->heap[b] = t;
    e->devs[e->heap[a]].heap_pos = a;
    e->devs[e->heap[b]].heap_pos = b;
}

static void heap_up(engine_t *e, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (e->devs[e->heap[p]].wake <= e->devs[e->heap[i]].wake)
            break;
        heap_swap(e, i, p);
        i = p;
    }
}

static void heap_down(engine_t *e, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->hn && e->devs[e->heap[l]].wake < e->devs[e->heap[m]].wake)
            m = l;
        if (r < e->hn && e->devs[e->heap[r]].wake < e->devs[e->heap[m]].wake)
            m = r;
        if (m == i)
            break;
        heap_swap(e, i, m);
        i = m;
    }
}

static void heap_del(engine_t *e, simdev_t *d)
{
    uint32_t i = d->heap_pos;
    if (i == NO_HEAP)
        return;
    d->heap_pos = NO_HEAP;
    e->hn--;
    if (i == e->hn)
        return;
    e->heap[i] = e->heap[e->hn];
    e->devs[e->heap[i]].heap_pos = i;
    heap_up(e, i);
    heap_down(e, e->devs[e->heap[i]].heap_pos);
}

/* Sets d's wake-up time (0 = none). */
static void heap_set(engine_t *e, simdev_t *d, int64_t wake)
{
    if (wake == 0) {
        heap_del(e, d);
        return;
    }
    d->wake = wake;
    if (d->heap_pos == NO_HEAP) {
        d->heap_pos = e->hn;
        e->heap[e->hn++] = (uint32_t)(d - e->devs);
        heap_up(e, d->heap_pos);
    } else {
        heap_up(e, d->heap_pos);
        heap_down(e, d->heap_pos);
    }
}

/* The earliest thing d has to do, from its state. */
static void reschedule(engine_t *e, simdev_t *d)
{
    int64_t w = INT64_MAX;
    switch (d->state) {
    case D_CONNECTING:
    case D_CONNACK:
        w = d->t_conn + e->o->connect_timeout_us;
        break;
    case D_BACKOFF:
        w = d->reconnect_at;
        break;
    case D_READY:
        if (d->next_pub)
            w = min64(w, d->next_pub);
        if (d->next_ping)
            w = min64(w, d->next_ping);
        if (d->next_twin)
            w = min64(w, d->next_twin);
        for (uint8_t i = 0; i < d->noutq; i++)
            w = min64(w, d->outq[i].due);
        break;
    default:
        break;
    }
    heap_set(e, d, w == INT64_MAX ? 0 : w);
}

/* ---- output -------------------------------------------------------------- */

static void dev_close(engine_t *e, simdev_t *d);
static void dev_fail(engine_t *e, simdev_t *d, int err);
static void write_failed(engine_t *e, simdev_t *d);

static void set_events(engine_t *e, simdev_t *d, uint32_t ev)
{
    if (d->fd < 0 || d->events == ev)
        return;
    struct epoll_event x = {.events = ev, .data.ptr = d};
    if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, d->fd, &x) == 0)
        d->events = ev;
}

static void update_events(engine_t *e, simdev_t *d)
{
    if (d->fd < 0 || d->state == D_CONNECTING)
        return;
    bool want_out = d->out_len > d->out_off;
    /* Saturating QoS 0 has no PUBACK to wake it: it writes when it can. */
    if (!want_out && d->state == D_READY && !d->watcher && e->publishing && !e->stopping &&
        e->o->telemetry_interval_us == 0 && e->o->qos == 0 && e->budget > 0 && relay_room(e))
        want_out = true;
    set_events(e, d, EPOLLIN | (want_out ? EPOLLOUT : 0));
}

/* Keeps bytes the kernel did not take, after what is already pending.
 * 0, or -1 when the device had to be closed. */
static int keep_pending(engine_t *e, simdev_t *d, const uint8_t *p, size_t n)
{
    size_t have = d->out_len - d->out_off;
    if (have + n > OUT_MAX) {
        dev_fail(e, d, SIM_ERR_PROTOCOL); /* the server stopped reading */
        return -1;
    }
    if (d->out_off > 0 && have > 0)
        memmove(d->out, d->out + d->out_off, have);
    d->out_off = 0;
    d->out_len = have;
    uint8_t *nb = realloc(d->out, have + n);
    if (!nb) {
        dev_fail(e, d, SIM_ERR_SOCKET);
        return -1;
    }
    d->out = nb;
    memcpy(d->out + have, p, n);
    d->out_len = have + n;
    return 0;
}

/* Sends d's pending bytes; 0 when all went or the kernel is full, -1 when
 * the connection broke (d closed). */
static int drain_pending(engine_t *e, simdev_t *d)
{
    while (d->out_off < d->out_len) {
        ssize_t w = send(d->fd, d->out + d->out_off, d->out_len - d->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            d->out_off += (size_t)w;
            e->st.bytes_sent += (uint64_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        write_failed(e, d);
        return -1;
    }
    free(d->out);
    d->out = NULL;
    d->out_len = d->out_off = 0;
    return 0;
}

/* Hands the shared write buffer to its device's socket. */
static void flush(engine_t *e)
{
    simdev_t *d = e->wdev;
    size_t n = e->wlen;
    e->wdev = NULL;
    e->wlen = 0;
    if (!d || n == 0 || d->fd < 0)
        return;
    d->last_tx = util_mono_us();
    if (d->out_len > d->out_off) {
        if (keep_pending(e, d, e->wbuf, n) == 0 && drain_pending(e, d) == 0)
            update_events(e, d);
        return;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(d->fd, e->wbuf + off, n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            e->st.bytes_sent += (uint64_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        write_failed(e, d);
        return;
    }
    if (off < n && keep_pending(e, d, e->wbuf + off, n - off) < 0)
        return;
    update_events(e, d);
}

/* Room for at least need bytes for d in the write buffer (flushing
 * another device's bytes, or d's own when full). NULL if need can never
 * fit. */
static uint8_t *wreserve(engine_t *e, simdev_t *d, size_t need)
{
    if (need > WBUF_SIZE)
        return NULL;
    if ((e->wdev && e->wdev != d) || WBUF_SIZE - e->wlen < need)
        flush(e);
    if (d->fd < 0)
        return NULL;
    e->wdev = d;
    return e->wbuf + e->wlen;
}

static size_t wroom(const engine_t *e)
{
    return WBUF_SIZE - e->wlen;
}

static void wcommit(engine_t *e, size_t n)
{
    e->wlen += n;
}

/* ---- connection state ---------------------------------------------------- */

static void free_io(simdev_t *d)
{
    free(d->out);
    d->out = NULL;
    d->out_len = d->out_off = 0;
    free(d->in);
    d->in = NULL;
    d->in_len = 0;
}

static void gauge_ready(engine_t *e, simdev_t *d, bool up);

/* Resets the QoS 1 bookkeeping of a connection that ended; messages still
 * unacknowledged are lost to this run (clean sessions). */
static void reset_windows(engine_t *e, simdev_t *d)
{
    if (d->free_slots) {
        uint32_t w = e->o->inflight;
        uint32_t lost = w - d->nfree;
        e->st.pub_lost += lost;
        e->st.inflight -= lost;
        for (uint32_t s = 0; s < w; s++) {
            d->free_slots[s] = (uint16_t)(w - 1 - s);
            d->slot_ts[s] = -1;
        }
        if (d->slot_rec)
            memset(d->slot_rec, 0, w);
        d->nfree = (uint16_t)w;
    }
    if (d->rx_ids)
        memset(d->rx_ids, 0, RX_IDS_BYTES);
    for (int i = 0; i < CTRL; i++)
        d->ctrl_kind[i] = CK_NONE;
    e->ctrl_inflight -= d->nctrl;
    d->nctrl = 0;
    d->noutq = 0;
}

/* Closes the socket; updates the gauges. The caller sets the next state. */
static void dev_close(engine_t *e, simdev_t *d)
{
    if (e->wdev == d) {
        e->wdev = NULL;
        e->wlen = 0;
    }
    if (d->fd >= 0) {
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, d->fd, NULL);
        close(d->fd);
        d->fd = -1;
    }
    d->events = 0;
    if (d->state == D_CONNECTING || d->state == D_CONNACK)
        e->pending--;
    if (d->state == D_READY) {
        if (d->subscribed)
            gauge_ready(e, d, false);
        if (!d->watcher)
            e->st.connected--;
        reset_windows(e, d);
    }
    d->subscribed = false;
    d->next_pub = d->next_ping = d->next_twin = 0;
    free_io(d);
    d->state = D_DEAD;
    heap_del(e, d);
}

static void enqueue_reconnect(engine_t *e, simdev_t *d)
{
    if (d->queued)
        return;
    uint32_t tail = (e->fhead + e->fcount) % e->ndev;
    e->fifo[tail] = (uint32_t)(d - e->devs);
    e->fcount++;
    d->queued = true;
    d->state = D_WAIT;
}

/* Backs off before the next attempt; gives up when reconnecting is off or
 * the run is ending. */
static void backoff(engine_t *e, simdev_t *d)
{
    if (!e->o->reconnect || e->stopping) {
        d->state = D_DEAD;
        return;
    }
    int64_t cap = e->o->backoff_min_us;
    for (uint32_t i = 0; i < d->attempt && cap < e->o->backoff_max_us; i++)
        cap *= 2;
    if (cap > e->o->backoff_max_us)
        cap = e->o->backoff_max_us;
    d->attempt++;
    d->state = D_BACKOFF;
    d->reconnect_at = util_mono_us() + rnd_below(e, cap + 1);
    reschedule(e, d);
}

/* A connection failed or ended, counted under err (or not, if err < 0).
 * A device already closed (by an earlier failure in the same event) is
 * left alone, so one failure is counted once. */
static void dev_fail(engine_t *e, simdev_t *d, int err)
{
    if (d->fd < 0)
        return;
    if (err >= 0)
        e->st.errors[err]++;
    dev_close(e, d);
    backoff(e, d);
}

/* send() failed for a reason other than a full buffer: the peer is gone. */
static void write_failed(engine_t *e, simdev_t *d)
{
    int err = d->state == D_CONNACK || d->state == D_CONNECTING ? SIM_ERR_CLOSED : SIM_ERR_DROPPED;
    dev_fail(e, d, e->stopping ? -1 : err);
}

static void gauge_ready(engine_t *e, simdev_t *d, bool up)
{
    (void)d;
    if (up) {
        e->st.ready++;
    } else {
        e->st.ready--;
    }
}

/* ---- starting connections ------------------------------------------------ */

static void dev_connect(engine_t *e, simdev_t *d)
{
    int64_t now = util_mono_us();
    e->st.connect_attempts++;
    d->t_conn = now;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        e->st.errors[SIM_ERR_SOCKET]++;
        d->state = D_DEAD;
        backoff(e, d);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const sim_engine_cfg_t *c = e->cfg;
    if (c->src_count > 0) {
        /* The source address now, the port at connect time: each
         * 127.0.0.x brings its own ephemeral port range. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + c->src_first + d->index % c->src_count);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
            goto fail;
    }
    struct sockaddr_in dst = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)e->o->mqtt_port), .sin_addr = e->dst};
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS) {
        close(fd);
        e->st.errors[SIM_ERR_CONNECT]++;
        d->state = D_DEAD;
        backoff(e, d);
        return;
    }
    struct epoll_event x = {.events = EPOLLOUT, .data.ptr = d};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &x) < 0)
        goto fail;
    d->fd = fd;
    d->events = EPOLLOUT;
    d->state = D_CONNECTING;
    e->pending++;
    reschedule(e, d);
    return;
fail:
    close(fd);
    e->st.errors[SIM_ERR_SOCKET]++;
    d->state = D_DEAD;
    backoff(e, d);
}

/* Starts what the pacing and the handshake limit allow; returns when the
 * next paced start is due (0: nothing waiting on pacing). */
static int64_t start_connections(engine_t *e, int64_t now)
{
    if (e->stopping)
        return 0;
    while (e->fcount > 0 && e->pending < e->o->max_pending) {
        simdev_t *d = &e->devs[e->fifo[e->fhead]];
        e->fhead = (e->fhead + 1) % e->ndev;
        e->fcount--;
        d->queued = false;
        if (d->state == D_WAIT)
            dev_connect(e, d);
    }
    /* The watcher first: devices wait until it is subscribed, so it sees
     * every message. */
    simdev_t *w = e->cfg->watcher ? &e->devs[e->ndevices] : NULL;
    if (w && !e->gate_open && w->state == D_DEAD)
        e->gate_open = true; /* refused for good: run without it (the error is counted) */
    if (w && !e->gate_open) {
        if (w->state == D_WAIT && !w->ever_connected && e->pending < e->o->max_pending)
            dev_connect(e, w);
        return 0;
    }
    if (e->next_first >= e->ndevices)
        return 0;
    if (e->t_first == 0) {
        e->t_first = now;
        e->st.t_start = now;
    }
    double rate = e->cfg->connect_rate;
    while (e->next_first < e->ndevices && e->pending < e->o->max_pending) {
        if (rate > 0) {
            int64_t due = e->t_first + (int64_t)((double)e->next_first * 1e6 / rate);
            if (due > now)
                return due;
        }
        simdev_t *d = &e->devs[e->next_first++];
        if (d->state == D_WAIT)
            dev_connect(e, d);
    }
    return 0;
}

/* ---- publishing ------------------------------------------------------------ */

static void topic_of(const simdev_t *d, const char *leaf, char *out, size_t cap, size_t *len)
{
    int k = snprintf(out, cap, "devices/%s/%s", d->cred->id, leaf);
    *len = k > 0 && (size_t)k < cap ? (size_t)k : 0;
}

/* Appends one PUBLISH to d's output. pid 0 at QoS 0. 0, or -1 when it
 * cannot be written (d may be closed). */
static int put_publish(engine_t *e, simdev_t *d, const char *topic, size_t tl, int qos,
                       uint16_t pid, const void *payload, size_t pl)
{
    size_t need = SIM_MQTT_HEADER_MAX + 2 + tl + 2 + 1 + pl;
    uint8_t *p = wreserve(e, d, need);
    if (!p)
        return -1;
    size_t n;
    if (sim_mqtt_encode_publish(p, wroom(e), e->o->version, topic, tl, qos, pid, payload, pl, &n) <
        0)
        return -1;
    wcommit(e, n);
    return 0;
}

/* One telemetry message from d, if the window and budget allow. Returns 1
 * sent, 0 not now, -1 d broke. */
static int publish_one(engine_t *e, simdev_t *d, int64_t now)
{
    if (e->budget == 0 || !relay_room(e))
        return 0;
    uint16_t pid = 0;
    if (e->o->qos >= 1) {
        if (d->nfree == 0)
            return 0;
        pid = (uint16_t)(d->free_slots[d->nfree - 1] + 1);
    }
    char topic[TOPIC_MAX];
    size_t tl;
    if (e->o->relay_prefix) {
        int k = snprintf(topic, sizeof(topic), "%s/%s", e->o->relay_prefix, d->cred->id);
        tl = k > 0 && (size_t)k < sizeof(topic) ? (size_t)k : 0;
    } else {
        topic_of(d, e->o->topic_leaf, topic, sizeof(topic), &tl);
    }
    size_t pl;
    int64_t wall = e->spec.shape == SIM_SHAPE_BATCH ? util_now_ms() : 0;
    e->spec.pub = d->index;
    if (tl == 0 ||
        sim_payload_build(e->pbuf, SIM_PAYLOAD_MAX, &e->spec, d->seq, wall, now, &pl) < 0)
        return -1;
    if (put_publish(e, d, topic, tl, e->o->qos, pid, e->pbuf, pl) < 0)
        return d->fd < 0 ? -1 : 0;
    d->seq++;
    if (e->o->qos >= 1) {
        d->nfree--;
        d->slot_ts[pid - 1] = now;
        e->st.inflight++;
    }
    if (e->o->relay_window)
        e->relay_out++;
    if (e->budget != UINT64_MAX)
        e->budget--;
    e->st.pub_sent++;
    if (!e->st.t_first_pub)
        e->st.t_first_pub = now;
    e->st.t_last_pub = now;
    return 1;
}

/* Saturating mode: as many messages as the window (QoS 1/2) or one batch
 * (QoS 0) allows, when nothing is waiting for the kernel. */
static void pump(engine_t *e, simdev_t *d)
{
    if (!e->publishing || e->stopping || d->state != D_READY || d->watcher ||
        e->o->telemetry_interval_us != 0 || d->out_len > d->out_off)
        return;
    int64_t now = util_mono_us();
    for (int k = 0; k < (e->o->qos >= 1 ? (int)e->o->inflight : QOS0_BATCH); k++)
        if (publish_one(e, d, now) <= 0)
            break;
}

/* Deliveries freed room in the relay window: saturating publishers fill
 * it again, round robin so none is favoured. */
static void relay_refill(engine_t *e)
{
    if (!e->o->relay_window || e->o->telemetry_interval_us != 0 || e->ndevices == 0)
        return;
    for (uint32_t k = 0; k < e->ndevices && relay_room(e); k++) {
        simdev_t *d = &e->devs[e->relay_cursor];
        e->relay_cursor = (e->relay_cursor + 1) % e->ndevices;
        if (d->fd >= 0)
            pump(e, d);
    }
    flush(e);
}

/* A full relay window with nothing delivered for RELAY_STALL_US: the
 * server dropped what is outstanding (QoS 0 under pressure) or lost it;
 * write it off and go on. Returns when to look again (0: not full). */
static int64_t relay_watch(engine_t *e, int64_t now)
{
    if (relay_room(e)) {
        e->relay_full_since = 0;
        return 0;
    }
    if (!e->relay_full_since)
        e->relay_full_since = now;
    int64_t since = e->relay_full_since > e->st.t_last_sub ? e->relay_full_since : e->st.t_last_sub;
    if (now - since < RELAY_STALL_US)
        return since + RELAY_STALL_US;
    e->st.relay_gave_up += e->relay_out;
    e->relay_out = 0;
    e->relay_full_since = 0;
    relay_refill(e);
    for (uint32_t i = 0; i < e->ndevices; i++)
        update_events(e, &e->devs[i]); /* saturating QoS 0 waits on EPOLLOUT */
    return 0;
}

/* Starts d's telemetry: a random phase within the interval so the fleet
 * does not publish in lock step. */
static void start_telemetry(engine_t *e, simdev_t *d, int64_t now)
{
    if (!telemetry_on(e) || d->watcher || d->state != D_READY || !e->publishing || e->stopping)
        return;
    int64_t iv = e->o->telemetry_interval_us;
    if (iv > 0) {
        d->next_pub = now + rnd_below(e, iv);
        reschedule(e, d);
    } else {
        pump(e, d);
    }
}

/* ---- control messages (command results, twin reports) ------------------- */

static int ctrl_slot(const simdev_t *d)
{
    for (int i = 0; i < CTRL; i++)
        if (d->ctrl_kind[i] == CK_NONE)
            return i;
    return -1;
}

/* Sends the answers that are due and have an id free. */
static void send_due(engine_t *e, simdev_t *d, int64_t now)
{
    uint8_t i = 0;
    while (i < d->noutq) {
        outq_t *q = &d->outq[i];
        int slot;
        if (q->due > now || (slot = ctrl_slot(d)) < 0) {
            i++;
            continue;
        }
        char topic[TOPIC_MAX], body[256];
        size_t tl = 0, bl = 0;
        int rc;
        if (q->kind == CK_RESULT) {
            int k = snprintf(topic, sizeof(topic), "devices/%s/commands/%s/result", d->cred->id,
                             q->cid);
            tl = k > 0 && (size_t)k < sizeof(topic) ? (size_t)k : 0;
            rc = sim_command_result(body, sizeof(body), q->failed, &bl);
        } else {
            topic_of(d, "twin/reported", topic, sizeof(topic), &tl);
            rc = sim_twin_applied(body, sizeof(body), q->version, &bl);
        }
        uint16_t pid = (uint16_t)(e->o->inflight + 1 + (uint32_t)slot);
        if (tl == 0 || rc < 0 || put_publish(e, d, topic, tl, 1, pid, body, bl) < 0)
            return;
        d->ctrl_kind[slot] = q->kind;
        d->ctrl_ts[slot] = q->kind == CK_RESULT ? q->arrived : now;
        d->nctrl++;
        e->ctrl_inflight++;
        if (q->kind == CK_RESULT) {
            e->st.cmd_replied++;
            if (q->failed)
                e->st.cmd_failed++;
        } else {
            e->st.reported_sent++;
        }
        d->outq[i] = d->outq[--d->noutq];
    }
}

static int outq_add(engine_t *e, simdev_t *d, const outq_t *q)
{
    if (!d->outq) {
        d->outq = calloc(CMDQ_MAX, sizeof(*d->outq));
        if (!d->outq)
            return -1;
    }
    if (d->noutq >= CMDQ_MAX) {
        e->st.errors[SIM_ERR_COMMANDS]++;
        return -1;
    }
    d->outq[d->noutq++] = *q;
    return 0;
}

static void periodic_twin(engine_t *e, simdev_t *d, int64_t now)
{
    int slot = ctrl_slot(d);
    if (slot >= 0) {
        char topic[TOPIC_MAX], body[128];
        size_t tl, bl;
        topic_of(d, "twin/reported", topic, sizeof(topic), &tl);
        uint16_t pid = (uint16_t)(e->o->inflight + 1 + (uint32_t)slot);
        if (tl &&
            sim_twin_report(body, sizeof(body), (now - e->cfg->t0) / 1000000, ++d->twin_reports,
                            &bl) == 0 &&
            put_publish(e, d, topic, tl, 1, pid, body, bl) == 0) {
            d->ctrl_kind[slot] = CK_TWIN;
            d->ctrl_ts[slot] = now;
            d->nctrl++;
            e->ctrl_inflight++;
            e->st.reported_sent++;
        }
    }
    d->next_twin = now + e->o->twin_interval_us;
}

/* ---- inbound packets ------------------------------------------------------- */

static void check_all_ready(engine_t *e, int64_t now);

static void on_connack(engine_t *e, simdev_t *d, const uint8_t *b, size_t n)
{
    sim_mqtt_connack_t ca;
    if (d->state != D_CONNACK || sim_mqtt_decode_connack(b, n, e->o->version, &ca) < 0) {
        dev_fail(e, d, SIM_ERR_PROTOCOL);
        return;
    }
    int64_t now = util_mono_us();
    if (ca.code != 0) {
        e->st.refused[ca.code]++;
        e->st.errors[SIM_ERR_REFUSED]++;
        bool retry = sim_mqtt_connack_retryable(e->o->version, ca.code);
        dev_close(e, d);
        if (retry)
            backoff(e, d);
        else
            d->state = D_DEAD;
        return;
    }
    e->pending--;
    d->state = D_READY;
    d->attempt = 0;
    d->last_tx = now;
    sim_hist_add(&e->st.connack, now - d->t_conn);
    if (!d->watcher) {
        e->st.connects++;
        if (d->ever_connected)
            e->st.reconnects++;
        e->st.connected++;
        if (e->st.connected > e->st.connected_peak)
            e->st.connected_peak = e->st.connected;
    }
    d->ever_connected = true;
    if (e->o->keepalive)
        d->next_ping = now + (int64_t)e->o->keepalive * 500000;
    if (needs_sub(e, d)) {
        char t1[TOPIC_MAX], t2[TOPIC_MAX];
        const char *filters[2];
        uint8_t qos[2];
        size_t nf = 0, tl;
        if (d->watcher) {
            filters[nf] = e->o->subscribe_all;
            qos[nf++] = (uint8_t)e->o->sub_qos;
        } else {
            topic_of(d, "commands/+", t1, sizeof(t1), &tl);
            topic_of(d, "twin/desired", t2, sizeof(t2), &tl);
            filters[nf] = t1;
            qos[nf++] = 1;
            filters[nf] = t2;
            qos[nf++] = 1;
        }
        uint8_t *p = wreserve(e, d, 2 * TOPIC_MAX + strlen(filters[0]) + 32);
        size_t len;
        if (!p || sim_mqtt_encode_subscribe(p, wroom(e), e->o->version, SUB_PID, filters, qos, nf,
                                            &len) < 0) {
            dev_fail(e, d, SIM_ERR_PROTOCOL);
            return;
        }
        wcommit(e, len);
    } else {
        d->subscribed = true;
        gauge_ready(e, d, true);
    }
    if (e->o->twin_interval_us > 0 && !d->watcher)
        d->next_twin = now + rnd_below(e, e->o->twin_interval_us);
    start_telemetry(e, d, now);
    reschedule(e, d);
    check_all_ready(e, now);
}

static void on_suback(engine_t *e, simdev_t *d, const uint8_t *b, size_t n)
{
    uint16_t pid;
    uint8_t codes[8];
    size_t nc;
    if (d->state != D_READY ||
        sim_mqtt_decode_suback(b, n, e->o->version, &pid, codes, sizeof(codes), &nc) < 0 ||
        pid != SUB_PID) {
        dev_fail(e, d, SIM_ERR_PROTOCOL);
        return;
    }
    for (size_t i = 0; i < nc; i++)
        if (codes[i] >= 0x80)
            e->st.errors[SIM_ERR_SUBACK]++;
    if (!d->subscribed) {
        d->subscribed = true;
        gauge_ready(e, d, true);
        if (d->watcher)
            e->gate_open = true;
        check_all_ready(e, util_mono_us());
    }
}

/* Writes a PUBACK, PUBREC, PUBREL or PUBCOMP for pid to d. */
static void put_ack(engine_t *e, simdev_t *d, uint8_t type, uint16_t pid)
{
    uint8_t *p = wreserve(e, d, 4);
    size_t len;
    if (p && sim_mqtt_encode_ack(p, wroom(e), type, pid, &len) == 0)
        wcommit(e, len);
}

/* The end of a telemetry message's exchange (PUBACK, PUBCOMP, or a
 * refusing PUBREC): its latency, its slot back, the window refilled. */
static void telemetry_acked(engine_t *e, simdev_t *d, uint16_t pid, int64_t now)
{
    sim_hist_add(&e->st.puback, now - d->slot_ts[pid - 1]);
    d->slot_ts[pid - 1] = -1;
    if (d->slot_rec)
        d->slot_rec[pid - 1] = 0;
    d->free_slots[d->nfree++] = (uint16_t)(pid - 1);
    e->st.inflight--;
    e->st.pub_acked++;
    e->st.t_last_ack = now;
    pump(e, d);
}

/* PUBREC or PUBCOMP for a QoS 2 telemetry message. */
static void on_qos2_ack(engine_t *e, simdev_t *d, uint8_t type, const sim_mqtt_ack_t *a,
                        int64_t now)
{
    uint32_t w = e->o->inflight;
    if (e->o->qos != 2 || a->pid > w || !d->slot_rec || d->slot_ts[a->pid - 1] < 0) {
        dev_fail(e, d, SIM_ERR_PROTOCOL); /* an id we never used at QoS 2 */
        return;
    }
    uint32_t s = a->pid - 1u;
    if (type == SIM_MQTT_PUBREC) {
        if (a->reason >= 0x80) {
            /* Refused (MQTT 5): the exchange ends here, no PUBREL. */
            e->st.errors[SIM_ERR_PUBACK]++;
            telemetry_acked(e, d, a->pid, now);
            return;
        }
        if (!d->slot_rec[s]) {
            d->slot_rec[s] = 1;
            sim_hist_add(&e->st.pubrec, now - d->slot_ts[s]);
        }
        put_ack(e, d, SIM_MQTT_PUBREL, a->pid); /* again for a repeated PUBREC */
        return;
    }
    if (!d->slot_rec[s]) {
        dev_fail(e, d, SIM_ERR_PROTOCOL); /* PUBCOMP before PUBREC */
        return;
    }
    telemetry_acked(e, d, a->pid, now);
}

/* PUBACK, PUBREC or PUBCOMP from the server. */
static void on_ack(engine_t *e, simdev_t *d, uint8_t type, const uint8_t *b, size_t n)
{
    sim_mqtt_ack_t a;
    if (d->state != D_READY || sim_mqtt_decode_ack(b, n, e->o->version, &a) < 0) {
        dev_fail(e, d, SIM_ERR_PROTOCOL);
        return;
    }
    int64_t now = util_mono_us();
    if (type != SIM_MQTT_PUBACK) {
        on_qos2_ack(e, d, type, &a, now);
        return;
    }
    uint32_t w = e->o->inflight;
    if (a.reason >= 0x80)
        e->st.errors[SIM_ERR_PUBACK]++;
    if (a.pid <= w && d->free_slots && e->o->qos == 1 && d->slot_ts[a.pid - 1] >= 0) {
        telemetry_acked(e, d, a.pid, now);
        return;
    }
    uint32_t s = (uint32_t)a.pid - w - 1;
    if (a.pid > w && s < CTRL && d->ctrl_kind[s] != CK_NONE) {
        if (d->ctrl_kind[s] == CK_RESULT) {
            e->st.cmd_acked++;
            sim_hist_add(&e->st.command, now - d->ctrl_ts[s]);
        } else {
            e->st.reported_acked++;
        }
        d->ctrl_kind[s] = CK_NONE;
        d->nctrl--;
        e->ctrl_inflight--;
        if (d->noutq)
            send_due(e, d, now);
        return;
    }
    dev_fail(e, d, SIM_ERR_PROTOCOL); /* an id we never used */
}

/* The watcher got m: frees its relay window slot, and those of the
 * messages of the same publisher it skipped over. */
static void relay_delivered(engine_t *e, const sim_mqtt_publish_t *m)
{
    uint64_t freed = 1, pub, seq;
    if (e->spec.relay && sim_payload_relay_ids(m->payload, m->payload_len, &pub, &seq) == 0 &&
        pub < e->ndevices) {
        simdev_t *p = &e->devs[pub];
        if (seq < p->rx_next) {
            e->st.sub_late++; /* its slot went when a later one came */
            return;
        }
        e->st.sub_gaps += seq - p->rx_next;
        freed = seq - p->rx_next + 1;
        p->rx_next = seq + 1;
    }
    e->relay_out = e->relay_out > freed ? e->relay_out - freed : 0;
}

static void on_publish(engine_t *e, simdev_t *d, uint8_t flags, const uint8_t *b, size_t n)
{
    sim_mqtt_publish_t m;
    if (d->state != D_READY || sim_mqtt_decode_publish(flags, b, n, e->o->version, &m) < 0) {
        dev_fail(e, d, SIM_ERR_PROTOCOL);
        return;
    }
    int64_t now = util_mono_us();
    bool again = false; /* a QoS 2 message we have already (no PUBREL yet) */
    if (m.qos == 1) {
        put_ack(e, d, SIM_MQTT_PUBACK, m.pid);
    } else if (m.qos == 2) {
        if (d->rx_ids) {
            uint8_t bit = (uint8_t)(1u << (m.pid & 7));
            again = d->rx_ids[m.pid >> 3] & bit;
            d->rx_ids[m.pid >> 3] |= bit;
        }
        put_ack(e, d, SIM_MQTT_PUBREC, m.pid);
    }
    if (d->fd < 0)
        return;
    if (d->watcher) {
        if (again) {
            e->st.sub_duplicates++;
            return;
        }
        relay_delivered(e, &m);
        e->st.sub_received++;
        if (!e->st.t_first_sub)
            e->st.t_first_sub = now;
        e->st.t_last_sub = now;
        int64_t t;
        if (sim_payload_sent_us(m.payload, m.payload_len, &t) == 0 && t <= now)
            sim_hist_add(&e->st.relay, now - t);
        return;
    }
    outq_t q = {.due = now, .arrived = now};
    if (sim_topic_command(m.topic, m.topic_len, d->cred->id, q.cid, sizeof(q.cid))) {
        e->st.cmd_received++;
        q.kind = CK_RESULT;
        q.due = now + e->o->command_delay_us;
        q.failed = e->o->command_fail_share > 0 && rnd01(e) < e->o->command_fail_share;
    } else if (sim_topic_desired(m.topic, m.topic_len, d->cred->id)) {
        e->st.desired_received++;
        if (sim_desired_version(m.payload, m.payload_len, &q.version) < 0)
            return; /* nothing to apply */
        q.kind = CK_TWIN;
    } else {
        return; /* something else under our namespace: ignore */
    }
    if (outq_add(e, d, &q) < 0)
        return;
    send_due(e, d, now);
    reschedule(e, d);
}

/* PUBREL for a QoS 2 message we received: forget its id, PUBCOMP. */
static void on_pubrel(engine_t *e, simdev_t *d, const uint8_t *b, size_t n)
{
    sim_mqtt_ack_t a;
    if (d->state != D_READY || sim_mqtt_decode_ack(b, n, e->o->version, &a) < 0) {
        dev_fail(e, d, SIM_ERR_PROTOCOL);
        return;
    }
    if (d->rx_ids)
        d->rx_ids[a.pid >> 3] &= (uint8_t) ~(1u << (a.pid & 7));
    put_ack(e, d, SIM_MQTT_PUBCOMP, a.pid);
}

/* Parses whole packets from buf. Returns bytes consumed, or -1 when d was
 * closed. */
static ssize_t parse(engine_t *e, simdev_t *d, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        uint8_t type, flags;
        uint32_t rem;
        size_t hl;
        int rc = sim_mqtt_parse_header(buf + off, len - off, &type, &flags, &rem, &hl);
        if (rc == -EAGAIN)
            break;
        if (rc < 0 || rem > IN_MAX || !sim_mqtt_flags_ok(type, flags)) {
            dev_fail(e, d, SIM_ERR_PROTOCOL);
            return -1;
        }
        if (len - off - hl < rem)
            break;
        const uint8_t *body = buf + off + hl;
        switch (type) {
        case SIM_MQTT_CONNACK:
            on_connack(e, d, body, rem);
            break;
        case SIM_MQTT_PUBACK:
        case SIM_MQTT_PUBREC:
        case SIM_MQTT_PUBCOMP:
            on_ack(e, d, type, body, rem);
            break;
        case SIM_MQTT_PUBREL:
            on_pubrel(e, d, body, rem);
            break;
        case SIM_MQTT_SUBACK:
            on_suback(e, d, body, rem);
            break;
        case SIM_MQTT_PUBLISH:
            on_publish(e, d, flags, body, rem);
            break;
        case SIM_MQTT_PINGRESP:
            if (rem != 0)
                dev_fail(e, d, SIM_ERR_PROTOCOL);
            break;
        case SIM_MQTT_DISCONNECT: {
            uint8_t reason;
            (void)sim_mqtt_decode_disconnect(body, rem, e->o->version, &reason);
            dev_fail(e, d, SIM_ERR_SERVER_DISCONNECT);
            break;
        }
        default:
            dev_fail(e, d, SIM_ERR_PROTOCOL);
            break;
        }
        if (d->fd < 0)
            return -1;
        off += hl + rem;
    }
    return (ssize_t)off;
}

static void on_readable(engine_t *e, simdev_t *d)
{
    for (;;) {
        size_t have = d->in_len;
        if (have)
            memcpy(e->rbuf, d->in, have);
        ssize_t r = recv(d->fd, e->rbuf + have, RBUF_SIZE - have, 0);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
            int err = d->state == D_CONNACK ? SIM_ERR_CLOSED : SIM_ERR_DROPPED;
            if (e->stopping)
                err = -1; /* the server closing at the end is not an error */
            dev_fail(e, d, err);
            return;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        size_t total = have + (size_t)r;
        ssize_t used = parse(e, d, e->rbuf, total);
        if (used < 0)
            return;
        size_t left = total - (size_t)used;
        if (left != d->in_len || left == 0) {
            free(d->in);
            d->in = NULL;
            d->in_len = 0;
            if (left) {
                d->in = malloc(left);
                if (!d->in) {
                    dev_fail(e, d, SIM_ERR_SOCKET);
                    return;
                }
            }
        }
        if (left)
            memcpy(d->in, e->rbuf + used, left);
        d->in_len = left;
        if ((size_t)r < RBUF_SIZE - have)
            return;
    }
}

static void on_connected(engine_t *e, simdev_t *d)
{
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
        dev_fail(e, d, SIM_ERR_CONNECT);
        return;
    }
    d->state = D_CONNACK;
    set_events(e, d, EPOLLIN);
    sim_mqtt_connect_t c = {
        .version = e->o->version,
        .client_id = d->watcher ? e->o->sub_user : d->cred->id,
        .username = d->watcher ? e->o->sub_user : d->cred->id,
        .password = NULL,
        .keepalive = e->o->keepalive,
        .clean = true,
    };
    if (d->watcher)
        c.password = e->o->sub_password ? e->o->sub_password : e->o->token;
    else if (d->cred->secret[0])
        c.password = d->cred->secret;
    if (e->o->no_auth && !d->watcher)
        c.username = NULL;
    uint8_t *p = wreserve(e, d, 1024);
    size_t n;
    if (!p || sim_mqtt_encode_connect(p, wroom(e), &c, &n) < 0) {
        dev_fail(e, d, SIM_ERR_PROTOCOL);
        return;
    }
    wcommit(e, n);
}

static void on_event(engine_t *e, simdev_t *d, uint32_t ev)
{
    if (d->state == D_CONNECTING) {
        on_connected(e, d);
        return;
    }
    if (ev & EPOLLIN) {
        on_readable(e, d);
        if (d->watcher && e->o->relay_window)
            relay_refill(e);
        if (d->fd < 0)
            return;
    } else if (ev & (EPOLLERR | EPOLLHUP)) {
        dev_fail(e, d, d->state == D_CONNACK ? SIM_ERR_CLOSED : SIM_ERR_DROPPED);
        return;
    }
    if ((ev & EPOLLOUT) && d->out_len > d->out_off) {
        flush(e); /* keep the order: earlier bytes of this device go first */
        if (d->fd < 0 || drain_pending(e, d) < 0)
            return;
    }
    pump(e, d);
    /* Level-triggered: drop EPOLLOUT as soon as nothing needs it. */
    update_events(e, d);
}

/* ---- timers ------------------------------------------------------------------ */

static void on_timer(engine_t *e, simdev_t *d, int64_t now)
{
    switch (d->state) {
    case D_CONNECTING:
    case D_CONNACK:
        dev_fail(e, d, SIM_ERR_TIMEOUT);
        return;
    case D_BACKOFF:
        enqueue_reconnect(e, d);
        return;
    case D_READY:
        break;
    default:
        return;
    }
    if (d->next_pub && d->next_pub <= now) {
        int64_t iv = e->o->telemetry_interval_us;
        if (e->publishing && !e->stopping) {
            /* --burst messages per tick, written together; each one that
             * finds the window full (or the socket backed up) is skipped. */
            for (uint32_t k = 0; k < e->o->burst; k++) {
                if (d->out_len - d->out_off > OUT_BACKLOG || (e->o->qos >= 1 && d->nfree == 0) ||
                    !relay_room(e)) {
                    e->st.pub_skipped++;
                } else if (publish_one(e, d, now) < 0) {
                    return;
                }
                if (d->fd < 0)
                    return;
            }
            d->next_pub += iv;
            /* Fallen behind by more than a tick: skip ahead, no burst. */
            if (d->next_pub < now - iv)
                d->next_pub = now + iv;
            if (e->budget == 0)
                d->next_pub = 0;
        } else {
            d->next_pub = 0;
        }
    }
    if (d->noutq)
        send_due(e, d, now);
    if (d->fd < 0)
        return;
    if (d->next_twin && d->next_twin <= now) {
        if (e->stopping)
            d->next_twin = 0;
        else
            periodic_twin(e, d, now);
    }
    if (d->next_ping && d->next_ping <= now) {
        int64_t half = (int64_t)e->o->keepalive * 500000;
        if (now - d->last_tx >= half) {
            uint8_t *p = wreserve(e, d, 2);
            size_t n;
            if (p && sim_mqtt_encode_pingreq(p, wroom(e), &n) == 0)
                wcommit(e, n);
            d->next_ping = now + half;
        } else {
            d->next_ping = d->last_tx + half;
        }
    }
    if (d->fd >= 0)
        reschedule(e, d);
}

/* ---- run phases ---------------------------------------------------------- */

static void send_snapshot(engine_t *e, bool final, uint64_t tick)
{
    if (e->ctl_closed)
        return;
    static sim_ctl_msg_t msg; /* ~80 KB: not on the stack */
    msg.magic = SIM_CTL_MAGIC;
    msg.final = final;
    msg.tick = tick;
    msg.stats = e->st;
    const uint8_t *p = (const uint8_t *)&msg;
    size_t left = sizeof(msg);
    while (left > 0) {
        ssize_t w = send(e->cfg->ctl_fd, p, left, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            e->ctl_closed = true; /* the parent is gone: finish quietly */
            g_stop = 1;
            return;
        }
        p += w;
        left -= (size_t)w;
    }
}

static void check_all_ready(engine_t *e, int64_t now)
{
    if (e->st.ready < e->st.ready_target)
        return;
    bool tell = false;
    if (!e->st.t_all_connected) {
        e->st.t_all_connected = now;
        tell = true;
    }
    if (e->st.t_drop && !e->st.t_recovered) {
        e->st.t_recovered = now;
        tell = true;
    }
    if (tell) {
        flush(e);
        send_snapshot(e, false, 0);
    }
    /* Without a barrier each device starts on its own CONNACK; with one the
     * parent says when (SIM_CTL_GO). */
}

static void start_publishing(engine_t *e)
{
    if (e->publishing)
        return;
    e->publishing = true;
    int64_t now = util_mono_us();
    for (uint32_t i = 0; i < e->ndevices; i++) {
        start_telemetry(e, &e->devs[i], now);
        flush(e);
    }
}

static void drop_all(engine_t *e)
{
    int64_t now = util_mono_us();
    e->st.t_drop = now;
    e->st.t_recovered = 0;
    flush(e);
    for (uint32_t i = 0; i < e->ndevices; i++) {
        simdev_t *d = &e->devs[i];
        if (d->state == D_READY || d->state == D_CONNECTING || d->state == D_CONNACK) {
            dev_close(e, d); /* no DISCONNECT: like a network failure */
            d->attempt = 0;
            backoff(e, d);
        }
    }
}

static void begin_stop(engine_t *e, int64_t now)
{
    if (e->stopping)
        return;
    e->stopping = true;
    e->drain_until = now + e->o->drain_us;
    flush(e);
    for (uint32_t i = 0; i < e->ndev; i++) {
        simdev_t *d = &e->devs[i];
        d->next_pub = d->next_twin = 0;
        d->noutq = 0;
        if (d->state == D_CONNECTING || d->state == D_CONNACK || d->state == D_BACKOFF ||
            d->state == D_WAIT) {
            dev_close(e, d);
            d->state = D_DONE;
        }
    }
}

/* Nothing more to wait for: no QoS 1 message unacknowledged, and the
 * watcher (if any) has had nothing for WATCHER_QUIET_US, so the tail of a
 * QoS 0 fan-in is counted. */
static bool drained(const engine_t *e)
{
    if (e->cfg->watcher && e->st.t_last_sub && util_mono_us() - e->st.t_last_sub < WATCHER_QUIET_US)
        return false;
    return e->st.inflight == 0 && e->ctrl_inflight == 0;
}

/* Says goodbye politely, so servers count clean disconnects (and publish
 * no wills), and sends the final snapshot. */
static void finish(engine_t *e)
{
    flush(e);
    e->st.errors[SIM_ERR_UNACKED] += e->st.inflight;
    e->st.t_end = util_mono_us();
    uint64_t connected = e->st.connected, ready = e->st.ready, inflight = e->st.inflight;
    for (uint32_t i = 0; i < e->ndev; i++) {
        simdev_t *d = &e->devs[i];
        if (d->state == D_READY && d->fd >= 0) {
            uint8_t *p = wreserve(e, d, 2);
            size_t n;
            if (p && sim_mqtt_encode_disconnect(p, wroom(e), &n) == 0)
                wcommit(e, n);
            flush(e);
        }
        if (d->fd >= 0) {
            dev_close(e, d);
        }
        d->state = D_DONE;
    }
    /* Report the state at the end of the run, not after our own goodbyes. */
    e->st.connected = connected;
    e->st.ready = ready;
    e->st.inflight = inflight;
    send_snapshot(e, true, 0);
}

static void on_ctl(engine_t *e, int64_t now)
{
    char buf[16];
    for (;;) {
        ssize_t r = recv(e->cfg->ctl_fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return;
        if (r == 0) {
            e->ctl_closed = true;
            begin_stop(e, now);
            epoll_ctl(e->epfd, EPOLL_CTL_DEL, e->cfg->ctl_fd, NULL);
            return;
        }
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] == SIM_CTL_GO)
                start_publishing(e);
            else if (buf[i] == SIM_CTL_STOP)
                begin_stop(e, now);
        }
    }
}

/* ---- setup --------------------------------------------------------------- */

static int engine_init(engine_t *e, const sim_engine_cfg_t *cfg)
{
    const sim_opts_t *o = cfg->o;
    memset(e, 0, sizeof(*e));
    e->cfg = cfg;
    e->o = o;
    e->epfd = -1;
    e->ndevices = cfg->n;
    e->ndev = cfg->n + (cfg->watcher ? 1 : 0);
    if (inet_pton(AF_INET, o->mqtt_host, &e->dst) != 1)
        return -EINVAL;
    e->devs = calloc(e->ndev, sizeof(*e->devs));
    e->heap = calloc(e->ndev, sizeof(*e->heap));
    e->fifo = calloc(e->ndev, sizeof(*e->fifo));
    e->rbuf = malloc(RBUF_SIZE);
    e->wbuf = malloc(WBUF_SIZE);
    e->pbuf = malloc(SIM_PAYLOAD_MAX);
    if (!e->devs || !e->heap || !e->fifo || !e->rbuf || !e->wbuf || !e->pbuf)
        return -ENOMEM;
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->epfd < 0)
        return -errno;
    static const sim_cred_t watcher_cred = {.id = "watcher"};
    for (uint32_t i = 0; i < e->ndev; i++) {
        simdev_t *d = &e->devs[i];
        d->fd = -1;
        d->heap_pos = NO_HEAP;
        d->index = i;
        d->state = D_WAIT;
        d->watcher = i == cfg->n;
        d->cred = d->watcher ? &watcher_cred : &cfg->creds[i];
        if (d->watcher && o->sub_qos == 2) {
            d->rx_ids = calloc(1, RX_IDS_BYTES);
            if (!d->rx_ids)
                return -ENOMEM;
        }
        if (!d->watcher && o->qos >= 1 && telemetry_on(e)) {
            d->free_slots = malloc(o->inflight * sizeof(*d->free_slots));
            d->slot_ts = malloc(o->inflight * sizeof(*d->slot_ts));
            if (!d->free_slots || !d->slot_ts)
                return -ENOMEM;
            if (o->qos == 2 && !(d->slot_rec = calloc(o->inflight, 1)))
                return -ENOMEM;
            for (uint32_t s = 0; s < o->inflight; s++) {
                d->free_slots[s] = (uint16_t)(o->inflight - 1 - s);
                d->slot_ts[s] = -1;
            }
            d->nfree = (uint16_t)o->inflight;
        }
    }
    e->st.devices = cfg->n;
    e->st.ready_target = e->ndev;
    e->gate_open = !cfg->watcher;
    e->publishing = !o->wait_all;
    e->budget = cfg->messages ? cfg->messages : UINT64_MAX;
    if (o->messages && cfg->messages == 0)
        e->budget = 0; /* a share of nothing */
    e->spec = (sim_payload_spec_t){.shape = o->shape,
                                   .n = o->shape_n,
                                   .size = o->payload_size,
                                   .seq = o->seq,
                                   .sent_us = o->subscribe_all != NULL,
                                   .relay = (o->relay_prefix || o->relay_window) &&
                                            o->workers == 1 && cfg->watcher};
    uint64_t seed = o->seed ? o->seed : (uint64_t)util_mono_us();
    e->rng = (seed ^ (UINT64_C(0x9e3779b97f4a7c15) * (cfg->worker + 1))) | 1;
    struct epoll_event x = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, cfg->ctl_fd, &x) < 0)
        return -errno;
    return 0;
}

static void engine_fini(engine_t *e)
{
    if (e->devs) {
        for (uint32_t i = 0; i < e->ndev; i++) {
            simdev_t *d = &e->devs[i];
            if (d->fd >= 0)
                close(d->fd);
            free_io(d);
            free(d->free_slots);
            free(d->slot_ts);
            free(d->slot_rec);
            free(d->rx_ids);
            free(d->outq);
        }
    }
    free(e->devs);
    free(e->heap);
    free(e->fifo);
    free(e->rbuf);
    free(e->wbuf);
    free(e->pbuf);
    if (e->epfd >= 0)
        close(e->epfd);
}

int sim_engine_run(const sim_engine_cfg_t *cfg)
{
    static engine_t eng;
    engine_t *e = &eng;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int rc = engine_init(e, cfg);
    if (rc < 0) {
        fprintf(stderr, "drover-sim: worker %u: cannot start: %s\n", cfg->worker, strerror(-rc));
        engine_fini(e);
        return 1;
    }
    const sim_opts_t *o = cfg->o;
    int64_t t_end = cfg->t0 + o->duration_us;
    int64_t t_drop = o->drop_at_us >= 0 ? cfg->t0 + o->drop_at_us : 0;
    int64_t snap_every = o->report_interval_us > 0 ? o->report_interval_us : 1000000;
    /* Snapshots on the run's clock (t0 + k * interval) in every worker, so
     * the parent's per-interval rates compare like with like. */
    int64_t next_snap = cfg->t0 + snap_every;
    if (e->ndevices == 0)
        e->st.t_start = util_mono_us();
    static struct epoll_event evs[1024];
    for (;;) {
        int64_t now = util_mono_us();
        if (g_stop)
            begin_stop(e, now);
        if (!e->stopping && now >= t_end)
            begin_stop(e, now);
        if (!e->stopping && o->messages && e->budget == 0 && drained(e))
            begin_stop(e, now); /* this worker's share is published and acknowledged */
        if (e->stopping && (drained(e) || now >= e->drain_until))
            break;
        if (t_drop && now >= t_drop && !e->stopping) {
            drop_all(e);
            t_drop = 0;
        }
        int64_t paced = start_connections(e, now);
        flush(e);
        int64_t relay_next = e->o->relay_window && !e->stopping ? relay_watch(e, now) : 0;
        while (e->hn > 0) {
            simdev_t *d = &e->devs[e->heap[0]];
            if (d->wake > now)
                break;
            heap_del(e, d);
            on_timer(e, d, now);
            flush(e);
        }
        if (e->fcount > 0 && e->pending < o->max_pending && !e->stopping)
            continue; /* reconnects became due */
        if (now >= next_snap) {
            send_snapshot(e, false, (uint64_t)((now - cfg->t0) / snap_every));
            while (next_snap <= now)
                next_snap += snap_every;
        }
        int64_t wake = min64(next_snap, e->stopping ? e->drain_until : t_end);
        if (t_drop)
            wake = min64(wake, t_drop);
        if (paced)
            wake = min64(wake, paced);
        if (relay_next)
            wake = min64(wake, relay_next);
        if (e->cfg->watcher && e->st.t_last_sub && (e->stopping || e->budget == 0))
            wake = min64(wake, e->st.t_last_sub + WATCHER_QUIET_US);
        if (e->hn > 0)
            wake = min64(wake, e->devs[e->heap[0]].wake);
        int64_t wait_us = wake - util_mono_us();
        int timeout = wait_us <= 0 ? 0 : (int)((wait_us + 999) / 1000);
        int n = epoll_wait(e->epfd, evs, (int)ARRAY_SIZE(evs), timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < n; i++) {
            simdev_t *d = evs[i].data.ptr;
            if (!d) {
                on_ctl(e, util_mono_us());
                continue;
            }
            if (d->fd < 0)
                continue; /* closed earlier in this batch */
            on_event(e, d, evs[i].events);
            flush(e);
        }
    }
    finish(e);
    engine_fini(e);
    return 0;
}

/*
 * drover-sim: simulates a fleet of MQTT devices against droverd (or any
 * MQTT broker) for capacity planning, demos and performance work.
 *
 * This file is the parent process: it parses the command line, gets the
 * fleet's credentials (creates the devices through the REST API, reads a
 * --creds file, or makes up ids for --no-auth), forks --workers worker
 * processes (engine.c: one epoll loop each, a contiguous slice of the
 * fleet and its own source addresses), and then only listens: it merges
 * the workers' statistics snapshots, prints a live line, rewrites the
 * --status-file, tells the workers when everyone is connected (--wait-all
 * barrier) or when to stop (--until-connected, SIGINT/SIGTERM), and prints
 * the final report when every worker has sent its last snapshot.
 *
 * Several processes because one process may hold at most RLIMIT_NOFILE
 * descriptors (20,000 here); each worker raises its soft limit to the
 * hard one, inherited from the parent.
 *
 * Every run is bounded: --duration (at most 24 h) stops the workers, and
 * the parent kills any worker still running GRACE_S seconds after that.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "sim/creds.h"
#include "sim/engine.h"
#include "sim/fleet.h"
#include "sim/opts.h"
#include "sim/stats.h"

#define GRACE_S 30
#define PER_SOURCE_ADDR 10000 /* devices per 127.0.0.x by default */
#define FD_SPARE 64
#define LATE_US 500000

typedef struct {
    pid_t pid;
    int fd;
    sim_ctl_msg_t msg; /* being received */
    size_t got;
    uint64_t tick; /* latest periodic snapshot */
    sim_stats_t last;
    bool have, final, eof;
} worker_t;

static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    g_signal = sig;
}

static void die_usage(const char *msg)
{
    fprintf(stderr, "drover-sim: %s\n(see drover-sim --help)\n", msg);
    exit(2);
}

static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

static int load_fleet(const sim_opts_t *o, sim_cred_t **out, uint32_t *n, sim_fleet_result_t *made)
{
    char err[512];
    if (o->creds_file) {
        uint32_t want = o->devices_given ? o->devices : SIM_DEVICES_MAX;
        int rc = sim_creds_read(o->creds_file, want, out, n, err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "drover-sim: %s\n", err);
            return rc;
        }
        if (*n == 0 || (o->devices_given && *n < o->devices)) {
            fprintf(stderr, "drover-sim: %s has %u credentials, %u wanted\n", o->creds_file, *n,
                    o->devices_given ? o->devices : 1);
            free(*out);
            return -EINVAL;
        }
        return 0;
    }
    sim_cred_t *c = calloc(o->devices, sizeof(*c));
    if (!c)
        return -ENOMEM;
    if (sim_creds_generate(c, o->devices, o->id_prefix, 0) < 0) {
        free(c);
        return -EINVAL;
    }
    if (o->api_given) {
        int rc =
            sim_fleet_create(o, c, o->devices, o->quiet ? NULL : stderr, made, err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "drover-sim: creating the fleet: %s\n", err);
            free(c);
            return rc;
        }
    }
    *out = c;
    *n = o->devices;
    return 0;
}

/* Reads what a worker sent; 0, or -1 at EOF/error. */
static int read_worker(worker_t *w)
{
    for (;;) {
        uint8_t *p = (uint8_t *)&w->msg;
        ssize_t r = recv(w->fd, p + w->got, sizeof(w->msg) - w->got, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (r <= 0)
            return -1;
        w->got += (size_t)r;
        if (w->got < sizeof(w->msg))
            continue;
        w->got = 0;
        if (w->msg.magic != SIM_CTL_MAGIC)
            return -1;
        w->last = w->msg.stats;
        w->have = true;
        if (w->msg.tick > w->tick)
            w->tick = w->msg.tick;
        if (w->msg.final)
            w->final = true;
    }
}

static void tell(worker_t *ws, uint32_t n, char what)
{
    for (uint32_t i = 0; i < n; i++)
        if (!ws[i].eof && !ws[i].final)
            (void)send(ws[i].fd, &what, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void merge_all(const worker_t *ws, uint32_t n, sim_stats_t *agg)
{
    sim_stats_init(agg);
    bool first = true;
    for (uint32_t i = 0; i < n; i++) {
        if (!ws[i].have)
            continue;
        sim_stats_merge(agg, &ws[i].last, first);
        first = false;
    }
    /* A worker that never reported cannot have everyone connected. */
    for (uint32_t i = 0; i < n; i++)
        if (!ws[i].have) {
            agg->t_all_connected = 0;
            agg->t_recovered = 0;
        }
}

static void write_status(const sim_opts_t *o, const sim_stats_t *agg, int64_t t0)
{
    char tmp[4096];
    int k = snprintf(tmp, sizeof(tmp), "%s.tmp", o->status_file);
    if (k < 0 || (size_t)k >= sizeof(tmp))
        return;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    sim_stats_t s = *agg;
    if (!s.t_end)
        s.t_end = util_mono_us();
    sim_report_json(f, o, &s, t0, false);
    if (fclose(f) == 0)
        rename(tmp, o->status_file);
}

int main(int argc, char **argv)
{
    static sim_opts_t o;
    char err[512];
    int prc = sim_opts_parse(&o, argc, argv, err, sizeof(err));
    if (prc == 1) {
        sim_opts_usage(stdout);
        return 0;
    }
    if (prc < 0)
        die_usage(err);
    setvbuf(stderr, NULL, _IOLBF, 0);
    rlim_t nofile = raise_nofile();

    sim_cred_t *creds = NULL;
    uint32_t n = 0;
    sim_fleet_result_t made = {0};
    if (load_fleet(&o, &creds, &n, &made) < 0)
        return 1;
    if (o.write_creds_file) {
        int rc = sim_creds_write(o.write_creds_file, creds, n);
        if (rc < 0) {
            fprintf(stderr, "drover-sim: %s: %s\n", o.write_creds_file, strerror(-rc));
            free(creds);
            return 1;
        }
    }
    if (o.create_only) {
        if (o.json)
            printf("{\"devices\":%u,\"created\":%u,\"existing\":%u,\"elapsed_s\":%.3f}\n", n,
                   made.created, made.existing, made.elapsed_s);
        else
            printf("drover-sim: %u devices (%u created, %u existing with a new secret) in %.1f s\n",
                   n, made.created, made.existing, made.elapsed_s);
        free(creds);
        return 0;
    }
    o.devices = n;
    if (o.workers > n)
        o.workers = n;
    uint32_t per_worker = (n + o.workers - 1) / o.workers;
    if ((rlim_t)per_worker + FD_SPARE > nofile) {
        fprintf(stderr,
                "drover-sim: %u devices per worker need %u descriptors, the limit is %llu: use "
                "--workers %u or more\n",
                per_worker, per_worker + FD_SPARE, (unsigned long long)nofile,
                (unsigned)((n + (nofile - FD_SPARE) - 1) / (nofile - FD_SPARE)));
        free(creds);
        return 2;
    }
    /* Source addresses: by default one per PER_SOURCE_ADDR devices and at
     * least one per worker, split evenly between the workers. */
    uint32_t nsrc = o.source_addrs;
    if (nsrc == 0) {
        nsrc = (n + PER_SOURCE_ADDR - 1) / PER_SOURCE_ADDR;
        if (nsrc < o.workers)
            nsrc = o.workers;
    }
    if (nsrc > SIM_SOURCE_ADDRS_MAX)
        nsrc = SIM_SOURCE_ADDRS_MAX;
    uint32_t src_each = nsrc / o.workers;
    if (src_each == 0)
        src_each = 1;

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    static worker_t ws[SIM_WORKERS_MAX];
    int64_t t0 = util_mono_us();
    uint32_t lo = 0;
    for (uint32_t i = 0; i < o.workers; i++) {
        uint32_t hi = (uint32_t)((uint64_t)n * (i + 1) / o.workers);
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
            perror("drover-sim: socketpair");
            return 1;
        }
        int buf = 1 << 20;
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("drover-sim: fork");
            return 1;
        }
        if (pid == 0) {
            close(sv[0]);
            for (uint32_t j = 0; j < i; j++)
                close(ws[j].fd);
            /* Worker i publishes floor(M*hi/n) - floor(M*lo/n): the shares
             * add up to M exactly (M <= 1e12 and n <= 1e6: no overflow). */
            uint64_t share = o.messages * hi / n - o.messages * lo / n;
            sim_engine_cfg_t cfg = {
                .o = &o,
                .creds = creds + lo,
                .n = hi - lo,
                .worker = i,
                .src_first = (i * src_each) % nsrc,
                .src_count = src_each,
                .watcher = o.subscribe_all != NULL && i == 0,
                .ctl_fd = sv[1],
                .t0 = t0,
                .connect_rate = o.connect_rate / o.workers,
                .messages = share,
            };
            int rc = sim_engine_run(&cfg);
            close(sv[1]);
            free(creds);
            _exit(rc);
        }
        close(sv[1]);
        fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
        ws[i].pid = pid;
        ws[i].fd = sv[0];
        lo = hi;
    }

    int64_t report_every = o.report_interval_us > 0 ? o.report_interval_us : 1000000;
    /* A live line for instant k once every worker has sent its snapshot of
     * it (engine.c), or LATE_US after it from what there is. */
    uint64_t printed = 0;
    int64_t hard_end = t0 + o.duration_us + o.drain_us + (int64_t)GRACE_S * 1000000;
    bool live = !o.quiet && o.report_interval_us > 0;
    bool went = false, stop_sent = false, interrupted = false, killed = false;
    static sim_stats_t agg, prev;
    int64_t t_prev = t0;
    struct pollfd pfd[SIM_WORKERS_MAX];
    for (;;) {
        uint32_t open_ = 0;
        for (uint32_t i = 0; i < o.workers; i++) {
            pfd[i].fd = ws[i].eof || ws[i].final ? -1 : ws[i].fd;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
            if (pfd[i].fd >= 0)
                open_++;
        }
        if (open_ == 0)
            break;
        int64_t now = util_mono_us();
        int64_t next_report = t0 + (int64_t)(printed + 1) * report_every + LATE_US;
        int64_t wake = next_report < hard_end ? next_report : hard_end;
        int timeout = wake > now ? (int)((wake - now + 999) / 1000) : 0;
        int pr = poll(pfd, o.workers, timeout);
        if (pr < 0 && errno != EINTR)
            break;
        for (uint32_t i = 0; i < o.workers; i++)
            if (pfd[i].fd >= 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
                read_worker(&ws[i]) < 0)
                ws[i].eof = true;
        merge_all(ws, o.workers, &agg);
        bool all_ready = agg.t_all_connected != 0;
        if (o.wait_all && all_ready && !went) {
            tell(ws, o.workers, SIM_CTL_GO);
            went = true;
        }
        bool reached = o.drop_at_us >= 0 ? agg.t_recovered != 0 && agg.t_drop != 0 : all_ready;
        if (o.until_connected && reached && !stop_sent) {
            tell(ws, o.workers, SIM_CTL_STOP);
            stop_sent = true;
        }
        if (g_signal && !stop_sent) {
            interrupted = true;
            tell(ws, o.workers, SIM_CTL_STOP);
            stop_sent = true;
        }
        now = util_mono_us();
        uint64_t tick = UINT64_MAX;
        for (uint32_t i = 0; i < o.workers; i++)
            if (!ws[i].eof && !ws[i].final && ws[i].tick < tick)
                tick = ws[i].tick;
        if (tick == UINT64_MAX || tick <= printed) {
            tick = printed;
            if (now >= t0 + (int64_t)(printed + 1) * report_every + LATE_US)
                tick = printed + 1; /* a worker is late: print what there is */
        }
        if (tick > printed) {
            int64_t t_tick = t0 + (int64_t)tick * report_every;
            if (live)
                sim_report_live(stderr, &agg, &prev, (double)(t_tick - t0) / 1e6,
                                (double)(t_tick - t_prev) / 1e6);
            if (o.status_file)
                write_status(&o, &agg, t0);
            prev = agg;
            t_prev = t_tick;
            printed = tick;
        }
        if (now >= hard_end) {
            for (uint32_t i = 0; i < o.workers; i++)
                if (!ws[i].final && !ws[i].eof)
                    kill(ws[i].pid, SIGKILL);
            killed = true;
            break;
        }
    }
    for (uint32_t i = 0; i < o.workers; i++) {
        int status;
        while (waitpid(ws[i].pid, &status, 0) < 0 && errno == EINTR)
            ;
        close(ws[i].fd);
    }
    merge_all(ws, o.workers, &agg);
    for (uint32_t i = 0; i < o.workers; i++)
        if (!ws[i].final) {
            agg.errors[SIM_ERR_WORKER]++;
            fprintf(stderr, "drover-sim: worker %u (pid %d) %s before its final report\n", i,
                    (int)ws[i].pid, killed ? "was killed" : "ended");
        }
    if (!agg.t_end)
        agg.t_end = util_mono_us();
    if (o.status_file)
        write_status(&o, &agg, t0);
    if (o.json)
        sim_report_json(stdout, &o, &agg, t0, interrupted);
    else
        sim_report_text(stdout, &o, &agg, t0, interrupted);
    free(creds);
    return sim_stats_errors(&agg) == 0 ? 0 : 1;
}

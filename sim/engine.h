/*
 * One drover-sim worker: a slice of the fleet driven from a single epoll
 * loop (see engine.c). The parent process forks one worker per
 * --workers and talks to it over a socketpair: the worker sends
 * sim_ctl_msg_t snapshots of its statistics; the parent sends one byte,
 * SIM_CTL_GO (everyone is connected: start publishing, for --wait-all) or
 * SIM_CTL_STOP (finish now: drain, disconnect, send the final snapshot).
 */
#ifndef DROVER_SIM_ENGINE_H
#define DROVER_SIM_ENGINE_H

#include <stdint.h>

#include "sim/creds.h"
#include "sim/opts.h"
#include "sim/stats.h"

#define SIM_CTL_GO 'G'
#define SIM_CTL_STOP 'S'
#define SIM_CTL_MAGIC 0x4d495344u /* "DSIM" */

typedef struct sim_ctl_msg {
    uint32_t magic;
    uint32_t final; /* 1 on the last snapshot */
    uint64_t tick;  /* k for the periodic snapshot at t0 + k * interval; 0 otherwise */
    sim_stats_t stats;
} sim_ctl_msg_t;

typedef struct sim_engine_cfg {
    const sim_opts_t *o;
    const sim_cred_t *creds; /* this worker's devices; borrowed */
    uint32_t n;
    uint32_t worker;
    uint32_t src_first, src_count; /* source addresses 127.0.0.(src_first+1) .. */
    int watcher;                   /* this worker runs the --subscribe-all client */
    int ctl_fd;                    /* to the parent (blocking) */
    int64_t t0;                    /* the run's start, monotonic µs */
    double connect_rate;           /* this worker's share; 0 = no limit */
    uint64_t messages;             /* this worker's share; 0 = no limit */
} sim_engine_cfg_t;

/* Runs the worker to the end of the run; returns its exit status (0, or 1
 * when it could not start). */
int sim_engine_run(const sim_engine_cfg_t *cfg);

#endif

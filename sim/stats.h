/*
 * What drover-sim measures, and how it is reported.
 *
 * Each worker process keeps one sim_stats_t: counters that only grow,
 * a few gauges (connected now), monotonic timestamps of phase changes
 * (CLOCK_MONOTONIC is system-wide, so workers' times compare directly)
 * and five latency histograms in microseconds. The struct is plain old
 * data: a worker sends snapshots of it to the parent over a socketpair,
 * the parent merges them (sim_stats_merge) into the fleet's view and
 * prints a live line (from the difference of two snapshots) and the final
 * report, as text or JSON.
 */
#ifndef DROVER_SIM_STATS_H
#define DROVER_SIM_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sim/hist.h"
#include "sim/opts.h"

typedef enum {
    SIM_ERR_SOCKET,            /* socket()/bind() failed: descriptors, source addresses */
    SIM_ERR_CONNECT,           /* TCP connect refused or failed */
    SIM_ERR_TIMEOUT,           /* no CONNACK within --connect-timeout */
    SIM_ERR_CLOSED,            /* closed by the server before CONNACK */
    SIM_ERR_REFUSED,           /* CONNACK with a refusal code (see refused[]) */
    SIM_ERR_DROPPED,           /* an established connection lost, not by us */
    SIM_ERR_SERVER_DISCONNECT, /* MQTT 5 DISCONNECT sent by the server */
    SIM_ERR_PROTOCOL,          /* malformed or unexpected packet from the server */
    SIM_ERR_PUBACK,            /* PUBACK or PUBREC with a failure reason (MQTT 5) */
    SIM_ERR_SUBACK,            /* a subscription refused */
    SIM_ERR_COMMANDS,          /* a command dropped: too many waiting on one device */
    SIM_ERR_UNACKED,           /* QoS 1 messages still unacknowledged at the end */
    SIM_ERR_WORKER,            /* a worker process died or stopped reporting */
    SIM_ERR_COUNT
} sim_err_t;

const char *sim_err_name(sim_err_t e);

typedef struct sim_stats {
    /* gauges */
    uint64_t devices;   /* devices simulated */
    uint64_t connected; /* devices with a live accepted connection */
    uint64_t connected_peak;
    uint64_t ready;        /* connected and subscribed (plus the watcher) */
    uint64_t ready_target; /* what ready counts up to */
    uint64_t inflight;     /* QoS 1/2 telemetry not yet acknowledged (PUBACK/PUBCOMP) */

    /* counters */
    uint64_t connect_attempts;
    uint64_t connects;   /* CONNACK accepted */
    uint64_t reconnects; /* of which after a drop */
    uint64_t pub_sent, pub_acked;
    uint64_t pub_skipped; /* a tick found the QoS 1 window full */
    uint64_t pub_lost;    /* QoS 1 in flight when a connection was lost */
    uint64_t bytes_sent;
    uint64_t cmd_received, cmd_replied, cmd_failed, cmd_acked;
    uint64_t desired_received, reported_sent, reported_acked;
    uint64_t sub_received;   /* deliveries to the watcher (a QoS 2 resend not counted) */
    uint64_t sub_duplicates; /* QoS 2 PUBLISH again for an id awaiting its PUBREL */
    uint64_t sub_gaps;       /* relay: skipped over (a later message of its publisher came first) */
    uint64_t sub_late;       /* relay: came after a later message of its publisher */
    uint64_t relay_gave_up;  /* --relay-window: messages never delivered, given up after a stall */
    uint64_t errors[SIM_ERR_COUNT];
    uint64_t refused[256]; /* CONNACK refusals by code */

    /* monotonic µs; 0 = not (yet) */
    int64_t t_start;         /* the worker began connecting */
    int64_t t_all_connected; /* every device connected (and subscribed) */
    int64_t t_first_pub, t_last_pub, t_last_ack;
    int64_t t_first_sub, t_last_sub;
    int64_t t_drop, t_recovered;
    int64_t t_end;

    /* µs */
    sim_hist_t connack; /* TCP connect start -> CONNACK */
    sim_hist_t puback;  /* PUBLISH written -> PUBACK (QoS 1) or PUBCOMP (QoS 2) read */
    sim_hist_t pubrec;  /* PUBLISH written -> PUBREC read (QoS 2 telemetry) */
    sim_hist_t command; /* command PUBLISH read -> result PUBACK read */
    sim_hist_t relay;   /* device PUBLISH written -> delivered to the watcher */
} sim_stats_t;

void sim_stats_init(sim_stats_t *s);
/* Adds src (one worker) into dst (the fleet). Timestamps combine as: the
 * earliest start, first publish, drop; the latest last-* and end; "all
 * connected" and "recovered" only once every worker has them. */
void sim_stats_merge(sim_stats_t *dst, const sim_stats_t *src, bool first);
uint64_t sim_stats_errors(const sim_stats_t *s);

/* One live line: state now, rates over the last dt seconds (from prev). */
void sim_report_live(FILE *f, const sim_stats_t *now, const sim_stats_t *prev, double t_s,
                     double dt_s);
/* The final report. t0 is the run's start (monotonic µs). */
void sim_report_text(FILE *f, const sim_opts_t *o, const sim_stats_t *s, int64_t t0,
                     bool interrupted);
/* The same as one JSON object (and a newline). Returns 0 or -ENOMEM. */
int sim_report_json(FILE *f, const sim_opts_t *o, const sim_stats_t *s, int64_t t0,
                    bool interrupted);

#endif

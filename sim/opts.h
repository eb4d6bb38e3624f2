/*
 * drover-sim's command line: the option table, value parsers (durations,
 * rates, shares, sizes, addresses) and the checks that keep a run bounded
 * and on loopback. Pure: sim_opts_parse() only fills a struct and an error
 * message, so every rule is unit tested.
 *
 * Strings in sim_opts_t borrow from argv, except that subscribe_all may
 * point at the struct's own relay_filter: pass the struct by pointer.
 */
#ifndef DROVER_SIM_OPTS_H
#define DROVER_SIM_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SIM_DEVICES_MAX 1000000
#define SIM_WORKERS_MAX 64
#define SIM_DURATION_MAX_US (INT64_C(24) * 3600 * 1000000)
#define SIM_PAYLOAD_MAX (64 * 1024)
#define SIM_INFLIGHT_MAX 1024
#define SIM_SOURCE_ADDRS_MAX 250
#define SIM_HOST_MAX 64
#define SIM_RELAY_PREFIX_MAX 64
#define SIM_RELAY_WINDOW_MAX 100000

/* Telemetry body shapes. */
typedef enum {
    SIM_SHAPE_SIMPLE,  /* {"temp":..,"hum":..} */
    SIM_SHAPE_METRICS, /* {"m0":..,..,"m{N-1}":..} */
    SIM_SHAPE_BATCH,   /* [{"ts":..,"temp":..}, ...N objects] */
} sim_shape_t;

typedef struct sim_opts {
    /* targets */
    char mqtt_host[SIM_HOST_MAX];
    int mqtt_port;
    bool api_given;
    char api_host[SIM_HOST_MAX];
    int api_port;
    const char *token;
    bool allow_remote;
    bool tls;
    const char *enroll;

    /* fleet */
    uint32_t devices;
    bool devices_given;
    const char *creds_file;
    const char *write_creds_file;
    const char *id_prefix;
    const char *fleet_tag; /* tag fleet=<value> on created devices */
    bool no_auth;
    bool create_only;
    uint32_t api_concurrency;

    /* connections */
    int version;          /* 4 or 5 */
    double connect_rate;  /* per second over all workers; 0 = unlimited */
    uint32_t max_pending; /* handshakes in flight per worker */
    uint16_t keepalive;
    int64_t connect_timeout_us;
    uint32_t workers;
    uint32_t source_addrs; /* 0 = automatic */
    bool reconnect;
    int64_t backoff_min_us, backoff_max_us;
    int64_t drop_at_us; /* -1 = never */
    bool until_connected;

    /* telemetry */
    int64_t telemetry_interval_us; /* -1 = off, 0 = as fast as the window allows */
    int qos;                       /* 0, 1 or 2 */
    uint32_t inflight;             /* unacknowledged QoS 1/2 telemetry per device */
    uint32_t burst;                /* messages per telemetry tick */
    uint32_t payload_size;
    sim_shape_t shape;
    uint32_t shape_n;
    bool seq;
    const char *topic_leaf; /* devices/{id}/<leaf> (telemetry) */
    bool topic_given;
    uint64_t messages; /* 0 = unlimited */
    bool wait_all;     /* publish only once every device is connected */

    /* commands and twin */
    bool subscribe;
    int64_t command_delay_us;
    double command_fail_share;
    int64_t twin_interval_us; /* -1 = off */

    /* one wildcard subscriber (fan-in measurements) */
    const char *subscribe_all;
    int sub_qos; /* 0, 1 or 2 */
    const char *sub_user;
    const char *sub_password;

    /* relay mode: devices publish on <relay_prefix>/{id} (no devices/
     * namespace, no command or twin subscriptions); the subscriber's
     * filter defaults to relay_filter, "<relay_prefix>/+" */
    const char *relay_prefix;
    char relay_filter[SIM_RELAY_PREFIX_MAX + 4];
    /* at most this many messages published and not yet delivered to the
     * subscriber (0 = no limit): a closed loop that measures the relay's
     * throughput without overrunning it */
    uint32_t relay_window;

    /* run */
    int64_t duration_us;
    int64_t drain_us;
    int64_t report_interval_us;
    bool json;
    bool quiet;
    const char *status_file;
    uint64_t seed;
} sim_opts_t;

/* Defaults for every field. */
void sim_opts_init(sim_opts_t *o);

/* Parses argv into o (initialised first). Returns 0, 1 when --help was
 * asked, or -EINVAL with a one-line reason in err. Resets getopt's state,
 * so it may be called more than once. */
int sim_opts_parse(sim_opts_t *o, int argc, char **argv, char *err, size_t errlen);

/* The --help text. */
void sim_opts_usage(FILE *f);

/* "1s", "250ms", "1.5s", "2m", "1h", "100us", "0"; a bare number is
 * seconds. Negative, NaN and over 24 h are -EINVAL. */
int sim_parse_duration(const char *s, int64_t *us);
/* A share in [0, 1]: "0.05" or "5%". */
int sim_parse_share(const char *s, double *out);
/* A non-negative rate per second ("1000", "2.5k"). */
int sim_parse_rate(const char *s, double *out);
/* A size in bytes ("64", "1k", "2KiB"); at most max. */
int sim_parse_size(const char *s, uint64_t max, uint64_t *out);
/* An integer in [lo, hi]. */
int sim_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
/* "simple", "metrics:N", "batch:N". */
int sim_parse_shape(const char *s, sim_shape_t *shape, uint32_t *n);
/* "HOST:PORT" with an IPv4 literal host (or "localhost"), checked to be
 * in 127.0.0.0/8 unless allow_remote. */
int sim_parse_target(const char *s, bool allow_remote, char *host, size_t hostlen, int *port);
/* "http://HOST:PORT[/]" (https is not supported yet: -ENOTSUP). */
int sim_parse_url(const char *s, bool allow_remote, char *host, size_t hostlen, int *port);
/* Whether an IPv4 literal is in 127.0.0.0/8. */
bool sim_is_loopback(const char *host);

#endif

/*
 * drover-sim's command line (see opts.h). One getopt_long table; values go
 * through small strict parsers; the cross-option rules at the end keep a
 * run bounded (devices, duration) and on loopback unless --allow-remote.
 *
 * Numbers are parsed with strtod/strtoull over the whole string (no
 * trailing junk) in the C locale the binary runs in.
 */
#include "sim/opts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

void sim_opts_init(sim_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->mqtt_host, sizeof(o->mqtt_host), "127.0.0.1");
    o->mqtt_port = 1883;
    o->devices = 100;
    o->id_prefix = "sim-";
    o->fleet_tag = "sim";
    o->api_concurrency = 32;
    o->version = 4;
    o->connect_rate = 1000;
    o->max_pending = 512;
    o->keepalive = 60;
    o->connect_timeout_us = 10 * INT64_C(1000000);
    o->workers = 1;
    o->reconnect = true;
    o->backoff_min_us = 100 * INT64_C(1000);
    o->backoff_max_us = 5 * INT64_C(1000000);
    o->drop_at_us = -1;
    o->telemetry_interval_us = INT64_C(1000000);
    o->qos = 1;
    o->inflight = 16;
    o->burst = 1;
    o->shape = SIM_SHAPE_SIMPLE;
    o->topic_leaf = "telemetry";
    o->subscribe = true;
    o->twin_interval_us = -1;
    o->sub_user = "sim-watcher";
    o->duration_us = 60 * INT64_C(1000000);
    o->drain_us = 5 * INT64_C(1000000);
    o->report_interval_us = INT64_C(1000000);
}

/* ---- value parsers ------------------------------------------------------- */

/* A finite, non-negative double over the whole of s[0..n). */
static int parse_number(const char *s, size_t n, double *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (buf[0] == '-' || buf[0] == '+' || buf[0] == ' ')
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (errno || end != buf + n || !isfinite(v) || v < 0)
        return -EINVAL;
    /* strtod takes "inf", "nan" and hex floats; only decimals are wanted. */
    for (size_t i = 0; i < n; i++)
        if (!((buf[i] >= '0' && buf[i] <= '9') || buf[i] == '.' || buf[i] == 'e' || buf[i] == 'E'))
            return -EINVAL;
    *out = v;
    return 0;
}

/* Splits s into its leading number and the unit after it. */
static size_t number_len(const char *s)
{
    size_t i = 0;
    while ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')
        i++;
    return i;
}

int sim_parse_duration(const char *s, int64_t *us)
{
    size_t n = number_len(s);
    double v;
    if (parse_number(s, n, &v) < 0)
        return -EINVAL;
    const char *unit = s + n;
    double mul;
    if (*unit == '\0' || strcmp(unit, "s") == 0)
        mul = 1e6;
    else if (strcmp(unit, "ms") == 0)
        mul = 1e3;
    else if (strcmp(unit, "us") == 0)
        mul = 1;
    else if (strcmp(unit, "m") == 0 || strcmp(unit, "min") == 0)
        mul = 60e6;
    else if (strcmp(unit, "h") == 0)
        mul = 3600e6;
    else
        return -EINVAL;
    double r = v * mul;
    if (r > (double)SIM_DURATION_MAX_US)
        return -EINVAL;
    *us = (int64_t)llround(r);
    return 0;
}

int sim_parse_share(const char *s, double *out)
{
    size_t n = strlen(s);
    double v;
    if (n > 0 && s[n - 1] == '%') {
        if (parse_number(s, n - 1, &v) < 0)
            return -EINVAL;
        v /= 100;
    } else if (parse_number(s, n, &v) < 0) {
        return -EINVAL;
    }
    if (v > 1)
        return -EINVAL;
    *out = v;
    return 0;
}

int sim_parse_rate(const char *s, double *out)
{
    size_t n = number_len(s);
    double v;
    if (parse_number(s, n, &v) < 0)
        return -EINVAL;
    const char *unit = s + n;
    if (strcmp(unit, "k") == 0)
        v *= 1e3;
    else if (strcmp(unit, "M") == 0)
        v *= 1e6;
    else if (strcmp(unit, "/s") != 0 && *unit != '\0')
        return -EINVAL;
    if (v > 1e9)
        return -EINVAL;
    *out = v;
    return 0;
}

int sim_parse_size(const char *s, uint64_t max, uint64_t *out)
{
    size_t n = number_len(s);
    double v;
    if (parse_number(s, n, &v) < 0)
        return -EINVAL;
    const char *unit = s + n;
    if (strcmp(unit, "k") == 0 || strcmp(unit, "K") == 0 || strcmp(unit, "KiB") == 0 ||
        strcmp(unit, "kB") == 0)
        v *= 1024;
    else if (strcmp(unit, "M") == 0 || strcmp(unit, "MiB") == 0)
        v *= 1024 * 1024;
    else if (strcmp(unit, "B") != 0 && *unit != '\0')
        return -EINVAL;
    if (v > (double)max || v != floor(v))
        return -EINVAL;
    *out = (uint64_t)v;
    return 0;
}

int sim_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    int64_t v;
    if (util_parse_i64(s, &v) < 0 || v < 0 || (uint64_t)v < lo || (uint64_t)v > hi)
        return -EINVAL;
    *out = (uint64_t)v;
    return 0;
}

int sim_parse_shape(const char *s, sim_shape_t *shape, uint32_t *n)
{
    uint64_t k = 0;
    if (strcmp(s, "simple") == 0) {
        *shape = SIM_SHAPE_SIMPLE;
        *n = 0;
        return 0;
    }
    if (strncmp(s, "metrics:", 8) == 0) {
        if (sim_parse_u64(s + 8, 1, 4000, &k) < 0)
            return -EINVAL;
        *shape = SIM_SHAPE_METRICS;
    } else if (strncmp(s, "batch:", 6) == 0) {
        if (sim_parse_u64(s + 6, 1, 4000, &k) < 0)
            return -EINVAL;
        *shape = SIM_SHAPE_BATCH;
    } else {
        return -EINVAL;
    }
    *n = (uint32_t)k;
    return 0;
}

bool sim_is_loopback(const char *host)
{
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1)
        return false;
    return (ntohl(a.s_addr) >> 24) == 127;
}

int sim_parse_target(const char *s, bool allow_remote, char *host, size_t hostlen, int *port)
{
    char h[256];
    int p;
    if (util_parse_hostport(s, h, sizeof(h), &p) < 0 || p <= 0)
        return -EINVAL;
    if (strcmp(h, "localhost") == 0)
        snprintf(h, sizeof(h), "127.0.0.1");
    struct in_addr a;
    if (inet_pton(AF_INET, h, &a) != 1)
        return -EINVAL; /* numeric IPv4 only: no resolver in the loop */
    if (!allow_remote && !sim_is_loopback(h))
        return -EPERM;
    if (strlen(h) >= hostlen)
        return -EINVAL;
    snprintf(host, hostlen, "%s", h);
    *port = p;
    return 0;
}

int sim_parse_url(const char *s, bool allow_remote, char *host, size_t hostlen, int *port)
{
    if (strncmp(s, "https://", 8) == 0)
        return -ENOTSUP;
    if (strncmp(s, "http://", 7) != 0)
        return -EINVAL;
    char hp[300];
    size_t n = strlen(s + 7);
    if (n >= sizeof(hp))
        return -EINVAL;
    memcpy(hp, s + 7, n + 1);
    if (n > 0 && hp[n - 1] == '/')
        hp[n - 1] = '\0';
    if (strchr(hp, '/'))
        return -EINVAL; /* the sim adds /api/v1/... itself */
    return sim_parse_target(hp, allow_remote, host, hostlen, port);
}

/* ---- the option table ---------------------------------------------------- */

enum {
    O_MQTT = 256,
    O_API,
    O_TOKEN,
    O_ALLOW_REMOTE,
    O_TLS,
    O_ENROLL,
    O_DEVICES,
    O_CREDS,
    O_WRITE_CREDS,
    O_ID_PREFIX,
    O_FLEET_TAG,
    O_NO_AUTH,
    O_CREATE_ONLY,
    O_API_CONC,
    O_PROTOCOL,
    O_CONNECT_RATE,
    O_MAX_PENDING,
    O_KEEPALIVE,
    O_CONNECT_TIMEOUT,
    O_WORKERS,
    O_SOURCE_ADDRS,
    O_NO_RECONNECT,
    O_BACKOFF_MIN,
    O_BACKOFF_MAX,
    O_DROP_AT,
    O_UNTIL_CONNECTED,
    O_TEL_INTERVAL,
    O_QOS,
    O_INFLIGHT,
    O_BURST,
    O_PAYLOAD_SIZE,
    O_SHAPE,
    O_SEQ,
    O_TOPIC_LEAF,
    O_MESSAGES,
    O_WAIT_ALL,
    O_NO_SUBSCRIBE,
    O_CMD_DELAY,
    O_CMD_FAIL,
    O_TWIN_INTERVAL,
    O_SUBSCRIBE_ALL,
    O_SUB_QOS,
    O_SUB_USER,
    O_SUB_PASSWORD,
    O_RELAY,
    O_RELAY_WINDOW,
    O_DURATION,
    O_DRAIN,
    O_REPORT_INTERVAL,
    O_JSON,
    O_QUIET,
    O_STATUS_FILE,
    O_SEED,
    O_HELP,
};

static const struct option longopts[] = {
    {"mqtt", required_argument, NULL, O_MQTT},
    {"api", required_argument, NULL, O_API},
    {"token", required_argument, NULL, O_TOKEN},
    {"allow-remote", no_argument, NULL, O_ALLOW_REMOTE},
    {"tls", no_argument, NULL, O_TLS},
    {"enroll", required_argument, NULL, O_ENROLL},
    {"devices", required_argument, NULL, O_DEVICES},
    {"creds", required_argument, NULL, O_CREDS},
    {"write-creds", required_argument, NULL, O_WRITE_CREDS},
    {"id-prefix", required_argument, NULL, O_ID_PREFIX},
    {"fleet-tag", required_argument, NULL, O_FLEET_TAG},
    {"no-auth", no_argument, NULL, O_NO_AUTH},
    {"create-only", no_argument, NULL, O_CREATE_ONLY},
    {"api-concurrency", required_argument, NULL, O_API_CONC},
    {"protocol", required_argument, NULL, O_PROTOCOL},
    {"connect-rate", required_argument, NULL, O_CONNECT_RATE},
    {"max-pending", required_argument, NULL, O_MAX_PENDING},
    {"keepalive", required_argument, NULL, O_KEEPALIVE},
    {"connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT},
    {"workers", required_argument, NULL, O_WORKERS},
    {"source-addrs", required_argument, NULL, O_SOURCE_ADDRS},
    {"no-reconnect", no_argument, NULL, O_NO_RECONNECT},
    {"backoff-min", required_argument, NULL, O_BACKOFF_MIN},
    {"backoff-max", required_argument, NULL, O_BACKOFF_MAX},
    {"drop-at", required_argument, NULL, O_DROP_AT},
    {"until-connected", no_argument, NULL, O_UNTIL_CONNECTED},
    {"telemetry-interval", required_argument, NULL, O_TEL_INTERVAL},
    {"qos", required_argument, NULL, O_QOS},
    {"inflight", required_argument, NULL, O_INFLIGHT},
    {"burst", required_argument, NULL, O_BURST},
    {"payload-size", required_argument, NULL, O_PAYLOAD_SIZE},
    {"shape", required_argument, NULL, O_SHAPE},
    {"seq", no_argument, NULL, O_SEQ},
    {"topic", required_argument, NULL, O_TOPIC_LEAF},
    {"messages", required_argument, NULL, O_MESSAGES},
    {"wait-all", no_argument, NULL, O_WAIT_ALL},
    {"no-subscribe", no_argument, NULL, O_NO_SUBSCRIBE},
    {"command-delay", required_argument, NULL, O_CMD_DELAY},
    {"command-fail-share", required_argument, NULL, O_CMD_FAIL},
    {"twin-interval", required_argument, NULL, O_TWIN_INTERVAL},
    {"subscribe-all", required_argument, NULL, O_SUBSCRIBE_ALL},
    {"sub-qos", required_argument, NULL, O_SUB_QOS},
    {"sub-user", required_argument, NULL, O_SUB_USER},
    {"sub-password", required_argument, NULL, O_SUB_PASSWORD},
    {"relay", required_argument, NULL, O_RELAY},
    {"relay-window", required_argument, NULL, O_RELAY_WINDOW},
    {"duration", required_argument, NULL, O_DURATION},
    {"drain", required_argument, NULL, O_DRAIN},
    {"report-interval", required_argument, NULL, O_REPORT_INTERVAL},
    {"json", no_argument, NULL, O_JSON},
    {"quiet", no_argument, NULL, O_QUIET},
    {"status-file", required_argument, NULL, O_STATUS_FILE},
    {"seed", required_argument, NULL, O_SEED},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

void sim_opts_usage(FILE *f)
{
    fputs(
        "usage: drover-sim [options]\n"
        "Simulates a fleet of MQTT devices against droverd (or any broker) on loopback.\n"
        "\n"
        "targets:\n"
        "  --mqtt HOST:PORT          broker (127.0.0.1:1883); 127.0.0.0/8 only\n"
        "  --api http://HOST:PORT    droverd REST API, to create the fleet\n"
        "  --token T                 API token (fleet creation; the --subscribe-all password)\n"
        "  --allow-remote            allow targets outside 127.0.0.0/8\n"
        "  --tls                     MQTT over TLS (not supported yet)\n"
        "  --enroll CLAIM            enrollment with a claim token (not supported yet)\n"
        "fleet:\n"
        "  --devices N               simulated devices (100)\n"
        "  --creds FILE              \"id secret\" per line instead of creating devices\n"
        "  --write-creds FILE        write the fleet's \"id secret\" lines here\n"
        "  --id-prefix P             device ids P000000, P000001, ... (sim-)\n"
        "  --fleet-tag V             tag fleet=V on created devices (sim)\n"
        "  --no-auth                 no password (brokers with anonymous access)\n"
        "  --create-only             create the fleet (with --write-creds) and exit\n"
        "  --api-concurrency N       REST requests in flight while creating (32)\n"
        "connections:\n"
        "  --protocol 3.1.1|5        MQTT version (3.1.1)\n"
        "  --connect-rate R          new connections per second, all workers (1000; 0 = no limit)\n"
        "  --max-pending N           handshakes in flight per worker (512)\n"
        "  --keepalive S             MQTT keepalive seconds (60; 0 = none)\n"
        "  --connect-timeout D       TCP + CONNACK deadline (10s)\n"
        "  --workers N               processes, each with a slice of the fleet (1)\n"
        "  --source-addrs K          spread over source addresses 127.0.0.1..K (auto)\n"
        "  --no-reconnect            do not reconnect dropped devices\n"
        "  --backoff-min D, --backoff-max D   reconnect backoff, full jitter (100ms, 5s)\n"
        "  --drop-at D               drop every connection at D, then reconnect (storm)\n"
        "  --until-connected         stop once every device is connected and subscribed\n"
        "                            (with --drop-at: once all are back after the drop)\n"
        "telemetry:\n"
        "  --telemetry-interval D    per device (1s); 0 = as fast as the window allows; off\n"
        "  --qos 0|1|2               (1)\n"
        "  --inflight W              unacknowledged QoS 1/2 telemetry per device (16)\n"
        "  --burst N                 messages per device per tick, written together (1)\n"
        "  --payload-size B          pad the body to about B bytes\n"
        "  --shape S                 simple | metrics:N | batch:N (simple)\n"
        "  --seq                     add an increasing \"seq\" to each message\n"
        "  --topic LEAF              publish on devices/{id}/LEAF (telemetry; anything else is\n"
        "                            only relayed by droverd, not stored)\n"
        "  --messages N              stop publishing after N messages in all\n"
        "  --wait-all                publish only once every device is connected\n"
        "commands and twin:\n"
        "  --no-subscribe            do not subscribe to commands/+ and twin/desired\n"
        "  --command-delay D         answer commands after D (0)\n"
        "  --command-fail-share S    answer this share \"failed\" (0; \"0.1\" or \"10%\")\n"
        "  --twin-interval D         report a twin change every D per device (off)\n"
        "fan-in:\n"
        "  --subscribe-all FILTER    one extra client subscribed to FILTER, counts deliveries\n"
        "  --sub-qos 0|1|2           its subscription QoS (0)\n"
        "  --sub-user U              its user name (sim-watcher); password --sub-password or "
        "--token\n"
        "relay:\n"
        "  --relay PREFIX            devices publish on PREFIX/{id} (not devices/...), subscribe\n"
        "                            to nothing; the subscriber takes PREFIX/+ unless\n"
        "                            --subscribe-all says otherwise\n"
        "  --relay-window W          at most W messages published and not yet delivered to the\n"
        "                            subscriber (closed loop; needs --workers 1)\n"
        "run:\n"
        "  --duration D              stop after D (60s; at most 24h)\n"
        "  --drain D                 wait this long for outstanding acks at the end (5s)\n"
        "  --report-interval D       live line on stderr every D (1s; 0 = none)\n"
        "  --status-file FILE        rewrite a JSON snapshot there every report interval\n"
        "  --json                    final report as JSON on stdout\n"
        "  --quiet                   no live lines\n"
        "  --seed N                  random seed (jitter, failure choice)\n"
        "durations: 250ms, 1s, 1.5s, 2m, 1h; a bare number is seconds.\n"
        "exit status: 0 no errors, 1 errors or unacknowledged messages, 2 usage.\n",
        f);
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* "off" or a duration. */
static int parse_interval(const char *s, int64_t *us)
{
    if (strcmp(s, "off") == 0 || strcmp(s, "none") == 0) {
        *us = -1;
        return 0;
    }
    return sim_parse_duration(s, us);
}

int sim_opts_parse(sim_opts_t *o, int argc, char **argv, char *err, size_t errlen)
{
    sim_opts_init(o);
    err[0] = '\0';
    const char *mqtt_arg = NULL, *api_arg = NULL;
    uint64_t u;
    int ch;
    optind = 0; /* full re-initialisation (GNU) */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        const char *name = "?";
        for (const struct option *lo = longopts; lo->name; lo++)
            if (lo->val == ch)
                name = lo->name;
        switch (ch) {
        case O_MQTT:
            mqtt_arg = optarg;
            break;
        case O_API:
            api_arg = optarg;
            break;
        case O_TOKEN:
            o->token = optarg;
            break;
        case O_ALLOW_REMOTE:
            o->allow_remote = true;
            break;
        case O_TLS:
            o->tls = true;
            break;
        case O_ENROLL:
            o->enroll = optarg;
            break;
        case O_DEVICES:
            if (sim_parse_u64(optarg, 1, SIM_DEVICES_MAX, &u) < 0)
                return fail(err, errlen, "--devices wants 1..%d", SIM_DEVICES_MAX);
            o->devices = (uint32_t)u;
            o->devices_given = true;
            break;
        case O_CREDS:
            o->creds_file = optarg;
            break;
        case O_WRITE_CREDS:
            o->write_creds_file = optarg;
            break;
        case O_ID_PREFIX:
            o->id_prefix = optarg;
            break;
        case O_FLEET_TAG:
            o->fleet_tag = optarg;
            break;
        case O_NO_AUTH:
            o->no_auth = true;
            break;
        case O_CREATE_ONLY:
            o->create_only = true;
            break;
        case O_API_CONC:
            if (sim_parse_u64(optarg, 1, 256, &u) < 0)
                return fail(err, errlen, "--api-concurrency wants 1..256");
            o->api_concurrency = (uint32_t)u;
            break;
        case O_PROTOCOL:
            if (strcmp(optarg, "3.1.1") == 0 || strcmp(optarg, "4") == 0)
                o->version = 4;
            else if (strcmp(optarg, "5") == 0 || strcmp(optarg, "5.0") == 0)
                o->version = 5;
            else
                return fail(err, errlen, "--protocol wants 3.1.1 or 5");
            break;
        case O_CONNECT_RATE:
            if (sim_parse_rate(optarg, &o->connect_rate) < 0)
                return fail(err, errlen, "--connect-rate wants connections per second");
            break;
        case O_MAX_PENDING:
            if (sim_parse_u64(optarg, 1, 100000, &u) < 0)
                return fail(err, errlen, "--max-pending wants 1..100000");
            o->max_pending = (uint32_t)u;
            break;
        case O_KEEPALIVE:
            if (sim_parse_u64(optarg, 0, 65535, &u) < 0)
                return fail(err, errlen, "--keepalive wants 0..65535 seconds");
            o->keepalive = (uint16_t)u;
            break;
        case O_WORKERS:
            if (sim_parse_u64(optarg, 1, SIM_WORKERS_MAX, &u) < 0)
                return fail(err, errlen, "--workers wants 1..%d", SIM_WORKERS_MAX);
            o->workers = (uint32_t)u;
            break;
        case O_SOURCE_ADDRS:
            if (sim_parse_u64(optarg, 1, SIM_SOURCE_ADDRS_MAX, &u) < 0)
                return fail(err, errlen, "--source-addrs wants 1..%d", SIM_SOURCE_ADDRS_MAX);
            o->source_addrs = (uint32_t)u;
            break;
        case O_NO_RECONNECT:
            o->reconnect = false;
            break;
        case O_UNTIL_CONNECTED:
            o->until_connected = true;
            break;
        case O_CONNECT_TIMEOUT:
        case O_BACKOFF_MIN:
        case O_BACKOFF_MAX:
        case O_DROP_AT:
        case O_CMD_DELAY:
        case O_DURATION:
        case O_DRAIN:
        case O_REPORT_INTERVAL: {
            int64_t d;
            if (sim_parse_duration(optarg, &d) < 0)
                return fail(err, errlen, "--%s wants a duration such as 500ms, 10s, 2m", name);
            if (ch == O_CONNECT_TIMEOUT)
                o->connect_timeout_us = d;
            else if (ch == O_BACKOFF_MIN)
                o->backoff_min_us = d;
            else if (ch == O_BACKOFF_MAX)
                o->backoff_max_us = d;
            else if (ch == O_DROP_AT)
                o->drop_at_us = d;
            else if (ch == O_CMD_DELAY)
                o->command_delay_us = d;
            else if (ch == O_DURATION)
                o->duration_us = d;
            else if (ch == O_DRAIN)
                o->drain_us = d;
            else
                o->report_interval_us = d;
            break;
        }
        case O_TEL_INTERVAL:
            if (parse_interval(optarg, &o->telemetry_interval_us) < 0)
                return fail(err, errlen, "--telemetry-interval wants a duration or off");
            break;
        case O_TWIN_INTERVAL:
            if (parse_interval(optarg, &o->twin_interval_us) < 0 || o->twin_interval_us == 0)
                return fail(err, errlen, "--twin-interval wants a positive duration or off");
            break;
        case O_QOS:
            if (sim_parse_u64(optarg, 0, 2, &u) < 0)
                return fail(err, errlen, "--qos wants 0, 1 or 2");
            o->qos = (int)u;
            break;
        case O_SUB_QOS:
            if (sim_parse_u64(optarg, 0, 2, &u) < 0)
                return fail(err, errlen, "--sub-qos wants 0, 1 or 2");
            o->sub_qos = (int)u;
            break;
        case O_RELAY:
            o->relay_prefix = optarg;
            break;
        case O_RELAY_WINDOW:
            if (sim_parse_u64(optarg, 1, SIM_RELAY_WINDOW_MAX, &u) < 0)
                return fail(err, errlen, "--relay-window wants 1..%d messages",
                            SIM_RELAY_WINDOW_MAX);
            o->relay_window = (uint32_t)u;
            break;
        case O_INFLIGHT:
            if (sim_parse_u64(optarg, 1, SIM_INFLIGHT_MAX, &u) < 0)
                return fail(err, errlen, "--inflight wants 1..%d", SIM_INFLIGHT_MAX);
            o->inflight = (uint32_t)u;
            break;
        case O_BURST:
            if (sim_parse_u64(optarg, 1, SIM_INFLIGHT_MAX, &u) < 0)
                return fail(err, errlen, "--burst wants 1..%d messages per tick", SIM_INFLIGHT_MAX);
            o->burst = (uint32_t)u;
            break;
        case O_PAYLOAD_SIZE:
            if (sim_parse_size(optarg, SIM_PAYLOAD_MAX, &u) < 0)
                return fail(err, errlen, "--payload-size wants bytes up to %d", SIM_PAYLOAD_MAX);
            o->payload_size = (uint32_t)u;
            break;
        case O_SHAPE:
            if (sim_parse_shape(optarg, &o->shape, &o->shape_n) < 0)
                return fail(err, errlen, "--shape wants simple, metrics:N or batch:N (N 1..4000)");
            break;
        case O_SEQ:
            o->seq = true;
            break;
        case O_TOPIC_LEAF:
            o->topic_leaf = optarg;
            o->topic_given = true;
            break;
        case O_MESSAGES:
            if (sim_parse_u64(optarg, 1, UINT64_C(1000000000000), &u) < 0)
                return fail(err, errlen, "--messages wants a positive count");
            o->messages = u;
            break;
        case O_WAIT_ALL:
            o->wait_all = true;
            break;
        case O_NO_SUBSCRIBE:
            o->subscribe = false;
            break;
        case O_CMD_FAIL:
            if (sim_parse_share(optarg, &o->command_fail_share) < 0)
                return fail(err, errlen, "--command-fail-share wants 0..1 or 0%%..100%%");
            break;
        case O_SUBSCRIBE_ALL:
            o->subscribe_all = optarg;
            break;
        case O_SUB_USER:
            o->sub_user = optarg;
            break;
        case O_SUB_PASSWORD:
            o->sub_password = optarg;
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_QUIET:
            o->quiet = true;
            break;
        case O_STATUS_FILE:
            o->status_file = optarg;
            break;
        case O_SEED:
            if (sim_parse_u64(optarg, 0, UINT64_MAX >> 1, &u) < 0)
                return fail(err, errlen, "--seed wants a non-negative integer");
            o->seed = u;
            break;
        case O_HELP:
            return 1;
        case ':':
            return fail(err, errlen, "%s needs a value", argv[optind - 1]);
        default:
            return fail(err, errlen, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fail(err, errlen, "unexpected argument %s", argv[optind]);

    /* ---- cross-option rules ---- */
    if (o->tls)
        return fail(err, errlen, "--tls: MQTT over TLS is not yet supported by drover-sim");
    if (o->enroll)
        return fail(err, errlen, "--enroll: enrollment is not yet supported by drover-sim");
    if (mqtt_arg) {
        int rc = sim_parse_target(mqtt_arg, o->allow_remote, o->mqtt_host, sizeof(o->mqtt_host),
                                  &o->mqtt_port);
        if (rc == -EPERM)
            return fail(err, errlen,
                        "--mqtt %s is outside 127.0.0.0/8; add --allow-remote if you mean it",
                        mqtt_arg);
        if (rc < 0)
            return fail(err, errlen, "--mqtt wants IPV4:PORT, got %s", mqtt_arg);
    }
    if (api_arg) {
        int rc =
            sim_parse_url(api_arg, o->allow_remote, o->api_host, sizeof(o->api_host), &o->api_port);
        if (rc == -EPERM)
            return fail(err, errlen,
                        "--api %s is outside 127.0.0.0/8; add --allow-remote if you mean it",
                        api_arg);
        if (rc == -ENOTSUP)
            return fail(err, errlen, "--api: https is not yet supported by drover-sim");
        if (rc < 0)
            return fail(err, errlen, "--api wants http://IPV4:PORT, got %s", api_arg);
        o->api_given = true;
    }
    if (o->api_given && !o->token)
        return fail(err, errlen, "--api needs --token (an operator or admin API token)");
    if (o->creds_file && o->api_given)
        return fail(err, errlen, "use either --creds FILE or --api/--token for the fleet");
    if (o->creds_file && o->no_auth)
        return fail(err, errlen, "--no-auth and --creds exclude each other");
    if (!o->creds_file && !o->api_given && !o->no_auth)
        return fail(err, errlen,
                    "no credentials: give --api URL --token T (create the fleet), --creds "
                    "FILE, or --no-auth");
    if (o->create_only && !o->api_given)
        return fail(err, errlen, "--create-only needs --api and --token");
    char probe[DROVER_ID_MAX + 8];
    int pl = snprintf(probe, sizeof(probe), "%s%06u", o->id_prefix, o->devices - 1);
    if (pl < 0 || (size_t)pl >= sizeof(probe) || !util_id_valid(probe, (size_t)pl))
        return fail(err, errlen,
                    "--id-prefix %s does not make valid device ids ([A-Za-z0-9._-], at most %d)",
                    o->id_prefix, DROVER_ID_MAX);
    if (!o->creds_file && o->workers > o->devices)
        return fail(err, errlen, "--workers %u is more than --devices %u", o->workers, o->devices);
    if (o->source_addrs && o->source_addrs < o->workers)
        return fail(err, errlen, "--source-addrs must be at least --workers (%u)", o->workers);
    if (o->duration_us <= 0)
        return fail(err, errlen, "--duration must be positive");
    if (o->drop_at_us >= 0 && o->drop_at_us >= o->duration_us)
        return fail(err, errlen, "--drop-at must come before the end of --duration");
    if (o->drop_at_us >= 0 && !o->reconnect)
        return fail(err, errlen, "--drop-at needs reconnects (drop --no-reconnect)");
    if (o->backoff_min_us > o->backoff_max_us)
        return fail(err, errlen, "--backoff-min is above --backoff-max");
    if (o->connect_timeout_us < 1000)
        return fail(err, errlen, "--connect-timeout is too short");
    if (o->messages && o->telemetry_interval_us < 0)
        return fail(err, errlen, "--messages needs telemetry (--telemetry-interval not off)");
    if (o->topic_leaf[0] == '\0' || strlen(o->topic_leaf) > 64 || strchr(o->topic_leaf, '+') ||
        strchr(o->topic_leaf, '#'))
        return fail(err, errlen, "--topic wants a topic leaf of 1..64 bytes without wildcards");
    if (o->relay_prefix) {
        size_t rl = strlen(o->relay_prefix);
        if (rl == 0 || rl > SIM_RELAY_PREFIX_MAX || strchr(o->relay_prefix, '+') ||
            strchr(o->relay_prefix, '#'))
            return fail(err, errlen,
                        "--relay wants a topic prefix of 1..%d bytes without wildcards",
                        SIM_RELAY_PREFIX_MAX);
        if (o->topic_given)
            return fail(err, errlen, "--relay and --topic exclude each other");
        snprintf(o->relay_filter, sizeof(o->relay_filter), "%s/+", o->relay_prefix);
        o->subscribe = false;
        if (!o->subscribe_all)
            o->subscribe_all = o->relay_filter;
    }
    if (o->relay_window && !o->subscribe_all)
        return fail(err, errlen, "--relay-window needs a subscriber (--relay or --subscribe-all)");
    if (o->relay_window && o->workers != 1)
        return fail(err, errlen,
                    "--relay-window needs --workers 1 (the subscriber counts for its publishers)");
    if (o->payload_size > SIM_PAYLOAD_MAX - 1024)
        o->payload_size = SIM_PAYLOAD_MAX - 1024;
    return 0;
}

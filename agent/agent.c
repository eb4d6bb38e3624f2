/*
 * drover-agent's runtime. Everything happens on one thread, in one loop
 * around ppoll(2):
 *
 *   - the MQTT connection: libmosquitto without its own thread; we poll
 *     its socket and call mosquitto_loop_read/write/misc, so its callbacks
 *     run here too. A fresh mosquitto object is made for every connection
 *     and destroyed when it ends: libmosquitto keeps no messages of its own
 *     across connections, and the on-disk queue is the only thing that
 *     decides what is sent again.
 *   - a timer for health samples: each sample gets the next seq, goes to
 *     the on-disk queue first (agent_queue.h) and is published from there;
 *     a record leaves the queue only when its PUBACK arrives. After a
 *     reconnect everything still queued is sent again, oldest first.
 *   - reconnects after a jittered exponential backoff (agent_backoff.h).
 *   - child processes (desired_hook, reboot_hook, user commands): their
 *     output pipes are polled here, deadlines checked every turn.
 *   - SIGTERM/SIGINT/SIGCHLD are blocked except inside ppoll, whose
 *     handlers only set flags: no signal ever interrupts other code.
 *   - with certificates (no secret): zero-touch provisioning before the
 *     loop starts, when data_dir has no device.crt yet (agent_provision.h);
 *     then mutual TLS, and renewal over MQTT: after every connect and every
 *     hour the agent checks device.crt, and when less than renew_before of
 *     its lifetime is left it makes a new key (device.key.new), publishes a
 *     CSR on devices/{id}/certificates/renew and waits for
 *     devices/{id}/certificates/issued. A certificate that is for the new
 *     key, names the device and chains to the fleet CA replaces the pair
 *     (agent_cert_install), and the agent reconnects with it at once. Any
 *     failure leaves the working pair alone and is retried an hour later.
 *
 * Callbacks never destroy the mosquitto object: they set conn_lost and the
 * loop tears the connection down after libmosquitto has returned.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_backoff.h"
#include "agent_cert.h"
#include "agent_cmd.h"
#include "agent_fs.h"
#include "agent_health.h"
#include "agent_proc.h"
#include "agent_provision.h"
#include "agent_queue.h"
#include "agent_twin.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"

#define TOPIC_MAX 256
#define CID_MAX 128
#define RECENT_CIDS 64 /* command ids remembered to skip redeliveries */
#define RESULTS_MAX 64 /* results waiting for their PUBACK */
#define DESIRED_MAX (1024 * 1024)
#define COMMAND_MAX (256 * 1024)
#define RESULT_MAX (60 * 1024) /* output under the server's max_command_bytes (64 KiB) */
#define HOOK_OUTPUT_MAX 4096
#define HEAD_SYNC_US 1000000
#define MISC_US 1000000
#define CHILD_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define RENEW_CHECK_US (3600LL * 1000000) /* look at device.crt's expiry this often */
#define RENEW_RETRY_US (3600LL * 1000000) /* at most one renewal request per hour */
#define RENEW_ANSWER_US (300LL * 1000000) /* give up waiting for issued after this */
#define ISSUED_MAX (2 * AGENT_PEM_MAX + 4096)
#define FILE_PATH_MAX (AGENT_PATH_MAX + 32)

typedef enum { CONN_IDLE, CONN_CONNECTING, CONN_UP } conn_state_t;

struct inflight {
    int mid;
    uint64_t seq;
    bool acked;
};

struct result {
    char *topic;
    char *payload;
    size_t len;
    int mid;
    bool sent; /* published on the current connection, PUBACK pending */
};

struct job {
    bool used;
    agent_proc_t proc;
    char cid[CID_MAX + 1];
    char name[AGENT_CMD_NAME_MAX + 1];
};

/* "KEY=value" strings for a child's environment. */
struct child_env {
    char buf[6][AGENT_PATH_MAX + 64];
    char *envp[7];
};

struct agent {
    agent_config_t cfg;
    char host[256];
    int port;
    char t_telemetry[TOPIC_MAX];
    char t_desired[TOPIC_MAX];
    char t_reported[TOPIC_MAX];
    char t_commands[TOPIC_MAX]; /* devices/{id}/commands/+ */
    char t_cmd_prefix[TOPIC_MAX];
    char t_renew[TOPIC_MAX];
    char t_issued[TOPIC_MAX];

    /* Certificates: set when there is no secret. */
    bool use_cert;
    bool need_provision;   /* no device.crt yet: provision before the loop */
    char claim_token[256]; /* wiped once provisioning is over */
    char key_path[FILE_PATH_MAX];
    char crt_path[FILE_PATH_MAX];
    char fleet_ca_path[FILE_PATH_MAX]; /* data_dir/ca.crt */
    int64_t renew_check_us;            /* next look at the expiry (while connected) */
    int64_t renew_sent_us;             /* last renewal request, 0: none yet */
    int64_t renew_deadline_us;         /* give up waiting for issued */
    bool renew_pending;                /* waiting for certificates/issued */
    int renew_mid;                     /* PUBACK of the request still to come */
    bool reconnect_now;                /* a new pair is installed: use it */
    sigset_t wait_mask;                /* signals ppoll lets through */

    int lock_fd;
    agent_queue_t *queue;
    agent_seq_t seq;
    agent_health_t health;
    agent_backoff_t backoff;

    struct mosquitto *mosq;
    conn_state_t state;
    bool conn_lost;
    int64_t conn_started_us;
    int64_t conn_up_us;
    int64_t reconnect_at_us;

    struct inflight *inflight;
    size_t n_inflight;
    uint64_t last_sent_seq;
    uint64_t dropped_seen;

    struct result results[RESULTS_MAX];
    size_t n_results;

    bool have_applied;
    int64_t applied_version;
    json_t *applied_state;
    bool hook_running;
    agent_proc_t hook;
    int64_t hook_version;
    json_t *hook_state;
    bool have_pending;
    int64_t pending_version;
    json_t *pending_state;

    struct job *jobs;
    char recent[RECENT_CIDS][CID_MAX + 1];
    size_t recent_next;

    int64_t next_sample_us;
    int64_t head_sync_us;
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    if (sig == SIGTERM || sig == SIGINT)
        g_stop = 1;
}

static uint32_t random32(void)
{
    uint32_t r;
    if (crypto_random((uint8_t *)&r, sizeof(r)) == 0)
        return r;
    return (uint32_t)(util_mono_us() * 2654435761u) ^ (uint32_t)getpid();
}

/* ---------------------------------------------------------------- set-up */

static int open_lock(agent_t *a, char *err, size_t errlen)
{
    char path[AGENT_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/lock", a->cfg.data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path,
                 e == EWOULDBLOCK ? "another drover-agent uses this data_dir" : strerror(e));
        close(fd);
        return -e;
    }
    a->lock_fd = fd;
    return 0;
}

static void load_applied(agent_t *a)
{
    char path[AGENT_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/applied.json", a->cfg.data_dir);
    char *text;
    size_t len;
    if (agent_fs_read(path, DESIRED_MAX, &text, &len) < 0)
        return;
    int64_t v;
    json_t *state;
    if (agent_twin_parse_desired(text, len, &v, &state) == 0) {
        a->have_applied = true;
        a->applied_version = v;
        a->applied_state = state;
    } else {
        log_warn("agent: %s is not {\"version\", \"state\"}; ignored", path);
    }
    free(text);
}

/* The claim token from the config or its file (trimmed; at most 255
 * bytes). */
static int load_claim_token(agent_t *a, char *err, size_t errlen)
{
    const agent_config_t *c = &a->cfg;
    if (c->claim_token[0] != '\0') {
        snprintf(a->claim_token, sizeof(a->claim_token), "%s", c->claim_token);
        return 0;
    }
    if (c->claim_token_file[0] == '\0') {
        snprintf(err, errlen,
                 "%s does not exist and no claim_token is set: the device has neither a "
                 "certificate nor a secret",
                 a->crt_path);
        return -ENOENT;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = agent_fs_read(c->claim_token_file, sizeof(a->claim_token) - 1, &text, &len);
    if (rc < 0) {
        snprintf(err, errlen, "claim_token_file %s: %s", c->claim_token_file,
                 rc == -EFBIG ? "too long for a claim token" : strerror(-rc));
        return rc;
    }
    size_t b = 0;
    while (b < len && (text[b] == ' ' || text[b] == '\t' || text[b] == '\n' || text[b] == '\r'))
        b++;
    while (len > b && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\n' ||
                       text[len - 1] == '\r'))
        len--;
    if (len == b || memchr(text + b, '\0', len - b) != NULL) {
        snprintf(err, errlen, "claim_token_file %s holds no token", c->claim_token_file);
        rc = -EINVAL;
    } else {
        snprintf(a->claim_token, sizeof(a->claim_token), "%.*s", (int)(len - b), text + b);
    }
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

/* Certificates: finish or undo a renewal a crash interrupted, then decide
 * whether to provision. device.crt present means provisioned, for good. */
static int cert_setup(agent_t *a, char *err, size_t errlen)
{
    char what[128];
    int rc = agent_cert_recover(a->cfg.data_dir, what, sizeof(what));
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot check the certificate files: %s", a->cfg.data_dir,
                 strerror(-rc));
        return rc;
    }
    if (what[0] != '\0')
        log_info("agent: %s/%s: %s", a->cfg.data_dir, AGENT_CRT_FILE, what);
    struct stat st;
    if (stat(a->crt_path, &st) == 0) {
        if (stat(a->key_path, &st) < 0) {
            rc = -errno;
            snprintf(err, errlen, "%s exists but %s does not (%s): the device's key is lost",
                     a->crt_path, a->key_path, strerror(errno));
            return rc;
        }
        if (a->cfg.claim_token[0] != '\0' || a->cfg.claim_token_file[0] != '\0')
            log_debug("agent: %s exists: already provisioned, claim_token unused", a->crt_path);
        return 0;
    }
    if (errno != ENOENT) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", a->crt_path, strerror(errno));
        return rc;
    }
    rc = load_claim_token(a, err, errlen);
    if (rc < 0)
        return rc;
    a->need_provision = true;
    return 0;
}

int agent_new(const agent_config_t *cfg, agent_t **out, char *err, size_t errlen)
{
    int rc;
    agent_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->cfg = *cfg;
    a->lock_fd = -1;
    const char *id = cfg->device_id;
    snprintf(a->t_telemetry, TOPIC_MAX, "devices/%s/telemetry", id);
    snprintf(a->t_desired, TOPIC_MAX, "devices/%s/twin/desired", id);
    snprintf(a->t_reported, TOPIC_MAX, "devices/%s/twin/reported", id);
    snprintf(a->t_commands, TOPIC_MAX, "devices/%s/commands/+", id);
    snprintf(a->t_cmd_prefix, TOPIC_MAX, "devices/%s/commands/", id);
    snprintf(a->t_renew, TOPIC_MAX, "devices/%s/certificates/renew", id);
    snprintf(a->t_issued, TOPIC_MAX, "devices/%s/certificates/issued", id);
    a->use_cert = agent_config_uses_cert(cfg);
    snprintf(a->key_path, sizeof(a->key_path), "%s/%s", cfg->data_dir, AGENT_KEY_FILE);
    snprintf(a->crt_path, sizeof(a->crt_path), "%s/%s", cfg->data_dir, AGENT_CRT_FILE);
    snprintf(a->fleet_ca_path, sizeof(a->fleet_ca_path), "%s/%s", cfg->data_dir, AGENT_CA_FILE);
    rc = util_parse_hostport(cfg->server, a->host, sizeof(a->host), &a->port);
    if (rc < 0) {
        snprintf(err, errlen, "server '%s' is not host:port", cfg->server);
        goto fail;
    }
    a->inflight = calloc(cfg->max_inflight, sizeof(*a->inflight));
    a->jobs = calloc(cfg->max_commands + 1, sizeof(*a->jobs)); /* +1: reboot */
    if (a->inflight == NULL || a->jobs == NULL) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    rc = agent_fs_mkdir(cfg->data_dir);
    if (rc < 0) {
        snprintf(err, errlen, "data_dir %s: %s", cfg->data_dir, strerror(-rc));
        goto fail;
    }
    rc = open_lock(a, err, errlen);
    if (rc < 0)
        goto fail;
    if (a->use_cert) {
        rc = cert_setup(a, err, errlen);
        if (rc < 0)
            goto fail;
    }
    char qdir[AGENT_PATH_MAX + 16];
    snprintf(qdir, sizeof(qdir), "%s/queue", cfg->data_dir);
    rc = agent_queue_open(qdir, cfg->queue_max_bytes, true, &a->queue);
    if (rc < 0) {
        snprintf(err, errlen, "queue %s: %s", qdir, strerror(-rc));
        goto fail;
    }
    agent_queue_stats_t st;
    agent_queue_stats(a->queue, &st);
    a->dropped_seen = st.dropped;
    if (st.discarded > 0)
        log_warn("agent: queue: discarded %" PRIu64 " bytes of a torn or corrupt record",
                 st.discarded);
    if (st.count > 0)
        log_info("agent: queue: %zu messages (%" PRIu64 " bytes) waiting from an earlier run",
                 st.count, st.bytes);
    rc = agent_seq_open(&a->seq, cfg->data_dir, st.last_seq + 1);
    if (rc < 0) {
        snprintf(err, errlen, "%s/seq: %s", cfg->data_dir, strerror(-rc));
        goto fail;
    }
    load_applied(a);
    agent_health_init(&a->health);
    agent_backoff_init(&a->backoff, cfg->backoff_base_ms, cfg->backoff_max_ms);
    *out = a;
    return 0;
fail:
    agent_free(a);
    return rc;
}

void agent_free(agent_t *a)
{
    if (a == NULL)
        return;
    if (a->mosq != NULL)
        mosquitto_destroy(a->mosq);
    if (a->jobs != NULL)
        for (uint32_t i = 0; i <= a->cfg.max_commands; i++)
            if (a->jobs[i].used)
                agent_proc_fini(&a->jobs[i].proc);
    if (a->hook_running)
        agent_proc_fini(&a->hook);
    for (size_t i = 0; i < a->n_results; i++) {
        free(a->results[i].topic);
        free(a->results[i].payload);
    }
    json_decref(a->applied_state);
    json_decref(a->hook_state);
    json_decref(a->pending_state);
    agent_queue_close(a->queue);
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    free(a->inflight);
    free(a->jobs);
    OPENSSL_cleanse(a->claim_token, sizeof(a->claim_token));
    free(a);
}

/* ---------------------------------------------------------------- publishing */

/* QoS 1 publish on the live connection. Returns the mid, or -1 (and marks
 * the connection lost) on failure. */
static int publish(agent_t *a, const char *topic, const void *payload, size_t len)
{
    if (a->state != CONN_UP || a->mosq == NULL)
        return -1;
    int mid = 0;
    int rc = mosquitto_publish(a->mosq, &mid, topic, (int)len, payload, 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        log_warn("agent: publish to %s: %s", topic, mosquitto_strerror(rc));
        a->conn_lost = true;
        return -1;
    }
    return mid;
}

/* Sends queued telemetry not yet in flight, oldest first. */
static void pump(agent_t *a)
{
    while (a->state == CONN_UP && !a->conn_lost && a->n_inflight < a->cfg.max_inflight) {
        size_t idx = agent_queue_find(a->queue, a->last_sent_seq);
        agent_queue_stats_t st;
        agent_queue_stats(a->queue, &st);
        if (idx >= st.count)
            return;
        uint64_t seq;
        char *data;
        size_t len;
        int rc = agent_queue_peek(a->queue, idx, &seq, &data, &len);
        if (rc < 0) {
            /* Unreadable now: skip it; it leaves the queue together with
             * the next acknowledged record. */
            seq = agent_queue_seq_at(a->queue, idx);
            log_error("agent: queue: cannot read message seq %" PRIu64 " (%s); skipped", seq,
                      strerror(-rc));
            a->last_sent_seq = seq;
            continue;
        }
        int mid = publish(a, a->t_telemetry, data, len);
        free(data);
        if (mid < 0)
            return;
        a->inflight[a->n_inflight].mid = mid;
        a->inflight[a->n_inflight].seq = seq;
        a->inflight[a->n_inflight].acked = false;
        a->n_inflight++;
        a->last_sent_seq = seq;
    }
}

static void result_publish(agent_t *a, struct result *r)
{
    int mid = publish(a, r->topic, r->payload, r->len);
    if (mid >= 0) {
        r->mid = mid;
        r->sent = true;
    }
}

static void result_remove(agent_t *a, size_t i)
{
    free(a->results[i].topic);
    free(a->results[i].payload);
    memmove(&a->results[i], &a->results[i + 1], (a->n_results - i - 1) * sizeof(a->results[0]));
    a->n_results--;
}

/* Queues (and, when connected, sends) a command result. Takes ownership
 * of output. */
static void send_result(agent_t *a, const char *cid, const char *status, json_t *output)
{
    json_t *doc =
        json_pack("{s:s, s:o}", "status", status, "output", output != NULL ? output : json_null());
    char *payload = doc != NULL ? json_util_dump(doc) : NULL;
    /* Output near the size limit (binary output escapes to six bytes a
     * byte): halve stdout until it fits. */
    json_t *out = json_object_get(doc, "output");
    json_t *so = json_is_object(out) ? json_object_get(out, "stdout") : NULL;
    while (payload != NULL && strlen(payload) > RESULT_MAX && json_is_string(so) &&
           json_string_length(so) > 0) {
        size_t n = json_string_length(so) / 2;
        char *cut = strndup(json_string_value(so), n);
        free(payload);
        payload = NULL;
        if (cut == NULL)
            break;
        agent_utf8_clean(cut, n);
        json_string_set(so, cut);
        json_object_set_new(out, "truncated", json_true());
        free(cut);
        payload = json_util_dump(doc);
    }
    json_decref(doc);
    if (payload == NULL) {
        log_error("agent: command %s: cannot encode the result", cid);
        return;
    }
    if (a->n_results == RESULTS_MAX) {
        log_warn("agent: %d command results wait for the server; the oldest is dropped",
                 RESULTS_MAX);
        result_remove(a, 0);
    }
    char topic[TOPIC_MAX + CID_MAX + 16];
    snprintf(topic, sizeof(topic), "%s%s/result", a->t_cmd_prefix, cid);
    struct result *r = &a->results[a->n_results];
    memset(r, 0, sizeof(*r));
    r->topic = strdup(topic);
    r->payload = payload;
    r->len = strlen(payload);
    if (r->topic == NULL) {
        free(payload);
        return;
    }
    a->n_results++;
    log_info("agent: command %s: %s", cid, status);
    if (a->state == CONN_UP)
        result_publish(a, r);
}

/* Publishes a reported-state merge patch. Takes ownership. Not kept when
 * offline: on the next connection the server sends the desired state
 * again and the agent reports again (see handle_desired). */
static void send_reported(agent_t *a, json_t *patch)
{
    char *payload = patch != NULL ? json_util_dump(patch) : NULL;
    json_decref(patch);
    if (payload == NULL) {
        log_error("agent: cannot encode the reported state");
        return;
    }
    if (a->state == CONN_UP)
        publish(a, a->t_reported, payload, strlen(payload));
    else
        log_debug("agent: offline; reported state will be sent after reconnecting");
    free(payload);
}

/* ---------------------------------------------------------------- telemetry */

static void take_sample(agent_t *a)
{
    json_t *obj = json_object();
    char *payload = NULL;
    uint64_t seq;
    if (obj == NULL || agent_health_sample(&a->health, obj) < 0) {
        log_error("agent: health sample: out of memory");
        goto out;
    }
    int rc = agent_seq_take(&a->seq, &seq);
    if (rc < 0) {
        log_error("agent: %s/seq: %s; sample not sent", a->cfg.data_dir, strerror(-rc));
        goto out;
    }
    agent_queue_stats_t st;
    agent_queue_stats(a->queue, &st);
    json_object_set_new(obj, "ts", json_integer(util_now_ms()));
    json_object_set_new(obj, "seq", json_integer((json_int_t)seq));
    /* seq itself is not stored as a metric; agent_seq makes gaps and
     * duplicates visible in the time series. */
    json_object_set_new(obj, "agent_seq", json_integer((json_int_t)seq));
    json_object_set_new(obj, "agent_queue_dropped", json_integer((json_int_t)st.dropped));
    json_object_set_new(obj, "agent_queue_depth", json_integer((json_int_t)st.count));
    /* Ten significant digits: 93.88, not 93.879999999999995. */
    payload = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (payload == NULL) {
        log_error("agent: health sample: out of memory");
        goto out;
    }
    rc = agent_queue_append(a->queue, seq, payload, strlen(payload));
    if (rc < 0) {
        log_error("agent: queue: cannot store sample seq %" PRIu64 ": %s", seq, strerror(-rc));
        goto out;
    }
    agent_queue_stats(a->queue, &st);
    if (st.dropped > a->dropped_seen) {
        log_warn("agent: queue full (%" PRIu64 " bytes): dropped the %" PRIu64
                 " oldest message(s), %" PRIu64 " in total",
                 a->cfg.queue_max_bytes, st.dropped - a->dropped_seen, st.dropped);
        a->dropped_seen = st.dropped;
    }
    log_debug("agent: sample seq %" PRIu64 " queued (%zu waiting)", seq, st.count);
    pump(a);
out:
    free(payload);
    json_decref(obj);
}

/* ---------------------------------------------------------------- children */

static void child_env(struct child_env *e, const agent_t *a, const char *k1, const char *v1,
                      const char *k2, const char *v2)
{
    size_t n = 0;
    snprintf(e->buf[n++], sizeof(e->buf[0]), "PATH=%s", CHILD_PATH);
    snprintf(e->buf[n++], sizeof(e->buf[0]), "DROVER_DEVICE_ID=%s", a->cfg.device_id);
    snprintf(e->buf[n++], sizeof(e->buf[0]), "DROVER_DATA_DIR=%s", a->cfg.data_dir);
    if (k1 != NULL)
        snprintf(e->buf[n++], sizeof(e->buf[0]), "%s=%s", k1, v1);
    if (k2 != NULL)
        snprintf(e->buf[n++], sizeof(e->buf[0]), "%s=%s", k2, v2);
    for (size_t i = 0; i < n; i++)
        e->envp[i] = e->buf[i];
    e->envp[n] = NULL;
}

/* ---------------------------------------------------------------- twin */

static void report_error(agent_t *a, int64_t version, const char *msg)
{
    log_warn("agent: desired version %" PRId64 " not applied: %s", version, msg);
    json_t *p = json_object();
    if (p == NULL)
        return;
    json_t *m = json_string(msg);
    json_object_set_new(p, "$apply_error", m != NULL ? m : json_string("(not UTF-8)"));
    json_object_set_new(p, "$apply_error_version", json_integer(version));
    send_reported(a, p);
}

/* Reports the applied state: as a diff from prev (NULL: in full). */
static void report_applied(agent_t *a, const json_t *prev)
{
    json_t *p = agent_twin_diff(prev, a->applied_state);
    if (p == NULL)
        return;
    json_object_set_new(p, "$applied_version", json_integer(a->applied_version));
    json_object_set_new(p, "$apply_error", json_null());
    json_object_set_new(p, "$apply_error_version", json_null());
    send_reported(a, p);
}

static void apply_done(agent_t *a, int64_t version, json_t *state)
{
    json_t *doc = json_pack("{s:I, s:O}", "version", (json_int_t)version, "state", state);
    char *text = doc != NULL ? json_util_dump(doc) : NULL;
    json_decref(doc);
    int rc = text != NULL
                 ? agent_fs_write_atomic(a->cfg.data_dir, "applied.json", text, strlen(text), true)
                 : -ENOMEM;
    free(text);
    if (rc < 0)
        log_error("agent: %s/applied.json: %s", a->cfg.data_dir, strerror(-rc));
    json_t *prev = a->applied_state;
    a->applied_state = json_incref(state);
    a->applied_version = version;
    a->have_applied = true;
    log_info("agent: applied desired version %" PRId64, version);
    report_applied(a, prev);
    json_decref(prev);
}

static void start_apply(agent_t *a, int64_t version, json_t *state)
{
    json_t *doc = json_pack("{s:I, s:O}", "version", (json_int_t)version, "state", state);
    char *text = doc != NULL ? json_util_dump(doc) : NULL;
    char *stext = json_util_dump(state);
    json_decref(doc);
    int rc = text != NULL
                 ? agent_fs_write_atomic(a->cfg.data_dir, "desired.json", text, strlen(text), true)
                 : -ENOMEM;
    if (rc < 0 || stext == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "cannot write desired.json: %s",
                 strerror(rc < 0 ? -rc : ENOMEM));
        report_error(a, version, msg);
        goto out;
    }
    if (a->cfg.desired_hook[0] == '\0') {
        apply_done(a, version, state);
        goto out;
    }
    char vbuf[32];
    snprintf(vbuf, sizeof(vbuf), "%" PRId64, version);
    struct child_env env;
    child_env(&env, a, "DROVER_DESIRED_VERSION", vbuf, NULL, NULL);
    char *argv[] = {a->cfg.desired_hook, NULL};
    rc = agent_proc_spawn(&a->hook, a->cfg.desired_hook, argv, env.envp, stext, strlen(stext),
                          HOOK_OUTPUT_MAX, a->cfg.hook_timeout_s);
    if (rc < 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "cannot run desired_hook: %s", strerror(-rc));
        report_error(a, version, msg);
        goto out;
    }
    a->hook_running = true;
    a->hook_version = version;
    a->hook_state = json_incref(state);
    log_info("agent: applying desired version %" PRId64 " (desired_hook pid %d)", version,
             (int)a->hook.pid);
out:
    free(text);
    free(stext);
}

static void hook_finished(agent_t *a)
{
    agent_proc_t *p = &a->hook;
    bool ok = !p->timed_out && WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0;
    if (ok) {
        apply_done(a, a->hook_version, a->hook_state);
    } else {
        char how[64], msg[HOOK_OUTPUT_MAX + 128];
        agent_proc_describe(p, a->cfg.hook_timeout_s, how, sizeof(how));
        agent_utf8_clean(p->out, p->out_len);
        /* The end of the output says most about a failure. */
        const char *tail = p->out_len > 1024 ? p->out + p->out_len - 1024 : p->out;
        size_t tl = strlen(tail);
        while (tl > 0 && (tail[tl - 1] == '\n' || tail[tl - 1] == ' '))
            tl--;
        snprintf(msg, sizeof(msg), "desired_hook: %s%s%.*s", how, tl > 0 ? ": " : "", (int)tl,
                 tail);
        agent_utf8_clean(msg, strlen(msg));
        report_error(a, a->hook_version, msg);
    }
    agent_proc_fini(p);
    a->hook_running = false;
    json_decref(a->hook_state);
    a->hook_state = NULL;
    if (a->have_pending) {
        json_t *s = a->pending_state;
        int64_t v = a->pending_version;
        a->pending_state = NULL;
        a->have_pending = false;
        if (!(a->have_applied && v == a->applied_version))
            start_apply(a, v, s);
        json_decref(s);
    }
}

static void handle_desired(agent_t *a, const char *payload, size_t len)
{
    int64_t version;
    json_t *state;
    if (len > DESIRED_MAX || agent_twin_parse_desired(payload, len, &version, &state) < 0) {
        log_warn("agent: ignoring a desired state that is not {\"version\": N, \"state\": {...}}");
        return;
    }
    log_debug("agent: desired version %" PRId64 " received", version);
    if (a->hook_running) {
        /* Only the latest matters: remember it, run it when the hook that
         * is running now has finished. */
        if (version != a->hook_version) {
            json_decref(a->pending_state);
            a->pending_state = json_incref(state);
            a->pending_version = version;
            a->have_pending = true;
        } else {
            json_decref(a->pending_state);
            a->pending_state = NULL;
            a->have_pending = false;
        }
    } else if (a->have_applied && version == a->applied_version) {
        /* Sent again at every subscribe: already applied, so only report
         * again, in case the last report was lost. */
        report_applied(a, NULL);
    } else {
        /* A different version, higher or not: a server restored from a
         * backup may count from lower again. */
        start_apply(a, version, state);
    }
    json_decref(state);
}

/* ---------------------------------------------------------------- commands */

static bool seen_recently(agent_t *a, const char *cid)
{
    for (size_t i = 0; i < RECENT_CIDS; i++)
        if (strcmp(a->recent[i], cid) == 0)
            return true;
    snprintf(a->recent[a->recent_next], CID_MAX + 1, "%s", cid);
    a->recent_next = (a->recent_next + 1) % RECENT_CIDS;
    return false;
}

static struct job *free_job(agent_t *a, bool reboot)
{
    uint32_t used = 0;
    for (uint32_t i = 0; i < a->cfg.max_commands + 1; i++)
        used += a->jobs[i].used;
    /* The extra slot is reserved for reboot, so a busy device can still
     * be rebooted. */
    if (!reboot && used >= a->cfg.max_commands)
        return NULL;
    for (uint32_t i = 0; i < a->cfg.max_commands + 1; i++)
        if (!a->jobs[i].used)
            return &a->jobs[i];
    return NULL;
}

static void run_job(agent_t *a, const char *cid, const char *name, const char *path, char **argv,
                    const json_t *params, uint32_t timeout_s)
{
    struct job *j = free_job(a, strcmp(name, "reboot") == 0);
    if (j == NULL) {
        send_result(a, cid, "rejected", json_string("busy: too many commands running"));
        return;
    }
    char *in = params != NULL ? json_util_dump(params) : NULL;
    struct child_env env;
    child_env(&env, a, "DROVER_COMMAND_ID", cid, "DROVER_COMMAND_NAME", name);
    int rc = agent_proc_spawn(&j->proc, path, argv, env.envp, in != NULL ? in : "{}",
                              in != NULL ? strlen(in) : 2, a->cfg.command_output_max, timeout_s);
    free(in);
    if (rc < 0) {
        send_result(a, cid, "failed", json_pack("{s:s}", "error", strerror(-rc)));
        return;
    }
    j->used = true;
    snprintf(j->cid, sizeof(j->cid), "%s", cid);
    snprintf(j->name, sizeof(j->name), "%s", name);
    log_info("agent: command %s: running %s (pid %d)", cid, path, (int)j->proc.pid);
}

static void job_finished(agent_t *a, struct job *j)
{
    agent_proc_t *p = &j->proc;
    agent_utf8_clean(p->out, p->out_len);
    json_t *out = json_object();
    bool ok = false;
    if (out != NULL) {
        if (p->timed_out) {
            json_object_set_new(out, "error", json_string("timeout"));
            json_object_set_new(out, "timed_out", json_true());
        } else if (WIFEXITED(p->status)) {
            json_object_set_new(out, "exit_code", json_integer(WEXITSTATUS(p->status)));
            ok = WEXITSTATUS(p->status) == 0;
        } else if (WIFSIGNALED(p->status)) {
            json_object_set_new(out, "signal", json_integer(WTERMSIG(p->status)));
        }
        json_object_set_new(out, "stdout", json_stringn(p->out, p->out_len));
        json_object_set_new(out, "truncated", json_boolean(p->truncated));
    }
    char how[64];
    agent_proc_describe(p, a->cfg.command_timeout_s, how, sizeof(how));
    log_info("agent: command %s (%s): %s", j->cid, j->name, how);
    send_result(a, j->cid, ok ? "succeeded" : "failed", out);
    agent_proc_fini(p);
    j->used = false;
}

static void handle_command(agent_t *a, const char *cid, const char *payload, size_t len)
{
    json_t *doc = NULL;
    char **argv = NULL;
    if (strlen(cid) == 0 || strlen(cid) > CID_MAX) {
        log_warn("agent: ignoring a command with an id of %zu bytes", strlen(cid));
        return;
    }
    if (seen_recently(a, cid)) {
        log_debug("agent: command %s delivered again; ignored", cid);
        return;
    }
    if (len > COMMAND_MAX) {
        send_result(a, cid, "rejected", json_string("command too large"));
        return;
    }
    doc = json_util_parse(payload, len, NULL, 0);
    const json_t *name_j = json_object_get(doc, "name");
    if (!json_is_object(doc) || !json_is_string(name_j)) {
        send_result(a, cid, "rejected", json_string("malformed command"));
        goto out;
    }
    const char *name = json_string_value(name_j);
    const json_t *params = json_object_get(doc, "params");
    const json_t *exp = json_object_get(doc, "expires_at");
    if (json_is_integer(exp) && json_integer_value(exp) > 0 &&
        json_integer_value(exp) < util_now_ms()) {
        send_result(a, cid, "rejected", json_string("expired"));
        goto out;
    }
    log_info("agent: command %s: %s", cid, name);
    if (strcmp(name, "ping") == 0) {
        send_result(a, cid, "succeeded",
                    json_pack("{s:b, s:I}", "pong", 1, "ts", (json_int_t)util_now_ms()));
    } else if (strcmp(name, "get-config") == 0) {
        send_result(a, cid, "succeeded", agent_config_to_json(&a->cfg));
    } else if (strcmp(name, "reboot") == 0) {
        if (a->cfg.reboot_hook[0] == '\0') {
            send_result(a, cid, "rejected", json_string("reboot_hook is not configured"));
            goto out;
        }
        char *rargv[] = {a->cfg.reboot_hook, NULL};
        run_job(a, cid, "reboot", a->cfg.reboot_hook, rargv, params, a->cfg.hook_timeout_s);
    } else {
        char path[AGENT_PATH_MAX + AGENT_CMD_NAME_MAX + 2];
        int rc = a->cfg.commands_dir[0] != '\0'
                     ? agent_cmd_resolve(a->cfg.commands_dir, name, path, sizeof(path))
                     : -ENOENT;
        if (rc == -EACCES) {
            log_warn("agent: command %s: '%s' in %s is not an executable file of that "
                     "directory; refused",
                     cid, name, a->cfg.commands_dir);
            send_result(a, cid, "rejected", json_string("command not allowed"));
        } else if (rc < 0) {
            send_result(a, cid, "rejected", json_string("unknown command"));
        } else if (agent_cmd_argv(name, params, &argv) < 0) {
            send_result(a, cid, "rejected",
                        json_string("params.args must be an array of at most 64 strings"));
        } else {
            run_job(a, cid, name, path, argv, params, a->cfg.command_timeout_s);
        }
    }
out:
    agent_cmd_argv_free(argv);
    json_decref(doc);
}

/* ---------------------------------------------------------------- certificates */

/* The CA that verifies droverd's TLS certificate: ca_file when it exists,
 * else the fleet CA from provisioning (droverd's own server certificate is
 * issued by it). NULL when there is neither. */
static const char *server_ca(agent_t *a)
{
    struct stat st;
    if (a->cfg.ca_file[0] != '\0' && stat(a->cfg.ca_file, &st) == 0)
        return a->cfg.ca_file;
    if (stat(a->fleet_ca_path, &st) == 0) {
        if (a->cfg.ca_file[0] != '\0')
            log_warn("agent: ca_file %s does not exist; verifying the server with %s",
                     a->cfg.ca_file, a->fleet_ca_path);
        return a->fleet_ca_path;
    }
    return NULL;
}

static void fmt_time(int64_t unix_s, char *buf, size_t len)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "%" PRId64, unix_s);
}

/* Sends a renewal request with a fresh key; the working pair stays as it
 * is until the answer has passed every check. */
static void renew_start(agent_t *a, const agent_cert_info_t *info, int64_t now)
{
    EVP_PKEY *key = NULL;
    char *csr = NULL, *payload = NULL;
    a->renew_sent_us = now; /* a failure here waits for the next slot too */
    int rc = agent_cert_keygen(&key);
    if (rc == 0)
        rc = agent_cert_key_write(a->cfg.data_dir, AGENT_KEY_NEW_FILE, key);
    if (rc == 0)
        rc = agent_cert_csr(key, a->cfg.device_id, &csr);
    if (rc < 0) {
        log_error("agent: certificate renewal: cannot make a key and CSR in %s: %s",
                  a->cfg.data_dir, strerror(-rc));
        goto out;
    }
    json_t *o = json_pack("{s:s}", "csr", csr);
    payload = o != NULL ? json_util_dump(o) : NULL;
    json_decref(o);
    if (payload == NULL) {
        log_error("agent: certificate renewal: out of memory");
        goto out;
    }
    char until[32];
    fmt_time(info->not_after, until, sizeof(until));
    int mid = publish(a, a->t_renew, payload, strlen(payload));
    if (mid < 0)
        goto out;
    a->renew_mid = mid;
    a->renew_pending = true;
    a->renew_deadline_us = now + RENEW_ANSWER_US;
    log_info("agent: certificate valid until %s; less than %.0f%% of its lifetime left: renewing",
             until, a->cfg.renew_before * 100.0);
out:
    free(payload);
    free(csr);
    EVP_PKEY_free(key);
}

/* After every connect and every hour: is device.crt due for renewal? */
static void renew_check(agent_t *a, int64_t now)
{
    a->renew_check_us = now + RENEW_CHECK_US;
    if (a->renew_pending)
        return;
    agent_cert_info_t info;
    int rc = agent_cert_info_file(a->crt_path, &info);
    if (rc < 0) {
        log_warn("agent: %s: cannot read the certificate: %s", a->crt_path, strerror(-rc));
        return;
    }
    int64_t wall = util_now_ms() / 1000;
    if (!agent_cert_renew_due(info.not_before, info.not_after, wall, a->cfg.renew_before)) {
        char until[32];
        fmt_time(info.not_after, until, sizeof(until));
        log_debug("agent: certificate valid until %s; no renewal due", until);
        return;
    }
    if (a->renew_sent_us != 0 && now - a->renew_sent_us < RENEW_RETRY_US) {
        log_debug("agent: certificate renewal due; the last request was under an hour ago");
        return;
    }
    renew_start(a, &info, now);
}

/* devices/{id}/certificates/issued: the answer to a renewal. Checked
 * against device.key.new and the fleet CA before it replaces anything. A
 * late answer (after the wait timed out) is still taken while
 * device.key.new is there. */
static void handle_issued(agent_t *a, const char *payload, size_t len)
{
    char key_new[FILE_PATH_MAX], err[FILE_PATH_MAX + 256] = "";
    char *cert = NULL, *msg_ca = NULL, *ca = NULL;
    size_t ca_len = 0;
    EVP_PKEY *key = NULL;
    bool was_pending = a->renew_pending;
    a->renew_pending = false;
    if (len > ISSUED_MAX) {
        log_warn("agent: ignoring a certificates/issued message of %zu bytes", len);
        goto out;
    }
    snprintf(key_new, sizeof(key_new), "%s/%s", a->cfg.data_dir, AGENT_KEY_NEW_FILE);
    int rc = agent_cert_key_read(key_new, &key);
    if (rc < 0) {
        log_warn("agent: a certificate was issued but no renewal is waiting (%s: %s); ignored",
                 key_new, strerror(-rc));
        goto out;
    }
    rc = agent_cert_parse_answer(payload, len, a->cfg.device_id, &cert, &msg_ca, err, sizeof(err));
    if (rc == 0) {
        /* Our own copy of the fleet CA decides, not the one in the message. */
        struct stat st;
        const char *ca_path = stat(a->fleet_ca_path, &st) == 0 ? a->fleet_ca_path : server_ca(a);
        rc = ca_path != NULL ? agent_fs_read(ca_path, AGENT_PEM_MAX, &ca, &ca_len) : -ENOENT;
        if (rc < 0)
            snprintf(err, sizeof(err), "no fleet CA to check it against (%s: %s)",
                     ca_path != NULL ? ca_path : a->fleet_ca_path, strerror(-rc));
    }
    if (rc == 0)
        rc = agent_cert_check(cert, strlen(cert), key, a->cfg.device_id, ca, ca_len, err,
                              sizeof(err));
    if (rc < 0) {
        log_error("agent: certificate renewal: the issued certificate is unusable (%s); "
                  "keeping the current one",
                  err);
        goto out;
    }
    rc = agent_cert_install(a->cfg.data_dir, cert, strlen(cert));
    if (rc < 0) {
        log_error("agent: certificate renewal: cannot install the new certificate in %s: %s",
                  a->cfg.data_dir, strerror(-rc));
        goto out;
    }
    agent_cert_info_t info;
    char until[32] = "?";
    if (agent_cert_info(cert, strlen(cert), &info) == 0)
        fmt_time(info.not_after, until, sizeof(until));
    log_info("agent: certificate renewed%s, valid until %s; reconnecting with it",
             was_pending ? "" : " (late answer)", until);
    a->reconnect_now = true;
out:
    EVP_PKEY_free(key);
    free(cert);
    free(msg_ca);
    free(ca);
}

/* At start: say so when the certificate cannot work (damaged files, an
 * expired certificate, a clock far off), since the server then refuses the
 * TLS handshake and the agent would only log failed connects. */
static void cert_warn_unusable(agent_t *a)
{
    char *pem = NULL, *ca = NULL, err[256] = "";
    size_t len = 0, ca_len = 0;
    EVP_PKEY *key = NULL;
    agent_cert_info_t info;
    int rc = agent_fs_read(a->crt_path, AGENT_PEM_MAX, &pem, &len);
    if (rc == 0)
        rc = agent_cert_info(pem, len, &info);
    if (rc < 0) {
        log_error("agent: %s: not a usable certificate (%s)", a->crt_path, strerror(-rc));
        goto out;
    }
    rc = agent_cert_key_read(a->key_path, &key);
    if (rc < 0) {
        log_error("agent: %s: not a usable key (%s)", a->key_path, strerror(-rc));
        goto out;
    }
    if (agent_fs_read(a->fleet_ca_path, AGENT_PEM_MAX, &ca, &ca_len) < 0) {
        ca = NULL; /* no fleet CA (a pair installed by hand): check the rest */
        ca_len = 0;
    }
    rc = agent_cert_check(pem, len, key, a->cfg.device_id, ca, ca_len, err, sizeof(err));
    if (rc < 0 && !(ca == NULL && rc == -EINVAL)) {
        log_error("agent: %s: %s; the server will probably refuse it", a->crt_path, err);
        goto out;
    }
    int64_t now = util_now_ms() / 1000;
    char t[32];
    if (info.not_after <= now) {
        fmt_time(info.not_after, t, sizeof(t));
        log_error("agent: %s expired at %s: the server will refuse it; an operator must issue "
                  "a new certificate (or check the device clock)",
                  a->crt_path, t);
    } else if (info.not_before > now) {
        fmt_time(info.not_before, t, sizeof(t));
        log_warn("agent: %s is valid only from %s: is the device clock right?", a->crt_path, t);
    }
out:
    EVP_PKEY_free(key);
    free(pem);
    free(ca);
}

/* Reconnects at once with the renewed pair (clean DISCONNECT first, so
 * nothing of the old session lingers). Unacknowledged telemetry is sent
 * again from the queue; the server drops what it already has. */
static void reconnect_at_once(agent_t *a);

/* ---------------------------------------------------------------- MQTT */

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    (void)m;
    (void)flags;
    (void)props;
    agent_t *a = obj;
    if (rc != 0) {
        const char *why =
            a->cfg.protocol == 5 ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc);
        log_error("agent: %s refused the connection: %s", a->cfg.server, why);
        a->conn_lost = true;
        return;
    }
    a->state = CONN_UP;
    a->conn_up_us = util_mono_us();
    agent_queue_stats_t st;
    agent_queue_stats(a->queue, &st);
    log_info("agent: connected to %s as %s%s (%zu queued messages to send)", a->cfg.server,
             a->cfg.device_id, a->use_cert ? " with its certificate" : "", st.count);
    if (mosquitto_subscribe(a->mosq, NULL, a->t_desired, 1) != MOSQ_ERR_SUCCESS ||
        mosquitto_subscribe(a->mosq, NULL, a->t_commands, 1) != MOSQ_ERR_SUCCESS ||
        (a->use_cert && mosquitto_subscribe(a->mosq, NULL, a->t_issued, 1) != MOSQ_ERR_SUCCESS)) {
        log_warn("agent: subscribe failed");
        a->conn_lost = true;
        return;
    }
    if (a->use_cert)
        a->renew_check_us = a->conn_up_us; /* look at the expiry in the loop, now */
    for (size_t i = 0; i < a->n_results; i++)
        if (!a->results[i].sent)
            result_publish(a, &a->results[i]);
    pump(a);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    (void)m;
    (void)props;
    agent_t *a = obj;
    if (a->state == CONN_UP && !g_stop && !a->reconnect_now)
        log_warn("agent: connection lost (%s)", rc == 0 ? "disconnected" : mosquitto_strerror(rc));
    a->conn_lost = true;
}

/* Reason codes after which sending the same message again cannot help. */
static bool permanent_refusal(int reason)
{
    return reason == MQTT_RC_PAYLOAD_FORMAT_INVALID || reason == MQTT_RC_NOT_AUTHORIZED ||
           reason == MQTT_RC_PACKET_TOO_LARGE || reason == MQTT_RC_TOPIC_NAME_INVALID;
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
    (void)m;
    (void)props;
    agent_t *a = obj;
    if (a->renew_mid != 0 && mid == a->renew_mid) {
        a->renew_mid = 0;
        if (reason >= 0x80) {
            log_warn("agent: the server refused the certificate renewal request (%s); trying "
                     "again in an hour",
                     mosquitto_reason_string(reason));
            a->renew_pending = false;
        }
        return;
    }
    for (size_t i = 0; i < a->n_inflight; i++) {
        struct inflight *f = &a->inflight[i];
        if (f->mid != mid)
            continue;
        if (reason >= 0x80 && !permanent_refusal(reason)) {
            /* The server could not store it (e.g. disk full): keep it and
             * try again on a new connection, after a backoff. */
            log_warn("agent: server did not store telemetry seq %" PRIu64 " (%s); retrying", f->seq,
                     mosquitto_reason_string(reason));
            a->conn_lost = true;
            return;
        }
        if (reason >= 0x80)
            log_error("agent: server refused telemetry seq %" PRIu64 " (%s); dropped", f->seq,
                      mosquitto_reason_string(reason));
        f->acked = true;
        break;
    }
    /* PUBACKs come in order; pop every record up to the newest
     * acknowledged one at the front of the window. */
    size_t done = 0;
    while (done < a->n_inflight && a->inflight[done].acked) {
        uint64_t s = a->inflight[done].seq;
        agent_queue_stats_t st;
        agent_queue_stats(a->queue, &st);
        while (st.count > 0 && agent_queue_seq_at(a->queue, 0) <= s) {
            agent_queue_pop(a->queue);
            st.count--;
        }
        done++;
    }
    if (done > 0) {
        memmove(a->inflight, a->inflight + done, (a->n_inflight - done) * sizeof(*a->inflight));
        a->n_inflight -= done;
        pump(a);
        return;
    }
    for (size_t i = 0; i < a->n_results; i++) {
        if (a->results[i].sent && a->results[i].mid == mid) {
            if (reason >= 0x80)
                log_warn("agent: server refused the result on %s (%s)", a->results[i].topic,
                         mosquitto_reason_string(reason));
            result_remove(a, i);
            return;
        }
    }
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    (void)m;
    (void)props;
    agent_t *a = obj;
    size_t pl = strlen(a->t_cmd_prefix);
    const char *payload = msg->payload != NULL ? msg->payload : "";
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    if (strcmp(msg->topic, a->t_desired) == 0) {
        handle_desired(a, payload, len);
    } else if (a->use_cert && strcmp(msg->topic, a->t_issued) == 0) {
        handle_issued(a, payload, len);
    } else if (strncmp(msg->topic, a->t_cmd_prefix, pl) == 0 &&
               strchr(msg->topic + pl, '/') == NULL) {
        handle_command(a, msg->topic + pl, payload, len);
    } else {
        log_debug("agent: ignoring a message on %s", msg->topic);
    }
}

static void schedule_reconnect(agent_t *a, bool was_up)
{
    int64_t now = util_mono_us();
    if (was_up && now - a->conn_up_us >= (int64_t)a->cfg.backoff_stable_s * 1000000)
        agent_backoff_reset(&a->backoff);
    uint32_t d = agent_backoff_next(&a->backoff, random32());
    a->reconnect_at_us = now + (int64_t)d * 1000;
    log_info("agent: reconnecting in %u.%03u s", d / 1000, d % 1000);
}

static void teardown(agent_t *a)
{
    bool was_up = a->state == CONN_UP;
    if (a->mosq != NULL) {
        mosquitto_destroy(a->mosq);
        a->mosq = NULL;
    }
    /* Whatever was in flight is sent again from the queue. */
    a->n_inflight = 0;
    a->last_sent_seq = 0;
    for (size_t i = 0; i < a->n_results; i++)
        a->results[i].sent = false;
    a->state = CONN_IDLE;
    a->conn_lost = false;
    /* An answer to a renewal would have come on this connection only. */
    a->renew_pending = false;
    a->renew_mid = 0;
    a->reconnect_now = false;
    schedule_reconnect(a, was_up);
}

static void start_connect(agent_t *a)
{
    struct mosquitto *m = mosquitto_new(a->cfg.device_id, true, a);
    if (m == NULL) {
        log_error("agent: mosquitto_new: %s", strerror(errno));
        schedule_reconnect(a, false);
        return;
    }
    a->mosq = m;
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION,
                         a->cfg.protocol == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    /* With a certificate the CN is the identity: no user name, no
     * password (the server would only compare a user name with the CN). */
    if (!a->use_cert)
        mosquitto_username_pw_set(m, a->cfg.device_id, a->cfg.secret);
    mosquitto_connect_v5_callback_set(m, on_connect);
    mosquitto_disconnect_v5_callback_set(m, on_disconnect);
    mosquitto_publish_v5_callback_set(m, on_publish);
    mosquitto_message_v5_callback_set(m, on_message);
    int rc = MOSQ_ERR_SUCCESS;
    if (a->use_cert) {
        const char *ca = server_ca(a);
        if (ca == NULL) {
            log_error("agent: no CA to verify %s with: set ca_file (neither it nor %s exists)",
                      a->cfg.server, a->fleet_ca_path);
            rc = MOSQ_ERR_INVAL;
        } else {
            /* libmosquitto reads the files at connect: a renewed pair is
             * picked up by the next connection. */
            rc = mosquitto_tls_set(m, ca, NULL, a->crt_path, a->key_path, NULL);
        }
    } else if (agent_config_mqtt_tls(&a->cfg)) {
        rc = mosquitto_tls_set(m, a->cfg.ca_file, NULL, NULL, NULL, NULL);
    }
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_connect_async(m, a->host, a->port, (int)a->cfg.keepalive_s);
    if (rc != MOSQ_ERR_SUCCESS) {
        log_warn("agent: connect to %s: %s", a->cfg.server,
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        a->state = CONN_CONNECTING;
        teardown(a);
        return;
    }
    a->state = CONN_CONNECTING;
    a->conn_started_us = util_mono_us();
    log_debug("agent: connecting to %s", a->cfg.server);
}

/* ---------------------------------------------------------------- loop */

static void mqtt_io(agent_t *a, short revents)
{
    int rc = MOSQ_ERR_SUCCESS;
    if (revents & (POLLIN | POLLHUP | POLLERR))
        rc = mosquitto_loop_read(a->mosq, 1);
    if (rc == MOSQ_ERR_SUCCESS && !a->conn_lost && (revents & POLLOUT))
        rc = mosquitto_loop_write(a->mosq, 1);
    if (rc != MOSQ_ERR_SUCCESS && !a->conn_lost) {
        if (a->state == CONN_UP)
            log_warn("agent: connection lost (%s)",
                     rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        else
            log_warn("agent: connect to %s: %s", a->cfg.server,
                     rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        a->conn_lost = true;
    }
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static void children_poll(agent_t *a, int64_t now)
{
    for (uint32_t i = 0; i < a->cfg.max_commands + 1; i++)
        if (a->jobs[i].used && agent_proc_poll(&a->jobs[i].proc, now))
            job_finished(a, &a->jobs[i]);
    if (a->hook_running && agent_proc_poll(&a->hook, now))
        hook_finished(a);
}

static void shutdown_conn(agent_t *a)
{
    if (a->mosq == NULL)
        return;
    if (a->state == CONN_UP) {
        mosquitto_disconnect(a->mosq);
        /* Flush the DISCONNECT (bounded: a dead peer must not hold us). */
        int64_t until = util_mono_us() + 1000000;
        while (mosquitto_want_write(a->mosq) && util_mono_us() < until) {
            struct pollfd p = {mosquitto_socket(a->mosq), POLLOUT, 0};
            if (p.fd < 0 || poll(&p, 1, 100) < 0)
                break;
            if (p.revents && mosquitto_loop_write(a->mosq, 1) != MOSQ_ERR_SUCCESS)
                break;
        }
    }
    mosquitto_destroy(a->mosq);
    a->mosq = NULL;
    a->state = CONN_IDLE;
}

static void reconnect_at_once(agent_t *a)
{
    log_info("agent: reconnecting to %s with the renewed certificate", a->cfg.server);
    shutdown_conn(a); /* reconnect_now still set: on_disconnect stays quiet */
    a->n_inflight = 0;
    a->last_sent_seq = 0;
    for (size_t i = 0; i < a->n_results; i++)
        a->results[i].sent = false;
    a->conn_lost = false;
    a->renew_pending = false;
    a->renew_mid = 0;
    a->reconnect_now = false;
    a->reconnect_at_us = util_mono_us();
}

static bool prov_stopped(void *ctx)
{
    (void)ctx;
    /* Signals are blocked outside ppoll: look at the pending ones. */
    sigset_t p;
    if (sigpending(&p) == 0 && (sigismember(&p, SIGTERM) == 1 || sigismember(&p, SIGINT) == 1))
        g_stop = 1;
    return g_stop != 0;
}

static void prov_sleep(void *ctx, uint32_t ms)
{
    agent_t *a = ctx;
    int64_t until = util_mono_us() + (int64_t)ms * 1000;
    for (;;) {
        int64_t left = until - util_mono_us();
        if (g_stop || left <= 0)
            return;
        struct timespec ts = {(time_t)(left / 1000000), (long)(left % 1000000) * 1000};
        ppoll(NULL, 0, &ts, &a->wait_mask);
    }
}

int agent_run(agent_t *a)
{
    sigset_t block, wait_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &wait_mask);
    sigdelset(&wait_mask, SIGTERM);
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGCHLD);
    a->wait_mask = wait_mask;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL); /* a handler (not SIG_IGN) so children stay reapable */
    signal(SIGPIPE, SIG_IGN);

    if (a->need_provision) {
        agent_provision_ops_t ops = {prov_stopped, prov_sleep, a};
        int prc = agent_provision_run(&a->cfg, a->claim_token, &ops);
        OPENSSL_cleanse(a->claim_token, sizeof(a->claim_token));
        if (prc == -EINTR) {
            log_info("agent: stopping");
            return 0;
        }
        if (prc < 0)
            return prc;
        a->need_provision = false;
    }
    if (a->use_cert)
        cert_warn_unusable(a);

    size_t nfds_max = 2 + a->cfg.max_commands + 1;
    struct pollfd *fds = calloc(nfds_max, sizeof(*fds));
    agent_proc_t **owners = calloc(nfds_max, sizeof(*owners));
    if (fds == NULL || owners == NULL) {
        free(fds);
        free(owners);
        log_error("agent: out of memory");
        return -ENOMEM;
    }

    agent_health_prime(&a->health);
    int64_t now = util_mono_us();
    a->next_sample_us = now + (int64_t)a->cfg.telemetry_interval_s * 1000000;
    /* Even the first connection waits a random part of backoff_base_ms: a
     * fleet powered up at once does not connect at once. */
    a->reconnect_at_us =
        now + (int64_t)(((uint64_t)random32() * (a->cfg.backoff_base_ms + 1)) >> 32) * 1000;
    a->head_sync_us = now + HEAD_SYNC_US;
    log_info("agent: started for device %s, server %s%s, data in %s", a->cfg.device_id,
             a->cfg.server,
             a->use_cert                      ? " (mutual TLS)"
             : agent_config_mqtt_tls(&a->cfg) ? " (TLS)"
                                              : "",
             a->cfg.data_dir);

    while (!g_stop) {
        now = util_mono_us();
        if (a->state == CONN_IDLE && now >= a->reconnect_at_us)
            start_connect(a);
        if (a->state == CONN_CONNECTING && !a->conn_lost &&
            now - a->conn_started_us >= (int64_t)a->cfg.connect_timeout_s * 1000000) {
            log_warn("agent: no CONNACK from %s within %u s", a->cfg.server,
                     a->cfg.connect_timeout_s);
            a->conn_lost = true;
        }
        if (a->conn_lost)
            teardown(a);
        if (now >= a->next_sample_us) {
            take_sample(a);
            a->next_sample_us += (int64_t)a->cfg.telemetry_interval_s * 1000000;
            if (a->next_sample_us <= now) /* suspended or very late: no burst */
                a->next_sample_us = now + (int64_t)a->cfg.telemetry_interval_s * 1000000;
        }
        children_poll(a, now);
        if (now >= a->head_sync_us) {
            int rc = agent_queue_sync(a->queue);
            if (rc < 0)
                log_warn("agent: queue head: %s", strerror(-rc));
            a->head_sync_us = now + HEAD_SYNC_US;
        }
        if (a->conn_lost)
            teardown(a);
        if (a->use_cert && a->state == CONN_UP) {
            if (a->reconnect_now) {
                reconnect_at_once(a);
                continue;
            }
            if (a->renew_pending && now >= a->renew_deadline_us) {
                log_warn("agent: no answer to the certificate renewal within %lld s; trying "
                         "again in an hour",
                         RENEW_ANSWER_US / 1000000);
                a->renew_pending = false;
            }
            if (now >= a->renew_check_us)
                renew_check(a, now);
        }

        /* What to wait for, and until when. */
        nfds_t n = 0;
        int64_t wake = min64(a->next_sample_us, now + MISC_US);
        wake = min64(wake, a->head_sync_us);
        if (a->use_cert && a->state == CONN_UP) {
            wake = min64(wake, a->renew_check_us);
            if (a->renew_pending)
                wake = min64(wake, a->renew_deadline_us);
        }
        if (a->state == CONN_IDLE)
            wake = min64(wake, a->reconnect_at_us);
        if (a->state == CONN_CONNECTING)
            wake = min64(wake, a->conn_started_us + (int64_t)a->cfg.connect_timeout_s * 1000000);
        int sock = a->mosq != NULL ? mosquitto_socket(a->mosq) : -1;
        if (sock >= 0) {
            fds[n].fd = sock;
            fds[n].events = (short)(POLLIN | (mosquitto_want_write(a->mosq) ? POLLOUT : 0));
            fds[n].revents = 0;
            owners[n] = NULL;
            n++;
        }
        for (uint32_t i = 0; i < a->cfg.max_commands + 1 + 1; i++) {
            agent_proc_t *p = i < a->cfg.max_commands + 1
                                  ? (a->jobs[i].used ? &a->jobs[i].proc : NULL)
                                  : (a->hook_running ? &a->hook : NULL);
            if (p == NULL)
                continue;
            wake = min64(wake, p->deadline_us);
            if (p->out_fd >= 0) {
                fds[n].fd = p->out_fd;
                fds[n].events = POLLIN;
                fds[n].revents = 0;
                owners[n] = p;
                n++;
            }
        }
        int64_t wait_us = wake - now;
        if (wait_us < 0)
            wait_us = 0;
        struct timespec ts = {(time_t)(wait_us / 1000000), (long)(wait_us % 1000000) * 1000};
        int r = ppoll(fds, n, &ts, &wait_mask);
        if (r < 0 && errno != EINTR) {
            log_error("agent: ppoll: %s", strerror(errno));
            break;
        }
        for (nfds_t i = 0; r > 0 && i < n; i++) {
            if (fds[i].revents == 0)
                continue;
            if (owners[i] == NULL) {
                if (a->mosq != NULL && mosquitto_socket(a->mosq) == fds[i].fd)
                    mqtt_io(a, fds[i].revents);
            } else {
                agent_proc_read(owners[i]);
            }
        }
        if (a->mosq != NULL && !a->conn_lost) {
            int rc = mosquitto_loop_misc(a->mosq); /* keepalive */
            if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) {
                log_warn("agent: connection lost (%s)", mosquitto_strerror(rc));
                a->conn_lost = true;
            }
        }
    }

    log_info("agent: stopping");
    shutdown_conn(a);
    int rc = agent_queue_sync(a->queue);
    if (rc < 0)
        log_warn("agent: queue head: %s", strerror(-rc));
    free(fds);
    free(owners);
    return 0;
}

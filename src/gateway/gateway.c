/*
 * Gateway hooks. Each authenticated MQTT client gets a small gw_client
 * record (device id or application) that lives from CONNECT to the
 * disconnected hook; it names the device by id rather than pointing into
 * the registry, so a device deleted while connected leaves nothing
 * dangling. A telemetry PUBLISH at QoS 1 or 2 hands its ticket to the
 * store job; the job's completion completes the ticket, so the PUBACK
 * leaves only once the points are committed.
 */
#include "gateway/gateway.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/strmap.h"
#include "common/util.h"
#include "mqtt/codec.h"
#include "pki/pki.h"
#include "security/audit.h"
#include "security/tls.h"
#include "mqtt/topic.h"
#include "security/ratelimit.h"
#include "security/tokens.h"
#include "telemetry/telemetry.h"

struct gateway {
    const config_t *cfg;
    store_t *store;
    registry_t *registry;
    twin_t *twin;
    commands_t *cmds;
    pki_t *pki;
    audit_t *audit; /* NULL: nothing audited */
    strmap_t live;  /* device id -> its connected gw_client */
    mqtt_broker_t *broker;
    struct event *flush_timer;
    uint64_t telemetry_msgs;
    uint64_t telemetry_points;
    uint64_t telemetry_rejected;
    uint64_t telemetry_store_errors;
    uint64_t telemetry_duplicates;
    uint64_t twin_rejected;
    uint64_t results_rejected;
    uint64_t auth_failures;
    ratelimit_t *auth_limit; /* failed authentications per source and client id */
};

typedef struct gw_client {
    bool device;
    char id[DROVER_ID_MAX + 1];
    char serial[80]; /* the client certificate it authenticated with, or "" */
} gw_client_t;

/* A device that presented a client certificate: the certificate is its
 * credential. It must verify against the fleet CA (the handshake checked
 * chain and validity), not be revoked, name a registered, non-revoked
 * device in its CN, and the client id (and username, if any) must be
 * that id. Returns 0 and fills grant, a CONNACK reason, or -1 when no
 * certificate was presented (password authentication follows). */
static int cert_auth(gateway_t *gw, const mqtt_auth_t *a, mqtt_grant_t *grant)
{
    bool verified = false;
    char cn[DROVER_ID_MAX + 2] = "", serial[80] = "";
    if (a->tls == NULL ||
        tls_peer_identity(a->tls, &verified, cn, sizeof(cn), serial, sizeof(serial)) < 0)
        return -1;
    if (!verified || gw->pki == NULL) {
        log_info("mqtt %s: refused: client certificate did not verify", a->peer);
        return MQTT_RC_BAD_USER_OR_PASSWORD;
    }
    if (pki_serial_revoked(gw->pki, serial)) {
        log_info("mqtt %s: refused '%s': certificate %s is revoked", a->peer, cn, serial);
        return MQTT_RC_NOT_AUTHORIZED;
    }
    registry_device_t *d = registry_find(gw->registry, cn);
    if (d == NULL || d->revoked) {
        log_info("mqtt %s: refused certificate for '%s': %s", a->peer, cn,
                 d == NULL ? "unknown device" : "device revoked");
        return MQTT_RC_NOT_AUTHORIZED;
    }
    size_t n = strlen(cn);
    if (n > DROVER_ID_MAX)
        return MQTT_RC_NOT_AUTHORIZED;
    if (a->client_id_len != n || memcmp(a->client_id, cn, n) != 0 ||
        (a->has_username && (a->username_len != n || memcmp(a->username, cn, n) != 0))) {
        log_info("mqtt %s: refused: client id must be the certificate's CN '%s'", a->peer, cn);
        return MQTT_RC_CLIENT_ID_INVALID;
    }
    gw_client_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return MQTT_RC_SERVER_UNAVAILABLE;
    cl->device = true;
    memcpy(cl->id, cn, n + 1); /* n <= DROVER_ID_MAX: a registered id */
    snprintf(cl->serial, sizeof(cl->serial), "%s", serial);
    grant->user = cl;
    snprintf(grant->acl_prefix, sizeof(grant->acl_prefix), "devices/%s/", cn);
    return 0;
}

static uint8_t check_credentials(gateway_t *gw, const mqtt_auth_t *a, mqtt_grant_t *grant)
{
    int crc = cert_auth(gw, a, grant);
    if (crc >= 0) {
        if (crc > 0)
            gw->auth_failures++;
        return (uint8_t)crc;
    }
    const char *pw = (const char *)a->password;
    size_t pwl = a->password_len;

    char cid[DROVER_ID_MAX + 1] = "";
    bool is_device_id = false;
    if (a->client_id_len <= DROVER_ID_MAX) {
        memcpy(cid, a->client_id, a->client_id_len);
        cid[a->client_id_len] = '\0';
        is_device_id = registry_find(gw->registry, cid) != NULL;
    }
    bool token = pwl == TOKENS_LEN && memcmp(pw, TOKENS_PREFIX, strlen(TOKENS_PREFIX)) == 0;

    /* Anonymous applications, only when configured: anything outside
     * devices/, never a device's client id. */
    if (gw->cfg->allow_anonymous && !token && !is_device_id) {
        gw_client_t *cl = calloc(1, sizeof(*cl));
        if (cl == NULL)
            return MQTT_RC_SERVER_UNAVAILABLE;
        grant->user = cl;
        snprintf(grant->deny_prefix, sizeof(grant->deny_prefix), "devices/");
        return 0;
    }

    if (!a->has_password || pwl == 0) {
        gw->auth_failures++;
        log_info("mqtt %s: refused '%.*s': no password", a->peer, (int)a->client_id_len,
                 a->client_id);
        return MQTT_RC_BAD_USER_OR_PASSWORD;
    }

    /* An application: any username, an API token as the password. */
    if (token) {
        char tok[TOKENS_LEN + 1];
        memcpy(tok, pw, pwl);
        tok[pwl] = '\0';
        role_t role;
        store_token_t info;
        if (tokens_verify(gw->store, tok, &role, &info) < 0 || role < ROLE_OPERATOR) {
            gw->auth_failures++;
            log_info("mqtt %s: refused application: bad or insufficient token", a->peer);
            return MQTT_RC_BAD_USER_OR_PASSWORD;
        }
        /* An application must not take over a device's session. */
        if (is_device_id) {
            log_info("mqtt %s: refused application using device id '%s'", a->peer, cid);
            return MQTT_RC_CLIENT_ID_INVALID;
        }
        gw_client_t *cl = calloc(1, sizeof(*cl));
        if (cl == NULL)
            return MQTT_RC_SERVER_UNAVAILABLE;
        grant->user = cl;
        grant->acl_prefix[0] = '\0';
        log_info("mqtt %s: application '%.*s' connected with token '%s'", a->peer,
                 (int)a->client_id_len, a->client_id, info.name);
        return 0;
    }

    /* A device: client id = username = device id. */
    if (!util_id_valid(a->client_id, a->client_id_len)) {
        gw->auth_failures++;
        return MQTT_RC_CLIENT_ID_INVALID;
    }
    if (!a->has_username || a->username_len != a->client_id_len ||
        memcmp(a->username, a->client_id, a->client_id_len) != 0) {
        gw->auth_failures++;
        log_info("mqtt %s: refused '%.*s': username must equal the client id", a->peer,
                 (int)a->client_id_len, a->client_id);
        return MQTT_RC_CLIENT_ID_INVALID;
    }
    char id[DROVER_ID_MAX + 1];
    memcpy(id, a->client_id, a->client_id_len);
    id[a->client_id_len] = '\0';
    int rc = registry_authenticate(gw->registry, id, pw, pwl);
    if (rc < 0) {
        gw->auth_failures++;
        registry_device_t *d = registry_find(gw->registry, id);
        /* A revoked device is refused whatever it presents; saying so
         * reveals nothing its owner does not know. */
        if (d != NULL && d->revoked) {
            log_info("mqtt %s: refused device '%s': credentials revoked", a->peer, id);
            return MQTT_RC_NOT_AUTHORIZED;
        }
        log_info("mqtt %s: refused device '%s': %s", a->peer, id,
                 rc == -ENOENT ? "unknown device" : "wrong secret");
        return MQTT_RC_BAD_USER_OR_PASSWORD;
    }
    gw_client_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return MQTT_RC_SERVER_UNAVAILABLE;
    cl->device = true;
    memcpy(cl->id, id, a->client_id_len + 1);
    grant->user = cl;
    snprintf(grant->acl_prefix, sizeof(grant->acl_prefix), "devices/%s/", id);
    return 0;
}

/* Failed authentications are limited per source address and per client
 * id (security/ratelimit.h; auth_fail_limit per auth_fail_window_s): a
 * blocked source or id is refused with 0x8A banned (3.1.1: 5 not
 * authorized) before any credential is looked at, and every refusal
 * counts against both. Loopback sources count per id only, unless
 * auth_fail_loopback (behind a local proxy every client is loopback). */
/* A refused MQTT authentication goes to the audit log (successful device
 * connects do not: presence records them, and a reconnect storm would
 * flood the log). Refusals are bounded by the failure rate limit. */
static void audit_refusal(gateway_t *gw, const mqtt_auth_t *a, uint8_t reason)
{
    if (gw->audit == NULL)
        return;
    char id[DROVER_ID_MAX + 1] = "";
    if (util_id_valid(a->client_id, a->client_id_len))
        snprintf(id, sizeof(id), "%.*s", (int)a->client_id_len, a->client_id);
    char outcome[32];
    snprintf(outcome, sizeof(outcome), "refused 0x%02x", reason);
    char actor[DROVER_ID_MAX + 16];
    snprintf(actor, sizeof(actor), "%s%s", id[0] ? "device:" : "anonymous", id);
    audit_log(gw->audit, actor, "mqtt.connect", id, outcome, a->peer, NULL);
}

void gateway_set_audit(gateway_t *gw, audit_t *audit)
{
    gw->audit = audit;
}

static uint8_t authenticate(void *ctx, const mqtt_auth_t *a, mqtt_grant_t *grant)
{
    gateway_t *gw = ctx;
    char src[RATELIMIT_KEY_MAX], idk[RATELIMIT_KEY_MAX] = "";
    int64_t now = util_mono_us() / 1000;
    int lb = ratelimit_source_key(a->peer, true, src, sizeof(src));
    ratelimit_t *by_src =
        lb == 0 || (lb == 1 && gw->cfg->auth_fail_loopback) ? gw->auth_limit : NULL;
    if (util_id_valid(a->client_id, a->client_id_len))
        snprintf(idk, sizeof(idk), "id:%.*s", (int)a->client_id_len, a->client_id);
    ratelimit_t *by_id = idk[0] ? gw->auth_limit : NULL;
    if (ratelimit_check(by_src, src, now) > 0 || ratelimit_check(by_id, idk, now) > 0) {
        gw->auth_failures++;
        log_info("mqtt %s: refused '%s': too many failed authentications", a->peer,
                 idk[0] ? idk + 3 : "?");
        audit_refusal(gw, a, MQTT_RC_BANNED);
        return MQTT_RC_BANNED;
    }
    uint8_t rc = check_credentials(gw, a, grant);
    if (rc != 0 && rc != MQTT_RC_SERVER_UNAVAILABLE) {
        ratelimit_fail(by_src, src, now);
        ratelimit_fail(by_id, idk, now);
        audit_refusal(gw, a, rc);
    }
    return rc;
}

static void connected(void *ctx, void *user)
{
    gateway_t *gw = ctx;
    gw_client_t *cl = user;
    if (!cl->device)
        return;
    strmap_put(&gw->live, cl->id, strlen(cl->id), cl);
    registry_device_t *d = registry_find(gw->registry, cl->id);
    if (d != NULL)
        registry_set_online(gw->registry, d, util_now_ms());
}

static void disconnected(void *ctx, void *user, bool clean)
{
    gateway_t *gw = ctx;
    gw_client_t *cl = user;
    if (cl->device && strmap_get(&gw->live, cl->id, strlen(cl->id)) == cl)
        strmap_del(&gw->live, cl->id, strlen(cl->id));
    if (cl->device) {
        registry_device_t *d = registry_find(gw->registry, cl->id);
        if (d != NULL && d->online) {
            registry_set_offline(gw->registry, d, util_now_ms());
            log_debug("device '%s' offline (%s)", cl->id, clean ? "disconnected" : "lost");
        }
    }
    free(cl);
}

static void telemetry_stored(void *arg, int rc, int64_t value)
{
    (void)value;
    mqtt_ticket_t *t = arg;
    if (rc < 0)
        log_error("telemetry: store failed: %s", strerror(-rc));
    mqtt_ticket_complete(t, rc < 0 ? MQTT_RC_UNSPECIFIED : 0, NULL);
}

static void telemetry_stored_qos0(void *arg, int rc, int64_t value)
{
    (void)value;
    gateway_t *gw = arg;
    if (rc < 0) {
        gw->telemetry_store_errors++;
        log_error("telemetry: store failed: %s", strerror(-rc));
    }
}

/* One ticket waiting on two store jobs. */
struct two {
    mqtt_ticket_t *ticket;
    int left;
    int rc;
};

static void two_done(void *arg, int rc, int64_t value)
{
    (void)value;
    struct two *t2 = arg;
    if (rc < 0 && t2->rc == 0)
        t2->rc = rc;
    if (--t2->left > 0)
        return;
    telemetry_stored(t2->ticket, t2->rc, 0);
    free(t2);
}

static int on_telemetry(gateway_t *gw, registry_device_t *d, const uint8_t *payload, size_t len,
                        uint8_t qos, mqtt_ticket_t *ticket, const char **why, int64_t now)
{
    telemetry_batch_t batch;
    char err[160];
    int rc = telemetry_parse((const char *)payload, len, d->key, now, gw->cfg->max_telemetry_points,
                             &batch, err, sizeof(err));
    if (rc < 0) {
        gw->telemetry_rejected++;
        log_warn("telemetry from '%s' rejected: %s", d->id, err);
        *why = "telemetry payload is not a valid JSON object or array of objects";
        return MQTT_RC_PAYLOAD_FORMAT_INVALID;
    }
    /* A replay of what was stored already (seq not above the last one)
     * is acknowledged and not stored again. */
    int64_t max_seq;
    size_t dup = telemetry_batch_dedupe(&batch, d->last_seq, &max_seq);
    gw->telemetry_duplicates += dup;
    gw->telemetry_msgs++;
    gw->telemetry_points += batch.n;
    if (batch.n == 0) {
        telemetry_batch_fini(&batch);
        if (qos == 0)
            return MQTT_HOOK_ROUTE;
        /* All of it is a replay, possibly of a message whose write is still
         * queued: a no-op store job completes after every earlier one, so
         * acknowledging on its completion never runs ahead of the data. */
        store_device_set_last_seq(gw->store, d->key, d->last_seq, telemetry_stored, ticket);
        return MQTT_HOOK_PENDING;
    }
    bool seq_moved = max_seq > d->last_seq;
    if (seq_moved)
        d->last_seq = max_seq;
    if (qos == 0) {
        telemetry_ingest(gw->store, &batch, telemetry_stored_qos0, gw);
        if (seq_moved)
            store_device_set_last_seq(gw->store, d->key, max_seq, NULL, NULL);
    } else if (!seq_moved) {
        telemetry_ingest(gw->store, &batch, telemetry_stored, ticket);
    } else {
        /* Points and last_seq are two store jobs: the ack waits for both
         * (they complete in order) and fails if either failed. */
        struct two *t2 = malloc(sizeof(*t2));
        if (t2 == NULL) {
            telemetry_batch_fini(&batch);
            return MQTT_RC_UNSPECIFIED;
        }
        *t2 = (struct two){ticket, 2, 0};
        telemetry_ingest(gw->store, &batch, two_done, t2);
        store_device_set_last_seq(gw->store, d->key, max_seq, two_done, t2);
    }
    telemetry_batch_fini(&batch);
    return qos > 0 ? MQTT_HOOK_PENDING : MQTT_HOOK_ROUTE;
}

static void ticket_done(void *arg, int rc)
{
    mqtt_ticket_t *t = arg;
    mqtt_ticket_complete(t, rc < 0 ? MQTT_RC_UNSPECIFIED : 0, NULL);
}

static void twin_done(void *arg, int rc, int64_t version)
{
    (void)version;
    if (arg)
        ticket_done(arg, rc);
}

static int on_reported(gateway_t *gw, registry_device_t *d, const uint8_t *payload, size_t len,
                       mqtt_ticket_t *ticket, const char **why)
{
    char err[160];
    int rc = twin_reported_patch(gw->twin, d->id, (const char *)payload, len, twin_done, ticket,
                                 err, sizeof(err));
    if (rc < 0) {
        gw->twin_rejected++;
        log_warn("twin/reported from '%s' rejected: %s", d->id, err);
        *why = "reported state must be a JSON object (a merge patch) within the twin limits";
        return rc == -ENOMEM ? MQTT_RC_UNSPECIFIED : MQTT_RC_PAYLOAD_FORMAT_INVALID;
    }
    return ticket ? MQTT_HOOK_PENDING : MQTT_HOOK_ROUTE;
}

static void result_done(void *arg, int rc)
{
    if (arg)
        ticket_done(arg, rc);
}

static int on_result(gateway_t *gw, registry_device_t *d, const char *cid, size_t cid_len,
                     const uint8_t *payload, size_t len, mqtt_ticket_t *ticket, const char **why)
{
    char id[64], err[160];
    if (cid_len == 0 || cid_len >= sizeof(id))
        return MQTT_RC_NOT_AUTHORIZED;
    memcpy(id, cid, cid_len);
    id[cid_len] = '\0';
    int rc = commands_result(gw->cmds, d->id, id, (const char *)payload, len, result_done, ticket,
                             err, sizeof(err));
    if (rc == 0)
        return ticket ? MQTT_HOOK_PENDING : MQTT_HOOK_ROUTE;
    gw->results_rejected++;
    log_warn("command result from '%s' refused: %s", d->id, err);
    switch (rc) {
    case -ENOENT:
        *why = "no such command for this device";
        return MQTT_RC_NOT_AUTHORIZED;
    case -EALREADY:
        *why = "the command has already ended";
        return MQTT_RC_IMPL_SPECIFIC;
    case -ENOMEM:
        return MQTT_RC_UNSPECIFIED;
    default:
        *why = "a result is {\"status\": \"succeeded\"|\"failed\"|\"rejected\", \"output\": ...}";
        return MQTT_RC_PAYLOAD_FORMAT_INVALID;
    }
}

/* Certificate renewal over MQTT: {"csr": PEM} on certificates/renew; the
 * new certificate comes back on certificates/issued once stored. */
typedef struct renewop {
    gateway_t *gw;
    mqtt_ticket_t *ticket;
    char id[DROVER_ID_MAX + 1];
} renewop_t;

static void renewed(void *arg, int rc, const store_cert_t *cert, const char *err)
{
    renewop_t *op = arg;
    gateway_t *gw = op->gw;
    if (rc == 0) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "serial", cert->serial, "certificate",
                              cert->pem, "ca_certificate", pki_ca_pem(gw->pki), "not_after",
                              (json_int_t)cert->not_after);
        char *msg = o ? json_util_dump(o) : NULL;
        json_decref(o);
        char topic[160];
        snprintf(topic, sizeof(topic), "devices/%s/certificates/issued", op->id);
        if (msg != NULL)
            mqtt_broker_send(gw->broker, op->id, topic, (const uint8_t *)msg, strlen(msg), 1);
        free(msg);
        log_info("device '%s': certificate %s issued (renewal)", op->id, cert->serial);
    } else {
        log_warn("device '%s': certificate renewal refused: %s", op->id, err ? err : "");
    }
    if (op->ticket)
        mqtt_ticket_complete(op->ticket,
                             rc == 0                         ? 0
                             : rc == -ENOMEM || rc == -EIO   ? MQTT_RC_UNSPECIFIED
                             : rc == -EINVAL || rc == -EPERM ? MQTT_RC_PAYLOAD_FORMAT_INVALID
                                                             : MQTT_RC_NOT_AUTHORIZED,
                             NULL);
    free(op);
}

static int on_renew(gateway_t *gw, registry_device_t *d, const uint8_t *payload, size_t len,
                    mqtt_ticket_t *ticket, const char **why)
{
    if (gw->pki == NULL) {
        *why = "certificates are not available";
        return MQTT_RC_IMPL_SPECIFIC;
    }
    json_t *o = json_util_parse((const char *)payload, len, NULL, 0);
    const char *csr = json_string_value(json_object_get(o, "csr"));
    if (csr == NULL) {
        json_decref(o);
        *why = "a renewal is {\"csr\": \"<PEM>\"}";
        return MQTT_RC_PAYLOAD_FORMAT_INVALID;
    }
    renewop_t *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        json_decref(o);
        return MQTT_RC_UNSPECIFIED;
    }
    op->gw = gw;
    op->ticket = ticket;
    snprintf(op->id, sizeof(op->id), "%s", d->id);
    pki_issue(gw->pki, d->id, csr, strlen(csr), renewed, op);
    json_decref(o);
    return ticket ? MQTT_HOOK_PENDING : MQTT_HOOK_ROUTE;
}

/* Compares the topic's rest (after "devices/{id}/") with a literal. */
static bool rest_is(const char *rest, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(rest, lit, len) == 0;
}

static int publish(void *ctx, void *user, const char *topic, size_t topic_len,
                   const uint8_t *payload, size_t payload_len, uint8_t qos, mqtt_ticket_t *ticket,
                   const char **why)
{
    gateway_t *gw = ctx;
    gw_client_t *cl = user;
    if (!cl->device)
        return MQTT_HOOK_ROUTE;
    registry_device_t *d = registry_find(gw->registry, cl->id);
    if (d == NULL)
        return MQTT_RC_NOT_AUTHORIZED; /* deleted while connected */
    int64_t now = util_now_ms();
    registry_touch(d, now);

    /* The ACL guarantees the "devices/{id}/" prefix. */
    size_t plen = strlen("devices/") + strlen(cl->id) + 1;
    const char *rest = topic + plen;
    size_t rlen = topic_len - plen;
    if (rest_is(rest, rlen, "telemetry"))
        return on_telemetry(gw, d, payload, payload_len, qos, ticket, why, now);
    if (rest_is(rest, rlen, "twin/reported"))
        return on_reported(gw, d, payload, payload_len, ticket, why);
    if (rest_is(rest, rlen, "certificates/renew"))
        return on_renew(gw, d, payload, payload_len, ticket, why);
    const char *pre = "commands/", *suf = "/result";
    size_t pl = strlen(pre), sl = strlen(suf);
    if (rlen > pl + sl && memcmp(rest, pre, pl) == 0 && memcmp(rest + rlen - sl, suf, sl) == 0 &&
        memchr(rest + pl, '/', rlen - pl - sl) == NULL)
        return on_result(gw, d, rest + pl, rlen - pl - sl, payload, payload_len, ticket, why);
    return MQTT_HOOK_ROUTE;
}

/* A device subscribed: send its desired state, offer its commands. */
static void subscribed(void *ctx, void *user, const char *filter, size_t len)
{
    gateway_t *gw = ctx;
    gw_client_t *cl = user;
    if (!cl->device)
        return;
    char topic[160];
    int n = snprintf(topic, sizeof(topic), "devices/%s/twin/desired", cl->id);
    if (topic_matches(filter, len, topic, (size_t)n)) {
        char *msg;
        size_t mlen;
        if (twin_desired_message(gw->twin, cl->id, &msg, &mlen) == 0) {
            mqtt_broker_send(gw->broker, cl->id, topic, (const uint8_t *)msg, mlen, 1);
            free(msg);
        }
    }
    n = snprintf(topic, sizeof(topic), "devices/%s/commands/x", cl->id);
    if (topic_matches(filter, len, topic, (size_t)n))
        commands_device_ready(gw->cmds, cl->id);
}

static void desired_changed(void *ctx, const char *device_id, const char *payload, size_t len)
{
    gateway_t *gw = ctx;
    char topic[160];
    snprintf(topic, sizeof(topic), "devices/%s/twin/desired", device_id);
    mqtt_broker_send(gw->broker, device_id, topic, (const uint8_t *)payload, len, 1);
}

static bool send_command(void *ctx, const char *device_id, const char *topic, const char *payload,
                         size_t len)
{
    gateway_t *gw = ctx;
    return mqtt_broker_send(gw->broker, device_id, topic, (const uint8_t *)payload, len, 1);
}

static const mqtt_hooks_t hooks = {
    .authenticate = authenticate,
    .connected = connected,
    .disconnected = disconnected,
    .publish = publish,
    .subscribed = subscribed,
};

/* A device's credential was revoked (deleted or rotated): drop its live
 * connection now. A deleted device's session goes too. */
static void revoke(void *ctx, const char *id, registry_reason_t why)
{
    gateway_t *gw = ctx;
    bool deleted = why == REGISTRY_DELETED;
    if (deleted) {
        commands_forget_device(gw->cmds, id);
        twin_forget(gw->twin, id);
    }
    if (why == REGISTRY_REVOKED && gw->pki != NULL) {
        registry_device_t *d = registry_find(gw->registry, id);
        if (d != NULL)
            pki_device_revoked(gw->pki, d->key);
    }
    if (why != REGISTRY_ROTATED) {
        /* What the device left behind goes with it. */
        char prefix[DROVER_ID_MAX + 16];
        snprintf(prefix, sizeof(prefix), "devices/%s/", id);
        mqtt_broker_drop_retained(gw->broker, prefix);
    }
    static const char *const reasons[] = {"secret rotated", "device deleted",
                                          "credentials revoked"};
    if (mqtt_broker_kick(gw->broker, id, MQTT_RC_NOT_AUTHORIZED, why != REGISTRY_ROTATED) == 0)
        log_info("device '%s': connection dropped (%s)", id, reasons[why]);
}

static void cert_revoked(void *ctx, const char *device_id, const char *serial)
{
    gateway_t *gw = ctx;
    gw_client_t *cl = strmap_get(&gw->live, device_id, strlen(device_id));
    if (cl != NULL && strcmp(cl->serial, serial) == 0) {
        log_info("device '%s': connection dropped (certificate %s revoked)", device_id, serial);
        mqtt_broker_kick(gw->broker, device_id, MQTT_RC_NOT_AUTHORIZED, true);
    }
}

void gateway_set_pki(gateway_t *gw, pki_t *pki)
{
    gw->pki = pki;
    if (pki != NULL)
        pki_set_revoke_hook(pki, cert_revoked, gw);
}

int gateway_listen_tls(gateway_t *gw, const char *host, int port, struct ssl_ctx_st *ctx)
{
    return mqtt_broker_listen_tls(gw->broker, host, port, ctx);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gateway_t *gw = arg;
    registry_flush(gw->registry);
}

int gateway_new(struct event_base *base, const config_t *cfg, store_t *st, registry_t *reg,
                twin_t *twin, commands_t *cmds, const char *host, int port, gateway_t **out)
{
    gateway_t *gw = calloc(1, sizeof(*gw));
    if (gw == NULL)
        return -ENOMEM;
    gw->cfg = cfg;
    gw->store = st;
    gw->registry = reg;
    gw->twin = twin;
    gw->cmds = cmds;
    strmap_init(&gw->live);
    int rc = ratelimit_new(cfg->auth_fail_limit, cfg->auth_fail_window_s, RATELIMIT_ENTRIES_DEFAULT,
                           &gw->auth_limit);
    if (rc == 0)
        rc = mqtt_broker_new(base, cfg, host, port, &hooks, gw, &gw->broker);
    if (rc < 0)
        goto fail;
    gw->flush_timer = event_new(base, -1, EV_PERSIST, flush_cb, gw);
    if (gw->flush_timer == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    struct timeval tv = {cfg->presence_flush_ms / 1000, (cfg->presence_flush_ms % 1000) * 1000};
    event_add(gw->flush_timer, &tv);
    registry_set_revoke_hook(reg, revoke, gw);
    twin_set_notify(twin, desired_changed, gw);
    commands_set_sender(cmds, send_command, gw);
    *out = gw;
    return 0;
fail:
    mqtt_broker_free(gw->broker);
    ratelimit_free(gw->auth_limit);
    strmap_fini(&gw->live);
    free(gw);
    return rc;
}

void gateway_free(gateway_t *gw)
{
    if (gw == NULL)
        return;
    if (gw->flush_timer)
        event_free(gw->flush_timer);
    registry_set_revoke_hook(gw->registry, NULL, NULL);
    twin_set_notify(gw->twin, NULL, NULL);
    commands_set_sender(gw->cmds, NULL, NULL);
    if (gw->pki)
        pki_set_revoke_hook(gw->pki, NULL, NULL);
    mqtt_broker_free(gw->broker);
    registry_flush(gw->registry);
    ratelimit_free(gw->auth_limit);
    strmap_fini(&gw->live);
    free(gw);
}

void gateway_metrics(void *ctx, struct evbuffer *buf)
{
    gateway_t *gw = ctx;
    mqtt_broker_metrics(gw->broker, buf);
    const struct {
        const char *name, *help;
        uint64_t v;
    } rows[] = {
        {"drover_telemetry_messages_total", "Telemetry messages accepted", gw->telemetry_msgs},
        {"drover_telemetry_points_total", "Telemetry points accepted", gw->telemetry_points},
        {"drover_telemetry_rejected_total", "Telemetry messages rejected as malformed",
         gw->telemetry_rejected},
        {"drover_telemetry_store_errors_total", "QoS 0 telemetry lost to storage errors",
         gw->telemetry_store_errors},
        {"drover_telemetry_duplicates_total", "Telemetry points dropped as replays (seq)",
         gw->telemetry_duplicates},
        {"drover_twin_reported_rejected_total", "Reported-state patches refused",
         gw->twin_rejected},
        {"drover_command_results_rejected_total", "Command results refused", gw->results_rejected},
        {"drover_commands_open", "Commands queued or sent", commands_open_count(gw->cmds)},
        {"drover_device_auth_failures_total", "Refused MQTT authentications", gw->auth_failures},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
        evbuffer_add_printf(buf, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", rows[i].name,
                            rows[i].help, rows[i].name, rows[i].name,
                            (unsigned long long)rows[i].v);
}

/*
 * droverd: wiring only. Reads the configuration (defaults, then the file,
 * then flags), checks the data dir, opens the store, makes the first admin
 * token, loads the registry, starts the MQTT gateway and the REST API on
 * one event loop, and on SIGTERM/SIGINT shuts down in the reverse order:
 * listeners and connections first, then the store, which commits every
 * job still queued before it closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "api/api.h"
#include "commands/commands.h"
#include "commands/jobs.h"
#include "common/log.h"
#include "common/util.h"
#include "core/config.h"
#include "gateway/gateway.h"
#include "pki/pki.h"
#include "registry/registry.h"
#include "security/audit.h"
#include "security/ca.h"
#include "security/tls.h"
#include "security/tokens.h"
#include "store/store.h"
#include "twin/twin.h"

#define DROVERD_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "usage: droverd [options]\n"
               "\n"
               "  --data-dir DIR          where the database and admin.token live (./drover-data)\n"
               "  --mqtt-listen HOST:PORT MQTT listener (127.0.0.1:1883)\n"
               "  --http-listen HOST:PORT REST API and /metrics (127.0.0.1:8080)\n"
               "  --config FILE           config file of 'key = value' lines; flags override it\n"
               "  --log-level LEVEL       error, warn, info or debug (info)\n"
               "  --KEY VALUE             any other config key (see docs/config.md), e.g.\n"
               "                          --max-packet-size 65536\n"
               "  --help, --version\n");
}

/* Flags are "--key value" or "--key=value"; every config key is a flag. */
static int parse_args(int argc, char **argv, config_t *cfg)
{
    const char *config_file = NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 1; i < argc; i++) {
            const char *a = argv[i];
            if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
                usage(stdout);
                exit(0);
            }
            if (strcmp(a, "--version") == 0) {
                printf("droverd %s\n", DROVERD_VERSION);
                exit(0);
            }
            if (strncmp(a, "--", 2) != 0) {
                fprintf(stderr, "droverd: unexpected argument '%s'\n", a);
                return -EINVAL;
            }
            char key[64];
            const char *val;
            const char *eq = strchr(a, '=');
            if (eq != NULL) {
                size_t kl = (size_t)(eq - a - 2);
                if (kl >= sizeof(key)) {
                    fprintf(stderr, "droverd: unknown option '%s'\n", a);
                    return -EINVAL;
                }
                memcpy(key, a + 2, kl);
                key[kl] = '\0';
                val = eq + 1;
            } else {
                snprintf(key, sizeof(key), "%s", a + 2);
                if (i + 1 >= argc) {
                    fprintf(stderr, "droverd: option '%s' needs a value\n", a);
                    return -EINVAL;
                }
                val = argv[++i];
            }
            if (strcmp(key, "config") == 0) {
                config_file = val;
                continue;
            }
            if (pass == 0)
                continue;
            int rc = config_set(cfg, key, val);
            if (rc == -ENOENT) {
                fprintf(stderr, "droverd: unknown option '--%s' (see --help)\n", key);
                return rc;
            }
            if (rc < 0) {
                fprintf(stderr, "droverd: bad value '%s' for --%s\n", val, key);
                return rc;
            }
        }
        if (pass == 0 && config_file != NULL) {
            char err[512];
            if (config_load_file(cfg, config_file, err, sizeof(err)) < 0) {
                fprintf(stderr, "droverd: config: %s\n", err);
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* "HOST:PORT", or "HOST" alone meaning dflt_port. */
static int parse_listen(const char *s, int dflt_port, char *host, size_t hostlen, int *port)
{
    if (util_parse_hostport(s, host, hostlen, port) == 0)
        return 0;
    if (strchr(s, ':') != NULL || strlen(s) == 0 || strlen(s) >= hostlen)
        return -EINVAL;
    snprintf(host, hostlen, "%s", s);
    *port = dflt_port;
    return 0;
}

/* The fleet CA: an external one (ca_cert and ca_key both given; missing
 * or invalid files stop droverd) or <data_dir>/ca.crt and ca.key, created
 * on first start. */
static int open_ca(const config_t *cfg, ca_t **out, char *ca_path, size_t ca_path_len)
{
    char cert[600], key[600], err[256] = "";
    bool external = cfg->ca_cert[0] || cfg->ca_key[0];
    if (external && !(cfg->ca_cert[0] && cfg->ca_key[0])) {
        fprintf(stderr, "droverd: --ca-cert and --ca-key go together\n");
        return -EINVAL;
    }
    if (external) {
        snprintf(cert, sizeof(cert), "%s", cfg->ca_cert);
        snprintf(key, sizeof(key), "%s", cfg->ca_key);
    } else {
        snprintf(cert, sizeof(cert), "%s/ca.crt", cfg->data_dir);
        snprintf(key, sizeof(key), "%s/ca.key", cfg->data_dir);
    }
    int rc = ca_open(cert, key, !external, out, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "droverd: fleet CA (%s): %s\n", cert, err[0] ? err : strerror(-rc));
        return rc;
    }
    snprintf(ca_path, ca_path_len, "%s", cert);
    return 0;
}

/* The TLS server context: --tls-cert/--tls-key, or a certificate for
 * localhost and 127.0.0.1 issued from the fleet CA into the data dir. */
static int open_tls(const config_t *cfg, ca_t *ca, const char *ca_path, SSL_CTX **out)
{
    char cert[600], key[600], err[256] = "";
    if (cfg->tls_cert[0] || cfg->tls_key[0]) {
        if (!(cfg->tls_cert[0] && cfg->tls_key[0])) {
            fprintf(stderr, "droverd: --tls-cert and --tls-key go together\n");
            return -EINVAL;
        }
        snprintf(cert, sizeof(cert), "%s", cfg->tls_cert);
        snprintf(key, sizeof(key), "%s", cfg->tls_key);
    } else {
        snprintf(cert, sizeof(cert), "%s/server.crt", cfg->data_dir);
        snprintf(key, sizeof(key), "%s/server.key", cfg->data_dir);
        int64_t not_after = 0;
        FILE *f = fopen(cert, "r");
        char pem[16384];
        size_t n = f ? fread(pem, 1, sizeof(pem) - 1, f) : 0;
        if (f)
            fclose(f);
        pem[n] = '\0';
        /* (Re)issue when missing or within 30 days of expiry. */
        if (n == 0 || ca_cert_info(pem, n, NULL, 0, NULL, 0, NULL, &not_after) < 0 ||
            not_after < util_now_ms() + 30LL * 24 * 3600 * 1000) {
            static const char *const dns[] = {"localhost"};
            static const char *const ips[] = {"127.0.0.1", "::1"};
            int rc = ca_issue_server(ca, dns, 1, ips, 2, cfg->server_cert_lifetime_s, cert, key,
                                     err, sizeof(err));
            if (rc < 0) {
                fprintf(stderr, "droverd: cannot issue the server certificate: %s\n", err);
                return rc;
            }
        }
    }
    int rc = tls_server_ctx_new(cert, key, ca_path, out, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "droverd: TLS: %s\n", err[0] ? err : strerror(-rc));
    return rc;
}

/* Creates the data dir if needed (0700) and proves it writable. */
static int check_data_dir(const char *dir)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "droverd: cannot create data dir '%s': %s\n", dir, strerror(errno));
        return -1;
    }
    char probe[600];
    snprintf(probe, sizeof(probe), "%s/.write-test", dir);
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        fprintf(stderr, "droverd: data dir '%s' is not writable: %s\n", dir, strerror(errno));
        return -1;
    }
    close(fd);
    unlink(probe);
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    log_info("received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    config_t cfg;
    config_defaults(&cfg);
    if (parse_args(argc, argv, &cfg) < 0)
        return 64;
    log_level_t level;
    if (log_level_parse(cfg.log_level, &level) < 0) {
        fprintf(stderr, "droverd: bad log level '%s' (error, warn, info, debug)\n", cfg.log_level);
        return 64;
    }
    log_set_level(level);

    char mqtt_host[64], http_host[64];
    int mqtt_port, http_port;
    if (util_parse_hostport(cfg.mqtt_listen, mqtt_host, sizeof(mqtt_host), &mqtt_port) < 0) {
        fprintf(stderr, "droverd: bad --mqtt-listen '%s' (want HOST:PORT)\n", cfg.mqtt_listen);
        return 64;
    }
    if (util_parse_hostport(cfg.http_listen, http_host, sizeof(http_host), &http_port) < 0) {
        fprintf(stderr, "droverd: bad --http-listen '%s' (want HOST:PORT)\n", cfg.http_listen);
        return 64;
    }
    if (check_data_dir(cfg.data_dir) < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);

    int status = 1;
    struct event_base *base = NULL;
    store_t *st = NULL;
    audit_t *audit = NULL;
    registry_t *reg = NULL;
    twin_t *twin = NULL;
    ca_t *ca = NULL;
    pki_t *pki = NULL;
    SSL_CTX *tls = NULL;
    char ca_path[600] = "";
    commands_t *cmds = NULL;
    jobs_t *jobs = NULL;
    gateway_t *gw = NULL;
    api_t *api = NULL;
    users_worker_t *users = NULL;
    ratelimit_t *login_limit = NULL;
    struct event *sigterm = NULL, *sigint = NULL;

    base = event_base_new();
    if (base == NULL) {
        fprintf(stderr, "droverd: cannot create the event loop\n");
        goto out;
    }
    int rc = store_open(cfg.data_dir, base, &st);
    if (rc < 0) {
        fprintf(stderr, "droverd: cannot open the database in '%s': %s\n", cfg.data_dir,
                rc == -EPROTO ? "it was written by a newer droverd" : strerror(-rc));
        goto out;
    }
    char token[TOKENS_LEN + 1];
    bool created = false;
    rc = tokens_bootstrap(st, base, cfg.data_dir, token, sizeof(token), &created);
    if (rc < 0) {
        fprintf(stderr, "droverd: cannot create the admin token: %s\n", strerror(-rc));
        goto out;
    }
    rc = audit_new(st, &audit);
    if (rc < 0) {
        fprintf(stderr, "droverd: cannot read the audit log: %s\n", strerror(-rc));
        goto out;
    }
    if (created)
        audit_log(audit, "system", "token.bootstrap", "", "created", "", NULL);
    rc = registry_new(st, &reg);
    if (rc < 0) {
        fprintf(stderr, "droverd: cannot load devices: %s\n", strerror(-rc));
        goto out;
    }
    rc = twin_new(st, reg, &cfg, &twin);
    if (rc == 0)
        rc = commands_new(base, st, reg, &cfg, &cmds);
    if (rc == 0)
        rc = jobs_new(st, reg, cmds, twin, &cfg, &jobs);
    if (rc < 0) {
        fprintf(stderr, "droverd: cannot load twins and commands: %s\n", strerror(-rc));
        goto out;
    }
    if (open_ca(&cfg, &ca, ca_path, sizeof(ca_path)) < 0)
        goto out;
    rc = pki_new(st, reg, twin, ca, &cfg, &pki);
    if (rc < 0) {
        fprintf(stderr, "droverd: cannot load certificates: %s\n", strerror(-rc));
        goto out;
    }
    if ((cfg.mqtts_listen[0] || cfg.https_listen[0]) && open_tls(&cfg, ca, ca_path, &tls) < 0)
        goto out;
    rc = gateway_new(base, &cfg, st, reg, twin, cmds, mqtt_host, mqtt_port, &gw);
    if (rc < 0) {
        fprintf(stderr, "droverd: cannot listen for MQTT on %s: %s\n", cfg.mqtt_listen,
                strerror(-rc));
        goto out;
    }
    gateway_set_pki(gw, pki);
    gateway_set_audit(gw, audit);
    char mqtts_host[64] = "", https_host[64] = "";
    int mqtts_port = 0, https_port = 0;
    if (cfg.mqtts_listen[0]) {
        if (parse_listen(cfg.mqtts_listen, 8883, mqtts_host, sizeof(mqtts_host), &mqtts_port) < 0) {
            fprintf(stderr, "droverd: bad --mqtts-listen '%s' (want HOST[:PORT])\n",
                    cfg.mqtts_listen);
            goto out;
        }
        rc = gateway_listen_tls(gw, mqtts_host, mqtts_port, tls);
        if (rc < 0) {
            fprintf(stderr, "droverd: cannot listen for MQTT over TLS on %s:%d: %s\n", mqtts_host,
                    mqtts_port, strerror(-rc));
            goto out;
        }
    }
    rc = users_worker_new(base, &users);
    if (rc == 0)
        rc = ratelimit_new(cfg.auth_fail_limit, cfg.auth_fail_window_s, RATELIMIT_ENTRIES_DEFAULT,
                           &login_limit);
    if (rc < 0) {
        fprintf(stderr, "droverd: cannot start the password worker: %s\n", strerror(-rc));
        goto out;
    }
    api_deps_t deps = {
        .store = st,
        .registry = reg,
        .twin = twin,
        .commands = cmds,
        .jobs = jobs,
        .pki = pki,
        .config = &cfg,
        .audit = audit,
        .users = users,
        .login_limit = login_limit,
        .metrics = gateway_metrics,
        .metrics_ctx = gw,
    };
    rc = api_new(base, http_host, http_port, &deps, &api);
    if (rc < 0) {
        fprintf(stderr, "droverd: cannot listen for HTTP on %s: %s\n", cfg.http_listen,
                strerror(-rc));
        goto out;
    }
    if (cfg.https_listen[0]) {
        if (parse_listen(cfg.https_listen, 8443, https_host, sizeof(https_host), &https_port) < 0) {
            fprintf(stderr, "droverd: bad --https-listen '%s' (want HOST[:PORT])\n",
                    cfg.https_listen);
            goto out;
        }
        rc = api_listen_tls(api, https_host, https_port, tls);
        if (rc < 0) {
            fprintf(stderr, "droverd: cannot listen for HTTPS on %s:%d: %s\n", https_host,
                    https_port, strerror(-rc));
            goto out;
        }
    }
    sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    sigint = evsignal_new(base, SIGINT, on_signal, base);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) < 0 ||
        evsignal_add(sigint, NULL) < 0) {
        fprintf(stderr, "droverd: cannot install signal handlers\n");
        goto out;
    }

    if (created) {
        printf("admin token: %s\n", token);
        printf("  (shown once; also saved to %s/admin.token, mode 0600)\n", cfg.data_dir);
    } else {
        printf("the admin API token is in %s/admin.token\n", cfg.data_dir);
    }
    printf("mqtt: listening on %s:%d\n", mqtt_host, mqtt_port);
    if (mqtts_port)
        printf("mqtts: listening on %s:%d (TLS; client certificates from %s)\n", mqtts_host,
               mqtts_port, ca_path);
    printf("http: listening on http://%s:%d (API under /api/v1, metrics at /metrics)\n", http_host,
           http_port);
    if (https_port)
        printf("https: listening on https://%s:%d\n", https_host, https_port);
    printf("droverd ready (%zu devices)\n", registry_count(reg));
    fflush(stdout);
    log_info("droverd %s ready: data dir %s", DROVERD_VERSION, cfg.data_dir);

    event_base_dispatch(base);
    status = 0;

out:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    api_free(api);
    users_worker_free(users); /* after api_free: its callbacks find their requests gone */
    ratelimit_free(login_limit);
    gateway_free(gw);
    store_close(st); /* commits every queued write; runs their callbacks */
    /* after store_close: every audit append's callback has run */
    audit_free(audit);
    pki_free(pki);
    tls_ctx_free(tls);
    ca_free(ca);
    jobs_free(jobs);
    commands_free(cmds);
    twin_free(twin);
    registry_free(reg);
    if (base)
        event_base_free(base);
    if (status == 0)
        log_info("droverd stopped cleanly");
    return status;
}

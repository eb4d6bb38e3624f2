/*
 * drover-agent: the device-side daemon. Wiring only: parse the command
 * line, load the config, run the loop (agent.c). Logs go to stderr; under
 * systemd they land in the journal (drover-agent.service).
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "agent.h"
#include "agent_cert.h"
#include "agent_config.h"
#include "agent_health.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

#ifndef DROVER_VERSION
#define DROVER_VERSION "dev"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: drover-agent --config FILE [--log-level LEVEL]\n"
               "       drover-agent --once [--config FILE]\n"
               "\n"
               "The Drover device agent: health telemetry with store-and-forward, desired\n"
               "state, and commands, over MQTT to droverd.\n"
               "\n"
               "  -c, --config FILE      key = value config file (see docs/agent.md)\n"
               "      --once             print one health sample as JSON and exit\n"
               "      --log-level LEVEL  error, warn, info or debug (overrides the file)\n"
               "  -V, --version          print the version and exit\n"
               "  -h, --help             this help\n"
               "\n"
               "Runs in the foreground until SIGTERM or SIGINT; logs go to stderr.\n"
               "Exit codes: 0 stopped, 1 data directory unusable, 2 bad command line or\n"
               "configuration, 3 provisioning refused by the server.\n");
}

/* One sample, CPU measured over a quarter second. */
static int print_once(void)
{
    agent_health_t h;
    agent_health_init(&h);
    agent_health_prime(&h);
    struct timespec ts = {0, 250 * 1000 * 1000};
    nanosleep(&ts, NULL);
    json_t *obj = json_object();
    if (obj == NULL || agent_health_sample(&h, obj) < 0) {
        json_decref(obj);
        fprintf(stderr, "drover-agent: out of memory\n");
        return 1;
    }
    json_object_set_new(obj, "ts", json_integer(util_now_ms()));
    char *s = json_dumps(obj, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
    json_decref(obj);
    if (s == NULL)
        return 1;
    printf("%s\n", s);
    free(s);
    return 0;
}

/* Without a secret the device needs a claim token or a certificate from
 * an earlier provisioning; neither is a configuration error (exit 2),
 * reported before the data directory is even created. */
static int check_credentials(const agent_config_t *cfg, const char *config_path)
{
    if (!agent_config_uses_cert(cfg) || cfg->claim_token[0] != '\0' ||
        cfg->claim_token_file[0] != '\0')
        return 0;
    char crt[AGENT_PATH_MAX + 32];
    snprintf(crt, sizeof(crt), "%s/%s", cfg->data_dir, AGENT_CRT_FILE);
    struct stat st;
    if (stat(crt, &st) == 0)
        return 0;
    fprintf(stderr,
            "drover-agent: %s: secret is not set, nor claim_token, and there is no certificate "
            "(%s: %s): set the device's secret, or a claim_token to provision it\n",
            config_path, crt, strerror(errno));
    return -EINVAL;
}

int main(int argc, char **argv)
{
    enum { OPT_ONCE = 256, OPT_LOG_LEVEL };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"once", no_argument, NULL, OPT_ONCE},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *level_flag = NULL;
    bool once = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_ONCE:
            once = true;
            break;
        case OPT_LOG_LEVEL:
            level_flag = optarg;
            break;
        case 'V':
            printf("drover-agent %s\n", DROVER_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "drover-agent: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    agent_config_t cfg;
    agent_config_defaults(&cfg);
    char err[512];
    if (config_path != NULL && agent_config_load_file(&cfg, config_path, err, sizeof(err)) < 0) {
        fprintf(stderr, "drover-agent: %s\n", err);
        return 2;
    }
    if (once)
        return print_once();
    if (config_path == NULL) {
        fprintf(stderr, "drover-agent: --config FILE is required\n");
        usage(stderr);
        return 2;
    }
    if (level_flag != NULL && agent_config_set(&cfg, "log_level", level_flag) < 0) {
        fprintf(stderr, "drover-agent: bad --log-level '%s'\n", level_flag);
        return 2;
    }
    if (agent_config_check(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "drover-agent: %s: %s\n", config_path, err);
        return 2;
    }
    if (check_credentials(&cfg, config_path) < 0)
        return 2;
    log_level_t level;
    log_level_parse(cfg.log_level, &level);
    log_set_level(level);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "drover-agent: cannot initialise libcurl\n");
        return 1;
    }
    mosquitto_lib_init();
    agent_t *a = NULL;
    int rc = agent_new(&cfg, &a, err, sizeof(err));
    if (rc < 0) {
        log_error("agent: %s", err);
        mosquitto_lib_cleanup();
        curl_global_cleanup();
        return 1;
    }
    rc = agent_run(a);
    agent_free(a);
    mosquitto_lib_cleanup();
    curl_global_cleanup();
    /* Provisioning refused (or answered with a certificate that fails the
     * checks): restarting cannot help, and the unit file does not restart
     * on 3. No CA to provision with is a configuration error. */
    if (rc == -EACCES || rc == -EPROTO) {
        log_error("agent: exiting: provisioning failed for good");
        return 3;
    }
    if (rc == -ENOENT)
        return 2;
    log_info("agent: stopped");
    return rc == 0 ? 0 : 1;
}

#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

void config_defaults(config_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->data_dir, sizeof(c->data_dir), "./drover-data");
    snprintf(c->mqtt_listen, sizeof(c->mqtt_listen), "127.0.0.1:1883");
    snprintf(c->http_listen, sizeof(c->http_listen), "127.0.0.1:8080");
    snprintf(c->log_level, sizeof(c->log_level), "info");
    c->cert_lifetime_s = 90 * 24 * 3600;
    c->server_cert_lifetime_s = 365 * 24 * 3600;
    c->claim_max_uses = 1000000;
    c->max_packet_size = 256 * 1024;
    c->max_connections = 100000;
    c->max_inflight = 32;
    c->max_queued = 1000;
    c->max_topic_len = 256;
    c->max_topic_depth = 16;
    c->max_subscriptions = 64;
    c->max_keepalive = 0;
    c->connect_timeout = 10;
    c->session_expiry_max = 7 * 24 * 3600;
    c->receive_maximum = 64;
    c->topic_alias_max = 16;
    c->max_queued_bytes = 4 * 1024 * 1024;
    c->max_retained = 100000;
    c->publish_rate = 0;
    c->publish_burst = 1000;
    c->takeover_limit = 30;
    c->allow_anonymous = 0;
    c->max_body = 1024 * 1024;
    c->auth_fail_limit = 10;
    c->auth_fail_window_s = 60;
    c->auth_fail_loopback = 0;
    c->max_telemetry_points = 4096;
    c->presence_flush_ms = 5000;
    c->max_twin_bytes = 64 * 1024;
    c->max_twin_depth = 16;
    c->max_command_bytes = 64 * 1024;
    c->command_timeout_s = 300;
    c->max_command_timeout_s = 30 * 24 * 3600;
    c->max_open_commands = 100;
    c->max_bulk_devices = 100000;
}

enum kind { K_STR, K_U32 };

struct key {
    const char *name;
    enum kind kind;
    size_t off;
    size_t size;
    uint32_t min, max;
};

#define STR(f)                                                                                     \
    {                                                                                              \
#f, K_STR, offsetof(config_t, f), sizeof(((config_t *)0)->f), 0, 0                         \
    }
#define U32(f, lo, hi)                                                                             \
    {                                                                                              \
#f, K_U32, offsetof(config_t, f), 0, lo, hi                                                \
    }

static const struct key keys[] = {
    STR(data_dir),
    STR(mqtt_listen),
    STR(http_listen),
    STR(log_level),
    STR(mqtts_listen),
    STR(https_listen),
    STR(tls_cert),
    STR(tls_key),
    STR(ca_cert),
    STR(ca_key),
    U32(cert_lifetime_s, 3600, 20 * 365 * 24 * 3600),
    U32(server_cert_lifetime_s, 3600, 20 * 365 * 24 * 3600),
    U32(claim_max_uses, 1, 100000000),
    U32(max_packet_size, 64, 268435455),
    U32(max_connections, 1, 10000000),
    U32(max_inflight, 1, 65535),
    U32(max_queued, 0, 1000000),
    U32(max_topic_len, 8, 65535),
    U32(max_topic_depth, 1, 1024),
    U32(max_subscriptions, 1, 1000000),
    U32(max_keepalive, 0, 65535),
    U32(connect_timeout, 1, 3600),
    U32(session_expiry_max, 0, 4294967295u),
    U32(receive_maximum, 1, 65535),
    U32(topic_alias_max, 0, 65535),
    U32(max_queued_bytes, 1024, 4294967295u),
    U32(max_retained, 0, 100000000),
    U32(publish_rate, 0, 10000000),
    U32(publish_burst, 1, 10000000),
    U32(takeover_limit, 0, 1000000),
    U32(allow_anonymous, 0, 1),
    STR(deny_subscribe),
    U32(max_body, 1024, 1024 * 1024 * 1024),
    U32(auth_fail_limit, 0, 1000000),
    U32(auth_fail_window_s, 1, 86400),
    U32(auth_fail_loopback, 0, 1),
    U32(max_telemetry_points, 1, 1000000),
    U32(presence_flush_ms, 100, 3600000),
    U32(max_twin_bytes, 64, 16 * 1024 * 1024),
    U32(max_twin_depth, 1, 64),
    U32(max_command_bytes, 64, 16 * 1024 * 1024),
    U32(command_timeout_s, 1, 365 * 24 * 3600),
    U32(max_command_timeout_s, 1, 365 * 24 * 3600),
    U32(max_open_commands, 1, 1000000),
    U32(max_bulk_devices, 1, 10000000),
};

int config_set(config_t *c, const char *key, const char *value)
{
    char norm[64];
    size_t kl = strlen(key);
    if (kl >= sizeof(norm))
        return -ENOENT;
    for (size_t i = 0; i <= kl; i++)
        norm[i] = key[i] == '-' ? '_' : key[i];
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        const struct key *k = &keys[i];
        if (strcmp(k->name, norm) != 0)
            continue;
        if (k->kind == K_STR) {
            if (strlen(value) >= k->size)
                return -EINVAL;
            snprintf((char *)c + k->off, k->size, "%s", value);
            return 0;
        }
        int64_t v;
        if (k->max == 1 &&
            (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "on") == 0))
            v = 1;
        else if (k->max == 1 && (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
                                 strcmp(value, "off") == 0))
            v = 0;
        else if (util_parse_i64(value, &v) < 0 || v < k->min || v > k->max)
            return -EINVAL;
        *(uint32_t *)((char *)c + k->off) = (uint32_t)v;
        return 0;
    }
    return -ENOENT;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int config_load_file(config_t *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char line[1024];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
            rc = -EINVAL;
            break;
        }
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        size_t vl = strlen(v);
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v[vl - 1] = '\0';
            v++;
        }
        rc = config_set(c, k, v);
        if (rc == -ENOENT) {
            snprintf(err, errlen, "%s:%d: unknown key '%s'", path, lineno, k);
            break;
        }
        if (rc < 0) {
            snprintf(err, errlen, "%s:%d: bad value '%s' for '%s'", path, lineno, v, k);
            break;
        }
    }
    fclose(f);
    return rc;
}

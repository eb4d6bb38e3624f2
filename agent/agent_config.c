/*
 * Agent configuration: a static key table drives parsing, validation and
 * the JSON view, so a key added here is parsed, range-checked and shown by
 * get-config without further code. The secret and the claim token are the
 * keys the JSON view leaves out.
 */
#include "agent_config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_LINE_MAX 2048

void agent_config_defaults(agent_config_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->data_dir, sizeof(c->data_dir), "/var/lib/drover-agent");
    snprintf(c->log_level, sizeof(c->log_level), "info");
    c->protocol = 5;
    c->keepalive_s = 60;
    c->connect_timeout_s = 30;
    c->telemetry_interval_s = 60;
    c->queue_max_bytes = 16 * 1024 * 1024;
    c->max_inflight = 20;
    c->backoff_base_ms = 1000;
    c->backoff_max_ms = 60000;
    c->backoff_stable_s = 30;
    c->hook_timeout_s = 120;
    c->command_timeout_s = 60;
    c->command_output_max = 32 * 1024;
    c->max_commands = 4;
    c->mqtt_tls = AGENT_TLS_AUTO;
    c->renew_before = 0.3;
}

/* K_BOOL: true/false (yes/no, on/off, 1/0); K_TRI: those or "auto";
 * K_FRAC: a decimal in (0, 1]. */
enum kind { K_STR, K_U32, K_U64, K_BOOL, K_TRI, K_FRAC };

struct key {
    const char *name;
    enum kind kind;
    size_t off;
    size_t size;
    uint64_t min, max;
    bool secret;
};

#define STR(f)                                                                                     \
    {                                                                                              \
#f, K_STR, offsetof(agent_config_t, f), sizeof(((agent_config_t *)0)->f), 0, 0, false      \
    }
#define U32(f, lo, hi)                                                                             \
    {                                                                                              \
#f, K_U32, offsetof(agent_config_t, f), 0, lo, hi, false                                   \
    }
#define U64(f, lo, hi)                                                                             \
    {                                                                                              \
#f, K_U64, offsetof(agent_config_t, f), 0, lo, hi, false                                   \
    }
#define OTHER(f, kind)                                                                             \
    {                                                                                              \
#f, kind, offsetof(agent_config_t, f), 0, 0, 0, false                                      \
    }

static const struct key keys[] = {
    STR(server),
    STR(device_id),
    {"secret", K_STR, offsetof(agent_config_t, secret), sizeof(((agent_config_t *)0)->secret), 0, 0,
     true},
    STR(data_dir),
    STR(ca_file),
    STR(log_level),
    {"claim_token", K_STR, offsetof(agent_config_t, claim_token),
     sizeof(((agent_config_t *)0)->claim_token), 0, 0, true},
    STR(claim_token_file),
    STR(api_url),
    OTHER(insecure_bootstrap, K_BOOL),
    OTHER(mqtt_tls, K_TRI),
    OTHER(renew_before, K_FRAC),
    U32(protocol, 4, 5),
    U32(keepalive_s, 5, 65535),
    U32(connect_timeout_s, 1, 600),
    U32(telemetry_interval_s, 1, 86400),
    /* The in-memory index holds 24 bytes per queued record; 1 GiB of small
     * records stays well under 100 MB of index. */
    U64(queue_max_bytes, 4096, 1024ULL * 1024 * 1024),
    U32(max_inflight, 1, 1000),
    U32(backoff_base_ms, 10, 3600000),
    U32(backoff_max_ms, 10, 86400000),
    U32(backoff_stable_s, 1, 86400),
    STR(desired_hook),
    U32(hook_timeout_s, 1, 86400),
    STR(reboot_hook),
    STR(commands_dir),
    U32(command_timeout_s, 1, 86400),
    /* Output travels in one result message; JSON escaping can grow it, so
     * the cap stays well under the server's 256 KiB packet limit. */
    U32(command_output_max, 0, 128 * 1024),
    U32(max_commands, 1, 64),
};

static const struct key *find_key(const char *key)
{
    char norm[64];
    size_t kl = strlen(key);
    if (kl >= sizeof(norm))
        return NULL;
    for (size_t i = 0; i <= kl; i++)
        norm[i] = key[i] == '-' ? '_' : key[i];
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
        if (strcmp(keys[i].name, norm) == 0)
            return &keys[i];
    return NULL;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (*s == '\0' || !isdigit((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE || *end != '\0')
        return -EINVAL;
    *out = v;
    return 0;
}

/* 1, 0, or -1 for neither. */
static int parse_bool(const char *s)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* A plain decimal ("0.3", "1", ".25"): no sign, exponent, hex, inf or nan,
 * which strtod would all take. */
static int parse_frac(const char *s, double *out)
{
    size_t digits = 0, dots = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (isdigit((unsigned char)*p))
            digits++;
        else if (*p == '.')
            dots++;
        else
            return -EINVAL;
    }
    if (digits == 0 || dots > 1)
        return -EINVAL;
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0' || !isfinite(v) || v <= 0.0 || v > 1.0)
        return -EINVAL;
    *out = v;
    return 0;
}

int agent_config_set(agent_config_t *c, const char *key, const char *value)
{
    const struct key *k = find_key(key);
    if (k == NULL)
        return -ENOENT;
    char *base = (char *)c + k->off;
    if (k->kind == K_STR) {
        size_t n = strlen(value);
        if (n >= k->size)
            return -ENAMETOOLONG;
        memcpy(base, value, n + 1);
        return 0;
    }
    if (k->kind == K_BOOL || k->kind == K_TRI) {
        int b = parse_bool(value);
        if (b < 0 && !(k->kind == K_TRI && strcasecmp(value, "auto") == 0))
            return -EINVAL;
        if (k->kind == K_BOOL)
            *(bool *)(void *)base = b == 1;
        else
            *(int *)(void *)base = b < 0 ? AGENT_TLS_AUTO : b;
        return 0;
    }
    if (k->kind == K_FRAC)
        return parse_frac(value, (double *)(void *)base);
    uint64_t v;
    if (parse_u64(value, &v) < 0 || v < k->min || v > k->max)
        return -EINVAL;
    if (k->kind == K_U32)
        *(uint32_t *)(void *)base = (uint32_t)v;
    else
        *(uint64_t *)(void *)base = v;
    return 0;
}

static void trim(char **s, size_t *n)
{
    while (*n > 0 && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

int agent_config_parse(agent_config_t *c, const char *text, size_t len, char *err, size_t errlen)
{
    size_t pos = 0;
    int lineno = 0;
    char line[CONFIG_LINE_MAX];
    while (pos < len) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;
        if (n >= sizeof(line)) {
            snprintf(err, errlen, "line %d: longer than %d bytes", lineno, CONFIG_LINE_MAX - 1);
            return -EINVAL;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos += n + (nl != NULL ? 1 : 0);
        if (memchr(line, '\0', n) != NULL) {
            snprintf(err, errlen, "line %d: NUL byte", lineno);
            return -EINVAL;
        }
        char *s = line;
        trim(&s, &n);
        if (n == 0 || s[0] == '#')
            continue;
        s[n] = '\0';
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "line %d: expected key = value", lineno);
            return -EINVAL;
        }
        char *k = s;
        size_t kn = (size_t)(eq - s);
        trim(&k, &kn);
        k[kn] = '\0';
        char *v = eq + 1;
        size_t vn = strlen(v);
        trim(&v, &vn);
        v[vn] = '\0';
        int rc = agent_config_set(c, k, v);
        if (rc == -ENOENT) {
            snprintf(err, errlen, "line %d: unknown key '%s'", lineno, k);
            return rc;
        }
        if (rc == -ENAMETOOLONG) {
            snprintf(err, errlen, "line %d: value of '%s' is too long", lineno, k);
            return -EINVAL;
        }
        if (rc < 0) {
            const struct key *kk = find_key(k);
            if (kk->kind == K_BOOL)
                snprintf(err, errlen, "line %d: bad value for '%s' (want true or false)", lineno,
                         k);
            else if (kk->kind == K_TRI)
                snprintf(err, errlen, "line %d: bad value for '%s' (want true, false or auto)",
                         lineno, k);
            else if (kk->kind == K_FRAC)
                snprintf(err, errlen,
                         "line %d: bad value for '%s' (want a decimal above 0, at most 1)", lineno,
                         k);
            else
                snprintf(err, errlen,
                         "line %d: bad value for '%s' (want an integer %" PRIu64 "..%" PRIu64 ")",
                         lineno, k, kk->min, kk->max);
            return rc;
        }
    }
    return 0;
}

int agent_config_load_file(agent_config_t *c, const char *path, char *err, size_t errlen)
{
    char *buf = NULL;
    char sub[256];
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            snprintf(err, errlen, "%s: %s", path, strerror(-rc));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > CONFIG_FILE_MAX) {
            rc = -EFBIG;
            snprintf(err, errlen, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
            goto fail;
        }
    }
    rc = agent_config_parse(c, buf, len, sub, sizeof(sub));
    if (rc < 0) {
        snprintf(err, errlen, "%s:%s", path, sub + (strncmp(sub, "line ", 5) == 0 ? 5 : 0));
        goto fail;
    }
    rc = 0;
fail:
    free(buf);
    close(fd);
    return rc;
}

int agent_config_check(const agent_config_t *c, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (c->server[0] == '\0') {
        snprintf(err, errlen, "server is not set (host:port of droverd's MQTT listener)");
        return -EINVAL;
    }
    if (util_parse_hostport(c->server, host, sizeof(host), &port) < 0 || port == 0) {
        snprintf(err, errlen, "server '%s' is not host:port", c->server);
        return -EINVAL;
    }
    if (!util_id_valid(c->device_id, strlen(c->device_id))) {
        snprintf(err, errlen, "device_id '%s' is not 1-64 characters of [A-Za-z0-9._-]",
                 c->device_id);
        return -EINVAL;
    }
    bool claim = c->claim_token[0] != '\0' || c->claim_token_file[0] != '\0';
    if (c->secret[0] != '\0' && claim) {
        snprintf(err, errlen,
                 "secret and claim_token exclude each other: a device connects with its secret "
                 "or with a certificate");
        return -EINVAL;
    }
    if (c->claim_token[0] != '\0' && c->claim_token_file[0] != '\0') {
        snprintf(err, errlen, "set claim_token or claim_token_file, not both");
        return -EINVAL;
    }
    if (c->api_url[0] != '\0' && strncmp(c->api_url, "https://", 8) != 0) {
        snprintf(err, errlen,
                 "api_url '%s' must start with https:// (the claim token must not travel in "
                 "clear text)",
                 c->api_url);
        return -EINVAL;
    }
    if (claim && c->api_url[0] == '\0') {
        snprintf(err, errlen,
                 "api_url is not set (https://host:port of droverd's HTTPS API, for provisioning)");
        return -EINVAL;
    }
    if (c->secret[0] == '\0' && c->mqtt_tls == AGENT_TLS_OFF) {
        snprintf(err, errlen,
                 "mqtt_tls = false needs a secret: without one the device connects with its "
                 "certificate, over TLS");
        return -EINVAL;
    }
    if (c->secret[0] != '\0' && c->mqtt_tls == AGENT_TLS_ON && c->ca_file[0] == '\0') {
        snprintf(err, errlen,
                 "mqtt_tls = true needs ca_file (the CA that signed droverd's "
                 "certificate)");
        return -EINVAL;
    }
    if (c->data_dir[0] != '/') {
        snprintf(err, errlen, "data_dir '%s' must be an absolute path", c->data_dir);
        return -EINVAL;
    }
    const char *paths[] = {c->desired_hook, c->reboot_hook, c->commands_dir, c->ca_file,
                           c->claim_token_file};
    const char *names[] = {"desired_hook", "reboot_hook", "commands_dir", "ca_file",
                           "claim_token_file"};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        if (paths[i][0] != '\0' && paths[i][0] != '/') {
            snprintf(err, errlen, "%s '%s' must be an absolute path", names[i], paths[i]);
            return -EINVAL;
        }
    }
    if (c->backoff_max_ms < c->backoff_base_ms) {
        snprintf(err, errlen, "backoff_max_ms (%u) is below backoff_base_ms (%u)",
                 c->backoff_max_ms, c->backoff_base_ms);
        return -EINVAL;
    }
    if (strcmp(c->log_level, "error") != 0 && strcmp(c->log_level, "warn") != 0 &&
        strcmp(c->log_level, "info") != 0 && strcmp(c->log_level, "debug") != 0) {
        snprintf(err, errlen, "log_level '%s' is not error, warn, info or debug", c->log_level);
        return -EINVAL;
    }
    return 0;
}

bool agent_config_uses_cert(const agent_config_t *c)
{
    return c->secret[0] == '\0';
}

bool agent_config_mqtt_tls(const agent_config_t *c)
{
    if (c->mqtt_tls != AGENT_TLS_AUTO)
        return c->mqtt_tls == AGENT_TLS_ON;
    return agent_config_uses_cert(c) || c->ca_file[0] != '\0';
}

json_t *agent_config_to_json(const agent_config_t *c)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        const struct key *k = &keys[i];
        if (k->secret)
            continue;
        const char *base = (const char *)c + k->off;
        json_t *v;
        if (k->kind == K_STR)
            v = base[0] != '\0' ? json_string(base) : json_null();
        else if (k->kind == K_BOOL)
            v = json_boolean(*(const bool *)(const void *)base);
        else if (k->kind == K_TRI)
            v = *(const int *)(const void *)base == AGENT_TLS_AUTO
                    ? json_string("auto")
                    : json_boolean(*(const int *)(const void *)base == AGENT_TLS_ON);
        else if (k->kind == K_FRAC)
            v = json_real(*(const double *)(const void *)base);
        else if (k->kind == K_U32)
            v = json_integer(*(const uint32_t *)(const void *)base);
        else
            v = json_integer((json_int_t) * (const uint64_t *)(const void *)base);
        if (v == NULL && k->kind == K_STR)
            v = json_string("(not UTF-8)");
        if (v == NULL || json_object_set_new(o, k->name, v) < 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

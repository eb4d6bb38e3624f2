/*
 * fuzz_config: the text parsers an operator's input reaches: the config
 * file reader (src/core/config.c) and the helpers of src/common/util.c it
 * and the API use (integers, host:port, times, hex, device ids).
 *
 * The whole input is written to an in-memory file (memfd, opened again by
 * its /proc/self/fd path, so no temp file is left behind) and read with
 * config_load_file. Then every line is a NUL-terminated piece fed to
 * util_parse_i64, util_parse_hostport (with a roomy and a tiny host
 * buffer), util_parse_time, util_id_valid, util_hex_decode, and, split at
 * the first '=', to config_set. Oracles:
 *   - a loaded or set config keeps every string NUL-terminated in its
 *     field, and a failed load says where ("file:line: reason");
 *   - an integer that parses is what strtoll says;
 *   - host:port: the host is non-empty and NUL-terminated in the buffer,
 *     the port 0..65535, and a tiny buffer never gets more than it holds;
 *   - a parsed time, printed back as RFC 3339 UTC (years 0000-9999),
 *     parses to the same millisecond;
 *   - hex decode of a hex encode is the identity;
 *   - out-parameters are untouched on failure.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "core/config.h"
#include "fuzz_common.h"

static int memfd = -1;
static char memfd_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    memfd = memfd_create("drover-fuzz-config", 0);
    CHECK(memfd >= 0);
    snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
    return 0;
}

static void check_config(const config_t *c)
{
    CHECK(memchr(c->data_dir, '\0', sizeof(c->data_dir)) != NULL);
    CHECK(memchr(c->mqtt_listen, '\0', sizeof(c->mqtt_listen)) != NULL);
    CHECK(memchr(c->http_listen, '\0', sizeof(c->http_listen)) != NULL);
    CHECK(memchr(c->log_level, '\0', sizeof(c->log_level)) != NULL);
    /* Limits the broker divides by or allocates with stay in range. */
    CHECK(c->max_packet_size >= 64);
    CHECK(c->max_inflight >= 1 && c->max_inflight <= 65535);
    CHECK(c->max_topic_len >= 8 && c->max_topic_depth >= 1);
    CHECK(c->max_connections >= 1 && c->max_subscriptions >= 1);
    CHECK(c->max_telemetry_points >= 1);
}

static void load_file(const uint8_t *data, size_t size)
{
    CHECK(ftruncate(memfd, 0) == 0);
    size_t off = 0;
    while (off < size) {
        ssize_t n = pwrite(memfd, data + off, size - off, (off_t)off);
        CHECK(n > 0);
        off += (size_t)n;
    }
    config_t c;
    config_defaults(&c);
    check_config(&c);
    char err[512];
    memset(err, 'x', sizeof(err));
    int rc = config_load_file(&c, memfd_path, err, sizeof(err));
    CHECK(rc == 0 || rc == -EINVAL || rc == -ENOENT);
    check_config(&c);
    if (rc < 0) {
        CHECK(memchr(err, '\0', sizeof(err)) != NULL);
        /* "path:line: reason" */
        size_t pl = strlen(memfd_path);
        CHECK(strncmp(err, memfd_path, pl) == 0 && err[pl] == ':');
    }
}

/* Formats ms as RFC 3339 UTC with milliseconds; false outside 0000-9999. */
static bool format_time(int64_t ms, char *out, size_t len)
{
    int64_t secs = ms / 1000, frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        secs -= 1;
    }
    /* Stay well inside time_t and struct tm's int year. */
    if (secs < INT64_C(-62167219200) || secs > INT64_C(253402300799))
        return false;
    time_t t = (time_t)secs;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        return false;
    int year = tm.tm_year + 1900;
    if (year < 0 || year > 9999)
        return false;
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    return true;
}

static void piece(const char *s, size_t len)
{
    /* Integers. */
    int64_t v = 12345;
    int rc = util_parse_i64(s, &v);
    CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
    if (rc == 0) {
        char *end;
        errno = 0;
        long long w = strtoll(s, &end, 10);
        CHECK(errno == 0 && *end == '\0' && w == v);
    } else {
        CHECK(v == 12345);
    }

    /* host:port, roomy and tiny host buffers. */
    char host[256], tiny[4];
    int port = -7;
    memset(host, 'h', sizeof(host));
    rc = util_parse_hostport(s, host, sizeof(host), &port);
    CHECK(rc == 0 || rc == -EINVAL);
    if (rc == 0) {
        size_t hl = strnlen(host, sizeof(host));
        CHECK(hl > 0 && hl < sizeof(host));
        CHECK(port >= 0 && port <= 65535);
        CHECK(memmem(s, len, host, hl) != NULL);
    } else {
        CHECK(port == -7);
    }
    memset(tiny, 't', sizeof(tiny));
    port = -7;
    rc = util_parse_hostport(s, tiny, sizeof(tiny), &port);
    if (rc == 0)
        CHECK(strnlen(tiny, sizeof(tiny)) < sizeof(tiny));
    else
        CHECK(port == -7 && memcmp(tiny, "tttt", 4) == 0);

    /* Times: a parsed value prints back to text that parses the same. */
    int64_t ms = 99;
    rc = util_parse_time(s, &ms);
    CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
    if (rc == 0) {
        char buf[64];
        if (format_time(ms, buf, sizeof(buf))) {
            int64_t again = 0;
            CHECK(util_parse_time(buf, &again) == 0);
            CHECK(again == ms);
        }
    } else {
        CHECK(ms == 99);
    }

    /* Device ids: the documented alphabet and length. */
    bool idok = util_id_valid(s, len);
    bool want = len >= 1 && len <= DROVER_ID_MAX;
    for (size_t i = 0; want && i < len; i++) {
        char c = s[i];
        want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    }
    CHECK(idok == want);

    /* Hex: decode what is there, encode it back, decode again. */
    size_t nbytes = len / 2;
    if (nbytes > 0 && nbytes <= 512) {
        uint8_t bin[512], bin2[512];
        char hex[1025];
        if (util_hex_decode(s, nbytes, bin) == 0) {
            util_hex_encode(bin, nbytes, hex);
            CHECK(strlen(hex) == 2 * nbytes);
            CHECK(util_hex_decode(hex, nbytes, bin2) == 0);
            CHECK(memcmp(bin, bin2, nbytes) == 0);
        }
    }

    /* config_set on key=value. */
    const char *eq = memchr(s, '=', len);
    if (eq != NULL) {
        char key[128];
        size_t kl = (size_t)(eq - s);
        if (kl < sizeof(key)) {
            memcpy(key, s, kl);
            key[kl] = '\0';
            config_t c;
            config_defaults(&c);
            rc = config_set(&c, key, eq + 1);
            CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL);
            check_config(&c);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_file(data, size);

    /* Each line as a C string (an embedded NUL ends it early, as it
     * would for any caller holding a C string). */
    const uint8_t *p = data, *end = data + size;
    while (p <= end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *e = nl ? nl : end;
        size_t n = (size_t)(e - p);
        char *s = malloc(n + 1);
        CHECK(s != NULL);
        memcpy(s, p, n);
        s[n] = '\0';
        piece(s, strlen(s));
        free(s);
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return 0;
}

/*
 * Health sampling (see agent_health.h). Each parser reads one /proc file's
 * text and fails with -EINVAL on anything it does not recognise rather
 * than guessing; the sampler then simply leaves those metrics out.
 */
#include "agent_health.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "agent_fs.h"
#include "common/util.h"

#define PROC_FILE_MAX (1024 * 1024)

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* One unsigned decimal; advances *p past it. */
static int take_u64(const char **p, uint64_t *out)
{
    const char *s = skip_ws(*p);
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -EINVAL;
    *p = end;
    *out = v;
    return 0;
}

static int take_double(const char **p, double *out)
{
    const char *s = skip_ws(*p);
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    char *end;
    double v = strtod(s, &end);
    if (end == s)
        return -EINVAL;
    *p = end;
    *out = v;
    return 0;
}

int agent_health_parse_stat(const char *text, agent_cpu_times_t *out)
{
    const char *p = text;
    /* The aggregate line is "cpu" followed by blanks (per-CPU lines are
     * "cpu0" ...); it is the first line in practice, but look for it. */
    for (;;) {
        if (strncmp(p, "cpu", 3) == 0 && (p[3] == ' ' || p[3] == '\t'))
            break;
        p = strchr(p, '\n');
        if (p == NULL)
            return -EINVAL;
        p++;
    }
    p += 3;
    uint64_t v[8];
    /* user nice system idle iowait irq softirq steal; guest time is
     * already part of user and nice, so the fields after steal are not
     * added. Old kernels have fewer fields: at least four are required. */
    int n = 0;
    while (n < 8 && take_u64(&p, &v[n]) == 0)
        n++;
    if (n < 4)
        return -EINVAL;
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += v[i];
    out->total = total;
    out->idle = v[3] + (n > 4 ? v[4] : 0);
    return 0;
}

int agent_health_cpu_pct(const agent_cpu_times_t *prev, const agent_cpu_times_t *now, double *out)
{
    if (now->total <= prev->total || now->idle < prev->idle)
        return -EAGAIN;
    uint64_t dt = now->total - prev->total;
    uint64_t di = now->idle - prev->idle;
    if (di > dt)
        di = dt;
    *out = 100.0 * (double)(dt - di) / (double)dt;
    return 0;
}

/* Value of "Key:   123 kB" in meminfo, in bytes. */
static int meminfo_get(const char *text, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    const char *p = text;
    while (p != NULL && *p != '\0') {
        if (strncmp(p, key, kl) == 0 && p[kl] == ':') {
            const char *q = p + kl + 1;
            uint64_t v;
            if (take_u64(&q, &v) < 0)
                return -EINVAL;
            q = skip_ws(q);
            uint64_t mult = strncmp(q, "kB", 2) == 0 ? 1024 : 1;
            *out = v * mult;
            return 0;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -ENOENT;
}

int agent_health_parse_meminfo(const char *text, uint64_t *total, uint64_t *used)
{
    uint64_t t, avail;
    if (meminfo_get(text, "MemTotal", &t) < 0)
        return -EINVAL;
    if (meminfo_get(text, "MemAvailable", &avail) < 0) {
        uint64_t fr, bu = 0, ca = 0;
        if (meminfo_get(text, "MemFree", &fr) < 0)
            return -EINVAL;
        meminfo_get(text, "Buffers", &bu);
        meminfo_get(text, "Cached", &ca);
        avail = fr + bu + ca;
    }
    if (avail > t)
        avail = t;
    *total = t;
    *used = t - avail;
    return 0;
}

int agent_health_parse_loadavg(const char *text, double out[3])
{
    const char *p = text;
    double v[3];
    for (int i = 0; i < 3; i++)
        if (take_double(&p, &v[i]) < 0)
            return -EINVAL;
    memcpy(out, v, sizeof(v));
    return 0;
}

int agent_health_parse_uptime(const char *text, double *out)
{
    const char *p = text;
    return take_double(&p, out);
}

int agent_health_parse_netdev(const char *text, uint64_t *rx, uint64_t *tx)
{
    uint64_t r = 0, t = 0;
    int ifaces = 0;
    const char *line = text;
    while (line != NULL && *line != '\0') {
        const char *eol = strchr(line, '\n');
        const char *colon = strchr(line, ':');
        if (colon != NULL && (eol == NULL || colon < eol)) {
            const char *name = skip_ws(line);
            size_t nl = (size_t)(colon - name);
            /* Header lines ("Inter-|   Receive ...") have a '|' before
             * any colon. */
            if (memchr(name, '|', nl) == NULL && nl > 0) {
                const char *p = colon + 1;
                uint64_t f[16];
                int n = 0;
                while (n < 16 && take_u64(&p, &f[n]) == 0)
                    n++;
                if (n < 9)
                    return -EINVAL;
                if (!(nl == 2 && strncmp(name, "lo", 2) == 0)) {
                    r += f[0];
                    t += f[8];
                }
                ifaces++;
            }
        }
        line = eol != NULL ? eol + 1 : NULL;
    }
    if (ifaces == 0)
        return -EINVAL;
    *rx = r;
    *tx = t;
    return 0;
}

int agent_health_parse_temp(const char *text, double *out)
{
    const char *p = skip_ws(text);
    bool neg = *p == '-';
    if (neg)
        p++;
    uint64_t v;
    if (take_u64(&p, &v) < 0)
        return -EINVAL;
    p = skip_ws(p);
    if (*p != '\0' && *p != '\n')
        return -EINVAL;
    double c = (double)v / 1000.0;
    *out = neg ? -c : c;
    return 0;
}

bool agent_health_fs_skipped(const char *type)
{
    static const char *const skipped[] = {
        /* no disk of their own */
        "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs", "cgroup", "cgroup2", "pstore",
        "bpf", "securityfs", "debugfs", "tracefs", "configfs", "fusectl", "mqueue", "hugetlbfs",
        "autofs", "binfmt_misc", "rpc_pipefs", "nsfs", "efivarfs", "selinuxfs", "squashfs", "nfsd",
        "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal",
        /* on the network: statvfs can hang when the server is gone */
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.sshfs", "9p", "afs",
        "fuse.glusterfs", "lustre"};
    for (size_t i = 0; i < ARRAY_SIZE(skipped); i++)
        if (strcmp(type, skipped[i]) == 0)
            return true;
    return false;
}

/* Copies one whitespace-delimited field of a mounts line, decoding the
 * kernel's octal escapes. Returns the field length or -1 if too long. */
static int mount_field(const char **p, const char *eol, char *out, size_t outlen)
{
    const char *s = skip_ws(*p);
    size_t n = 0;
    while (s < eol && *s != ' ' && *s != '\t') {
        char c = *s;
        if (c == '\\' && eol - s >= 4 && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            c = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            s++;
        }
        if (n + 1 >= outlen) {
            while (s < eol && *s != ' ' && *s != '\t')
                s++;
            *p = s;
            return -1;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    *p = s;
    return (int)n;
}

int agent_health_parse_mounts(const char *text, agent_mount_t *out, size_t max, size_t *n)
{
    size_t cnt = 0;
    const char *line = text;
    while (line != NULL && *line != '\0') {
        const char *eol = strchr(line, '\n');
        if (eol == NULL)
            eol = line + strlen(line);
        const char *p = line;
        char dev[256], path[AGENT_MOUNT_PATH_MAX + 1], type[64];
        int dl = mount_field(&p, eol, dev, sizeof(dev));
        int pl = mount_field(&p, eol, path, sizeof(path));
        int tl = mount_field(&p, eol, type, sizeof(type));
        line = *eol != '\0' ? eol + 1 : NULL;
        (void)dl;
        if (pl <= 0 || tl <= 0 || path[0] != '/' || agent_health_fs_skipped(type))
            continue;
        if (memchr(path, '\n', (size_t)pl) != NULL)
            continue;
        size_t i;
        for (i = 0; i < cnt; i++)
            if (strcmp(out[i].path, path) == 0)
                break;
        if (i < cnt)
            continue; /* already listed: statvfs sees the top mount anyway */
        if (cnt == max)
            break;
        memcpy(out[cnt].path, path, (size_t)pl + 1);
        cnt++;
    }
    *n = cnt;
    return 0;
}

/* ---------------------------------------------------------------- sampler */

void agent_health_init(agent_health_t *h)
{
    memset(h, 0, sizeof(*h));
    h->proc = "/proc";
    h->sys = "/sys";
}

static char *read_under(const char *root, const char *rel)
{
    char path[512];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", root, rel) >= sizeof(path))
        return NULL;
    char *text;
    size_t len;
    if (agent_fs_read(path, PROC_FILE_MAX, &text, &len) < 0)
        return NULL;
    return text;
}

void agent_health_prime(agent_health_t *h)
{
    char *t = read_under(h->proc, "stat");
    if (t != NULL && agent_health_parse_stat(t, &h->prev) == 0)
        h->have_prev = true;
    free(t);
}

static double round2(double v)
{
    double s = v * 100.0;
    int64_t r = (int64_t)(s < 0 ? s - 0.5 : s + 0.5);
    return (double)r / 100.0;
}

static int set_real(json_t *obj, const char *name, double v)
{
    return json_object_set_new(obj, name, json_real(round2(v))) < 0 ? -ENOMEM : 0;
}

static int set_int(json_t *obj, const char *name, uint64_t v)
{
    if (v > INT64_MAX)
        v = INT64_MAX;
    return json_object_set_new(obj, name, json_integer((json_int_t)v)) < 0 ? -ENOMEM : 0;
}

static int sample_disks(agent_health_t *h, json_t *obj)
{
    char *t = read_under(h->proc, "mounts");
    if (t == NULL)
        return 0;
    agent_mount_t *m = malloc(sizeof(*m) * AGENT_MOUNTS_MAX);
    size_t n = 0;
    int rc = 0;
    if (m == NULL) {
        free(t);
        return -ENOMEM;
    }
    agent_health_parse_mounts(t, m, AGENT_MOUNTS_MAX, &n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct statvfs sv;
        if (statvfs(m[i].path, &sv) < 0 || sv.f_blocks == 0)
            continue;
        uint64_t fr = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
        char name[160];
        snprintf(name, sizeof(name), "disk_total_bytes:%s", m[i].path);
        rc = set_int(obj, name, (uint64_t)sv.f_blocks * fr);
        snprintf(name, sizeof(name), "disk_used_bytes:%s", m[i].path);
        if (rc == 0)
            rc = set_int(obj, name, (uint64_t)(sv.f_blocks - sv.f_bfree) * fr);
    }
    free(m);
    free(t);
    return rc;
}

static int sample_thermal(agent_health_t *h, json_t *obj)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/class/thermal", h->sys);
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    bool have = false;
    double max = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "thermal_zone", 12) != 0)
            continue;
        char rel[300];
        snprintf(rel, sizeof(rel), "%s/temp", de->d_name);
        char *t = read_under(dir, rel);
        double c;
        /* Sensors that are absent report errors or nonsense: keep sane
         * readings only. */
        if (t != NULL && agent_health_parse_temp(t, &c) == 0 && c > -100.0 && c < 250.0) {
            if (!have || c > max)
                max = c;
            have = true;
        }
        free(t);
    }
    closedir(d);
    return have ? set_real(obj, "temp_c", max) : 0;
}

int agent_health_sample(agent_health_t *h, json_t *obj)
{
    int rc = 0;
    char *t;

    if ((t = read_under(h->proc, "stat")) != NULL) {
        agent_cpu_times_t now;
        double pct;
        if (agent_health_parse_stat(t, &now) == 0) {
            if (h->have_prev && agent_health_cpu_pct(&h->prev, &now, &pct) == 0)
                rc = set_real(obj, "cpu_pct", pct);
            h->prev = now;
            h->have_prev = true;
        }
        free(t);
    }
    if (rc == 0 && (t = read_under(h->proc, "meminfo")) != NULL) {
        uint64_t total, used;
        if (agent_health_parse_meminfo(t, &total, &used) == 0) {
            rc = set_int(obj, "mem_used_bytes", used);
            if (rc == 0)
                rc = set_int(obj, "mem_total_bytes", total);
        }
        free(t);
    }
    if (rc == 0 && (t = read_under(h->proc, "loadavg")) != NULL) {
        double l[3];
        if (agent_health_parse_loadavg(t, l) == 0) {
            rc = set_real(obj, "load1", l[0]);
            if (rc == 0)
                rc = set_real(obj, "load5", l[1]);
            if (rc == 0)
                rc = set_real(obj, "load15", l[2]);
        }
        free(t);
    }
    if (rc == 0 && (t = read_under(h->proc, "uptime")) != NULL) {
        double up;
        if (agent_health_parse_uptime(t, &up) == 0)
            rc = set_real(obj, "uptime_s", up);
        free(t);
    }
    if (rc == 0 && (t = read_under(h->proc, "net/dev")) != NULL) {
        uint64_t rx, tx;
        if (agent_health_parse_netdev(t, &rx, &tx) == 0) {
            rc = set_int(obj, "net_rx_bytes", rx);
            if (rc == 0)
                rc = set_int(obj, "net_tx_bytes", tx);
        }
        free(t);
    }
    if (rc == 0)
        rc = sample_disks(h, obj);
    if (rc == 0)
        rc = sample_thermal(h, obj);
    return rc;
}

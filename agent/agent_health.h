/*
 * Health metrics of the machine the agent runs on, from /proc and /sys.
 * The parsers are pure functions over the text of one file, so the tests
 * feed them samples; agent_health_sample() reads the files and fills a
 * JSON object with flat metric names:
 *
 *   cpu_pct                         busy share since the previous sample
 *   mem_used_bytes mem_total_bytes  used = MemTotal - MemAvailable
 *   disk_used_bytes:<mount> disk_total_bytes:<mount>   per real filesystem
 *   load1 load5 load15 uptime_s
 *   net_rx_bytes net_tx_bytes       summed over interfaces other than lo
 *   temp_c                          the hottest thermal zone, when any
 *
 * Runs on the agent's loop thread. statvfs() on a hung network mount
 * would block it, so network filesystems are skipped like pseudo ones.
 */
#ifndef DROVER_AGENT_HEALTH_H
#define DROVER_AGENT_HEALTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct agent_cpu_times {
    uint64_t total; /* jiffies, all states */
    uint64_t idle;  /* idle + iowait */
} agent_cpu_times_t;

/* The aggregate "cpu " line of /proc/stat. */
int agent_health_parse_stat(const char *text, agent_cpu_times_t *out);

/* Busy percentage between two readings; -EAGAIN if no time passed. */
int agent_health_cpu_pct(const agent_cpu_times_t *prev, const agent_cpu_times_t *now, double *out);

/* /proc/meminfo: total and used bytes (MemTotal - MemAvailable, or the
 * older MemFree + Buffers + Cached estimate without MemAvailable). */
int agent_health_parse_meminfo(const char *text, uint64_t *total, uint64_t *used);

/* /proc/loadavg: the three averages. */
int agent_health_parse_loadavg(const char *text, double out[3]);

/* /proc/uptime: seconds since boot. */
int agent_health_parse_uptime(const char *text, double *out);

/* /proc/net/dev: received and sent bytes over every interface but lo. */
int agent_health_parse_netdev(const char *text, uint64_t *rx, uint64_t *tx);

/* A thermal zone's temp file (millidegrees Celsius) into degrees. */
int agent_health_parse_temp(const char *text, double *out);

#define AGENT_MOUNTS_MAX 32
#define AGENT_MOUNT_PATH_MAX 111 /* "disk_total_bytes:" (17) + path fits 128 */

typedef struct agent_mount {
    char path[AGENT_MOUNT_PATH_MAX + 1];
} agent_mount_t;

/* True for filesystems without disk space of their own (proc, tmpfs,
 * cgroup, ...) or on the network (nfs, cifs, ...). */
bool agent_health_fs_skipped(const char *type);

/* /proc/mounts: the mount points worth a disk metric, octal escapes
 * (\040) decoded, each path once, at most max.
 * Paths too long for a metric name are left out. */
int agent_health_parse_mounts(const char *text, agent_mount_t *out, size_t max, size_t *n);

typedef struct agent_health {
    const char *proc; /* "/proc" (tests point these elsewhere) */
    const char *sys;  /* "/sys" */
    agent_cpu_times_t prev;
    bool have_prev;
} agent_health_t;

void agent_health_init(agent_health_t *h);

/* Reads the CPU counters for the next cpu_pct (call once at start). */
void agent_health_prime(agent_health_t *h);

/* Adds every metric it can read to obj; a source that cannot be read
 * leaves its metrics out. Returns 0 or -ENOMEM. */
int agent_health_sample(agent_health_t *h, json_t *obj);

#endif

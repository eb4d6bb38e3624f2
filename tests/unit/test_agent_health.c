/* drover-agent health parsers, fed sample /proc and /sys text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_health.h"

static void test_stat(void **state)
{
    (void)state;
    const char *t = "cpu  4705 356 584 3699 23 23 0 0 0 0\n"
                    "cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n"
                    "intr 114930548 113199788 3 0 5 263 0 4 [... lots more numbers ...]\n";
    agent_cpu_times_t a;
    assert_int_equal(agent_health_parse_stat(t, &a), 0);
    assert_int_equal(a.total, 4705 + 356 + 584 + 3699 + 23 + 23);
    assert_int_equal(a.idle, 3699 + 23);
    agent_cpu_times_t b = {a.total + 200, a.idle + 50};
    double pct;
    assert_int_equal(agent_health_cpu_pct(&a, &b, &pct), 0);
    assert_true(pct > 74.99 && pct < 75.01);
    assert_int_equal(agent_health_cpu_pct(&a, &a, &pct), -EAGAIN);
    /* only per-CPU lines, or garbage */
    assert_int_equal(agent_health_parse_stat("cpu0 1 2 3 4\n", &a), -EINVAL);
    assert_int_equal(agent_health_parse_stat("cpu  1 2\n", &a), -EINVAL);
    assert_int_equal(agent_health_parse_stat("", &a), -EINVAL);
    /* guest fields are not added twice */
    assert_int_equal(agent_health_parse_stat("cpu 1 1 1 1 1 1 1 1 100 100\n", &a), 0);
    assert_int_equal(a.total, 8);
}

static void test_meminfo(void **state)
{
    (void)state;
    const char *t = "MemTotal:       16333248 kB\n"
                    "MemFree:         8124520 kB\n"
                    "MemAvailable:   12000000 kB\n"
                    "Buffers:          412112 kB\n"
                    "Cached:          3511996 kB\n";
    uint64_t total, used;
    assert_int_equal(agent_health_parse_meminfo(t, &total, &used), 0);
    assert_int_equal(total, 16333248ULL * 1024);
    assert_int_equal(used, (16333248ULL - 12000000ULL) * 1024);
    /* Kernels before 3.14 have no MemAvailable. */
    const char *old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n";
    assert_int_equal(agent_health_parse_meminfo(old, &total, &used), 0);
    assert_int_equal(used, 600 * 1024);
    assert_int_equal(agent_health_parse_meminfo("MemFree: 1 kB\n", &total, &used), -EINVAL);
    assert_int_equal(agent_health_parse_meminfo("MemTotal: lots\n", &total, &used), -EINVAL);
}

static void test_loadavg_uptime(void **state)
{
    (void)state;
    double l[3];
    assert_int_equal(agent_health_parse_loadavg("0.52 1.25 2.00 2/345 6789\n", l), 0);
    assert_true(l[0] == 0.52 && l[1] == 1.25 && l[2] == 2.0);
    assert_int_equal(agent_health_parse_loadavg("0.52 x", l), -EINVAL);
    double up;
    assert_int_equal(agent_health_parse_uptime("350735.47 234388.90\n", &up), 0);
    assert_true(up > 350735.46 && up < 350735.48);
    assert_int_equal(agent_health_parse_uptime("", &up), -EINVAL);
}

static void test_netdev(void **state)
{
    (void)state;
    const char *t =
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
        "errs drop fifo colls carrier compressed\n"
        "    lo: 2776770   11307    0    0    0     0          0         0  2776770   11307   "
        " 0    0    0     0       0          0\n"
        "  eth0: 1215645    2751    0    0    0     0          0         0  1782404    4324   "
        " 0    0    0   427       0          0\n"
        "wlan0:100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n";
    uint64_t rx, tx;
    assert_int_equal(agent_health_parse_netdev(t, &rx, &tx), 0);
    assert_int_equal(rx, 1215645 + 100);
    assert_int_equal(tx, 1782404 + 200);
    assert_int_equal(agent_health_parse_netdev("Inter-| x\n", &rx, &tx), -EINVAL);
    assert_int_equal(agent_health_parse_netdev("eth0: 1 2 3\n", &rx, &tx), -EINVAL);
}

static void test_temp(void **state)
{
    (void)state;
    double c;
    assert_int_equal(agent_health_parse_temp("45000\n", &c), 0);
    assert_true(c == 45.0);
    assert_int_equal(agent_health_parse_temp("-5500\n", &c), 0);
    assert_true(c == -5.5);
    assert_int_equal(agent_health_parse_temp("abc\n", &c), -EINVAL);
    assert_int_equal(agent_health_parse_temp("12 34\n", &c), -EINVAL);
}

static void test_mounts(void **state)
{
    (void)state;
    const char *t = "proc /proc proc rw,nosuid 0 0\n"
                    "sysfs /sys sysfs rw 0 0\n"
                    "/dev/root / ext4 rw,relatime 0 0\n"
                    "tmpfs /run tmpfs rw 0 0\n"
                    "/dev/sda1 /boot/firmware vfat rw 0 0\n"
                    "/dev/sdb1 /mnt/my\\040disk ext4 rw 0 0\n"
                    "server:/export /mnt/nfs nfs4 rw 0 0\n"
                    "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"
                    "/dev/root / ext4 rw,relatime 0 0\n"
                    "overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0\n"
                    "garbage\n";
    agent_mount_t m[8];
    size_t n;
    assert_int_equal(agent_health_parse_mounts(t, m, 8, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(m[0].path, "/");
    assert_string_equal(m[1].path, "/boot/firmware");
    assert_string_equal(m[2].path, "/mnt/my disk");
    assert_string_equal(m[3].path, "/var/lib/docker/overlay2/x/merged");
    /* at most max */
    assert_int_equal(agent_health_parse_mounts(t, m, 2, &n), 0);
    assert_int_equal(n, 2);
    /* a path too long for a metric name is left out */
    char longm[400];
    char path[200];
    memset(path, 'p', sizeof(path));
    path[0] = '/';
    path[AGENT_MOUNT_PATH_MAX + 1] = '\0';
    snprintf(longm, sizeof(longm), "/dev/x %s ext4 rw 0 0\n/dev/y /ok ext4 rw 0 0\n", path);
    assert_int_equal(agent_health_parse_mounts(longm, m, 8, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].path, "/ok");
    path[AGENT_MOUNT_PATH_MAX] = '\0';
    snprintf(longm, sizeof(longm), "/dev/x %s ext4 rw 0 0\n", path);
    assert_int_equal(agent_health_parse_mounts(longm, m, 8, &n), 0);
    assert_int_equal(n, 1);
    assert_true(strlen("disk_total_bytes:") + strlen(m[0].path) <= 128);
    assert_true(agent_health_fs_skipped("tmpfs"));
    assert_true(agent_health_fs_skipped("nfs"));
    assert_false(agent_health_fs_skipped("ext4"));
    assert_false(agent_health_fs_skipped("xfs"));
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_sampler_fake_tree(void **state)
{
    (void)state;
    char root[] = "/tmp/drover-agent-h-XXXXXX";
    assert_non_null(mkdtemp(root));
    char proc[128], sys[128], z[256];
    snprintf(proc, sizeof(proc), "%s/proc", root);
    snprintf(sys, sizeof(sys), "%s/sys", root);
    mkdir(proc, 0700);
    snprintf(z, sizeof(z), "%s/net", proc);
    mkdir(z, 0700);
    mkdir(sys, 0700);
    snprintf(z, sizeof(z), "%s/class", sys);
    mkdir(z, 0700);
    snprintf(z, sizeof(z), "%s/class/thermal", sys);
    mkdir(z, 0700);
    char z0[300], z1[300];
    snprintf(z0, sizeof(z0), "%s/thermal_zone0", z);
    snprintf(z1, sizeof(z1), "%s/thermal_zone1", z);
    mkdir(z0, 0700);
    mkdir(z1, 0700);
    write_file(z0, "temp", "41000\n");
    write_file(z1, "temp", "52500\n");
    write_file(proc, "stat", "cpu  100 0 100 800 0 0 0 0 0 0\n");
    write_file(proc, "meminfo", "MemTotal: 1000 kB\nMemAvailable: 250 kB\n");
    write_file(proc, "loadavg", "1.50 1.00 0.50 1/100 42\n");
    write_file(proc, "uptime", "123.45 100.00\n");
    write_file(proc, "net/dev",
               "Inter-|\n face |\n lo: 5 0 0 0 0 0 0 0 5 0 0 0 0 0 0 0\n"
               "eth0: 10 0 0 0 0 0 0 0 20 0 0 0 0 0 0 0\n");
    /* the root filesystem is real, so statvfs works on "/" */
    write_file(proc, "mounts", "/dev/root / ext4 rw 0 0\nproc /proc proc rw 0 0\n");

    agent_health_t h;
    agent_health_init(&h);
    h.proc = proc;
    h.sys = sys;
    agent_health_prime(&h);
    write_file(proc, "stat", "cpu  150 0 150 900 0 0 0 0 0 0\n");
    json_t *o = json_object();
    assert_int_equal(agent_health_sample(&h, o), 0);
    /* 100 busy of 200 jiffies */
    assert_true(json_real_value(json_object_get(o, "cpu_pct")) == 50.0);
    assert_int_equal(json_integer_value(json_object_get(o, "mem_total_bytes")), 1024000);
    assert_int_equal(json_integer_value(json_object_get(o, "mem_used_bytes")), 750 * 1024);
    assert_true(json_real_value(json_object_get(o, "load1")) == 1.5);
    assert_true(json_real_value(json_object_get(o, "load15")) == 0.5);
    assert_true(json_real_value(json_object_get(o, "uptime_s")) == 123.45);
    assert_int_equal(json_integer_value(json_object_get(o, "net_rx_bytes")), 10);
    assert_int_equal(json_integer_value(json_object_get(o, "net_tx_bytes")), 20);
    assert_true(json_real_value(json_object_get(o, "temp_c")) == 52.5);
    assert_true(json_integer_value(json_object_get(o, "disk_total_bytes:/")) > 0);
    assert_true(json_is_integer(json_object_get(o, "disk_used_bytes:/")));
    assert_null(json_object_get(o, "disk_total_bytes:/proc"));
    json_decref(o);

    /* Missing sources leave their metrics out, nothing fails. */
    h.proc = "/nonexistent";
    h.sys = "/nonexistent";
    o = json_object();
    assert_int_equal(agent_health_sample(&h, o), 0);
    assert_int_equal(json_object_size(o), 0);
    json_decref(o);

    const char *files[] = {"proc/stat",
                           "proc/meminfo",
                           "proc/loadavg",
                           "proc/uptime",
                           "proc/net/dev",
                           "proc/mounts",
                           "sys/class/thermal/thermal_zone0/temp",
                           "sys/class/thermal/thermal_zone1/temp"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(z, sizeof(z), "%s/%s", root, files[i]);
        unlink(z);
    }
    const char *dirs[] = {"sys/class/thermal/thermal_zone0",
                          "sys/class/thermal/thermal_zone1",
                          "sys/class/thermal",
                          "sys/class",
                          "sys",
                          "proc/net",
                          "proc",
                          ""};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(z, sizeof(z), "%s/%s", root, dirs[i]);
        rmdir(z);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stat),
        cmocka_unit_test(test_meminfo),
        cmocka_unit_test(test_loadavg_uptime),
        cmocka_unit_test(test_netdev),
        cmocka_unit_test(test_temp),
        cmocka_unit_test(test_mounts),
        cmocka_unit_test(test_sampler_fake_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

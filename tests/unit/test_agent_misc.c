/* drover-agent: backoff bounds, command allow-list and argv, UTF-8
 * cleaning, twin diffs, child processes, the sequence counter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_backoff.h"
#include "agent_cmd.h"
#include "agent_fs.h"
#include "agent_proc.h"
#include "agent_twin.h"
#include "common/util.h"

/* ---------------------------------------------------------------- backoff */

static void test_backoff_bounds(void **state)
{
    (void)state;
    agent_backoff_t b;
    agent_backoff_init(&b, 1000, 60000);
    uint32_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(agent_backoff_window(&b), want[i]);
        agent_backoff_t copy = b;
        /* Full jitter: the extremes of rnd give 0 and the whole window. */
        assert_int_equal(agent_backoff_next(&copy, 0), 0);
        copy = b;
        assert_int_equal(agent_backoff_next(&copy, UINT32_MAX), want[i]);
        copy = b;
        uint32_t mid = agent_backoff_next(&copy, UINT32_MAX / 2);
        assert_true(mid >= want[i] / 2 - 1 && mid <= want[i] / 2 + 1);
        agent_backoff_next(&b, 12345);
    }
    /* Many draws stay in the window and are spread over it. */
    agent_backoff_t c;
    agent_backoff_init(&c, 1000, 60000);
    for (int i = 0; i < 20; i++)
        agent_backoff_next(&c, 0);
    uint32_t lo = UINT32_MAX, hi = 0;
    uint32_t x = 2463534242u;
    for (int i = 0; i < 1000; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        uint32_t d = agent_backoff_next(&c, x);
        assert_true(d <= 60000);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo < 6000);
    assert_true(hi > 54000);
    agent_backoff_reset(&c);
    assert_int_equal(agent_backoff_window(&c), 1000);
    /* A cap that is not a power-of-two multiple of the base; huge values. */
    agent_backoff_init(&c, 300, 1000);
    assert_int_equal(agent_backoff_window(&c), 300);
    agent_backoff_next(&c, 0);
    agent_backoff_next(&c, 0);
    assert_int_equal(agent_backoff_window(&c), 1000);
    agent_backoff_init(&c, 3600000, 86400000);
    for (int i = 0; i < 100; i++)
        assert_true(agent_backoff_next(&c, UINT32_MAX) <= 86400000);
}

/* ---------------------------------------------------------------- commands */

static void test_cmd_names(void **state)
{
    (void)state;
    assert_true(agent_cmd_name_valid("restart-service"));
    assert_true(agent_cmd_name_valid("a.b_c-D9"));
    assert_false(agent_cmd_name_valid(""));
    assert_false(agent_cmd_name_valid("."));
    assert_false(agent_cmd_name_valid(".."));
    assert_false(agent_cmd_name_valid(".hidden"));
    assert_false(agent_cmd_name_valid("../etc/passwd"));
    assert_false(agent_cmd_name_valid("a/b"));
    assert_false(agent_cmd_name_valid("/bin/sh"));
    assert_false(agent_cmd_name_valid("rm -rf"));
    assert_false(agent_cmd_name_valid("a;b"));
    assert_false(agent_cmd_name_valid("a$(x)"));
    assert_false(agent_cmd_name_valid("caf\xc3\xa9"));
    char n[AGENT_CMD_NAME_MAX + 2];
    memset(n, 'a', sizeof(n));
    n[AGENT_CMD_NAME_MAX] = '\0';
    assert_true(agent_cmd_name_valid(n));
    n[AGENT_CMD_NAME_MAX] = 'a';
    n[AGENT_CMD_NAME_MAX + 1] = '\0';
    assert_false(agent_cmd_name_valid(n));
}

static void put_file(const char *path, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\necho hi\n", f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_cmd_resolve(void **state)
{
    (void)state;
    char root[] = "/tmp/drover-agent-c-XXXXXX";
    assert_non_null(mkdtemp(root));
    char dir[128], p[512], out[512], outside[256], sub[256];
    snprintf(dir, sizeof(dir), "%s/cmds", root);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(p, sizeof(p), "%s/hello", dir);
    put_file(p, 0755);
    snprintf(p, sizeof(p), "%s/noexec", dir);
    put_file(p, 0644);
    snprintf(sub, sizeof(sub), "%s/subdir", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(outside, sizeof(outside), "%s/outside", root);
    put_file(outside, 0755);
    snprintf(p, sizeof(p), "%s/escape", dir);
    assert_int_equal(symlink(outside, p), 0);
    snprintf(p, sizeof(p), "%s/shell", dir);
    assert_int_equal(symlink("/bin/sh", p), 0);
    snprintf(p, sizeof(p), "%s/alias", dir);
    assert_int_equal(symlink("hello", p), 0);
    snprintf(p, sizeof(p), "%s/dangling", dir);
    assert_int_equal(symlink("nothing-here", p), 0);
    snprintf(p, sizeof(p), "%s/deep", dir);
    assert_int_equal(symlink("subdir", p), 0);
    snprintf(p, sizeof(p), "%s/x", sub);
    put_file(p, 0755);

    assert_int_equal(agent_cmd_resolve(dir, "hello", out, sizeof(out)), 0);
    snprintf(p, sizeof(p), "%s/hello", dir);
    char want[PATH_MAX];
    assert_non_null(realpath(p, want));
    assert_string_equal(out, want);
    /* a symlink to another allowed file of the directory is fine */
    assert_int_equal(agent_cmd_resolve(dir, "alias", out, sizeof(out)), 0);
    assert_string_equal(out, want);
    assert_int_equal(agent_cmd_resolve(dir, "missing", out, sizeof(out)), -ENOENT);
    assert_int_equal(agent_cmd_resolve(dir, "dangling", out, sizeof(out)), -ENOENT);
    assert_int_equal(agent_cmd_resolve(dir, "noexec", out, sizeof(out)), -EACCES);
    assert_int_equal(agent_cmd_resolve(dir, "subdir", out, sizeof(out)), -EACCES);
    assert_int_equal(agent_cmd_resolve(dir, "escape", out, sizeof(out)), -EACCES);
    assert_int_equal(agent_cmd_resolve(dir, "shell", out, sizeof(out)), -EACCES);
    assert_int_equal(agent_cmd_resolve(dir, "../outside", out, sizeof(out)), -EINVAL);
    assert_int_equal(agent_cmd_resolve(dir, "subdir/x", out, sizeof(out)), -EINVAL);
    assert_int_equal(agent_cmd_resolve(dir, "..", out, sizeof(out)), -EINVAL);
    assert_int_equal(agent_cmd_resolve("/nonexistent-dir", "hello", out, sizeof(out)), -ENOENT);
    assert_int_equal(agent_cmd_resolve(dir, "hello", out, 4), -ENAMETOOLONG);
    /* commands_dir itself reached through a symlink still works */
    char link[256];
    snprintf(link, sizeof(link), "%s/cmdlink", root);
    assert_int_equal(symlink(dir, link), 0);
    assert_int_equal(agent_cmd_resolve(link, "hello", out, sizeof(out)), 0);
    assert_string_equal(out, want);

    const char *names[] = {"cmds/hello", "cmds/noexec",   "cmds/escape", "cmds/shell",
                           "cmds/alias", "cmds/dangling", "cmds/deep",   "cmds/subdir/x",
                           "outside",    "cmdlink"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", root, names[i]);
        unlink(p);
    }
    rmdir(sub);
    rmdir(dir);
    rmdir(root);
}

static void test_cmd_argv(void **state)
{
    (void)state;
    char **argv;
    assert_int_equal(agent_cmd_argv("echo", NULL, &argv), 0);
    assert_string_equal(argv[0], "echo");
    assert_null(argv[1]);
    agent_cmd_argv_free(argv);

    json_t *p = json_pack("{s:[s,s,s]}", "args", "-n", "two words", "$(rm -rf /)");
    assert_int_equal(agent_cmd_argv("echo", p, &argv), 0);
    assert_string_equal(argv[1], "-n");
    assert_string_equal(argv[2], "two words");
    assert_string_equal(argv[3], "$(rm -rf /)");
    assert_null(argv[4]);
    agent_cmd_argv_free(argv);
    json_decref(p);

    p = json_pack("{s:i}", "other", 1);
    assert_int_equal(agent_cmd_argv("x", p, &argv), 0);
    assert_null(argv[1]);
    agent_cmd_argv_free(argv);
    json_decref(p);

    const char *bad[] = {"{\"args\": \"a b\"}", "{\"args\": [1]}", "{\"args\": [\"a\", null]}",
                         "{\"args\": [\"a\\u0000b\"]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p = json_loads(bad[i], JSON_ALLOW_NUL, NULL);
        assert_non_null(p);
        assert_int_equal(agent_cmd_argv("x", p, &argv), -EINVAL);
        json_decref(p);
    }
    json_t *many = json_array();
    for (int i = 0; i <= AGENT_CMD_ARGS_MAX; i++)
        json_array_append_new(many, json_string("a"));
    p = json_pack("{s:o}", "args", many);
    assert_int_equal(agent_cmd_argv("x", p, &argv), -EINVAL);
    json_array_remove(many, 0);
    assert_int_equal(agent_cmd_argv("x", p, &argv), 0);
    agent_cmd_argv_free(argv);
    json_decref(p);
}

static void test_utf8_clean(void **state)
{
    (void)state;
    char a[] = "plain \xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    char copy[sizeof(a)];
    memcpy(copy, a, sizeof(a));
    agent_utf8_clean(a, strlen(a));
    assert_string_equal(a, copy);
    char b[] = "a\xff"
               "b\xc3"
               "c\xed\xa0\x80"
               "d\xc0\xaf"
               "e";
    agent_utf8_clean(b, strlen(b));
    assert_string_equal(b, "a?b?c???d??e");
    char c[] = {'x', '\0', 'y', (char)0xe2, (char)0x82};
    agent_utf8_clean(c, sizeof(c));
    assert_memory_equal(c, "x?y??", 5);
    json_t *s = json_stringn(b, strlen(b));
    assert_non_null(s);
    json_decref(s);
}

/* ---------------------------------------------------------------- twin */

static void check_diff(const char *old_s, const char *new_s, const char *want_s)
{
    json_t *o = old_s != NULL ? json_loads(old_s, 0, NULL) : NULL;
    json_t *n = json_loads(new_s, 0, NULL);
    json_t *want = json_loads(want_s, 0, NULL);
    json_t *got = agent_twin_diff(o, n);
    assert_non_null(got);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_SORT_KEYS);
        print_error("diff(%s, %s) = %s, want %s\n", old_s, new_s, g, want_s);
        free(g);
        fail();
    }
    json_decref(o);
    json_decref(n);
    json_decref(want);
    json_decref(got);
}

static void test_twin_diff(void **state)
{
    (void)state;
    check_diff(NULL, "{\"a\":1}", "{\"a\":1}");
    check_diff("{\"a\":1}", "{\"a\":1}", "{}");
    check_diff("{\"a\":1,\"b\":2}", "{\"a\":3}", "{\"a\":3,\"b\":null}");
    check_diff("{\"n\":{\"x\":1,\"y\":2}}", "{\"n\":{\"x\":1,\"y\":3,\"z\":[1]}}",
               "{\"n\":{\"y\":3,\"z\":[1]}}");
    check_diff("{\"n\":{\"x\":1}}", "{\"n\":{}}", "{\"n\":{\"x\":null}}");
    check_diff("{\"n\":{\"x\":1}}", "{\"n\":5}", "{\"n\":5}");
    check_diff("{\"n\":5}", "{\"n\":{\"x\":1}}", "{\"n\":{\"x\":1}}");
    check_diff("{\"l\":[1,2]}", "{\"l\":[1,2,3]}", "{\"l\":[1,2,3]}");
    check_diff("{\"a\":1}", "{}", "{\"a\":null}");
    json_t *one = json_integer(1);
    assert_null(agent_twin_diff(NULL, one)); /* the new state must be an object */
    json_decref(one);
}

static void test_twin_parse(void **state)
{
    (void)state;
    int64_t v;
    json_t *s;
    const char *ok = "{\"version\": 7, \"state\": {\"fan\": \"auto\"}}";
    assert_int_equal(agent_twin_parse_desired(ok, strlen(ok), &v, &s), 0);
    assert_int_equal(v, 7);
    assert_string_equal(json_string_value(json_object_get(s, "fan")), "auto");
    json_decref(s);
    const char *bad[] = {"",
                         "[]",
                         "{\"version\": 1}",
                         "{\"state\": {}}",
                         "{\"version\": -1, \"state\": {}}",
                         "{\"version\": 1, \"state\": 3}",
                         "{\"version\": \"1\", \"state\": {}}",
                         "{\"version\": 1, \"state\": {}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(agent_twin_parse_desired(bad[i], strlen(bad[i]), &v, &s), -EINVAL);
}

/* ---------------------------------------------------------------- proc */

static void run_to_end(agent_proc_t *p)
{
    int64_t until = util_mono_us() + 20 * 1000000;
    while (!agent_proc_poll(p, util_mono_us())) {
        agent_proc_read(p);
        assert_true(util_mono_us() < until);
        usleep(2000);
    }
}

static void test_proc(void **state)
{
    (void)state;
    char *env[] = {"PATH=/usr/bin:/bin", "GREETING=hi", NULL};
    agent_proc_t p;
    /* stdin, argv, environment, stderr merged into the output */
    char *argv1[] = {"sh", "-c",   "read x; echo \"$GREETING $x $1\"; echo err >&2; exit 3",
                     "sh", "arg1", NULL};
    assert_int_equal(agent_proc_spawn(&p, "/bin/sh", argv1, env, "there\n", 6, 1024, 10), 0);
    run_to_end(&p);
    assert_true(WIFEXITED(p.status));
    assert_int_equal(WEXITSTATUS(p.status), 3);
    assert_string_equal(p.out, "hi there arg1\nerr\n");
    assert_false(p.truncated);
    assert_false(p.timed_out);
    char how[64];
    agent_proc_describe(&p, 10, how, sizeof(how));
    assert_string_equal(how, "exit code 3");
    agent_proc_fini(&p);

    /* output cap */
    char *argv2[] = {"sh", "-c", "i=0; while [ $i -lt 200 ]; do echo 0123456789; i=$((i+1)); done",
                     NULL};
    assert_int_equal(agent_proc_spawn(&p, "/bin/sh", argv2, env, NULL, 0, 100, 10), 0);
    run_to_end(&p);
    assert_int_equal(p.out_len, 100);
    assert_true(p.truncated);
    assert_int_equal(WEXITSTATUS(p.status), 0);
    agent_proc_fini(&p);

    /* timeout kills the whole process group, grandchildren included */
    char *argv3[] = {"sh", "-c", "sleep 30 & sleep 30; echo never", NULL};
    int64_t t0 = util_mono_us();
    assert_int_equal(agent_proc_spawn(&p, "/bin/sh", argv3, env, NULL, 0, 100, 1), 0);
    run_to_end(&p);
    assert_true(p.timed_out);
    assert_true(util_mono_us() - t0 < 5 * 1000000);
    agent_proc_describe(&p, 1, how, sizeof(how));
    assert_string_equal(how, "timed out after 1 s");
    agent_proc_fini(&p);

    /* a program that does not exist: the child exits 127 */
    char *argv4[] = {"nope", NULL};
    assert_int_equal(agent_proc_spawn(&p, "/nonexistent/nope", argv4, env, NULL, 0, 100, 5), 0);
    run_to_end(&p);
    assert_int_equal(WEXITSTATUS(p.status), 127);
    agent_proc_fini(&p);

    /* no shell: metacharacters in arguments are plain text */
    char *argv5[] = {"echo", "$(id)", ";", "ls", NULL};
    assert_int_equal(agent_proc_spawn(&p, "/bin/echo", argv5, env, NULL, 0, 100, 5), 0);
    run_to_end(&p);
    assert_string_equal(p.out, "$(id) ; ls\n");
    agent_proc_fini(&p);

    /* descriptors of the agent (not close-on-exec) do not reach the child */
    int leak = open("/dev/null", O_RDONLY);
    assert_true(leak > 2);
    char script[128];
    snprintf(script, sizeof(script), "test -e /proc/self/fd/%d && echo leaked || echo clean", leak);
    char *argv7[] = {"sh", "-c", script, NULL};
    assert_int_equal(agent_proc_spawn(&p, "/bin/sh", argv7, env, NULL, 0, 100, 5), 0);
    run_to_end(&p);
    assert_string_equal(p.out, "clean\n");
    agent_proc_fini(&p);
    close(leak);

    /* fini of a zeroed struct, and of a running child */
    agent_proc_t z;
    memset(&z, 0, sizeof(z));
    z.out_fd = -1;
    agent_proc_fini(&z);
    char *argv6[] = {"sleep", "30", NULL};
    assert_int_equal(agent_proc_spawn(&p, "/bin/sleep", argv6, env, NULL, 0, 100, 60), 0);
    agent_proc_fini(&p);
}

/* ---------------------------------------------------------------- seq, fs */

static void test_seq(void **state)
{
    (void)state;
    char dir[] = "/tmp/drover-agent-s-XXXXXX";
    assert_non_null(mkdtemp(dir));
    agent_seq_t s;
    int64_t now = util_now_ms();
    assert_int_equal(agent_seq_open(&s, dir, 0), 0);
    uint64_t first, x;
    assert_int_equal(agent_seq_take(&s, &first), 0);
    /* A fresh data dir starts from the clock. */
    assert_true(first >= (uint64_t)now * 1000);
    uint64_t last = first;
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(agent_seq_take(&s, &x), 0);
        assert_int_equal(x, last + 1);
        last = x;
    }
    /* A restart (or crash) never goes back. */
    assert_int_equal(agent_seq_open(&s, dir, 0), 0);
    assert_int_equal(agent_seq_take(&s, &x), 0);
    assert_true(x > last);
    assert_true(x <= last + 1 + AGENT_SEQ_BLOCK);
    /* min_next (the queue's last seq + 1) wins when higher. */
    assert_int_equal(agent_seq_open(&s, dir, x + 100000), 0);
    assert_int_equal(agent_seq_take(&s, &x), 0);
    assert_true(x >= last + 100000);
    char p[128];
    snprintf(p, sizeof(p), "%s/seq", dir);
    FILE *f = fopen(p, "w");
    fputs("garbage\n", f);
    fclose(f);
    assert_int_equal(agent_seq_open(&s, dir, 0), -EINVAL);
    unlink(p);
    rmdir(dir);
}

static void test_fs(void **state)
{
    (void)state;
    char dir[] = "/tmp/drover-agent-f-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(agent_fs_write_atomic(dir, "a.json", "{\"x\":1}", 7, true), 0);
    char p[128], *text;
    size_t len;
    snprintf(p, sizeof(p), "%s/a.json", dir);
    assert_int_equal(agent_fs_read(p, 100, &text, &len), 0);
    assert_int_equal(len, 7);
    assert_string_equal(text, "{\"x\":1}");
    free(text);
    assert_int_equal(agent_fs_read(p, 6, &text, &len), -EFBIG);
    assert_int_equal(agent_fs_write_atomic(dir, "a.json", "", 0, false), 0);
    assert_int_equal(agent_fs_read(p, 6, &text, &len), 0);
    assert_int_equal(len, 0);
    free(text);
    snprintf(p, sizeof(p), "%s/none", dir);
    assert_int_equal(agent_fs_read(p, 6, &text, &len), -ENOENT);
    /* /proc files report size 0 but have content */
    assert_int_equal(agent_fs_read("/proc/self/status", 1 << 20, &text, &len), 0);
    assert_true(len > 0);
    assert_non_null(strstr(text, "Name:"));
    free(text);
    snprintf(p, sizeof(p), "%s/sub", dir);
    assert_int_equal(agent_fs_mkdir(p), 0);
    assert_int_equal(agent_fs_mkdir(p), 0);
    rmdir(p);
    snprintf(p, sizeof(p), "%s/a.json", dir);
    assert_int_equal(agent_fs_mkdir(p), -ENOTDIR);
    unlink(p);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_cmd_names),
        cmocka_unit_test(test_cmd_resolve),
        cmocka_unit_test(test_cmd_argv),
        cmocka_unit_test(test_utf8_clean),
        cmocka_unit_test(test_twin_diff),
        cmocka_unit_test(test_twin_parse),
        cmocka_unit_test(test_proc),
        cmocka_unit_test(test_seq),
        cmocka_unit_test(test_fs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

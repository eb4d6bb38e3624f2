/* drover-agent's on-disk queue: order, cap with drop-oldest, restarts,
 * torn and corrupt records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_queue.h"

static char tmpdir[64];
static char qdir[128];

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_dir(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/drover-agent-q-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(qdir, sizeof(qdir), "%s/queue", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rm_dir(tmpdir);
    return 0;
}

static void msg(char *buf, size_t len, uint64_t seq)
{
    /* fixed width, so every record has the same size */
    snprintf(buf, len, "{\"seq\":%06" PRIu64 ",\"v\":\"%0*" PRIu64 "\"}", seq, 40, seq);
}

static void append(agent_queue_t *q, uint64_t seq)
{
    char b[128];
    msg(b, sizeof(b), seq);
    assert_int_equal(agent_queue_append(q, seq, b, strlen(b)), 0);
}

static void expect_at(agent_queue_t *q, size_t i, uint64_t want)
{
    uint64_t seq;
    char *data;
    size_t len;
    assert_int_equal(agent_queue_peek(q, i, &seq, &data, &len), 0);
    assert_int_equal(seq, want);
    char b[128];
    msg(b, sizeof(b), want);
    assert_int_equal(len, strlen(b));
    assert_memory_equal(data, b, len);
    assert_int_equal(data[len], '\0');
    free(data);
}

static size_t qcount(agent_queue_t *q)
{
    agent_queue_stats_t st;
    agent_queue_stats(q, &st);
    return st.count;
}

static void test_crc32(void **state)
{
    (void)state;
    /* The standard check value of CRC-32/ISO-HDLC. */
    assert_int_equal(agent_crc32(0, "123456789", 9), 0xCBF43926u);
}

static void test_append_peek_pop(void **state)
{
    (void)state;
    agent_queue_t *q;
    assert_int_equal(agent_queue_open(qdir, 1 << 20, false, &q), 0);
    assert_int_equal(qcount(q), 0);
    assert_int_equal(agent_queue_pop(q), -ENOENT);
    for (uint64_t s = 10; s < 20; s++)
        append(q, s);
    assert_int_equal(qcount(q), 10);
    for (size_t i = 0; i < 10; i++)
        expect_at(q, i, 10 + i);
    uint64_t seq;
    char *data;
    size_t len;
    assert_int_equal(agent_queue_peek(q, 10, &seq, &data, &len), -ENOENT);
    /* find: first record above a seq */
    assert_int_equal(agent_queue_find(q, 0), 0);
    assert_int_equal(agent_queue_find(q, 10), 1);
    assert_int_equal(agent_queue_find(q, 14), 5);
    assert_int_equal(agent_queue_find(q, 19), 10);
    assert_int_equal(agent_queue_seq_at(q, 3), 13);
    /* order of removal */
    assert_int_equal(agent_queue_pop(q), 0);
    assert_int_equal(agent_queue_pop(q), 0);
    expect_at(q, 0, 12);
    assert_int_equal(qcount(q), 8);
    /* seq must grow; size limits */
    char b[8] = "x";
    assert_int_equal(agent_queue_append(q, 19, b, 1), -EINVAL);
    assert_int_equal(agent_queue_append(q, 5, b, 1), -EINVAL);
    char *big = calloc(1, AGENT_QUEUE_RECORD_MAX + 1);
    assert_int_equal(agent_queue_append(q, 100, big, AGENT_QUEUE_RECORD_MAX + 1), -E2BIG);
    free(big);
    agent_queue_stats_t st;
    agent_queue_stats(q, &st);
    assert_int_equal(st.first_seq, 12);
    assert_int_equal(st.last_seq, 19);
    assert_int_equal(st.dropped, 0);
    agent_queue_close(q);
}

static void test_cap_drops_oldest(void **state)
{
    (void)state;
    agent_queue_t *q;
    const uint64_t cap = 8192;
    assert_int_equal(agent_queue_open(qdir, cap, false, &q), 0);
    char b[128];
    msg(b, sizeof(b), 1);
    size_t rec = AGENT_QUEUE_HDR + strlen(b);
    size_t fit = cap / rec;
    for (uint64_t s = 1; s <= fit + 25; s++) {
        append(q, s);
        agent_queue_stats_t st;
        agent_queue_stats(q, &st);
        assert_true(st.bytes <= cap);
    }
    agent_queue_stats_t st;
    agent_queue_stats(q, &st);
    assert_int_equal(st.count, fit);
    assert_int_equal(st.dropped, 25);
    /* The oldest went; the newest are all there, in order. */
    assert_int_equal(st.first_seq, 26);
    for (size_t i = 0; i < fit; i++)
        expect_at(q, i, 26 + i);
    /* A record larger than the whole cap is refused, nothing dropped. */
    char *huge = calloc(1, cap);
    assert_int_equal(agent_queue_append(q, 10000, huge, cap), -E2BIG);
    free(huge);
    agent_queue_stats(q, &st);
    assert_int_equal(st.dropped, 25);
    agent_queue_close(q);

    /* The drop count survives a restart. */
    assert_int_equal(agent_queue_open(qdir, cap, false, &q), 0);
    agent_queue_stats(q, &st);
    assert_int_equal(st.dropped, 25);
    assert_int_equal(st.count, fit);
    agent_queue_close(q);

    /* A smaller cap at the next start drops (and counts) the oldest. */
    assert_int_equal(agent_queue_open(qdir, 4096, false, &q), 0);
    agent_queue_stats(q, &st);
    assert_true(st.bytes <= 4096);
    assert_int_equal(st.dropped, 25 + (fit - st.count));
    expect_at(q, st.count - 1, 25 + fit);
    agent_queue_close(q);
}

static void test_reopen_keeps_order(void **state)
{
    (void)state;
    agent_queue_t *q;
    /* cap 64 KiB: 4 KiB segments, so 300 records span several files. */
    assert_int_equal(agent_queue_open(qdir, 65536, true, &q), 0);
    for (uint64_t s = 1; s <= 300; s++)
        append(q, s);
    agent_queue_stats_t st;
    agent_queue_stats(q, &st);
    assert_true(st.segments > 2);
    size_t segs_before = st.segments;
    for (int i = 0; i < 120; i++)
        assert_int_equal(agent_queue_pop(q), 0);
    agent_queue_stats(q, &st);
    assert_true(st.segments < segs_before); /* consumed segments unlinked */
    assert_int_equal(agent_queue_sync(q), 0);
    agent_queue_close(q);

    assert_int_equal(agent_queue_open(qdir, 65536, true, &q), 0);
    agent_queue_stats(q, &st);
    assert_int_equal(st.count, 180);
    assert_int_equal(st.first_seq, 121);
    assert_int_equal(st.last_seq, 300);
    assert_int_equal(st.discarded, 0);
    for (size_t i = 0; i < 180; i++)
        expect_at(q, i, 121 + i);
    /* Appends continue after the old records. */
    append(q, 301);
    expect_at(q, 180, 301);
    while (qcount(q) > 0)
        assert_int_equal(agent_queue_pop(q), 0);
    agent_queue_stats(q, &st);
    assert_int_equal(st.segments, 1);
    agent_queue_close(q);

    /* Empty after a restart, but the last seq is still known. */
    assert_int_equal(agent_queue_open(qdir, 65536, true, &q), 0);
    agent_queue_stats(q, &st);
    assert_int_equal(st.count, 0);
    append(q, 302);
    expect_at(q, 0, 302);
    agent_queue_close(q);
}

/* The tail segment (the one with the highest number). */
static void tail_path(char *out, size_t len)
{
    DIR *d = opendir(qdir);
    assert_non_null(d);
    char best[256] = "";
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".seg") != NULL && strcmp(de->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", de->d_name);
    closedir(d);
    assert_true(best[0] != '\0');
    snprintf(out, len, "%s/%s", qdir, best);
}

static void test_torn_tail_discarded(void **state)
{
    (void)state;
    agent_queue_t *q;
    assert_int_equal(agent_queue_open(qdir, 1 << 20, true, &q), 0);
    for (uint64_t s = 1; s <= 5; s++)
        append(q, s);
    agent_queue_close(q);

    /* A power cut in the middle of the sixth append: its header says 60
     * bytes, 7 made it to disk. */
    char path[256];
    tail_path(path, sizeof(path));
    struct stat st0;
    assert_int_equal(stat(path, &st0), 0);
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    uint8_t torn[AGENT_QUEUE_HDR + 7] = {60, 0, 0, 0, 1,   2,   3,   4,   6,   0,   0,  0,
                                         0,  0, 0, 0, '{', '"', 's', 'e', 'q', '"', ':'};
    assert_int_equal(write(fd, torn, sizeof(torn)), (ssize_t)sizeof(torn));
    close(fd);

    assert_int_equal(agent_queue_open(qdir, 1 << 20, true, &q), 0);
    agent_queue_stats_t st;
    agent_queue_stats(q, &st);
    assert_int_equal(st.count, 5);
    assert_int_equal(st.discarded, sizeof(torn));
    assert_int_equal(st.last_seq, 5);
    struct stat st1;
    assert_int_equal(stat(path, &st1), 0);
    assert_int_equal(st1.st_size, st0.st_size); /* truncated back */
    /* The next append lands where the torn one was and reads back. */
    append(q, 6);
    for (size_t i = 0; i < 6; i++)
        expect_at(q, i, 1 + i);
    agent_queue_close(q);

    /* Half a header only. */
    fd = open(path, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, torn, 5), 5);
    close(fd);
    assert_int_equal(agent_queue_open(qdir, 1 << 20, true, &q), 0);
    agent_queue_stats(q, &st);
    assert_int_equal(st.count, 6);
    assert_int_equal(st.discarded, 5);
    agent_queue_close(q);
}

static void test_corrupt_record_discarded(void **state)
{
    (void)state;
    agent_queue_t *q;
    assert_int_equal(agent_queue_open(qdir, 1 << 20, false, &q), 0);
    for (uint64_t s = 1; s <= 4; s++)
        append(q, s);
    agent_queue_close(q);
    /* Flip a payload byte of the last record: its CRC no longer matches. */
    char path[256];
    tail_path(path, sizeof(path));
    struct stat st0;
    assert_int_equal(stat(path, &st0), 0);
    int fd = open(path, O_RDWR);
    char c;
    assert_int_equal(pread(fd, &c, 1, st0.st_size - 3), 1);
    c ^= 0x20;
    assert_int_equal(pwrite(fd, &c, 1, st0.st_size - 3), 1);
    close(fd);
    assert_int_equal(agent_queue_open(qdir, 1 << 20, false, &q), 0);
    agent_queue_stats_t st;
    agent_queue_stats(q, &st);
    assert_int_equal(st.count, 3);
    assert_true(st.discarded > 0);
    for (size_t i = 0; i < 3; i++)
        expect_at(q, i, 1 + i);
    agent_queue_close(q);
}

static void test_unsynced_head_replays(void **state)
{
    (void)state;
    /* Pops that never reached the head file (a crash) come back: they are
     * sent again and the server drops them by seq. Simulated by copying
     * the head file before the pops and putting it back. */
    agent_queue_t *q;
    assert_int_equal(agent_queue_open(qdir, 1 << 20, false, &q), 0);
    for (uint64_t s = 1; s <= 4; s++)
        append(q, s);
    assert_int_equal(agent_queue_sync(q), 0);
    char head[256], saved[300];
    snprintf(head, sizeof(head), "%s/head", qdir);
    snprintf(saved, sizeof(saved), "%s/head.saved", tmpdir);
    assert_int_equal(link(head, saved), 0);
    assert_int_equal(agent_queue_pop(q), 0);
    assert_int_equal(agent_queue_pop(q), 0);
    agent_queue_close(q);
    assert_int_equal(rename(saved, head), 0);
    assert_int_equal(agent_queue_open(qdir, 1 << 20, false, &q), 0);
    assert_int_equal(qcount(q), 4);
    expect_at(q, 0, 1);
    agent_queue_close(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32),
        cmocka_unit_test_setup_teardown(test_append_peek_pop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_drops_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_discarded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record_discarded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsynced_head_replays, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

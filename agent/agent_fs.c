/*
 * File helpers for the data directory. Every write that must survive a
 * power cut goes through agent_fs_write_atomic(..., durable = true): the
 * reader sees either the old or the new file, never a torn one.
 */
#include "agent_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

int agent_fs_read(const char *path, size_t max, char **out, size_t *outlen)
{
    int rc;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        goto fail;
    }
    if ((uint64_t)st.st_size > max) {
        rc = -EFBIG;
        goto fail;
    }
    /* Read up to max+1 bytes whatever fstat said: the file may grow. */
    size_t cap = (size_t)st.st_size + 1;
    buf = malloc(cap + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    size_t len = 0;
    for (;;) {
        if (len == cap) {
            if (cap > max) {
                rc = -EFBIG;
                goto fail;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (nb == NULL) {
                rc = -ENOMEM;
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len > max) {
        rc = -EFBIG;
        goto fail;
    }
    buf[len] = '\0';
    close(fd);
    *out = buf;
    *outlen = len;
    return 0;
fail:
    free(buf);
    close(fd);
    return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int agent_fs_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int agent_fs_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                          bool durable)
{
    return agent_fs_write_atomic_mode(dir, name, data, len, durable, 0600);
}

int agent_fs_write_atomic_mode(const char *dir, const char *name, const void *data, size_t len,
                               bool durable, unsigned mode)
{
    char path[1024], tmp[1040];
    int rc;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return -ENAMETOOLONG;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (unlink(tmp) < 0 && errno != ENOENT)
        return -errno;
    /* 0600 until written: a key is never readable by others, even briefly. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    rc = fchmod(fd, (mode_t)mode) < 0 ? -errno : 0;
    if (rc == 0)
        rc = write_all(fd, data, len);
    if (rc == 0 && durable && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        goto fail;
    if (rename(tmp, path) < 0) {
        rc = -errno;
        goto fail;
    }
    if (durable)
        return agent_fs_sync_dir(dir);
    return 0;
fail:
    unlink(tmp);
    return rc;
}

int agent_fs_mkdir(const char *dir)
{
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    struct stat st;
    if (stat(dir, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int seq_persist(agent_seq_t *s, uint64_t reserved)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", reserved);
    int rc = agent_fs_write_atomic(s->dir, "seq", buf, (size_t)n, true);
    if (rc == 0)
        s->reserved = reserved;
    return rc;
}

int agent_seq_open(agent_seq_t *s, const char *dir, uint64_t min_next)
{
    agent_seq_t t;
    memset(&t, 0, sizeof(t));
    if ((size_t)snprintf(t.dir, sizeof(t.dir), "%s", dir) >= sizeof(t.dir))
        return -ENAMETOOLONG;
    char path[600];
    snprintf(path, sizeof(path), "%s/seq", dir);
    char *text = NULL;
    size_t len;
    int rc = agent_fs_read(path, 64, &text, &len);
    if (rc == 0) {
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
            text[--len] = '\0';
        int64_t v;
        rc = util_parse_i64(text, &v);
        free(text);
        if (rc < 0 || v < 0)
            return -EINVAL;
        t.next = (uint64_t)v;
    } else if (rc == -ENOENT) {
        int64_t now = util_now_ms();
        t.next = now > 0 ? (uint64_t)now * 1000 : 1;
    } else {
        return rc;
    }
    if (t.next < min_next)
        t.next = min_next;
    if (t.next == 0)
        t.next = 1;
    /* Reserve at once: numbers handed out in this run are all above what
     * the file said, even if the first block is never used up. */
    rc = seq_persist(&t, t.next + AGENT_SEQ_BLOCK);
    if (rc < 0)
        return rc;
    *s = t;
    return 0;
}

int agent_seq_take(agent_seq_t *s, uint64_t *out)
{
    if (s->next >= s->reserved) {
        int rc = seq_persist(s, s->next + AGENT_SEQ_BLOCK);
        if (rc < 0)
            return rc;
    }
    *out = s->next++;
    return 0;
}

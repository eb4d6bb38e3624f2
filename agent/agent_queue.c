/*
 * The on-disk telemetry queue (see agent_queue.h for the format).
 *
 * In memory: one index entry per live record (seq, segment, offset,
 * length: 24 bytes) in an array used as a FIFO, and the list of segment
 * files in order. The index makes "resend everything after seq N" a binary
 * search and lets the cap be enforced without reading the files.
 *
 * Segment size is cap/16 (4 KiB .. 1 MiB): small enough that the consumed
 * prefix of the oldest segment wastes little disk, large enough that files
 * are few.
 */
#include "agent_queue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "agent_fs.h"

#define HEAD_MAGIC 0x31485144u /* "DQH1" */
#define HEAD_LEN 32

struct entry {
    uint64_t seq;
    uint64_t segno;
    uint32_t off;
    uint32_t len; /* payload bytes */
};

struct seg {
    uint64_t segno;
    uint64_t size;
};

struct agent_queue {
    char dir[512];
    uint64_t cap;
    uint64_t seg_max;
    bool durable;

    struct entry *e;
    size_t e_start, e_end, e_cap;

    struct seg *segs; /* ascending; the last one is the tail */
    size_t nsegs, segs_cap;
    int tail_fd;

    int read_fd;
    uint64_t read_segno;

    uint64_t bytes;
    uint64_t dropped;
    uint64_t discarded;
    uint64_t last_seq;
    uint64_t head_segno, head_off;
    bool head_dirty;
};

/* ---------------------------------------------------------------- crc */

uint32_t agent_crc32(uint32_t crc, const void *data, size_t len)
{
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t record_crc(const uint8_t seqbytes[8], const void *payload, size_t len)
{
    return agent_crc32(agent_crc32(0, seqbytes, 8), payload, len);
}

/* ---------------------------------------------------------------- files */

static void seg_path(const agent_queue_t *q, uint64_t segno, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%016" PRIx64 ".seg", q->dir, segno);
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EIO;
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int write_head(agent_queue_t *q)
{
    uint8_t b[HEAD_LEN];
    put32(b, HEAD_MAGIC);
    put64(b + 4, q->head_segno);
    put64(b + 12, q->head_off);
    put64(b + 20, q->dropped);
    put32(b + 28, agent_crc32(0, b, 28));
    int rc = agent_fs_write_atomic(q->dir, "head", b, sizeof(b), q->durable);
    if (rc == 0)
        q->head_dirty = false;
    return rc;
}

static void read_head(agent_queue_t *q)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/head", q->dir);
    char *buf;
    size_t len;
    if (agent_fs_read(path, 64, &buf, &len) < 0)
        return;
    const uint8_t *b = (const uint8_t *)buf;
    if (len == HEAD_LEN && get32(b) == HEAD_MAGIC && get32(b + 28) == agent_crc32(0, b, 28)) {
        q->head_segno = get64(b + 4);
        q->head_off = get64(b + 12);
        q->dropped = get64(b + 20);
    }
    free(buf);
}

/* ---------------------------------------------------------------- index */

static size_t count(const agent_queue_t *q)
{
    return q->e_end - q->e_start;
}

static int push_entry(agent_queue_t *q, const struct entry *en)
{
    if (q->e_end == q->e_cap) {
        if (q->e_start > 0) {
            memmove(q->e, q->e + q->e_start, count(q) * sizeof(*q->e));
            q->e_end -= q->e_start;
            q->e_start = 0;
        }
        if (q->e_end == q->e_cap) {
            size_t ncap = q->e_cap ? q->e_cap * 2 : 64;
            struct entry *ne = realloc(q->e, ncap * sizeof(*ne));
            if (ne == NULL)
                return -ENOMEM;
            q->e = ne;
            q->e_cap = ncap;
        }
    }
    q->e[q->e_end++] = *en;
    return 0;
}

static int push_seg(agent_queue_t *q, uint64_t segno, uint64_t size)
{
    if (q->nsegs == q->segs_cap) {
        size_t ncap = q->segs_cap ? q->segs_cap * 2 : 8;
        struct seg *ns = realloc(q->segs, ncap * sizeof(*ns));
        if (ns == NULL)
            return -ENOMEM;
        q->segs = ns;
        q->segs_cap = ncap;
    }
    q->segs[q->nsegs].segno = segno;
    q->segs[q->nsegs].size = size;
    q->nsegs++;
    return 0;
}

static struct seg *tail(agent_queue_t *q)
{
    return &q->segs[q->nsegs - 1];
}

/* Points the head at the oldest live record, or at the end of the tail. */
static void set_head(agent_queue_t *q)
{
    uint64_t s, o;
    if (count(q) > 0) {
        s = q->e[q->e_start].segno;
        o = q->e[q->e_start].off;
    } else {
        s = tail(q)->segno;
        o = tail(q)->size;
    }
    if (s != q->head_segno || o != q->head_off) {
        q->head_segno = s;
        q->head_off = o;
        q->head_dirty = true;
    }
}

/* Unlinks segments wholly before the head (never the tail). */
static void gc(agent_queue_t *q)
{
    size_t n = 0;
    while (n + 1 < q->nsegs && q->segs[n].segno < q->head_segno) {
        char path[600];
        seg_path(q, q->segs[n].segno, path, sizeof(path));
        unlink(path);
        if (q->read_fd >= 0 && q->read_segno == q->segs[n].segno) {
            close(q->read_fd);
            q->read_fd = -1;
        }
        n++;
    }
    if (n > 0) {
        memmove(q->segs, q->segs + n, (q->nsegs - n) * sizeof(*q->segs));
        q->nsegs -= n;
    }
}

static void drop_front(agent_queue_t *q)
{
    struct entry *en = &q->e[q->e_start++];
    q->bytes -= AGENT_QUEUE_HDR + (uint64_t)en->len;
    if (count(q) == 0)
        q->e_start = q->e_end = 0;
    set_head(q);
    gc(q);
}

/* ---------------------------------------------------------------- open */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool seg_name(const char *name, uint64_t *segno)
{
    if (strlen(name) != 20 || strcmp(name + 16, ".seg") != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = (v << 4) | (uint64_t)d;
    }
    *segno = v;
    return true;
}

static int list_segments(agent_queue_t *q, uint64_t **out, size_t *n)
{
    DIR *d = opendir(q->dir);
    if (d == NULL)
        return -errno;
    uint64_t *v = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t segno;
        if (!seg_name(de->d_name, &segno))
            continue;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, ncap * sizeof(*nv));
            if (nv == NULL) {
                rc = -ENOMEM;
                goto fail;
            }
            v = nv;
            cap = ncap;
        }
        v[len++] = segno;
    }
    closedir(d);
    if (len > 0)
        qsort(v, len, sizeof(*v), cmp_u64);
    *out = v;
    *n = len;
    return 0;
fail:
    closedir(d);
    free(v);
    return rc;
}

/* Indexes the valid records of one segment and truncates it at the first
 * invalid one. Records before the head are checked but not indexed. */
static int scan_segment(agent_queue_t *q, uint64_t segno, uint8_t *buf)
{
    char path[600];
    seg_path(q, segno, path, sizeof(path));
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size, off = 0;
    uint64_t prev = q->last_seq;
    while (off + AGENT_QUEUE_HDR <= size) {
        uint8_t h[AGENT_QUEUE_HDR];
        rc = pread_all(fd, h, sizeof(h), off);
        if (rc < 0)
            goto out;
        uint32_t len = get32(h), crc = get32(h + 4);
        uint64_t seq = get64(h + 8);
        if (len > AGENT_QUEUE_RECORD_MAX || off + AGENT_QUEUE_HDR + len > size ||
            off + AGENT_QUEUE_HDR + len > UINT32_MAX || seq <= prev)
            break;
        rc = pread_all(fd, buf, len, off + AGENT_QUEUE_HDR);
        if (rc < 0)
            goto out;
        if (record_crc(h + 8, buf, len) != crc)
            break;
        bool live = segno > q->head_segno || (segno == q->head_segno && off >= q->head_off);
        if (live) {
            struct entry en = {seq, segno, (uint32_t)off, len};
            rc = push_entry(q, &en);
            if (rc < 0)
                goto out;
            q->bytes += AGENT_QUEUE_HDR + (uint64_t)len;
        }
        prev = seq;
        off += AGENT_QUEUE_HDR + len;
    }
    if (off < size) {
        /* A torn append (power cut mid-write) or corruption: everything
         * from here on is unreadable, so it goes. */
        if (ftruncate(fd, (off_t)off) < 0) {
            rc = -errno;
            goto out;
        }
        if (q->durable)
            fsync(fd);
        q->discarded += size - off;
    }
    q->last_seq = prev;
    rc = push_seg(q, segno, off);
out:
    close(fd);
    return rc;
}

static int open_tail(agent_queue_t *q, bool create)
{
    char path[600];
    seg_path(q, tail(q)->segno, path, sizeof(path));
    int flags = O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
    int fd = open(path, flags, 0600);
    if (fd < 0)
        return -errno;
    if (q->tail_fd >= 0)
        close(q->tail_fd);
    q->tail_fd = fd;
    return 0;
}

int agent_queue_open(const char *dir, uint64_t cap, bool durable, agent_queue_t **out)
{
    uint64_t *segnos = NULL;
    uint8_t *buf = NULL;
    size_t nseg = 0;
    int rc;
    if (cap < 4096)
        return -EINVAL;
    agent_queue_t *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -ENOMEM;
    q->tail_fd = q->read_fd = -1;
    if ((size_t)snprintf(q->dir, sizeof(q->dir), "%s", dir) >= sizeof(q->dir)) {
        rc = -ENAMETOOLONG;
        goto fail;
    }
    q->cap = cap;
    q->durable = durable;
    q->seg_max = cap / 16;
    if (q->seg_max < 4096)
        q->seg_max = 4096;
    if (q->seg_max > 1024 * 1024)
        q->seg_max = 1024 * 1024;

    rc = agent_fs_mkdir(dir);
    if (rc < 0)
        goto fail;
    read_head(q);
    rc = list_segments(q, &segnos, &nseg);
    if (rc < 0)
        goto fail;
    buf = malloc(AGENT_QUEUE_RECORD_MAX);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < nseg; i++) {
        if (segnos[i] < q->head_segno && i + 1 < nseg) {
            char path[600];
            seg_path(q, segnos[i], path, sizeof(path));
            unlink(path);
            continue;
        }
        rc = scan_segment(q, segnos[i], buf);
        if (rc < 0)
            goto fail;
    }
    if (q->nsegs == 0) {
        rc = push_seg(q, q->head_segno > 0 ? q->head_segno : 1, 0);
        if (rc < 0)
            goto fail;
        rc = open_tail(q, true);
    } else {
        rc = open_tail(q, false);
    }
    if (rc < 0)
        goto fail;
    /* A smaller cap than last time: the oldest go, counted. */
    while (q->bytes > q->cap) {
        drop_front(q);
        q->dropped++;
    }
    q->head_dirty = true;
    set_head(q);
    gc(q);
    rc = write_head(q);
    if (rc < 0)
        goto fail;
    free(buf);
    free(segnos);
    *out = q;
    return 0;
fail:
    free(buf);
    free(segnos);
    agent_queue_close(q);
    return rc;
}

void agent_queue_close(agent_queue_t *q)
{
    if (q == NULL)
        return;
    if (q->head_dirty && q->nsegs > 0)
        write_head(q);
    if (q->tail_fd >= 0)
        close(q->tail_fd);
    if (q->read_fd >= 0)
        close(q->read_fd);
    free(q->e);
    free(q->segs);
    free(q);
}

/* ---------------------------------------------------------------- ops */

int agent_queue_append(agent_queue_t *q, uint64_t seq, const void *data, size_t len)
{
    uint64_t rec = AGENT_QUEUE_HDR + (uint64_t)len;
    if (len > AGENT_QUEUE_RECORD_MAX || rec > q->cap)
        return -E2BIG;
    if (seq <= q->last_seq)
        return -EINVAL;
    /* Make room in memory first so a failure below leaves nothing half
     * done on disk. */
    struct entry probe = {0, 0, 0, 0};
    int rc = push_entry(q, &probe);
    if (rc < 0)
        return rc;
    q->e_end--;

    if (tail(q)->size > 0 && tail(q)->size + rec > q->seg_max) {
        uint64_t next = tail(q)->segno + 1;
        rc = push_seg(q, next, 0);
        if (rc < 0)
            return rc;
        rc = open_tail(q, true);
        if (rc < 0) {
            q->nsegs--;
            /* The old tail stays the tail; reopen it for appends. */
            open_tail(q, false);
            return rc;
        }
    }
    struct seg *t = tail(q);
    uint8_t h[AGENT_QUEUE_HDR];
    put64(h + 8, seq);
    put32(h, (uint32_t)len);
    put32(h + 4, record_crc(h + 8, data, len));
    struct iovec iov[2] = {{h, sizeof(h)}, {(void *)data, len}};
    ssize_t w;
    do {
        w = pwritev(q->tail_fd, iov, 2, (off_t)t->size);
    } while (w < 0 && errno == EINTR);
    if (w != (ssize_t)rec) {
        rc = w < 0 ? -errno : -ENOSPC;
        if (ftruncate(q->tail_fd, (off_t)t->size) < 0) {
            /* Left as is: the next open finds and cuts the torn record. */
        }
        return rc;
    }
    if (q->durable && fdatasync(q->tail_fd) < 0) {
        rc = -errno;
        if (ftruncate(q->tail_fd, (off_t)t->size) < 0) {
            /* As above. */
        }
        return rc;
    }

    /* Committed: now the cap. The new record is never the one dropped. */
    while (q->bytes + rec > q->cap && count(q) > 0) {
        drop_front(q);
        q->dropped++;
        q->head_dirty = true;
    }
    struct entry en = {seq, t->segno, (uint32_t)t->size, (uint32_t)len};
    q->e[q->e_end++] = en; /* room reserved above */
    t->size += rec;
    q->bytes += rec;
    q->last_seq = seq;
    set_head(q);
    gc(q);
    return 0;
}

size_t agent_queue_find(const agent_queue_t *q, uint64_t after_seq)
{
    size_t lo = 0, hi = count(q);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (q->e[q->e_start + mid].seq <= after_seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t agent_queue_seq_at(const agent_queue_t *q, size_t i)
{
    return q->e[q->e_start + i].seq;
}

int agent_queue_peek(agent_queue_t *q, size_t i, uint64_t *seq, char **data, size_t *len)
{
    if (i >= count(q))
        return -ENOENT;
    const struct entry *en = &q->e[q->e_start + i];
    if (q->read_fd < 0 || q->read_segno != en->segno) {
        char path[600];
        seg_path(q, en->segno, path, sizeof(path));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        if (q->read_fd >= 0)
            close(q->read_fd);
        q->read_fd = fd;
        q->read_segno = en->segno;
    }
    uint8_t h[AGENT_QUEUE_HDR];
    int rc = pread_all(q->read_fd, h, sizeof(h), en->off);
    if (rc < 0)
        return rc;
    char *buf = malloc((size_t)en->len + 1);
    if (buf == NULL)
        return -ENOMEM;
    rc = pread_all(q->read_fd, buf, en->len, (uint64_t)en->off + AGENT_QUEUE_HDR);
    if (rc == 0 && (get32(h) != en->len || get64(h + 8) != en->seq ||
                    record_crc(h + 8, buf, en->len) != get32(h + 4)))
        rc = -EIO;
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[en->len] = '\0';
    *seq = en->seq;
    *data = buf;
    *len = en->len;
    return 0;
}

int agent_queue_pop(agent_queue_t *q)
{
    if (count(q) == 0)
        return -ENOENT;
    drop_front(q);
    return 0;
}

int agent_queue_sync(agent_queue_t *q)
{
    if (!q->head_dirty)
        return 0;
    return write_head(q);
}

void agent_queue_stats(const agent_queue_t *q, agent_queue_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->count = count(q);
    out->bytes = q->bytes;
    out->dropped = q->dropped;
    out->discarded = q->discarded;
    out->first_seq = count(q) > 0 ? q->e[q->e_start].seq : 0;
    out->last_seq = q->last_seq;
    out->segments = q->nsegs;
}

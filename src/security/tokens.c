/*
 * Operator API tokens: generation, the first-start admin token and bearer
 * verification.
 *
 * A token is "drv_" + 43 base64url characters (256 random bits). The store
 * keeps SHA-256 of the whole token text (prefix included) as a unique
 * column; a token is found by hashing what the client presents and looking
 * the hash up, so the plain token exists only in the client's hands (and,
 * for the first admin token, in <data-dir>/admin.token). A plain hash, not
 * a salted HMAC, is right here: 256 random bits need no stretching, and
 * the lookup must work from the token alone.
 *
 * Bootstrap writes the token file before committing the token: first to
 * admin.token.tmp (O_CREAT|O_EXCL, mode 0600, fsync), then the store
 * commit, then rename over admin.token and fsync of the directory. So a
 * crash never leaves a committed token nobody can read, and a stale
 * admin.token from a wiped database is replaced rather than kept.
 *
 * Loop thread only (bootstrap runs the loop itself, before serving).
 */
#include "security/tokens.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/crypto.h"
#include "common/util.h"

role_t tokens_role_parse(const char *name)
{
    if (name == NULL)
        return ROLE_NONE;
    if (strcmp(name, "admin") == 0)
        return ROLE_ADMIN;
    if (strcmp(name, "operator") == 0)
        return ROLE_OPERATOR;
    if (strcmp(name, "viewer") == 0)
        return ROLE_VIEWER;
    return ROLE_NONE;
}

static bool b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int tokens_verify(store_t *st, const char *token, role_t *role, store_token_t *info)
{
    if (token == NULL)
        return -EACCES;
    size_t plen = strlen(TOKENS_PREFIX);
    if (strnlen(token, TOKENS_LEN + 1) != TOKENS_LEN || memcmp(token, TOKENS_PREFIX, plen) != 0)
        return -EACCES;
    for (size_t i = plen; i < TOKENS_LEN; i++)
        if (!b64url(token[i]))
            return -EACCES;

    uint8_t hash[CRYPTO_HASH_LEN];
    crypto_sha256(token, TOKENS_LEN, hash);
    store_token_t t;
    int rc = store_token_find(st, hash, &t);
    if (rc == -ENOENT)
        return -EACCES;
    if (rc < 0)
        return rc;
    if (t.expires_at != 0 && util_now_ms() >= t.expires_at)
        return -EACCES;
    role_t r = tokens_role_parse(t.role);
    if (r == ROLE_NONE)
        return -EACCES;
    *role = r;
    if (info != NULL)
        *info = t;
    return 0;
}

/* ---- Bootstrap ------------------------------------------------------------ */

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Creates path (which must not exist) with mode 0600 holding line, durably. */
static int write_secret_file(const char *path, const char *line, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    int rc = write_all(fd, line, len);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        unlink(path);
    return rc;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* Heap-held so that, if the loop fails while the insert is pending, the
 * late completion still has somewhere to write (it frees it then). */
struct wait {
    bool fired;
    bool abandoned;
    int rc;
};

static void insert_done(void *arg, int rc, int64_t value)
{
    (void)value;
    struct wait *w = arg;
    if (w->abandoned) {
        free(w);
        return;
    }
    w->fired = true;
    w->rc = rc;
}

/* Submits the insert and runs the loop until it is durable. */
static int insert_and_wait(store_t *st, struct event_base *base, const store_token_t *t,
                           const uint8_t hash[CRYPTO_HASH_LEN])
{
    struct wait *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    store_token_insert(st, t, hash, insert_done, w);
    while (!w->fired) {
        int r = event_base_loop(base, EVLOOP_ONCE);
        if (r < 0) {
            w->abandoned = true;
            return -EIO;
        }
        if (r == 1 && !w->fired) {
            /* Nothing registered on the base yet (the store may signal its
             * completions by activating an event): don't spin hot. */
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    int rc = w->rc;
    free(w);
    return rc;
}

int tokens_bootstrap(store_t *st, struct event_base *base, const char *data_dir, char *out,
                     size_t outlen, bool *created)
{
    int rc;
    char token[TOKENS_LEN + 2]; /* + "\n" */
    char path[1024], tmp[1024];
    bool tmp_written = false;

    if (out == NULL || outlen < TOKENS_LEN + 1 || data_dir == NULL)
        return -EINVAL;
    int64_t count;
    rc = store_token_count(st, &count);
    if (rc < 0)
        return rc;
    if (count > 0) {
        *created = false;
        return 0;
    }

    int n1 = snprintf(path, sizeof(path), "%s/admin.token", data_dir);
    int n2 = snprintf(tmp, sizeof(tmp), "%s/admin.token.tmp", data_dir);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(path) || (size_t)n2 >= sizeof(tmp))
        return -ENAMETOOLONG;

    rc = crypto_secret_new(TOKENS_PREFIX, token, TOKENS_LEN + 1);
    if (rc < 0)
        goto fail;
    store_token_t t;
    memset(&t, 0, sizeof(t));
    uint8_t idraw[8];
    rc = crypto_random(idraw, sizeof(idraw));
    if (rc < 0)
        goto fail;
    util_hex_encode(idraw, sizeof(idraw), t.id);
    snprintf(t.name, sizeof(t.name), "admin");
    snprintf(t.role, sizeof(t.role), "admin");
    t.created_at = util_now_ms();
    t.expires_at = 0;
    uint8_t hash[CRYPTO_HASH_LEN];
    crypto_sha256(token, TOKENS_LEN, hash);

    /* A leftover from a crash before the commit holds a token that was
     * never stored: worthless, so replace it. */
    if (unlink(tmp) < 0 && errno != ENOENT) {
        rc = -errno;
        goto fail;
    }
    token[TOKENS_LEN] = '\n';
    rc = write_secret_file(tmp, token, TOKENS_LEN + 1);
    token[TOKENS_LEN] = '\0';
    if (rc < 0)
        goto fail;
    tmp_written = true;

    rc = insert_and_wait(st, base, &t, hash);
    if (rc < 0)
        goto fail;
    /* Committed: from here on the tmp file is the only copy; keep it even
     * if the rename fails. */
    tmp_written = false;
    if (rename(tmp, path) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = fsync_dir(data_dir);
    if (rc < 0)
        goto fail;

    memcpy(out, token, TOKENS_LEN + 1);
    *created = true;
    OPENSSL_cleanse(token, sizeof(token));
    return 0;

fail:
    if (tmp_written)
        unlink(tmp);
    OPENSSL_cleanse(token, sizeof(token));
    return rc;
}

/*
 * Operator password hashing (scrypt) and the worker thread that runs it.
 *
 * Why scrypt from OpenSSL: it is memory-hard (a guess costs 32 MiB as well
 * as time, which is what hurts GPU and ASIC guessing), and OpenSSL is
 * already linked, so no new dependency. Costs N=2^15, r=8, p=1: 32 MiB and
 * tens of milliseconds per hash. OWASP's current advice is stronger
 * (N=2^17, or p=3 at this N); the costs are stored in every string, so
 * raising USERS_SCRYPT_* later needs no migration. The salt is 16 bytes
 * from the OS CSPRNG, the derived key 32 bytes.
 *
 * Encoding: "$scrypt$ln=L,r=R,p=P$<b64 salt>$<b64 hash>", base64 with the
 * standard alphabet and no padding, parsed strictly (digits without leading
 * zeros, nothing after the hash). The hash length read back decides how
 * many bytes are derived, within [16, 64].
 *
 * The worker: jobs are queued by the loop (users_hash_async,
 * users_verify_async), taken one at a time by the thread, and put on a done
 * list; the thread then writes to an eventfd, and the loop's read event
 * runs the callbacks in order and frees the jobs. The read event is added
 * only while jobs are pending, so an idle worker does not keep a loop
 * alive. Passwords are copied into the job and wiped when it is freed.
 * The thread starts with every signal blocked (signals belong to the
 * loop). mu guards the two lists and `stopping`; `pending` is loop-only.
 */
#include "security/users.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/crypto.h"

#define LN_MAX 20
#define R_MAX 32
#define P_MAX 16
#define MEM_MAX (256ull * 1024 * 1024)
#define SALT_MIN 8
#define SALT_MAX 64
#define DK_MIN 16
#define DK_MAX 64
#define PREFIX "$scrypt$"

/* ---- base64, standard alphabet, no padding ------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* out holds 4 * ceil(n / 3) + 1 bytes. */
static void b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64_alphabet[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64_alphabet[v & 63];
    }
    out[o] = '\0';
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes exactly len characters into out (cap bytes). Bits left over in a
 * final partial group must be zero (one encoding per value). Returns the
 * byte count or -EINVAL. */
static int b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len % 4 == 1)
        return -EINVAL;
    size_t n = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (n > cap)
        return -EINVAL;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -EINVAL;
    return (int)o;
}

/* ---- hashing --------------------------------------------------------------- */

static bool params_ok(uint64_t ln, uint64_t r, uint64_t p)
{
    if (ln < 1 || ln > LN_MAX || r < 1 || r > R_MAX || p < 1 || p > P_MAX)
        return false;
    return 128ull * r * (1ull << ln) <= MEM_MAX;
}

static int derive(const char *pw, size_t len, const uint8_t *salt, size_t saltlen, unsigned ln,
                  unsigned r, unsigned p, uint8_t *dk, size_t dklen)
{
    uint64_t n = 1ull << ln;
    /* What OpenSSL needs (V and B) and a margin; bounded by params_ok. */
    uint64_t maxmem = 128ull * r * (n + 2) + 128ull * r * p + (1u << 20);
    if (EVP_PBE_scrypt(pw, len, salt, saltlen, n, r, p, maxmem, dk, dklen) != 1)
        return -ENOMEM;
    return 0;
}

int users_password_hash_params(const char *pw, size_t len, unsigned ln, unsigned r, unsigned p,
                               char *out, size_t outlen)
{
    if (pw == NULL || len == 0 || len > USERS_PASSWORD_MAX || out == NULL ||
        outlen < USERS_HASH_MAX || !params_ok(ln, r, p))
        return -EINVAL;
    uint8_t salt[USERS_SALT_LEN], dk[USERS_DK_LEN];
    if (crypto_random(salt, sizeof(salt)) < 0)
        return -EIO;
    int rc = derive(pw, len, salt, sizeof(salt), ln, r, p, dk, sizeof(dk));
    if (rc < 0)
        goto done;
    char s64[(USERS_SALT_LEN + 2) / 3 * 4 + 1], h64[(USERS_DK_LEN + 2) / 3 * 4 + 1];
    b64_encode(salt, sizeof(salt), s64);
    b64_encode(dk, sizeof(dk), h64);
    int w = snprintf(out, outlen, PREFIX "ln=%u,r=%u,p=%u$%s$%s", ln, r, p, s64, h64);
    rc = w > 0 && (size_t)w < outlen ? 0 : -EINVAL;
    OPENSSL_cleanse(h64, sizeof(h64));
done:
    OPENSSL_cleanse(dk, sizeof(dk));
    return rc;
}

int users_password_hash(const char *pw, size_t len, char *out, size_t outlen)
{
    return users_password_hash_params(pw, len, USERS_SCRYPT_LN, USERS_SCRYPT_R, USERS_SCRYPT_P, out,
                                      outlen);
}

/* "<digits>" at *s up to stop (no sign, no leading zero, at most 6 digits). */
static int parse_uint(const char **s, char stop, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    size_t n = 0;
    while (*p >= '0' && *p <= '9') {
        if (n == 6 || (n == 1 && v == 0))
            return -EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
        n++;
    }
    if (n == 0 || *p != stop)
        return -EINVAL;
    *s = p + 1;
    *out = v;
    return 0;
}

static int expect(const char **s, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*s, lit, n) != 0)
        return -EINVAL;
    *s += n;
    return 0;
}

struct parsed {
    unsigned ln, r, p;
    uint8_t salt[SALT_MAX];
    size_t saltlen;
    uint8_t dk[DK_MAX];
    size_t dklen;
};

static int parse_encoded(const char *enc, struct parsed *out)
{
    if (strnlen(enc, USERS_HASH_MAX) >= USERS_HASH_MAX)
        return -EINVAL;
    const char *s = enc;
    uint64_t ln, r, p;
    if (expect(&s, PREFIX "ln=") < 0 || parse_uint(&s, ',', &ln) < 0 || expect(&s, "r=") < 0 ||
        parse_uint(&s, ',', &r) < 0 || expect(&s, "p=") < 0 || parse_uint(&s, '$', &p) < 0 ||
        !params_ok(ln, r, p))
        return -EINVAL;
    const char *dollar = strchr(s, '$');
    if (dollar == NULL)
        return -EINVAL;
    int n = b64_decode(s, (size_t)(dollar - s), out->salt, sizeof(out->salt));
    if (n < SALT_MIN)
        return -EINVAL;
    out->saltlen = (size_t)n;
    s = dollar + 1;
    n = b64_decode(s, strlen(s), out->dk, sizeof(out->dk));
    if (n < DK_MIN)
        return -EINVAL;
    out->dklen = (size_t)n;
    out->ln = (unsigned)ln;
    out->r = (unsigned)r;
    out->p = (unsigned)p;
    return 0;
}

int users_password_verify(const char *pw, size_t len, const char *encoded)
{
    if (pw == NULL)
        return -EINVAL;
    uint8_t dk[DK_MAX];
    int rc;
    if (encoded == NULL) {
        /* A user that does not exist: the same work as a real check. */
        static const uint8_t salt[USERS_SALT_LEN];
        rc = derive(pw, len, salt, sizeof(salt), USERS_SCRYPT_LN, USERS_SCRYPT_R, USERS_SCRYPT_P,
                    dk, USERS_DK_LEN);
        OPENSSL_cleanse(dk, sizeof(dk));
        return rc < 0 ? rc : -EACCES;
    }
    struct parsed ps;
    rc = parse_encoded(encoded, &ps);
    if (rc < 0)
        return rc;
    rc = derive(pw, len, ps.salt, ps.saltlen, ps.ln, ps.r, ps.p, dk, ps.dklen);
    if (rc == 0)
        rc = CRYPTO_memcmp(dk, ps.dk, ps.dklen) == 0 ? 0 : -EACCES;
    OPENSSL_cleanse(dk, sizeof(dk));
    OPENSSL_cleanse(&ps, sizeof(ps));
    return rc;
}

/* ---- The worker -------------------------------------------------------------- */

typedef struct job {
    struct job *next;
    bool verify;
    char *pw;
    size_t len;
    char *encoded; /* verify: the stored string, NULL for a dummy */
    char result[USERS_HASH_MAX];
    int rc;
    users_hash_fn hash_done;
    users_verify_fn verify_done;
    void *arg;
} job_t;

struct users_worker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    job_t *q_head, *q_tail; /* waiting */
    job_t *d_head, *d_tail; /* finished, callbacks not yet run */
    bool stopping;
    size_t pending; /* submitted, callback not yet run (loop only) */
    int efd;
    struct event *ev;
    bool ev_added;
    bool mu_ready, cv_ready, thread_started;
};

static void job_free(job_t *j)
{
    if (j == NULL)
        return;
    if (j->pw != NULL) {
        OPENSSL_cleanse(j->pw, j->len);
        free(j->pw);
    }
    free(j->encoded);
    OPENSSL_cleanse(j->result, sizeof(j->result));
    free(j);
}

static void run_job(job_t *j)
{
    if (j->verify)
        j->rc = users_password_verify(j->pw, j->len, j->encoded);
    else
        j->rc = users_password_hash(j->pw, j->len, j->result, sizeof(j->result));
}

static void *worker_main(void *arg)
{
    users_worker_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->q_head == NULL && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stopping)
            break;
        job_t *j = w->q_head;
        w->q_head = j->next;
        if (w->q_head == NULL)
            w->q_tail = NULL;
        j->next = NULL;
        pthread_mutex_unlock(&w->mu);
        run_job(j);
        pthread_mutex_lock(&w->mu);
        if (w->d_tail != NULL)
            w->d_tail->next = j;
        else
            w->d_head = j;
        w->d_tail = j;
        pthread_mutex_unlock(&w->mu);
        /* Cannot fail short of a counter overflow; a lost wake-up would be
         * repaired by the next one. */
        uint64_t one = 1;
        ssize_t n = write(w->efd, &one, sizeof(one));
        (void)n;
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void callback(users_worker_t *w, job_t *j, int rc)
{
    w->pending--;
    if (j->verify) {
        if (j->verify_done != NULL)
            j->verify_done(j->arg, rc);
    } else if (j->hash_done != NULL) {
        j->hash_done(j->arg, rc, rc == 0 ? j->result : NULL);
    }
    job_free(j);
}

static void run_completions(users_worker_t *w)
{
    pthread_mutex_lock(&w->mu);
    job_t *j = w->d_head;
    w->d_head = w->d_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    while (j != NULL) {
        job_t *next = j->next;
        callback(w, j, j->rc);
        j = next;
    }
    if (w->pending == 0 && w->ev_added) {
        event_del(w->ev);
        w->ev_added = false;
    }
}

static void on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof(n)); /* EAGAIN: a stale wake-up, harmless */
    (void)r;
    run_completions(arg);
}

int users_worker_new(struct event_base *base, users_worker_t **out)
{
    int rc;
    users_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0) {
        rc = -errno;
        goto fail;
    }
    w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, on_wakeup, w);
    if (w->ev == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = -pthread_mutex_init(&w->mu, NULL)) < 0)
        goto fail;
    w->mu_ready = true;
    if ((rc = -pthread_cond_init(&w->cv, NULL)) < 0)
        goto fail;
    w->cv_ready = true;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0)
        goto fail;
    w->thread_started = true;
    *out = w;
    return 0;

fail:
    users_worker_free(w);
    return rc;
}

void users_worker_free(users_worker_t *w)
{
    if (w == NULL)
        return;
    if (w->thread_started) {
        pthread_mutex_lock(&w->mu);
        w->stopping = true;
        pthread_mutex_unlock(&w->mu);
        pthread_cond_broadcast(&w->cv);
        pthread_join(w->thread, NULL);
        w->thread_started = false;
    }
    /* The thread is gone: the lists are ours. Finished first, in order. */
    run_completions(w);
    job_t *j = w->q_head;
    w->q_head = w->q_tail = NULL;
    while (j != NULL) {
        job_t *next = j->next;
        callback(w, j, -ECANCELED);
        j = next;
    }
    if (w->ev != NULL)
        event_free(w->ev);
    if (w->efd >= 0)
        close(w->efd);
    if (w->cv_ready)
        pthread_cond_destroy(&w->cv);
    if (w->mu_ready)
        pthread_mutex_destroy(&w->mu);
    free(w);
}

static int submit(users_worker_t *w, job_t *j)
{
    if (w->pending == 0 && !w->ev_added) {
        if (event_add(w->ev, NULL) < 0)
            return -ENOMEM;
        w->ev_added = true;
    }
    w->pending++;
    pthread_mutex_lock(&w->mu);
    if (w->q_tail != NULL)
        w->q_tail->next = j;
    else
        w->q_head = j;
    w->q_tail = j;
    pthread_mutex_unlock(&w->mu);
    pthread_cond_signal(&w->cv);
    return 0;
}

static job_t *job_new(users_worker_t *w, const char *pw, size_t len, int *rc)
{
    if (pw == NULL || len == 0 || len > USERS_PASSWORD_MAX) {
        *rc = -EINVAL;
        return NULL;
    }
    if (w->pending >= USERS_QUEUE_MAX) {
        *rc = -EAGAIN;
        return NULL;
    }
    job_t *j = calloc(1, sizeof(*j));
    if (j != NULL)
        j->pw = malloc(len);
    if (j == NULL || j->pw == NULL) {
        free(j);
        *rc = -ENOMEM;
        return NULL;
    }
    memcpy(j->pw, pw, len);
    j->len = len;
    return j;
}

int users_hash_async(users_worker_t *w, const char *pw, size_t len, users_hash_fn done, void *arg)
{
    int rc;
    job_t *j = job_new(w, pw, len, &rc);
    if (j == NULL)
        return rc;
    j->hash_done = done;
    j->arg = arg;
    rc = submit(w, j);
    if (rc < 0)
        job_free(j);
    return rc;
}

int users_verify_async(users_worker_t *w, const char *pw, size_t len, const char *encoded,
                       users_verify_fn done, void *arg)
{
    if (encoded != NULL && strnlen(encoded, USERS_HASH_MAX) >= USERS_HASH_MAX)
        return -EINVAL;
    int rc;
    job_t *j = job_new(w, pw, len, &rc);
    if (j == NULL)
        return rc;
    j->verify = true;
    if (encoded != NULL && (j->encoded = strdup(encoded)) == NULL) {
        job_free(j);
        return -ENOMEM;
    }
    j->verify_done = done;
    j->arg = arg;
    rc = submit(w, j);
    if (rc < 0)
        job_free(j);
    return rc;
}

size_t users_worker_pending(const users_worker_t *w)
{
    return w != NULL ? w->pending : 0;
}

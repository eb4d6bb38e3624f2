/*
 * The store's job machinery: the write queue, the storage thread with its
 * group commit, and the hand-back of finished jobs to the event loop. The
 * SQL lives in sqlite.c.
 *
 * Life of a write. A store_*() write call on the loop thread copies its
 * arguments into one heap job (one allocation, strings included, so the
 * caller's buffers are free as soon as the call returns) and appends it to
 * the queue under st->mu. The storage thread wakes, takes every waiting job
 * (at most BATCH_MAX, to bound latency; see take_batch), and runs them as
 * one transaction:
 *
 *   BEGIN IMMEDIATE
 *     job 1              a single statement is atomic by itself: if it
 *     SAVEPOINT job      fails (say -EEXIST) only it is undone; a job of
 *     job 2 (delete)     several statements runs inside a savepoint and
 *     RELEASE job        a failure rolls back to it
 *     job 3 (telemetry)  ...except telemetry, see below
 *     ...
 *     latest values      telemetry_latest, once per (device, metric)
 *   COMMIT               one fsync of the WAL for the whole batch
 *
 * Telemetry jobs are most of the traffic and a savepoint each would cost
 * about a third of the batch, while they only fail on I/O trouble (bad
 * input is refused before queueing, points of a deleted device are
 * dropped). So they run bare, and if one fails the batch is rolled back and
 * run again with a savepoint around every telemetry job too: the failing
 * job alone gets its error, as it would have in the first place.
 *
 * If BEGIN or COMMIT fails, or SQLite rolls the whole transaction back on
 * its own (I/O error, disk full), every job of the batch gets that error:
 * nothing of it is reported durable. The finished batch is appended to the
 * done list and the thread writes to an eventfd; a libevent event on the
 * loop thread drains the done list and runs the callbacks. Jobs move through
 * one FIFO queue, batches are run and handed back in order, so callbacks run
 * in submission order.
 *
 * Presence and last_seq updates are collapsed per batch: for each device
 * only the last update of each kind in the batch is written (for last_seq,
 * with the largest seq of the batch); the earlier ones complete with it.
 * The telemetry path may submit a last_seq update per message, so this
 * keeps it to one UPDATE per device and batch.
 *
 * Control-plane writes (twins, commands, bulk jobs) are jobs like the
 * others. A command insert or job items put of n rows is a single job
 * whose rows are copied into its one allocation and inserted inside a
 * savepoint, so a bulk job of ten thousand devices is all or nothing.
 *
 * The security section's writes (schema v3) are jobs too. A bulk device
 * import is one job in a savepoint, like a bulk command insert, and its
 * keys are consecutive (see sqlite_security.c). An enrollment claim is one
 * job in a savepoint: check the group, insert the device, count the use;
 * any failure undoes all of it. An audit append is one statement whose
 * chain check (seq = last + 1) runs in the same transaction as the
 * appends before it, so entries submitted in order land in order. Their
 * rows are copied after the job, not into the union: the union is in every
 * telemetry job's allocation, and an audit row would make it half again
 * as large.
 *
 * The event is only added while jobs are pending, so a loop with nothing
 * else to do can return (start-up code runs the loop until a write lands).
 *
 * Threads: st->wr belongs to the storage thread from store_open() until
 * store_close() has joined it; st->rd, the event and the pending count's
 * only writers are the loop thread. st->mu guards the two lists and
 * `stopping`.
 */
#include "store/store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "store/sqlite_internal.h"

/* Jobs per transaction: large enough that one fsync carries thousands of
 * messages, small enough that a batch commits in a few milliseconds.
 * Light jobs (presence and last_seq updates, collapsed to one UPDATE per
 * device and batch) ride along without counting, up to JOBS_MAX in all:
 * the telemetry path submits a last_seq update with every message, and
 * counting those would halve the messages per fsync (measured: about a
 * third less throughput). */
#define BATCH_MAX 4096
#define JOBS_MAX (2 * BATCH_MAX)
/* Update collapse table: a power of two, at least twice JOBS_MAX. */
#define SEEN_SLOTS (2 * JOBS_MAX)
#define FIELD_SIZE(type, field) sizeof(((type *)0)->field)

typedef enum {
    JOB_NONE,           /* nothing to do: rc preset (e.g. -EINVAL, or 0) */
    JOB_DEVICE_INSERT,  /* u.dev, tags_json in the same allocation */
    JOB_DEVICE_DELETE,  /* u.key */
    JOB_DEVICE_SECRET,  /* u.secret */
    JOB_PRESENCE,       /* u.presence */
    JOB_TELEMETRY,      /* u.tel, points and strings in the same allocation */
    JOB_TOKEN_INSERT,   /* u.token */
    JOB_LAST_SEQ,       /* u.upd */
    JOB_TWIN_PUT,       /* u.twin, its texts in the same allocation */
    JOB_COMMAND_INSERT, /* u.cmds, rows and their texts in the same allocation */
    JOB_COMMAND_UPDATE, /* u.cmd_update, its texts in the same allocation */
    JOB_JOB_PUT,        /* u.job, spec in the same allocation */
    JOB_JOB_ITEMS_PUT,  /* u.items, rows and texts in the same allocation */
    /* Security section: u.sec; rows and texts in the same allocation. */
    JOB_DEVICE_REVOKE,      /* key, at */
    JOB_DEVICE_INSERT_MANY, /* row: n devices, then their tags */
    JOB_TOKEN_DELETE,       /* text: token id */
    JOB_USER_INSERT,        /* row: a store_user_t */
    JOB_USER_UPDATE,        /* row: a store_user_t */
    JOB_USER_DELETE,        /* text: user name */
    JOB_CERT_INSERT,        /* row: a store_cert_t, then its pem */
    JOB_CERT_REVOKE,        /* text: serial or NULL, key, at */
    JOB_ENROLL_INSERT,      /* row: a store_enrollment_t and its texts, hash */
    JOB_ENROLL_CLAIM,       /* text: enrollment id, at: now, row: the device */
    JOB_ENROLL_REVOKE,      /* text: enrollment id, at */
    JOB_AUDIT_APPEND,       /* row: a store_audit_t, then its detail */
} job_kind_t;

typedef struct job {
    struct job *next;
    job_kind_t kind;
    int rc;
    int64_t value;
    store_done_fn done;
    void *arg;
    union {
        store_device_t dev;
        int64_t key;
        struct {
            int64_t key;
            uint8_t salt[CRYPTO_SALT_LEN];
            uint8_t hash[CRYPTO_HASH_LEN];
        } secret;
        struct {
            int64_t key;
            struct job *by;    /* the device's last update in the batch, if later */
            int64_t last_seen; /* JOB_PRESENCE */
            bool online;
            int64_t seq; /* JOB_LAST_SEQ */
        } upd;
        struct {
            store_point_t *pts;
            size_t n;
        } tel;
        struct {
            store_token_t t;
            uint8_t hash[CRYPTO_HASH_LEN];
        } token;
        struct {
            int64_t key;
            store_twin_t t;
        } twin;
        struct {
            store_command_t *v;
            size_t n;
        } cmds;
        struct {
            const char *id, *status, *result;
            int64_t sent_at, finished_at;
        } cmd_update;
        store_job_t job;
        struct {
            const char *job;
            store_job_item_t *v;
            size_t n;
        } items;
        /* The security section's rows live after the job rather than in
         * the union, which every telemetry job carries. */
        struct {
            int64_t key;
            int64_t at;       /* a revocation time, or a claim's now */
            const char *text; /* an id, name or serial */
            void *row;
            size_t n;
            uint8_t hash[CRYPTO_HASH_LEN];
        } sec;
    } u;
} job_t;

typedef struct seen_slot {
    int64_t key;
    job_t *job; /* NULL: empty */
} seen_slot_t;

struct store {
    store_conn_t wr; /* storage thread */
    store_conn_t rd; /* loop thread */

    struct event *ev;
    int efd;
    bool ev_added;
    atomic_size_t pending;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *q_head, *q_tail; /* submitted, not yet taken */
    job_t *d_head, *d_tail; /* finished, callbacks not run */
    bool stopping;

    bool thread_started;
    pthread_t thread;
    seen_slot_t *seen; /* storage thread's presence collapse table */
};

void store_device_fini(store_device_t *d)
{
    if (!d)
        return;
    free(d->tags_json);
    d->tags_json = NULL;
}

void store_twin_fini(store_twin_t *t)
{
    if (!t)
        return;
    free(t->desired);
    t->desired = NULL;
    free(t->reported);
    t->reported = NULL;
}

void store_command_fini(store_command_t *c)
{
    if (!c)
        return;
    free(c->params);
    c->params = NULL;
    free(c->result);
    c->result = NULL;
}

void store_job_fini(store_job_t *j)
{
    if (!j)
        return;
    free(j->spec);
    j->spec = NULL;
}

void store_cert_fini(store_cert_t *c)
{
    if (!c)
        return;
    free(c->pem);
    c->pem = NULL;
}

void store_enrollment_fini(store_enrollment_t *e)
{
    if (!e)
        return;
    free(e->tags);
    e->tags = NULL;
    free(e->desired);
    e->desired = NULL;
}

void store_audit_fini(store_audit_t *a)
{
    if (!a)
        return;
    free(a->detail);
    a->detail = NULL;
}

size_t store_pending(const store_t *st)
{
    assert(st);
    return atomic_load(&((store_t *)st)->pending);
}

/* ---- Storage thread ----------------------------------------------------- */

/* Slot of key in the presence table (its own, or the empty one to take). */
static size_t seen_find(const store_t *st, int64_t key, size_t mask)
{
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 32) & mask;
    while (st->seen[i].job && st->seen[i].key != key)
        i = (i + 1) & mask;
    return i;
}

/* Points every update of `kind` that a later one in the batch overrides
 * at the last update of its device, the only one written. A written
 * last_seq update takes the largest seq of its device's updates. */
static void collapse(store_t *st, job_t *batch, job_kind_t kind, size_t count)
{
    size_t slots = 4;
    while (slots < 2 * count)
        slots *= 2;
    assert(slots <= SEEN_SLOTS);
    size_t mask = slots - 1;
    memset(st->seen, 0, slots * sizeof(*st->seen));
    for (job_t *j = batch; j; j = j->next) {
        if (j->kind == kind) {
            size_t i = seen_find(st, j->u.upd.key, mask);
            st->seen[i].key = j->u.upd.key;
            st->seen[i].job = j;
        }
    }
    for (job_t *j = batch; j; j = j->next) {
        if (j->kind != kind)
            continue;
        job_t *last = st->seen[seen_find(st, j->u.upd.key, mask)].job;
        j->u.upd.by = last == j ? NULL : last;
        if (last != j && j->u.upd.seq > last->u.upd.seq)
            last->u.upd.seq = j->u.upd.seq;
    }
}

static void collapse_updates(store_t *st, job_t *batch)
{
    size_t presence = 0, seq = 0;
    for (job_t *j = batch; j; j = j->next) {
        if (j->kind == JOB_PRESENCE || j->kind == JOB_LAST_SEQ) {
            j->u.upd.by = NULL;
            presence += j->kind == JOB_PRESENCE;
            seq += j->kind == JOB_LAST_SEQ;
        }
    }
    if (presence > 1)
        collapse(st, batch, JOB_PRESENCE, presence);
    if (seq > 1)
        collapse(st, batch, JOB_LAST_SEQ, seq);
}

/* Runs one job's statements; returns its result. */
static int run_job(store_t *st, job_t *j)
{
    store_conn_t *c = &st->wr;
    switch (j->kind) {
    case JOB_DEVICE_INSERT:
        return store_sqlite_device_insert(c, &j->u.dev, &j->value);
    case JOB_DEVICE_DELETE:
        return store_sqlite_device_delete(c, j->u.key);
    case JOB_DEVICE_SECRET:
        return store_sqlite_device_set_secret(c, j->u.secret.key, j->u.secret.salt,
                                              j->u.secret.hash);
    case JOB_PRESENCE:
        if (j->u.upd.by)
            return 0;
        return store_sqlite_device_set_presence(c, j->u.upd.key, j->u.upd.online,
                                                j->u.upd.last_seen);
    case JOB_LAST_SEQ:
        if (j->u.upd.by)
            return 0;
        return store_sqlite_device_set_last_seq(c, j->u.upd.key, j->u.upd.seq);
    case JOB_TELEMETRY:
        return store_sqlite_telemetry_append(c, j->u.tel.pts, j->u.tel.n);
    case JOB_TOKEN_INSERT:
        return store_sqlite_token_insert(c, &j->u.token.t, j->u.token.hash);
    case JOB_TWIN_PUT:
        return store_sqlite_twin_put(c, j->u.twin.key, &j->u.twin.t);
    case JOB_COMMAND_INSERT:
        return store_sqlite_command_insert(c, j->u.cmds.v, j->u.cmds.n);
    case JOB_COMMAND_UPDATE:
        return store_sqlite_command_update(c, j->u.cmd_update.id, j->u.cmd_update.status,
                                           j->u.cmd_update.result, j->u.cmd_update.sent_at,
                                           j->u.cmd_update.finished_at);
    case JOB_JOB_PUT:
        return store_sqlite_job_put(c, &j->u.job);
    case JOB_JOB_ITEMS_PUT:
        return store_sqlite_job_items_put(c, j->u.items.job, j->u.items.v, j->u.items.n);
    case JOB_DEVICE_REVOKE:
        return store_sqlite_device_revoke(c, j->u.sec.key, j->u.sec.at);
    case JOB_DEVICE_INSERT_MANY:
        return store_sqlite_device_insert_many(c, j->u.sec.row, j->u.sec.n, &j->value);
    case JOB_TOKEN_DELETE:
        return store_sqlite_token_delete(c, j->u.sec.text);
    case JOB_USER_INSERT:
        return store_sqlite_user_insert(c, j->u.sec.row);
    case JOB_USER_UPDATE:
        return store_sqlite_user_update(c, j->u.sec.row);
    case JOB_USER_DELETE:
        return store_sqlite_user_delete(c, j->u.sec.text);
    case JOB_CERT_INSERT:
        return store_sqlite_cert_insert(c, j->u.sec.row);
    case JOB_CERT_REVOKE:
        return store_sqlite_cert_revoke(c, j->u.sec.text, j->u.sec.key, j->u.sec.at);
    case JOB_ENROLL_INSERT:
        return store_sqlite_enrollment_insert(c, j->u.sec.row, j->u.sec.hash);
    case JOB_ENROLL_CLAIM:
        return store_sqlite_enrollment_claim(c, j->u.sec.text, j->u.sec.at, j->u.sec.row,
                                             &j->value);
    case JOB_ENROLL_REVOKE:
        return store_sqlite_enrollment_revoke(c, j->u.sec.text, j->u.sec.at);
    case JOB_AUDIT_APPEND:
        return store_sqlite_audit_append(c, j->u.sec.row);
    case JOB_NONE:
        break;
    }
    return j->rc;
}

/* Jobs of more than one statement need a savepoint to fail alone. A
 * savepoint per telemetry job would cost about a third of the batch, so
 * those run bare first (see run_batch). */
static bool needs_savepoint(const job_t *j, bool careful)
{
    switch (j->kind) {
    case JOB_DEVICE_DELETE:
    case JOB_ENROLL_CLAIM:
        return true;
    case JOB_DEVICE_INSERT_MANY:
        return j->u.sec.n > 1;
    case JOB_TELEMETRY:
        return careful;
    case JOB_COMMAND_INSERT:
        return j->u.cmds.n > 1;
    case JOB_JOB_ITEMS_PUT:
        return j->u.items.n > 1;
    default:
        return false;
    }
}

static void fail_batch(job_t *batch, int err)
{
    for (job_t *j = batch; j; j = j->next) {
        if (j->kind != JOB_NONE) {
            j->rc = err;
            j->value = 0;
        }
    }
}

/* One attempt at a batch: 0 once committed (each job's rc set), -EAGAIN
 * if a job without a savepoint failed halfway and the batch was rolled
 * back so it can run again carefully, or the error that sank the batch. */
static int try_batch(store_t *st, job_t *batch, bool careful)
{
    store_conn_t *c = &st->wr;
    int err = store_sqlite_txn(c, SQL_BEGIN);
    if (err < 0)
        goto fail;
    store_sqlite_batch_begin(c);
    for (job_t *j = batch; j; j = j->next) {
        if (j->kind == JOB_NONE)
            continue;
        bool sp = needs_savepoint(j, careful);
        if (sp && (err = store_sqlite_txn(c, SQL_SAVEPOINT)) < 0)
            goto fail;
        j->value = 0;
        j->rc = run_job(st, j);
        if (j->rc < 0) {
            j->value = 0;
            /* SQLite may have rolled back the whole transaction by itself:
             * then the earlier jobs are gone too. */
            if (!store_sqlite_in_txn(c)) {
                err = j->rc;
                goto fail;
            }
            if (j->kind == JOB_TELEMETRY && !sp) {
                err = -EAGAIN;
                goto fail;
            }
            if (sp && (err = store_sqlite_txn(c, SQL_ROLLBACK_TO)) < 0)
                goto fail;
        }
        store_sqlite_job_end(c, j->rc == 0);
        if (sp && (err = store_sqlite_txn(c, SQL_RELEASE)) < 0)
            goto fail;
    }
    if ((err = store_sqlite_batch_flush(c)) < 0 || (err = store_sqlite_txn(c, SQL_COMMIT)) < 0)
        goto fail;
    return 0;
fail:
    if (store_sqlite_in_txn(c))
        store_sqlite_txn(c, SQL_ROLLBACK);
    store_sqlite_batch_abort(c);
    return err;
}

/* Runs a batch as one transaction and sets every job's rc. Telemetry jobs
 * run without savepoints; they only fail on I/O trouble, and if one does
 * the batch is rolled back and run again with a savepoint per job, so
 * that only the failing job gets the error. */
static void run_batch(store_t *st, job_t *batch)
{
    bool work = false;
    for (job_t *j = batch; j && !work; j = j->next)
        work = j->kind != JOB_NONE;
    if (!work)
        return;
    collapse_updates(st, batch);
    int err = try_batch(st, batch, false);
    if (err == -EAGAIN)
        err = try_batch(st, batch, true);
    if (err < 0) {
        fail_batch(batch, err == -EAGAIN ? -EIO : err);
        return;
    }
    /* An overridden update shares the fate of the one written. */
    for (job_t *j = batch; j; j = j->next) {
        if ((j->kind != JOB_PRESENCE && j->kind != JOB_LAST_SEQ) || !j->u.upd.by)
            continue;
        j->rc = j->u.upd.by->rc;
    }
}

static bool job_light(const job_t *j)
{
    return j->kind == JOB_PRESENCE || j->kind == JOB_LAST_SEQ;
}

/* Detaches jobs from the queue head: up to BATCH_MAX that are not light,
 * and JOBS_MAX in all; caller holds st->mu. */
static job_t *take_batch(store_t *st)
{
    job_t *head = st->q_head, *last = head;
    if (!head)
        return NULL;
    size_t heavy = !job_light(head);
    for (size_t n = 1; n < JOBS_MAX && last->next; n++) {
        bool light = job_light(last->next);
        if (!light && heavy == BATCH_MAX)
            break;
        heavy += !light;
        last = last->next;
    }
    st->q_head = last->next;
    if (!st->q_head)
        st->q_tail = NULL;
    last->next = NULL;
    return head;
}

/* Appends a finished batch to the done list; caller holds st->mu. */
static void push_done(store_t *st, job_t *batch)
{
    job_t *last = batch;
    while (last->next)
        last = last->next;
    if (st->d_tail)
        st->d_tail->next = batch;
    else
        st->d_head = batch;
    st->d_tail = last;
}

static void *storage_main(void *arg)
{
    store_t *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->q_head && !st->stopping)
            pthread_cond_wait(&st->cv, &st->mu);
        job_t *batch = take_batch(st);
        if (!batch)
            break; /* stopping, and the queue is drained */
        pthread_mutex_unlock(&st->mu);
        run_batch(st, batch);
        pthread_mutex_lock(&st->mu);
        push_done(st, batch);
        pthread_mutex_unlock(&st->mu);
        /* Cannot fail short of a counter overflow; a lost wake-up would be
         * repaired by the next one. */
        uint64_t one = 1;
        ssize_t w = write(st->efd, &one, sizeof(one));
        (void)w;
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

/* ---- Loop thread -------------------------------------------------------- */

/* Runs the callbacks of every finished job, in order, and frees the jobs. */
static void run_completions(store_t *st)
{
    pthread_mutex_lock(&st->mu);
    job_t *j = st->d_head;
    st->d_head = st->d_tail = NULL;
    pthread_mutex_unlock(&st->mu);
    while (j) {
        job_t *next = j->next;
        atomic_fetch_sub(&st->pending, 1);
        if (j->done)
            j->done(j->arg, j->rc, j->value);
        free(j);
        j = next;
    }
    if (atomic_load(&st->pending) == 0 && st->ev_added) {
        event_del(st->ev);
        st->ev_added = false;
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

static void submit(store_t *st, job_t *j)
{
    j->next = NULL;
    if (atomic_fetch_add(&st->pending, 1) == 0 && !st->ev_added) {
        /* Only fails on a broken base; the jobs then complete at close. */
        if (event_add(st->ev, NULL) == 0)
            st->ev_added = true;
    }
    pthread_mutex_lock(&st->mu);
    if (st->q_tail)
        st->q_tail->next = j;
    else
        st->q_head = j;
    st->q_tail = j;
    pthread_mutex_unlock(&st->mu);
    pthread_cond_signal(&st->cv);
}

/* Allocates a zeroed job of `bytes` (>= sizeof(job_t)). Without memory the
 * callback runs at once with -ENOMEM: there is nowhere to queue it. */
static job_t *job_new(size_t bytes, job_kind_t kind, store_done_fn done, void *arg)
{
    assert(bytes >= sizeof(job_t));
    job_t *j = calloc(1, bytes);
    if (!j) {
        if (done)
            done(arg, -ENOMEM, 0);
        return NULL;
    }
    j->kind = kind;
    j->done = done;
    j->arg = arg;
    return j;
}

/* Queues a job that only reports rc, in order with the others. */
static void submit_result(store_t *st, int rc, store_done_fn done, void *arg)
{
    job_t *j = job_new(sizeof(job_t), JOB_NONE, done, arg);
    if (!j)
        return;
    j->rc = rc;
    submit(st, j);
}

int store_open(const char *dir, struct event_base *base, store_t **out)
{
    assert(dir && base && out);
    int rc;
    bool mu_ok = false, cv_ok = false;
    store_t *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->efd = -1;
    atomic_init(&st->pending, 0);
    st->seen = calloc(SEEN_SLOTS, sizeof(*st->seen));
    if (!st->seen) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = store_sqlite_open_writer(dir, &st->wr);
    if (rc < 0)
        goto fail;
    rc = store_sqlite_open_reader(dir, &st->rd);
    if (rc < 0)
        goto fail;
    st->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (st->efd < 0) {
        rc = -errno;
        goto fail;
    }
    st->ev = event_new(base, st->efd, EV_READ | EV_PERSIST, on_wakeup, st);
    if (!st->ev) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = -pthread_mutex_init(&st->mu, NULL)) < 0)
        goto fail;
    mu_ok = true;
    if ((rc = -pthread_cond_init(&st->cv, NULL)) < 0)
        goto fail;
    cv_ok = true;
    /* Signals belong to the loop thread: the storage thread blocks them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&st->thread, NULL, storage_main, st);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0)
        goto fail;
    st->thread_started = true;
    *out = st;
    return 0;
fail:
    if (cv_ok)
        pthread_cond_destroy(&st->cv);
    if (mu_ok)
        pthread_mutex_destroy(&st->mu);
    if (st->ev)
        event_free(st->ev);
    if (st->efd >= 0)
        close(st->efd);
    store_sqlite_close(&st->rd);
    store_sqlite_close(&st->wr);
    free(st->seen);
    free(st);
    return rc;
}

void store_close(store_t *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->mu);
    st->stopping = true;
    pthread_mutex_unlock(&st->mu);
    pthread_cond_signal(&st->cv);
    if (st->thread_started)
        pthread_join(st->thread, NULL);
    /* The thread committed everything queued before it stopped. Callbacks
     * may queue more; with the thread gone, run those here. */
    run_completions(st);
    for (;;) {
        pthread_mutex_lock(&st->mu);
        job_t *batch = take_batch(st);
        pthread_mutex_unlock(&st->mu);
        if (!batch)
            break;
        run_batch(st, batch);
        pthread_mutex_lock(&st->mu);
        push_done(st, batch);
        pthread_mutex_unlock(&st->mu);
        run_completions(st);
    }
    assert(atomic_load(&st->pending) == 0);
    event_free(st->ev);
    close(st->efd);
    store_sqlite_close(&st->rd);
    store_sqlite_close(&st->wr);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    free(st->seen);
    free(st);
}

/* ---- Writes ------------------------------------------------------------- */

/* Adds n to *total; false on overflow. */
static bool size_add(size_t *total, size_t n)
{
    if (n > SIZE_MAX - *total)
        return false;
    *total += n;
    return true;
}

/* The checks every device insert shares (single, bulk, enrollment claim):
 * a valid id; adds the bytes its tags take to *bytes. */
static bool device_ok(const store_device_t *d, size_t *bytes)
{
    size_t idlen = strnlen(d->id, sizeof(d->id));
    if (!util_id_valid(d->id, idlen))
        return false;
    return size_add(bytes, strlen(d->tags_json ? d->tags_json : "{}") + 1);
}

/* Copies a device checked by device_ok, its tags to *text (advanced). */
static void device_copy(store_device_t *dst, const store_device_t *src, char **text, int64_t now)
{
    const char *tags = src->tags_json ? src->tags_json : "{}";
    size_t len = strlen(tags) + 1;
    *dst = *src;
    dst->tags_json = memcpy(*text, tags, len);
    *text += len;
    if (!dst->created_at)
        dst->created_at = now;
}

void store_device_insert(store_t *st, const store_device_t *d, store_done_fn done, void *arg)
{
    assert(st && d);
    size_t bytes = sizeof(job_t);
    if (!device_ok(d, &bytes)) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j = job_new(bytes, JOB_DEVICE_INSERT, done, arg);
    if (!j)
        return;
    char *text = (char *)(j + 1);
    device_copy(&j->u.dev, d, &text, util_now_ms());
    submit(st, j);
}

void store_device_delete(store_t *st, int64_t key, store_done_fn done, void *arg)
{
    assert(st);
    job_t *j = job_new(sizeof(job_t), JOB_DEVICE_DELETE, done, arg);
    if (!j)
        return;
    j->u.key = key;
    submit(st, j);
}

void store_device_set_secret(store_t *st, int64_t key, const uint8_t salt[CRYPTO_SALT_LEN],
                             const uint8_t hash[CRYPTO_HASH_LEN], store_done_fn done, void *arg)
{
    assert(st && salt && hash);
    job_t *j = job_new(sizeof(job_t), JOB_DEVICE_SECRET, done, arg);
    if (!j)
        return;
    j->u.secret.key = key;
    memcpy(j->u.secret.salt, salt, CRYPTO_SALT_LEN);
    memcpy(j->u.secret.hash, hash, CRYPTO_HASH_LEN);
    submit(st, j);
}

void store_device_set_presence(store_t *st, int64_t key, bool online, int64_t last_seen,
                               store_done_fn done, void *arg)
{
    assert(st);
    job_t *j = job_new(sizeof(job_t), JOB_PRESENCE, done, arg);
    if (!j)
        return;
    j->u.upd.key = key;
    j->u.upd.online = online;
    j->u.upd.last_seen = last_seen;
    submit(st, j);
}

void store_telemetry_append(store_t *st, const store_point_t *pts, size_t n, store_done_fn done,
                            void *arg)
{
    assert(st);
    /* One allocation: [job_t][n x store_point_t][metric and string text].
     * sizeof(job_t) is a multiple of its alignment, which covers the
     * int64/double members of store_point_t. */
    size_t bytes = sizeof(job_t);
    bool ok = n == 0 || (pts && n <= (SIZE_MAX - bytes) / sizeof(store_point_t));
    if (ok)
        bytes += n * sizeof(store_point_t);
    for (size_t i = 0; ok && i < n; i++) {
        const store_point_t *p = &pts[i];
        ok =
            p->metric && (p->value.kind == STORE_VALUE_NUMBER ||
                          p->value.kind == STORE_VALUE_BOOL || p->value.kind == STORE_VALUE_STRING);
        ok = ok && size_add(&bytes, strlen(p->metric) + 1);
        if (ok && p->value.kind == STORE_VALUE_STRING && p->value.str)
            ok = size_add(&bytes, strlen(p->value.str) + 1);
    }
    if (!ok) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    if (n == 0) {
        submit_result(st, 0, done, arg);
        return;
    }
    job_t *j = job_new(bytes, JOB_TELEMETRY, done, arg);
    if (!j)
        return;
    store_point_t *dst = (store_point_t *)(j + 1);
    char *text = (char *)(dst + n);
    for (size_t i = 0; i < n; i++) {
        dst[i] = pts[i];
        size_t len = strlen(pts[i].metric) + 1;
        memcpy(text, pts[i].metric, len);
        dst[i].metric = text;
        text += len;
        dst[i].value.str = NULL;
        if (pts[i].value.kind == STORE_VALUE_STRING && pts[i].value.str) {
            len = strlen(pts[i].value.str) + 1;
            memcpy(text, pts[i].value.str, len);
            dst[i].value.str = text;
            text += len;
        }
    }
    j->u.tel.pts = dst;
    j->u.tel.n = n;
    submit(st, j);
}

void store_token_insert(store_t *st, const store_token_t *t, const uint8_t hash[CRYPTO_HASH_LEN],
                        store_done_fn done, void *arg)
{
    assert(st && t && hash);
    job_t *j = job_new(sizeof(job_t), JOB_TOKEN_INSERT, done, arg);
    if (!j)
        return;
    j->u.token.t = *t;
    /* The struct's strings may fill their arrays: terminate the copies. */
    j->u.token.t.id[sizeof(t->id) - 1] = '\0';
    j->u.token.t.name[sizeof(t->name) - 1] = '\0';
    j->u.token.t.role[sizeof(t->role) - 1] = '\0';
    memcpy(j->u.token.hash, hash, CRYPTO_HASH_LEN);
    submit(st, j);
}

void store_device_set_last_seq(store_t *st, int64_t key, int64_t seq, store_done_fn done, void *arg)
{
    assert(st);
    job_t *j = job_new(sizeof(job_t), JOB_LAST_SEQ, done, arg);
    if (!j)
        return;
    j->u.upd.key = key;
    j->u.upd.seq = seq;
    submit(st, j);
}

/* True if s is a string of fewer than cap bytes (so it fits a char[cap]
 * with its terminator), and not empty when required. Fixed arrays that a
 * caller filled to the brim are refused rather than cut: a cut id could
 * name another row. */
static bool text_fits(const char *s, size_t cap, bool nonempty)
{
    if (!s)
        return false;
    size_t len = strnlen(s, cap);
    return len < cap && (len > 0 || !nonempty);
}

/* Copies len bytes of s (its terminator included) to *text and advances it. */
static char *put_text(char **text, const char *s, size_t len)
{
    char *p = memcpy(*text, s, len);
    *text += len;
    return p;
}

void store_twin_put(store_t *st, int64_t device_key, const store_twin_t *t, store_done_fn done,
                    void *arg)
{
    assert(st && t);
    const char *desired = t->desired ? t->desired : "{}";
    const char *reported = t->reported ? t->reported : "{}";
    size_t dlen = strlen(desired) + 1, rlen = strlen(reported) + 1, bytes = sizeof(job_t);
    if (!size_add(&bytes, dlen) || !size_add(&bytes, rlen)) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j = job_new(bytes, JOB_TWIN_PUT, done, arg);
    if (!j)
        return;
    char *text = (char *)(j + 1);
    j->u.twin.key = device_key;
    j->u.twin.t = *t;
    j->u.twin.t.desired = put_text(&text, desired, dlen);
    j->u.twin.t.reported = put_text(&text, reported, rlen);
    submit(st, j);
}

void store_command_insert(store_t *st, const store_command_t *cmds, size_t n, store_done_fn done,
                          void *arg)
{
    assert(st);
    /* One allocation: [job_t][n x store_command_t][params and result text]. */
    size_t bytes = sizeof(job_t);
    bool ok = n == 0 || (cmds && n <= (SIZE_MAX - bytes) / sizeof(store_command_t));
    if (ok)
        bytes += n * sizeof(store_command_t);
    for (size_t i = 0; ok && i < n; i++) {
        const store_command_t *c = &cmds[i];
        ok = text_fits(c->id, sizeof(c->id), true) && text_fits(c->name, sizeof(c->name), true) &&
             text_fits(c->status, sizeof(c->status), true) &&
             text_fits(c->job, sizeof(c->job), false);
        ok = ok && size_add(&bytes, strlen(c->params ? c->params : "{}") + 1);
        if (ok && c->result)
            ok = size_add(&bytes, strlen(c->result) + 1);
    }
    if (!ok) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    if (n == 0) {
        submit_result(st, 0, done, arg);
        return;
    }
    job_t *j = job_new(bytes, JOB_COMMAND_INSERT, done, arg);
    if (!j)
        return;
    store_command_t *dst = (store_command_t *)(j + 1);
    char *text = (char *)(dst + n);
    for (size_t i = 0; i < n; i++) {
        const char *params = cmds[i].params ? cmds[i].params : "{}";
        dst[i] = cmds[i];
        dst[i].device_id[0] = '\0';
        dst[i].params = put_text(&text, params, strlen(params) + 1);
        if (cmds[i].result)
            dst[i].result = put_text(&text, cmds[i].result, strlen(cmds[i].result) + 1);
    }
    j->u.cmds.v = dst;
    j->u.cmds.n = n;
    submit(st, j);
}

void store_command_update(store_t *st, const char *id, const char *status, const char *result,
                          int64_t sent_at, int64_t finished_at, store_done_fn done, void *arg)
{
    assert(st);
    size_t bytes = sizeof(job_t);
    bool ok = text_fits(id, FIELD_SIZE(store_command_t, id), true) &&
              text_fits(status, FIELD_SIZE(store_command_t, status), true);
    size_t ilen = 0, slen = 0, rlen = 0;
    if (ok) {
        ilen = strlen(id) + 1;
        slen = strlen(status) + 1;
        rlen = result ? strlen(result) + 1 : 0;
        ok = size_add(&bytes, ilen + slen) && size_add(&bytes, rlen);
    }
    if (!ok) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j = job_new(bytes, JOB_COMMAND_UPDATE, done, arg);
    if (!j)
        return;
    char *text = (char *)(j + 1);
    j->u.cmd_update.id = put_text(&text, id, ilen);
    j->u.cmd_update.status = put_text(&text, status, slen);
    j->u.cmd_update.result = result ? put_text(&text, result, rlen) : NULL;
    j->u.cmd_update.sent_at = sent_at;
    j->u.cmd_update.finished_at = finished_at;
    submit(st, j);
}

void store_job_put(store_t *st, const store_job_t *jb, store_done_fn done, void *arg)
{
    assert(st && jb);
    const char *spec = jb->spec ? jb->spec : "{}";
    size_t len = strlen(spec) + 1, bytes = sizeof(job_t);
    bool ok = text_fits(jb->id, sizeof(jb->id), true) &&
              text_fits(jb->kind, sizeof(jb->kind), true) &&
              text_fits(jb->status, sizeof(jb->status), true) && size_add(&bytes, len);
    if (!ok) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j = job_new(bytes, JOB_JOB_PUT, done, arg);
    if (!j)
        return;
    char *text = (char *)(j + 1);
    j->u.job = *jb;
    j->u.job.spec = put_text(&text, spec, len);
    submit(st, j);
}

void store_job_items_put(store_t *st, const char *job, const store_job_item_t *items, size_t n,
                         store_done_fn done, void *arg)
{
    assert(st);
    /* One allocation: [job_t][n x store_job_item_t][job id][detail text]. */
    size_t bytes = sizeof(job_t);
    bool ok = text_fits(job, FIELD_SIZE(store_job_t, id), true) &&
              (n == 0 || (items && n <= (SIZE_MAX - bytes) / sizeof(store_job_item_t)));
    if (ok) {
        bytes += n * sizeof(store_job_item_t);
        ok = size_add(&bytes, strlen(job) + 1);
    }
    for (size_t i = 0; ok && i < n; i++) {
        ok = text_fits(items[i].status, sizeof(items[i].status), true);
        if (ok && items[i].detail)
            ok = size_add(&bytes, strlen(items[i].detail) + 1);
    }
    if (!ok) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    if (n == 0) {
        submit_result(st, 0, done, arg);
        return;
    }
    job_t *j = job_new(bytes, JOB_JOB_ITEMS_PUT, done, arg);
    if (!j)
        return;
    store_job_item_t *dst = (store_job_item_t *)(j + 1);
    char *text = (char *)(dst + n);
    j->u.items.job = put_text(&text, job, strlen(job) + 1);
    for (size_t i = 0; i < n; i++) {
        dst[i] = items[i];
        dst[i].device_id[0] = '\0';
        if (items[i].detail)
            dst[i].detail = put_text(&text, items[i].detail, strlen(items[i].detail) + 1);
    }
    j->u.items.v = dst;
    j->u.items.n = n;
    submit(st, j);
}

/* ---- Security section: writes ------------------------------------------- */

void store_device_revoke(store_t *st, int64_t key, int64_t revoked_at, store_done_fn done,
                         void *arg)
{
    assert(st);
    if (revoked_at < 0) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j = job_new(sizeof(job_t), JOB_DEVICE_REVOKE, done, arg);
    if (!j)
        return;
    j->u.sec.key = key;
    j->u.sec.at = revoked_at;
    submit(st, j);
}

void store_device_insert_many(store_t *st, const store_device_t *devs, size_t n, store_done_fn done,
                              void *arg)
{
    assert(st);
    /* One allocation: [job_t][n x store_device_t][tags text]. */
    size_t bytes = sizeof(job_t);
    bool ok = n == 0 || (devs && n <= (SIZE_MAX - bytes) / sizeof(store_device_t));
    if (ok)
        bytes += n * sizeof(store_device_t);
    for (size_t i = 0; ok && i < n; i++)
        ok = device_ok(&devs[i], &bytes);
    if (!ok) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    if (n == 0) {
        submit_result(st, 0, done, arg);
        return;
    }
    job_t *j = job_new(bytes, JOB_DEVICE_INSERT_MANY, done, arg);
    if (!j)
        return;
    store_device_t *dst = (store_device_t *)(j + 1);
    char *text = (char *)(dst + n);
    int64_t now = util_now_ms();
    for (size_t i = 0; i < n; i++)
        device_copy(&dst[i], &devs[i], &text, now);
    j->u.sec.row = dst;
    j->u.sec.n = n;
    submit(st, j);
}

/* A job keyed by one text, copied after the job with `extra` more bytes
 * of room behind it (for a row; the caller fills it in and submits). NULL
 * once the failure is queued or reported: -EINVAL unless text is a
 * non-empty string shorter than cap. */
static job_t *text_job(store_t *st, job_kind_t kind, const char *text, size_t cap, size_t extra,
                       store_done_fn done, void *arg)
{
    size_t len = 0, bytes = sizeof(job_t) + extra;
    bool ok = text_fits(text, cap, true);
    if (ok) {
        len = strlen(text) + 1;
        ok = size_add(&bytes, len);
    }
    if (!ok) {
        submit_result(st, -EINVAL, done, arg);
        return NULL;
    }
    job_t *j = job_new(bytes, kind, done, arg);
    if (!j)
        return NULL;
    char *p = (char *)(j + 1) + extra;
    j->u.sec.text = put_text(&p, text, len);
    return j;
}

void store_token_delete(store_t *st, const char *id, store_done_fn done, void *arg)
{
    assert(st);
    job_t *j = text_job(st, JOB_TOKEN_DELETE, id, FIELD_SIZE(store_token_t, id), 0, done, arg);
    if (j)
        submit(st, j);
}

static void submit_user(store_t *st, job_kind_t kind, const store_user_t *u, store_done_fn done,
                        void *arg)
{
    bool ok = text_fits(u->name, sizeof(u->name), true) &&
              text_fits(u->role, sizeof(u->role), true) &&
              text_fits(u->password_hash, sizeof(u->password_hash), true);
    if (!ok) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j = job_new(sizeof(job_t) + sizeof(store_user_t), kind, done, arg);
    if (!j)
        return;
    store_user_t *row = (store_user_t *)(j + 1);
    *row = *u;
    j->u.sec.row = row;
    submit(st, j);
}

void store_user_insert(store_t *st, const store_user_t *u, store_done_fn done, void *arg)
{
    assert(st && u);
    submit_user(st, JOB_USER_INSERT, u, done, arg);
}

void store_user_update(store_t *st, const store_user_t *u, store_done_fn done, void *arg)
{
    assert(st && u);
    submit_user(st, JOB_USER_UPDATE, u, done, arg);
}

void store_user_delete(store_t *st, const char *name, store_done_fn done, void *arg)
{
    assert(st);
    job_t *j = text_job(st, JOB_USER_DELETE, name, FIELD_SIZE(store_user_t, name), 0, done, arg);
    if (j)
        submit(st, j);
}

void store_cert_insert(store_t *st, const store_cert_t *c, store_done_fn done, void *arg)
{
    assert(st && c);
    /* One allocation: [job_t][store_cert_t][pem]. */
    size_t bytes = sizeof(job_t) + sizeof(store_cert_t);
    bool ok = text_fits(c->serial, sizeof(c->serial), true) && c->pem &&
              size_add(&bytes, strlen(c->pem) + 1);
    if (!ok) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j = job_new(bytes, JOB_CERT_INSERT, done, arg);
    if (!j)
        return;
    store_cert_t *row = (store_cert_t *)(j + 1);
    char *text = (char *)(row + 1);
    *row = *c;
    row->device_id[0] = '\0';
    row->pem = put_text(&text, c->pem, strlen(c->pem) + 1);
    j->u.sec.row = row;
    submit(st, j);
}

/* With a serial, device_key 0 matches any device; otherwise the serial
 * must belong to device_key (-ENOENT if not), so that a request naming a
 * device cannot revoke another device's certificate. */
void store_cert_revoke(store_t *st, const char *serial, int64_t device_key, int64_t revoked_at,
                       store_done_fn done, void *arg)
{
    assert(st);
    /* revoked_at 0 means "not revoked": setting it would change nothing. */
    if (revoked_at <= 0 || device_key < 0 || (!serial && device_key == 0)) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j;
    if (serial)
        j = text_job(st, JOB_CERT_REVOKE, serial, FIELD_SIZE(store_cert_t, serial), 0, done, arg);
    else
        j = job_new(sizeof(job_t), JOB_CERT_REVOKE, done, arg);
    if (!j)
        return;
    j->u.sec.key = device_key;
    j->u.sec.at = revoked_at;
    submit(st, j);
}

void store_enrollment_insert(store_t *st, const store_enrollment_t *e,
                             const uint8_t token_hash[CRYPTO_HASH_LEN], store_done_fn done,
                             void *arg)
{
    assert(st && e && token_hash);
    /* One allocation: [job_t][store_enrollment_t][tags][desired]. */
    const char *tags = e->tags ? e->tags : "{}";
    const char *desired = e->desired ? e->desired : "{}";
    size_t tlen = strlen(tags) + 1, dlen = strlen(desired) + 1;
    size_t bytes = sizeof(job_t) + sizeof(store_enrollment_t);
    bool ok = text_fits(e->id, sizeof(e->id), true) && text_fits(e->name, sizeof(e->name), false) &&
              text_fits(e->grp, sizeof(e->grp), false) && e->max_uses >= 0 && e->uses >= 0 &&
              e->expires_at >= 0 && e->revoked_at >= 0 && size_add(&bytes, tlen) &&
              size_add(&bytes, dlen);
    if (!ok) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j = job_new(bytes, JOB_ENROLL_INSERT, done, arg);
    if (!j)
        return;
    store_enrollment_t *row = (store_enrollment_t *)(j + 1);
    char *text = (char *)(row + 1);
    *row = *e;
    row->tags = put_text(&text, tags, tlen);
    row->desired = put_text(&text, desired, dlen);
    j->u.sec.row = row;
    memcpy(j->u.sec.hash, token_hash, CRYPTO_HASH_LEN);
    submit(st, j);
}

void store_enrollment_claim(store_t *st, const char *enrollment_id, int64_t now,
                            const store_device_t *d, store_done_fn done, void *arg)
{
    assert(st && d);
    /* One allocation: [job_t][store_device_t][enrollment id][tags]; the
     * device goes through the checks and copy of store_device_insert. */
    size_t extra = sizeof(store_device_t);
    if (!device_ok(d, &extra)) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j = text_job(st, JOB_ENROLL_CLAIM, enrollment_id, FIELD_SIZE(store_enrollment_t, id),
                        extra, done, arg);
    if (!j)
        return;
    store_device_t *row = (store_device_t *)(j + 1);
    char *text = (char *)(row + 1);
    device_copy(row, d, &text, util_now_ms());
    j->u.sec.row = row;
    j->u.sec.at = now;
    submit(st, j);
}

void store_enrollment_revoke(store_t *st, const char *id, int64_t revoked_at, store_done_fn done,
                             void *arg)
{
    assert(st);
    if (revoked_at <= 0) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j =
        text_job(st, JOB_ENROLL_REVOKE, id, FIELD_SIZE(store_enrollment_t, id), 0, done, arg);
    if (!j)
        return;
    j->u.sec.at = revoked_at;
    submit(st, j);
}

void store_audit_append(store_t *st, const store_audit_t *a, store_done_fn done, void *arg)
{
    assert(st && a);
    /* One allocation: [job_t][store_audit_t][detail]. */
    const char *detail = a->detail ? a->detail : "{}";
    size_t len = strlen(detail) + 1, bytes = sizeof(job_t) + sizeof(store_audit_t);
    bool ok = a->seq >= 1 && text_fits(a->actor, sizeof(a->actor), false) &&
              text_fits(a->action, sizeof(a->action), true) &&
              text_fits(a->object, sizeof(a->object), false) &&
              text_fits(a->outcome, sizeof(a->outcome), false) &&
              text_fits(a->source, sizeof(a->source), false) && size_add(&bytes, len);
    if (!ok) {
        submit_result(st, -EINVAL, done, arg);
        return;
    }
    job_t *j = job_new(bytes, JOB_AUDIT_APPEND, done, arg);
    if (!j)
        return;
    store_audit_t *row = (store_audit_t *)(j + 1);
    char *text = (char *)(row + 1);
    *row = *a;
    row->detail = put_text(&text, detail, len);
    j->u.sec.row = row;
    submit(st, j);
}

/* ---- Reads -------------------------------------------------------------- */

int store_device_foreach(store_t *st, int (*fn)(void *arg, const store_device_t *d), void *arg)
{
    assert(st && fn);
    return store_sqlite_device_foreach(&st->rd, fn, arg);
}

int store_device_get(store_t *st, const char *id, store_device_t *out)
{
    assert(st && out);
    if (!id)
        return -EINVAL;
    return store_sqlite_device_get(&st->rd, id, out);
}

int store_device_list(store_t *st, const char *after, const char *tag_key, const char *tag_value,
                      int limit, int (*fn)(void *arg, const store_device_t *d), void *arg)
{
    assert(st && fn);
    if (limit <= 0)
        return -EINVAL;
    return store_sqlite_device_list(&st->rd, after, tag_key, tag_value, limit, fn, arg);
}

int store_telemetry_latest(store_t *st, int64_t device_key,
                           int (*fn)(void *arg, const char *metric, int64_t ts,
                                     const store_value_t *v),
                           void *arg)
{
    assert(st && fn);
    return store_sqlite_telemetry_latest(&st->rd, device_key, fn, arg);
}

int store_telemetry_query(store_t *st, int64_t device_key, const char *metric, int64_t since,
                          int64_t until, int64_t after_ts, int64_t after_seq, int limit,
                          int (*fn)(void *arg, const char *metric, int64_t ts, int64_t seq,
                                    const store_value_t *v),
                          void *arg)
{
    assert(st && fn);
    if (limit <= 0)
        return -EINVAL;
    return store_sqlite_telemetry_query(&st->rd, device_key, metric, since, until, after_ts,
                                        after_seq, limit, fn, arg);
}

int store_token_find(store_t *st, const uint8_t hash[CRYPTO_HASH_LEN], store_token_t *out)
{
    assert(st && hash && out);
    return store_sqlite_token_find(&st->rd, hash, out);
}

int store_token_count(store_t *st, int64_t *out)
{
    assert(st && out);
    return store_sqlite_token_count(&st->rd, out);
}

int store_twin_get(store_t *st, int64_t device_key, store_twin_t *out)
{
    assert(st && out);
    return store_sqlite_twin_get(&st->rd, device_key, out);
}

int store_command_get(store_t *st, const char *id, store_command_t *out)
{
    assert(st && out);
    if (!id)
        return -EINVAL;
    return store_sqlite_command_get(&st->rd, id, out);
}

int store_command_list(store_t *st, int64_t device_key, int64_t before_ts, const char *before_id,
                       int limit, int (*fn)(void *arg, const store_command_t *c), void *arg)
{
    assert(st && fn);
    if (limit <= 0)
        return -EINVAL;
    return store_sqlite_command_list(&st->rd, device_key, before_ts, before_id, limit, fn, arg);
}

int store_command_foreach_open(store_t *st, int (*fn)(void *arg, const store_command_t *c),
                               void *arg)
{
    assert(st && fn);
    return store_sqlite_command_foreach_open(&st->rd, fn, arg);
}

int store_command_list_job(store_t *st, const char *job, const char *after_id, int limit,
                           int (*fn)(void *arg, const store_command_t *c), void *arg)
{
    assert(st && fn);
    if (!job || limit <= 0)
        return -EINVAL;
    return store_sqlite_command_list_job(&st->rd, job, after_id, limit, fn, arg);
}

int store_job_get(store_t *st, const char *id, store_job_t *out)
{
    assert(st && out);
    if (!id)
        return -EINVAL;
    return store_sqlite_job_get(&st->rd, id, out);
}

int store_job_items_list(store_t *st, const char *job, const char *after_id, int limit,
                         int (*fn)(void *arg, const store_job_item_t *it), void *arg)
{
    assert(st && fn);
    if (!job || limit <= 0)
        return -EINVAL;
    return store_sqlite_job_items_list(&st->rd, job, after_id, limit, fn, arg);
}

/* ---- Security section: reads -------------------------------------------- */

int store_token_list(store_t *st, int (*fn)(void *arg, const store_token_t *t), void *arg)
{
    assert(st && fn);
    return store_sqlite_token_list(&st->rd, fn, arg);
}

int store_token_get(store_t *st, const char *id, store_token_t *out)
{
    assert(st && out);
    if (!id)
        return -EINVAL;
    return store_sqlite_token_get(&st->rd, id, out);
}

int store_user_get(store_t *st, const char *name, store_user_t *out)
{
    assert(st && out);
    if (!name)
        return -EINVAL;
    return store_sqlite_user_get(&st->rd, name, out);
}

int store_user_list(store_t *st, int (*fn)(void *arg, const store_user_t *u), void *arg)
{
    assert(st && fn);
    return store_sqlite_user_list(&st->rd, fn, arg);
}

int store_cert_get(store_t *st, const char *serial, store_cert_t *out)
{
    assert(st && out);
    if (!serial)
        return -EINVAL;
    return store_sqlite_cert_get(&st->rd, serial, out);
}

int store_cert_list(store_t *st, int64_t device_key, int (*fn)(void *arg, const store_cert_t *c),
                    void *arg)
{
    assert(st && fn);
    return store_sqlite_cert_list(&st->rd, device_key, fn, arg);
}

int store_cert_foreach_revoked(store_t *st, int64_t now,
                               int (*fn)(void *arg, const store_cert_t *c), void *arg)
{
    assert(st && fn);
    return store_sqlite_cert_foreach_revoked(&st->rd, now, fn, arg);
}

int store_enrollment_get(store_t *st, const char *id, store_enrollment_t *out)
{
    assert(st && out);
    if (!id)
        return -EINVAL;
    return store_sqlite_enrollment_get(&st->rd, id, out);
}

int store_enrollment_find(store_t *st, const uint8_t token_hash[CRYPTO_HASH_LEN],
                          store_enrollment_t *out)
{
    assert(st && token_hash && out);
    return store_sqlite_enrollment_find(&st->rd, token_hash, out);
}

int store_enrollment_list(store_t *st, int (*fn)(void *arg, const store_enrollment_t *e), void *arg)
{
    assert(st && fn);
    return store_sqlite_enrollment_list(&st->rd, fn, arg);
}

int store_audit_last(store_t *st, store_audit_t *out)
{
    assert(st && out);
    return store_sqlite_audit_last(&st->rd, out);
}

int store_audit_list(store_t *st, int64_t after_seq, int64_t since, int64_t until,
                     const char *actor, const char *object, int limit,
                     int (*fn)(void *arg, const store_audit_t *a), void *arg)
{
    assert(st && fn);
    if (limit <= 0)
        return -EINVAL;
    return store_sqlite_audit_list(&st->rd, after_seq, since, until, actor, object, limit, fn, arg);
}

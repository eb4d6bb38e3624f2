/*
 * Operator passwords: a memory-hard hash (scrypt, from OpenSSL) in a
 * self-describing string, and a worker thread that does the hashing off the
 * event loop.
 *
 * The stored form (PHC-style, like libsodium's and passlib's):
 *
 *     $scrypt$ln=15,r=8,p=1$<salt>$<hash>
 *
 * ln is log2 of scrypt's N, r and p its other costs; salt (16 random bytes)
 * and hash (32 bytes) are standard base64 without '=' padding. Verification
 * reads the costs back from the string, so raising the defaults later
 * leaves old hashes working. The costs accepted when reading are bounded
 * (ln <= 20, r <= 32, p <= 16, at most 256 MiB of scrypt memory), so an
 * edited string cannot make the server allocate gigabytes.
 *
 * With the defaults one hash takes about 32 MiB and tens of milliseconds:
 * too slow for the loop, hence users_worker_t, one thread with a bounded
 * queue whose results come back to the loop through an eventfd (the same
 * shape as the store's storage thread).
 *
 * users_password_* are pure and thread-safe. The worker's functions are
 * called on the loop thread, and its callbacks run there.
 */
#ifndef DROVER_SECURITY_USERS_H
#define DROVER_SECURITY_USERS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

#define USERS_SCRYPT_LN 15 /* N = 2^15 */
#define USERS_SCRYPT_R 8
#define USERS_SCRYPT_P 1
#define USERS_SALT_LEN 16
#define USERS_DK_LEN 32
/* Longest encoded string we make or accept, with its NUL (the store's
 * password_hash column holds 256 bytes). */
#define USERS_HASH_MAX 256
/* Password length in bytes. */
#define USERS_PASSWORD_MIN 12
#define USERS_PASSWORD_MAX 1024
/* Hash jobs queued on the worker before submissions answer -EAGAIN. */
#define USERS_QUEUE_MAX 64

/* Hashes len bytes of password with a fresh salt and the default costs into
 * out (outlen >= USERS_HASH_MAX). 0, -EINVAL (length outside
 * [1, USERS_PASSWORD_MAX] or out too small), -EIO (no randomness),
 * -ENOMEM (OpenSSL failed). Tens of ms: not on the loop. */
int users_password_hash(const char *pw, size_t len, char *out, size_t outlen);

/* The same with explicit costs (tests use small ones). */
int users_password_hash_params(const char *pw, size_t len, unsigned ln, unsigned r, unsigned p,
                               char *out, size_t outlen);

/* 0 when pw matches encoded, -EACCES when it does not, -EINVAL when encoded
 * is not a string this module accepts (bad syntax, costs out of bounds),
 * -ENOMEM. Compares in constant time. encoded NULL: spends the time of a
 * default-cost hash and returns -EACCES (for users that do not exist, so a
 * probe cannot tell them from wrong passwords by timing). */
int users_password_verify(const char *pw, size_t len, const char *encoded);

/* ---- The worker (loop thread) -------------------------------------------- */

typedef struct users_worker users_worker_t;

/* rc as users_password_hash; encoded is valid during the call only. */
typedef void (*users_hash_fn)(void *arg, int rc, const char *encoded);
/* rc as users_password_verify. */
typedef void (*users_verify_fn)(void *arg, int rc);

/* Starts the thread; completions are delivered through base. 0, -ENOMEM,
 * or a negative errno from the thread, eventfd or event set-up. */
int users_worker_new(struct event_base *base, users_worker_t **out);

/* Stops the thread after the job it is running, then runs every callback
 * still owed: finished jobs with their result, jobs never started with
 * -ECANCELED. So no callback is lost: free the worker after whatever its
 * callbacks touch can take a late answer (the API detaches its requests in
 * api_free), before the store closes if they may submit store jobs.
 * NULL-safe; loop thread, not from inside one of its callbacks. */
void users_worker_free(users_worker_t *w);

/* Queue a hash / a verification. The password (and encoded) are copied;
 * the copies are wiped when the job is done. Returns 0 when queued (the
 * callback runs later, on the loop thread, exactly once), or without
 * queueing and without calling back: -EINVAL (password length outside
 * [1, USERS_PASSWORD_MAX], encoded longer than USERS_HASH_MAX),
 * -EAGAIN (USERS_QUEUE_MAX jobs waiting), -ENOMEM. */
int users_hash_async(users_worker_t *w, const char *pw, size_t len, users_hash_fn done, void *arg);
/* encoded NULL: a dummy verification that fails after the usual time. */
int users_verify_async(users_worker_t *w, const char *pw, size_t len, const char *encoded,
                       users_verify_fn done, void *arg);

/* Jobs queued or running (for /metrics and tests). */
size_t users_worker_pending(const users_worker_t *w);

#endif

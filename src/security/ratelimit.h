/*
 * A failure limiter keyed by short strings: a source address ("ip:...") or
 * an identity ("user:alice", "device:pump-7"). It slows down password and
 * secret guessing; it never throttles anyone who gets in.
 *
 * The rule. A key's window opens at its first counted failure and lasts
 * window_s seconds. A key that collects `limit` failures inside its window
 * is blocked for window_s seconds from the failure that reached the limit;
 * after that (or once a window ends below the limit) the key starts afresh.
 * So a key gets at most `limit` tries per window, and a blocked caller is
 * told exactly how long to wait (Retry-After, MQTT reason 0x8A).
 *
 * Bounded memory. At most max_entries keys are remembered; a new key past
 * that evicts the key whose last failure is oldest. Keys longer than
 * RATELIMIT_KEY_MAX bytes are cut there (keys sharing such a prefix share a
 * count, which errs towards blocking). Only failures create entries, so
 * successful traffic costs nothing. Buckets are seeded at random, so chosen
 * keys cannot pile into one chain.
 *
 * Times are milliseconds on any clock that does not go backwards (callers
 * pass util_mono_us() / 1000; tests pass what they like).
 *
 * Not thread-safe: one limiter belongs to one thread (the loop).
 */
#ifndef DROVER_SECURITY_RATELIMIT_H
#define DROVER_SECURITY_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_KEY_MAX 128
#define RATELIMIT_ENTRIES_DEFAULT 10000

typedef struct ratelimit ratelimit_t;

/* limit: failures per window (0 disables the limiter: nothing is ever
 * blocked or stored); window_s: 1.. seconds; max_entries: 1.. keys.
 * Returns 0, -EINVAL or -ENOMEM; *out written on success only. */
int ratelimit_new(uint32_t limit, uint32_t window_s, size_t max_entries, ratelimit_t **out);
/* NULL-safe. */
void ratelimit_free(ratelimit_t *rl);

/* 0 when key may try now; otherwise the milliseconds left until it may
 * (> 0). Forgets the key when its window has ended. rl may be NULL. */
int64_t ratelimit_check(ratelimit_t *rl, const char *key, int64_t now_ms);

/* Counts one failure of key. Returns the milliseconds key is now blocked
 * for (0 when still under the limit). A failure while already blocked is
 * counted but does not extend the block. rl may be NULL. */
int64_t ratelimit_fail(ratelimit_t *rl, const char *key, int64_t now_ms);

/* Takes back one failure counted ahead of the outcome (a check that turned
 * out well): the count drops by one and a block the count no longer
 * reaches is lifted. No-op for an unknown key or a NULL rl. */
void ratelimit_forgive(ratelimit_t *rl, const char *key);

/* Forgets key entirely. No-op for an unknown key or a NULL rl. */
void ratelimit_reset(ratelimit_t *rl, const char *key);

/* Keys currently remembered. */
size_t ratelimit_size(const ratelimit_t *rl);

/* The key for a peer address: "ip:1.2.3.4" for IPv4 (and IPv4-mapped
 * IPv6), "ip6:2001:db8:1:2::/64" for IPv6, where one /64 is one source
 * (a host usually holds a whole /64). addr is "IP" or, when has_port,
 * "IP:PORT" (the port, after the last ':', is dropped). Text that is no
 * address is kept as it is (after "ip:"), cut to fit. Returns 1 when the
 * address is a loopback one (127.0.0.0/8, ::1, or mapped 127/8), which
 * callers may choose not to limit per source (behind a local proxy every
 * client is loopback), 0 for any other, -EINVAL for NULL or empty input
 * or out smaller than 8 bytes. */
int ratelimit_source_key(const char *addr, bool has_port, char *out, size_t outlen);

#endif

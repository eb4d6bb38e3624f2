/*
 * Small helpers every binary uses: clocks, device id validation, number and
 * address parsing, time parsing (epoch ms or RFC 3339), hex encoding.
 * All pure functions; thread-safe.
 */
#ifndef DROVER_COMMON_UTIL_H
#define DROVER_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Wall clock in milliseconds since the epoch. */
int64_t util_now_ms(void);
/* Monotonic clock in microseconds, for measuring intervals. */
int64_t util_mono_us(void);

/* A device id: 1 to 64 characters of [A-Za-z0-9._-]. */
#define DROVER_ID_MAX 64
bool util_id_valid(const char *id, size_t len);

/* Strict integer parse of the whole string; -EINVAL or -ERANGE on failure. */
int util_parse_i64(const char *s, int64_t *out);

/* "HOST:PORT" (or "[v6]:PORT") into host (caller-sized) and port. */
int util_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

/* A time as epoch milliseconds ("1700000000000") or RFC 3339
 * ("2026-11-27T10:00:00Z", "2026-11-27T10:00:00.5+02:00"). */
int util_parse_time(const char *s, int64_t *out_ms);

/* Lower-case hex of n bytes into out, which holds 2n+1 chars. */
void util_hex_encode(const uint8_t *in, size_t n, char *out);
/* Decodes exactly 2n hex chars into n bytes. */
int util_hex_decode(const char *in, size_t n, uint8_t *out);

#endif

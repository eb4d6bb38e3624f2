/*
 * Credentials: random secrets and tokens, keyed hashes, constant-time
 * comparison. Device secrets and API tokens are server-generated with 256
 * bits of randomness, so a fast salted keyed hash (HMAC-SHA-256 with a
 * per-credential salt) is the right tool: a memory-hard hash would only
 * throttle connect storms without adding strength to a random secret.
 */
#ifndef DROVER_COMMON_CRYPTO_H
#define DROVER_COMMON_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SALT_LEN 16
#define CRYPTO_HASH_LEN 32
/* A generated secret: 32 random bytes as URL-safe base64 (43 chars). */
#define CRYPTO_SECRET_LEN 43

/* Fills buf with n bytes from the OS CSPRNG. Returns 0 or -EIO. */
int crypto_random(uint8_t *buf, size_t n);

/* Writes a fresh NUL-terminated secret with prefix (may be "") into out,
 * which holds strlen(prefix) + CRYPTO_SECRET_LEN + 1 bytes. */
int crypto_secret_new(const char *prefix, char *out, size_t outlen);

/* HMAC-SHA-256(key = salt, msg = secret). */
void crypto_hash_secret(const uint8_t salt[CRYPTO_SALT_LEN], const char *secret, size_t len,
                        uint8_t out[CRYPTO_HASH_LEN]);

/* SHA-256 of data: used to look tokens up by hash. */
void crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_HASH_LEN]);

/* Constant-time equality of two n-byte buffers: 1 if equal. */
int crypto_equal(const void *a, const void *b, size_t n);

#endif

#include "common/crypto.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

int crypto_random(uint8_t *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? 0 : -EIO;
}

int crypto_secret_new(const char *prefix, char *out, size_t outlen)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t pl = strlen(prefix);
    if (outlen < pl + CRYPTO_SECRET_LEN + 1)
        return -ENOSPC;
    uint8_t raw[33];
    if (crypto_random(raw, 32) < 0)
        return -EIO;
    raw[32] = 0;
    memcpy(out, prefix, pl);
    char *o = out + pl;
    /* 32 bytes = 256 bits -> 43 base64 characters (the last holds 4 bits). */
    for (size_t i = 0, bit = 0; i < CRYPTO_SECRET_LEN; i++, bit += 6) {
        size_t byte = bit / 8, off = bit % 8;
        unsigned v = ((unsigned)raw[byte] << 8 | raw[byte + 1]) >> (10 - off);
        o[i] = b64[v & 63];
    }
    o[CRYPTO_SECRET_LEN] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

void crypto_hash_secret(const uint8_t salt[CRYPTO_SALT_LEN], const char *secret, size_t len,
                        uint8_t out[CRYPTO_HASH_LEN])
{
    unsigned int outlen = CRYPTO_HASH_LEN;
    HMAC(EVP_sha256(), salt, CRYPTO_SALT_LEN, (const unsigned char *)secret, len, out, &outlen);
}

void crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_HASH_LEN])
{
    unsigned int outlen = CRYPTO_HASH_LEN;
    EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL);
}

int crypto_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

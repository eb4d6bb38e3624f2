/*
 * The failure limiter (see ratelimit.h for the rule).
 *
 * Layout. Entries live in a chained hash table (power-of-two buckets, at
 * least max_entries of them, so chains stay short) and on one doubly linked
 * age list ordered by last counted failure: the head is the oldest, the
 * next to evict when the table is full. An entry is malloc'd with its key
 * inline. The hash is FNV-1a over the key, mixed with a random seed drawn
 * when the limiter is made, so a client cannot choose keys that collide.
 *
 * Expiry is lazy: an entry found stale by a check or a failure is removed
 * then; stale entries nobody asks about sit at the head of the age list and
 * go first when room is needed. Memory is bounded by max_entries either way.
 *
 * One thread (the caller's loop); no locks.
 */
#include "security/ratelimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"

struct entry {
    struct entry *hnext;       /* bucket chain */
    struct entry *prev, *next; /* age list */
    uint64_t hash;
    uint32_t count;
    int64_t start; /* first failure of the window */
    int64_t until; /* blocked until this time once count reached the limit */
    char key[];
};

struct ratelimit {
    uint32_t limit;
    int64_t window_ms;
    size_t max_entries;
    size_t n;
    size_t mask; /* buckets - 1 */
    struct entry **buckets;
    struct entry *oldest, *newest;
    uint64_t seed;
};

static uint64_t key_hash(const ratelimit_t *rl, const char *key, size_t len)
{
    uint64_t h = 14695981039346656037ull ^ rl->seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    /* FNV's low bits mix poorly: fold the high half in (the mask takes low). */
    return h ^ (h >> 29) ^ (h >> 47);
}

static size_t key_len(const char *key)
{
    return strnlen(key, RATELIMIT_KEY_MAX);
}

int ratelimit_new(uint32_t limit, uint32_t window_s, size_t max_entries, ratelimit_t **out)
{
    if (window_s == 0 || max_entries == 0 || max_entries > ((size_t)1 << 24))
        return -EINVAL;
    ratelimit_t *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return -ENOMEM;
    size_t buckets = 16;
    while (buckets < max_entries)
        buckets <<= 1;
    rl->buckets = calloc(buckets, sizeof(*rl->buckets));
    if (rl->buckets == NULL) {
        free(rl);
        return -ENOMEM;
    }
    rl->mask = buckets - 1;
    rl->limit = limit;
    rl->window_ms = (int64_t)window_s * 1000;
    rl->max_entries = max_entries;
    /* A seed of zero (no randomness) still works; it is only less hardy. */
    if (crypto_random((uint8_t *)&rl->seed, sizeof(rl->seed)) < 0)
        rl->seed = 0;
    *out = rl;
    return 0;
}

void ratelimit_free(ratelimit_t *rl)
{
    if (rl == NULL)
        return;
    struct entry *e = rl->oldest;
    while (e != NULL) {
        struct entry *next = e->next;
        free(e);
        e = next;
    }
    free(rl->buckets);
    free(rl);
}

static struct entry *find(const ratelimit_t *rl, const char *key, uint64_t *hash_out)
{
    size_t len = key_len(key);
    uint64_t h = key_hash(rl, key, len);
    if (hash_out != NULL)
        *hash_out = h;
    for (struct entry *e = rl->buckets[h & rl->mask]; e != NULL; e = e->hnext)
        if (e->hash == h && strncmp(e->key, key, len) == 0 && e->key[len] == '\0')
            return e;
    return NULL;
}

static void age_unlink(ratelimit_t *rl, struct entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        rl->oldest = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        rl->newest = e->prev;
    e->prev = e->next = NULL;
}

static void age_append(ratelimit_t *rl, struct entry *e)
{
    e->prev = rl->newest;
    e->next = NULL;
    if (rl->newest != NULL)
        rl->newest->next = e;
    else
        rl->oldest = e;
    rl->newest = e;
}

static void remove_entry(ratelimit_t *rl, struct entry *e)
{
    struct entry **pp = &rl->buckets[e->hash & rl->mask];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    age_unlink(rl, e);
    rl->n--;
    free(e);
}

static bool stale(const ratelimit_t *rl, const struct entry *e, int64_t now)
{
    if (e->count >= rl->limit)
        return now >= e->until;
    return now - e->start >= rl->window_ms;
}

int64_t ratelimit_check(ratelimit_t *rl, const char *key, int64_t now_ms)
{
    if (rl == NULL || rl->limit == 0 || key == NULL)
        return 0;
    struct entry *e = find(rl, key, NULL);
    if (e == NULL)
        return 0;
    if (stale(rl, e, now_ms)) {
        remove_entry(rl, e);
        return 0;
    }
    return e->count >= rl->limit ? e->until - now_ms : 0;
}

int64_t ratelimit_fail(ratelimit_t *rl, const char *key, int64_t now_ms)
{
    if (rl == NULL || rl->limit == 0 || key == NULL)
        return 0;
    uint64_t h;
    struct entry *e = find(rl, key, &h);
    if (e != NULL && stale(rl, e, now_ms)) {
        remove_entry(rl, e);
        e = NULL;
    }
    if (e == NULL) {
        if (rl->n >= rl->max_entries)
            remove_entry(rl, rl->oldest);
        size_t len = key_len(key);
        e = calloc(1, sizeof(*e) + len + 1);
        if (e == NULL)
            return 0; /* out of memory: fail open rather than lock everyone out */
        memcpy(e->key, key, len);
        e->key[len] = '\0';
        e->hash = h;
        e->start = now_ms;
        e->hnext = rl->buckets[h & rl->mask];
        rl->buckets[h & rl->mask] = e;
        rl->n++;
    } else {
        age_unlink(rl, e);
    }
    age_append(rl, e);
    if (e->count < UINT32_MAX)
        e->count++;
    if (e->count >= rl->limit) {
        if (e->until <= now_ms)
            e->until = now_ms + rl->window_ms;
        return e->until - now_ms;
    }
    return 0;
}

void ratelimit_forgive(ratelimit_t *rl, const char *key)
{
    if (rl == NULL || rl->limit == 0 || key == NULL)
        return;
    struct entry *e = find(rl, key, NULL);
    if (e == NULL)
        return;
    if (e->count <= 1) {
        remove_entry(rl, e);
        return;
    }
    e->count--;
    if (e->count < rl->limit)
        e->until = 0;
}

void ratelimit_reset(ratelimit_t *rl, const char *key)
{
    if (rl == NULL || key == NULL)
        return;
    struct entry *e = find(rl, key, NULL);
    if (e != NULL)
        remove_entry(rl, e);
}

size_t ratelimit_size(const ratelimit_t *rl)
{
    return rl != NULL ? rl->n : 0;
}

int ratelimit_source_key(const char *addr, bool has_port, char *out, size_t outlen)
{
    if (addr == NULL || *addr == '\0' || out == NULL || outlen < 8)
        return -EINVAL;
    char ip[INET6_ADDRSTRLEN + 8];
    size_t len = strnlen(addr, sizeof(ip));
    if (has_port) {
        const char *colon = strrchr(addr, ':');
        if (colon != NULL)
            len = (size_t)(colon - addr);
    }
    if (len >= sizeof(ip))
        len = sizeof(ip) - 1;
    memcpy(ip, addr, len);
    ip[len] = '\0';
    /* "[v6]" as some formatters write it */
    if (len >= 2 && ip[0] == '[' && ip[len - 1] == ']') {
        memmove(ip, ip + 1, len - 2);
        ip[len - 2] = '\0';
    }

    struct in_addr v4;
    struct in6_addr v6;
    char text[INET6_ADDRSTRLEN];
    bool v4ok = inet_pton(AF_INET, ip, &v4) == 1;
    bool loopback = false;
    if (!v4ok && inet_pton(AF_INET6, ip, &v6) == 1) {
        if (IN6_IS_ADDR_V4MAPPED(&v6)) {
            memcpy(&v4, &v6.s6_addr[12], 4);
            v4ok = true;
        } else {
            loopback = IN6_IS_ADDR_LOOPBACK(&v6);
            memset(&v6.s6_addr[8], 0, 8);
            inet_ntop(AF_INET6, &v6, text, sizeof(text));
            snprintf(out, outlen, "ip6:%s/64", text);
            return loopback;
        }
    }
    if (v4ok) {
        loopback = (ntohl(v4.s_addr) >> 24) == 127;
        inet_ntop(AF_INET, &v4, text, sizeof(text));
        snprintf(out, outlen, "ip:%s", text);
    } else {
        snprintf(out, outlen, "ip:%s", ip);
    }
    return loopback;
}

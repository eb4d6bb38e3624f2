/*
 * A string-keyed hash map of borrowed keys to pointers: open addressing
 * with linear probing and backward-shift deletion. The key memory belongs
 * to the caller (usually the value holds it) and must stay unchanged while
 * the entry is in the map. Not thread-safe.
 */
#ifndef DROVER_COMMON_STRMAP_H
#define DROVER_COMMON_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap_slot {
    const char *key;
    size_t len;
    uint32_t hash;
    void *val;
} strmap_slot_t;

typedef struct strmap {
    strmap_slot_t *slots;
    size_t cap; /* power of two or 0 */
    size_t count;
} strmap_t;

void strmap_init(strmap_t *m);
void strmap_fini(strmap_t *m);

void *strmap_get(const strmap_t *m, const char *key, size_t len);
/* Inserts or replaces. Returns 0 or -ENOMEM. */
int strmap_put(strmap_t *m, const char *key, size_t len, void *val);
/* Removes and returns the value, or NULL if absent. */
void *strmap_del(strmap_t *m, const char *key, size_t len);

/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ... */

#endif

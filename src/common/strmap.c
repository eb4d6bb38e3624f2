#include "common/strmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

void strmap_init(strmap_t *m)
{
    memset(m, 0, sizeof(*m));
}

void strmap_fini(strmap_t *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static strmap_slot_t *find(const strmap_t *m, const char *key, size_t len, uint32_t h)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        strmap_slot_t *s = &m->slots[i];
        if (s->key == NULL)
            return NULL;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s;
    }
}

void *strmap_get(const strmap_t *m, const char *key, size_t len)
{
    strmap_slot_t *s = find(m, key, len, hash(key, len));
    return s ? s->val : NULL;
}

static void place(strmap_slot_t *slots, size_t cap, const strmap_slot_t *e)
{
    size_t mask = cap - 1;
    size_t i = e->hash & mask;
    while (slots[i].key != NULL)
        i = (i + 1) & mask;
    slots[i] = *e;
}

int strmap_put(strmap_t *m, const char *key, size_t len, void *val)
{
    uint32_t h = hash(key, len);
    strmap_slot_t *s = find(m, key, len, h);
    if (s != NULL) {
        s->key = key;
        s->val = val;
        return 0;
    }
    if ((m->count + 1) * 4 > m->cap * 3) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        strmap_slot_t *slots = calloc(cap, sizeof(*slots));
        if (slots == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->slots[i].key)
                place(slots, cap, &m->slots[i]);
        }
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    strmap_slot_t e = {key, len, h, val};
    place(m->slots, m->cap, &e);
    m->count++;
    return 0;
}

void *strmap_del(strmap_t *m, const char *key, size_t len)
{
    strmap_slot_t *s = find(m, key, len, hash(key, len));
    if (s == NULL)
        return NULL;
    void *val = s->val;
    size_t mask = m->cap - 1;
    size_t i = (size_t)(s - m->slots);
    m->slots[i].key = NULL;
    m->count--;
    for (size_t j = (i + 1) & mask; m->slots[j].key != NULL; j = (j + 1) & mask) {
        strmap_slot_t e = m->slots[j];
        m->slots[j].key = NULL;
        place(m->slots, m->cap, &e);
    }
    return val;
}

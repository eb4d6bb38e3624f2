/*
 * Subscription tree. Node layout: the level's text (owned), a parent link
 * for pruning, a hash table of children by level text, and a small array
 * of subscribers (owner, opts). Nodes that lose their last subscriber and
 * child are freed on the way back up, so the tree never holds more nodes
 * than there are live filter levels.
 */
#include "mqtt/topic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *level_end(const char *p, const char *end)
{
    const char *s = memchr(p, '/', (size_t)(end - p));
    return s ? s : end;
}

bool topic_name_valid(const char *t, size_t len, size_t max_len, size_t max_depth)
{
    if (len == 0 || len > max_len)
        return false;
    size_t depth = 1;
    for (size_t i = 0; i < len; i++) {
        if (t[i] == '+' || t[i] == '#' || t[i] == '\0')
            return false;
        if (t[i] == '/' && ++depth > max_depth)
            return false;
    }
    return true;
}

bool topic_filter_valid(const char *f, size_t len, size_t max_len, size_t max_depth)
{
    if (len == 0 || len > max_len)
        return false;
    const char *p = f, *end = f + len;
    size_t depth = 0;
    for (;;) {
        const char *e = level_end(p, end);
        size_t n = (size_t)(e - p);
        if (++depth > max_depth)
            return false;
        for (size_t i = 0; i < n; i++) {
            if (p[i] == '\0')
                return false;
            if ((p[i] == '+' || p[i] == '#') && n != 1)
                return false;
        }
        if (n == 1 && p[0] == '#' && e != end)
            return false;
        if (e == end)
            break;
        p = e + 1;
    }
    return true;
}

bool topic_matches(const char *filter, size_t flen, const char *topic, size_t tlen)
{
    const char *f = filter, *fend = filter + flen;
    const char *t = topic, *tend = topic + tlen;
    if (tlen > 0 && topic[0] == '$' && flen > 0 && (filter[0] == '+' || filter[0] == '#'))
        return false;
    for (;;) {
        const char *fe = level_end(f, fend);
        size_t fl = (size_t)(fe - f);
        if (fl == 1 && f[0] == '#')
            return true;
        if (t > tend)
            return false;
        const char *te = level_end(t, tend);
        size_t tl = (size_t)(te - t);
        if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0))
            return false;
        bool fdone = fe == fend, tdone = te == tend;
        if (fdone && tdone)
            return true;
        if (tdone) {
            /* "a/#" also matches "a" ([MQTT-4.7.1-2]). */
            const char *nf = fe + 1;
            return !fdone && (size_t)(fend - nf) == 1 && nf[0] == '#';
        }
        if (fdone)
            return false;
        f = fe + 1;
        t = te + 1;
    }
}

typedef struct sub {
    void *owner;
    uint8_t opts;
} sub_t;

typedef struct node node_t;
struct node {
    char *level;
    size_t level_len;
    node_t *parent;
    node_t **kids; /* open addressing; NULL = empty slot */
    uint32_t nkids, kcap;
    sub_t *subs;
    uint32_t nsubs, scap;
};

struct topic_tree {
    node_t root;
    size_t count;
};

static uint32_t hash_level(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

static node_t *kid_find(const node_t *n, const char *s, size_t len)
{
    if (n->kcap == 0)
        return NULL;
    uint32_t mask = n->kcap - 1;
    for (uint32_t i = hash_level(s, len) & mask;; i = (i + 1) & mask) {
        node_t *k = n->kids[i];
        if (k == NULL)
            return NULL;
        if (k->level_len == len && memcmp(k->level, s, len) == 0)
            return k;
    }
}

static void kid_place(node_t **kids, uint32_t cap, node_t *k)
{
    uint32_t mask = cap - 1;
    uint32_t i = hash_level(k->level, k->level_len) & mask;
    while (kids[i] != NULL)
        i = (i + 1) & mask;
    kids[i] = k;
}

static int kid_insert(node_t *n, node_t *k)
{
    if ((n->nkids + 1) * 4 > n->kcap * 3) {
        uint32_t cap = n->kcap ? n->kcap * 2 : 4;
        node_t **kids = calloc(cap, sizeof(*kids));
        if (kids == NULL)
            return -ENOMEM;
        for (uint32_t i = 0; i < n->kcap; i++) {
            if (n->kids[i])
                kid_place(kids, cap, n->kids[i]);
        }
        free(n->kids);
        n->kids = kids;
        n->kcap = cap;
    }
    kid_place(n->kids, n->kcap, k);
    n->nkids++;
    return 0;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void kid_remove(node_t *n, node_t *k)
{
    uint32_t mask = n->kcap - 1;
    uint32_t i = hash_level(k->level, k->level_len) & mask;
    while (n->kids[i] != k)
        i = (i + 1) & mask;
    n->kids[i] = NULL;
    n->nkids--;
    for (uint32_t j = (i + 1) & mask; n->kids[j] != NULL; j = (j + 1) & mask) {
        node_t *m = n->kids[j];
        n->kids[j] = NULL;
        kid_place(n->kids, n->kcap, m);
    }
}

static void node_free(node_t *n)
{
    for (uint32_t i = 0; i < n->kcap; i++) {
        if (n->kids[i]) {
            node_free(n->kids[i]);
            free(n->kids[i]);
        }
    }
    free(n->kids);
    free(n->subs);
    free(n->level);
}

int topic_tree_new(topic_tree_t **out)
{
    topic_tree_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    *out = t;
    return 0;
}

void topic_tree_free(topic_tree_t *t)
{
    if (t == NULL)
        return;
    node_free(&t->root);
    free(t);
}

/* Frees n and empty ancestors (never the root). */
static void prune(node_t *n)
{
    while (n->parent != NULL && n->nsubs == 0 && n->nkids == 0) {
        node_t *p = n->parent;
        kid_remove(p, n);
        node_free(n);
        free(n);
        n = p;
    }
}

int topic_tree_add(topic_tree_t *t, const char *filter, size_t len, void *owner, uint8_t opts)
{
    node_t *n = &t->root;
    const char *p = filter, *end = filter + len;
    for (;;) {
        const char *e = level_end(p, end);
        size_t ln = (size_t)(e - p);
        node_t *k = kid_find(n, p, ln);
        if (k == NULL) {
            k = calloc(1, sizeof(*k));
            if (k == NULL)
                goto fail;
            k->level = malloc(ln + 1);
            if (k->level == NULL) {
                free(k);
                goto fail;
            }
            memcpy(k->level, p, ln);
            k->level[ln] = '\0';
            k->level_len = ln;
            k->parent = n;
            if (kid_insert(n, k) < 0) {
                free(k->level);
                free(k);
                goto fail;
            }
        }
        n = k;
        if (e == end)
            break;
        p = e + 1;
    }
    for (uint32_t i = 0; i < n->nsubs; i++) {
        if (n->subs[i].owner == owner) {
            n->subs[i].opts = opts;
            return 1;
        }
    }
    if (n->nsubs == n->scap) {
        uint32_t cap = n->scap ? n->scap * 2 : 2;
        sub_t *s = realloc(n->subs, cap * sizeof(*s));
        if (s == NULL)
            goto fail;
        n->subs = s;
        n->scap = cap;
    }
    n->subs[n->nsubs++] = (sub_t){owner, opts};
    t->count++;
    return 0;
fail:
    prune(n);
    return -ENOMEM;
}

int topic_tree_remove(topic_tree_t *t, const char *filter, size_t len, void *owner)
{
    node_t *n = &t->root;
    const char *p = filter, *end = filter + len;
    for (;;) {
        const char *e = level_end(p, end);
        n = kid_find(n, p, (size_t)(e - p));
        if (n == NULL)
            return -ENOENT;
        if (e == end)
            break;
        p = e + 1;
    }
    for (uint32_t i = 0; i < n->nsubs; i++) {
        if (n->subs[i].owner == owner) {
            n->subs[i] = n->subs[--n->nsubs];
            t->count--;
            prune(n);
            return 0;
        }
    }
    return -ENOENT;
}

static void report(const node_t *n, void (*fn)(void *, void *, uint8_t), void *ctx)
{
    for (uint32_t i = 0; i < n->nsubs; i++)
        fn(ctx, n->subs[i].owner, n->subs[i].opts);
}

static void match(const node_t *n, const char *p, const char *end, bool first,
                  void (*fn)(void *, void *, uint8_t), void *ctx)
{
    const char *e = level_end(p, end);
    size_t ln = (size_t)(e - p);
    bool dollar = first && ln > 0 && p[0] == '$';
    if (!dollar) {
        const node_t *h = kid_find(n, "#", 1);
        if (h)
            report(h, fn, ctx);
    }
    const node_t *kids[2] = {kid_find(n, p, ln), dollar ? NULL : kid_find(n, "+", 1)};
    for (int i = 0; i < 2; i++) {
        const node_t *k = kids[i];
        if (k == NULL || (i == 1 && k == kids[0]))
            continue;
        if (e == end) {
            report(k, fn, ctx);
            const node_t *h = kid_find(k, "#", 1);
            if (h)
                report(h, fn, ctx); /* "a/#" matches "a" */
        } else {
            match(k, e + 1, end, false, fn, ctx);
        }
    }
}

void topic_tree_match(const topic_tree_t *t, const char *topic, size_t len,
                      void (*fn)(void *ctx, void *owner, uint8_t opts), void *ctx)
{
    match(&t->root, topic, topic + len, true, fn, ctx);
}

size_t topic_tree_count(const topic_tree_t *t)
{
    return t->count;
}

/*
 * Unit tests for topic names, topic filters and the subscription tree
 * (src/mqtt/topic.c).
 *
 * The matching rules are those of MQTT 3.1.1 §4.7 (5.0 §4.7 is the same):
 * the spec's own examples are checked one by one, then topic_matches() is
 * compared with a second, deliberately naive matcher written here, and
 * the tree is compared with brute-force topic_matches() over random
 * filters and topics drawn from a small alphabet of levels that includes
 * the edge cases ("", "+", "#", "$x"). Run under ASan/LSan, the tests
 * also check that removing every subscription and freeing the tree
 * leaves nothing behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mqtt/topic.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIM_LEN 65535
#define LIM_DEPTH 32

static bool name_ok(const char *s)
{
    return topic_name_valid(s, strlen(s), LIM_LEN, LIM_DEPTH);
}

static bool filter_ok(const char *s)
{
    return topic_filter_valid(s, strlen(s), LIM_LEN, LIM_DEPTH);
}

static bool matches(const char *filter, const char *topic)
{
    return topic_matches(filter, strlen(filter), topic, strlen(topic));
}

/* Owners are opaque pointers to the tree; small integers will do. */
static void *owner(uintptr_t i)
{
    return (void *)i;
}

/* ---- Names and filters --------------------------------------------------- */

static void test_topic_name_valid(void **state)
{
    (void)state;
    /* [MQTT-4.7.3-1]: at least one character. */
    assert_false(name_ok(""));
    assert_true(name_ok("a"));
    assert_true(name_ok("sport/tennis/player1"));
    /* Empty levels are legal: "/" is two empty levels (§4.7.3). */
    assert_true(name_ok("/"));
    assert_true(name_ok("/finance"));
    assert_true(name_ok("a//b"));
    assert_true(name_ok("a/"));
    assert_true(name_ok("$SYS/monitor/Clients"));
    assert_true(name_ok(" "));
    /* [MQTT-3.3.2-2], [MQTT-4.7.1-1]: no wildcards in a topic name. */
    assert_false(name_ok("+"));
    assert_false(name_ok("#"));
    assert_false(name_ok("a/+"));
    assert_false(name_ok("a/#"));
    assert_false(name_ok("sport+"));
    assert_false(name_ok("a#b"));
    /* [MQTT-4.7.3-2]: no U+0000. */
    assert_false(topic_name_valid("a\0b", 3, LIM_LEN, LIM_DEPTH));
    /* Length limit, in bytes. */
    assert_true(topic_name_valid("abcd", 4, 4, LIM_DEPTH));
    assert_false(topic_name_valid("abcd", 4, 3, LIM_DEPTH));
    /* Depth limit, in levels. */
    assert_true(topic_name_valid("a/b/c", 5, LIM_LEN, 3));
    assert_false(topic_name_valid("a/b/c", 5, LIM_LEN, 2));
    assert_true(topic_name_valid("a", 1, LIM_LEN, 1));
    assert_false(topic_name_valid("/", 1, LIM_LEN, 1));
    assert_true(topic_name_valid("/", 1, LIM_LEN, 2));
    /* The length given counts, not a terminator. */
    assert_true(topic_name_valid("a/+", 2, LIM_LEN, LIM_DEPTH));
}

static void test_topic_filter_valid(void **state)
{
    (void)state;
    /* [MQTT-4.7.3-1]: at least one character. */
    assert_false(filter_ok(""));
    /* [MQTT-4.7.1-2]: "#" alone or after "/", and last. */
    assert_true(filter_ok("#"));
    assert_true(filter_ok("sport/#"));
    assert_true(filter_ok("sport/tennis/player1/#"));
    assert_true(filter_ok("/#"));
    assert_false(filter_ok("sport/tennis#"));
    assert_false(filter_ok("sport/tennis/#/ranking"));
    assert_false(filter_ok("a/#/b"));
    assert_false(filter_ok("#/a"));
    assert_false(filter_ok("#/"));
    assert_false(filter_ok("##"));
    assert_false(filter_ok("a#"));
    assert_false(filter_ok("#a"));
    /* [MQTT-4.7.1-3]: "+" occupies a whole level, anywhere. */
    assert_true(filter_ok("+"));
    assert_true(filter_ok("+/tennis/#"));
    assert_true(filter_ok("sport/+/player1"));
    assert_true(filter_ok("+/+"));
    assert_true(filter_ok("/+"));
    assert_true(filter_ok("+/"));
    assert_true(filter_ok("+/#"));
    assert_false(filter_ok("sport+"));
    assert_false(filter_ok("+a"));
    assert_false(filter_ok("a+/b"));
    assert_false(filter_ok("a/b+"));
    assert_false(filter_ok("++"));
    assert_false(filter_ok("+#"));
    /* Plain filters and empty levels. */
    assert_true(filter_ok("/"));
    assert_true(filter_ok("a//b"));
    assert_true(filter_ok("$SYS/#"));
    /* [MQTT-4.7.3-2]: no U+0000. */
    assert_false(topic_filter_valid("a\0b", 3, LIM_LEN, LIM_DEPTH));
    /* Limits. */
    assert_true(topic_filter_valid("a/b/#", 5, 5, LIM_DEPTH));
    assert_false(topic_filter_valid("a/b/#", 5, 4, LIM_DEPTH));
    assert_true(topic_filter_valid("a/+/#", 5, LIM_LEN, 3));
    assert_false(topic_filter_valid("a/+/#", 5, LIM_LEN, 2));
    assert_false(topic_filter_valid("/", 1, LIM_LEN, 1));
    assert_true(topic_filter_valid("#", 1, LIM_LEN, 1));
}

/* ---- Matching ------------------------------------------------------------ */

static void test_topic_matches_spec(void **state)
{
    (void)state;
    /* §4.7.1.2, the multi-level wildcard examples. */
    assert_true(matches("sport/tennis/player1/#", "sport/tennis/player1"));
    assert_true(matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
    assert_true(matches("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
    assert_false(matches("sport/tennis/player1/#", "sport/tennis/player2"));
    assert_false(matches("sport/tennis/player1/#", "sport/tennis"));
    assert_true(matches("sport/#", "sport"));
    assert_true(matches("#", "sport/tennis"));
    /* §4.7.1.3, the single-level wildcard examples. */
    assert_true(matches("sport/tennis/+", "sport/tennis/player1"));
    assert_true(matches("sport/tennis/+", "sport/tennis/player2"));
    assert_false(matches("sport/tennis/+", "sport/tennis/player1/ranking"));
    assert_false(matches("sport/+", "sport"));
    assert_true(matches("sport/+", "sport/"));
    assert_true(matches("+/+", "/finance"));
    assert_true(matches("/+", "/finance"));
    assert_false(matches("+", "/finance"));
    assert_true(matches("+/tennis/#", "sport/tennis/player1"));
    assert_true(matches("sport/+/player1", "sport/tennis/player1"));
    /* [MQTT-4.7.2-1]: a filter starting with a wildcard does not match a
     * topic starting with '$'. §4.7.2's examples. */
    assert_false(matches("#", "$SYS/monitor/Clients"));
    assert_false(matches("#", "$SYS"));
    assert_false(matches("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert_false(matches("+", "$SYS"));
    assert_false(matches("+/#", "$SYS/x"));
    assert_true(matches("$SYS/#", "$SYS/monitor/Clients"));
    assert_true(matches("$SYS/#", "$SYS"));
    assert_true(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    /* Only the first level counts: "$" further in is an ordinary byte. */
    assert_true(matches("#", "a/$SYS"));
    assert_true(matches("+/$SYS", "a/$SYS"));
    assert_true(matches("a/+", "a/$x"));
    /* §4.7.3: case sensitive; empty levels are levels. */
    assert_false(matches("ACCOUNTS", "Accounts"));
    assert_true(matches("Accounts", "Accounts"));
    assert_true(matches("a/+/b", "a//b"));
    assert_false(matches("a/b", "a/b/"));
    assert_false(matches("a/b/", "a/b"));
    assert_true(matches("a/#", "a/"));
    assert_true(matches("+/#", "a"));
    assert_true(matches("+/#", "/"));
    assert_true(matches("/", "/"));
    assert_false(matches("a/b", "a"));
    assert_false(matches("a", "a/b"));
    assert_false(matches("a/+", "a"));
    assert_false(matches("a/b/#", "a"));
    /* Prefixes of a level are not the level. */
    assert_false(matches("sport", "sports"));
    assert_false(matches("sports", "sport"));
    assert_false(matches("a/bc", "a/b"));
}

/* ---- Tree ---------------------------------------------------------------- */

#define MAX_HITS 64

typedef struct hits {
    void *owner[MAX_HITS];
    uint8_t opts[MAX_HITS];
    size_t n;
} hits_t;

static void collect(void *ctx, void *o, uint8_t opts)
{
    hits_t *h = ctx;
    assert_true(h->n < MAX_HITS);
    h->owner[h->n] = o;
    h->opts[h->n] = opts;
    h->n++;
}

static hits_t match_tree(const topic_tree_t *t, const char *topic)
{
    hits_t h;
    memset(&h, 0, sizeof(h));
    topic_tree_match(t, topic, strlen(topic), collect, &h);
    return h;
}

/* How many times (o, opts) was reported. */
static size_t hit_count(const hits_t *h, void *o, int opts)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (h->owner[i] == o && (opts < 0 || h->opts[i] == opts))
            n++;
    }
    return n;
}

static int add(topic_tree_t *t, const char *f, void *o, uint8_t opts)
{
    return topic_tree_add(t, f, strlen(f), o, opts);
}

static int del(topic_tree_t *t, const char *f, void *o)
{
    return topic_tree_remove(t, f, strlen(f), o);
}

static void test_tree_basic(void **state)
{
    (void)state;
    topic_tree_t *t = NULL;
    assert_int_equal(topic_tree_new(&t), 0);
    assert_non_null(t);
    assert_int_equal(topic_tree_count(t), 0);
    hits_t h = match_tree(t, "a/b");
    assert_int_equal(h.n, 0);

    void *A = owner(1), *B = owner(2), *C = owner(3);
    assert_int_equal(add(t, "a/b", A, 1), 0);
    assert_int_equal(add(t, "a/+", B, 2), 0);
    assert_int_equal(add(t, "a/#", A, 0), 0);
    assert_int_equal(add(t, "a/b", C, 1), 0);
    assert_int_equal(topic_tree_count(t), 4);

    h = match_tree(t, "a/b");
    assert_int_equal(h.n, 4);
    assert_int_equal(hit_count(&h, A, 1), 1); /* a/b */
    assert_int_equal(hit_count(&h, A, 0), 1); /* a/# */
    assert_int_equal(hit_count(&h, B, 2), 1);
    assert_int_equal(hit_count(&h, C, 1), 1);
    h = match_tree(t, "a/c");
    assert_int_equal(h.n, 2);
    assert_int_equal(hit_count(&h, A, 0), 1);
    assert_int_equal(hit_count(&h, B, 2), 1);
    h = match_tree(t, "a"); /* "a/#" matches its parent level */
    assert_int_equal(h.n, 1);
    assert_int_equal(hit_count(&h, A, 0), 1);
    h = match_tree(t, "a/b/c");
    assert_int_equal(h.n, 1);
    assert_int_equal(hit_count(&h, A, 0), 1);
    h = match_tree(t, "b");
    assert_int_equal(h.n, 0);

    /* Same owner, same filter: options replaced, 1 returned, no new entry
     * ([MQTT-3.8.4-3]). */
    assert_int_equal(add(t, "a/b", A, 2), 1);
    assert_int_equal(topic_tree_count(t), 4);
    h = match_tree(t, "a/b");
    assert_int_equal(h.n, 4);
    assert_int_equal(hit_count(&h, A, 2), 1);
    assert_int_equal(hit_count(&h, A, 1), 0);

    /* Removing what is not there. */
    assert_int_equal(del(t, "a/b", B), -ENOENT);   /* filter exists, owner not on it */
    assert_int_equal(del(t, "x/y", A), -ENOENT);   /* no such path */
    assert_int_equal(del(t, "a", A), -ENOENT);     /* interior node, no subscriber */
    assert_int_equal(del(t, "a/b/c", A), -ENOENT); /* below a leaf */
    assert_int_equal(del(t, "a/+", A), -ENOENT);
    assert_int_equal(topic_tree_count(t), 4);

    assert_int_equal(del(t, "a/b", A), 0);
    assert_int_equal(topic_tree_count(t), 3);
    assert_int_equal(del(t, "a/b", A), -ENOENT);
    h = match_tree(t, "a/b");
    assert_int_equal(h.n, 3);
    assert_int_equal(hit_count(&h, A, -1), 1); /* only a/# now */
    assert_int_equal(hit_count(&h, C, 1), 1);

    assert_int_equal(del(t, "a/b", C), 0);
    assert_int_equal(del(t, "a/+", B), 0);
    assert_int_equal(del(t, "a/#", A), 0);
    assert_int_equal(topic_tree_count(t), 0);
    h = match_tree(t, "a/b");
    assert_int_equal(h.n, 0);
    h = match_tree(t, "a");
    assert_int_equal(h.n, 0);

    /* The pruned path can be built again. */
    assert_int_equal(add(t, "a/b", B, 0), 0);
    h = match_tree(t, "a/b");
    assert_int_equal(h.n, 1);
    assert_int_equal(del(t, "a/b", B), 0);
    assert_int_equal(topic_tree_count(t), 0);

    topic_tree_free(t);
    topic_tree_free(NULL);
}

static void test_tree_overlapping_same_owner(void **state)
{
    (void)state;
    topic_tree_t *t;
    assert_int_equal(topic_tree_new(&t), 0);
    void *A = owner(1), *B = owner(2);
    /* §4.7.1 non-normative: overlapping subscriptions; this server reports
     * the owner once per matching filter, each with its own options. */
    assert_int_equal(add(t, "sport/#", A, 0), 0);
    assert_int_equal(add(t, "sport/tennis/+", A, 1), 0);
    assert_int_equal(add(t, "#", A, 2), 0);
    assert_int_equal(add(t, "sport/tennis/player1", B, 1), 0);
    hits_t h = match_tree(t, "sport/tennis/player1");
    assert_int_equal(h.n, 4);
    assert_int_equal(hit_count(&h, A, -1), 3);
    assert_int_equal(hit_count(&h, A, 0), 1);
    assert_int_equal(hit_count(&h, A, 1), 1);
    assert_int_equal(hit_count(&h, A, 2), 1);
    assert_int_equal(hit_count(&h, B, 1), 1);
    h = match_tree(t, "sport");
    assert_int_equal(h.n, 2); /* sport/# and # */
    h = match_tree(t, "news");
    assert_int_equal(h.n, 1);
    assert_int_equal(del(t, "sport/#", A), 0);
    assert_int_equal(del(t, "sport/tennis/+", A), 0);
    assert_int_equal(del(t, "#", A), 0);
    assert_int_equal(del(t, "sport/tennis/player1", B), 0);
    assert_int_equal(topic_tree_count(t), 0);
    topic_tree_free(t);
}

static void test_tree_dollar(void **state)
{
    (void)state;
    topic_tree_t *t;
    assert_int_equal(topic_tree_new(&t), 0);
    void *O[6];
    for (uintptr_t i = 0; i < 6; i++)
        O[i] = owner(i + 1);
    /* [MQTT-4.7.2-1]. */
    assert_int_equal(add(t, "#", O[0], 0), 0);
    assert_int_equal(add(t, "+/monitor/Clients", O[1], 0), 0);
    assert_int_equal(add(t, "$SYS/#", O[2], 0), 0);
    assert_int_equal(add(t, "$SYS/monitor/+", O[3], 0), 0);
    assert_int_equal(add(t, "+/#", O[4], 0), 0);
    assert_int_equal(add(t, "$SYS/monitor/Clients", O[5], 0), 0);
    hits_t h = match_tree(t, "$SYS/monitor/Clients");
    assert_int_equal(h.n, 3);
    assert_int_equal(hit_count(&h, O[2], -1), 1);
    assert_int_equal(hit_count(&h, O[3], -1), 1);
    assert_int_equal(hit_count(&h, O[5], -1), 1);
    h = match_tree(t, "$SYS");
    assert_int_equal(h.n, 1);
    assert_int_equal(hit_count(&h, O[2], -1), 1);
    /* A non-'$' topic under the same shape: all wildcards apply. */
    h = match_tree(t, "x/monitor/Clients");
    assert_int_equal(h.n, 3);
    assert_int_equal(hit_count(&h, O[0], -1), 1);
    assert_int_equal(hit_count(&h, O[1], -1), 1);
    assert_int_equal(hit_count(&h, O[4], -1), 1);
    topic_tree_free(t); /* freed with entries still in it */
}

static void test_tree_many_devices(void **state)
{
    (void)state;
    enum { N = 20000 };
    topic_tree_t *t;
    char f[64];
    assert_int_equal(topic_tree_new(&t), 0);
    for (uintptr_t i = 0; i < N; i++) {
        int n = snprintf(f, sizeof(f), "devices/dev-%u/#", (unsigned)i);
        assert_int_equal(topic_tree_add(t, f, (size_t)n, owner(i + 1), 1), 0);
    }
    assert_int_equal(topic_tree_count(t), N);

    hits_t h = match_tree(t, "devices/dev-12345/telemetry");
    assert_int_equal(h.n, 1);
    assert_ptr_equal(h.owner[0], owner(12346));
    h = match_tree(t, "devices/dev-12345");
    assert_int_equal(h.n, 1);
    assert_ptr_equal(h.owner[0], owner(12346));
    h = match_tree(t, "devices/dev-20000/x");
    assert_int_equal(h.n, 0);
    h = match_tree(t, "devices");
    assert_int_equal(h.n, 0);

    /* Remove the even ones (deletions in the middle of the children's hash
     * table), then check every odd one is still found, exactly once. */
    for (uintptr_t i = 0; i < N; i += 2) {
        int n = snprintf(f, sizeof(f), "devices/dev-%u/#", (unsigned)i);
        assert_int_equal(topic_tree_remove(t, f, (size_t)n, owner(i + 1)), 0);
    }
    assert_int_equal(topic_tree_count(t), N / 2);
    for (uintptr_t i = 0; i < N; i++) {
        int n = snprintf(f, sizeof(f), "devices/dev-%u/telemetry", (unsigned)i);
        hits_t hh;
        memset(&hh, 0, sizeof(hh));
        topic_tree_match(t, f, (size_t)n, collect, &hh);
        if (i % 2 == 0) {
            assert_int_equal(hh.n, 0);
        } else {
            assert_int_equal(hh.n, 1);
            assert_ptr_equal(hh.owner[0], owner(i + 1));
        }
    }
    /* Then the rest, from the top down. */
    for (uintptr_t i = N; i-- > 0;) {
        if (i % 2 == 0)
            continue;
        int n = snprintf(f, sizeof(f), "devices/dev-%u/#", (unsigned)i);
        assert_int_equal(topic_tree_remove(t, f, (size_t)n, owner(i + 1)), 0);
        assert_int_equal(topic_tree_remove(t, f, (size_t)n, owner(i + 1)), -ENOENT);
    }
    assert_int_equal(topic_tree_count(t), 0);
    h = match_tree(t, "devices/dev-12345/telemetry");
    assert_int_equal(h.n, 0);
    topic_tree_free(t); /* LSan: nothing left behind */
}

/* ---- Randomized: tree vs brute force ------------------------------------- */

/* A fixed-seed xorshift, so runs are repeatable across libcs. */
static uint32_t rng_state = 0x2545F491u;

static uint32_t rng(void)
{
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng_state = x;
    return x;
}

/* A naive reference matcher for [MQTT-4.7]: split both into levels, walk. */
#define REF_MAX_LEVELS 16

static size_t split(const char *s, const char *lv[], size_t len[])
{
    size_t n = 0;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        assert_true(n < REF_MAX_LEVELS);
        lv[n] = p;
        len[n] = l;
        n++;
        if (!e)
            return n;
        p = e + 1;
    }
}

static bool lv_is(const char *p, size_t l, const char *w)
{
    return l == strlen(w) && memcmp(p, w, l) == 0;
}

static bool ref_match(const char *filter, const char *topic)
{
    const char *fl[REF_MAX_LEVELS], *tl[REF_MAX_LEVELS];
    size_t fn[REF_MAX_LEVELS], tn[REF_MAX_LEVELS];
    size_t nf = split(filter, fl, fn), nt = split(topic, tl, tn);
    if (topic[0] == '$' && (lv_is(fl[0], fn[0], "+") || lv_is(fl[0], fn[0], "#")))
        return false;
    for (size_t i = 0; i < nf; i++) {
        if (lv_is(fl[i], fn[i], "#"))
            return i <= nt; /* "#" matches its parent and everything below */
        if (i >= nt)
            return false;
        if (!lv_is(fl[i], fn[i], "+") && (fn[i] != tn[i] || memcmp(fl[i], tl[i], fn[i]) != 0))
            return false;
    }
    return nf == nt;
}

static const char *const filter_levels[] = {"a", "b", "+", "#", "$x", ""};
static const char *const topic_levels[] = {"a", "b", "$x", ""};

#define NFILTERS 300
#define NTOPICS 300
#define NOWNERS 24

static void random_filter(char *out, size_t cap)
{
    do {
        size_t depth = 1 + rng() % 4, n = 0;
        out[0] = '\0';
        for (size_t i = 0; i < depth; i++) {
            const char *l = filter_levels[rng() % 6];
            int w = snprintf(out + n, cap - n, "%s%s", i ? "/" : "", l);
            assert_true(w >= 0 && (size_t)w < cap - n);
            n += (size_t)w;
            if (strcmp(l, "#") == 0)
                break; /* [MQTT-4.7.1-2]: "#" is the last level */
        }
    } while (out[0] == '\0'); /* a single empty level is not a filter */
}

static void random_topic(char *out, size_t cap)
{
    do {
        size_t depth = 1 + rng() % 5, n = 0;
        out[0] = '\0';
        for (size_t i = 0; i < depth; i++) {
            int w = snprintf(out + n, cap - n, "%s%s", i ? "/" : "", topic_levels[rng() % 4]);
            assert_true(w >= 0 && (size_t)w < cap - n);
            n += (size_t)w;
        }
    } while (out[0] == '\0'); /* a single empty level is not a topic */
}

typedef struct entry {
    char filter[32];
    uintptr_t owner;
    uint8_t opts;
    bool live;
} entry_t;

typedef struct tally {
    size_t count[NOWNERS + 1];
    unsigned opts_sum[NOWNERS + 1];
    size_t total;
} tally_t;

static void tally_cb(void *ctx, void *o, uint8_t opts)
{
    tally_t *t = ctx;
    uintptr_t i = (uintptr_t)o;
    assert_true(i >= 1 && i <= NOWNERS);
    t->count[i]++;
    t->opts_sum[i] += opts;
    t->total++;
}

/* Compares the tree with brute force over every topic. */
static void check_all(const topic_tree_t *t, const entry_t *e, size_t ne, char topics[][32],
                      size_t nt)
{
    for (size_t k = 0; k < nt; k++) {
        tally_t want, got;
        memset(&want, 0, sizeof(want));
        memset(&got, 0, sizeof(got));
        for (size_t i = 0; i < ne; i++) {
            if (e[i].live && matches(e[i].filter, topics[k]))
                tally_cb(&want, owner(e[i].owner), e[i].opts);
        }
        topic_tree_match(t, topics[k], strlen(topics[k]), tally_cb, &got);
        if (memcmp(&want, &got, sizeof(want)) != 0)
            fail_msg("topic '%s': tree reported %zu, brute force %zu", topics[k], got.total,
                     want.total);
    }
}

static void test_tree_random(void **state)
{
    (void)state;
    static entry_t e[NFILTERS];
    static char topics[NTOPICS][32];
    memset(e, 0, sizeof(e));
    rng_state = 0x2545F491u;

    for (size_t k = 0; k < NTOPICS; k++) {
        random_topic(topics[k], sizeof(topics[k]));
        assert_true(name_ok(topics[k]));
    }

    topic_tree_t *t;
    assert_int_equal(topic_tree_new(&t), 0);
    size_t live = 0, matched = 0;
    for (size_t i = 0; i < NFILTERS; i++) {
        random_filter(e[i].filter, sizeof(e[i].filter));
        assert_true(filter_ok(e[i].filter));
        e[i].owner = 1 + rng() % NOWNERS;
        e[i].opts = (uint8_t)(rng() % 3);
        /* The same (owner, filter) twice replaces the options. */
        size_t prev = i;
        for (size_t j = 0; j < i; j++) {
            if (e[j].live && e[j].owner == e[i].owner && strcmp(e[j].filter, e[i].filter) == 0)
                prev = j;
        }
        int rc = add(t, e[i].filter, owner(e[i].owner), e[i].opts);
        if (prev != i) {
            assert_int_equal(rc, 1);
            e[prev].live = false;
        } else {
            assert_int_equal(rc, 0);
            live++;
        }
        e[i].live = true;
        assert_int_equal(topic_tree_count(t), live);
    }

    /* topic_matches against the naive reference, every pair. */
    for (size_t i = 0; i < NFILTERS; i++) {
        for (size_t k = 0; k < NTOPICS; k++) {
            bool m = matches(e[i].filter, topics[k]);
            if (m != ref_match(e[i].filter, topics[k]))
                fail_msg("topic_matches('%s', '%s') = %d", e[i].filter, topics[k], m);
            matched += m;
        }
    }
    assert_true(matched > 1000); /* the alphabet is small enough to match often */

    check_all(t, e, NFILTERS, topics, NTOPICS);

    /* Remove about half, check again, then the rest. */
    for (size_t i = 0; i < NFILTERS; i++) {
        if (!e[i].live || rng() % 2)
            continue;
        assert_int_equal(del(t, e[i].filter, owner(e[i].owner)), 0);
        assert_int_equal(del(t, e[i].filter, owner(e[i].owner)), -ENOENT);
        e[i].live = false;
        live--;
    }
    assert_int_equal(topic_tree_count(t), live);
    assert_int_equal(del(t, "a/b/+/#", owner(NOWNERS + 1)), -ENOENT);
    check_all(t, e, NFILTERS, topics, NTOPICS);

    for (size_t i = 0; i < NFILTERS; i++) {
        if (!e[i].live)
            continue;
        assert_int_equal(del(t, e[i].filter, owner(e[i].owner)), 0);
        e[i].live = false;
    }
    assert_int_equal(topic_tree_count(t), 0);
    check_all(t, e, NFILTERS, topics, NTOPICS);
    topic_tree_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_name_valid),
        cmocka_unit_test(test_topic_filter_valid),
        cmocka_unit_test(test_topic_matches_spec),
        cmocka_unit_test(test_tree_basic),
        cmocka_unit_test(test_tree_overlapping_same_owner),
        cmocka_unit_test(test_tree_dollar),
        cmocka_unit_test(test_tree_many_devices),
        cmocka_unit_test(test_tree_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

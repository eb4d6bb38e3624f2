/*
 * fuzz_topic: topic names, topic filters and the subscription tree of
 * src/mqtt/topic.c.
 *
 * The input is lines ('\n'): the first is a filter, the second a topic,
 * any further line (up to MAX_LINES) serves as both. Oracles:
 *   - topic_name_valid / topic_filter_valid agree with reference checks
 *     written here from MQTT 5.0 §4.7, at the edges of their length and
 *     depth limits too, and a valid name is always a valid filter;
 *   - topic_matches agrees with a level-by-level reference matcher for
 *     every valid (filter, name) pair;
 *   - a topic_tree holding every valid line as a filter (spread over a few
 *     owners so that the same (owner, filter) is sometimes added twice)
 *     plus a fixed set of wildcard filters reports, for each valid name,
 *     exactly the (owner, filter) pairs topic_matches accepts, with their
 *     latest options, before and after half of them are removed;
 *   - adding an existing pair returns 1, removing a missing one -ENOENT,
 *     topic_tree_count follows, and it is 0 once everything is removed.
 * Disagreement aborts. ASan/LSan watch the tree's node and hash-table
 * management (insert, grow, backward-shift delete, prune).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqtt/topic.h"

#define MAX_LINES 16
#define MAX_PAIRS 64
#define NOWNERS 6
#define BIG SIZE_MAX

struct line {
    const char *p;
    size_t len;
};

/* ---- Reference checks ------------------------------------------------- */

static size_t levels(const char *s, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '/';
    return n;
}

static bool ref_name_valid(const char *t, size_t len, size_t max_len, size_t max_depth)
{
    if (len == 0 || len > max_len || levels(t, len) > max_depth)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (t[i] == '+' || t[i] == '#' || t[i] == '\0')
            return false;
    }
    return true;
}

static bool ref_filter_valid(const char *f, size_t len, size_t max_len, size_t max_depth)
{
    if (len == 0 || len > max_len || levels(f, len) > max_depth)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && f[i] != '/')
            continue;
        /* The level is f[start, i). */
        size_t n = i - start;
        for (size_t k = start; k < i; k++) {
            if (f[k] == '\0')
                return false;
            if ((f[k] == '+' || f[k] == '#') && n != 1)
                return false;
        }
        if (n == 1 && f[start] == '#' && i != len)
            return false; /* '#' only as the last level */
        start = i + 1;
    }
    return true;
}

/* A cursor over the levels of a string. */
struct lv {
    const char *s;
    size_t len, pos;
    bool done;
};

/* The next level as [*b, *e) of s; false once every level was returned.
 * "a/" has two levels, "a" and "". */
static bool lv_next(struct lv *c, size_t *b, size_t *e)
{
    if (c->done)
        return false;
    size_t i = c->pos;
    while (i < c->len && c->s[i] != '/')
        i++;
    *b = c->pos;
    *e = i;
    if (i == c->len)
        c->done = true;
    else
        c->pos = i + 1;
    return true;
}

/* Valid filter and valid name only. */
static bool ref_matches(const char *f, size_t fl, const char *t, size_t tl)
{
    struct lv fc = {f, fl, 0, false}, tc = {t, tl, 0, false};
    size_t fb, fe, tb, te;
    bool first = true;
    while (lv_next(&fc, &fb, &fe)) {
        bool plus = fe - fb == 1 && f[fb] == '+';
        bool hash = fe - fb == 1 && f[fb] == '#';
        if (first && (plus || hash) && t[0] == '$')
            return false; /* [MQTT-4.7.2-1] */
        first = false;
        if (hash)
            return true; /* also the parent level: "a/#" matches "a" */
        if (!lv_next(&tc, &tb, &te))
            return false;
        if (plus)
            continue;
        if (fe - fb != te - tb || memcmp(f + fb, t + tb, fe - fb) != 0)
            return false;
    }
    /* Every filter level used: the topic must have no level left. */
    return !lv_next(&tc, &tb, &te);
}

/* ---- Validity --------------------------------------------------------- */

static void check_validity(const struct line *l)
{
    const char *s = l->p;
    size_t n = l->len, d = levels(s, n);
    bool name = topic_name_valid(s, n, BIG, BIG);
    bool filter = topic_filter_valid(s, n, BIG, BIG);
    CHECK(name == ref_name_valid(s, n, BIG, BIG));
    CHECK(filter == ref_filter_valid(s, n, BIG, BIG));
    if (name)
        CHECK(filter);
    /* Exactly at the limits: same answer; one under: refused. */
    CHECK(topic_name_valid(s, n, n, d) == name);
    CHECK(topic_filter_valid(s, n, n, d) == filter);
    if (n > 0) {
        CHECK(!topic_name_valid(s, n, n - 1, BIG));
        CHECK(!topic_filter_valid(s, n, n - 1, BIG));
    }
    /* (A max_depth of 0 is not a configuration config.c allows, and the
     * two functions differ there, so only from depth 2.) */
    if (d > 1) {
        CHECK(!topic_name_valid(s, n, BIG, d - 1));
        CHECK(!topic_filter_valid(s, n, BIG, d - 1));
    }
    /* Small limits, as a tight config would set them. */
    CHECK(topic_name_valid(s, n, 8, 3) == ref_name_valid(s, n, 8, 3));
    CHECK(topic_filter_valid(s, n, 8, 3) == ref_filter_valid(s, n, 8, 3));
}

/* ---- Tree ------------------------------------------------------------- */

struct pair {
    int owner;
    const char *f;
    size_t len;
    uint8_t opts;
    bool live;
};

struct state {
    struct pair pairs[MAX_PAIRS];
    size_t npairs;
    size_t live;
    topic_tree_t *tree;
};

static int owners[NOWNERS];

struct tally {
    unsigned hits[NOWNERS];
    unsigned optsum[NOWNERS];
};

static void on_match(void *ctx, void *owner, uint8_t opts)
{
    struct tally *t = ctx;
    int *o = owner;
    CHECK(o >= owners && o < owners + NOWNERS);
    t->hits[o - owners]++;
    t->optsum[o - owners] += opts;
}

static void add_pair(struct state *st, int owner, const char *f, size_t len, uint8_t opts)
{
    struct pair *same = NULL;
    for (size_t i = 0; i < st->npairs; i++) {
        struct pair *p = &st->pairs[i];
        if (p->live && p->owner == owner && p->len == len && memcmp(p->f, f, len) == 0)
            same = p;
    }
    int rc = topic_tree_add(st->tree, f, len, &owners[owner], opts);
    CHECK(rc == (same ? 1 : 0));
    if (same) {
        same->opts = opts;
    } else {
        CHECK(st->npairs < MAX_PAIRS);
        st->pairs[st->npairs++] = (struct pair){owner, f, len, opts, true};
        st->live++;
    }
    CHECK(topic_tree_count(st->tree) == st->live);
}

static void remove_pair(struct state *st, struct pair *p)
{
    CHECK(p->live);
    CHECK(topic_tree_remove(st->tree, p->f, p->len, &owners[p->owner]) == 0);
    p->live = false;
    st->live--;
    CHECK(topic_tree_count(st->tree) == st->live);
    /* Gone means gone. */
    CHECK(topic_tree_remove(st->tree, p->f, p->len, &owners[p->owner]) == -ENOENT);
}

static void check_match(const struct state *st, const struct line *t)
{
    struct tally got, want;
    memset(&got, 0, sizeof(got));
    memset(&want, 0, sizeof(want));
    for (size_t i = 0; i < st->npairs; i++) {
        const struct pair *p = &st->pairs[i];
        if (!p->live)
            continue;
        bool m = topic_matches(p->f, p->len, t->p, t->len);
        CHECK(m == ref_matches(p->f, p->len, t->p, t->len));
        if (m) {
            want.hits[p->owner]++;
            want.optsum[p->owner] += p->opts;
        }
    }
    topic_tree_match(st->tree, t->p, t->len, on_match, &got);
    for (int o = 0; o < NOWNERS; o++) {
        CHECK(got.hits[o] == want.hits[o]);
        CHECK(got.optsum[o] == want.optsum[o]);
    }
}

static const char *const fixed_filters[] = {
    "#", "+", "+/+", "+/#", "a/#", "$SYS/#", "+/b/#", "/", "a/+/c", "a", "$share/g/#",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct line lines[MAX_LINES];
    size_t nlines = 0;
    const char *p = (const char *)data, *end = p + size;
    while (nlines < MAX_LINES) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        lines[nlines++] = (struct line){p, (size_t)(e - p)};
        if (nl == NULL)
            break;
        p = nl + 1;
    }

    for (size_t i = 0; i < nlines; i++)
        check_validity(&lines[i]);
    /* topic_matches on anything at all must not crash; on valid input it
     * is compared with the reference below. */
    if (nlines >= 2)
        (void)topic_matches(lines[0].p, lines[0].len, lines[1].p, lines[1].len);

    struct state st;
    memset(&st, 0, sizeof(st));
    CHECK(topic_tree_new(&st.tree) == 0);
    CHECK(topic_tree_count(st.tree) == 0);

    for (size_t i = 0; i < nlines; i++) {
        const struct line *l = &lines[i];
        if (topic_filter_valid(l->p, l->len, BIG, BIG))
            add_pair(&st, (int)(i % 4), l->p, l->len, (uint8_t)(i & 3));
    }
    for (size_t i = 0; i < sizeof(fixed_filters) / sizeof(fixed_filters[0]); i++)
        add_pair(&st, 4, fixed_filters[i], strlen(fixed_filters[i]), 1);
    /* The topic itself, as a filter, for another owner: an exact match. */
    if (nlines >= 2 && topic_name_valid(lines[1].p, lines[1].len, BIG, BIG))
        add_pair(&st, 5, lines[1].p, lines[1].len, 2);
    /* And the first filter again for its owner with new options. */
    if (topic_filter_valid(lines[0].p, lines[0].len, BIG, BIG))
        add_pair(&st, 0, lines[0].p, lines[0].len, 3);

    for (size_t i = 0; i < nlines; i++) {
        if (topic_name_valid(lines[i].p, lines[i].len, BIG, BIG))
            check_match(&st, &lines[i]);
    }
    static const struct line probes[] = {{"a", 1}, {"a/b/c", 5}, {"$SYS/x", 6}, {"/", 1}};
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
        check_match(&st, &probes[i]);

    /* Remove every other pair, newest first, and match again: pruning and
     * hash-table deletion must leave the rest findable. */
    for (size_t i = st.npairs; i-- > 0;) {
        if (i % 2 == 1)
            remove_pair(&st, &st.pairs[i]);
    }
    for (size_t i = 0; i < nlines; i++) {
        if (topic_name_valid(lines[i].p, lines[i].len, BIG, BIG))
            check_match(&st, &lines[i]);
    }
    for (size_t i = 0; i < st.npairs; i++) {
        if (st.pairs[i].live)
            remove_pair(&st, &st.pairs[i]);
    }
    CHECK(topic_tree_count(st.tree) == 0);
    /* An empty tree matches nothing. */
    if (nlines >= 2)
        check_match(&st, &lines[1]);
    topic_tree_free(st.tree);
    return 0;
}

/*
 * The audit log's writer and verifier: the hash chain over the store's
 * audit table (see audit.h for the entry fields and the exact hash input).
 *
 * State: the tail of the chain (last seq and hash) lives here, in memory,
 * so that audit_log can hash and number an entry at once and hand it to
 * the storage thread like any other write; the store keeps rows in seq
 * order and refuses a seq that is not last + 1, which makes two writers
 * (or a lost append) visible instead of silently forking the chain.
 *
 * Text fields are cleaned before hashing (valid UTF-8, no control
 * characters, cut to the store's field sizes at a character boundary), so
 * what is hashed is exactly what is stored and later shown as JSON.
 *
 * Loop thread only; the append callbacks run there too.
 */
#include "security/audit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/util.h"

#define HASH_TAG "drover-audit-v1"
#define HASH_TAG_LEN (sizeof(HASH_TAG) - 1)
#define VERIFY_PAGE 1000

struct audit {
    store_t *st;
    int64_t last_seq; /* 0: the log is empty */
    uint8_t last_hash[CRYPTO_HASH_LEN];
    unsigned inflight;   /* appends submitted, callback not yet run */
    bool resync;         /* an append failed: reload the tail once idle */
    uint64_t lost;       /* appends that failed, since the start */
    uint64_t unrecorded; /* of those, not yet noted by an audit.lost entry */
};

/* ---- Text cleaning ------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* Copies src (NULL = "") into dst[n] as valid UTF-8 without C0 or C1
 * control characters (each invalid byte or control character becomes
 * '?'), stopping before a character that would not fit. */
static void text_copy(char *dst, size_t n, const char *src)
{
    const unsigned char *s = (const unsigned char *)(src != NULL ? src : "");
    size_t o = 0;
    while (*s != '\0') {
        size_t len = utf8_seq(s);
        bool ctl =
            len == 0 || s[0] < 0x20 || s[0] == 0x7F || (len == 2 && s[0] == 0xC2 && s[1] < 0xA0);
        size_t out = ctl ? 1 : len;
        if (o + out >= n)
            break;
        if (ctl)
            dst[o] = '?';
        else
            memcpy(dst + o, s, len);
        o += out;
        s += len == 0 ? 1 : len;
    }
    dst[o] = '\0';
}

/* ---- The hash ------------------------------------------------------------ */

static uint8_t *put_u64(uint8_t *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(u & 0xFF);
        u >>= 8;
    }
    return p + 8;
}

static uint8_t *put_str(uint8_t *p, const char *s, size_t len)
{
    uint32_t l = (uint32_t)len;
    p[0] = (uint8_t)(l >> 24);
    p[1] = (uint8_t)(l >> 16);
    p[2] = (uint8_t)(l >> 8);
    p[3] = (uint8_t)l;
    memcpy(p + 4, s, len);
    return p + 4 + len;
}

int audit_entry_hash(const store_audit_t *e, uint8_t out[CRYPTO_HASH_LEN])
{
    const char *fields[5] = {e->actor, e->action, e->object, e->outcome, e->source};
    const size_t caps[5] = {sizeof(e->actor), sizeof(e->action), sizeof(e->object),
                            sizeof(e->outcome), sizeof(e->source)};
    size_t lens[5];
    size_t total = HASH_TAG_LEN + 8 + 8 + 6 * 4 + CRYPTO_HASH_LEN;
    for (int i = 0; i < 5; i++) {
        lens[i] = strnlen(fields[i], caps[i]);
        if (lens[i] == caps[i])
            return -EINVAL;
        total += lens[i];
    }
    const char *detail = e->detail != NULL ? e->detail : "";
    size_t dlen = strlen(detail);
    if (dlen > UINT32_MAX)
        return -EINVAL;
    total += dlen;

    uint8_t *buf = malloc(total);
    if (buf == NULL)
        return -ENOMEM;
    uint8_t *p = buf;
    memcpy(p, HASH_TAG, HASH_TAG_LEN);
    p += HASH_TAG_LEN;
    p = put_u64(p, e->seq);
    p = put_u64(p, e->ts);
    for (int i = 0; i < 5; i++)
        p = put_str(p, fields[i], lens[i]);
    p = put_str(p, detail, dlen);
    memcpy(p, e->prev_hash, CRYPTO_HASH_LEN);
    crypto_sha256(buf, total, out);
    free(buf);
    return 0;
}

/* ---- Writing ------------------------------------------------------------- */

int audit_new(store_t *st, audit_t **out)
{
    audit_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->st = st;
    store_audit_t last;
    int rc = store_audit_last(st, &last);
    if (rc == 0) {
        a->last_seq = last.seq;
        memcpy(a->last_hash, last.hash, CRYPTO_HASH_LEN);
        store_audit_fini(&last);
    } else if (rc != -ENOENT) {
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void audit_free(audit_t *a)
{
    free(a);
}

uint64_t audit_lost(const audit_t *a)
{
    return a != NULL ? a->lost : 0;
}

static void appended(void *arg, int rc, int64_t value)
{
    audit_t *a = arg;
    (void)value;
    a->inflight--;
    if (rc < 0) {
        a->lost++;
        a->unrecorded++;
        a->resync = true;
    }
}

/* The stored text of detail: canonical (see audit.h), capped. */
static char *detail_text(const json_t *detail)
{
    if (detail == NULL)
        return strdup("{}");
    char *t = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (t != NULL && strlen(t) > AUDIT_DETAIL_MAX) {
        free(t);
        t = strdup("{\"error\":\"detail too large\"}");
    }
    return t;
}

static void append(audit_t *a, const char *actor, const char *action, const char *object,
                   const char *outcome, const char *source, const json_t *detail)
{
    store_audit_t e;
    memset(&e, 0, sizeof(e));
    e.seq = a->last_seq + 1;
    e.ts = util_now_ms();
    text_copy(e.actor, sizeof(e.actor), actor);
    text_copy(e.action, sizeof(e.action), action);
    text_copy(e.object, sizeof(e.object), object);
    text_copy(e.outcome, sizeof(e.outcome), outcome);
    text_copy(e.source, sizeof(e.source), source);
    memcpy(e.prev_hash, a->last_hash, CRYPTO_HASH_LEN);
    e.detail = detail_text(detail);
    if (e.detail == NULL || audit_entry_hash(&e, e.hash) < 0) {
        /* Nothing was chained: the tail stays, only this entry is lost. */
        a->lost++;
        a->unrecorded++;
        free(e.detail);
        return;
    }
    a->last_seq = e.seq;
    memcpy(a->last_hash, e.hash, CRYPTO_HASH_LEN);
    a->inflight++;
    store_audit_append(a->st, &e, appended, a); /* copies e */
    free(e.detail);
}

/* After failed appends: continue from what the store really holds, and
 * say how many entries never made it. */
static void resync(audit_t *a)
{
    store_audit_t last;
    int rc = store_audit_last(a->st, &last);
    if (rc == 0) {
        a->last_seq = last.seq;
        memcpy(a->last_hash, last.hash, CRYPTO_HASH_LEN);
        store_audit_fini(&last);
    } else if (rc == -ENOENT) {
        a->last_seq = 0;
        memset(a->last_hash, 0, CRYPTO_HASH_LEN);
    } else {
        return; /* the store is still unwell: try again on the next event */
    }
    a->resync = false;
    json_t *d = json_pack("{s:I}", "lost", (json_int_t)a->unrecorded);
    a->unrecorded = 0;
    append(a, "system", "audit.lost", "", "error", "", d);
    json_decref(d);
}

void audit_log(audit_t *a, const char *actor, const char *action, const char *object,
               const char *outcome, const char *source, const json_t *detail)
{
    if (a == NULL)
        return;
    if (a->resync && a->inflight == 0)
        resync(a);
    append(a, actor, action, object, outcome, source, detail);
}

/* ---- Verifying ----------------------------------------------------------- */

struct verify {
    int64_t last_seq;
    uint8_t last_hash[CRYPTO_HASH_LEN];
    int64_t bad_seq; /* 0: none found yet */
    int rc;          /* first error other than a broken chain */
    int seen;        /* rows visited in this page */
};

static int verify_row(void *arg, const store_audit_t *e)
{
    struct verify *v = arg;
    if (v->bad_seq != 0 || v->rc != 0)
        return 1;
    v->seen++;
    uint8_t h[CRYPTO_HASH_LEN];
    int rc = audit_entry_hash(e, h);
    if (rc == -ENOMEM) {
        v->rc = rc;
        return 1;
    }
    if (e->seq != v->last_seq + 1 || rc < 0 ||
        memcmp(e->prev_hash, v->last_hash, CRYPTO_HASH_LEN) != 0 ||
        memcmp(h, e->hash, CRYPTO_HASH_LEN) != 0) {
        v->bad_seq = e->seq;
        return 1;
    }
    v->last_seq = e->seq;
    memcpy(v->last_hash, e->hash, CRYPTO_HASH_LEN);
    return 0;
}

int audit_verify(store_t *st, int64_t *bad_seq)
{
    struct verify v;
    memset(&v, 0, sizeof(v));
    for (;;) {
        v.seen = 0;
        int rc = store_audit_list(st, v.last_seq, 0, 0, NULL, NULL, VERIFY_PAGE, verify_row, &v);
        if (v.rc < 0)
            return v.rc;
        if (v.bad_seq != 0) {
            *bad_seq = v.bad_seq;
            return -EBADMSG;
        }
        if (rc < 0)
            return rc;
        if (v.seen < VERIFY_PAGE)
            return 0;
    }
}

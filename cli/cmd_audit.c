/*
 * `drover audit list | export | verify` (see cmd_audit.h).
 *
 * list pages through GET /api/v1/audit (JSON) like `device list`. export
 * and verify read GET /api/v1/audit?format=jsonl in pages of EXPORT_PAGE
 * entries, each continuing after the last seq of the one before, until a
 * page comes back empty: an answer can be cut short by the server's byte
 * cap, so a short page does not mean the end. export copies the server's
 * lines to stdout unchanged; verify feeds each entry to the chain checker.
 *
 * The checker recomputes every entry's hash from its fields with the
 * encoding of src/security/audit.h (version 1): SHA-256 over
 * "drover-audit-v1", seq and ts as 8-byte big-endian, then actor, action,
 * object, outcome, source and detail each as a 4-byte big-endian length
 * and its bytes, then prev_hash. detail arrives parsed and is serialised
 * back with jansson as the server stored it (compact, keys sorted), so a
 * stored detail that was not in that form can never verify.
 *
 * Single-threaded; output through stdio; text from the server goes to
 * the terminal only through cli_sanitize or the table printer.
 */
#include "cmd_audit.h"

#include "cli_util.h"

#include "common/crypto.h"
#include "common/json.h"
#include "common/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_OK 0
#define EXIT_SERVER 1
#define EXIT_UNREACHABLE 2
#define EXIT_USAGE 64

#define HASH_TAG "drover-audit-v1"
#define HASH_LEN 32
#define EXPORT_PAGE 10000
#define PATH_MAX_BYTES (16 * 1024)
#define LINE_MAX_BYTES (1024 * 1024) /* far above the server's largest entry */
#define MAX_PAGES 100000000          /* no server sends this many: a loop guard */
#define CHAIN_BROKEN (-1)            /* verify: stop, the chain is broken (not an error) */

static void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errorf(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("drover: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- the chain checker ----------------------------------------------------- */

static const char *const text_fields[] = {"actor", "action", "object", "outcome", "source"};

void cli_audit_chain_init(cli_audit_chain_t *c, bool from_start)
{
    memset(c, 0, sizeof(*c));
    c->from_start = from_start;
}

static void put_be(cli_buf_t *b, uint64_t v, int bytes, int *err)
{
    uint8_t p[8];
    for (int i = bytes - 1; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xFF);
        v >>= 8;
    }
    if (*err == 0)
        *err = cli_buf_append(b, p, (size_t)bytes);
}

static void put_str(cli_buf_t *b, const char *s, size_t len, int *err)
{
    put_be(b, len, 4, err);
    if (*err == 0 && len > 0)
        *err = cli_buf_append(b, s, len);
}

static int hex_field(const json_t *entry, const char *key, uint8_t out[HASH_LEN])
{
    const json_t *v = json_object_get(entry, key);
    if (!json_is_string(v) || json_string_length(v) != 2 * HASH_LEN)
        return -EINVAL;
    return util_hex_decode(json_string_value(v), HASH_LEN, out);
}

/* The entry's hash by the version 1 encoding, and its prev_hash and hash
 * fields. -EINVAL with why set when a field is missing or malformed. */
static int entry_hash(const json_t *entry, uint8_t computed[HASH_LEN], uint8_t prev[HASH_LEN],
                      uint8_t stored[HASH_LEN], char *why, size_t whylen)
{
    const json_t *seq = json_object_get(entry, "seq");
    const json_t *ts = json_object_get(entry, "ts");
    const json_t *detail = json_object_get(entry, "detail");
    if (!json_is_integer(seq) || !json_is_integer(ts)) {
        snprintf(why, whylen, "\"seq\" and \"ts\" must be integers");
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(text_fields) / sizeof(text_fields[0]); i++) {
        if (!json_is_string(json_object_get(entry, text_fields[i]))) {
            snprintf(why, whylen, "\"%s\" must be a string", text_fields[i]);
            return -EINVAL;
        }
    }
    if (detail == NULL) {
        snprintf(why, whylen, "\"detail\" is missing");
        return -EINVAL;
    }
    if (hex_field(entry, "prev_hash", prev) < 0 || hex_field(entry, "hash", stored) < 0) {
        snprintf(why, whylen, "\"prev_hash\" and \"hash\" must be 64 hex digits");
        return -EINVAL;
    }
    char *dtext = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (dtext == NULL)
        return -ENOMEM;

    cli_buf_t b;
    int err = 0;
    cli_buf_init(&b, 4 * LINE_MAX_BYTES);
    err = cli_buf_append(&b, HASH_TAG, strlen(HASH_TAG));
    put_be(&b, (uint64_t)json_integer_value(seq), 8, &err);
    put_be(&b, (uint64_t)json_integer_value(ts), 8, &err);
    for (size_t i = 0; i < sizeof(text_fields) / sizeof(text_fields[0]); i++) {
        const json_t *v = json_object_get(entry, text_fields[i]);
        put_str(&b, json_string_value(v), json_string_length(v), &err);
    }
    put_str(&b, dtext, strlen(dtext), &err);
    if (err == 0)
        err = cli_buf_append(&b, prev, HASH_LEN);
    free(dtext);
    if (err == 0)
        crypto_sha256(b.data, b.len, computed);
    cli_buf_fini(&b);
    if (err == -EFBIG) {
        snprintf(why, whylen, "the entry is too large");
        return -EINVAL;
    }
    return err;
}

int cli_audit_chain_add(cli_audit_chain_t *c, const json_t *entry, int64_t *seq, char *why,
                        size_t whylen)
{
    uint8_t computed[HASH_LEN], prev[HASH_LEN], stored[HASH_LEN];
    const json_t *s = json_object_get(entry, "seq");
    *seq = json_is_integer(s) ? json_integer_value(s) : 0;
    if (!json_is_object(entry)) {
        snprintf(why, whylen, "not a JSON object");
        return -EINVAL;
    }
    int rc = entry_hash(entry, computed, prev, stored, why, whylen);
    if (rc < 0)
        return rc;
    static const uint8_t zero[HASH_LEN];
    bool first = c->n == 0;
    if (first && !c->from_start) {
        /* An export that starts later: its first link is taken on trust. */
        memcpy(c->last_hash, prev, HASH_LEN);
        c->last_seq = *seq - 1;
    }
    if (*seq != c->last_seq + 1) {
        snprintf(why, whylen, "gap in seq (expected %" PRId64 ")", c->last_seq + 1);
        return -EBADMSG;
    }
    if (memcmp(prev, first && c->from_start ? zero : c->last_hash, HASH_LEN) != 0) {
        snprintf(why, whylen, "prev_hash mismatch");
        return -EBADMSG;
    }
    if (memcmp(computed, stored, HASH_LEN) != 0) {
        snprintf(why, whylen, "hash mismatch");
        return -EBADMSG;
    }
    if (first)
        c->first_seq = *seq;
    c->n++;
    c->last_seq = *seq;
    memcpy(c->last_hash, stored, HASH_LEN);
    return 0;
}

/* ---- requests ----------------------------------------------------------------- */

typedef struct {
    cli_buf_t b;
    bool query;
    int err;
} path_t;

static void path_init(path_t *p, const char *prefix)
{
    cli_buf_init(&p->b, PATH_MAX_BYTES);
    p->query = false;
    p->err = cli_buf_puts(&p->b, prefix);
}

static void path_param(path_t *p, const char *key, const char *value)
{
    if (value == NULL || p->err)
        return;
    char *e = curl_easy_escape(NULL, value, (int)strnlen(value, PATH_MAX_BYTES));
    if (e == NULL) {
        p->err = -ENOMEM;
        return;
    }
    p->err = cli_buf_puts(&p->b, p->query ? "&" : "?");
    if (!p->err)
        p->err = cli_buf_puts(&p->b, key);
    if (!p->err)
        p->err = cli_buf_puts(&p->b, "=");
    if (!p->err)
        p->err = cli_buf_puts(&p->b, e);
    curl_free(e);
    p->query = true;
}

/* GET path. On a 2xx answer fills *out (caller frees out->body) and
 * returns 0; otherwise prints why and returns the exit status. */
static int get(cli_http_t *h, const char *server, path_t *p, cli_http_resp_t *out)
{
    char err[CLI_HTTP_ERR_MAX] = "";
    cli_http_resp_t r;
    if (p->err) {
        errorf(p->err == -EFBIG ? "request path too long" : "out of memory");
        return EXIT_USAGE;
    }
    int rc = cli_http_request(h, "GET", p->b.data, NULL, &r, err, sizeof(err));
    if (rc == -EIO) {
        char *s = cli_sanitize(server, 200);
        errorf("cannot reach server at %s: %s", s ? s : "?", err);
        free(s);
        return EXIT_UNREACHABLE;
    }
    if (rc == -EFBIG) {
        errorf("the server's response is larger than %u MiB; not read",
               CLI_HTTP_BODY_MAX / (1024 * 1024));
        return EXIT_SERVER;
    }
    if (rc < 0) {
        errorf("out of memory");
        return EXIT_SERVER;
    }
    if (r.status >= 200 && r.status < 300) {
        *out = r;
        return 0;
    }
    json_t *v = r.len > 0 ? json_util_parse(r.body, r.len, NULL, 0) : NULL;
    free(r.body);
    const char *code = json_string_value(json_object_get(v, "error"));
    const char *detail = json_string_value(json_object_get(v, "detail"));
    if (code == NULL) {
        errorf("the server answered %ld without a JSON error body", r.status);
    } else {
        char *d = cli_sanitize(detail ? detail : code, 300);
        char *c = cli_sanitize(code, 64);
        errorf("%s (%ld %s)", d ? d : "request failed", r.status, c ? c : "-");
        free(d);
        free(c);
    }
    json_decref(v);
    return EXIT_SERVER;
}

static void filters(path_t *p, const cli_audit_opts_t *o)
{
    path_param(p, "since", o->since);
    path_param(p, "until", o->until);
    path_param(p, "actor", o->actor);
    path_param(p, "object", o->object);
}

/* One page of JSON lines after cursor (NULL: from the start). */
static int get_lines(cli_http_t *h, const char *server, const cli_audit_opts_t *o,
                     const char *cursor, cli_http_resp_t *out)
{
    char limit[16];
    path_t p;
    snprintf(limit, sizeof(limit), "%d", EXPORT_PAGE);
    path_init(&p, "/api/v1/audit");
    path_param(&p, "format", "jsonl");
    if (o != NULL)
        filters(&p, o);
    path_param(&p, "limit", limit);
    path_param(&p, "cursor", cursor);
    int rc = get(h, server, &p, out);
    cli_buf_fini(&p.b);
    return rc;
}

/* The seq of the last line of a JSON lines body, as cursor text. */
static int last_seq_text(const char *body, size_t len, char *out, size_t outlen)
{
    while (len > 0 && body[len - 1] == '\n')
        len--;
    size_t start = len;
    while (start > 0 && body[start - 1] != '\n')
        start--;
    json_t *v = json_util_parse(body + start, len - start, NULL, 0);
    const json_t *s = json_object_get(v, "seq");
    int rc = json_is_integer(s) ? 0 : -EINVAL;
    if (rc == 0)
        snprintf(out, outlen, "%" JSON_INTEGER_FORMAT, json_integer_value(s));
    json_decref(v);
    return rc;
}

/* ---- list ---------------------------------------------------------------------- */

static int add_rows(cli_table_t *t, const json_t *entries)
{
    size_t i;
    const json_t *e;
    json_array_foreach(entries, i, e)
    {
        char seq[24] = "-", when[CLI_TIME_MAX] = "-";
        const json_t *s = json_object_get(e, "seq");
        const json_t *ts = json_object_get(e, "ts");
        if (json_is_integer(s))
            snprintf(seq, sizeof(seq), "%" JSON_INTEGER_FORMAT, json_integer_value(s));
        if (json_is_integer(ts) &&
            cli_format_time(json_integer_value(ts), false, when, sizeof(when)) < 0)
            snprintf(when, sizeof(when), "-");
        const char *row[7] = {seq, when};
        for (size_t k = 0; k < 5; k++)
            row[2 + k] = json_string_value(json_object_get(e, text_fields[k]));
        int rc = cli_table_add(t, row);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int print_pretty(const json_t *v)
{
    cli_buf_t b;
    cli_buf_init(&b, SIZE_MAX / 2);
    int rc = cli_json_pretty(v, &b);
    if (rc == 0) {
        fwrite(b.data, 1, b.len, stdout);
        fputc('\n', stdout);
    }
    cli_buf_fini(&b);
    if (rc < 0) {
        errorf("cannot print the answer: %s", strerror(-rc));
        return EXIT_SERVER;
    }
    return EXIT_OK;
}

static int do_list(cli_http_t *h, const char *server, const cli_audit_opts_t *o)
{
    int rc = EXIT_OK;
    cli_table_t t;
    json_t *all = json_array();
    char *cursor = o->cursor ? strdup(o->cursor) : NULL;
    bool more = false;
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", o->limit);
    cli_table_init(&t, 7);
    const char *header[] = {"SEQ", "TIME", "ACTOR", "ACTION", "OBJECT", "OUTCOME", "SOURCE"};
    if (all == NULL || (o->cursor && cursor == NULL) || cli_table_add(&t, header) < 0) {
        rc = -ENOMEM;
        goto fail;
    }
    for (long pages = 0; pages < MAX_PAGES; pages++) {
        path_t p;
        cli_http_resp_t r;
        path_init(&p, "/api/v1/audit");
        filters(&p, o);
        path_param(&p, "limit", o->limit > 0 ? limit : NULL);
        path_param(&p, "cursor", cursor);
        int st = get(h, server, &p, &r);
        cli_buf_fini(&p.b);
        if (st != 0) {
            rc = st;
            goto done;
        }
        char perr[160] = "";
        json_t *page = json_util_parse(r.body, r.len, perr, sizeof(perr));
        free(r.body);
        json_t *entries = json_object_get(page, "entries");
        json_t *next = json_object_get(page, "next");
        if (!json_is_array(entries) || !(json_is_null(next) || json_is_string(next))) {
            json_decref(page);
            errorf("unexpected answer from the server: no entries array or next cursor");
            rc = EXIT_SERVER;
            goto done;
        }
        if (o->json && !o->all) {
            rc = print_pretty(page);
            json_decref(page);
            goto done;
        }
        int e = o->json ? json_array_extend(all, entries) : add_rows(&t, entries);
        const char *n = json_string_value(next);
        bool stuck = n && (json_array_size(entries) == 0 || (cursor && strcmp(n, cursor) == 0));
        free(cursor);
        cursor = n ? strdup(n) : NULL;
        json_decref(page);
        if (e < 0 || (n && cursor == NULL)) {
            rc = e == -EFBIG ? -EFBIG : -ENOMEM;
            goto fail;
        }
        if (stuck) {
            errorf("unexpected answer from the server: the next cursor does not advance");
            rc = EXIT_SERVER;
            goto done;
        }
        more = cursor != NULL;
        if (!more || !o->all)
            break;
    }
    if (o->json) {
        json_t *doc = json_pack("{s:O,s:n}", "entries", all, "next");
        rc = doc ? print_pretty(doc) : -ENOMEM;
        json_decref(doc);
        if (rc < 0)
            goto fail;
        goto done;
    }
    if (t.nrows > 1)
        cli_table_print(&t, stdout);
    else
        fputs("drover: no audit entries\n", stderr);
    if (more) {
        char *c = cli_sanitize(cursor, 0);
        fflush(stdout);
        fprintf(stderr, "drover: more entries: use --all, or --cursor %s\n", c ? c : "?");
        free(c);
    }
    goto done;

fail:
    errorf("%s", rc == -EFBIG ? "too many entries to list at once" : "out of memory");
    rc = EXIT_SERVER;
done:
    free(cursor);
    json_decref(all);
    cli_table_fini(&t);
    return rc;
}

/* ---- export ---------------------------------------------------------------------- */

static int do_export(cli_http_t *h, const char *server, const cli_audit_opts_t *o)
{
    char cursor[32] = "";
    for (long pages = 0; pages < MAX_PAGES; pages++) {
        cli_http_resp_t r;
        int rc = get_lines(h, server, o, cursor[0] ? cursor : NULL, &r);
        if (rc != 0)
            return rc;
        if (r.len == 0) {
            free(r.body);
            break;
        }
        char next[32];
        if (last_seq_text(r.body, r.len, next, sizeof(next)) < 0) {
            free(r.body);
            errorf("unexpected answer from the server: a line is not an audit entry");
            return EXIT_SERVER;
        }
        size_t w = fwrite(r.body, 1, r.len, stdout);
        free(r.body);
        if (w != r.len) {
            errorf("cannot write the export: %s", strerror(errno));
            return EXIT_SERVER;
        }
        if (strcmp(next, cursor) == 0) {
            errorf("unexpected answer from the server: the cursor does not advance");
            return EXIT_SERVER;
        }
        snprintf(cursor, sizeof(cursor), "%s", next);
    }
    if (fflush(stdout) != 0) {
        errorf("cannot write the export: %s", strerror(errno));
        return EXIT_SERVER;
    }
    return EXIT_OK;
}

/* ---- verify ---------------------------------------------------------------------- */

typedef struct {
    cli_audit_chain_t chain;
    bool broken;
    int64_t bad_seq;
    char why[160];
    const char *where; /* "the server" or the file name, for messages */
} verify_t;

/* 0 to go on; CHAIN_BROKEN when the chain is broken (recorded in v); an
 * exit status when the line is not an entry at all. */
static int verify_line(verify_t *v, const char *line, size_t len, uint64_t lineno)
{
    char perr[160] = "";
    json_t *e = json_util_parse(line, len, perr, sizeof(perr));
    if (e == NULL) {
        char *w = cli_sanitize(v->where, 200);
        errorf("%s, line %" PRIu64 ": not JSON: %s", w ? w : "?", lineno, perr);
        free(w);
        return EXIT_SERVER;
    }
    int64_t seq = 0;
    int rc = cli_audit_chain_add(&v->chain, e, &seq, v->why, sizeof(v->why));
    json_decref(e);
    if (rc == -EBADMSG) {
        v->broken = true;
        v->bad_seq = seq;
        return CHAIN_BROKEN;
    }
    if (rc == -EINVAL) {
        char *w = cli_sanitize(v->where, 200);
        errorf("%s, line %" PRIu64 ": not an audit entry: %s", w ? w : "?", lineno, v->why);
        free(w);
        return EXIT_SERVER;
    }
    if (rc < 0) {
        errorf("out of memory");
        return EXIT_SERVER;
    }
    return 0;
}

/* Feeds every non-empty line of a body. */
static int verify_body(verify_t *v, const char *body, size_t len, uint64_t *lineno)
{
    size_t off = 0;
    while (off < len) {
        const char *nl = memchr(body + off, '\n', len - off);
        size_t end = nl ? (size_t)(nl - body) : len;
        (*lineno)++;
        if (end > off) {
            int rc = verify_line(v, body + off, end - off, *lineno);
            if (rc != 0)
                return rc;
        }
        off = end + 1;
    }
    return 0;
}

static int verify_server(verify_t *v, cli_http_t *h, const char *server)
{
    char cursor[32] = "";
    uint64_t lineno = 0;
    for (long pages = 0; pages < MAX_PAGES; pages++) {
        cli_http_resp_t r;
        int rc = get_lines(h, server, NULL, cursor[0] ? cursor : NULL, &r);
        if (rc != 0)
            return rc;
        if (r.len == 0) {
            free(r.body);
            return 0;
        }
        rc = verify_body(v, r.body, r.len, &lineno);
        free(r.body);
        if (rc != 0)
            return rc;
        char next[32];
        snprintf(next, sizeof(next), "%" PRId64, v->chain.last_seq);
        if (strcmp(next, cursor) == 0) {
            errorf("unexpected answer from the server: the cursor does not advance");
            return EXIT_SERVER;
        }
        snprintf(cursor, sizeof(cursor), "%s", next);
    }
    return 0;
}

/* Reads one line (without its '\n') into b, which caps its length. 1 for
 * a line, 0 at the end of the file, -EFBIG for a line too long, -EIO. */
static int read_line(FILE *f, cli_buf_t *b)
{
    char chunk[4096];
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
    bool any = false;
    while (fgets(chunk, sizeof(chunk), f) != NULL) {
        any = true;
        size_t n = strlen(chunk);
        bool eol = n > 0 && chunk[n - 1] == '\n';
        int rc = cli_buf_append(b, chunk, eol ? n - 1 : n);
        if (rc < 0)
            return rc;
        if (eol)
            return 1;
    }
    if (ferror(f))
        return -EIO;
    return any ? 1 : 0;
}

static int verify_file(verify_t *v, const char *name)
{
    bool is_stdin = strcmp(name, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(name, "r");
    if (f == NULL) {
        char *w = cli_sanitize(name, 200);
        errorf("cannot open %s: %s", w ? w : "?", strerror(errno));
        free(w);
        return EXIT_USAGE;
    }
    cli_buf_t line;
    cli_buf_init(&line, LINE_MAX_BYTES);
    uint64_t lineno = 0;
    int rc = 0;
    for (;;) {
        int got = read_line(f, &line);
        if (got == 0)
            break;
        lineno++;
        if (got < 0) {
            if (got == -EFBIG)
                errorf("line %" PRIu64 " is longer than %d bytes: not an audit entry", lineno,
                       LINE_MAX_BYTES);
            else
                errorf("cannot read %s: %s", is_stdin ? "stdin" : "the file",
                       got == -EIO ? "I/O error" : strerror(-got));
            rc = EXIT_SERVER;
            break;
        }
        size_t n = line.len;
        while (n > 0 && line.data[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        rc = verify_line(v, line.data, n, lineno);
        if (rc != 0)
            break;
    }
    cli_buf_fini(&line);
    if (!is_stdin)
        fclose(f);
    return rc;
}

static int verify_report(const verify_t *v, bool json)
{
    char hex[2 * HASH_LEN + 1];
    util_hex_encode(v->chain.last_hash, HASH_LEN, hex);
    if (json) {
        json_t *o =
            v->broken
                ? json_pack("{s:b,s:I,s:I,s:s}", "intact", 0, "entries", (json_int_t)v->chain.n,
                            "broken_seq", (json_int_t)v->bad_seq, "reason", v->why)
                : json_pack("{s:b,s:I,s:I,s:I,s:s?}", "intact", 1, "entries",
                            (json_int_t)v->chain.n, "first_seq", (json_int_t)v->chain.first_seq,
                            "last_seq", (json_int_t)v->chain.last_seq, "last_hash",
                            v->chain.n ? hex : NULL);
        if (o == NULL) {
            errorf("out of memory");
            return EXIT_SERVER;
        }
        int rc = print_pretty(o);
        json_decref(o);
        if (rc != EXIT_OK)
            return rc;
        return v->broken ? EXIT_SERVER : EXIT_OK;
    }
    if (v->broken) {
        printf("audit chain broken at seq %" PRId64 ": %s\n", v->bad_seq, v->why);
        return EXIT_SERVER;
    }
    printf("audit chain intact: %" PRIu64 " entries\n", v->chain.n);
    if (v->chain.n > 0)
        printf("last entry: seq %" PRId64 ", hash %s\n", v->chain.last_seq, hex);
    if (v->chain.n > 0 && v->chain.first_seq != 1)
        fprintf(stderr,
                "drover: the export starts at seq %" PRId64
                ": the entries before it were not checked\n",
                v->chain.first_seq);
    return EXIT_OK;
}

static int do_verify(cli_http_t *h, const char *server, const cli_audit_opts_t *o)
{
    verify_t v;
    memset(&v, 0, sizeof(v));
    cli_audit_chain_init(&v.chain, o->file == NULL);
    v.where = o->file == NULL             ? "the server's answer"
              : strcmp(o->file, "-") == 0 ? "stdin"
                                          : o->file;
    int rc = o->file ? verify_file(&v, o->file) : verify_server(&v, h, server);
    if (rc > 0)
        return rc;
    return verify_report(&v, o->json);
}

int cli_audit_run(const char *what, cli_http_t *http, const char *server, const cli_audit_opts_t *o)
{
    if (strcmp(what, "list") == 0)
        return do_list(http, server, o);
    if (strcmp(what, "export") == 0)
        return do_export(http, server, o);
    if (strcmp(what, "verify") == 0)
        return do_verify(http, server, o);
    errorf("no such audit command '%s'", what);
    return EXIT_USAGE;
}

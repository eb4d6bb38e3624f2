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

#include "cli_common.h"

#include "common/crypto.h"
#include "common/json.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_TAG "drover-audit-v1"
#define HASH_LEN 32
#define EXPORT_PAGE 10000
#define LINE_MAX_BYTES (1024 * 1024) /* far above the server's largest entry */
#define MAX_PAGES 100000000          /* no server sends this many: a loop guard */
#define CHAIN_BROKEN (-1)            /* verify: stop, the chain is broken (not an error) */

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

static void filters(cli_path_t *p, const cli_audit_opts_t *o)
{
    cli_path_param(p, "since", o->since);
    cli_path_param(p, "until", o->until);
    cli_path_param(p, "actor", o->actor);
    cli_path_param(p, "object", o->object);
}

/* One page of JSON lines after cursor (NULL: from the start). */
static int get_lines(const cli_conn_t *c, const cli_audit_opts_t *o, const char *cursor,
                     cli_http_resp_t *out)
{
    char limit[16];
    cli_path_t p;
    snprintf(limit, sizeof(limit), "%d", EXPORT_PAGE);
    cli_path_init(&p, "/api/v1/audit");
    cli_path_param(&p, "format", "jsonl");
    if (o != NULL)
        filters(&p, o);
    cli_path_param(&p, "limit", limit);
    cli_path_param(&p, "cursor", cursor);
    int rc = cli_path_check(&p);
    if (rc == 0)
        rc = cli_request_raw(c, p.b.data, out);
    cli_path_fini(&p);
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

static int add_row(cli_table_t *t, const json_t *e, void *arg)
{
    (void)arg;
    char seq[24] = "-", when[CLI_TIME_MAX];
    const json_t *s = json_object_get(e, "seq");
    if (json_is_integer(s))
        snprintf(seq, sizeof(seq), "%" JSON_INTEGER_FORMAT, json_integer_value(s));
    cli_time_cell(json_object_get(e, "ts"), false, "-", when, sizeof(when));
    const char *row[7] = {seq, when};
    for (size_t k = 0; k < 5; k++)
        row[2 + k] = json_string_value(json_object_get(e, text_fields[k]));
    return cli_table_add(t, row);
}

static int do_list(const cli_conn_t *c, const cli_audit_opts_t *o)
{
    static const char *const header[] = {"SEQ",    "TIME",    "ACTOR", "ACTION",
                                         "OBJECT", "OUTCOME", "SOURCE"};
    const cli_rows_t rows = {
        .key = "entries", .ncols = 7, .header = header, .row = add_row, .none = "no audit entries"};
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", o->limit);
    const cli_pages_t pg = {
        .limit = o->limit > 0 ? limit : NULL, .cursor = o->cursor, .all = o->all};
    cli_path_t p;
    cli_path_init(&p, "/api/v1/audit");
    filters(&p, o);
    int rc = cli_path_check(&p);
    if (rc == 0)
        rc = cli_list_pages(c, p.b.data, &pg, o->json, &rows);
    cli_path_fini(&p);
    return rc;
}

/* ---- export ---------------------------------------------------------------------- */

/* Gets fn each page of JSON lines from the start (with o's filters; every
 * entry when o is NULL) until the server sends an empty one. fn returns 0
 * with the cursor after its page in next, or a code that ends the walk and
 * is returned. */
typedef int (*page_fn)(void *arg, const char *body, size_t len, char *next, size_t nextlen);

static int each_page(const cli_conn_t *c, const cli_audit_opts_t *o, page_fn fn, void *arg)
{
    char cursor[32] = "";
    for (long pages = 0; pages < MAX_PAGES; pages++) {
        cli_http_resp_t r;
        char next[32];
        int rc = get_lines(c, o, cursor[0] ? cursor : NULL, &r);
        if (rc != 0)
            return rc;
        bool end = r.len == 0;
        if (!end)
            rc = fn(arg, r.body, r.len, next, sizeof(next));
        free(r.body);
        if (end || rc != 0)
            return rc;
        if (strcmp(next, cursor) == 0)
            return cli_unexpected("the cursor does not advance");
        snprintf(cursor, sizeof(cursor), "%s", next);
    }
    return 0;
}

/* export: the server's lines to stdout as they are. */
static int export_page(void *arg, const char *body, size_t len, char *next, size_t nextlen)
{
    (void)arg;
    if (last_seq_text(body, len, next, nextlen) < 0)
        return cli_unexpected("a line is not an audit entry");
    if (fwrite(body, 1, len, stdout) != len) {
        cli_errorf("cannot write the export: %s", strerror(errno));
        return EXIT_SERVER;
    }
    return 0;
}

static int do_export(const cli_conn_t *c, const cli_audit_opts_t *o)
{
    int rc = each_page(c, o, export_page, NULL);
    if (rc != 0)
        return rc;
    if (fflush(stdout) != 0) {
        cli_errorf("cannot write the export: %s", strerror(errno));
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
    const char *where;     /* "the server" or the file name, for messages */
    uint64_t server_lines; /* of the server's pages so far */
} verify_t;

/* 0 to go on; CHAIN_BROKEN when the chain is broken (recorded in v); an
 * exit status when the line is not an entry at all. */
static int verify_line(verify_t *v, const char *line, size_t len, uint64_t lineno)
{
    char perr[160] = "";
    json_t *e = json_util_parse(line, len, perr, sizeof(perr));
    if (e == NULL) {
        char *w = cli_sanitize(v->where, 200);
        cli_errorf("%s, line %" PRIu64 ": not JSON: %s", w ? w : "?", lineno, perr);
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
        cli_errorf("%s, line %" PRIu64 ": not an audit entry: %s", w ? w : "?", lineno, v->why);
        free(w);
        return EXIT_SERVER;
    }
    if (rc < 0)
        return cli_oom();
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

static int verify_page(void *arg, const char *body, size_t len, char *next, size_t nextlen)
{
    verify_t *v = arg;
    int rc = verify_body(v, body, len, &v->server_lines);
    if (rc == 0)
        snprintf(next, nextlen, "%" PRId64, v->chain.last_seq);
    return rc;
}

static int verify_server(verify_t *v, const cli_conn_t *c)
{
    return each_page(c, NULL, verify_page, v);
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
        cli_errorf("cannot open %s: %s", w ? w : "?", strerror(errno));
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
                cli_errorf("line %" PRIu64 " is longer than %d bytes: not an audit entry", lineno,
                           LINE_MAX_BYTES);
            else
                cli_errorf("cannot read %s: %s", is_stdin ? "stdin" : "the file",
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
        if (o == NULL)
            return cli_oom();
        int rc = cli_print_json(o);
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

static int do_verify(const cli_conn_t *c, const cli_audit_opts_t *o)
{
    verify_t v;
    memset(&v, 0, sizeof(v));
    cli_audit_chain_init(&v.chain, o->file == NULL);
    v.where = o->file == NULL             ? "the server's answer"
              : strcmp(o->file, "-") == 0 ? "stdin"
                                          : o->file;
    int rc = o->file ? verify_file(&v, o->file) : verify_server(&v, c);
    if (rc > 0)
        return rc;
    return verify_report(&v, o->json);
}

int cli_audit_run(const char *what, const cli_conn_t *conn, const cli_audit_opts_t *o)
{
    /* Audit's wording: no --cacert hint; a list page that is not JSON is
     * reported as a page without entries. */
    cli_conn_t c = {conn->http, conn->server, CLI_REQ_LENIENT_2XX};
    if (strcmp(what, "list") == 0)
        return do_list(&c, o);
    if (strcmp(what, "export") == 0)
        return do_export(&c, o);
    if (strcmp(what, "verify") == 0)
        return do_verify(&c, o);
    cli_errorf("no such audit command '%s'", what);
    return EXIT_USAGE;
}

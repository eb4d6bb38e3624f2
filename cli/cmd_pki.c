/*
 * drover enroll / cert / ca / device import|revoke / provision (see
 * cmd_pki.h).
 *
 * Requests go through cli_request() (cli_common.c), which turns a non-2xx
 * answer into "drover: <detail> (<status> <code>)" on stderr and exit
 * status 1, as the rest of the CLI does, and here adds a hint about
 * --cacert when an https:// server's certificate could not be verified. Ids, names and
 * serials from the command line are checked (the server's id rule) and
 * URL-escaped into paths. Everything the server sends that reaches the
 * terminal goes through cli_sanitize (no control characters), except PEM
 * certificates, which are printed as they are only after
 * cli_pki_pem_block() found them to be one clean PEM block.
 *
 * Files: a CSR is read whole (at most the server's 16 KiB), and only its
 * PEM block is sent, so a CSR written with openssl's -text works. An
 * import file is sent as it is with the Content-Type its format needs; the
 * server reports a bad row by its line number, which is the file's line
 * number because blank lines count there too. --out writes FILE.tmp and
 * renames it over FILE, so a reader never sees half a certificate.
 *
 * Single-threaded.
 */
#include "cmd_pki.h"

#include "cli_common.h"
#include "cmd_operators.h"

#include "common/json.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CSR_MAX 16384                  /* the server's limit (src/api/pki.c) */
#define IMPORT_MAX (16u * 1024 * 1024) /* above any sensible max_body */
#define CLAIM_FILE_MAX 4096
#define PATH_MAX_BYTES 1024 /* a path with an id in it; --out FILE is below this */
#define ENROLL_NAME_MAX 127 /* the server's limit (src/pki/pki.c) */
#define SPEC_TAGS_MAX 64
#define SECRET_MAX 256 /* the longest claim token taken (cli_secret_of) */

/* ---- pure helpers ------------------------------------------------------------ */

int cli_pki_import_type(const char *path, const char *format, const char **ctype)
{
    static const char csv[] = "text/csv", ndjson[] = "application/x-ndjson";
    if (format != NULL) {
        if (strcmp(format, "csv") == 0)
            *ctype = csv;
        else if (strcmp(format, "jsonl") == 0 || strcmp(format, "ndjson") == 0)
            *ctype = ndjson;
        else
            return -EINVAL;
        return 0;
    }
    const char *slash = path != NULL ? strrchr(path, '/') : NULL;
    const char *base = slash != NULL ? slash + 1 : path;
    const char *dot = base != NULL ? strrchr(base, '.') : NULL;
    if (dot == NULL || dot == base)
        return -ENOENT;
    if (strcasecmp(dot, ".csv") == 0)
        *ctype = csv;
    else if (strcasecmp(dot, ".jsonl") == 0 || strcasecmp(dot, ".ndjson") == 0 ||
             strcasecmp(dot, ".json") == 0)
        *ctype = ndjson;
    else
        return -ENOENT;
    return 0;
}

/* The line at p (up to end): its length without the line end, and where
 * the next one starts. */
static size_t line_at(const char *p, const char *end, const char **next)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *stop = nl != NULL ? nl : end;
    *next = nl != NULL ? nl + 1 : end;
    size_t n = (size_t)(stop - p);
    while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return n;
}

static bool blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return false;
    return true;
}

/* "-----<what> <label>-----" */
static bool armor(const char *line, size_t n, const char *what, const char *label)
{
    size_t wl = strlen(what), ll = strlen(label);
    return n == 5 + wl + 1 + ll + 5 && memcmp(line, "-----", 5) == 0 &&
           memcmp(line + 5, what, wl) == 0 && line[5 + wl] == ' ' &&
           memcmp(line + 6 + wl, label, ll) == 0 && memcmp(line + 6 + wl + ll, "-----", 5) == 0;
}

int cli_pki_pem_block(const char *text, size_t len, const char *label, bool allow_preamble,
                      size_t *off, size_t *blen)
{
    if (text == NULL || label == NULL || *label == '\0')
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if ((ch < 0x20 && ch != '\t' && ch != '\r' && ch != '\n') || ch >= 0x7f)
            return -EINVAL;
    }
    const char *end = text + len, *p = text, *next;
    const char *begin = NULL;
    size_t body_lines = 0;
    while (p < end) {
        size_t n = line_at(p, end, &next);
        if (begin == NULL) {
            if (armor(p, n, "BEGIN", label))
                begin = p;
            else if (!allow_preamble && !blank(p, n))
                return -EINVAL;
        } else if (armor(p, n, "END", label)) {
            if (body_lines == 0 || !blank(next, (size_t)(end - next)))
                return -EINVAL;
            *off = (size_t)(begin - text);
            *blen = (size_t)(next - begin);
            return 0;
        } else {
            if (n == 0 || n > 76)
                return -EINVAL;
            for (size_t i = 0; i < n; i++) {
                char ch = p[i];
                if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' || ch == '='))
                    return -EINVAL;
            }
            body_lines++;
        }
        p = next;
    }
    return -EINVAL;
}

int cli_pki_enroll_spec(const char *name, const char *max_uses, int64_t expires_s,
                        const char *const *tags, size_t ntags, const char *group,
                        const json_t *desired, json_t **out, char *err, size_t errlen)
{
    json_t *spec = NULL, *t = NULL;
    int uses;
    size_t nl = name != NULL ? strlen(name) : 0;
    if (nl == 0 || nl > ENROLL_NAME_MAX) {
        snprintf(err, errlen, "an enrollment name has 1 to %d bytes", ENROLL_NAME_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < nl; i++) {
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
            snprintf(err, errlen, "an enrollment name has no control characters");
            return -EINVAL;
        }
    }
    if (max_uses == NULL) {
        snprintf(err, errlen, "--max-uses N is required: how many devices may use the token");
        return -EINVAL;
    }
    if (cli_parse_count(max_uses, &uses) < 0) {
        snprintf(err, errlen, "--max-uses wants a positive whole number");
        return -EINVAL;
    }
    if (group != NULL && !util_id_valid(group, strlen(group))) {
        snprintf(err, errlen, "--group wants 1 to 64 characters of A-Z a-z 0-9 . _ -");
        return -EINVAL;
    }
    if (desired != NULL && !json_is_object(desired)) {
        snprintf(err, errlen, "--desired must be a JSON object");
        return -EINVAL;
    }
    if (ntags > SPEC_TAGS_MAX) {
        snprintf(err, errlen, "at most %d tags", SPEC_TAGS_MAX);
        return -EINVAL;
    }
    spec = json_object();
    if (spec == NULL)
        return -ENOMEM;
    json_t *jn = json_stringn(name, nl);
    if (jn == NULL) {
        json_decref(spec);
        snprintf(err, errlen, "the enrollment name is not valid UTF-8");
        return -EINVAL;
    }
    if (json_object_set_new(spec, "name", jn) < 0 ||
        json_object_set_new(spec, "max_uses", json_integer(uses)) < 0)
        goto oom;
    if (expires_s > 0 && json_object_set_new(spec, "expires_in_s", json_integer(expires_s)) < 0)
        goto oom;
    if (ntags > 0) {
        size_t bad = 0, kl = 0;
        int e = cli_tags_build(tags, ntags, &t, &bad);
        if (e == -EINVAL)
            snprintf(err, errlen, "--tag wants K=V");
        else if (e == -EEXIST && cli_tag_split(tags[bad], &kl) == 0)
            snprintf(err, errlen, "tag '%.*s' given twice", (int)(kl > 64 ? 64 : kl), tags[bad]);
        else if (e == -EILSEQ)
            snprintf(err, errlen, "a tag is not valid UTF-8");
        if (e == -ENOMEM)
            goto oom;
        if (e < 0)
            goto bad;
        if (json_object_set_new(spec, "tags", t) < 0) {
            t = NULL;
            goto oom;
        }
        t = NULL;
    }
    if (group != NULL && json_object_set_new(spec, "group", json_string(group)) < 0)
        goto oom;
    if (desired != NULL && json_object_set(spec, "desired", (json_t *)desired) < 0)
        goto oom;
    *out = spec;
    return 0;
oom:
    json_decref(t);
    json_decref(spec);
    return -ENOMEM;
bad:
    json_decref(t);
    json_decref(spec);
    return -EINVAL;
}

/* ---- files ---------------------------------------------------------------------- */

/* data to path ("-": stdout) by way of path.tmp and rename. */
static int write_output(const char *path, const char *data, size_t len)
{
    if (strcmp(path, "-") == 0) {
        fwrite(data, 1, len, stdout);
        return ferror(stdout) ? -EIO : 0;
    }
    if (strlen(path) + sizeof(".tmp") > PATH_MAX_BYTES + 8) /* --out's own limit */
        return -ENAMETOOLONG;
    return cli_write_atomic(path, data, len, 0644);
}

/* The PEM block of a CSR file, as a new string (caller frees). Returns 0
 * or an exit status, the reason printed. */
static int read_csr(const char *what, const char *path, char **out)
{
    char sbuf[64];
    cli_buf_t b;
    cli_buf_init(&b, CSR_MAX * 4); /* room for an openssl -text dump */
    int rc = cli_read_input(path, &b);
    if (rc < 0) {
        cli_buf_fini(&b);
        if (rc == -ENOMEM)
            return cli_oom();
        return cli_usage(what, "cannot read the CSR from %s: %s",
                         cli_shown(path, sbuf, sizeof(sbuf)),
                         rc == -EFBIG ? "file too large" : strerror(-rc));
    }
    size_t off, len;
    if (cli_pki_pem_block(b.data, b.len, "CERTIFICATE REQUEST", true, &off, &len) < 0 &&
        cli_pki_pem_block(b.data, b.len, "NEW CERTIFICATE REQUEST", true, &off, &len) < 0) {
        cli_buf_fini(&b);
        return cli_usage(what,
                         "%s is not a PEM certificate signing request (-----BEGIN CERTIFICATE "
                         "REQUEST-----; make one with `openssl req -new -key KEY -subj /CN=ID`)",
                         cli_shown(path, sbuf, sizeof(sbuf)));
    }
    if (len > CSR_MAX) {
        cli_buf_fini(&b);
        return cli_usage(what, "the CSR in %s is larger than %d bytes",
                         cli_shown(path, sbuf, sizeof(sbuf)), CSR_MAX);
    }
    char *csr = strndup(b.data + off, len);
    cli_buf_fini(&b);
    if (csr == NULL)
        return cli_oom();
    *out = csr;
    return 0;
}

/* ---- requests ------------------------------------------------------------------ */

/* The connection with this family's wording of failures. */
static int connect_pki(cli_connect_fn connect, void *ctx, bool with_token, cli_conn_t *c)
{
    int rc = connect(ctx, with_token, c);
    c->flags = CLI_REQ_TLS_HINT;
    return rc;
}

/* One request; body (may be NULL) is sent as ctype (NULL: JSON). */
static int request(const cli_conn_t *c, const char *method, const char *path, const char *body,
                   const char *ctype, json_t **out)
{
    cli_http_opts_t ho = {.content_type = ctype};
    return cli_request(c, method, path, body, &ho, 0, out);
}

/* As request(), with v (may be NULL) sent as JSON. */
static int request_json(const cli_conn_t *c, const char *method, const char *path, const json_t *v,
                        json_t **out)
{
    return cli_request_json(c, method, path, v, NULL, 0, out);
}

/* "label  value" with value sanitized; NULL prints "-". */
static void print_kv(const char *label, const char *value)
{
    char *v = cli_sanitize(value != NULL && *value ? value : "-", 0);
    printf("%-13s %s\n", label, v ? v : "?");
    free(v);
}

/* The PEM certificate under key, checked to be one clean block. */
static const char *cert_of(const json_t *o, const char *key)
{
    const char *pem = json_string_value(json_object_get(o, key));
    size_t off, len;
    if (pem == NULL || cli_pki_pem_block(pem, strlen(pem), "CERTIFICATE", false, &off, &len) < 0)
        return NULL;
    return pem;
}

/* Prints or writes (--out) a certificate; with --json the whole answer.
 * After --out, one line saying what was written. */
static int emit_cert(const char *what, const cli_pki_opts_t *o, const json_t *ans, const char *key)
{
    char sbuf[64];
    const char *pem = cert_of(ans, key);
    if (pem == NULL)
        return cli_unexpected("no PEM certificate");
    size_t len = strlen(pem);
    bool nl = len > 0 && pem[len - 1] == '\n';
    if (o->out != NULL && strcmp(o->out, "-") != 0) {
        char *text = malloc(len + 2);
        if (text == NULL)
            return cli_oom();
        memcpy(text, pem, len);
        if (!nl)
            text[len++] = '\n';
        int rc = write_output(o->out, text, len);
        free(text);
        if (rc < 0) {
            cli_errorf("cannot write %s: %s", cli_shown(o->out, sbuf, sizeof(sbuf)), strerror(-rc));
            return EXIT_USAGE;
        }
        if (o->json)
            return cli_print_json(ans);
        char until[CLI_TIME_MAX];
        cli_time_cell(json_object_get(ans, "not_after"), false, "-", until, sizeof(until));
        char *serial = cli_field_text(ans, "serial"), *file = cli_sanitize(o->out, 0);
        if (serial != NULL && *serial != '\0')
            printf("wrote certificate %s (valid until %s) to %s\n", serial ? serial : "?", until,
                   file ? file : "?");
        else
            printf("wrote %s to %s\n", strcmp(what, "ca") == 0 ? "the CA certificate" : "it",
                   file ? file : "?");
        free(serial);
        free(file);
        return EXIT_OK;
    }
    if (o->json)
        return cli_print_json(ans);
    fputs(pem, stdout);
    if (!nl)
        fputc('\n', stdout);
    return EXIT_OK;
}

/* ---- enroll -------------------------------------------------------------------- */

static int enroll_create(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    const char *what = "enroll create";
    char err[200], sbuf[64];
    int64_t expires = 0;
    if (o->expires_in != NULL &&
        (cli_ops_parse_duration(o->expires_in, &expires) < 0 || expires < 60))
        return cli_usage(what,
                         "--expires-in wants a lifetime from 60s to 10 years: N followed by s, m, "
                         "h, d or w (e.g. 12h, 30d); got '%s'",
                         cli_shown(o->expires_in, sbuf, sizeof(sbuf)));
    json_t *spec = NULL, *resp = NULL;
    int rc = cli_pki_enroll_spec(o->arg, o->max_uses, expires, o->tags, o->ntags, o->group,
                                 o->desired, &spec, err, sizeof(err));
    if (rc == -EINVAL)
        return cli_usage(what, "%s", err);
    if (rc < 0)
        return cli_oom();
    cli_conn_t c;
    rc = connect_pki(connect, ctx, true, &c);
    if (rc == 0)
        rc = request_json(&c, "POST", "/api/v1/enrollments", spec, &resp);
    json_decref(spec);
    if (rc != 0)
        return rc;
    const char *tok = cli_secret_of(resp, "claim_token");
    if (tok == NULL || json_string_value(json_object_get(resp, "id")) == NULL) {
        json_decref(resp);
        return cli_unexpected("no enrollment id or claim token");
    }
    if (o->json) {
        rc = cli_print_json(resp);
    } else {
        char expires_at[CLI_TIME_MAX];
        cli_time_cell(json_object_get(resp, "expires_at"), false, "never", expires_at,
                      sizeof(expires_at));
        char *id = cli_field_text(resp, "id"), *name = cli_field_text(resp, "name"),
             *uses = cli_field_text(resp, "max_uses");
        print_kv("id:", id);
        print_kv("name:", name);
        print_kv("max uses:", uses);
        print_kv("expires:", expires_at);
        printf("%-13s %s\n", "claim token:", tok);
        free(id);
        free(name);
        free(uses);
    }
    cli_warn_shown_once("claim token");
    cli_json_wipe(resp, "claim_token");
    json_decref(resp);
    return rc;
}

static int enroll_row(cli_table_t *t, const json_t *v, void *arg)
{
    (void)arg;
    char created[CLI_TIME_MAX], expires[CLI_TIME_MAX], uses[64];
    cli_time_cell(json_object_get(v, "created_at"), false, "-", created, sizeof(created));
    cli_time_cell(json_object_get(v, "expires_at"), false, "never", expires, sizeof(expires));
    snprintf(uses, sizeof(uses), "%lld/%lld",
             (long long)json_integer_value(json_object_get(v, "uses")),
             (long long)json_integer_value(json_object_get(v, "max_uses")));
    char *id = cli_field_text(v, "id"), *name = cli_field_text(v, "name"),
         *state = cli_field_text(v, "state"), *grp = cli_field_text(v, "group");
    const char *row[] = {id, name, state, uses, grp, expires, created};
    int rc = cli_table_add(t, row);
    free(id);
    free(name);
    free(state);
    free(grp);
    return rc;
}

static int enroll_list(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    static const char *const head[] = {"ID",    "NAME",    "STATE",  "USES",
                                       "GROUP", "EXPIRES", "CREATED"};
    const cli_rows_t rows = {.key = "enrollments",
                             .ncols = 7,
                             .header = head,
                             .row = enroll_row,
                             .none = "no enrollments"};
    cli_conn_t c;
    int rc = connect_pki(connect, ctx, true, &c);
    if (rc == 0)
        rc = cli_list(&c, "/api/v1/enrollments", "no enrollment list", o->json, &rows);
    return rc;
}

static int enroll_show(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    const char *what = "enroll show";
    char path[PATH_MAX_BYTES];
    int rc = cli_check_id(what, "enrollment id", o->arg);
    if (rc == 0)
        rc = cli_make_path("/api/v1/enrollments/", o->arg, NULL, path, sizeof(path));
    cli_conn_t c;
    json_t *e = NULL;
    if (rc == 0)
        rc = connect_pki(connect, ctx, true, &c);
    if (rc == 0)
        rc = request(&c, "GET", path, NULL, NULL, &e);
    if (rc != 0)
        return rc;
    if (!json_is_object(e) || json_object_get(e, "id") == NULL) {
        json_decref(e);
        return cli_unexpected("not an enrollment");
    }
    if (o->json) {
        rc = cli_print_json(e);
        json_decref(e);
        return rc;
    }
    char created[CLI_TIME_MAX], expires[CLI_TIME_MAX], uses[64];
    cli_time_cell(json_object_get(e, "created_at"), false, "-", created, sizeof(created));
    cli_time_cell(json_object_get(e, "expires_at"), false, "never", expires, sizeof(expires));
    snprintf(uses, sizeof(uses), "%lld of %lld",
             (long long)json_integer_value(json_object_get(e, "uses")),
             (long long)json_integer_value(json_object_get(e, "max_uses")));
    char *id = cli_field_text(e, "id"), *name = cli_field_text(e, "name"),
         *state = cli_field_text(e, "state"), *grp = cli_field_text(e, "group"),
         *tags = cli_pairs_text(json_object_get(e, "tags"), ", ", 64 * 1024);
    json_t *d = json_object_get(e, "desired");
    char *desired = json_object_size(d) > 0 ? cli_json_text(d) : NULL;
    print_kv("id:", id);
    print_kv("name:", name);
    print_kv("state:", state);
    print_kv("uses:", uses);
    print_kv("expires:", expires);
    print_kv("created:", created);
    print_kv("group:", grp);
    print_kv("tags:", tags);
    print_kv("desired:", desired);
    free(id);
    free(name);
    free(state);
    free(grp);
    free(tags);
    free(desired);
    json_decref(e);
    return EXIT_OK;
}

/* What revoking one thing takes: POST <prefix>ID/revoke, then
 * "revoked <noun> ID<tail>". */
typedef struct {
    const char *what, *kind, *prefix, *noun, *tail;
} revoke_t;

static int post_revoke(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx,
                       const revoke_t *r)
{
    char path[PATH_MAX_BYTES];
    int rc = cli_check_id(r->what, r->kind, o->arg);
    if (rc == 0)
        rc = cli_make_path(r->prefix, o->arg, "/revoke", path, sizeof(path));
    cli_conn_t c;
    json_t *resp = NULL;
    if (rc == 0)
        rc = connect_pki(connect, ctx, true, &c);
    if (rc == 0)
        rc = request(&c, "POST", path, NULL, NULL, &resp);
    if (rc == 0 && o->json)
        rc = cli_print_json(resp);
    else if (rc == 0)
        printf("revoked %s %s%s\n", r->noun, o->arg, r->tail);
    json_decref(resp);
    return rc;
}

static int enroll_revoke(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    static const revoke_t r = {"enroll revoke", "enrollment id", "/api/v1/enrollments/",
                               "enrollment", ": its claim token no longer provisions devices"};
    return post_revoke(o, connect, ctx, &r);
}
/* ---- cert and ca ----------------------------------------------------------------- */

static int cert_issue(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    const char *what = "cert issue";
    char path[PATH_MAX_BYTES];
    char *csr = NULL;
    json_t *body = NULL, *resp = NULL;
    int rc = cli_check_id(what, "device id", o->arg);
    if (rc != 0)
        return rc;
    if (o->csr == NULL)
        return cli_usage(what, "--csr FILE is required: the device's certificate signing request");
    if ((rc = read_csr(what, o->csr, &csr)) != 0)
        return rc;
    rc = cli_make_path("/api/v1/devices/", o->arg, "/certificates", path, sizeof(path));
    if (rc == 0 && (body = json_pack("{s:s}", "csr", csr)) == NULL)
        rc = cli_oom();
    free(csr);
    cli_conn_t c;
    if (rc == 0)
        rc = connect_pki(connect, ctx, true, &c);
    if (rc == 0)
        rc = request_json(&c, "POST", path, body, &resp);
    if (rc == 0)
        rc = emit_cert(what, o, resp, "certificate");
    json_decref(resp);
    json_decref(body);
    return rc;
}

static const char *cert_state(const json_t *c, int64_t now)
{
    if (!json_is_null(json_object_get(c, "revoked_at")))
        return "revoked";
    json_t *na = json_object_get(c, "not_after"), *nb = json_object_get(c, "not_before");
    if (json_is_integer(na) && json_integer_value(na) <= now)
        return "expired";
    if (json_is_integer(nb) && json_integer_value(nb) > now)
        return "not yet valid";
    return "valid";
}

static int cert_row(cli_table_t *t, const json_t *v, void *arg)
{
    const int64_t *now = arg;
    char nb[CLI_TIME_MAX], na[CLI_TIME_MAX], rv[CLI_TIME_MAX];
    cli_time_cell(json_object_get(v, "not_before"), false, "-", nb, sizeof(nb));
    cli_time_cell(json_object_get(v, "not_after"), false, "-", na, sizeof(na));
    cli_time_cell(json_object_get(v, "revoked_at"), false, "-", rv, sizeof(rv));
    char *serial = cli_field_text(v, "serial");
    const char *row[] = {serial, cert_state(v, *now), nb, na, rv};
    int rc = cli_table_add(t, row);
    free(serial);
    return rc;
}

static int cert_list(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    static const char *const head[] = {"SERIAL", "STATE", "NOT BEFORE", "NOT AFTER", "REVOKED"};
    char path[PATH_MAX_BYTES], none[128];
    int64_t now = util_now_ms();
    snprintf(none, sizeof(none), "device %s has no certificates", o->arg);
    const cli_rows_t rows = {.key = "certificates",
                             .ncols = 5,
                             .header = head,
                             .row = cert_row,
                             .arg = &now,
                             .none = none};
    int rc = cli_check_id("cert list", "device id", o->arg);
    if (rc == 0)
        rc = cli_make_path("/api/v1/devices/", o->arg, "/certificates", path, sizeof(path));
    cli_conn_t c;
    if (rc == 0)
        rc = connect_pki(connect, ctx, true, &c);
    if (rc == 0)
        rc = cli_list(&c, path, "no certificate list", o->json, &rows);
    return rc;
}

static int cert_revoke(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    static const revoke_t r = {"cert revoke", "serial", "/api/v1/certificates/", "certificate", ""};
    return post_revoke(o, connect, ctx, &r);
}
static int ca_get(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    cli_conn_t c;
    json_t *resp = NULL;
    int rc = connect_pki(connect, ctx, false, &c);
    if (rc == 0)
        rc = request(&c, "GET", "/api/v1/ca", NULL, NULL, &resp);
    if (rc == 0)
        rc = emit_cert("ca", o, resp, "certificate");
    json_decref(resp);
    return rc;
}

/* ---- device import / revoke ---------------------------------------------------------- */

static int device_import(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    const char *what = "device import";
    char sbuf[64];
    const char *ctype = NULL;
    int rc = cli_pki_import_type(o->arg, o->format, &ctype);
    if (rc == -EINVAL)
        return cli_usage(what, "--format wants csv or jsonl, got '%s'",
                         cli_shown(o->format, sbuf, sizeof(sbuf)));
    if (rc < 0)
        return cli_usage(what,
                         "cannot tell the format of %s from its name: give --format csv or "
                         "--format jsonl",
                         cli_shown(o->arg, sbuf, sizeof(sbuf)));
    cli_buf_t b;
    cli_buf_init(&b, IMPORT_MAX);
    rc = cli_read_input(o->arg, &b);
    if (rc == -ENOMEM) {
        cli_buf_fini(&b);
        return cli_oom();
    }
    if (rc < 0) {
        cli_buf_fini(&b);
        return cli_usage(what, "cannot read %s: %s", cli_shown(o->arg, sbuf, sizeof(sbuf)),
                         rc == -EFBIG ? "larger than 16 MiB" : strerror(-rc));
    }
    if (strlen(b.data) != b.len || b.len == 0 || b.data[strspn(b.data, " \t\r\n")] == '\0') {
        bool nul = strlen(b.data) != b.len;
        cli_buf_fini(&b);
        return cli_usage(what, "%s %s", cli_shown(o->arg, sbuf, sizeof(sbuf)),
                         nul ? "holds a NUL byte" : "holds no devices");
    }
    cli_conn_t c;
    json_t *resp = NULL;
    rc = connect_pki(connect, ctx, true, &c);
    if (rc == 0)
        rc = request(&c, "POST", "/api/v1/devices:import", b.data, ctype, &resp);
    cli_buf_fini(&b);
    if (rc != 0)
        return rc;
    const json_t *devs = json_object_get(resp, "devices");
    size_t i;
    const json_t *v;
    bool ok = json_is_array(devs);
    json_array_foreach(devs, i, v)
    {
        ok = ok && json_string_value(json_object_get(v, "id")) != NULL &&
             cli_secret_of(v, "secret") != NULL;
    }
    if (!ok) {
        json_decref(resp);
        return cli_unexpected("no devices with their secrets");
    }
    if (o->json) {
        rc = cli_print_json(resp);
    } else {
        cli_table_t t;
        int e = cli_table_init(&t, 2);
        const char *head[] = {"ID", "SECRET"};
        if (e == 0)
            e = cli_table_add(&t, head);
        json_array_foreach(devs, i, v)
        {
            const char *row[] = {json_string_value(json_object_get(v, "id")),
                                 cli_secret_of(v, "secret")};
            if (e == 0)
                e = cli_table_add(&t, row);
        }
        if (e == 0)
            cli_table_print(&t, stdout);
        /* The table's copies of the secrets. */
        for (size_t k = 0; k < t.nrows * t.ncols; k++)
            if (t.cells != NULL && t.cells[k] != NULL)
                explicit_bzero(t.cells[k], strlen(t.cells[k]));
        cli_table_fini(&t);
        rc = e < 0 ? cli_oom() : EXIT_OK;
    }
    fflush(stdout);
    fprintf(stderr,
            "drover: imported %zu devices; warning: their secrets are shown only once; store "
            "them now\n",
            json_array_size(devs));
    json_array_foreach(devs, i, v)
    {
        cli_json_wipe((json_t *)v, "secret");
    }
    json_decref(resp);
    return rc;
}

static int device_revoke(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    static const revoke_t r = {"device revoke", "device id", "/api/v1/devices/", "device",
                               ": its secret and certificates no longer work"};
    return post_revoke(o, connect, ctx, &r);
}
/* ---- provision ------------------------------------------------------------------------- */

/* The claim token: T itself, or the first line of FILE for @FILE (so it
 * need not appear in the process list). Into buf. */
static int claim_arg(const char *what, const char *arg, char *buf, size_t cap)
{
    char sbuf[64];
    const char *t = arg;
    size_t n;
    cli_buf_t b;
    cli_buf_init(&b, CLAIM_FILE_MAX);
    if (arg[0] == '@') {
        int rc = cli_read_input(arg + 1, &b);
        if (rc < 0) {
            cli_buf_fini(&b);
            return cli_usage(what, "cannot read the claim token from %s: %s",
                             cli_shown(arg + 1, sbuf, sizeof(sbuf)),
                             rc == -EFBIG ? "file too large" : strerror(-rc));
        }
        t = b.data;
        n = strcspn(t, "\r\n");
        while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
            n--;
    } else {
        n = strlen(t);
    }
    bool ok = n > 0 && n < cap;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)t[i] > 0x20 && (unsigned char)t[i] < 0x7f;
    if (ok) {
        memcpy(buf, t, n);
        buf[n] = '\0';
    }
    cli_buf_wipe(&b);
    if (!ok)
        return cli_usage(what, "the claim token is empty, too long or has spaces or control "
                               "characters");
    return 0;
}

static int provision(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    const char *what = "provision";
    char token[SECRET_MAX + 1];
    char *csr = NULL;
    json_t *body = NULL, *resp = NULL;
    if (o->claim_token == NULL)
        return cli_usage(what, "--claim-token is required (from `drover enroll create`)");
    if (o->id == NULL)
        return cli_usage(what, "--id ID is required: the new device's id");
    int rc = cli_check_id(what, "device id", o->id);
    if (rc != 0)
        return rc;
    if (o->csr == NULL)
        return cli_usage(what, "--csr FILE is required: a CSR with CN = the device id");
    if ((rc = claim_arg(what, o->claim_token, token, sizeof(token))) != 0)
        return rc;
    rc = read_csr(what, o->csr, &csr);
    if (rc == 0) {
        body = json_pack("{s:s, s:s, s:s}", "claim_token", token, "id", o->id, "csr", csr);
        if (body == NULL)
            rc = cli_oom();
    }
    explicit_bzero(token, sizeof(token));
    free(csr);
    cli_conn_t c;
    if (rc == 0)
        rc = connect_pki(connect, ctx, false, &c);
    if (rc == 0)
        rc = request_json(&c, "POST", "/api/v1/provision", body, &resp);
    if (body != NULL)
        cli_json_wipe(body, "claim_token");
    json_decref(body);
    if (rc == 0)
        rc = emit_cert(what, o, resp, "certificate");
    if (rc == 0 && !o->json && (o->out == NULL || strcmp(o->out, "-") == 0)) {
        char *id = cli_field_text(resp, "id"), *serial = cli_field_text(resp, "serial");
        fflush(stdout);
        fprintf(stderr, "drover: provisioned device %s (certificate %s)\n", id ? id : "?",
                serial ? serial : "?");
        free(id);
        free(serial);
    }
    json_decref(resp);
    return rc;
}

/* ---- dispatch -------------------------------------------------------------------------- */

int cli_pki_run(const char *what, const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx)
{
    static const struct {
        cli_subcmd_t name;
        int (*fn)(const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx);
    } cmds[] = {
        {{"enroll create", true}, enroll_create}, {{"enroll list", false}, enroll_list},
        {{"enroll show", true}, enroll_show},     {{"enroll revoke", true}, enroll_revoke},
        {{"cert issue", true}, cert_issue},       {{"cert list", true}, cert_list},
        {{"cert revoke", true}, cert_revoke},     {{"ca", false}, ca_get},
        {{"device import", true}, device_import}, {{"device revoke", true}, device_revoke},
        {{"provision", false}, provision},
    };
    int i = cli_subcmd_find(cmds, ARRAY_SIZE(cmds), sizeof(cmds[0]), what, o->arg != NULL);
    return i < 0 ? EXIT_USAGE : cmds[i].fn(o, connect, ctx);
}

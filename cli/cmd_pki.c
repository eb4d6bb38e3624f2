/*
 * drover enroll / cert / ca / device import|revoke / provision (see
 * cmd_pki.h).
 *
 * Requests go through one helper (request()) that turns a non-2xx answer
 * into "drover: <detail> (<status> <code>)" on stderr and exit status 1,
 * as the rest of the CLI does, and adds a hint about --cacert when an
 * https:// server's certificate could not be verified. Ids, names and
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

#include "cli_util.h"
#include "cmd_operators.h"

#include "common/json.h"
#include "common/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_OK 0
#define EXIT_SERVER 1
#define EXIT_UNREACHABLE 2
#define EXIT_USAGE 64

#define CSR_MAX 16384                  /* the server's limit (src/api/pki.c) */
#define IMPORT_MAX (16u * 1024 * 1024) /* above any sensible max_body */
#define CLAIM_FILE_MAX 4096
#define PATH_MAX_BYTES 1024
#define ENROLL_NAME_MAX 127 /* the server's limit (src/pki/pki.c) */
#define SPEC_TAGS_MAX 64
#define SECRET_MAX 256

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

static int usage(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage(const char *what, const char *fmt, ...)
{
    va_list ap;
    fputs("drover: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun `drover help %s` for details.\n", what);
    return EXIT_USAGE;
}

/* A command-line argument made safe to print in an error. */
static const char *shown(const char *s, char *buf, size_t len)
{
    char *t = cli_sanitize(s, 40);
    snprintf(buf, len, "%s", t ? t : "?");
    free(t);
    return buf;
}

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
        t = json_object();
        if (t == NULL)
            goto oom;
        for (size_t i = 0; i < ntags; i++) {
            size_t kl;
            if (cli_tag_split(tags[i], &kl) < 0) {
                snprintf(err, errlen, "--tag wants K=V");
                goto bad;
            }
            char *key = strndup(tags[i], kl);
            if (key == NULL)
                goto oom;
            bool twice = json_object_get(t, key) != NULL;
            json_t *v = twice ? NULL : json_string(tags[i] + kl + 1);
            int set = v != NULL ? json_object_set_new(t, key, v) : -1;
            free(key);
            if (twice) {
                snprintf(err, errlen, "tag '%.*s' given twice", (int)(kl > 64 ? 64 : kl), tags[i]);
                goto bad;
            }
            if (set < 0) {
                snprintf(err, errlen, "a tag is not valid UTF-8");
                goto bad;
            }
        }
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

/* A whole file ("-": stdin) into b. -errno, or -EFBIG past b's max. */
static int read_input(const char *path, cli_buf_t *b)
{
    bool in = strcmp(path, "-") == 0;
    int fd = in ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char chunk[8192];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        if ((rc = cli_buf_append(b, chunk, (size_t)n)) < 0)
            break;
    }
    if (rc == 0 && b->data == NULL)
        rc = cli_buf_append(b, "", 0);
    explicit_bzero(chunk, sizeof(chunk));
    if (!in)
        close(fd);
    return rc;
}

/* data to path ("-": stdout) by way of path.tmp and rename. */
static int write_output(const char *path, const char *data, size_t len)
{
    if (strcmp(path, "-") == 0) {
        fwrite(data, 1, len, stdout);
        return ferror(stdout) ? -EIO : 0;
    }
    char tmp[PATH_MAX_BYTES + 8];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    int rc = 0;
    while (rc == 0 && len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = -errno;
        } else {
            data += w;
            len -= (size_t)w;
        }
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

/* The PEM block of a CSR file, as a new string (caller frees). Returns 0
 * or an exit status, the reason printed. */
static int read_csr(const char *what, const char *path, char **out)
{
    char sbuf[64];
    cli_buf_t b;
    cli_buf_init(&b, CSR_MAX * 4); /* room for an openssl -text dump */
    int rc = read_input(path, &b);
    if (rc < 0) {
        cli_buf_fini(&b);
        if (rc == -ENOMEM) {
            errorf("out of memory");
            return EXIT_SERVER;
        }
        return usage(what, "cannot read the CSR from %s: %s", shown(path, sbuf, sizeof(sbuf)),
                     rc == -EFBIG ? "file too large" : strerror(-rc));
    }
    size_t off, len;
    if (cli_pki_pem_block(b.data, b.len, "CERTIFICATE REQUEST", true, &off, &len) < 0 &&
        cli_pki_pem_block(b.data, b.len, "NEW CERTIFICATE REQUEST", true, &off, &len) < 0) {
        cli_buf_fini(&b);
        return usage(what,
                     "%s is not a PEM certificate signing request (-----BEGIN CERTIFICATE "
                     "REQUEST-----; make one with `openssl req -new -key KEY -subj /CN=ID`)",
                     shown(path, sbuf, sizeof(sbuf)));
    }
    if (len > CSR_MAX) {
        cli_buf_fini(&b);
        return usage(what, "the CSR in %s is larger than %d bytes", shown(path, sbuf, sizeof(sbuf)),
                     CSR_MAX);
    }
    char *csr = strndup(b.data + off, len);
    cli_buf_fini(&b);
    if (csr == NULL) {
        errorf("out of memory");
        return EXIT_SERVER;
    }
    *out = csr;
    return 0;
}

/* ---- requests ------------------------------------------------------------------ */

typedef struct {
    cli_http_t *http;
    const char *server;
} conn_t;

/* Wipes the string value of key in o: a secret an answer carried, or a
 * claim token a body did, before the JSON is freed. */
static void wipe_key(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        explicit_bzero((char *)json_string_value(v), json_string_length(v));
}

/*
 * One request; body (may be NULL) is sent as ctype (NULL: JSON). On a 2xx
 * answer *out gets the parsed body (NULL when empty) and 0 is returned;
 * otherwise the failure is printed and the exit status returned. The
 * answer's raw bytes are wiped: they may hold a claim token or secrets.
 */
static int request(const conn_t *c, const char *method, const char *path, const char *body,
                   const char *ctype, json_t **out)
{
    char err[CLI_HTTP_ERR_MAX] = "";
    cli_http_resp_t r;
    cli_http_opts_t ho = {.content_type = ctype};
    int rc = cli_http_request_opts(c->http, method, path, body, &ho, &r, err, sizeof(err));
    if (rc == -EIO) {
        char *s = cli_sanitize(c->server, 200);
        bool tls = strncmp(c->server, "https://", 8) == 0 &&
                   (strstr(err, "certificate") != NULL || strstr(err, "SSL") != NULL);
        errorf("cannot reach server at %s: %s%s", s ? s : "?", err,
               tls ? " (give the server's CA certificate with --cacert FILE or DROVER_CACERT)"
                   : "");
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
    char perr[160] = "";
    json_t *v = r.len > 0 ? json_util_parse(r.body, r.len, perr, sizeof(perr)) : NULL;
    if (r.body != NULL) {
        explicit_bzero(r.body, r.len);
        free(r.body);
    }
    if (r.status >= 200 && r.status < 300) {
        if (r.len > 0 && v == NULL) {
            errorf("the server's answer is not JSON (%ld): %s", r.status, perr);
            return EXIT_SERVER;
        }
        *out = v;
        return 0;
    }
    const char *code = json_string_value(json_object_get(v, "error"));
    const char *detail = json_string_value(json_object_get(v, "detail"));
    if (code == NULL) {
        errorf("the server answered %ld without a JSON error body", r.status);
    } else {
        char *d = cli_sanitize(detail ? detail : code, 300);
        char *cd = cli_sanitize(code, 64);
        errorf("%s (%ld %s)", d ? d : "request failed", r.status, cd ? cd : "-");
        free(d);
        free(cd);
    }
    json_decref(v);
    return EXIT_SERVER;
}

/* As request(), with v (may be NULL) sent as JSON. */
static int request_json(const conn_t *c, const char *method, const char *path, const json_t *v,
                        json_t **out)
{
    char *text = NULL;
    if (v != NULL && (text = json_util_dump(v)) == NULL) {
        errorf("out of memory");
        return EXIT_SERVER;
    }
    int rc = request(c, method, path, text, NULL, out);
    if (text != NULL) {
        explicit_bzero(text, strlen(text)); /* may hold a claim token */
        free(text);
    }
    return rc;
}

/* prefix + escaped(arg) + suffix into out. */
static int make_path(const char *prefix, const char *arg, const char *suffix, char *out,
                     size_t outlen)
{
    char *e = curl_easy_escape(NULL, arg, (int)strnlen(arg, PATH_MAX_BYTES));
    if (e == NULL) {
        errorf("out of memory");
        return EXIT_SERVER;
    }
    int n = snprintf(out, outlen, "%s%s%s", prefix, e, suffix ? suffix : "");
    curl_free(e);
    if (n < 0 || (size_t)n >= outlen) {
        errorf("argument too long");
        return EXIT_USAGE;
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

static int unexpected(const char *what)
{
    errorf("unexpected answer from the server: %s", what);
    return EXIT_SERVER;
}

static int oom(void)
{
    errorf("out of memory");
    return EXIT_SERVER;
}

/* A field as safe text for a line or a cell ("" when absent); caller
 * frees. */
static char *field(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL)
        return cli_sanitize("", 0);
    if (json_is_string(v))
        return cli_sanitize(json_string_value(v), 0);
    char *t = cli_json_text(v);
    char *s = t != NULL ? cli_sanitize(t, 0) : NULL;
    free(t);
    return s;
}

static void time_text(const json_t *v, const char *none, char *out, size_t len)
{
    if (!json_is_integer(v) || cli_format_time(json_integer_value(v), false, out, len) < 0)
        snprintf(out, len, "%s", none);
}

/* "label  value" with value sanitized; NULL prints "-". */
static void print_kv(const char *label, const char *value)
{
    char *v = cli_sanitize(value != NULL && *value ? value : "-", 0);
    printf("%-13s %s\n", label, v ? v : "?");
    free(v);
}

/* A secret in an answer (claim token, device secret), checked: it goes to
 * a terminal. URL-safe base64 and '_' only. */
static const char *secret_of(const json_t *o, const char *key)
{
    const char *t = json_string_value(json_object_get(o, key));
    if (t == NULL || strlen(t) < 8 || strlen(t) > SECRET_MAX)
        return NULL;
    for (const char *p = t; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return NULL;
    return t;
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
        return unexpected("no PEM certificate");
    size_t len = strlen(pem);
    bool nl = len > 0 && pem[len - 1] == '\n';
    if (o->out != NULL && strcmp(o->out, "-") != 0) {
        char *text = malloc(len + 2);
        if (text == NULL)
            return oom();
        memcpy(text, pem, len);
        if (!nl)
            text[len++] = '\n';
        int rc = write_output(o->out, text, len);
        free(text);
        if (rc < 0) {
            errorf("cannot write %s: %s", shown(o->out, sbuf, sizeof(sbuf)), strerror(-rc));
            return EXIT_USAGE;
        }
        if (o->json)
            return print_pretty(ans);
        char until[CLI_TIME_MAX];
        time_text(json_object_get(ans, "not_after"), "-", until, sizeof(until));
        char *serial = field(ans, "serial"), *file = cli_sanitize(o->out, 0);
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
        return print_pretty(ans);
    fputs(pem, stdout);
    if (!nl)
        fputc('\n', stdout);
    return EXIT_OK;
}

/* ---- argument checks ------------------------------------------------------------ */

static int check_id(const char *what, const char *kind, const char *id)
{
    char sbuf[64];
    if (id != NULL && util_id_valid(id, strlen(id)))
        return 0;
    return usage(what, "invalid %s '%s': 1 to 64 characters of A-Z a-z 0-9 . _ -", kind,
                 shown(id ? id : "", sbuf, sizeof(sbuf)));
}

/* ---- enroll -------------------------------------------------------------------- */

static int enroll_create(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    const char *what = "enroll create";
    char err[200], sbuf[64];
    int64_t expires = 0;
    if (o->expires_in != NULL &&
        (cli_ops_parse_duration(o->expires_in, &expires) < 0 || expires < 60))
        return usage(what,
                     "--expires-in wants a lifetime from 60s to 10 years: N followed by s, m, "
                     "h, d or w (e.g. 12h, 30d); got '%s'",
                     shown(o->expires_in, sbuf, sizeof(sbuf)));
    json_t *spec = NULL, *resp = NULL;
    int rc = cli_pki_enroll_spec(o->arg, o->max_uses, expires, o->tags, o->ntags, o->group,
                                 o->desired, &spec, err, sizeof(err));
    if (rc == -EINVAL)
        return usage(what, "%s", err);
    if (rc < 0)
        return oom();
    conn_t c;
    rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request_json(&c, "POST", "/api/v1/enrollments", spec, &resp);
    json_decref(spec);
    if (rc != 0)
        return rc;
    const char *tok = secret_of(resp, "claim_token");
    if (tok == NULL || json_string_value(json_object_get(resp, "id")) == NULL) {
        json_decref(resp);
        return unexpected("no enrollment id or claim token");
    }
    if (o->json) {
        rc = print_pretty(resp);
    } else {
        char expires_at[CLI_TIME_MAX];
        time_text(json_object_get(resp, "expires_at"), "never", expires_at, sizeof(expires_at));
        char *id = field(resp, "id"), *name = field(resp, "name"), *uses = field(resp, "max_uses");
        print_kv("id:", id);
        print_kv("name:", name);
        print_kv("max uses:", uses);
        print_kv("expires:", expires_at);
        printf("%-13s %s\n", "claim token:", tok);
        free(id);
        free(name);
        free(uses);
    }
    fflush(stdout);
    fputs("drover: warning: the claim token is shown only once; store it now\n", stderr);
    wipe_key(resp, "claim_token");
    json_decref(resp);
    return rc;
}

static int enroll_list(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    conn_t c;
    json_t *resp = NULL;
    int rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "GET", "/api/v1/enrollments", NULL, NULL, &resp);
    if (rc != 0)
        return rc;
    const json_t *list = json_object_get(resp, "enrollments");
    if (!json_is_array(list)) {
        json_decref(resp);
        return unexpected("no enrollment list");
    }
    if (o->json) {
        rc = print_pretty(resp);
        json_decref(resp);
        return rc;
    }
    if (json_array_size(list) == 0) {
        json_decref(resp);
        fputs("drover: no enrollments\n", stderr);
        return EXIT_OK;
    }
    cli_table_t t;
    int e = cli_table_init(&t, 7);
    const char *head[] = {"ID", "NAME", "STATE", "USES", "GROUP", "EXPIRES", "CREATED"};
    if (e == 0)
        e = cli_table_add(&t, head);
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        if (e < 0)
            break;
        char created[CLI_TIME_MAX], expires[CLI_TIME_MAX], uses[64];
        time_text(json_object_get(v, "created_at"), "-", created, sizeof(created));
        time_text(json_object_get(v, "expires_at"), "never", expires, sizeof(expires));
        snprintf(uses, sizeof(uses), "%lld/%lld",
                 (long long)json_integer_value(json_object_get(v, "uses")),
                 (long long)json_integer_value(json_object_get(v, "max_uses")));
        char *id = field(v, "id"), *name = field(v, "name"), *state = field(v, "state"),
             *grp = field(v, "group");
        const char *row[] = {id, name, state, uses, grp, expires, created};
        e = cli_table_add(&t, row);
        free(id);
        free(name);
        free(state);
        free(grp);
    }
    if (e == 0)
        cli_table_print(&t, stdout);
    cli_table_fini(&t);
    json_decref(resp);
    return e < 0 ? oom() : EXIT_OK;
}

/* "k=v, k2=v2" of an object of scalars; caller frees. */
static char *pairs_text(const json_t *obj)
{
    cli_buf_t b;
    cli_buf_init(&b, 64 * 1024);
    int rc = cli_buf_append(&b, "", 0);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        char *t = cli_json_text(v);
        if (t == NULL) {
            rc = -ENOMEM;
            break;
        }
        if (rc == 0 && b.len > 0)
            rc = cli_buf_puts(&b, ", ");
        if (rc == 0)
            rc = cli_buf_puts(&b, k);
        if (rc == 0)
            rc = cli_buf_puts(&b, "=");
        if (rc == 0)
            rc = cli_buf_puts(&b, t);
        free(t);
        if (rc < 0)
            break;
    }
    if (rc < 0) {
        cli_buf_fini(&b);
        return NULL;
    }
    return b.data;
}

static int enroll_show(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    const char *what = "enroll show";
    char path[PATH_MAX_BYTES];
    int rc = check_id(what, "enrollment id", o->arg);
    if (rc == 0)
        rc = make_path("/api/v1/enrollments/", o->arg, NULL, path, sizeof(path));
    conn_t c;
    json_t *e = NULL;
    if (rc == 0)
        rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "GET", path, NULL, NULL, &e);
    if (rc != 0)
        return rc;
    if (!json_is_object(e) || json_object_get(e, "id") == NULL) {
        json_decref(e);
        return unexpected("not an enrollment");
    }
    if (o->json) {
        rc = print_pretty(e);
        json_decref(e);
        return rc;
    }
    char created[CLI_TIME_MAX], expires[CLI_TIME_MAX], uses[64];
    time_text(json_object_get(e, "created_at"), "-", created, sizeof(created));
    time_text(json_object_get(e, "expires_at"), "never", expires, sizeof(expires));
    snprintf(uses, sizeof(uses), "%lld of %lld",
             (long long)json_integer_value(json_object_get(e, "uses")),
             (long long)json_integer_value(json_object_get(e, "max_uses")));
    char *id = field(e, "id"), *name = field(e, "name"), *state = field(e, "state"),
         *grp = field(e, "group"), *tags = pairs_text(json_object_get(e, "tags"));
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

static int enroll_revoke(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    char path[PATH_MAX_BYTES];
    int rc = check_id("enroll revoke", "enrollment id", o->arg);
    if (rc == 0)
        rc = make_path("/api/v1/enrollments/", o->arg, "/revoke", path, sizeof(path));
    conn_t c;
    json_t *resp = NULL;
    if (rc == 0)
        rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "POST", path, NULL, NULL, &resp);
    if (rc == 0 && o->json)
        rc = print_pretty(resp);
    else if (rc == 0)
        printf("revoked enrollment %s: its claim token no longer provisions devices\n", o->arg);
    json_decref(resp);
    return rc;
}

/* ---- cert and ca ----------------------------------------------------------------- */

static int cert_issue(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    const char *what = "cert issue";
    char path[PATH_MAX_BYTES];
    char *csr = NULL;
    json_t *body = NULL, *resp = NULL;
    int rc = check_id(what, "device id", o->arg);
    if (rc != 0)
        return rc;
    if (o->csr == NULL)
        return usage(what, "--csr FILE is required: the device's certificate signing request");
    if ((rc = read_csr(what, o->csr, &csr)) != 0)
        return rc;
    rc = make_path("/api/v1/devices/", o->arg, "/certificates", path, sizeof(path));
    if (rc == 0 && (body = json_pack("{s:s}", "csr", csr)) == NULL)
        rc = oom();
    free(csr);
    conn_t c;
    if (rc == 0)
        rc = connect(ctx, true, &c.http, &c.server);
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

static int cert_list(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    char path[PATH_MAX_BYTES];
    int rc = check_id("cert list", "device id", o->arg);
    if (rc == 0)
        rc = make_path("/api/v1/devices/", o->arg, "/certificates", path, sizeof(path));
    conn_t c;
    json_t *resp = NULL;
    if (rc == 0)
        rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "GET", path, NULL, NULL, &resp);
    if (rc != 0)
        return rc;
    const json_t *list = json_object_get(resp, "certificates");
    if (!json_is_array(list)) {
        json_decref(resp);
        return unexpected("no certificate list");
    }
    if (o->json) {
        rc = print_pretty(resp);
        json_decref(resp);
        return rc;
    }
    if (json_array_size(list) == 0) {
        json_decref(resp);
        fprintf(stderr, "drover: device %s has no certificates\n", o->arg);
        return EXIT_OK;
    }
    int64_t now = util_now_ms();
    cli_table_t t;
    int e = cli_table_init(&t, 5);
    const char *head[] = {"SERIAL", "STATE", "NOT BEFORE", "NOT AFTER", "REVOKED"};
    if (e == 0)
        e = cli_table_add(&t, head);
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        if (e < 0)
            break;
        char nb[CLI_TIME_MAX], na[CLI_TIME_MAX], rv[CLI_TIME_MAX];
        time_text(json_object_get(v, "not_before"), "-", nb, sizeof(nb));
        time_text(json_object_get(v, "not_after"), "-", na, sizeof(na));
        time_text(json_object_get(v, "revoked_at"), "-", rv, sizeof(rv));
        char *serial = field(v, "serial");
        const char *row[] = {serial, cert_state(v, now), nb, na, rv};
        e = cli_table_add(&t, row);
        free(serial);
    }
    if (e == 0)
        cli_table_print(&t, stdout);
    cli_table_fini(&t);
    json_decref(resp);
    return e < 0 ? oom() : EXIT_OK;
}

static int cert_revoke(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    char path[PATH_MAX_BYTES];
    int rc = check_id("cert revoke", "serial", o->arg);
    if (rc == 0)
        rc = make_path("/api/v1/certificates/", o->arg, "/revoke", path, sizeof(path));
    conn_t c;
    json_t *resp = NULL;
    if (rc == 0)
        rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "POST", path, NULL, NULL, &resp);
    if (rc == 0 && o->json)
        rc = print_pretty(resp);
    else if (rc == 0)
        printf("revoked certificate %s\n", o->arg);
    json_decref(resp);
    return rc;
}

static int ca_get(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    conn_t c;
    json_t *resp = NULL;
    int rc = connect(ctx, false, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "GET", "/api/v1/ca", NULL, NULL, &resp);
    if (rc == 0)
        rc = emit_cert("ca", o, resp, "certificate");
    json_decref(resp);
    return rc;
}

/* ---- device import / revoke ---------------------------------------------------------- */

static int device_import(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    const char *what = "device import";
    char sbuf[64];
    const char *ctype = NULL;
    int rc = cli_pki_import_type(o->arg, o->format, &ctype);
    if (rc == -EINVAL)
        return usage(what, "--format wants csv or jsonl, got '%s'",
                     shown(o->format, sbuf, sizeof(sbuf)));
    if (rc < 0)
        return usage(what,
                     "cannot tell the format of %s from its name: give --format csv or "
                     "--format jsonl",
                     shown(o->arg, sbuf, sizeof(sbuf)));
    cli_buf_t b;
    cli_buf_init(&b, IMPORT_MAX);
    rc = read_input(o->arg, &b);
    if (rc == -ENOMEM) {
        cli_buf_fini(&b);
        return oom();
    }
    if (rc < 0) {
        cli_buf_fini(&b);
        return usage(what, "cannot read %s: %s", shown(o->arg, sbuf, sizeof(sbuf)),
                     rc == -EFBIG ? "larger than 16 MiB" : strerror(-rc));
    }
    if (strlen(b.data) != b.len || b.len == 0 || b.data[strspn(b.data, " \t\r\n")] == '\0') {
        bool nul = strlen(b.data) != b.len;
        cli_buf_fini(&b);
        return usage(what, "%s %s", shown(o->arg, sbuf, sizeof(sbuf)),
                     nul ? "holds a NUL byte" : "holds no devices");
    }
    conn_t c;
    json_t *resp = NULL;
    rc = connect(ctx, true, &c.http, &c.server);
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
             secret_of(v, "secret") != NULL;
    }
    if (!ok) {
        json_decref(resp);
        return unexpected("no devices with their secrets");
    }
    if (o->json) {
        rc = print_pretty(resp);
    } else {
        cli_table_t t;
        int e = cli_table_init(&t, 2);
        const char *head[] = {"ID", "SECRET"};
        if (e == 0)
            e = cli_table_add(&t, head);
        json_array_foreach(devs, i, v)
        {
            const char *row[] = {json_string_value(json_object_get(v, "id")),
                                 secret_of(v, "secret")};
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
        rc = e < 0 ? oom() : EXIT_OK;
    }
    fflush(stdout);
    fprintf(stderr,
            "drover: imported %zu devices; warning: their secrets are shown only once; store "
            "them now\n",
            json_array_size(devs));
    json_array_foreach(devs, i, v)
    {
        wipe_key((json_t *)v, "secret");
    }
    json_decref(resp);
    return rc;
}

static int device_revoke(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    char path[PATH_MAX_BYTES];
    int rc = check_id("device revoke", "device id", o->arg);
    if (rc == 0)
        rc = make_path("/api/v1/devices/", o->arg, "/revoke", path, sizeof(path));
    conn_t c;
    json_t *resp = NULL;
    if (rc == 0)
        rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "POST", path, NULL, NULL, &resp);
    if (rc == 0 && o->json)
        rc = print_pretty(resp);
    else if (rc == 0)
        printf("revoked device %s: its secret and certificates no longer work\n", o->arg);
    json_decref(resp);
    return rc;
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
        int rc = read_input(arg + 1, &b);
        if (rc < 0) {
            cli_buf_fini(&b);
            return usage(what, "cannot read the claim token from %s: %s",
                         shown(arg + 1, sbuf, sizeof(sbuf)),
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
    if (b.data != NULL)
        explicit_bzero(b.data, b.len);
    cli_buf_fini(&b);
    if (!ok)
        return usage(what, "the claim token is empty, too long or has spaces or control "
                           "characters");
    return 0;
}

static int provision(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    const char *what = "provision";
    char token[SECRET_MAX + 1];
    char *csr = NULL;
    json_t *body = NULL, *resp = NULL;
    if (o->claim_token == NULL)
        return usage(what, "--claim-token is required (from `drover enroll create`)");
    if (o->id == NULL)
        return usage(what, "--id ID is required: the new device's id");
    int rc = check_id(what, "device id", o->id);
    if (rc != 0)
        return rc;
    if (o->csr == NULL)
        return usage(what, "--csr FILE is required: a CSR with CN = the device id");
    if ((rc = claim_arg(what, o->claim_token, token, sizeof(token))) != 0)
        return rc;
    rc = read_csr(what, o->csr, &csr);
    if (rc == 0) {
        body = json_pack("{s:s, s:s, s:s}", "claim_token", token, "id", o->id, "csr", csr);
        if (body == NULL)
            rc = oom();
    }
    explicit_bzero(token, sizeof(token));
    free(csr);
    conn_t c;
    if (rc == 0)
        rc = connect(ctx, false, &c.http, &c.server);
    if (rc == 0)
        rc = request_json(&c, "POST", "/api/v1/provision", body, &resp);
    if (body != NULL)
        wipe_key(body, "claim_token");
    json_decref(body);
    if (rc == 0)
        rc = emit_cert(what, o, resp, "certificate");
    if (rc == 0 && !o->json && (o->out == NULL || strcmp(o->out, "-") == 0)) {
        char *id = field(resp, "id"), *serial = field(resp, "serial");
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

int cli_pki_run(const char *what, const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx)
{
    static const struct {
        const char *what;
        bool needs_arg;
        int (*fn)(const cli_pki_opts_t *o, cli_pki_connect_fn connect, void *ctx);
    } cmds[] = {
        {"enroll create", true, enroll_create}, {"enroll list", false, enroll_list},
        {"enroll show", true, enroll_show},     {"enroll revoke", true, enroll_revoke},
        {"cert issue", true, cert_issue},       {"cert list", true, cert_list},
        {"cert revoke", true, cert_revoke},     {"ca", false, ca_get},
        {"device import", true, device_import}, {"device revoke", true, device_revoke},
        {"provision", false, provision},
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(cmds[i].what, what) != 0)
            continue;
        if (cmds[i].needs_arg && o->arg == NULL)
            return usage(what, "missing argument");
        return cmds[i].fn(o, connect, ctx);
    }
    errorf("unknown command '%s'", what);
    return EXIT_USAGE;
}

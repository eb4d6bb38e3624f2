/*
 * The CLI's shared I/O helpers (see cli_common.h). Everything that prints
 * does so on stdout (answers) or stderr ("drover: ..." messages), and
 * returns the exit status the command should end with, so a command
 * function is a sequence of "rc = ...; if (rc != 0) return rc;".
 *
 * The request function is the one place that turns a transport failure or
 * a non-2xx answer into a message. The families worded a few corner cases
 * differently before they shared it (whether a TLS failure hints at
 * --cacert, how an error body without a code is reported); the CLI_REQ_
 * flags of the connection keep each family's wording.
 */
#include "cli_common.h"

#include "common/json.h"
#include "common/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAKE_PATH_ARG_MAX 1024 /* cli_make_path: bytes of arg escaped */
#define TMP_PATH_MAX 4200      /* cli_write_atomic: path + ".tmp" */
#define CONFIG_REL_PATH "/.config/drover/config"

/* ---- messages ------------------------------------------------------------ */

void cli_errorf(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("drover: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_oom(void)
{
    cli_errorf("out of memory");
    return EXIT_SERVER;
}

int cli_unexpected(const char *what)
{
    cli_errorf("unexpected answer from the server: %s", what);
    return EXIT_SERVER;
}

int cli_usage(const char *what, const char *fmt, ...)
{
    va_list ap;
    fputs("drover: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun `drover help %s` for details.\n", what);
    return EXIT_USAGE;
}

int cli_check_id(const char *what, const char *kind, const char *id)
{
    char sbuf[64];
    if (id != NULL && util_id_valid(id, strlen(id)))
        return 0;
    return cli_usage(what, "invalid %s '%s': 1 to 64 characters of A-Z a-z 0-9 . _ -", kind,
                     cli_shown(id ? id : "", sbuf, sizeof(sbuf)));
}

int cli_subcmd_find(const void *table, size_t n, size_t stride, const char *what, bool have_arg)
{
    for (size_t i = 0; i < n; i++) {
        const cli_subcmd_t *s = (const cli_subcmd_t *)((const char *)table + i * stride);
        if (strcmp(s->what, what) != 0)
            continue;
        if (s->needs_arg && !have_arg) {
            cli_usage(what, "missing argument");
            return -1;
        }
        return (int)i;
    }
    cli_errorf("unknown command '%s'", what);
    return -1;
}

void cli_warn_shown_once(const char *what)
{
    cli_errorf("warning: the %s is shown only once; store it now", what);
}

int cli_print_json(const json_t *v)
{
    if (v == NULL)
        return 0; /* an answer without a body (204): nothing to print */
    cli_buf_t b;
    cli_buf_init(&b, SIZE_MAX / 2);
    int rc = cli_json_pretty(v, &b);
    if (rc == 0) {
        fwrite(b.data, 1, b.len, stdout);
        fputc('\n', stdout);
    }
    cli_buf_fini(&b);
    if (rc < 0) {
        cli_errorf("cannot print the answer: %s", strerror(-rc));
        return EXIT_SERVER;
    }
    return EXIT_OK;
}

/* ---- files --------------------------------------------------------------- */

int cli_read_fd(int fd, cli_buf_t *b, bool first_line)
{
    char chunk[4096];
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
        rc = cli_buf_append(b, chunk, (size_t)n);
        if (rc < 0 || (first_line && memchr(chunk, '\n', (size_t)n) != NULL))
            break;
    }
    explicit_bzero(chunk, sizeof(chunk));
    return rc;
}

/* Reads fd to its end into b and makes sure b holds at least "". */
static int read_all(int fd, cli_buf_t *b)
{
    int rc = cli_read_fd(fd, b, false);
    if (rc == 0 && b->data == NULL)
        rc = cli_buf_append(b, "", 0);
    return rc;
}

int cli_read_path(const char *path, cli_buf_t *b)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = read_all(fd, b);
    close(fd);
    return rc;
}

int cli_read_input(const char *path, cli_buf_t *b)
{
    return strcmp(path, "-") == 0 ? read_all(STDIN_FILENO, b) : cli_read_path(path, b);
}

int cli_write_atomic(const char *path, const char *data, size_t len, mode_t mode)
{
    char tmp[TMP_PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
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

int cli_config_path(char *out, size_t len, bool mkdirs)
{
    const char *env = getenv("DROVER_CONFIG");
    const char *home = getenv("HOME");
    int n;
    if (env != NULL && *env) {
        n = snprintf(out, len, "%s", env);
    } else if (home != NULL && *home) {
        if (mkdirs) {
            /* ~/.config and ~/.config/drover, private */
            n = snprintf(out, len, "%s/.config", home);
            if (n > 0 && (size_t)n < len && mkdir(out, 0700) < 0 && errno != EEXIST)
                return -errno;
            n = snprintf(out, len, "%s/.config/drover", home);
            if (n > 0 && (size_t)n < len && mkdir(out, 0700) < 0 && errno != EEXIST)
                return -errno;
        }
        n = snprintf(out, len, "%s%s", home, CONFIG_REL_PATH);
    } else {
        return -ENOENT;
    }
    return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

/* ---- requests ------------------------------------------------------------ */

/* The transport: 0 with *r for any HTTP status, or the exit status of a
 * failure, printed. */
static int transport(const cli_conn_t *c, const char *method, const char *path, const char *body,
                     const cli_http_opts_t *o, cli_http_resp_t *r)
{
    char err[CLI_HTTP_ERR_MAX] = "";
    int rc = cli_http_request_opts(c->http, method, path, body, o, r, err, sizeof(err));
    if (rc == -EIO) {
        bool tls = (c->flags & CLI_REQ_TLS_HINT) && strncmp(c->server, "https://", 8) == 0 &&
                   (strstr(err, "certificate") != NULL || strstr(err, "SSL") != NULL);
        char *s = (c->flags & CLI_REQ_SERVER_ASIS) ? NULL : cli_sanitize(c->server, 200);
        const char *shown = (c->flags & CLI_REQ_SERVER_ASIS) ? c->server : s ? s : "?";
        cli_errorf("cannot reach server at %s: %s%s", shown, err,
                   tls ? " (give the server's CA certificate with --cacert FILE or DROVER_CACERT)"
                       : "");
        free(s);
        return EXIT_UNREACHABLE;
    }
    if (rc == -EFBIG) {
        cli_errorf("the server's response is larger than %u MiB; not read",
                   CLI_HTTP_BODY_MAX / (1024 * 1024));
        return EXIT_SERVER;
    }
    if (rc < 0)
        return cli_oom();
    return 0;
}

/* The message of a non-2xx answer whose body parsed to v (may be NULL). */
static int report_status(const cli_conn_t *c, long status, const json_t *v)
{
    const char *code = json_string_value(json_object_get(v, "error"));
    const char *detail = json_string_value(json_object_get(v, "detail"));
    bool any = (c->flags & CLI_REQ_ANY_DETAIL) != 0;
    if (any ? v == NULL && status != 0 : code == NULL) {
        cli_errorf("the server answered %ld without a JSON error body", status);
        return EXIT_SERVER;
    }
    char *d = cli_sanitize(detail ? detail : code ? code : "request failed", 300);
    char *cd = cli_sanitize(code ? code : "-", 64);
    cli_errorf("%s (%ld %s)", d ? d : "request failed", status, cd ? cd : "-");
    free(d);
    free(cd);
    return EXIT_SERVER;
}

static void wipe_body(cli_http_resp_t *r)
{
    if (r->body != NULL)
        explicit_bzero(r->body, r->len);
    free(r->body);
    r->body = NULL;
}

int cli_request(const cli_conn_t *c, const char *method, const char *path, const char *body,
                const cli_http_opts_t *o, long quiet, json_t **out)
{
    cli_http_resp_t r;
    int rc = transport(c, method, path, body, o, &r);
    if (rc != 0)
        return rc;
    char perr[160] = "";
    json_t *v = r.len > 0 ? json_util_parse(r.body, r.len, perr, sizeof(perr)) : NULL;
    wipe_body(&r);
    if (r.status >= 200 && r.status < 300) {
        if (r.len > 0 && v == NULL && !(c->flags & CLI_REQ_LENIENT_2XX)) {
            cli_errorf("the server's answer is not JSON (%ld): %s", r.status, perr);
            return EXIT_SERVER;
        }
        *out = v;
        return 0;
    }
    if (quiet != 0 && r.status == quiet) {
        *out = v;
        return CLI_QUIET;
    }
    rc = report_status(c, r.status, v);
    json_decref(v);
    return rc;
}

int cli_request_json(const cli_conn_t *c, const char *method, const char *path, const json_t *v,
                     const cli_http_opts_t *o, long quiet, json_t **out)
{
    char *text = NULL;
    if (v != NULL && (text = json_util_dump(v)) == NULL)
        return cli_oom();
    int rc = cli_request(c, method, path, text, o, quiet, out);
    if (text != NULL) {
        explicit_bzero(text, strlen(text));
        free(text);
    }
    return rc;
}

int cli_request_raw(const cli_conn_t *c, const char *path, cli_http_resp_t *out)
{
    cli_http_resp_t r;
    int rc = transport(c, "GET", path, NULL, NULL, &r);
    if (rc != 0)
        return rc;
    if (r.status >= 200 && r.status < 300) {
        *out = r;
        return 0;
    }
    json_t *v = r.len > 0 ? json_util_parse(r.body, r.len, NULL, 0) : NULL;
    wipe_body(&r);
    rc = report_status(c, r.status, v);
    json_decref(v);
    return rc;
}

/* ---- request paths ------------------------------------------------------- */

void cli_path_init(cli_path_t *p, const char *prefix)
{
    cli_buf_init(&p->b, CLI_PATH_MAX);
    p->query = strchr(prefix, '?') != NULL;
    p->err = cli_buf_puts(&p->b, prefix);
}

void cli_path_escaped(cli_path_t *p, const char *s)
{
    if (p->err)
        return;
    char *e = curl_easy_escape(NULL, s, (int)strnlen(s, CLI_PATH_MAX));
    p->err = e ? cli_buf_puts(&p->b, e) : -ENOMEM;
    curl_free(e);
}

void cli_path_raw(cli_path_t *p, const char *s)
{
    if (!p->err)
        p->err = cli_buf_puts(&p->b, s);
}

void cli_path_param(cli_path_t *p, const char *key, const char *value)
{
    if (value == NULL)
        return;
    cli_path_raw(p, p->query ? "&" : "?");
    p->query = true;
    cli_path_raw(p, key);
    cli_path_raw(p, "=");
    cli_path_escaped(p, value);
}

void cli_path_fini(cli_path_t *p)
{
    cli_buf_fini(&p->b);
}

int cli_path_check(const cli_path_t *p)
{
    if (p->err == 0)
        return 0;
    cli_errorf(p->err == -EFBIG ? "request path too long" : "out of memory");
    return EXIT_USAGE;
}

int cli_make_path(const char *prefix, const char *arg, const char *suffix, char *out, size_t outlen)
{
    char *e = curl_easy_escape(NULL, arg, (int)strnlen(arg, MAKE_PATH_ARG_MAX));
    if (e == NULL)
        return cli_oom();
    int n = snprintf(out, outlen, "%s%s%s", prefix, e, suffix ? suffix : "");
    curl_free(e);
    if (n < 0 || (size_t)n >= outlen) {
        cli_errorf("argument too long");
        return EXIT_USAGE;
    }
    return 0;
}

/* ---- answers as tables, and paging --------------------------------------- */

int cli_print_rows(const json_t *items, const cli_rows_t *r)
{
    cli_table_t t;
    int rc = cli_table_init(&t, r->ncols);
    if (rc < 0)
        return rc;
    rc = cli_table_add(&t, r->header);
    size_t i;
    const json_t *v;
    json_array_foreach(items, i, v)
    {
        if (rc < 0)
            break;
        rc = r->row(&t, v, r->arg);
    }
    if (rc == 0 && (t.nrows > 1 || r->none == NULL))
        cli_table_print(&t, stdout);
    else if (rc == 0)
        cli_errorf("%s", r->none);
    cli_table_fini(&t);
    return rc;
}

int cli_list(const cli_conn_t *c, const char *path, const char *bad, bool json, const cli_rows_t *r)
{
    json_t *resp = NULL;
    int rc = cli_request(c, "GET", path, NULL, NULL, 0, &resp);
    if (rc != 0)
        return rc;
    const json_t *items = json_object_get(resp, r->key);
    if (!json_is_array(items))
        rc = cli_unexpected(bad);
    else if (json)
        rc = cli_print_json(resp);
    else if (cli_print_rows(items, r) < 0)
        rc = cli_oom();
    json_decref(resp);
    return rc;
}

/* cli_get_pages; when !strict, one page is taken as it is even when its
 * next cursor would not advance (`device list --json` and `audit list
 * --json` print it; the server may end a page early at its scan limit). */
static int get_pages(const cli_conn_t *c, const char *base, const char *key, const cli_pages_t *pg,
                     bool strict, json_t **out)
{
    json_t *doc = NULL;
    char *cursor = pg->cursor ? strdup(pg->cursor) : NULL;
    int rc = EXIT_SERVER;
    if (pg->cursor && cursor == NULL)
        goto oom;
    for (;;) {
        cli_path_t p;
        json_t *page = NULL;
        cli_path_init(&p, base);
        cli_path_param(&p, "limit", pg->limit);
        cli_path_param(&p, "cursor", cursor);
        rc = cli_path_check(&p);
        if (rc == 0)
            rc = cli_request(c, "GET", p.b.data, NULL, NULL, 0, &page);
        cli_path_fini(&p);
        if (rc != 0)
            goto done;
        json_t *items = json_object_get(page, key);
        json_t *next = json_object_get(page, "next");
        if (!json_is_array(items) || !(json_is_null(next) || json_is_string(next))) {
            json_decref(page);
            cli_errorf("unexpected answer from the server: no %s array or next cursor", key);
            rc = EXIT_SERVER;
            goto done;
        }
        int e = 0;
        if (doc == NULL)
            doc = json_incref(page);
        else if (json_array_extend(json_object_get(doc, key), items) < 0 ||
                 json_object_set(doc, "next", next) < 0)
            e = -ENOMEM;
        if (e == 0 && json_array_size(json_object_get(doc, key)) > CLI_TABLE_ROWS_MAX)
            e = -EFBIG;
        const char *n = json_string_value(next);
        bool stuck = n && (json_array_size(items) == 0 || (cursor && strcmp(n, cursor) == 0));
        free(cursor);
        cursor = n ? strdup(n) : NULL;
        json_decref(page);
        if (e == -EFBIG) {
            cli_errorf("too many %s to list at once", key);
            rc = EXIT_SERVER;
            goto done;
        }
        if (e < 0 || (n && cursor == NULL))
            goto oom;
        if (stuck && strict) {
            rc = cli_unexpected("the next cursor does not advance");
            goto done;
        }
        if (cursor == NULL || !pg->all)
            break;
    }
    *out = doc;
    doc = NULL;
    rc = 0;
    goto done;
oom:
    rc = cli_oom();
done:
    free(cursor);
    json_decref(doc);
    return rc;
}

int cli_get_pages(const cli_conn_t *c, const char *base, const char *key, const cli_pages_t *pg,
                  json_t **out)
{
    return get_pages(c, base, key, pg, true, out);
}

void cli_more_hint(const json_t *doc, const char *what)
{
    const char *n = json_string_value(json_object_get(doc, "next"));
    if (n == NULL)
        return;
    char *c = cli_sanitize(n, 0);
    cli_errorf("more %s: use --all, or --cursor %s", what, c ? c : "?");
    free(c);
}

int cli_list_pages(const cli_conn_t *c, const char *base, const cli_pages_t *pg, bool json,
                   const cli_rows_t *r)
{
    json_t *doc = NULL;
    int rc = get_pages(c, base, r->key, pg, !json || pg->all, &doc);
    if (rc != 0)
        return rc;
    if (json && pg->all) {
        json_t *all = json_pack("{s:O,s:n}", r->key, json_object_get(doc, r->key), "next");
        rc = all ? cli_print_json(all) : cli_oom();
        json_decref(all);
    } else if (json) {
        rc = cli_print_json(doc);
    } else if (cli_print_rows(json_object_get(doc, r->key), r) < 0) {
        rc = cli_oom();
    } else {
        cli_more_hint(doc, r->key);
    }
    json_decref(doc);
    return rc;
}

/*
 * drover token / user / login (see cmd_operators.h).
 *
 * Requests go through one helper (request()) that turns a non-2xx answer
 * into "drover: <detail> (<status> <code>)" on stderr and exit status 1,
 * as the rest of the CLI does. Names and ids from the command line are
 * URL-escaped into paths. Everything the server sends that reaches the
 * terminal goes through cli_sanitize (no control characters).
 *
 * --save writes the config file the way an editor would not lose it: the
 * new text goes to FILE.tmp (created 0600, fsync'd) and is renamed over
 * FILE, so a crash leaves the old file or the new one, and the token is
 * never readable by others, even for a moment. Which file: $DROVER_CONFIG,
 * else ~/.config/drover/config (the rule drover.c reads it by).
 *
 * Single-threaded.
 */
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
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define EXIT_OK 0
#define EXIT_SERVER 1
#define EXIT_UNREACHABLE 2
#define EXIT_USAGE 64

#define PASSWORD_MIN 12 /* the server's limits (src/security/users.h) */
#define PASSWORD_MAX 1024
#define STDIN_MAX (64 * 1024)
#define CONFIG_MAX (64 * 1024)
#define PATH_MAX_BYTES 1024
#define TEN_YEARS_S (10LL * 365 * 24 * 3600)
#define CONFIG_REL_PATH "/.config/drover/config"

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

/* ---- pure helpers --------------------------------------------------------- */

int cli_ops_parse_duration(const char *s, int64_t *secs)
{
    if (s == NULL || !(*s >= '0' && *s <= '9'))
        return -EINVAL;
    int64_t v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9') {
        if (v > TEN_YEARS_S)
            return -ERANGE;
        v = v * 10 + (*p - '0');
        p++;
    }
    int64_t unit = 1;
    switch (*p) {
    case '\0':
    case 's':
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    case 'w':
        unit = 7 * 86400;
        break;
    default:
        return -EINVAL;
    }
    if (*p != '\0' && p[1] != '\0')
        return -EINVAL;
    if (v == 0)
        return -EINVAL;
    if (v > TEN_YEARS_S / unit)
        return -ERANGE;
    *secs = v * unit;
    return 0;
}

/* The key of a config line ("" for blank lines and comments). */
static size_t line_key(const char *line, size_t len, const char **key)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i == len || line[i] == '#') {
        *key = line;
        return 0;
    }
    const char *eq = memchr(line + i, '=', len - i);
    if (eq == NULL) {
        *key = line;
        return 0;
    }
    size_t end = (size_t)(eq - line);
    while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\t'))
        end--;
    *key = line + i;
    return end - i;
}

int cli_ops_config_with_token(const char *text, size_t len, const char *token, const char *server,
                              cli_buf_t *out)
{
    bool have_token = false, have_server = false;
    int rc = cli_buf_append(out, "", 0);
    size_t pos = 0;
    while (rc == 0 && pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - line) : len - pos;
        pos += n + (nl != NULL);
        const char *key;
        size_t kl = line_key(line, n, &key);
        if (kl == 5 && memcmp(key, "token", 5) == 0) {
            if (!have_token) {
                rc = cli_buf_puts(out, "token = ");
                if (rc == 0)
                    rc = cli_buf_puts(out, token);
                if (rc == 0)
                    rc = cli_buf_puts(out, "\n");
            }
            have_token = true;
            continue;
        }
        if (kl == 6 && memcmp(key, "server", 6) == 0)
            have_server = true;
        rc = cli_buf_append(out, line, n);
        if (rc == 0)
            rc = cli_buf_puts(out, "\n");
    }
    if (rc == 0 && !have_token) {
        rc = cli_buf_puts(out, "token = ");
        if (rc == 0)
            rc = cli_buf_puts(out, token);
        if (rc == 0)
            rc = cli_buf_puts(out, "\n");
    }
    if (rc == 0 && server != NULL && !have_server) {
        rc = cli_buf_puts(out, "server = ");
        if (rc == 0)
            rc = cli_buf_puts(out, server);
        if (rc == 0)
            rc = cli_buf_puts(out, "\n");
    }
    return rc;
}

/* ---- requests ----------------------------------------------------------------- */

typedef struct {
    cli_http_t *http;
    const char *server;
} conn_t;

/* One request. On a 2xx answer *out gets the parsed body (NULL when empty)
 * and 0 is returned; otherwise the failure is printed and the exit status
 * returned. */
static int request(const conn_t *c, const char *method, const char *path, const json_t *body,
                   json_t **out)
{
    char err[CLI_HTTP_ERR_MAX] = "";
    cli_http_resp_t r;
    char *text = NULL;
    if (body != NULL && (text = json_util_dump(body)) == NULL) {
        errorf("out of memory");
        return EXIT_SERVER;
    }
    int rc = cli_http_request(c->http, method, path, text, &r, err, sizeof(err));
    if (text != NULL) {
        explicit_bzero(text, strlen(text)); /* may hold a password */
        free(text);
    }
    if (rc == -EIO) {
        char *s = cli_sanitize(c->server, 200);
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
    char perr[160] = "";
    json_t *v = r.len > 0 ? json_util_parse(r.body, r.len, perr, sizeof(perr)) : NULL;
    if (r.body != NULL) {
        explicit_bzero(r.body, r.len); /* may hold a token */
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

/* prefix + escaped(arg) into out. */
static int make_path(const char *prefix, const char *arg, char *out, size_t outlen)
{
    char *e = curl_easy_escape(NULL, arg, (int)strnlen(arg, PATH_MAX_BYTES));
    if (e == NULL) {
        errorf("out of memory");
        return EXIT_SERVER;
    }
    int n = snprintf(out, outlen, "%s%s", prefix, e);
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

/* A field as safe text for a line or a cell; caller frees. */
static char *field(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
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

/* The token in an answer, checked: it goes into a terminal or a file. */
static const char *token_of(const json_t *v)
{
    const char *t = json_string_value(json_object_get(v, "token"));
    if (t == NULL || strlen(t) < 8 || strlen(t) > 256)
        return NULL;
    for (const char *p = t; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return NULL;
    return t;
}

/* ---- passwords -------------------------------------------------------------------- */

/* One line from the terminal with echo off. */
static int tty_line(int fd, const char *prompt, char *buf, size_t cap, size_t *len)
{
    struct termios old, quiet;
    if (write(fd, prompt, strlen(prompt)) < 0 || tcgetattr(fd, &old) < 0)
        return -errno;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0)
        return -errno;
    size_t n = 0;
    int rc = 0;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            break;
        }
        if (r == 0 || ch == '\n')
            break;
        if (n + 1 >= cap) {
            rc = -EFBIG; /* keep reading to the end of the line */
            continue;
        }
        buf[n++] = ch;
    }
    tcsetattr(fd, TCSAFLUSH, &old);
    ssize_t w = write(fd, "\n", 1);
    (void)w;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    if (rc < 0) {
        explicit_bzero(buf, cap);
        return rc;
    }
    *len = n;
    return 0;
}

/* The first line of stdin (without its line end). */
static int stdin_line(char *buf, size_t cap, size_t *len)
{
    cli_buf_t b;
    cli_buf_init(&b, STDIN_MAX);
    char chunk[4096];
    int rc = 0;
    for (;;) {
        ssize_t n = read(0, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        rc = cli_buf_append(&b, chunk, (size_t)n);
        if (rc < 0 || memchr(chunk, '\n', (size_t)n) != NULL)
            break;
    }
    explicit_bzero(chunk, sizeof(chunk));
    size_t n = 0;
    if (rc == 0 && b.data != NULL) {
        const char *nl = memchr(b.data, '\n', b.len);
        n = nl != NULL ? (size_t)(nl - b.data) : b.len;
        if (n > 0 && b.data[n - 1] == '\r')
            n--;
        if (n + 1 > cap)
            rc = -EFBIG;
        else
            memcpy(buf, b.data, n);
    }
    if (b.data != NULL)
        explicit_bzero(b.data, b.len);
    cli_buf_fini(&b);
    if (rc < 0)
        return rc;
    buf[n] = '\0';
    *len = n;
    return 0;
}

/* A password into buf (PASSWORD_MAX + 2 bytes): from stdin, or asked on
 * the terminal (twice when confirm). min is the shortest accepted. */
static int read_password(const char *what, const cli_ops_opts_t *o, bool confirm, size_t min,
                         char *buf, size_t cap, size_t *len)
{
    int rc;
    if (o->password_stdin) {
        rc = stdin_line(buf, cap, len);
        if (rc == -EFBIG)
            return usage(what, "the password is longer than %d bytes", PASSWORD_MAX);
        if (rc < 0) {
            errorf("cannot read the password from stdin: %s", strerror(-rc));
            return EXIT_USAGE;
        }
    } else {
        int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
            return usage(what, "no terminal to ask for the password on; use --password-stdin");
        rc = tty_line(fd, confirm ? "New password: " : "Password: ", buf, cap, len);
        if (rc == 0 && confirm) {
            char again[PASSWORD_MAX + 2];
            size_t alen = 0;
            rc = tty_line(fd, "Again: ", again, sizeof(again), &alen);
            if (rc == 0 && (alen != *len || memcmp(again, buf, alen) != 0))
                rc = -EAGAIN;
            explicit_bzero(again, sizeof(again));
        }
        close(fd);
        if (rc == -EAGAIN) {
            explicit_bzero(buf, cap);
            return usage(what, "the passwords do not match");
        }
        if (rc == -EFBIG)
            return usage(what, "the password is longer than %d bytes", PASSWORD_MAX);
        if (rc < 0) {
            errorf("cannot read the password from the terminal: %s", strerror(-rc));
            return EXIT_USAGE;
        }
    }
    if (*len < min || *len > PASSWORD_MAX) {
        explicit_bzero(buf, cap);
        if (min > 1)
            return usage(what, "a password has %zu to %d bytes", min, PASSWORD_MAX);
        return usage(what, "the password is empty");
    }
    return 0;
}

/* ---- arguments ------------------------------------------------------------------------- */

static bool role_ok(const char *r)
{
    return r != NULL &&
           (strcmp(r, "admin") == 0 || strcmp(r, "operator") == 0 || strcmp(r, "viewer") == 0);
}

static int bad_role(const char *what, const char *role)
{
    if (role == NULL)
        return usage(what, "--role is required: admin, operator or viewer");
    char *s = cli_sanitize(role, 40);
    int rc = usage(what, "unknown role '%s': use admin, operator or viewer", s ? s : "?");
    free(s);
    return rc;
}

static int bad_name(const char *what, const char *name)
{
    char *s = cli_sanitize(name, 40);
    int rc =
        usage(what, "invalid user name '%s': 1 to 64 characters of A-Z a-z 0-9 . _ -", s ? s : "?");
    free(s);
    return rc;
}

static int expires_arg(const char *what, const cli_ops_opts_t *o, json_t *body)
{
    if (o->expires_in == NULL)
        return 0;
    int64_t secs;
    if (cli_ops_parse_duration(o->expires_in, &secs) < 0 || secs < 60) {
        char *s = cli_sanitize(o->expires_in, 40);
        int rc = usage(what,
                       "--expires-in wants a lifetime from 60s to 10 years: N followed by "
                       "s, m, h, d or w (e.g. 12h, 30d); got '%s'",
                       s ? s : "?");
        free(s);
        return rc;
    }
    if (json_object_set_new(body, "expires_in_s", json_integer(secs)) < 0) {
        errorf("out of memory");
        return EXIT_SERVER;
    }
    return 0;
}

/* ---- token ------------------------------------------------------------------------------- */

static int token_create(const cli_ops_opts_t *o, cli_ops_connect_fn connect, void *ctx)
{
    const char *what = "token create";
    size_t nl = strlen(o->arg);
    if (nl == 0 || nl > 64)
        return usage(what, "a token name has 1 to 64 bytes");
    for (size_t i = 0; i < nl; i++)
        if ((unsigned char)o->arg[i] < 0x20 || o->arg[i] == 0x7f)
            return usage(what, "a token name has no control characters");
    if (!role_ok(o->role))
        return bad_role(what, o->role);
    json_t *body = json_pack("{s:s, s:s}", "name", o->arg, "role", o->role);
    json_t *resp = NULL;
    int rc;
    if (body == NULL) {
        errorf("the token name is not valid UTF-8, or out of memory");
        return EXIT_USAGE;
    }
    if ((rc = expires_arg(what, o, body)) != 0)
        goto done;
    conn_t c;
    if ((rc = connect(ctx, true, &c.http, &c.server)) != 0)
        goto done;
    if ((rc = request(&c, "POST", "/api/v1/tokens", body, &resp)) != 0)
        goto done;
    const char *tok = token_of(resp);
    if (tok == NULL) {
        errorf("unexpected answer from the server: no token");
        rc = EXIT_SERVER;
        goto done;
    }
    if (o->json) {
        rc = print_pretty(resp);
    } else {
        char expires[CLI_TIME_MAX];
        time_text(json_object_get(resp, "expires_at"), "never", expires, sizeof(expires));
        char *id = field(resp, "id"), *name = field(resp, "name"), *role = field(resp, "role");
        printf("id:       %s\nname:     %s\nrole:     %s\nexpires:  %s\ntoken:    %s\n",
               id ? id : "?", name ? name : "?", role ? role : "?", expires, tok);
        free(id);
        free(name);
        free(role);
    }
    fflush(stdout);
    fputs("drover: warning: the token is shown only once; store it now\n", stderr);
done:
    json_decref(resp);
    json_decref(body);
    return rc;
}

static int token_list(const cli_ops_opts_t *o, cli_ops_connect_fn connect, void *ctx)
{
    conn_t c;
    json_t *resp = NULL;
    int rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "GET", "/api/v1/tokens", NULL, &resp);
    if (rc != 0)
        return rc;
    const json_t *tokens = json_object_get(resp, "tokens");
    if (!json_is_array(tokens)) {
        json_decref(resp);
        errorf("unexpected answer from the server: no token list");
        return EXIT_SERVER;
    }
    if (o->json) {
        rc = print_pretty(resp);
        json_decref(resp);
        return rc;
    }
    cli_table_t t;
    rc = cli_table_init(&t, 5);
    const char *head[] = {"ID", "NAME", "ROLE", "CREATED", "EXPIRES"};
    if (rc == 0)
        rc = cli_table_add(&t, head);
    size_t i;
    const json_t *v;
    json_array_foreach(tokens, i, v)
    {
        if (rc < 0)
            break;
        char created[CLI_TIME_MAX], expires[CLI_TIME_MAX];
        time_text(json_object_get(v, "created_at"), "-", created, sizeof(created));
        time_text(json_object_get(v, "expires_at"), "never", expires, sizeof(expires));
        char *id = field(v, "id"), *name = field(v, "name"), *role = field(v, "role");
        const char *row[] = {id, name, role, created, expires};
        rc = cli_table_add(&t, row);
        free(id);
        free(name);
        free(role);
    }
    if (rc == 0)
        cli_table_print(&t, stdout);
    cli_table_fini(&t);
    json_decref(resp);
    if (rc < 0) {
        errorf("out of memory");
        return EXIT_SERVER;
    }
    return EXIT_OK;
}

static int token_rm(const cli_ops_opts_t *o, cli_ops_connect_fn connect, void *ctx)
{
    if (!util_id_valid(o->arg, strlen(o->arg)))
        return usage("token rm", "invalid token id (the ID column of `drover token list`)");
    char path[PATH_MAX_BYTES];
    int rc = make_path("/api/v1/tokens/", o->arg, path, sizeof(path));
    conn_t c;
    json_t *resp = NULL;
    if (rc == 0)
        rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "DELETE", path, NULL, &resp);
    json_decref(resp);
    if (rc == 0 && !o->json)
        printf("revoked token %s\n", o->arg);
    return rc;
}

/* ---- user ---------------------------------------------------------------------------------- */

static int print_user(const cli_ops_opts_t *o, const json_t *u, const char *verb)
{
    if (o->json)
        return print_pretty(u);
    char *name = field(u, "name"), *role = field(u, "role");
    printf("%s user %s (role %s%s)\n", verb, name ? name : "?", role ? role : "?",
           json_is_true(json_object_get(u, "disabled")) ? ", disabled" : "");
    free(name);
    free(role);
    return EXIT_OK;
}

static int user_add(const cli_ops_opts_t *o, cli_ops_connect_fn connect, void *ctx)
{
    const char *what = "user add";
    if (!util_id_valid(o->arg, strlen(o->arg)))
        return bad_name(what, o->arg);
    if (!role_ok(o->role))
        return bad_role(what, o->role);
    char pw[PASSWORD_MAX + 2];
    size_t len = 0;
    int rc = read_password(what, o, true, PASSWORD_MIN, pw, sizeof(pw), &len);
    if (rc != 0)
        return rc;
    json_t *resp = NULL;
    json_t *body =
        json_pack("{s:s, s:s, s:s%}", "name", o->arg, "role", o->role, "password", pw, len);
    explicit_bzero(pw, sizeof(pw));
    if (body == NULL) {
        errorf("the password is not valid UTF-8");
        return EXIT_USAGE;
    }
    conn_t c;
    rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "POST", "/api/v1/users", body, &resp);
    if (rc == 0)
        rc = print_user(o, resp, "added");
    json_decref(resp);
    json_decref(body);
    return rc;
}

static int user_list(const cli_ops_opts_t *o, cli_ops_connect_fn connect, void *ctx)
{
    conn_t c;
    json_t *resp = NULL;
    int rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "GET", "/api/v1/users", NULL, &resp);
    if (rc != 0)
        return rc;
    const json_t *users = json_object_get(resp, "users");
    if (!json_is_array(users)) {
        json_decref(resp);
        errorf("unexpected answer from the server: no user list");
        return EXIT_SERVER;
    }
    if (o->json) {
        rc = print_pretty(resp);
        json_decref(resp);
        return rc;
    }
    cli_table_t t;
    rc = cli_table_init(&t, 4);
    const char *head[] = {"NAME", "ROLE", "DISABLED", "CREATED"};
    if (rc == 0)
        rc = cli_table_add(&t, head);
    size_t i;
    const json_t *v;
    json_array_foreach(users, i, v)
    {
        if (rc < 0)
            break;
        char created[CLI_TIME_MAX];
        time_text(json_object_get(v, "created_at"), "-", created, sizeof(created));
        char *name = field(v, "name"), *role = field(v, "role");
        const char *row[] = {name, role,
                             json_is_true(json_object_get(v, "disabled")) ? "yes" : "no", created};
        rc = cli_table_add(&t, row);
        free(name);
        free(role);
    }
    if (rc == 0)
        cli_table_print(&t, stdout);
    cli_table_fini(&t);
    json_decref(resp);
    if (rc < 0) {
        errorf("out of memory");
        return EXIT_SERVER;
    }
    return EXIT_OK;
}

static int user_rm(const cli_ops_opts_t *o, cli_ops_connect_fn connect, void *ctx)
{
    if (!util_id_valid(o->arg, strlen(o->arg)))
        return bad_name("user rm", o->arg);
    char path[PATH_MAX_BYTES];
    int rc = make_path("/api/v1/users/", o->arg, path, sizeof(path));
    conn_t c;
    json_t *resp = NULL;
    if (rc == 0)
        rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "DELETE", path, NULL, &resp);
    json_decref(resp);
    if (rc == 0 && !o->json)
        printf("deleted user %s\n", o->arg);
    return rc;
}

static int user_set(const cli_ops_opts_t *o, cli_ops_connect_fn connect, void *ctx)
{
    const char *what = "user set";
    if (!util_id_valid(o->arg, strlen(o->arg)))
        return bad_name(what, o->arg);
    if (o->disable && o->enable)
        return usage(what, "--disable and --enable contradict each other");
    if (o->role == NULL && !o->disable && !o->enable && !o->password_stdin)
        return usage(what, "nothing to change: give --role, --disable, --enable or "
                           "--password-stdin");
    if (o->role != NULL && !role_ok(o->role))
        return bad_role(what, o->role);
    json_t *body = json_object();
    json_t *resp = NULL;
    char path[PATH_MAX_BYTES];
    int rc = EXIT_SERVER;
    if (body == NULL)
        goto oom;
    if (o->role != NULL && json_object_set_new(body, "role", json_string(o->role)) < 0)
        goto oom;
    if ((o->disable || o->enable) &&
        json_object_set_new(body, "disabled", json_boolean(o->disable)) < 0)
        goto oom;
    if (o->password_stdin) {
        char pw[PASSWORD_MAX + 2];
        size_t len = 0;
        rc = read_password(what, o, false, PASSWORD_MIN, pw, sizeof(pw), &len);
        if (rc != 0)
            goto done;
        json_t *s = json_stringn(pw, len);
        explicit_bzero(pw, sizeof(pw));
        if (s == NULL) {
            rc = usage(what, "the password is not valid UTF-8");
            goto done;
        }
        if (json_object_set_new(body, "password", s) < 0)
            goto oom;
    }
    if ((rc = make_path("/api/v1/users/", o->arg, path, sizeof(path))) != 0)
        goto done;
    conn_t c;
    rc = connect(ctx, true, &c.http, &c.server);
    if (rc == 0)
        rc = request(&c, "PATCH", path, body, &resp);
    if (rc == 0)
        rc = print_user(o, resp, "updated");
    goto done;
oom:
    errorf("out of memory");
    rc = EXIT_SERVER;
done:
    json_decref(resp);
    json_decref(body);
    return rc;
}

/* ---- login ------------------------------------------------------------------------------------
 */

static int config_path(char *out, size_t len)
{
    const char *env = getenv("DROVER_CONFIG");
    const char *home = getenv("HOME");
    int n;
    if (env != NULL && *env) {
        n = snprintf(out, len, "%s", env);
    } else if (home != NULL && *home) {
        /* ~/.config and ~/.config/drover, private */
        n = snprintf(out, len, "%s/.config", home);
        if (n > 0 && (size_t)n < len && mkdir(out, 0700) < 0 && errno != EEXIST)
            return -errno;
        n = snprintf(out, len, "%s/.config/drover", home);
        if (n > 0 && (size_t)n < len && mkdir(out, 0700) < 0 && errno != EEXIST)
            return -errno;
        n = snprintf(out, len, "%s%s", home, CONFIG_REL_PATH);
    } else {
        return -ENOENT;
    }
    return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

static int read_small(const char *path, cli_buf_t *b)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    char chunk[4096];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : 0;
            break;
        }
        if ((rc = cli_buf_append(b, chunk, (size_t)n)) < 0)
            break;
    }
    explicit_bzero(chunk, sizeof(chunk));
    close(fd);
    return rc;
}

static int write_file(const char *path, const char *data, size_t len)
{
    char tmp[4200];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    int rc = 0;
    while (rc == 0 && len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            rc = -errno;
        else {
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

/* Puts the token into the config file; *where gets its path. */
static int save_token(const char *token, const char *server, char *where, size_t wlen)
{
    int rc = config_path(where, wlen);
    if (rc < 0)
        return rc;
    cli_buf_t old, out;
    cli_buf_init(&old, CONFIG_MAX);
    cli_buf_init(&out, CONFIG_MAX + 4096);
    rc = read_small(where, &old);
    if (rc == 0)
        rc = cli_ops_config_with_token(old.data != NULL ? old.data : "", old.len, token, server,
                                       &out);
    if (rc == 0)
        rc = write_file(where, out.data, out.len);
    if (old.data != NULL)
        explicit_bzero(old.data, old.len);
    if (out.data != NULL)
        explicit_bzero(out.data, out.len);
    cli_buf_fini(&old);
    cli_buf_fini(&out);
    return rc;
}

static int login(const cli_ops_opts_t *o, cli_ops_connect_fn connect, void *ctx)
{
    const char *what = "login";
    if (!util_id_valid(o->arg, strlen(o->arg)))
        return bad_name(what, o->arg);
    json_t *body = json_pack("{s:s}", "name", o->arg);
    json_t *resp = NULL;
    int rc = EXIT_SERVER;
    if (body == NULL) {
        errorf("out of memory");
        return EXIT_SERVER;
    }
    if ((rc = expires_arg(what, o, body)) != 0)
        goto done;
    char pw[PASSWORD_MAX + 2];
    size_t len = 0;
    if ((rc = read_password(what, o, false, 1, pw, sizeof(pw), &len)) != 0)
        goto done;
    json_t *s = json_stringn(pw, len);
    explicit_bzero(pw, sizeof(pw));
    if (s == NULL || json_object_set_new(body, "password", s) < 0) {
        rc = usage(what, "the password is not valid UTF-8");
        goto done;
    }
    conn_t c;
    if ((rc = connect(ctx, false, &c.http, &c.server)) != 0)
        goto done;
    if ((rc = request(&c, "POST", "/api/v1/login", body, &resp)) != 0)
        goto done;
    const char *tok = token_of(resp);
    if (tok == NULL) {
        errorf("unexpected answer from the server: no token");
        rc = EXIT_SERVER;
        goto done;
    }
    char until[CLI_TIME_MAX];
    time_text(json_object_get(resp, "expires_at"), "never", until, sizeof(until));
    char *role = field(resp, "role");
    if (o->save) {
        char where[4096];
        int src = save_token(tok, c.server, where, sizeof(where));
        if (src < 0) {
            errorf("cannot save the token in the config file: %s", strerror(-src));
            rc = EXIT_USAGE;
        } else {
            fprintf(stderr, "drover: logged in as %s (role %s) until %s; token saved to %s\n",
                    o->arg, role ? role : "?", until, where);
        }
    } else if (o->json) {
        rc = print_pretty(resp);
    } else {
        printf("%s\n", tok);
        fflush(stdout);
        fprintf(stderr,
                "drover: logged in as %s (role %s) until %s; the token is shown only once\n",
                o->arg, role ? role : "?", until);
    }
    free(role);
done:
    if (resp != NULL) {
        json_t *t = json_object_get(resp, "token");
        if (json_is_string(t))
            explicit_bzero((char *)json_string_value(t), json_string_length(t));
    }
    json_decref(resp);
    json_decref(body);
    return rc;
}

/* ---- dispatch
 * ------------------------------------------------------------------------------------ */

int cli_ops_run(const char *what, const cli_ops_opts_t *o, cli_ops_connect_fn connect, void *ctx)
{
    static const struct {
        const char *what;
        bool needs_arg;
        int (*fn)(const cli_ops_opts_t *o, cli_ops_connect_fn connect, void *ctx);
    } cmds[] = {
        {"token create", true, token_create}, {"token list", false, token_list},
        {"token rm", true, token_rm},         {"user add", true, user_add},
        {"user list", false, user_list},      {"user rm", true, user_rm},
        {"user set", true, user_set},         {"login", true, login},
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

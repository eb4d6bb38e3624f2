/*
 * drover token / user / login (see cmd_operators.h).
 *
 * Requests go through cli_request() (cli_common.c), which turns a non-2xx
 * answer into "drover: <detail> (<status> <code>)" on stderr and exit
 * status 1, as the rest of the CLI does. Names and ids from the command
 * line are URL-escaped into paths. Everything the server sends that
 * reaches the terminal goes through cli_sanitize (no control characters).
 *
 * --save writes the config file the way an editor would not lose it
 * (cli_write_atomic): the new text goes to FILE.tmp (created 0600,
 * fsync'd) and is renamed over FILE, so a crash leaves the old file or the
 * new one, and the token is never readable by others, even for a moment.
 * Which file: cli_config_path(), the rule drover.c reads it by.
 *
 * Single-threaded.
 */
#include "cmd_operators.h"

#include "cli_common.h"

#include "common/json.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define PASSWORD_MIN 12 /* the server's limits (src/security/users.h) */
#define PASSWORD_MAX 1024
#define STDIN_MAX (64 * 1024)
#define CONFIG_MAX (64 * 1024)
#define PATH_MAX_BYTES 1024 /* a path with a name or id in it */
#define TEN_YEARS_S (10LL * 365 * 24 * 3600)

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

/* The connection with this family's wording of failures. */
static int connect_ops(cli_connect_fn connect, void *ctx, bool with_token, cli_conn_t *c)
{
    int rc = connect(ctx, with_token, c);
    c->flags = 0;
    return rc;
}

/* A JSON body (may hold a password) sent, the answer into *out. */
static int request(const cli_conn_t *c, const char *method, const char *path, const json_t *body,
                   json_t **out)
{
    return cli_request_json(c, method, path, body, NULL, 0, out);
}

/* Connects, POSTs body to path and finds the token the answer carries
 * (`token create`, `login`): 0 with *resp and *tok (inside it), or an
 * exit status. */
static int post_for_token(cli_connect_fn connect, void *ctx, bool with_token, const char *path,
                          const json_t *body, cli_conn_t *c, json_t **resp, const char **tok)
{
    int rc = connect_ops(connect, ctx, with_token, c);
    if (rc == 0)
        rc = request(c, "POST", path, body, resp);
    if (rc == 0 && (*tok = cli_secret_of(*resp, "token")) == NULL)
        rc = cli_unexpected("no token");
    return rc;
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
    int rc = cli_read_fd(STDIN_FILENO, &b, true);
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
    cli_buf_wipe(&b);
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
            return cli_usage(what, "the password is longer than %d bytes", PASSWORD_MAX);
        if (rc < 0) {
            cli_errorf("cannot read the password from stdin: %s", strerror(-rc));
            return EXIT_USAGE;
        }
    } else {
        int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
            return cli_usage(what, "no terminal to ask for the password on; use --password-stdin");
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
            return cli_usage(what, "the passwords do not match");
        }
        if (rc == -EFBIG)
            return cli_usage(what, "the password is longer than %d bytes", PASSWORD_MAX);
        if (rc < 0) {
            cli_errorf("cannot read the password from the terminal: %s", strerror(-rc));
            return EXIT_USAGE;
        }
    }
    if (*len < min || *len > PASSWORD_MAX) {
        explicit_bzero(buf, cap);
        if (min > 1)
            return cli_usage(what, "a password has %zu to %d bytes", min, PASSWORD_MAX);
        return cli_usage(what, "the password is empty");
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
        return cli_usage(what, "--role is required: admin, operator or viewer");
    char *s = cli_sanitize(role, 40);
    int rc = cli_usage(what, "unknown role '%s': use admin, operator or viewer", s ? s : "?");
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
        int rc = cli_usage(what,
                           "--expires-in wants a lifetime from 60s to 10 years: N followed by "
                           "s, m, h, d or w (e.g. 12h, 30d); got '%s'",
                           s ? s : "?");
        free(s);
        return rc;
    }
    if (json_object_set_new(body, "expires_in_s", json_integer(secs)) < 0)
        return cli_oom();
    return 0;
}

/* ---- token ------------------------------------------------------------------------------- */

static int token_create(const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx)
{
    const char *what = "token create";
    size_t nl = strlen(o->arg);
    if (nl == 0 || nl > 64)
        return cli_usage(what, "a token name has 1 to 64 bytes");
    for (size_t i = 0; i < nl; i++)
        if ((unsigned char)o->arg[i] < 0x20 || o->arg[i] == 0x7f)
            return cli_usage(what, "a token name has no control characters");
    if (!role_ok(o->role))
        return bad_role(what, o->role);
    json_t *body = json_pack("{s:s, s:s}", "name", o->arg, "role", o->role);
    json_t *resp = NULL;
    int rc;
    if (body == NULL) {
        cli_errorf("the token name is not valid UTF-8, or out of memory");
        return EXIT_USAGE;
    }
    if ((rc = expires_arg(what, o, body)) != 0)
        goto done;
    cli_conn_t c;
    const char *tok = NULL;
    if ((rc = post_for_token(connect, ctx, true, "/api/v1/tokens", body, &c, &resp, &tok)) != 0)
        goto done;
    if (o->json) {
        rc = cli_print_json(resp);
    } else {
        char expires[CLI_TIME_MAX];
        cli_time_cell(json_object_get(resp, "expires_at"), false, "never", expires,
                      sizeof(expires));
        char *id = cli_field_text(resp, "id"), *name = cli_field_text(resp, "name"),
             *role = cli_field_text(resp, "role");
        printf("id:       %s\nname:     %s\nrole:     %s\nexpires:  %s\ntoken:    %s\n",
               id ? id : "?", name ? name : "?", role ? role : "?", expires, tok);
        free(id);
        free(name);
        free(role);
    }
    cli_warn_shown_once("token");
done:
    json_decref(resp);
    json_decref(body);
    return rc;
}

static int token_row(cli_table_t *t, const json_t *v, void *arg)
{
    (void)arg;
    char created[CLI_TIME_MAX], expires[CLI_TIME_MAX];
    cli_time_cell(json_object_get(v, "created_at"), false, "-", created, sizeof(created));
    cli_time_cell(json_object_get(v, "expires_at"), false, "never", expires, sizeof(expires));
    char *id = cli_field_text(v, "id"), *name = cli_field_text(v, "name"),
         *role = cli_field_text(v, "role");
    const char *row[] = {id, name, role, created, expires};
    int rc = cli_table_add(t, row);
    free(id);
    free(name);
    free(role);
    return rc;
}

static int token_list(const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx)
{
    static const char *const head[] = {"ID", "NAME", "ROLE", "CREATED", "EXPIRES"};
    const cli_rows_t rows = {.key = "tokens", .ncols = 5, .header = head, .row = token_row};
    cli_conn_t c;
    int rc = connect_ops(connect, ctx, true, &c);
    if (rc == 0)
        rc = cli_list(&c, "/api/v1/tokens", "no token list", o->json, &rows);
    return rc;
}

/* DELETE prefix + escaped(o->arg); then done says what was deleted. */
static int delete_one(const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx,
                      const char *prefix, const char *done)
{
    char path[PATH_MAX_BYTES];
    int rc = cli_make_path(prefix, o->arg, NULL, path, sizeof(path));
    cli_conn_t c;
    json_t *resp = NULL;
    if (rc == 0)
        rc = connect_ops(connect, ctx, true, &c);
    if (rc == 0)
        rc = request(&c, "DELETE", path, NULL, &resp);
    json_decref(resp);
    if (rc == 0 && !o->json)
        printf("%s %s\n", done, o->arg);
    return rc;
}

static int token_rm(const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx)
{
    if (!util_id_valid(o->arg, strlen(o->arg)))
        return cli_usage("token rm", "invalid token id (the ID column of `drover token list`)");
    return delete_one(o, connect, ctx, "/api/v1/tokens/", "revoked token");
}

/* ---- user ---------------------------------------------------------------------------------- */

static int print_user(const cli_ops_opts_t *o, const json_t *u, const char *verb)
{
    if (o->json)
        return cli_print_json(u);
    char *name = cli_field_text(u, "name"), *role = cli_field_text(u, "role");
    printf("%s user %s (role %s%s)\n", verb, name ? name : "?", role ? role : "?",
           json_is_true(json_object_get(u, "disabled")) ? ", disabled" : "");
    free(name);
    free(role);
    return EXIT_OK;
}

static int user_add(const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx)
{
    const char *what = "user add";
    int rc = cli_check_id(what, "user name", o->arg);
    if (rc != 0)
        return rc;
    if (!role_ok(o->role))
        return bad_role(what, o->role);
    char pw[PASSWORD_MAX + 2];
    size_t len = 0;
    rc = read_password(what, o, true, PASSWORD_MIN, pw, sizeof(pw), &len);
    if (rc != 0)
        return rc;
    json_t *resp = NULL;
    json_t *body =
        json_pack("{s:s, s:s, s:s%}", "name", o->arg, "role", o->role, "password", pw, len);
    explicit_bzero(pw, sizeof(pw));
    if (body == NULL) {
        cli_errorf("the password is not valid UTF-8");
        return EXIT_USAGE;
    }
    cli_conn_t c;
    rc = connect_ops(connect, ctx, true, &c);
    if (rc == 0)
        rc = request(&c, "POST", "/api/v1/users", body, &resp);
    if (rc == 0)
        rc = print_user(o, resp, "added");
    json_decref(resp);
    json_decref(body);
    return rc;
}

static int user_row(cli_table_t *t, const json_t *v, void *arg)
{
    (void)arg;
    char created[CLI_TIME_MAX];
    cli_time_cell(json_object_get(v, "created_at"), false, "-", created, sizeof(created));
    char *name = cli_field_text(v, "name"), *role = cli_field_text(v, "role");
    const char *row[] = {name, role, json_is_true(json_object_get(v, "disabled")) ? "yes" : "no",
                         created};
    int rc = cli_table_add(t, row);
    free(name);
    free(role);
    return rc;
}

static int user_list(const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx)
{
    static const char *const head[] = {"NAME", "ROLE", "DISABLED", "CREATED"};
    const cli_rows_t rows = {.key = "users", .ncols = 4, .header = head, .row = user_row};
    cli_conn_t c;
    int rc = connect_ops(connect, ctx, true, &c);
    if (rc == 0)
        rc = cli_list(&c, "/api/v1/users", "no user list", o->json, &rows);
    return rc;
}

static int user_rm(const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx)
{
    int rc = cli_check_id("user rm", "user name", o->arg);
    if (rc != 0)
        return rc;
    return delete_one(o, connect, ctx, "/api/v1/users/", "deleted user");
}

static int user_set(const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx)
{
    const char *what = "user set";
    int rc = cli_check_id(what, "user name", o->arg);
    if (rc != 0)
        return rc;
    if (o->disable && o->enable)
        return cli_usage(what, "--disable and --enable contradict each other");
    if (o->role == NULL && !o->disable && !o->enable && !o->password_stdin)
        return cli_usage(what, "nothing to change: give --role, --disable, --enable or "
                               "--password-stdin");
    if (o->role != NULL && !role_ok(o->role))
        return bad_role(what, o->role);
    json_t *body = json_object();
    json_t *resp = NULL;
    char path[PATH_MAX_BYTES];
    rc = EXIT_SERVER;
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
            rc = cli_usage(what, "the password is not valid UTF-8");
            goto done;
        }
        if (json_object_set_new(body, "password", s) < 0)
            goto oom;
    }
    if ((rc = cli_make_path("/api/v1/users/", o->arg, NULL, path, sizeof(path))) != 0)
        goto done;
    cli_conn_t c;
    rc = connect_ops(connect, ctx, true, &c);
    if (rc == 0)
        rc = request(&c, "PATCH", path, body, &resp);
    if (rc == 0)
        rc = print_user(o, resp, "updated");
    goto done;
oom:
    rc = cli_oom();
done:
    json_decref(resp);
    json_decref(body);
    return rc;
}

/* ---- login ------------------------------------------------------------------------------------
 */

/* Puts the token into the config file; *where gets its path. */
static int save_token(const char *token, const char *server, char *where, size_t wlen)
{
    int rc = cli_config_path(where, wlen, true);
    if (rc < 0)
        return rc;
    cli_buf_t old, out;
    cli_buf_init(&old, CONFIG_MAX);
    cli_buf_init(&out, CONFIG_MAX + 4096);
    rc = cli_read_path(where, &old);
    if (rc == -ENOENT)
        rc = 0;
    if (rc == 0)
        rc = cli_ops_config_with_token(old.data != NULL ? old.data : "", old.len, token, server,
                                       &out);
    if (rc == 0)
        rc = cli_write_atomic(where, out.data, out.len, 0600);
    cli_buf_wipe(&old);
    cli_buf_wipe(&out);
    return rc;
}

static int login(const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx)
{
    const char *what = "login";
    int rc = cli_check_id(what, "user name", o->arg);
    if (rc != 0)
        return rc;
    json_t *body = json_pack("{s:s}", "name", o->arg);
    json_t *resp = NULL;
    if (body == NULL)
        return cli_oom();
    if ((rc = expires_arg(what, o, body)) != 0)
        goto done;
    char pw[PASSWORD_MAX + 2];
    size_t len = 0;
    if ((rc = read_password(what, o, false, 1, pw, sizeof(pw), &len)) != 0)
        goto done;
    json_t *s = json_stringn(pw, len);
    explicit_bzero(pw, sizeof(pw));
    if (s == NULL || json_object_set_new(body, "password", s) < 0) {
        rc = cli_usage(what, "the password is not valid UTF-8");
        goto done;
    }
    cli_conn_t c;
    const char *tok = NULL;
    if ((rc = post_for_token(connect, ctx, false, "/api/v1/login", body, &c, &resp, &tok)) != 0)
        goto done;
    char until[CLI_TIME_MAX];
    cli_time_cell(json_object_get(resp, "expires_at"), false, "never", until, sizeof(until));
    char *role = cli_field_text(resp, "role");
    if (o->save) {
        char where[4096];
        int src = save_token(tok, c.server, where, sizeof(where));
        if (src < 0) {
            cli_errorf("cannot save the token in the config file: %s", strerror(-src));
            rc = EXIT_USAGE;
        } else {
            fprintf(stderr, "drover: logged in as %s (role %s) until %s; token saved to %s\n",
                    o->arg, role ? role : "?", until, where);
        }
    } else if (o->json) {
        rc = cli_print_json(resp);
    } else {
        printf("%s\n", tok);
        fflush(stdout);
        fprintf(stderr,
                "drover: logged in as %s (role %s) until %s; the token is shown only once\n",
                o->arg, role ? role : "?", until);
    }
    free(role);
done:
    cli_json_wipe(resp, "token");
    json_decref(resp);
    json_decref(body);
    return rc;
}

/* ---- dispatch
 * ------------------------------------------------------------------------------------ */

int cli_ops_run(const char *what, const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx)
{
    static const struct {
        cli_subcmd_t name;
        int (*fn)(const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx);
    } cmds[] = {
        {{"token create", true}, token_create}, {{"token list", false}, token_list},
        {{"token rm", true}, token_rm},         {{"user add", true}, user_add},
        {{"user list", false}, user_list},      {{"user rm", true}, user_rm},
        {{"user set", true}, user_set},         {{"login", true}, login},
    };
    int i = cli_subcmd_find(cmds, ARRAY_SIZE(cmds), sizeof(cmds[0]), what, o->arg != NULL);
    return i < 0 ? EXIT_USAGE : cmds[i].fn(o, connect, ctx);
}

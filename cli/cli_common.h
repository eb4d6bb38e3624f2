/*
 * What every command family of the CLI shares once it does I/O: the exit
 * statuses, "drover: ..." messages on stderr, the connection to droverd and
 * one request function that reports every failure the same way, request
 * paths with escaped pieces, paging with --cursor and --all, printing JSON
 * or a table of an answer's array, and reading and writing files. drover.c
 * (device, telemetry, twin, cmd, bulk, job), cmd_audit.c, cmd_operators.c
 * and cmd_pki.c all use these; the pure helpers they build on are in
 * cli_util.h.
 *
 * Single-threaded. Text from the server reaches the terminal only through
 * cli_sanitize() or the table printer; secrets read or received here are
 * wiped from the buffers that held them.
 */
#ifndef DROVER_CLI_COMMON_H
#define DROVER_CLI_COMMON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "cli_http.h"
#include "cli_util.h"

/* ---- exit statuses and messages ------------------------------------------- */

#define EXIT_OK 0
#define EXIT_SERVER 1      /* the server answered with an error, or nonsense */
#define EXIT_UNREACHABLE 2 /* the server could not be reached */
#define EXIT_USAGE 64

/* "drover: " + the message + '\n' on stderr, after flushing stdout so the
 * two streams keep their order on one terminal. */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "out of memory"; returns EXIT_SERVER. */
int cli_oom(void);

/* "unexpected answer from the server: <what>"; returns EXIT_SERVER. */
int cli_unexpected(const char *what);

/* A usage error of a command that has no synopsis at hand: the message,
 * then "Run `drover help <what>` for details."; returns EXIT_USAGE. */
int cli_usage(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Unless id is a valid id (util_id_valid), the usage error
 * "invalid <kind> '<id>': 1 to 64 characters of ..."; else 0. */
int cli_check_id(const char *what, const char *kind, const char *id);

/* One subcommand of a family (cmd_operators.c, cmd_pki.c): its command
 * path and whether it needs the positional argument. Each entry of a
 * family's dispatch table starts with one. */
typedef struct {
    const char *what;
    bool needs_arg;
} cli_subcmd_t;

/* The index of what among the n entries of table, each stride bytes and
 * starting with a cli_subcmd_t; or -1 with the reason printed (a missing
 * argument, an unknown command), the exit status being EXIT_USAGE. */
int cli_subcmd_find(const void *table, size_t n, size_t stride, const char *what, bool have_arg);

/* "drover: warning: the <what> is shown only once; store it now" on stderr,
 * after stdout is flushed: follows every secret printed. */
void cli_warn_shown_once(const char *what);

/* v pretty-printed on stdout; EXIT_OK, or EXIT_SERVER with the reason. */
int cli_print_json(const json_t *v);

/* ---- files --------------------------------------------------------------- */

/* Appends what fd holds to its end (first_line: only until a read brings a
 * newline) to b. -errno, or -EFBIG past b's max. Its own read buffer is
 * wiped; b is the caller's to wipe. */
int cli_read_fd(int fd, cli_buf_t *b, bool first_line);

/* The whole file at path into b, which then holds at least "" (so b->data
 * is not NULL). -ENOENT when it does not exist, other -errno, -EFBIG. */
int cli_read_path(const char *path, cli_buf_t *b);

/* As cli_read_path, with "-" meaning stdin. */
int cli_read_input(const char *path, cli_buf_t *b);

/* Writes path the way an editor would not lose it: the data goes to
 * path.tmp (created with mode, fsync'd) and is renamed over path, so a
 * crash leaves the old file or the new one. -errno. */
int cli_write_atomic(const char *path, const char *data, size_t len, mode_t mode);

/* The config file's path into out: $DROVER_CONFIG, else
 * ~/.config/drover/config (with mkdirs, ~/.config and ~/.config/drover are
 * made first, mode 0700). -ENOENT when neither variable is set,
 * -ENAMETOOLONG when the path does not fit (out holds it cut short), or
 * -errno from mkdir. */
int cli_config_path(char *out, size_t len, bool mkdirs);

/* ---- the connection and requests ----------------------------------------- */

/* How a family words a few failures; each keeps the wording it had. */
#define CLI_REQ_TLS_HINT 0x1u    /* a TLS failure suggests --cacert */
#define CLI_REQ_SERVER_ASIS 0x2u /* the server URL is printed as resolved, not cut to 200 */
#define CLI_REQ_ANY_DETAIL 0x4u  /* an error body without "error" still shows its detail */
#define CLI_REQ_LENIENT_2XX 0x8u /* a 2xx body that is not JSON is *out = NULL, no error */

typedef struct {
    cli_http_t *http;
    const char *server; /* for messages */
    unsigned flags;     /* CLI_REQ_... */
} cli_conn_t;

/* Connects (with_token false for the public routes and login): fills
 * out->http and out->server (owned by the caller's context) and returns 0,
 * or returns an exit status with the reason printed. drover.c hands one to
 * the command families so usage errors come before anything about the
 * server or credentials. */
typedef int (*cli_connect_fn)(void *ctx, bool with_token, cli_conn_t *out);

/* cli_request() returns this, unprinted, for the status the caller handles. */
#define CLI_QUIET (-1)

/*
 * One request; body (may be NULL) as o says (o may be NULL: JSON). On a 2xx
 * answer *out gets the parsed body (NULL when empty) and 0 is returned.
 * When the status equals quiet (0: none), *out gets the parsed error body
 * (or NULL) and CLI_QUIET is returned with nothing printed. Otherwise the
 * failure is printed ("cannot reach server at ...", "<detail> (<status>
 * <code>)", ...) and the exit status returned. The answer's raw bytes are
 * wiped: they may hold a token or secrets.
 */
int cli_request(const cli_conn_t *c, const char *method, const char *path, const char *body,
                const cli_http_opts_t *o, long quiet, json_t **out);

/* As cli_request with v (may be NULL) sent as JSON; the text is wiped
 * after, as it may hold a password or a claim token. */
int cli_request_json(const cli_conn_t *c, const char *method, const char *path, const json_t *v,
                     const cli_http_opts_t *o, long quiet, json_t **out);

/* A GET whose 2xx answer is not JSON: *out gets it as it is (caller frees
 * out->body); failures as cli_request. */
int cli_request_raw(const cli_conn_t *c, const char *path, cli_http_resp_t *out);

/* ---- request paths ------------------------------------------------------- */

#define CLI_PATH_MAX (16 * 1024)

/* A path and query under construction; pieces from the user are
 * URL-escaped. The first error sticks in err and is reported by
 * cli_path_check(). */
typedef struct {
    cli_buf_t b;
    bool query; /* a '?' is in: the next parameter starts with '&' */
    int err;
} cli_path_t;

void cli_path_init(cli_path_t *p, const char *prefix);
void cli_path_escaped(cli_path_t *p, const char *s);
void cli_path_raw(cli_path_t *p, const char *s);
/* "?key=value" or "&key=value", value escaped; nothing when value is NULL. */
void cli_path_param(cli_path_t *p, const char *key, const char *value);
void cli_path_fini(cli_path_t *p);
/* 0, or EXIT_USAGE with "request path too long" / "out of memory" printed. */
int cli_path_check(const cli_path_t *p);

/* prefix + escaped(arg) + suffix (may be NULL) into out: 0, or an exit
 * status with "argument too long" (arg is cut at 1024 bytes) printed. */
int cli_make_path(const char *prefix, const char *arg, const char *suffix, char *out,
                  size_t outlen);

/* ---- answers as tables, and paging --------------------------------------- */

/* Adds the row of one item of an answer's array to t: cli_table_add's rc. */
typedef int (*cli_row_fn)(cli_table_t *t, const json_t *item, void *arg);

/* The table of an answer's array. */
typedef struct {
    const char *key; /* the array in the answer: "devices" */
    size_t ncols;
    const char *const *header;
    cli_row_fn row;
    void *arg;
    /* Printed on stderr as "drover: <none>" instead of a table without
     * rows; NULL: the header alone is printed. */
    const char *none;
} cli_rows_t;

/* The rows of items printed as a table (see none). 0, -ENOMEM or -EFBIG. */
int cli_print_rows(const json_t *items, const cli_rows_t *r);

/* GET path; the answer must hold the array r->key ("unexpected answer from
 * the server: <bad>" otherwise). With json the answer is printed as it is,
 * else its rows. Returns the exit status. */
int cli_list(const cli_conn_t *c, const char *path, const char *bad, bool json,
             const cli_rows_t *r);

typedef struct {
    const char *limit;  /* ?limit=, or NULL */
    const char *cursor; /* start after this cursor, or NULL */
    bool all;           /* follow `next` to the last page */
} cli_pages_t;

/*
 * GETs base (an escaped path, perhaps with a query) with ?limit= and
 * ?cursor=: one page, or with all every page. *out is the first page with
 * its `key` array holding every item fetched and `next` the last page's
 * cursor. Returns 0 or an exit status, the reason printed.
 */
int cli_get_pages(const cli_conn_t *c, const char *base, const char *key, const cli_pages_t *pg,
                  json_t **out);

/* "drover: more <what>: use --all, or --cursor C" when doc's next is C. */
void cli_more_hint(const json_t *doc, const char *what);

/* A paged list command (`device list`, `audit list`): cli_get_pages, then
 * with json the page as it is (with all: {"<key>": [every item], "next":
 * null}), else the table of r and the hint for the next page. Returns the
 * exit status. */
int cli_list_pages(const cli_conn_t *c, const char *base, const cli_pages_t *pg, bool json,
                   const cli_rows_t *r);

#endif

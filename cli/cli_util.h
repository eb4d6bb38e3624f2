/*
 * Pure helpers of the operator CLI, kept apart from main() and libcurl so the
 * unit tests can drive them: a capped growable buffer, time arguments
 * (absolute or relative like "-15m"), local RFC 3339 formatting, "k=v" tags,
 * the config file, JSON scalars as table text, a JSON pretty printer that
 * keeps numbers readable, an aligned text table, safe text of an answer's
 * fields (times, "k=v" pairs, secrets), and the arguments and progress
 * text of the control commands (twin, commands, bulk jobs). The helpers
 * that print or talk to the server are in cli_common.h.
 *
 * Nothing here does I/O except cli_table_print(), which writes to the FILE
 * it is given. Single-threaded like the rest of the CLI; the only global
 * state touched is the C library's time zone (localtime_r).
 */
#ifndef DROVER_CLI_UTIL_H
#define DROVER_CLI_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- capped growable buffer ---------------------------------------------- */

/* Bytes plus a NUL after them. Grows by doubling up to max bytes of data. */
typedef struct {
    char *data; /* NULL until the first append */
    size_t len;
    size_t cap;
    size_t max;
} cli_buf_t;

void cli_buf_init(cli_buf_t *b, size_t max);
/* Appends n bytes. -EFBIG if the result would exceed max, -ENOMEM. On error
 * the buffer is unchanged. */
int cli_buf_append(cli_buf_t *b, const void *p, size_t n);
int cli_buf_puts(cli_buf_t *b, const char *s);
/* Releases the storage; the buffer can be reused after cli_buf_init. */
void cli_buf_fini(cli_buf_t *b);
/* cli_buf_fini after zeroing the bytes: for buffers that held a secret. */
void cli_buf_wipe(cli_buf_t *b);

/* ---- time ---------------------------------------------------------------- */

/* A --since/--until argument into the text sent to the server:
 *   "-30s", "-15m", "-1h", "-2d", "-1w"  -> now_ms minus that, as epoch ms
 *   "now"                                 -> now_ms
 *   epoch ms or RFC 3339                  -> passed through unchanged
 * Anything else is -EINVAL; a result that does not fit out is -ERANGE. */
int cli_parse_when(const char *s, int64_t now_ms, char *out, size_t outlen);

/* Epoch ms as RFC 3339 in the local time zone: "2026-11-27T11:00:00+01:00",
 * with ".mmm" before the offset when with_ms, "Z" for a zero offset.
 * -ERANGE if out is too small or the time is outside what the C library
 * can represent. */
#define CLI_TIME_MAX 40
int cli_format_time(int64_t ms, bool with_ms, char *out, size_t outlen);

/* A JSON epoch-ms value as cli_format_time text for a table cell or a
 * line; none (such as "-" or "never") for null, a missing value or
 * anything else. */
void cli_time_cell(const json_t *v, bool with_ms, const char *none, char *out, size_t outlen);

/* ---- arguments ----------------------------------------------------------- */

/* "key=value" with a non-empty key. Writes the key length on success. */
int cli_tag_split(const char *kv, size_t *keylen);

/* A tags object {"K": "V", ...} from n "K=V" strings, values as strings.
 * On a bad one *bad gets its index and the return says why: -EINVAL no
 * '=' or an empty key, -EEXIST a key given twice, -EILSEQ not valid
 * UTF-8. -ENOMEM. Caller owns *out. */
int cli_tags_build(const char *const *kv, size_t n, json_t **out, size_t *bad);

/* A number of seconds in (0, 86400], fractions allowed ("2.5"). */
int cli_parse_seconds(const char *s, double *out);

/* A positive decimal integer that fits in an int. */
int cli_parse_count(const char *s, int *out);

/* ---- config file --------------------------------------------------------- */

/* ~/.config/drover/config: "key = value" lines, '#' comments, blank lines;
 * a value may be wrapped in double quotes. Keys "server" and "token" are
 * read, others are ignored so older CLIs accept newer files. */
typedef struct {
    char *server; /* NULL when absent; caller frees */
    char *token;  /* NULL when absent; caller frees */
} cli_config_t;

/* Parses len bytes of text. On success fills *out (caller calls
 * cli_config_fini). A line without '=' or with an empty key is -EINVAL and
 * its 1-based number goes to *bad_line when given. */
int cli_config_parse(const char *text, size_t len, cli_config_t *out, int *bad_line);
void cli_config_fini(cli_config_t *c);

/* ---- JSON ---------------------------------------------------------------- */

/* A value as table text: strings as-is, numbers in their shortest
 * round-trip form, true/false, null as "-", arrays and objects as compact
 * JSON. Returns a malloc'd string (caller frees) or NULL on ENOMEM. */
char *cli_json_text(const json_t *v);

/* Pretty JSON (two-space indent, key order kept) appended to out. Reals are
 * printed in their shortest round-trip form rather than jansson's 17 digits,
 * so 0.1 stays 0.1. Non-ASCII UTF-8 is kept; control characters are escaped.
 * Returns 0, -EFBIG or -ENOMEM (from the buffer), -EINVAL for a value
 * nested deeper than 64 levels. */
int cli_json_pretty(const json_t *v, cli_buf_t *out);

/* ---- tables -------------------------------------------------------------- */

/* Rows of cells printed with columns padded to the widest cell, two spaces
 * apart, no trailing blanks. Cells are copied; control characters become
 * '?', so text from the network cannot move the terminal cursor; cells
 * longer than CLI_TABLE_CELL_MAX characters are cut and end in "...". An
 * empty or NULL cell prints as "-". Widths count UTF-8 code points. */
#define CLI_TABLE_COLS_MAX 8
#define CLI_TABLE_CELL_MAX 64
#define CLI_TABLE_ROWS_MAX 10000000u
typedef struct {
    size_t ncols;
    size_t nrows;
    size_t cap;
    char **cells; /* nrows * ncols */
} cli_table_t;

/* ncols in 1..CLI_TABLE_COLS_MAX. */
int cli_table_init(cli_table_t *t, size_t ncols);
/* Copies ncols cells. -ENOMEM, or -EFBIG past CLI_TABLE_ROWS_MAX rows. */
int cli_table_add(cli_table_t *t, const char *const *cells);
void cli_table_print(const cli_table_t *t, FILE *out);
void cli_table_fini(cli_table_t *t);

/* Copies s into a new string with control characters replaced by '?' and,
 * when max_chars > 0, cut to that many code points ending in "...".
 * Returns NULL on ENOMEM. Also used for key: value lines. */
char *cli_sanitize(const char *s, size_t max_chars);

/* An argument from the command line made safe to quote in an error: cut
 * to 40 code points, control characters as '?'. Written into buf, which
 * is returned. */
const char *cli_shown(const char *s, char *buf, size_t len);

/* The value of key in o as sanitized text for a line or a cell: strings
 * as they are, other values as cli_json_text, "" when absent. Caller
 * frees; NULL on ENOMEM. */
char *cli_field_text(const json_t *o, const char *key);

/* "k=v" pairs of an object, joined by sep, values as cli_json_text, not
 * sanitized. At most max bytes: the text is cut where the next piece would
 * not fit. Caller frees; NULL on ENOMEM. */
char *cli_pairs_text(const json_t *obj, const char *sep, size_t max);

/* The string under key in o when it looks like a secret the server makes
 * (a token, claim token or device secret: 8 to 256 characters of
 * A-Z a-z 0-9 _ -), so it is safe to print; else NULL. */
const char *cli_secret_of(const json_t *o, const char *key);

/* Zeroes the string under key in o (if it is one) before the JSON is
 * freed: a secret an answer carried, or a claim token a body did. */
void cli_json_wipe(json_t *o, const char *key);

/* ---- control commands ---------------------------------------------------- */

/* A JSON document given on the command line (or read from a file or stdin):
 * exactly one value, nothing after it. When want_object, anything but an
 * object is -EINVAL too. -EINVAL writes a one-line reason into err; -ENOMEM. */
int cli_json_arg(const char *text, size_t len, bool want_object, json_t **out, char *err,
                 size_t errlen);

/* The value of `--param K=V`: V as a JSON number, true, false or null when
 * the whole of V is exactly one of those (no blanks around it; a number must
 * fit a 64-bit integer or a double), otherwise V as a string. So "5" is 5,
 * "true" is true, "05", " 5", "abc" and "[1]" are strings. -EINVAL when V is
 * not valid UTF-8, -ENOMEM. Caller owns *out. */
int cli_param_value(const char *v, json_t **out);

/* The "params" object of a command: the object given by --params (JSON text,
 * may be NULL), then each "K=V" of kv[0..n) set on top of it with
 * cli_param_value(V), so --param overrides a key of --params. A --param
 * without '=' or with an empty key, a key given twice by --param, or
 * --params that is not a JSON object are -EINVAL with err set. Caller owns
 * *out (an object, possibly empty). */
int cli_params_build(const char *params_json, const char *const *kv, size_t n, json_t **out,
                     char *err, size_t errlen);

/* The "target" of a bulk operation from --tag K=V, --ids a,b,c and
 * --all-devices, of which exactly one must be given:
 *   {"tag": "K=V"} | {"ids": ["a", "b", "c"]} | {"all": true}
 * Ids are comma-separated, each a valid device id, none twice. -EINVAL
 * with err set, -ENOMEM. Caller owns *out. */
int cli_target_build(const char *tag, const char *ids, bool all, json_t **out, char *err,
                     size_t errlen);

/* True for a command status that can no longer change: succeeded, failed,
 * rejected, expired. */
bool cli_command_final(const char *status);

/* One line of bulk job progress from a job object (POST /bulk/... or
 * GET /jobs/{id}):
 *   "job_1f: 9500/10000 done (succeeded 9400, failed 100)"
 * "done" counts every device whose state can no longer change (total minus
 * queued, sent and pending); the parenthesis lists the non-zero final
 * states, known ones first in a fixed order. Text from the server is
 * sanitized. -EINVAL when job lacks id, total or counts; -ERANGE when out
 * is too small. */
int cli_job_progress(const json_t *job, char *out, size_t outlen);

/* How many devices of a job are still pending (queued + sent + pending), or
 * -1 when job has no counts object. */
int64_t cli_job_pending(const json_t *job);

#endif

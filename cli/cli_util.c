/*
 * Pure helpers of the operator CLI (see cli_util.h). Everything here takes
 * its input as arguments and returns an errno-style code, so the unit tests
 * cover it without a server or a terminal.
 *
 * Text that came from the network (tag values, telemetry strings, error
 * details) is printed only through cli_sanitize() or cli_json_pretty(), which
 * neutralise control characters: a device must not be able to send escape
 * sequences to an operator's terminal.
 */
#include "cli_util.h"

#include "common/json.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- capped growable buffer ---------------------------------------------- */

void cli_buf_init(cli_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

int cli_buf_append(cli_buf_t *b, const void *p, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return -EFBIG;
    size_t need = b->len + n + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return -ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int cli_buf_puts(cli_buf_t *b, const char *s)
{
    return cli_buf_append(b, s, strlen(s));
}

void cli_buf_fini(cli_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void cli_buf_wipe(cli_buf_t *b)
{
    if (b->data != NULL)
        explicit_bzero(b->data, b->len);
    cli_buf_fini(b);
}

/* ---- time ---------------------------------------------------------------- */

int cli_parse_when(const char *s, int64_t now_ms, char *out, size_t outlen)
{
    int64_t v;
    if (s == NULL || outlen == 0)
        return -EINVAL;
    if (strcmp(s, "now") == 0) {
        v = now_ms;
    } else if (s[0] == '-' && isdigit((unsigned char)s[1])) {
        const char *p = s + 1;
        while (isdigit((unsigned char)*p))
            p++;
        int64_t unit;
        switch (*p) {
        case 's':
            unit = 1000;
            break;
        case 'm':
            unit = 60 * 1000;
            break;
        case 'h':
            unit = 3600 * 1000;
            break;
        case 'd':
            unit = 86400 * 1000;
            break;
        case 'w':
            unit = 7 * 86400 * 1000;
            break;
        default:
            /* Not relative: a negative epoch ms such as "-15" still passes. */
            goto absolute;
        }
        /* 15 digits of weeks is already beyond any clock; stops overflow. */
        if (p - (s + 1) > 15)
            return -ERANGE;
        int64_t n = 0;
        for (const char *q = s + 1; q < p; q++)
            n = n * 10 + (*q - '0');
        if (p[1] != '\0')
            return -EINVAL;
        if (n > INT64_MAX / unit)
            return -ERANGE;
        int64_t d = n * unit;
        if (now_ms < INT64_MIN + d)
            return -ERANGE;
        v = now_ms - d;
    } else {
        goto absolute;
    }
    int w = snprintf(out, outlen, "%lld", (long long)v);
    if (w < 0 || (size_t)w >= outlen)
        return -ERANGE;
    return 0;

absolute:
    if (util_parse_time(s, &v) < 0)
        return -EINVAL;
    if (strlen(s) >= outlen)
        return -ERANGE;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

int cli_format_time(int64_t ms, bool with_ms, char *out, size_t outlen)
{
    int64_t sec = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        sec--;
    }
    time_t t = (time_t)sec;
    if ((int64_t)t != sec)
        return -ERANGE;
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL)
        return -ERANGE;
    char base[32];
    if (strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return -ERANGE;
    char frac[8] = "";
    if (with_ms)
        snprintf(frac, sizeof(frac), ".%03d", (int)rem);
    char zone[8] = "Z";
    long off = tm.tm_gmtoff;
    if (off != 0) {
        char sign = off < 0 ? '-' : '+';
        long a = off < 0 ? -off : off;
        snprintf(zone, sizeof(zone), "%c%02ld:%02ld", sign, (a / 3600) % 100, (a % 3600) / 60);
    }
    int w = snprintf(out, outlen, "%s%s%s", base, frac, zone);
    if (w < 0 || (size_t)w >= outlen)
        return -ERANGE;
    return 0;
}

void cli_time_cell(const json_t *v, bool with_ms, const char *none, char *out, size_t outlen)
{
    if (!json_is_integer(v) || cli_format_time(json_integer_value(v), with_ms, out, outlen) < 0)
        snprintf(out, outlen, "%s", none);
}

/* ---- arguments ----------------------------------------------------------- */

int cli_tag_split(const char *kv, size_t *keylen)
{
    const char *eq = strchr(kv, '=');
    if (eq == NULL || eq == kv)
        return -EINVAL;
    *keylen = (size_t)(eq - kv);
    return 0;
}

int cli_tags_build(const char *const *kv, size_t n, json_t **out, size_t *bad)
{
    json_t *tags = json_object();
    int rc = -ENOMEM;
    if (tags == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t kl;
        *bad = i;
        if (cli_tag_split(kv[i], &kl) < 0) {
            rc = -EINVAL;
            goto fail;
        }
        char *key = strndup(kv[i], kl);
        if (key == NULL) {
            rc = -ENOMEM;
            goto fail;
        }
        bool twice = json_object_get(tags, key) != NULL;
        /* json_object_set_new() takes the value even when it fails. */
        json_t *v = twice ? NULL : json_string(kv[i] + kl + 1);
        int set = v != NULL ? json_object_set_new(tags, key, v) : -1;
        free(key);
        if (twice || set < 0) {
            rc = twice ? -EEXIST : -EILSEQ;
            goto fail;
        }
    }
    *out = tags;
    return 0;
fail:
    json_decref(tags);
    return rc;
}

int cli_parse_seconds(const char *s, double *out)
{
    if (s == NULL || *s == '\0')
        return -EINVAL;
    /* Digits and one dot only: no signs, exponents, hex, "inf" or "nan". */
    int dots = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!isdigit((unsigned char)*p))
            return -EINVAL;
    }
    if (dots > 1 || strcmp(s, ".") == 0)
        return -EINVAL;
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0' || !isfinite(v) || v <= 0 || v > 86400)
        return -ERANGE;
    *out = v;
    return 0;
}

int cli_parse_count(const char *s, int *out)
{
    int64_t v;
    int rc = util_parse_i64(s, &v);
    if (rc < 0)
        return rc;
    if (v < 1 || v > INT_MAX || s[0] == '+')
        return -ERANGE;
    *out = (int)v;
    return 0;
}

/* ---- config file --------------------------------------------------------- */

static int is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int cli_config_parse(const char *text, size_t len, cli_config_t *out, int *bad_line)
{
    cli_config_t c = {NULL, NULL};
    const char *p = text, *end = text + len;
    int line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *s = p, *e = le;
        line++;
        p = nl ? nl + 1 : end;
        while (s < e && is_blank((unsigned char)*s))
            s++;
        while (e > s && is_blank((unsigned char)e[-1]))
            e--;
        if (s == e || *s == '#')
            continue;
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (eq == NULL || memchr(s, '\0', (size_t)(e - s)) != NULL)
            goto fail;
        const char *ke = eq, *vs = eq + 1;
        while (ke > s && is_blank((unsigned char)ke[-1]))
            ke--;
        while (vs < e && is_blank((unsigned char)*vs))
            vs++;
        if (ke == s)
            goto fail;
        if (e - vs >= 2 && *vs == '"' && e[-1] == '"') {
            vs++;
            e--;
        }
        char **slot = NULL;
        size_t kl = (size_t)(ke - s);
        if (kl == 6 && memcmp(s, "server", 6) == 0)
            slot = &c.server;
        else if (kl == 5 && memcmp(s, "token", 5) == 0)
            slot = &c.token;
        if (slot == NULL)
            continue;
        char *v = strndup(vs, (size_t)(e - vs));
        if (v == NULL) {
            cli_config_fini(&c);
            return -ENOMEM;
        }
        free(*slot);
        *slot = v;
    }
    *out = c;
    return 0;

fail:
    cli_config_fini(&c);
    if (bad_line != NULL)
        *bad_line = line;
    return -EINVAL;
}

void cli_config_fini(cli_config_t *c)
{
    free(c->server);
    c->server = NULL;
    free(c->token);
    c->token = NULL;
}

/* ---- JSON ---------------------------------------------------------------- */

/* Shortest of %.15g..%.17g that reads back as the same double, with ".0"
 * added when the text would otherwise read as an integer. */
static void format_real(double d, char *out, size_t outlen)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, outlen, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            break;
    }
    size_t l = strlen(out);
    if (strpbrk(out, ".eEn") == NULL && l + 2 < outlen)
        memcpy(out + l, ".0", 3);
}

char *cli_json_text(const json_t *v)
{
    char num[40];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return strndup(json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(num);
    case JSON_REAL:
        format_real(json_real_value(v), num, sizeof(num));
        return strdup(num);
    case JSON_TRUE:
        return strdup("true");
    case JSON_FALSE:
        return strdup("false");
    case JSON_NULL:
        return strdup("-");
    default:
        return json_util_dump(v);
    }
}

static int put_string(cli_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    int rc = cli_buf_append(b, "\"", 1);
    size_t run = 0; /* bytes copied verbatim in one append */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t el = 2;
        esc[0] = '\\';
        if (c == '"' || c == '\\')
            esc[1] = (char)c;
        else if (c == '\n')
            esc[1] = 'n';
        else if (c == '\t')
            esc[1] = 't';
        else if (c == '\r')
            esc[1] = 'r';
        else if (c == '\b')
            esc[1] = 'b';
        else if (c == '\f')
            esc[1] = 'f';
        else if (c < 0x20 || c == 0x7f) {
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        } else {
            run++;
            continue;
        }
        rc = cli_buf_append(b, s + i - run, run);
        run = 0;
        if (rc == 0)
            rc = cli_buf_append(b, esc, el);
    }
    if (rc == 0)
        rc = cli_buf_append(b, s + n - run, run);
    if (rc == 0)
        rc = cli_buf_append(b, "\"", 1);
    return rc;
}

static int put_indent(cli_buf_t *b, int depth)
{
    static const char spaces[] = "                                ";
    int rc = cli_buf_append(b, "\n", 1);
    size_t n = (size_t)depth * 2;
    while (rc == 0 && n > 0) {
        size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
        rc = cli_buf_append(b, spaces, k);
        n -= k;
    }
    return rc;
}

/* Deeper than jansson's own parser limit, so anything it parsed prints. */
#define PRETTY_DEPTH_MAX 2048

static int pretty(const json_t *v, cli_buf_t *b, int depth)
{
    int rc = 0;
    if (depth > PRETTY_DEPTH_MAX)
        return -EINVAL;
    bool obj = json_is_object(v);
    if (obj || json_is_array(v)) {
        /* Members in their order, each on its own line: "key": value for
         * an object, value for an array. */
        size_t n = obj ? json_object_size(v) : json_array_size(v);
        if (n == 0)
            return cli_buf_puts(b, obj ? "{}" : "[]");
        rc = cli_buf_puts(b, obj ? "{" : "[");
        void *it = obj ? json_object_iter((json_t *)v) : NULL;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            const char *k = obj ? json_object_iter_key(it) : NULL;
            const json_t *c = obj ? json_object_iter_value(it) : json_array_get(v, i);
            if (i > 0)
                rc = cli_buf_puts(b, ",");
            if (rc == 0)
                rc = put_indent(b, depth + 1);
            if (rc == 0 && k != NULL)
                rc = put_string(b, k, strlen(k));
            if (rc == 0 && k != NULL)
                rc = cli_buf_puts(b, ": ");
            if (rc == 0)
                rc = pretty(c, b, depth + 1);
            if (obj)
                it = json_object_iter_next((json_t *)v, it);
        }
        if (rc == 0)
            rc = put_indent(b, depth);
        return rc ? rc : cli_buf_puts(b, obj ? "}" : "]");
    }
    if (json_is_string(v))
        return put_string(b, json_string_value(v), json_string_length(v));
    char *t = cli_json_text(v);
    if (t == NULL)
        return -ENOMEM;
    rc = cli_buf_puts(b, json_is_null(v) ? "null" : t);
    free(t);
    return rc;
}

int cli_json_pretty(const json_t *v, cli_buf_t *out)
{
    return pretty(v, out, 0);
}

/* ---- tables -------------------------------------------------------------- */

/* Length of the UTF-8 sequence starting at s (at most n bytes available), or
 * 0 when it is malformed. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* One code point: printable sequences are copied, controls (C0, DEL, C1)
 * and malformed bytes become '?'. Returns the bytes consumed. */
static size_t sanitize_one(const unsigned char *s, size_t n, char *out, size_t *outlen)
{
    size_t l = utf8_seq(s, n);
    bool ctrl = l == 0 || (l == 1 && (s[0] < 0x20 || s[0] == 0x7f)) ||
                (l == 2 && s[0] == 0xc2 && s[1] < 0xa0);
    if (ctrl) {
        out[0] = '?';
        *outlen = 1;
        return l ? l : 1;
    }
    memcpy(out, s, l);
    *outlen = l;
    return l;
}

static size_t count_points(const char *s)
{
    size_t n = strlen(s), cnt = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n; cnt++) {
        size_t l = utf8_seq(p + i, n - i);
        i += l ? l : 1;
    }
    return cnt;
}

char *cli_sanitize(const char *s, size_t max_chars)
{
    if (s == NULL)
        s = "";
    size_t n = strlen(s);
    size_t total = count_points(s);
    size_t keep = total;
    bool cut = max_chars > 0 && total > max_chars;
    if (cut)
        keep = max_chars > 3 ? max_chars - 3 : 0;
    /* Every kept code point is at most as long as its source bytes. */
    char *out = malloc(n + 4);
    if (out == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    for (size_t k = 0; k < keep && i < n; k++) {
        size_t ol;
        i += sanitize_one(p + i, n - i, out + o, &ol);
        o += ol;
    }
    if (cut) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

int cli_table_init(cli_table_t *t, size_t ncols)
{
    if (ncols == 0 || ncols > CLI_TABLE_COLS_MAX)
        return -EINVAL;
    t->ncols = ncols;
    t->nrows = 0;
    t->cap = 0;
    t->cells = NULL;
    return 0;
}

int cli_table_add(cli_table_t *t, const char *const *cells)
{
    if (t->nrows >= CLI_TABLE_ROWS_MAX)
        return -EFBIG;
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));
        if (c == NULL)
            return -ENOMEM;
        t->cells = c;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = cells[i];
        row[i] = cli_sanitize(s == NULL || *s == '\0' ? "-" : s, CLI_TABLE_CELL_MAX);
        if (row[i] == NULL) {
            while (i > 0)
                free(row[--i]);
            return -ENOMEM;
        }
    }
    t->nrows++;
    return 0;
}

void cli_table_print(const cli_table_t *t, FILE *out)
{
    size_t width[CLI_TABLE_COLS_MAX] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t w = count_points(t->cells[r * t->ncols + c]);
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            fputs(cell, out);
            if (c + 1 < t->ncols)
                fprintf(out, "%*s", (int)(width[c] - count_points(cell) + 2), "");
        }
        fputc('\n', out);
    }
}

void cli_table_fini(cli_table_t *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
    t->cap = 0;
}

const char *cli_shown(const char *s, char *buf, size_t len)
{
    char *t = cli_sanitize(s, 40);
    snprintf(buf, len, "%s", t ? t : "?");
    free(t);
    return buf;
}

char *cli_field_text(const json_t *o, const char *key)
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

char *cli_pairs_text(const json_t *obj, const char *sep, size_t max)
{
    cli_buf_t b;
    cli_buf_init(&b, max);
    const char *k;
    json_t *v;
    int rc = cli_buf_append(&b, "", 0);
    json_object_foreach((json_t *)obj, k, v)
    {
        char *t = cli_json_text(v);
        if (t == NULL) {
            rc = -ENOMEM;
            break;
        }
        if (b.len > 0)
            rc = cli_buf_puts(&b, sep);
        if (rc == 0)
            rc = cli_buf_puts(&b, k);
        if (rc == 0)
            rc = cli_buf_puts(&b, "=");
        if (rc == 0)
            rc = cli_buf_puts(&b, t);
        free(t);
        if (rc == -EFBIG) { /* what fits */
            rc = 0;
            break;
        }
        if (rc < 0)
            break;
    }
    if (rc < 0) {
        cli_buf_fini(&b);
        return NULL;
    }
    return b.data;
}

const char *cli_secret_of(const json_t *o, const char *key)
{
    const char *t = json_string_value(json_object_get(o, key));
    if (t == NULL || strlen(t) < 8 || strlen(t) > 256)
        return NULL;
    for (const char *p = t; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return NULL;
    return t;
}

void cli_json_wipe(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        explicit_bzero((char *)json_string_value(v), json_string_length(v));
}

/* ---- control commands ---------------------------------------------------- */

/* Strict UTF-8 as jansson wants it: no overlong forms, no surrogates, no
 * code point above U+10FFFF (utf8_seq only checks the byte pattern). */
static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(p + i, n - i);
        if (l == 0)
            return false;
        if ((p[i] == 0xe0 && p[i + 1] < 0xa0) || (p[i] == 0xed && p[i + 1] >= 0xa0) ||
            (p[i] == 0xf0 && p[i + 1] < 0x90) || (p[i] == 0xf4 && p[i + 1] >= 0x90))
            return false;
        i += l;
    }
    return true;
}

int cli_json_arg(const char *text, size_t len, bool want_object, json_t **out, char *err,
                 size_t errlen)
{
    char perr[160] = "";
    json_t *v = json_util_parse(text, len, perr, sizeof(perr));
    if (v == NULL) {
        snprintf(err, errlen, "not valid JSON: %s", perr[0] ? perr : "parse error");
        return -EINVAL;
    }
    if (want_object && !json_is_object(v)) {
        json_decref(v);
        snprintf(err, errlen, "must be a JSON object ({...})");
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* RFC 8259 number grammar, the whole string: -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)? */
static bool is_json_number(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (isdigit((unsigned char)*p))
            p++;
    else
        return false;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return *p == '\0';
}

int cli_param_value(const char *v, json_t **out)
{
    json_t *j = NULL;
    if (strcmp(v, "true") == 0)
        j = json_true();
    else if (strcmp(v, "false") == 0)
        j = json_false();
    else if (strcmp(v, "null") == 0)
        j = json_null();
    else if (is_json_number(v))
        /* jansson refuses integers beyond 64 bits and reals beyond a
         * double: those stay strings rather than change value. */
        j = json_loads(v, JSON_DECODE_ANY, NULL);
    if (j == NULL) {
        if (!utf8_valid(v))
            return -EINVAL;
        j = json_string(v);
        if (j == NULL)
            return -ENOMEM;
    }
    *out = j;
    return 0;
}

int cli_params_build(const char *params_json, const char *const *kv, size_t n, json_t **out,
                     char *err, size_t errlen)
{
    json_t *p = NULL, *seen = json_object();
    int rc = -ENOMEM;
    if (seen == NULL)
        goto fail;
    if (params_json != NULL) {
        rc = cli_json_arg(params_json, strlen(params_json), true, &p, err, errlen);
        if (rc < 0) {
            char why[200];
            snprintf(why, sizeof(why), "%s", err);
            snprintf(err, errlen, "--params %s", why);
            goto fail;
        }
    } else {
        p = json_object();
        rc = -ENOMEM;
        if (p == NULL)
            goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        size_t kl;
        if (cli_tag_split(kv[i], &kl) < 0) {
            snprintf(err, errlen, "--param wants K=V with a non-empty key");
            rc = -EINVAL;
            goto fail;
        }
        char *key = strndup(kv[i], kl);
        rc = -ENOMEM;
        if (key == NULL)
            goto fail;
        json_t *val = NULL;
        if (!utf8_valid(key) || cli_param_value(kv[i] + kl + 1, &val) == -EINVAL) {
            free(key);
            snprintf(err, errlen, "--param %zu is not valid UTF-8", i + 1);
            rc = -EINVAL;
            goto fail;
        }
        if (val == NULL) {
            free(key);
            goto fail;
        }
        if (json_object_get(seen, key) != NULL) {
            char *shown = cli_sanitize(key, 40);
            snprintf(err, errlen, "--param %s given twice", shown ? shown : "?");
            free(shown);
            free(key);
            json_decref(val);
            rc = -EINVAL;
            goto fail;
        }
        /* Both take the value's reference even when they fail. */
        int e = json_object_set_new(seen, key, json_true());
        if (e == 0)
            e = json_object_set_new(p, key, val);
        else
            json_decref(val);
        free(key);
        if (e < 0)
            goto fail;
    }
    json_decref(seen);
    *out = p;
    return 0;
fail:
    json_decref(p);
    json_decref(seen);
    return rc;
}

int cli_target_build(const char *tag, const char *ids, bool all, json_t **out, char *err,
                     size_t errlen)
{
    if ((tag != NULL) + (ids != NULL) + all != 1) {
        snprintf(err, errlen,
                 "name the devices with exactly one of --tag K=V, --ids A,B,... "
                 "or --all-devices");
        return -EINVAL;
    }
    size_t kl;
    if (tag != NULL) {
        if (cli_tag_split(tag, &kl) < 0 || !utf8_valid(tag)) {
            snprintf(err, errlen, "--tag wants K=V with a non-empty key");
            return -EINVAL;
        }
        json_t *t = json_pack("{s:s}", "tag", tag);
        if (t == NULL)
            return -ENOMEM;
        *out = t;
        return 0;
    }
    if (all) {
        json_t *t = json_pack("{s:b}", "all", 1);
        if (t == NULL)
            return -ENOMEM;
        *out = t;
        return 0;
    }
    int rc = -ENOMEM;
    json_t *arr = json_array(), *seen = json_object();
    if (arr == NULL || seen == NULL)
        goto fail;
    for (const char *p = ids;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!util_id_valid(p, len)) {
            char *s = strndup(p, len);
            char *shown = s ? cli_sanitize(s, 40) : NULL;
            snprintf(err, errlen,
                     "--ids: '%s' is not a device id (1 to 64 characters of A-Z a-z 0-9 . _ -, "
                     "comma-separated)",
                     shown ? shown : "?");
            free(shown);
            free(s);
            rc = -EINVAL;
            goto fail;
        }
        char id[DROVER_ID_MAX + 1];
        memcpy(id, p, len);
        id[len] = '\0';
        if (json_object_get(seen, id) != NULL) {
            snprintf(err, errlen, "--ids: '%s' is listed twice", id);
            rc = -EINVAL;
            goto fail;
        }
        if (json_object_set_new(seen, id, json_true()) < 0 ||
            json_array_append_new(arr, json_string(id)) < 0)
            goto fail;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    json_decref(seen);
    json_t *t = json_pack("{s:o}", "ids", arr);
    if (t == NULL)
        return -ENOMEM;
    *out = t;
    return 0;
fail:
    json_decref(arr);
    json_decref(seen);
    return rc;
}

bool cli_command_final(const char *status)
{
    static const char *const final[] = {"succeeded", "failed", "rejected", "expired"};
    for (size_t i = 0; status != NULL && i < ARRAY_SIZE(final); i++)
        if (strcmp(status, final[i]) == 0)
            return true;
    return false;
}

/* States a job device may still leave. */
static bool job_state_open(const char *s)
{
    return strcmp(s, "queued") == 0 || strcmp(s, "sent") == 0 || strcmp(s, "pending") == 0;
}

int64_t cli_job_pending(const json_t *job)
{
    json_t *counts = json_object_get(job, "counts");
    if (!json_is_object(counts))
        return -1;
    int64_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(counts, k, v)
    {
        if (job_state_open(k) && json_is_integer(v) && json_integer_value(v) > 0)
            n += json_integer_value(v);
    }
    return n;
}

int cli_job_progress(const json_t *job, char *out, size_t outlen)
{
    static const char *const order[] = {"succeeded", "applied", "failed",
                                        "rejected",  "expired", "deleted"};
    const char *id = json_string_value(json_object_get(job, "id"));
    json_t *total = json_object_get(job, "total");
    json_t *counts = json_object_get(job, "counts");
    if (id == NULL || !json_is_integer(total) || !json_is_object(counts))
        return -EINVAL;
    int64_t pending = cli_job_pending(job);
    int64_t t = json_integer_value(total);
    int64_t done = t - pending;
    if (done < 0)
        done = 0;
    cli_buf_t b;
    cli_buf_init(&b, 4096);
    char *sid = cli_sanitize(id, 64);
    char num[80];
    snprintf(num, sizeof(num), ": %lld/%lld done", (long long)done, (long long)t);
    int rc = sid ? cli_buf_puts(&b, sid) : -ENOMEM;
    if (rc == 0)
        rc = cli_buf_puts(&b, num);
    free(sid);
    bool first = true;
    /* Known final states in a fixed order, then any the server adds. */
    for (size_t pass = 0; pass < 2 && rc == 0; pass++) {
        const char *k;
        json_t *v;
        size_t n = pass == 0 ? ARRAY_SIZE(order) : 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            v = json_object_get(counts, order[i]);
            if (!json_is_integer(v) || json_integer_value(v) <= 0)
                continue;
            snprintf(num, sizeof(num), "%s%s %lld", first ? " (" : ", ", order[i],
                     (long long)json_integer_value(v));
            rc = cli_buf_puts(&b, num);
            first = false;
        }
        if (pass == 0)
            continue;
        json_object_foreach(counts, k, v)
        {
            bool known = job_state_open(k);
            for (size_t i = 0; i < ARRAY_SIZE(order); i++)
                known = known || strcmp(k, order[i]) == 0;
            if (known || !json_is_integer(v) || json_integer_value(v) <= 0)
                continue;
            char *sk = cli_sanitize(k, 32);
            snprintf(num, sizeof(num), "%s%s %lld", first ? " (" : ", ", sk ? sk : "?",
                     (long long)json_integer_value(v));
            free(sk);
            rc = cli_buf_puts(&b, num);
            first = false;
            if (rc < 0)
                break;
        }
    }
    if (rc == 0 && !first)
        rc = cli_buf_puts(&b, ")");
    if (rc < 0) {
        cli_buf_fini(&b);
        return rc == -EFBIG ? -ERANGE : rc;
    }
    if (b.len >= outlen) {
        cli_buf_fini(&b);
        return -ERANGE;
    }
    memcpy(out, b.data, b.len + 1);
    cli_buf_fini(&b);
    return 0;
}

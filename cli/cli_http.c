/*
 * libcurl glue for the CLI (see cli_http.h). One easy handle per process,
 * options that never change set once in cli_http_new(), per-request options
 * (URL, method, body, headers, timeout) reset on every call so a GET after a
 * PATCH on the same handle is a plain GET. A request that needs other
 * headers (a merge-patch Content-Type, If-Match) gets its own copy of the
 * header list; a long poll (?wait=) gets its own, longer timeout.
 *
 * Hardening: only http and https are allowed (no file://, no redirects to
 * other schemes), redirects are not followed (a redirect would carry the
 * bearer token to wherever it points), and the body is read into a buffer
 * that refuses to grow past CLI_HTTP_BODY_MAX whatever Content-Length says.
 */
#include "cli_http.h"

#include "cli_util.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URL_MAX (64 * 1024)
#define CONNECT_TIMEOUT_MS 10000L

struct cli_http {
    CURL *curl;
    struct curl_slist *hdr_get;  /* Accept, Authorization */
    struct curl_slist *hdr_body; /* the same plus Content-Type */
    const char *base;            /* borrowed */
    long timeout_ms;             /* the handle's whole-request timeout */
};

typedef struct {
    cli_buf_t buf;
    int err; /* why the write callback refused, 0 if it did not */
} sink_t;

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
    sink_t *s = arg;
    size_t bytes = size * n;
    int rc = cli_buf_append(&s->buf, p, bytes);
    if (rc < 0) {
        s->err = rc;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    return bytes;
}

static struct curl_slist *headers(const char *auth, bool with_body)
{
    struct curl_slist *l = curl_slist_append(NULL, "Accept: application/json");
    struct curl_slist *t;
    /* An empty Expect: stops curl waiting for "100 Continue" on large bodies;
     * an empty Content-Type: stops it labelling a bodiless POST as a form. */
    const char *more[] = {
        "Expect:", with_body ? "Content-Type: application/json" : "Content-Type:", auth};
    for (size_t i = 0; l != NULL && i < sizeof(more) / sizeof(more[0]); i++) {
        if (more[i] == NULL)
            continue;
        t = curl_slist_append(l, more[i]);
        if (t == NULL) {
            curl_slist_free_all(l);
            return NULL;
        }
        l = t;
    }
    return l;
}

int cli_http_new(const char *base, const char *token, double timeout_s, cli_http_t **out)
{
    cli_http_t *h = calloc(1, sizeof(*h));
    char *auth = NULL;
    size_t authlen = 0;
    if (h == NULL)
        goto fail;
    h->base = base;
    if (token != NULL) {
        authlen = strlen(token) + sizeof("Authorization: Bearer ");
        auth = malloc(authlen);
        if (auth == NULL)
            goto fail;
        snprintf(auth, authlen, "Authorization: Bearer %s", token);
    }
    h->hdr_get = headers(auth, false);
    h->hdr_body = headers(auth, true);
    if (auth != NULL) {
        /* curl keeps its own copies; ours should not linger in the heap. */
        explicit_bzero(auth, authlen);
        free(auth);
        auth = NULL;
    }
    h->curl = curl_easy_init();
    if (h->hdr_get == NULL || h->hdr_body == NULL || h->curl == NULL)
        goto fail;

    long timeout_ms = (long)(timeout_s * 1000);
    if (timeout_ms < 1)
        timeout_ms = 1;
    h->timeout_ms = timeout_ms;
    CURL *c = h->curl;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "drover-cli/" DROVER_VERSION);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms : CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CLI_HTTP_BODY_MAX);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    *out = h;
    return 0;

fail:
    free(auth);
    cli_http_free(h);
    return -ENOMEM;
}

void cli_http_free(cli_http_t *h)
{
    if (h == NULL)
        return;
    if (h->curl != NULL)
        curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->hdr_get);
    curl_slist_free_all(h->hdr_body);
    free(h);
}

int cli_http_set_ca_file(cli_http_t *h, const char *path)
{
    return curl_easy_setopt(h->curl, CURLOPT_CAINFO, path) == CURLE_OK ? 0 : -EINVAL;
}

/* A per-request copy of base with Content-Type replaced and If-Match added:
 * only requests that need other headers pay for the copy. */
static struct curl_slist *headers_with(const struct curl_slist *base, const cli_http_opts_t *o,
                                       bool with_body)
{
    struct curl_slist *l = NULL, *t;
    char line[256];
    for (const struct curl_slist *i = base; i != NULL; i = i->next) {
        const char *v = i->data;
        if (strncasecmp(v, "Content-Type:", 13) == 0 && with_body && o->content_type != NULL) {
            snprintf(line, sizeof(line), "Content-Type: %s", o->content_type);
            v = line;
        }
        t = curl_slist_append(l, v);
        if (t == NULL)
            goto fail;
        l = t;
    }
    if (o->if_match != NULL) {
        snprintf(line, sizeof(line), "If-Match: %s", o->if_match);
        t = curl_slist_append(l, line);
        if (t == NULL)
            goto fail;
        l = t;
    }
    return l;
fail:
    curl_slist_free_all(l);
    return NULL;
}

static bool header_value_ok(const char *v)
{
    return v == NULL || (strlen(v) < 200 && strpbrk(v, "\r\n") == NULL);
}

int cli_http_request(cli_http_t *h, const char *method, const char *path, const char *body,
                     cli_http_resp_t *out, char *err, size_t errlen)
{
    return cli_http_request_opts(h, method, path, body, NULL, out, err, errlen);
}

int cli_http_request_opts(cli_http_t *h, const char *method, const char *path, const char *body,
                          const cli_http_opts_t *opts, cli_http_resp_t *out, char *err,
                          size_t errlen)
{
    CURL *c = h->curl;
    char errbuf[CURL_ERROR_SIZE] = "";
    cli_buf_t url;
    sink_t sink = {.err = 0};
    struct curl_slist *extra = NULL;
    int rc;

    cli_buf_init(&url, URL_MAX);
    cli_buf_init(&sink.buf, CLI_HTTP_BODY_MAX);
    if (opts != NULL && (!header_value_ok(opts->content_type) || !header_value_ok(opts->if_match)))
        return -EINVAL;
    bool with_body =
        strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
    const struct curl_slist *hdrs = with_body && body != NULL ? h->hdr_body : h->hdr_get;
    if (opts != NULL && (opts->if_match != NULL || opts->content_type != NULL)) {
        extra = headers_with(hdrs, opts, with_body && body != NULL);
        if (extra == NULL)
            return -ENOMEM;
        hdrs = extra;
    }
    rc = cli_buf_puts(&url, h->base);
    if (rc == 0)
        rc = cli_buf_puts(&url, path);
    if (rc < 0)
        goto fail;

    long timeout_ms = h->timeout_ms;
    if (opts != NULL && opts->timeout_s > 0)
        timeout_ms = (long)(opts->timeout_s * 1000);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_URL, url.data);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    if (with_body) {
        /* POSTFIELDS makes the request a POST; CUSTOMREQUEST renames the
         * method for PUT and PATCH and keeps the body. */
        const char *b = body != NULL ? body : "";
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") == 0 ? NULL : method);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(b));
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, b);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") == 0 ? NULL : method);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

    CURLcode cc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    /* The list may be freed below: curl must not keep a pointer to it. */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    if (cc == CURLE_FILESIZE_EXCEEDED || (cc == CURLE_WRITE_ERROR && sink.err == -EFBIG)) {
        rc = -EFBIG;
        goto fail;
    }
    if (cc == CURLE_WRITE_ERROR && sink.err == -ENOMEM) {
        rc = -ENOMEM;
        goto fail;
    }
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
        rc = -EIO;
        goto fail;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (sink.buf.data == NULL) {
        rc = cli_buf_append(&sink.buf, "", 0);
        if (rc < 0)
            goto fail;
    }
    out->status = status;
    out->body = sink.buf.data;
    out->len = sink.buf.len;
    cli_buf_fini(&url);
    curl_slist_free_all(extra);
    return 0;

fail:
    cli_buf_fini(&sink.buf);
    cli_buf_fini(&url);
    curl_slist_free_all(extra);
    return rc;
}

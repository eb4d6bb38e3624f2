/*
 * The CLI's one HTTP connection to droverd: a libcurl easy handle reused for
 * every request of a command (so `device list --all` pages over one
 * keep-alive connection), the bearer token in a header list built once, and
 * response bodies read into a buffer capped at CLI_HTTP_BODY_MAX.
 *
 * Single-threaded. The token is never logged, echoed or put in an error
 * string; the caller prints nothing that came from here except err, which
 * holds libcurl's description of a transport failure.
 */
#ifndef DROVER_CLI_HTTP_H
#define DROVER_CLI_HTTP_H

#include <stddef.h>

#define CLI_HTTP_BODY_MAX (64u * 1024 * 1024)
#define CLI_HTTP_ERR_MAX 256

typedef struct cli_http cli_http_t;

typedef struct {
    long status; /* HTTP status code */
    char *body;  /* NUL-terminated, len bytes; caller frees with free() */
    size_t len;
} cli_http_resp_t;

/* base: "http://host:port" without a trailing slash (borrowed for the
 * handle's lifetime). token: may be NULL (no Authorization header); copied.
 * timeout_s: whole-request timeout. Caller frees with cli_http_free. */
int cli_http_new(const char *base, const char *token, double timeout_s, cli_http_t **out);
void cli_http_free(cli_http_t *h);

/* Verifies https:// servers against the CA certificates in the PEM file at
 * path (libcurl's CURLOPT_CAINFO; curl copies the string) instead of the
 * system's store. -EINVAL if libcurl refuses the option. */
int cli_http_set_ca_file(cli_http_t *h, const char *path);

/* method "GET", "POST", "PUT", "PATCH" or "DELETE"; path starts with '/'
 * and is already URL-encoded; body (JSON, may be NULL; only sent with POST,
 * PUT and PATCH) is sent with Content-Type application/json. Returns 0 with
 * *out filled for any HTTP status, or:
 *   -EIO     transport failure (connect, DNS, TLS, timeout, reset): err says why
 *   -EFBIG   the response body is larger than CLI_HTTP_BODY_MAX
 *   -ENOMEM
 */
int cli_http_request(cli_http_t *h, const char *method, const char *path, const char *body,
                     cli_http_resp_t *out, char *err, size_t errlen);

/* What one request may change from the handle's defaults. */
typedef struct {
    const char *content_type; /* of the body; NULL: application/json */
    const char *if_match;     /* If-Match header value (borrowed), or NULL */
    double timeout_s;         /* this request's whole timeout; 0: the handle's */
} cli_http_opts_t;

/* cli_http_request with opts (may be NULL). Header values must not contain
 * CR or LF (-EINVAL). */
int cli_http_request_opts(cli_http_t *h, const char *method, const char *path, const char *body,
                          const cli_http_opts_t *opts, cli_http_resp_t *out, char *err,
                          size_t errlen);

#endif

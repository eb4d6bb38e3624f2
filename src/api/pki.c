/*
 * PKI, provisioning and revocation over the API:
 *
 *   GET  /api/v1/ca                          the fleet CA certificate (public)
 *   POST /api/v1/devices/{id}/certificates    {"csr"} -> 201 certificate
 *   GET  /api/v1/devices/{id}/certificates    the device's certificates
 *   POST /api/v1/certificates/{serial}/revoke
 *   POST /api/v1/devices/{id}/revoke           every credential of the device
 *   POST /api/v1/devices:import                CSV or JSON lines -> secrets, once
 *   POST /api/v1/enrollments                   -> claim token, once
 *   GET  /api/v1/enrollments[/{id}]
 *   POST /api/v1/enrollments/{id}/revoke
 *   POST /api/v1/provision                     {"claim_token", "id", "csr"} (no bearer)
 *
 * Nothing here ever returns a device secret (but the import answer, once)
 * or any private key: the CA key stays on disk, device keys on devices.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "api/api_internal.h"
#include "common/json.h"
#include "common/strmap.h"
#include "common/util.h"
#include "pki/pki.h"

/* Longest accepted CSR, PEM. */
#define MAX_CSR 16384

void api_ca_get(api_req_t *r)
{
    pki_t *p = r->api->deps.pki;
    if (p == NULL) {
        api_reply_error(r->api, r->req, 503, "unavailable", "the fleet CA is not configured");
        return;
    }
    api_reply_json(r->api, r->req, 200, json_pack("{s:s}", "certificate", pki_ca_pem(p)));
}

static json_t *cert_json(const store_cert_t *c)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:o, s:s}", "serial", c->serial, "device",
                     c->device_id, "not_before", (json_int_t)c->not_before, "not_after",
                     (json_int_t)c->not_after, "created_at", (json_int_t)c->created_at,
                     "revoked_at", c->revoked_at ? json_integer(c->revoked_at) : json_null(),
                     "certificate", c->pem ? c->pem : "");
}

static void cert_issued(void *arg, int rc, const store_cert_t *cert, const char *err)
{
    api_pending_t *p = arg;
    if (p->req != NULL) {
        api_t *api = p->api;
        if (rc == 0) {
            json_t *o = cert_json(cert);
            json_object_set_new(o, "ca_certificate", json_string(pki_ca_pem(api->deps.pki)));
            api_reply_json(api, p->req, 201, o);
        } else if (rc == -ENOENT) {
            api_reply_error(api, p->req, 404, "not_found", "no device '%s'", p->id);
        } else if (rc == -EACCES) {
            api_reply_error(api, p->req, 409, "conflict", "%s", err);
        } else if (rc == -EINVAL || rc == -EPERM) {
            api_reply_error(api, p->req, 400, "bad_request", "%s", err);
        } else {
            api_reply_errno(api, p->req, rc, "issuing the certificate");
        }
    }
    api_pending_free(p);
}

/* The "csr" member of a JSON body, bounded. Replies 400 when missing. */
static const char *body_csr(api_req_t *r, json_t *body)
{
    const char *csr = json_string_value(json_object_get(body, "csr"));
    if (csr == NULL || json_string_length(json_object_get(body, "csr")) > MAX_CSR) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"csr\" must be a PEM certificate signing request (at most %d bytes)",
                        MAX_CSR);
        return NULL;
    }
    return csr;
}

void api_certs_create(api_req_t *r)
{
    json_t *body = NULL;
    if (r->api->deps.pki == NULL) {
        api_reply_error(r->api, r->req, 503, "unavailable", "the fleet CA is not configured");
        return;
    }
    if (api_store_busy(r) || api_body_json(r, &body) < 0)
        return;
    const char *csr = body_csr(r, body);
    if (csr != NULL) {
        api_pending_t *p = api_pending_new(r);
        if (p == NULL)
            api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        else
            pki_issue(r->api->deps.pki, r->id, csr, strlen(csr), cert_issued, p);
    }
    json_decref(body);
}

static int cert_one(void *arg, const store_cert_t *c)
{
    return json_array_append_new(arg, cert_json(c));
}

void api_certs_list(api_req_t *r)
{
    registry_device_t *d = registry_find(r->api->deps.registry, r->id);
    if (d == NULL) {
        api_reply_error(r->api, r->req, 404, "not_found", "no device '%s'", r->id);
        return;
    }
    json_t *arr = json_array();
    int rc = arr != NULL ? store_cert_list(r->api->deps.store, d->key, cert_one, arr) : -ENOMEM;
    api_reply_list(r->api, r->req, arr, rc, "certificates", "listing certificates");
}

static void cert_revoked(void *arg, int rc)
{
    api_pending_t *p = arg;
    if (p->req != NULL) {
        if (rc == 0)
            api_reply_json(p->api, p->req, 200,
                           json_pack("{s:s, s:b}", "serial", p->id, "revoked", 1));
        else if (rc == -ENOENT)
            api_reply_error(p->api, p->req, 404, "not_found", "no certificate '%s'", p->id);
        else
            api_reply_errno(p->api, p->req, rc, "revoking the certificate");
    }
    api_pending_free(p);
}

void api_certs_revoke(api_req_t *r)
{
    if (r->api->deps.pki == NULL) {
        api_reply_error(r->api, r->req, 503, "unavailable", "the fleet CA is not configured");
        return;
    }
    api_pending_t *p = api_pending_new(r);
    if (p == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        return;
    }
    pki_revoke_cert(r->api->deps.pki, r->id, cert_revoked, p);
}

static void device_revoked(void *arg, int rc)
{
    api_pending_t *p = arg;
    if (p->req != NULL) {
        if (rc == 0)
            api_reply_json(p->api, p->req, 200,
                           json_pack("{s:s, s:b, s:I}", "id", p->id, "revoked", 1, "revoked_at",
                                     (json_int_t)util_now_ms()));
        else if (rc == -ENOENT)
            api_reply_error(p->api, p->req, 404, "not_found", "no device '%s'", p->id);
        else
            api_reply_errno(p->api, p->req, rc, "revoking the device");
    }
    api_pending_free(p);
}

void api_devices_revoke(api_req_t *r)
{
    if (api_store_busy(r))
        return;
    api_pending_t *p = api_pending_new(r);
    if (p == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        return;
    }
    registry_revoke(r->api->deps.registry, r->id, device_revoked, p);
}

/* ---- Bulk import ------------------------------------------------------------------ */

typedef struct import_rows {
    char **ids;
    char **tags;
    size_t n, cap;
} import_rows_t;

static void rows_fini(import_rows_t *rows)
{
    for (size_t i = 0; i < rows->n; i++) {
        free(rows->ids[i]);
        free(rows->tags[i]);
    }
    free(rows->ids);
    free(rows->tags);
}

static int rows_add(import_rows_t *rows, const char *id, size_t idlen, json_t *tags)
{
    if (rows->n == rows->cap) {
        size_t cap = rows->cap ? rows->cap * 2 : 64;
        char **a = realloc(rows->ids, cap * sizeof(*a));
        if (a == NULL)
            return -ENOMEM;
        rows->ids = a;
        char **b = realloc(rows->tags, cap * sizeof(*b));
        if (b == NULL)
            return -ENOMEM;
        rows->tags = b;
        rows->cap = cap;
    }
    rows->ids[rows->n] = strndup(id, idlen);
    rows->tags[rows->n] = json_util_dump(tags);
    if (rows->ids[rows->n] == NULL || rows->tags[rows->n] == NULL) {
        free(rows->ids[rows->n]);
        free(rows->tags[rows->n]);
        return -ENOMEM;
    }
    rows->n++;
    return 0;
}

/* Splits one CSV line (RFC 4180: quoted fields with "" escapes) into at
 * most max fields, in place. Returns the count or -1 if malformed. */
static int csv_split(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max)
            return -1;
        if (*p == '"') {
            char *out = ++p, *start = p;
            for (;;) {
                if (*p == '\0')
                    return -1;
                if (*p == '"' && p[1] == '"') {
                    *out++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *out++ = *p++;
                }
            }
            if (*p != ',' && *p != '\0')
                return -1;
            char end = *p;
            *out = '\0';
            fields[n++] = start;
            if (end == '\0')
                return n;
            p++;
        } else {
            fields[n++] = p;
            char *comma = strchr(p, ',');
            if (comma == NULL)
                return n;
            *comma = '\0';
            p = comma + 1;
        }
    }
}

#define CSV_MAX_COLS 65

/* Parses the body into rows; on error replies 400 naming the row. */
static int parse_import(api_req_t *r, char *text, bool csv, import_rows_t *rows)
{
    char *line, *next = text;
    size_t lineno = 0;
    char *header[CSV_MAX_COLS];
    char hdr_copy[4096];
    int ncols = 0, id_col = -1;
    strmap_t seen;
    strmap_init(&seen);
    int rc = 0;
    while ((line = next) != NULL && *line != '\0') {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        next = nl != NULL ? nl + 1 : NULL;
        lineno++;
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        if (len == 0)
            continue;
        json_t *tags = NULL;
        const char *id = NULL;
        size_t idlen = 0;
        char why[160] = "";
        if (csv) {
            char *fields[CSV_MAX_COLS];
            if (ncols == 0) {
                /* The header: "id" and tag names. */
                if (len >= sizeof(hdr_copy)) {
                    snprintf(why, sizeof(why), "header line too long");
                    goto bad;
                }
                memcpy(hdr_copy, line, len + 1);
                ncols = csv_split(hdr_copy, header, CSV_MAX_COLS);
                for (int i = 0; i < ncols; i++) {
                    if (strcmp(header[i], "id") == 0)
                        id_col = i;
                    else if (header[i][0] == '\0' || strlen(header[i]) > 64 ||
                             strchr(header[i], '=') != NULL)
                        ncols = -1;
                }
                if (ncols <= 0 || id_col < 0) {
                    snprintf(why, sizeof(why),
                             "the header must name an \"id\" column and tag columns");
                    goto bad;
                }
                continue;
            }
            int n = csv_split(line, fields, CSV_MAX_COLS);
            if (n != ncols) {
                snprintf(why, sizeof(why), "expected %d fields", ncols);
                goto bad;
            }
            tags = json_object();
            for (int i = 0; i < n; i++) {
                if (i == id_col) {
                    id = fields[i];
                    idlen = strlen(id);
                } else if (fields[i][0] != '\0') {
                    if (strlen(fields[i]) > 256) {
                        snprintf(why, sizeof(why), "tag \"%s\" longer than 256 bytes", header[i]);
                        goto bad;
                    }
                    json_object_set_new(tags, header[i], json_string(fields[i]));
                }
            }
        } else {
            json_t *o = json_util_parse(line, len, why, sizeof(why));
            if (o == NULL)
                goto bad;
            id = json_string_value(json_object_get(o, "id"));
            idlen = id ? strlen(id) : 0;
            json_t *t = json_object_get(o, "tags");
            tags = json_is_object(t)       ? json_incref(t)
                   : json_is_null(t) || !t ? json_object()
                                           : NULL;
            const char *tag_err = tags != NULL ? registry_tags_check(tags) : NULL;
            if (tag_err != NULL) {
                snprintf(why, sizeof(why), "%s", tag_err);
                json_decref(tags);
                json_decref(o);
                goto bad;
            }
            if (id != NULL)
                id = strndup(id, idlen);
            json_decref(o);
            if (tags == NULL) {
                snprintf(why, sizeof(why), "\"tags\" must be an object");
                free((char *)id);
                goto bad;
            }
            if (id == NULL) {
                snprintf(why, sizeof(why), "each line is {\"id\": ..., \"tags\": {...}}");
                json_decref(tags);
                goto bad;
            }
        }
        if (id == NULL || !util_id_valid(id, idlen)) {
            snprintf(why, sizeof(why), "invalid device id");
        } else if (strmap_get(&seen, id, idlen) != NULL) {
            snprintf(why, sizeof(why), "device '%.*s' appears twice", (int)idlen, id);
        } else if (registry_find(r->api->deps.registry, id) != NULL) {
            snprintf(why, sizeof(why), "device '%.*s' exists", (int)idlen, id);
        } else if (rows->n >= r->api->deps.config->max_bulk_devices) {
            snprintf(why, sizeof(why), "more than %u devices (max_bulk_devices)",
                     r->api->deps.config->max_bulk_devices);
        } else if (rows_add(rows, id, idlen, tags) < 0 ||
                   strmap_put(&seen, rows->ids[rows->n - 1], idlen, rows) < 0) {
            snprintf(why, sizeof(why), "out of memory");
        }
        if (!csv)
            free((char *)id);
        json_decref(tags);
        if (why[0])
            goto bad;
        continue;
    bad:
        api_reply_error(r->api, r->req, 400, "bad_request", "line %zu: %s; nothing was imported",
                        lineno, why);
        rc = -EINVAL;
        break;
    }
    strmap_fini(&seen);
    if (rc == 0 && rows->n == 0) {
        api_reply_error(r->api, r->req, 400, "bad_request", "no devices to import");
        rc = -EINVAL;
    }
    return rc;
}

typedef struct importop {
    api_pending_t *p;
    import_rows_t rows;
} importop_t;

static void imported(void *arg, int rc, const char *const *secrets, size_t n)
{
    importop_t *op = arg;
    api_pending_t *p = op->p;
    if (p->req != NULL) {
        if (rc == 0) {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(
                    arr, json_pack("{s:s, s:s}", "id", op->rows.ids[i], "secret", secrets[i]));
            api_reply_json(p->api, p->req, 201,
                           json_pack("{s:I, s:o}", "count", (json_int_t)n, "devices", arr));
        } else if (rc == -EEXIST) {
            api_reply_error(p->api, p->req, 409, "conflict",
                            "a device of the import exists now; nothing was imported");
        } else {
            api_reply_errno(p->api, p->req, rc, "importing devices");
        }
    }
    api_pending_free(p);
    rows_fini(&op->rows);
    free(op);
}

void api_devices_import(api_req_t *r)
{
    if (api_store_busy(r))
        return;
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t len = evbuffer_get_length(in);
    if (len > r->api->deps.config->max_body) {
        api_reply_error(r->api, r->req, 413, "payload_too_large",
                        "the import is larger than %u bytes (max_body)",
                        r->api->deps.config->max_body);
        return;
    }
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(r->req), "Content-Type");
    bool csv = ct != NULL && strncmp(ct, "text/csv", 8) == 0;
    if (!csv && ct != NULL && strncmp(ct, "application/x-ndjson", 20) != 0 &&
        strncmp(ct, "application/jsonl", 17) != 0 && strncmp(ct, "application/json", 16) != 0) {
        api_reply_error(r->api, r->req, 415, "unsupported_media_type",
                        "send text/csv (a header row with \"id\" and tag columns) or "
                        "application/x-ndjson (one {\"id\", \"tags\"} object per line)");
        return;
    }
    char *text = malloc(len + 1);
    importop_t *op = calloc(1, sizeof(*op));
    if (text == NULL || op == NULL) {
        free(text);
        free(op);
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        return;
    }
    evbuffer_copyout(in, text, len);
    text[len] = '\0';
    if (strlen(text) != len) {
        free(text);
        free(op);
        api_reply_error(r->api, r->req, 400, "bad_request", "the body holds a NUL byte");
        return;
    }
    int rc = parse_import(r, text, csv, &op->rows);
    free(text);
    if (rc < 0) {
        rows_fini(&op->rows);
        free(op);
        return;
    }
    op->p = api_pending_new(r);
    if (op->p == NULL) {
        rows_fini(&op->rows);
        free(op);
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        return;
    }
    registry_import(r->api->deps.registry, (const char *const *)op->rows.ids,
                    (const char *const *)op->rows.tags, op->rows.n, imported, op);
}

/* ---- Enrollment and provisioning ---------------------------------------------------- */

static void json_done(void *arg, int rc, json_t *out, const char *err)
{
    api_pending_t *p = arg;
    if (p->req == NULL) {
        json_decref(out);
    } else if (rc == 0) {
        api_reply_json(p->api, p->req, 201, out);
    } else {
        json_decref(out);
        switch (rc) {
        case -EINVAL:
        case -EPERM:
            api_reply_error(p->api, p->req, 400, "bad_request", "%s", err);
            break;
        case -EACCES:
            api_reply_error(p->api, p->req, 401, "unauthorized", "%s", err);
            break;
        case -EKEYEXPIRED:
        case -EKEYREVOKED:
        case -EDQUOT:
            api_reply_error(p->api, p->req, 403, "forbidden", "%s", err);
            break;
        case -EEXIST:
            api_reply_error(p->api, p->req, 409, "conflict", "%s", err);
            break;
        default:
            api_reply_errno(p->api, p->req, rc, "provisioning");
            break;
        }
    }
    api_pending_free(p);
}

void api_enrollments_create(api_req_t *r)
{
    json_t *body = NULL;
    if (api_store_busy(r) || api_body_json(r, &body) < 0)
        return;
    api_pending_t *p = api_pending_new(r);
    if (p == NULL)
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
    else
        pki_enrollment_create(r->api->deps.pki, body, json_done, p);
    json_decref(body);
}

static int enrollment_one(void *arg, const store_enrollment_t *e)
{
    return json_array_append_new(arg, pki_enrollment_json(e));
}

void api_enrollments_list(api_req_t *r)
{
    json_t *arr = json_array();
    int rc = arr != NULL ? store_enrollment_list(r->api->deps.store, enrollment_one, arr) : -ENOMEM;
    api_reply_list(r->api, r->req, arr, rc, "enrollments", "listing enrollments");
}

void api_enrollments_get(api_req_t *r)
{
    store_enrollment_t e;
    int rc = store_enrollment_get(r->api->deps.store, r->id, &e);
    if (rc == -ENOENT) {
        api_reply_error(r->api, r->req, 404, "not_found", "no enrollment '%s'", r->id);
        return;
    }
    if (rc < 0) {
        api_reply_errno(r->api, r->req, rc, "reading the enrollment");
        return;
    }
    api_reply_json(r->api, r->req, 200, pki_enrollment_json(&e));
    store_enrollment_fini(&e);
}

static void enrollment_revoked(void *arg, int rc, int64_t value)
{
    (void)value;
    api_pending_t *p = arg;
    if (p->req != NULL) {
        if (rc == 0)
            api_reply_json(p->api, p->req, 200, json_pack("{s:s, s:b}", "id", p->id, "revoked", 1));
        else if (rc == -ENOENT)
            api_reply_error(p->api, p->req, 404, "not_found", "no enrollment '%s'", p->id);
        else
            api_reply_errno(p->api, p->req, rc, "revoking the enrollment");
    }
    api_pending_free(p);
}

void api_enrollments_revoke(api_req_t *r)
{
    api_pending_t *p = api_pending_new(r);
    if (p == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        return;
    }
    store_enrollment_revoke(r->api->deps.store, r->id, util_now_ms(), enrollment_revoked, p);
}

void api_provision(api_req_t *r)
{
    json_t *body = NULL;
    if (r->api->deps.pki == NULL) {
        api_reply_error(r->api, r->req, 503, "unavailable", "the fleet CA is not configured");
        return;
    }
    if (api_store_busy(r) || api_body_json(r, &body) < 0)
        return;
    const char *token = json_string_value(json_object_get(body, "claim_token"));
    const char *id = json_string_value(json_object_get(body, "id"));
    const char *csr = body_csr(r, body);
    if (csr != NULL) {
        api_req_t sub = *r;
        sub.id = id != NULL && util_id_valid(id, strlen(id)) ? id : NULL;
        api_pending_t *p = api_pending_new(&sub);
        if (p == NULL)
            api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        else
            pki_provision(r->api->deps.pki, token, id, csr, strlen(csr), json_done, p);
    }
    json_decref(body);
}

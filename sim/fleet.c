/*
 * Fleet creation over REST (see fleet.h).
 *
 * One curl multi handle with --api-concurrency easy handles ("slots");
 * each slot carries one request at a time and is re-armed with the next
 * device when its answer is in. The multi handle keeps the connections
 * alive between requests. Responses are collected into a per-slot buffer
 * capped at RESP_MAX (a create answer is a few hundred bytes).
 *
 * Runs in the parent process before the workers are forked; blocking is
 * fine here.
 */
#include "sim/fleet.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define RESP_MAX 16384
#define ATTEMPTS_MAX 20

typedef enum { REQ_CREATE, REQ_ROTATE } req_kind_t;

typedef struct {
    CURL *h;
    int64_t dev; /* index into c, -1 = idle */
    req_kind_t kind;
    char resp[RESP_MAX];
    size_t resp_len;
    bool resp_truncated;
    char *body;
    char url[256];
} slot_t;

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    slot_t *s = arg;
    size_t n = size * nmemb;
    size_t room = RESP_MAX - 1 - s->resp_len;
    if (n > room) {
        s->resp_truncated = true;
        n = room;
    }
    memcpy(s->resp + s->resp_len, p, n);
    s->resp_len += n;
    s->resp[s->resp_len] = '\0';
    return size * nmemb;
}

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* Arms slot s for device dev; 0 or -ENOMEM. */
static int arm(const sim_opts_t *o, slot_t *s, const sim_cred_t *c, int64_t dev, req_kind_t kind,
               struct curl_slist *headers)
{
    s->dev = dev;
    s->kind = kind;
    s->resp_len = 0;
    s->resp[0] = '\0';
    s->resp_truncated = false;
    free(s->body);
    s->body = NULL;
    if (kind == REQ_CREATE) {
        snprintf(s->url, sizeof(s->url), "http://%s:%d/api/v1/devices", o->api_host, o->api_port);
        json_t *b = json_pack("{s:s, s:{s:s}}", "id", c[dev].id, "tags", "fleet", o->fleet_tag);
        s->body = b ? json_dumps(b, JSON_COMPACT) : NULL;
        json_decref(b);
    } else {
        snprintf(s->url, sizeof(s->url), "http://%s:%d/api/v1/devices/%s/secret", o->api_host,
                 o->api_port, c[dev].id);
        s->body = strdup("");
    }
    if (!s->body)
        return -ENOMEM;
    curl_easy_reset(s->h);
    curl_easy_setopt(s->h, CURLOPT_URL, s->url);
    curl_easy_setopt(s->h, CURLOPT_POST, 1L);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body));
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
    curl_easy_setopt(s->h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->h, CURLOPT_TCP_NODELAY, 1L);
    return 0;
}

/* The "secret" member of a JSON answer. */
static int take_secret(const char *resp, sim_cred_t *c)
{
    json_error_t e;
    json_t *doc = json_loads(resp, 0, &e);
    json_t *sec = json_is_object(doc) ? json_object_get(doc, "secret") : NULL;
    int rc = -EPROTO;
    if (json_is_string(sec) && json_string_length(sec) > 0 &&
        json_string_length(sec) < SIM_SECRET_MAX) {
        memcpy(c->secret, json_string_value(sec), json_string_length(sec) + 1);
        rc = 0;
    }
    json_decref(doc);
    return rc;
}

int sim_fleet_create(const sim_opts_t *o, sim_cred_t *c, uint32_t n, FILE *progress,
                     sim_fleet_result_t *res, char *err, size_t errlen)
{
    int rc = 0;
    CURLM *m = NULL;
    struct curl_slist *headers = NULL;
    slot_t *slots = NULL;
    uint32_t nslots = o->api_concurrency < n ? o->api_concurrency : n;
    int64_t *retry = NULL; /* devices to try again (index, kind in sign) */
    uint8_t *tries = NULL; /* failed attempts per device */
    uint32_t nretry = 0;
    int64_t retry_after = 0;
    if (n == 0) {
        *res = (sim_fleet_result_t){0};
        return 0;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return set_err(err, errlen, -EIO, "curl_global_init failed");
    char auth[600];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o->token);
    struct curl_slist *h1 = curl_slist_append(NULL, auth);
    struct curl_slist *h2 = h1 ? curl_slist_append(h1, "Content-Type: application/json") : NULL;
    struct curl_slist *h3 = h2 ? curl_slist_append(h2, "Expect:") : NULL;
    if (!h3) {
        curl_slist_free_all(h1);
        rc = set_err(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    headers = h3;
    m = curl_multi_init();
    slots = calloc(nslots, sizeof(*slots));
    retry = calloc(n, sizeof(*retry));
    tries = calloc(n, sizeof(*tries));
    if (!m || !slots || !retry || !tries) {
        rc = set_err(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)nslots);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)nslots);
    for (uint32_t i = 0; i < nslots; i++) {
        slots[i].dev = -1;
        slots[i].h = curl_easy_init();
        if (!slots[i].h) {
            rc = set_err(err, errlen, -ENOMEM, "curl_easy_init failed");
            goto out;
        }
    }

    uint32_t next = 0, done = 0, created = 0, rotated = 0;
    int64_t t0 = util_mono_us(), next_progress = t0 + 1000000;
    while (done < n) {
        /* Fill idle slots: retries first, then new devices. */
        for (uint32_t i = 0; i < nslots; i++) {
            slot_t *s = &slots[i];
            if (s->dev >= 0)
                continue;
            int64_t dev;
            req_kind_t kind;
            if (nretry > 0 && util_mono_us() >= retry_after) {
                int64_t r = retry[--nretry];
                dev = r >= 0 ? r : -r - 1;
                kind = r >= 0 ? REQ_CREATE : REQ_ROTATE;
            } else if (next < n) {
                dev = next++;
                kind = REQ_CREATE;
            } else {
                break;
            }
            if (arm(o, s, c, dev, kind, headers) < 0) {
                rc = set_err(err, errlen, -ENOMEM, "out of memory");
                goto out;
            }
            curl_multi_add_handle(m, s->h);
        }
        int running = 0;
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            rc = set_err(err, errlen, -EIO, "curl_multi_perform failed");
            goto out;
        }
        int nfds;
        curl_multi_poll(m, NULL, 0, 200, &nfds);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            slot_t *s = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            CURLcode cc = msg->data.result;
            long status = 0;
            curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle(m, s->h);
            int64_t dev = s->dev;
            s->dev = -1;
            bool again = cc != CURLE_OK || status == 503 || status == 429;
            if (again) {
                if (++tries[dev] >= ATTEMPTS_MAX) {
                    rc =
                        set_err(err, errlen, -EIO, "POST %s: %s (after %d attempts)", s->url,
                                cc != CURLE_OK ? curl_easy_strerror(cc) : s->resp, (int)tries[dev]);
                    goto out;
                }
                /* The server is busy: try again in a moment. */
                retry[nretry++] = s->kind == REQ_CREATE ? dev : -dev - 1;
                retry_after = util_mono_us() + 50000;
                continue;
            }
            if (s->kind == REQ_CREATE && status == 409) {
                /* Already there (an earlier run): issue a new secret. */
                retry[nretry++] = -dev - 1;
                continue;
            }
            bool ok = (s->kind == REQ_CREATE && status == 201) ||
                      (s->kind == REQ_ROTATE && status == 200);
            if (!ok || s->resp_truncated || take_secret(s->resp, &c[dev]) < 0) {
                rc = set_err(err, errlen, -EPROTO, "POST %s for %s: HTTP %ld %.300s", s->url,
                             c[dev].id, status, s->resp);
                goto out;
            }
            if (s->kind == REQ_CREATE)
                created++;
            else
                rotated++;
            done++;
        }
        int64_t now = util_mono_us();
        if (progress && now >= next_progress) {
            fprintf(progress, "drover-sim: creating devices: %u/%u (%.0f/s)\n", done, n,
                    (double)done * 1e6 / (double)(now - t0));
            next_progress = now + 1000000;
        }
    }
    double secs = (double)(util_mono_us() - t0) / 1e6;
    *res = (sim_fleet_result_t){.created = created, .existing = rotated, .elapsed_s = secs};
    if (progress) {
        double s = secs;
        fprintf(progress,
                "drover-sim: fleet ready: %u created, %u existing with a new secret, in %.1f s "
                "(%.0f/s)\n",
                created, rotated, s, s > 0 ? (double)n / s : 0);
    }
out:
    if (slots) {
        for (uint32_t i = 0; i < nslots; i++) {
            if (slots[i].h) {
                if (slots[i].dev >= 0)
                    curl_multi_remove_handle(m, slots[i].h);
                curl_easy_cleanup(slots[i].h);
            }
            free(slots[i].body);
        }
    }
    free(slots);
    free(retry);
    free(tries);
    if (m)
        curl_multi_cleanup(m);
    curl_slist_free_all(headers);
    curl_global_cleanup();
    return rc;
}

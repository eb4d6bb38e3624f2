/*
 * Zero-touch provisioning over HTTPS (agent_provision.h).
 *
 * Runs once, on the agent's thread, before the MQTT loop: nothing else is
 * going on yet, so a blocking libcurl easy handle is the simplest correct
 * tool. Every request has a connect and a total deadline, and libcurl's
 * progress callback polls ops->stopped() so SIGTERM ends a hanging request
 * at once.
 *
 * The key is made once and kept: a retry (or a restart in the middle of
 * provisioning) sends a CSR for the same key, so whatever the server
 * issued last always matches device.key. device.crt is written last; its
 * presence is what "provisioned" means (agent_cert.h).
 */
#include "agent_provision.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "agent_backoff.h"
#include "agent_cert.h"
#include "agent_fs.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

#ifndef DROVER_VERSION
#define DROVER_VERSION "dev"
#endif

#define ANSWER_MAX (256 * 1024)
#define REQUEST_TIMEOUT_S 60

bool agent_provision_status_final(long status)
{
    return status == 400 || status == 401 || status == 403 || status == 409;
}

struct answer {
    char *buf;
    size_t len;
    bool too_big;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n;
    if (a->len + len > ANSWER_MAX) {
        a->too_big = true;
        return 0; /* aborts the transfer */
    }
    char *nb = realloc(a->buf, a->len + len + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + a->len, p, len);
    a->len += len;
    nb[a->len] = '\0';
    a->buf = nb;
    return len;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    const agent_provision_ops_t *ops = arg;
    return ops->stopped(ops->ctx) ? 1 : 0;
}

/* One POST. Returns 0 with the HTTP status and body (caller frees), or
 * -EINTR (stopped) / -EIO (no answer; reason in err). */
static int post(const agent_config_t *cfg, const char *url, const char *ca, const char *body,
                const agent_provision_ops_t *ops, long *status, struct answer *ans, char *err,
                size_t errlen)
{
    char ebuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;
    int rc = -ENOMEM;
    CURL *c = curl_easy_init();
    if (c == NULL)
        goto fail;
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    struct curl_slist *h2 =
        hdrs != NULL ? curl_slist_append(hdrs, "Accept: application/json") : NULL;
    if (h2 == NULL)
        goto fail;
    hdrs = h2;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c, CURLOPT_USERAGENT, "drover-agent/" DROVER_VERSION);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)cfg->connect_timeout_s);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)REQUEST_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (ca != NULL) {
        /* Only this CA: not the system bundle, not a CA directory. */
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    } else {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ans);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)ops);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    CURLcode cr = curl_easy_perform(c);
    if (cr == CURLE_ABORTED_BY_CALLBACK) {
        rc = -EINTR;
        goto fail;
    }
    if (cr != CURLE_OK) {
        snprintf(err, errlen, "%s",
                 ans->too_big ? "answer too large" : (ebuf[0] ? ebuf : curl_easy_strerror(cr)));
        rc = -EIO;
        goto fail;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    rc = 0;
fail:
    curl_slist_free_all(hdrs);
    if (c != NULL)
        curl_easy_cleanup(c);
    return rc;
}

/* The key of an interrupted earlier attempt, or a new one. */
static int load_or_make_key(const agent_config_t *cfg, EVP_PKEY **out)
{
    char path[AGENT_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s", cfg->data_dir, AGENT_KEY_FILE);
    int rc = agent_cert_key_read(path, out);
    if (rc == 0) {
        log_info("agent: provisioning with the key already in %s", path);
        return 0;
    }
    if (rc != -ENOENT)
        log_warn("agent: %s is not a usable key (%s); making a new one", path, strerror(-rc));
    rc = agent_cert_keygen(out);
    if (rc < 0) {
        log_error("agent: cannot make a key: %s", strerror(-rc));
        return rc;
    }
    rc = agent_cert_key_write(cfg->data_dir, AGENT_KEY_FILE, *out);
    if (rc < 0) {
        log_error("agent: cannot write %s: %s", path, strerror(-rc));
        EVP_PKEY_free(*out);
        *out = NULL;
        return rc;
    }
    log_info("agent: made a new EC P-256 key in %s (mode 0600)", path);
    return 0;
}

/* Checks and stores the 201 answer. */
static int store_answer(const agent_config_t *cfg, EVP_PKEY *key, const char *body, size_t len)
{
    char *cert = NULL, *ca = NULL, err[256] = "";
    int rc = agent_cert_parse_answer(body, len, cfg->device_id, &cert, &ca, err, sizeof(err));
    if (rc == 0)
        rc = agent_cert_check(cert, strlen(cert), key, cfg->device_id, ca, strlen(ca), err,
                              sizeof(err));
    if (rc < 0) {
        log_error("agent: provisioning: the server's answer is unusable: %s", err);
        rc = -EPROTO;
        goto out;
    }
    /* ca.crt before device.crt: device.crt on disk means "done". */
    rc = agent_fs_write_atomic_mode(cfg->data_dir, AGENT_CA_FILE, ca, strlen(ca), true, 0644);
    if (rc == 0)
        rc = agent_fs_write_atomic_mode(cfg->data_dir, AGENT_CRT_FILE, cert, strlen(cert), true,
                                        0644);
    if (rc < 0)
        log_error("agent: cannot store the certificate in %s: %s", cfg->data_dir, strerror(-rc));
out:
    free(cert);
    free(ca);
    return rc;
}

static void explain_refusal(const agent_config_t *cfg, long status, const char *detail)
{
    const char *hint = "";
    switch (status) {
    case 401:
        hint = "the claim token is unknown: check claim_token";
        break;
    case 403:
        hint = "the claim token is used up, expired or revoked: ask for a new one";
        break;
    case 409:
        hint = "this device id is already registered: if this device provisioned before and "
               "lost its data directory, an operator must delete the device (or issue it a "
               "certificate) first";
        break;
    default:
        hint = "the request was refused";
        break;
    }
    log_error("agent: provisioning of %s refused by %s (HTTP %ld: %s): %s; not retrying",
              cfg->device_id, cfg->api_url, status, detail[0] ? detail : "no detail", hint);
}

static uint32_t rnd32(void)
{
    uint32_t r = 0;
    if (crypto_random((uint8_t *)&r, sizeof(r)) < 0)
        r = (uint32_t)util_mono_us();
    return r;
}

int agent_provision_run(const agent_config_t *cfg, const char *claim_token,
                        const agent_provision_ops_t *ops)
{
    EVP_PKEY *key = NULL;
    char *csr = NULL, *body = NULL;
    const char *ca = NULL;
    char url[sizeof(cfg->api_url) + 32];
    int rc;

    /* Whom to trust for HTTPS: the configured CA, or (only when asked for
     * explicitly) nobody, pinning whatever CA the server then sends. */
    struct stat st;
    if (cfg->ca_file[0] != '\0' && stat(cfg->ca_file, &st) == 0) {
        ca = cfg->ca_file;
    } else if (cfg->insecure_bootstrap) {
        log_warn("agent: insecure_bootstrap: provisioning WITHOUT verifying %s (%s); the CA it "
                 "sends is trusted from now on",
                 cfg->api_url,
                 cfg->ca_file[0] ? "ca_file does not exist yet" : "ca_file is not set");
    } else {
        log_error("agent: cannot provision: %s; the agent needs the CA that signed droverd's "
                  "HTTPS certificate (ship it with the device image), or insecure_bootstrap = "
                  "true to trust the server on first use",
                  cfg->ca_file[0] ? "ca_file does not exist" : "ca_file is not set");
        return -ENOENT;
    }

    size_t ul = strlen(cfg->api_url);
    while (ul > 0 && cfg->api_url[ul - 1] == '/')
        ul--;
    snprintf(url, sizeof(url), "%.*s/api/v1/provision", (int)ul, cfg->api_url);

    rc = load_or_make_key(cfg, &key);
    if (rc < 0)
        goto out;
    rc = agent_cert_csr(key, cfg->device_id, &csr);
    if (rc < 0) {
        log_error("agent: cannot make a CSR: %s", strerror(-rc));
        goto out;
    }
    json_t *req =
        json_pack("{s:s, s:s, s:s}", "claim_token", claim_token, "id", cfg->device_id, "csr", csr);
    body = req != NULL ? json_util_dump(req) : NULL;
    json_decref(req);
    if (body == NULL) {
        rc = -ENOMEM;
        log_error("agent: provisioning: out of memory (is the claim token UTF-8?)");
        goto out;
    }

    agent_backoff_t bo;
    agent_backoff_init(&bo, cfg->backoff_base_ms, cfg->backoff_max_ms);
    for (;;) {
        if (ops->stopped(ops->ctx)) {
            rc = -EINTR;
            goto out;
        }
        long status = 0;
        struct answer ans = {NULL, 0, false};
        char err[CURL_ERROR_SIZE + 64] = "";
        log_info("agent: provisioning %s at %s", cfg->device_id, url);
        rc = post(cfg, url, ca, body, ops, &status, &ans, err, sizeof(err));
        if (rc == 0 && status == 201) {
            rc = store_answer(cfg, key, ans.buf != NULL ? ans.buf : "", ans.len);
            free(ans.buf);
            if (rc == 0)
                log_info("agent: provisioned %s: certificate in %s/%s", cfg->device_id,
                         cfg->data_dir, AGENT_CRT_FILE);
            goto out;
        }
        if (rc == 0) {
            char detail[256];
            agent_cert_error_detail(ans.buf, ans.len, detail, sizeof(detail));
            free(ans.buf);
            if (agent_provision_status_final(status)) {
                explain_refusal(cfg, status, detail);
                rc = -EACCES;
                goto out;
            }
            log_warn("agent: provisioning: %s answered HTTP %ld (%s)", url, status,
                     detail[0] ? detail : "no detail");
        } else {
            free(ans.buf);
            if (rc == -EINTR)
                goto out;
            log_warn("agent: provisioning: %s: %s", url, err);
        }
        uint32_t d = agent_backoff_next(&bo, rnd32());
        log_info("agent: provisioning again in %u.%03u s", d / 1000, d % 1000);
        ops->sleep_ms(ops->ctx, d);
    }
out:
    if (body != NULL) {
        OPENSSL_cleanse(body, strlen(body)); /* it holds the claim token */
        free(body);
    }
    free(csr);
    EVP_PKEY_free(key);
    return rc;
}

/*
 * The revoked set is a strmap of serials (keys owned by the map's values,
 * one small allocation each), loaded at start from the store's revoked,
 * unexpired certificates and grown as certificates are revoked. It is
 * what makes revocation take effect at the next CONNECT without a
 * database read; the store remains the record.
 */
#include "pki/pki.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/strmap.h"
#include "common/util.h"

#define CLAIM_PREFIX "drc_"
#define CLAIM_LEN (4 + CRYPTO_SECRET_LEN)

struct pki {
    store_t *st;
    registry_t *reg;
    twin_t *twin;
    ca_t *ca;
    const config_t *cfg;
    strmap_t revoked; /* serial -> its own copy */
    pki_revoked_fn hook;
    void *hook_ctx;
};

static void revoked_add(pki_t *p, const char *serial)
{
    if (strmap_get(&p->revoked, serial, strlen(serial)) != NULL)
        return;
    char *s = strdup(serial);
    if (s != NULL && strmap_put(&p->revoked, s, strlen(s), s) < 0)
        free(s);
}

static int load_revoked(void *arg, const store_cert_t *c)
{
    revoked_add(arg, c->serial);
    return 0;
}

int pki_new(store_t *st, registry_t *reg, twin_t *twin, ca_t *ca, const config_t *cfg, pki_t **out)
{
    pki_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->st = st;
    p->reg = reg;
    p->twin = twin;
    p->ca = ca;
    p->cfg = cfg;
    strmap_init(&p->revoked);
    int rc = store_cert_foreach_revoked(st, util_now_ms(), load_revoked, p);
    if (rc < 0) {
        pki_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void pki_free(pki_t *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->revoked.cap; i++)
        free(p->revoked.slots[i].val);
    strmap_fini(&p->revoked);
    free(p);
}

const char *pki_ca_pem(const pki_t *p)
{
    return ca_cert_pem(p->ca);
}

void pki_set_revoke_hook(pki_t *p, pki_revoked_fn fn, void *ctx)
{
    p->hook = fn;
    p->hook_ctx = ctx;
}

bool pki_serial_revoked(const pki_t *p, const char *serial)
{
    return strmap_get(&p->revoked, serial, strlen(serial)) != NULL;
}

/* ---- Issuing ------------------------------------------------------------------ */

typedef struct issueop {
    pki_t *p;
    store_cert_t cert;
    pki_issue_fn done;
    void *arg;
} issueop_t;

static void issued(void *arg, int rc, int64_t value)
{
    (void)value;
    issueop_t *op = arg;
    op->done(op->arg, rc, rc == 0 ? &op->cert : NULL, rc == 0 ? NULL : "storing failed");
    free(op->cert.pem);
    free(op);
}

/* Signs csr for device d and stores the certificate; done after commit. */
static void issue_for(pki_t *p, const registry_device_t *d, const char *csr, size_t len,
                      pki_issue_fn done, void *arg)
{
    char err[160] = "";
    ca_issued_t ci;
    int rc = ca_sign_csr(p->ca, csr, len, d->id, p->cfg->cert_lifetime_s, &ci, err, sizeof(err));
    if (rc < 0) {
        done(arg, rc, NULL, err[0] ? err : "the CSR was refused");
        return;
    }
    issueop_t *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        ca_issued_fini(&ci);
        done(arg, -ENOMEM, NULL, "out of memory");
        return;
    }
    op->p = p;
    op->done = done;
    op->arg = arg;
    snprintf(op->cert.serial, sizeof(op->cert.serial), "%s", ci.serial);
    op->cert.device_key = d->key;
    snprintf(op->cert.device_id, sizeof(op->cert.device_id), "%s", d->id);
    op->cert.not_before = ci.not_before;
    op->cert.not_after = ci.not_after;
    op->cert.created_at = util_now_ms();
    op->cert.pem = ci.pem; /* taken */
    ci.pem = NULL;
    ca_issued_fini(&ci);
    store_cert_insert(p->st, &op->cert, issued, op);
}

void pki_issue(pki_t *p, const char *device_id, const char *csr, size_t len, pki_issue_fn done,
               void *arg)
{
    registry_device_t *d = registry_find(p->reg, device_id);
    if (d == NULL) {
        done(arg, -ENOENT, NULL, "no such device");
        return;
    }
    if (d->revoked) {
        done(arg, -EACCES, NULL, "the device's credentials are revoked");
        return;
    }
    issue_for(p, d, csr, len, done, arg);
}

/* ---- Revocation ------------------------------------------------------------------- */

typedef struct revop {
    pki_t *p;
    char serial[80];
    char device[DROVER_ID_MAX + 1];
    pki_done_fn done;
    void *arg;
} revop_t;

static void cert_revoked(void *arg, int rc, int64_t value)
{
    (void)value;
    revop_t *op = arg;
    if (rc == 0) {
        revoked_add(op->p, op->serial);
        if (op->p->hook)
            op->p->hook(op->p->hook_ctx, op->device, op->serial);
    }
    if (op->done)
        op->done(op->arg, rc);
    free(op);
}

void pki_revoke_cert(pki_t *p, const char *serial, pki_done_fn done, void *arg)
{
    store_cert_t c;
    int rc = store_cert_get(p->st, serial, &c);
    if (rc < 0) {
        if (done)
            done(arg, rc);
        return;
    }
    revop_t *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        store_cert_fini(&c);
        if (done)
            done(arg, -ENOMEM);
        return;
    }
    op->p = p;
    snprintf(op->serial, sizeof(op->serial), "%s", c.serial);
    snprintf(op->device, sizeof(op->device), "%s", c.device_id);
    op->done = done;
    op->arg = arg;
    /* Revoked now: the in-memory set refuses it at once, even before the
     * write lands, so no new connection slips through the gap. */
    revoked_add(p, c.serial);
    store_cert_revoke(p->st, c.serial, c.device_key, util_now_ms(), cert_revoked, op);
    store_cert_fini(&c);
}

static int add_device_cert(void *arg, const store_cert_t *c)
{
    revoked_add(arg, c->serial);
    return 0;
}

void pki_device_revoked(pki_t *p, int64_t device_key)
{
    store_cert_list(p->st, device_key, add_device_cert, p);
}

/* ---- Enrollment -------------------------------------------------------------------- */

json_t *pki_enrollment_json(const store_enrollment_t *e)
{
    json_t *tags = json_loads(e->tags ? e->tags : "{}", 0, NULL);
    json_t *desired = json_loads(e->desired ? e->desired : "{}", 0, NULL);
    int64_t now = util_now_ms();
    const char *state = e->revoked_at                           ? "revoked"
                        : e->expires_at && e->expires_at <= now ? "expired"
                        : e->uses >= e->max_uses                ? "used_up"
                                                                : "active";
    return json_pack("{s:s, s:s, s:I, s:I, s:o, s:o, s:s, s:o, s:I, s:s}", "id", e->id, "name",
                     e->name, "max_uses", (json_int_t)e->max_uses, "uses", (json_int_t)e->uses,
                     "expires_at", e->expires_at ? json_integer(e->expires_at) : json_null(),
                     "tags", tags ? tags : json_object(), "group", e->grp, "desired",
                     desired ? desired : json_object(), "created_at", (json_int_t)e->created_at,
                     "state", state);
}

typedef struct enrollop {
    store_enrollment_t e;
    char token[CLAIM_LEN + 1];
    pki_json_fn done;
    void *arg;
} enrollop_t;

static void enrollment_stored(void *arg, int rc, int64_t value)
{
    (void)value;
    enrollop_t *op = arg;
    json_t *out = NULL;
    if (rc == 0) {
        out = pki_enrollment_json(&op->e);
        if (out != NULL)
            json_object_set_new(out, "claim_token", json_string(op->token));
    }
    op->done(op->arg, rc, out, rc == 0 ? NULL : "storing failed");
    OPENSSL_cleanse(op->token, sizeof(op->token));
    store_enrollment_fini(&op->e);
    free(op);
}

void pki_enrollment_create(pki_t *p, const json_t *spec, pki_json_fn done, void *arg)
{
    const char *why = NULL;
    enrollop_t *op = NULL;
    if (!json_is_object(spec)) {
        why = "the body must be a JSON object";
        goto bad;
    }
    const char *name = json_string_value(json_object_get(spec, "name"));
    json_t *jmax = json_object_get(spec, "max_uses");
    json_t *jexp = json_object_get(spec, "expires_in_s");
    json_t *tags = json_object_get(spec, "tags");
    json_t *grp = json_object_get(spec, "group");
    json_t *desired = json_object_get(spec, "desired");
    if (name == NULL || strlen(name) == 0 || strlen(name) > 127) {
        why = "\"name\" must be a string of 1 to 127 bytes";
        goto bad;
    }
    if (!json_is_integer(jmax) || json_integer_value(jmax) < 1 ||
        json_integer_value(jmax) > p->cfg->claim_max_uses) {
        why = "\"max_uses\" must be a positive integer";
        goto bad;
    }
    if (jexp != NULL && !json_is_null(jexp) &&
        (!json_is_integer(jexp) || json_integer_value(jexp) < 60 ||
         json_integer_value(jexp) > 10LL * 365 * 24 * 3600)) {
        why = "\"expires_in_s\" must be an integer from 60 to 10 years";
        goto bad;
    }
    if (tags != NULL && !json_is_null(tags) && (why = registry_tags_check(tags)) != NULL)
        goto bad;
    if (grp != NULL && !json_is_null(grp) &&
        (!json_is_string(grp) || !util_id_valid(json_string_value(grp), json_string_length(grp)))) {
        why = "\"group\" must be 1 to 64 characters of [A-Za-z0-9._-]";
        goto bad;
    }
    if (desired != NULL && !json_is_null(desired) &&
        (!json_is_object(desired) || json_util_depth(desired) > (int)p->cfg->max_twin_depth)) {
        why = "\"desired\" must be a JSON object within the twin limits";
        goto bad;
    }
    op = calloc(1, sizeof(*op));
    if (op == NULL) {
        done(arg, -ENOMEM, NULL, "out of memory");
        return;
    }
    op->done = done;
    op->arg = arg;
    uint8_t rnd[12];
    if (crypto_random(rnd, sizeof(rnd)) < 0 ||
        crypto_secret_new(CLAIM_PREFIX, op->token, sizeof(op->token)) < 0) {
        free(op);
        done(arg, -EIO, NULL, "no randomness");
        return;
    }
    memcpy(op->e.id, "enr_", 4);
    util_hex_encode(rnd, sizeof(rnd), op->e.id + 4);
    snprintf(op->e.name, sizeof(op->e.name), "%s", name);
    op->e.max_uses = json_integer_value(jmax);
    op->e.created_at = util_now_ms();
    op->e.expires_at =
        json_is_integer(jexp) ? op->e.created_at + json_integer_value(jexp) * 1000 : 0;
    op->e.tags = json_is_object(tags) ? json_util_dump(tags) : strdup("{}");
    op->e.desired = json_is_object(desired) ? json_util_dump(desired) : strdup("{}");
    snprintf(op->e.grp, sizeof(op->e.grp), "%s", json_is_string(grp) ? json_string_value(grp) : "");
    if (op->e.tags == NULL || op->e.desired == NULL) {
        store_enrollment_fini(&op->e);
        free(op);
        done(arg, -ENOMEM, NULL, "out of memory");
        return;
    }
    uint8_t hash[CRYPTO_HASH_LEN];
    crypto_sha256(op->token, strlen(op->token), hash);
    store_enrollment_insert(p->st, &op->e, hash, enrollment_stored, op);
    return;
bad:
    done(arg, -EINVAL, NULL, why);
}

/* ---- Provisioning ---------------------------------------------------------------------- */

typedef struct provop {
    pki_t *p;
    store_device_t dev;
    char *desired; /* the enrollment's initial desired state */
    ca_issued_t ci;
    pki_json_fn done;
    void *arg;
} provop_t;

static void provop_free(provop_t *op)
{
    free(op->dev.tags_json);
    free(op->desired);
    ca_issued_fini(&op->ci);
    free(op);
}

static void prov_cert_stored(void *arg, int rc, int64_t value)
{
    (void)value;
    provop_t *op = arg;
    json_t *out = NULL;
    if (rc == 0)
        out = json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", op->dev.id, "certificate", op->ci.pem,
                        "ca_certificate", pki_ca_pem(op->p), "serial", op->ci.serial, "not_after",
                        (json_int_t)op->ci.not_after);
    op->done(op->arg, rc, out, rc == 0 ? NULL : "storing the certificate failed");
    provop_free(op);
}

static void claimed(void *arg, int rc, int64_t key)
{
    provop_t *op = arg;
    pki_t *p = op->p;
    if (rc < 0) {
        const char *why = rc == -EKEYEXPIRED   ? "the claim token has expired"
                          : rc == -EKEYREVOKED ? "the claim token has been revoked"
                          : rc == -EDQUOT      ? "the claim token has been used up"
                          : rc == -EEXIST      ? "a device with this id exists"
                          : rc == -ENOENT      ? "unknown claim token"
                                               : "provisioning failed";
        op->done(op->arg, rc == -ENOENT ? -EACCES : rc, NULL, why);
        provop_free(op);
        return;
    }
    op->dev.key = key;
    op->dev.last_seq = -1;
    registry_adopt(p->reg, &op->dev);
    /* The enrollment's initial desired state, if any. */
    json_t *desired = json_loads(op->desired, 0, NULL);
    if (json_is_object(desired) && json_object_size(desired) > 0)
        twin_desired_update(p->twin, op->dev.id, desired, false, -1, NULL, NULL);
    json_decref(desired);
    store_cert_t c;
    memset(&c, 0, sizeof(c));
    snprintf(c.serial, sizeof(c.serial), "%s", op->ci.serial);
    c.device_key = key;
    c.not_before = op->ci.not_before;
    c.not_after = op->ci.not_after;
    c.created_at = util_now_ms();
    c.pem = op->ci.pem;
    store_cert_insert(p->st, &c, prov_cert_stored, op);
}

void pki_provision(pki_t *p, const char *claim_token, const char *device_id, const char *csr,
                   size_t len, pki_json_fn done, void *arg)
{
    char err[160] = "";
    if (device_id == NULL || !util_id_valid(device_id, strlen(device_id))) {
        done(arg, -EINVAL, NULL, "\"id\" must be 1 to 64 characters of [A-Za-z0-9._-]");
        return;
    }
    if (claim_token == NULL || strlen(claim_token) != CLAIM_LEN ||
        strncmp(claim_token, CLAIM_PREFIX, 4) != 0) {
        done(arg, -EACCES, NULL, "unknown claim token");
        return;
    }
    uint8_t hash[CRYPTO_HASH_LEN];
    crypto_sha256(claim_token, strlen(claim_token), hash);
    store_enrollment_t e;
    int rc = store_enrollment_find(p->st, hash, &e);
    if (rc < 0) {
        done(arg, rc == -ENOENT ? -EACCES : rc, NULL,
             rc == -ENOENT ? "unknown claim token" : "reading the enrollment failed");
        return;
    }
    provop_t *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        store_enrollment_fini(&e);
        done(arg, -ENOMEM, NULL, "out of memory");
        return;
    }
    op->p = p;
    op->done = done;
    op->arg = arg;
    /* Sign first (pure): a bad CSR costs the enrollment no use. */
    rc =
        ca_sign_csr(p->ca, csr, len, device_id, p->cfg->cert_lifetime_s, &op->ci, err, sizeof(err));
    if (rc < 0) {
        store_enrollment_fini(&e);
        free(op);
        done(arg, rc, NULL, err[0] ? err : "the CSR was refused");
        return;
    }
    /* The device: the enrollment's tags (and group as the tag "group"),
     * a random secret nobody knows: it authenticates with its certificate. */
    json_t *tags = json_loads(e.tags ? e.tags : "{}", 0, NULL);
    if (!json_is_object(tags)) {
        json_decref(tags);
        tags = json_object();
    }
    if (e.grp[0])
        json_object_set_new(tags, "group", json_string(e.grp));
    op->dev.tags_json = json_util_dump(tags);
    json_decref(tags);
    op->desired = strdup(e.desired ? e.desired : "{}");
    snprintf(op->dev.id, sizeof(op->dev.id), "%s", device_id);
    op->dev.created_at = util_now_ms();
    char enrollment_id[40];
    snprintf(enrollment_id, sizeof(enrollment_id), "%s", e.id);
    store_enrollment_fini(&e);
    if (op->dev.tags_json == NULL || op->desired == NULL ||
        crypto_random(op->dev.salt, sizeof(op->dev.salt)) < 0 ||
        crypto_random(op->dev.secret_hash, sizeof(op->dev.secret_hash)) < 0) {
        provop_free(op);
        done(arg, -ENOMEM, NULL, "out of memory");
        return;
    }
    store_enrollment_claim(p->st, enrollment_id, util_now_ms(), &op->dev, claimed, op);
}

/*
 * Device PKI and zero-touch provisioning, over the fleet CA (security/ca.h):
 * issuing device certificates from CSRs (operator request, renewal by the
 * device over MQTT, or enrollment), the set of revoked certificate serials
 * that the MQTT layer checks at every CONNECT, and enrollment groups whose
 * claim tokens let a new device register itself.
 *
 * Every issued certificate is stored before it is handed out; a claim uses
 * one of its enrollment's uses and creates the device in one transaction.
 * Loop thread only.
 */
#ifndef DROVER_PKI_PKI_H
#define DROVER_PKI_PKI_H

#include <jansson.h>
#include <stdbool.h>

#include "core/config.h"
#include "registry/registry.h"
#include "security/ca.h"
#include "store/store.h"
#include "twin/twin.h"

typedef struct pki pki_t;

/* Borrows everything; loads the revoked serials from the store. */
int pki_new(store_t *st, registry_t *reg, twin_t *twin, ca_t *ca, const config_t *cfg, pki_t **out);
void pki_free(pki_t *p);

const char *pki_ca_pem(const pki_t *p);

/* A certificate was revoked (live connections using it must go). */
typedef void (*pki_revoked_fn)(void *ctx, const char *device_id, const char *serial);
void pki_set_revoke_hook(pki_t *p, pki_revoked_fn fn, void *ctx);

/* Issues a certificate for an existing, non-revoked device from a CSR.
 * done gets rc and the stored certificate (borrowed for the call).
 * Errors: -ENOENT unknown device, -EACCES device revoked, -EPERM CN is
 * not the device id, -EINVAL bad CSR (reason in err of the callback). */
typedef void (*pki_issue_fn)(void *arg, int rc, const store_cert_t *cert, const char *err);
void pki_issue(pki_t *p, const char *device_id, const char *csr, size_t len, pki_issue_fn done,
               void *arg);

/* Revokes one certificate. -ENOENT if unknown. */
typedef void (*pki_done_fn)(void *arg, int rc);
void pki_revoke_cert(pki_t *p, const char *serial, pki_done_fn done, void *arg);
/* Adds every certificate of a device to the revoked set (after
 * registry_revoke has revoked them in the store). */
void pki_device_revoked(pki_t *p, int64_t device_key);

bool pki_serial_revoked(const pki_t *p, const char *serial);

/* Enrollment groups. spec: {"name", "max_uses", "expires_in_s", "tags",
 * "group", "desired"}. On success *out is the enrollment as JSON with
 * "claim_token" (shown only here). -EINVAL with a reason in err. */
typedef void (*pki_json_fn)(void *arg, int rc, json_t *out, const char *err);
void pki_enrollment_create(pki_t *p, const json_t *spec, pki_json_fn done, void *arg);
json_t *pki_enrollment_json(const store_enrollment_t *e);

/* Provisioning with a claim token: creates device_id with the enrollment's
 * tags (and group, as the tag "group") and initial desired state, and
 * issues its certificate from csr. done gets 201-shaped JSON {"id",
 * "certificate", "ca_certificate", "serial", "not_after"}. Errors: -EACCES
 * unknown token, -EKEYEXPIRED, -EKEYREVOKED, -EDQUOT (used up), -EEXIST
 * (id taken), -EINVAL / -EPERM (bad id or CSR, reason in err). */
void pki_provision(pki_t *p, const char *claim_token, const char *device_id, const char *csr,
                   size_t len, pki_json_fn done, void *arg);

#endif

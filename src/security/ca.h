/*
 * The fleet certificate authority: an EC P-256 CA that droverd creates on
 * first start with TLS enabled (ca.crt, and ca.key with mode 0600, in the
 * data dir), or an external CA given by --ca-cert / --ca-key. It signs
 * device certificates from CSRs (the device's key never leaves it), issues
 * droverd its own server certificate when none is configured, and checks
 * client certificates. Pure OpenSSL; no I/O but the key and certificate
 * files. Loop thread only (the OpenSSL objects are not shared).
 */
#ifndef DROVER_SECURITY_CA_H
#define DROVER_SECURITY_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ca ca_t;

/* A certificate this CA issued, as the store and API want it. */
typedef struct ca_issued {
    char serial[80];               /* upper-case hex, no separators */
    int64_t not_before, not_after; /* epoch ms */
    char *pem;                     /* malloc'd; caller frees */
} ca_issued_t;

/* Loads the CA from cert_path/key_path if both exist; else, if create is
 * true, makes a new one (subject CN "Drover fleet CA <random>", 10 years),
 * writing key_path with mode 0600 and cert_path 0644. An unreadable,
 * mismatched or invalid CA is an error (-EINVAL, with a reason in err),
 * never silently replaced. */
int ca_open(const char *cert_path, const char *key_path, bool create, ca_t **out, char *err,
            size_t errlen);
void ca_free(ca_t *ca);

/* The CA certificate as PEM (borrowed, valid while ca lives). */
const char *ca_cert_pem(const ca_t *ca);

/* Signs a PEM CSR for device_id: the CSR's signature must verify, its
 * subject CN must equal device_id (-EPERM otherwise), its key must be EC
 * (P-256/P-384) or RSA >= 2048 (-EINVAL otherwise). The certificate has
 * CN = device_id, a random 128-bit serial, lifetime_s of validity from one
 * minute ago, clientAuth extended key usage, basicConstraints CA:FALSE.
 * Errors: -EINVAL with a reason in err. */
int ca_sign_csr(ca_t *ca, const char *csr_pem, size_t len, const char *device_id,
                int64_t lifetime_s, ca_issued_t *out, char *err, size_t errlen);

/* Issues a server certificate and a new P-256 key for the given DNS names
 * and IP addresses (serverAuth), written as PEM to cert_path and key_path
 * (0600). For droverd's own TLS when no --tls-cert is given. */
int ca_issue_server(ca_t *ca, const char *const *dns, size_t ndns, const char *const *ips,
                    size_t nips, int64_t lifetime_s, const char *cert_path, const char *key_path,
                    char *err, size_t errlen);

/* Facts about a PEM certificate: its serial (upper-case hex), subject CN
 * and validity. Any of the out pointers may be NULL. */
int ca_cert_info(const char *pem, size_t len, char *serial, size_t serial_len, char *cn,
                 size_t cn_len, int64_t *not_before, int64_t *not_after);

void ca_issued_fini(ca_issued_t *c);

#endif

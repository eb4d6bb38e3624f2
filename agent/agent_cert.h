/*
 * The device's key pair and certificate: key generation, the CSR, checks
 * on what the server sends back, the renewal-due rule and the files in the
 * data directory. OpenSSL only; no network, no logging.
 *
 * Files (data_dir):
 *
 *   device.key      the private key, PKCS#8 PEM, mode 0600. Made on the
 *                   device and never sent anywhere.
 *   device.crt      its certificate (CN = device id), mode 0644. Present
 *                   means provisioned: the agent never provisions again.
 *   ca.crt          the fleet CA from the server's answer, mode 0644.
 *   device.key.new  a renewal's new key, until its certificate arrives.
 *   device.crt.new  a renewal's certificate, only between the two renames
 *                   of agent_cert_install(); agent_cert_recover() finishes
 *                   or undoes an install a crash interrupted.
 *
 * The pair on disk (device.key, device.crt) is replaced only by a checked
 * new pair, so a failed renewal leaves the working one untouched.
 */
#ifndef DROVER_AGENT_CERT_H
#define DROVER_AGENT_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define AGENT_KEY_FILE "device.key"
#define AGENT_CRT_FILE "device.crt"
#define AGENT_CA_FILE "ca.crt"
#define AGENT_KEY_NEW_FILE "device.key.new"
#define AGENT_CRT_NEW_FILE "device.crt.new"

/* Largest certificate or CA bundle PEM we read or accept. */
#define AGENT_PEM_MAX (64 * 1024)

/* A new EC P-256 key. Caller frees with EVP_PKEY_free(). */
int agent_cert_keygen(EVP_PKEY **out);

/* Writes key to dir/name as PKCS#8 PEM, mode 0600: a temporary file made
 * with O_CREAT|O_EXCL, fsync'd, renamed over name, directory fsync'd. */
int agent_cert_key_write(const char *dir, const char *name, EVP_PKEY *key);

/* Reads a PEM private key. -ENOENT if missing, -EINVAL if not a key.
 * Caller frees. */
int agent_cert_key_read(const char *path, EVP_PKEY **out);

/* A PEM certificate signing request for key with subject CN = cn, signed
 * with SHA-256. Caller frees *out (malloc'd, NUL-terminated). */
int agent_cert_csr(EVP_PKEY *key, const char *cn, char **out);

/* What a certificate says: validity (Unix seconds) and the subject CN.
 * cn may be NULL. -EINVAL if pem is not a certificate, -ENAMETOOLONG if the
 * CN does not fit. */
typedef struct agent_cert_info {
    int64_t not_before;
    int64_t not_after;
    char cn[128];
} agent_cert_info_t;

int agent_cert_info(const char *pem, size_t len, agent_cert_info_t *out);

/* The same from a file (at most AGENT_PEM_MAX bytes). */
int agent_cert_info_file(const char *path, agent_cert_info_t *out);

/* Is renewal due at now (Unix seconds)? When less than ratio of the
 * lifetime (not_after - not_before) is left; ratio >= 1 means always (a
 * way for tests to force a renewal). A certificate with no lifetime is
 * always due. */
bool agent_cert_renew_due(int64_t not_before, int64_t not_after, int64_t now, double ratio);

/* Checks that cert_pem (a) is a certificate for key (same public key),
 * (b) has the subject CN device_id, and (c) chains to a certificate of
 * ca_pem (a PEM bundle) and is valid now, for TLS client use. Returns 0
 * or -EINVAL / -EPERM / -EKEYREJECTED with a reason in err. */
int agent_cert_check(const char *cert_pem, size_t cert_len, EVP_PKEY *key, const char *device_id,
                     const char *ca_pem, size_t ca_len, char *err, size_t errlen);

/* The answer of POST /api/v1/provision (201): {"id", "certificate",
 * "ca_certificate", "serial", "not_after"}. Both PEMs are required and at
 * most AGENT_PEM_MAX bytes; "id", when present, must be device_id. On
 * success *cert and *ca are malloc'd copies (caller frees). */
int agent_cert_parse_answer(const char *body, size_t len, const char *device_id, char **cert,
                            char **ca, char *err, size_t errlen);

/* The "detail" (or "error") of a JSON error body, for logs; "" when the
 * body is not one. Copied into out, cut to outlen and to printable ASCII. */
void agent_cert_error_detail(const char *body, size_t len, char *out, size_t outlen);

/* Installs a renewed pair: writes cert_pem to device.crt.new (0644,
 * durable), then renames device.key.new to device.key and device.crt.new
 * to device.crt, and fsyncs dir. The caller has checked the pair. */
int agent_cert_install(const char *dir, const char *cert_pem, size_t len);

/* At start: finishes an install a crash interrupted (device.crt.new left
 * over) when the certificate matches device.key.new or device.key, and
 * removes leftovers that match neither, plus any device.key.new without a
 * certificate (an unanswered renewal: the next one starts afresh). Sets
 * *what to a short description of what was done (or "" for nothing). */
int agent_cert_recover(const char *dir, char *what, size_t whatlen);

#endif

/*
 * `drover enroll ...`, `drover cert ...`, `drover ca`, `drover device
 * import|revoke` and `drover provision`: the fleet PKI, enrollment groups
 * and bulk import from the CLI. drover.c parses the command line into
 * cli_pki_opts_t and calls cli_pki_run(), handing it a connect callback so
 * that usage errors are reported before anything about the server or
 * credentials, and so that `ca` and `provision` (public routes) connect
 * without a token. This file does the checks, the requests and the output.
 *
 * Secrets: a claim token (`enroll create`) and device secrets (`device
 * import`) are printed only in the answer that makes them, each time with
 * a warning on stderr that they are shown once; the buffers that held them
 * are wiped. A claim token given to `provision` is wiped after the request.
 * Nothing here reads or writes a private key: keys stay with whoever made
 * the CSR.
 *
 * The helpers declared below (cli_pki_import_type, cli_pki_pem_block,
 * cli_pki_enroll_spec) are pure and do no I/O.
 */
#ifndef DROVER_CLI_CMD_PKI_H
#define DROVER_CLI_CMD_PKI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli_common.h"

typedef struct {
    const char *arg;         /* the NAME / ID / DEVICE / SERIAL / FILE positional, or NULL */
    const char *max_uses;    /* --max-uses, or NULL */
    const char *expires_in;  /* --expires-in, or NULL */
    const char *group;       /* --group, or NULL */
    const json_t *desired;   /* --desired, already read and parsed (borrowed), or NULL */
    const char *const *tags; /* every --tag K=V, in order */
    size_t ntags;
    const char *csr;         /* --csr FILE, or NULL */
    const char *out;         /* --out FILE, or NULL */
    const char *format;      /* --format csv|jsonl, or NULL */
    const char *claim_token; /* --claim-token T or @FILE, or NULL */
    const char *id;          /* --id ID, or NULL */
    bool json;
} cli_pki_opts_t;

/* what: the command path: "enroll create", "enroll list", "enroll show",
 * "enroll revoke", "cert issue", "cert list", "cert revoke", "ca",
 * "device import", "device revoke" or "provision". Returns the exit
 * status: 0 ok, 1 the server answered with an error, 2 the server could
 * not be reached, 64 a usage error. */
int cli_pki_run(const char *what, const cli_pki_opts_t *o, cli_connect_fn connect, void *ctx);

/* ---- pure helpers ---------------------------------------------------------- */

/* The Content-Type of an import file: from format ("csv" or "jsonl",
 * also "ndjson"; may be NULL) or else from the file name's extension
 * (.csv; .jsonl, .ndjson or .json). *ctype gets "text/csv" or
 * "application/x-ndjson" (static strings). -EINVAL for an unknown format,
 * -ENOENT when there is no format and the extension says nothing. */
int cli_pki_import_type(const char *path, const char *format, const char **ctype);

/* Finds the PEM block with this label in text (len bytes), as a CSR or
 * certificate file holds it: a "-----BEGIN <label>-----" line, lines of
 * base64, an "-----END <label>-----" line. Text before the BEGIN line
 * (openssl's -text dump) is allowed only when allow_preamble; after the
 * END line only blank lines. Sets *off and *blen to the block from BEGIN
 * through the END line's newline (if any). -EINVAL when there is no such
 * block, it is malformed, or text holds a NUL or other control byte
 * (tab, CR and LF aside). */
int cli_pki_pem_block(const char *text, size_t len, const char *label, bool allow_preamble,
                      size_t *off, size_t *blen);

/* The body of POST /api/v1/enrollments from the command line's values:
 * name (1 to 127 bytes), max_uses ("N", a positive integer), expires_s
 * (0: never), tags as "K=V" (values sent as strings; a key twice is an
 * error), group (a device-id-like name, or NULL) and desired (an object,
 * borrowed, or NULL). -EINVAL with a one-line reason in err; -ENOMEM.
 * Caller owns *out. */
int cli_pki_enroll_spec(const char *name, const char *max_uses, int64_t expires_s,
                        const char *const *tags, size_t ntags, const char *group,
                        const json_t *desired, json_t **out, char *err, size_t errlen);

#endif

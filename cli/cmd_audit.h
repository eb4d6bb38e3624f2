/*
 * `drover audit list | export | verify`: the audit log from the CLI.
 * drover.c parses the command line into cli_audit_opts_t and calls
 * cli_audit_run(); this file does the requests, the output and the
 * client-side recomputation of the hash chain (the encoding is defined in
 * src/security/audit.h and implemented here a second time, on purpose: a
 * verifier should not share code with the writer it checks).
 *
 * The chain checker (cli_audit_chain_*) is pure and has no I/O.
 */
#ifndef DROVER_CLI_CMD_AUDIT_H
#define DROVER_CLI_CMD_AUDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli_common.h"

typedef struct {
    const char *since, *until; /* as sent to the server (see cli_parse_when), or NULL */
    const char *actor, *object;
    const char *cursor;
    const char *file; /* verify: an export to check instead of the server ("-": stdin) */
    int limit;        /* list: entries per page; 0 = the server's default */
    bool all;         /* list: every page */
    bool json;
} cli_audit_opts_t;

/* what: "list", "export" or "verify". c->http may be NULL only for verify
 * with a file; its flags are audit's own. Returns the exit status:
 * 0 ok (verify: the chain is intact), 1 the server answered with an
 * error, or verify found the chain broken, 2 the server could not be
 * reached, 64 a usage error. */
int cli_audit_run(const char *what, const cli_conn_t *c, const cli_audit_opts_t *o);

/* ---- the chain checker ----------------------------------------------------- */

typedef struct {
    bool from_start;   /* the first entry must be seq 1 with prev_hash zeros */
    uint64_t n;        /* entries checked */
    int64_t first_seq; /* of the first entry checked */
    int64_t last_seq;
    uint8_t last_hash[32];
} cli_audit_chain_t;

void cli_audit_chain_init(cli_audit_chain_t *c, bool from_start);

/* Checks the next entry (an object as the API returns it). Returns 0 when
 * it continues the chain; -EBADMSG when it breaks it, with *seq set and
 * why = "hash mismatch", "prev_hash mismatch" or "gap in seq (expected N)";
 * -EINVAL when it is not an audit entry at all (why says what is wrong;
 * *seq is set when the entry has one, else 0); -ENOMEM. */
int cli_audit_chain_add(cli_audit_chain_t *c, const json_t *entry, int64_t *seq, char *why,
                        size_t whylen);

#endif

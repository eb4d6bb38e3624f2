/*
 * The tamper-evident audit log: who did what to which object, when, from
 * where and with what outcome, one entry per event, each entry holding the
 * hash of the one before it (a hash chain), so that editing, inserting or
 * deleting a stored entry breaks the chain at that entry.
 *
 * Entry fields (see store_audit_t):
 *   seq      1, 2, 3, ... with no gaps; assigned here, never reused
 *   ts       epoch milliseconds (the server's wall clock)
 *   actor    "token:<name>", "user:<name>", "device:<id>", "anonymous", "system"
 *   action   what was done, e.g. "POST /api/v1/devices/{id}/secret" or
 *            "DENY GET /api/v1/audit" for a refused authorization
 *   object   what it was done to (a device id, a token id, ...), or ""
 *   outcome  how it ended, e.g. the HTTP status "201"
 *   source   the peer "ip:port", or "" for the server itself
 *   detail   a JSON value (an object unless a caller chose otherwise), never
 *            a secret or a request body; {} when the caller has nothing
 *   prev_hash, hash   32 bytes each; the first entry's prev_hash is 32 zeros
 *
 * The text fields are stored as valid UTF-8 without control characters:
 * audit_log replaces invalid bytes and control characters with '?' and cuts
 * a field that is too long for store_audit_t at a character boundary.
 *
 * The hash (version 1). hash = SHA-256 of the concatenation of
 *
 *   "drover-audit-v1"                  15 ASCII bytes, no terminator
 *   seq                                8 bytes, big-endian two's complement
 *   ts                                 8 bytes, big-endian two's complement
 *   L(actor) L(action) L(object) L(outcome) L(source) L(detail)
 *   prev_hash                          32 bytes
 *
 * where L(s) is the byte length of s as 4 bytes big-endian followed by the
 * bytes of s (UTF-8, no terminator), and detail is the JSON text exactly as
 * stored. audit_log stores detail as jansson writes it with
 * json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY): no blanks,
 * keys in byte order, non-ASCII as UTF-8. The REST API returns detail parsed
 * (a JSON value, or the stored text as a JSON string when it does not
 * parse), so a verifier that holds the value re-serialises it with those
 * same rules (the CLI does, with jansson) before hashing. Example: the
 * entry {seq 1, ts 1700000000000, actor "system", action "test", object "",
 * outcome "ok", source "", detail "{}", prev_hash 00...00} hashes to the
 * value in tests/unit/test_audit.c (test_known_answer).
 *
 * What the chain proves: an edited entry fails its own hash; an inserted
 * or deleted entry breaks seq continuity and the next entry's prev_hash.
 * Deleting the newest entries leaves a shorter chain that still verifies:
 * compare the last seq and hash with an earlier verify or export to catch
 * that (`drover audit verify` prints them).
 *
 * Writing. audit_log runs on the loop thread: it computes the entry from
 * the in-memory tail of the chain (last seq and hash, loaded by audit_new),
 * advances the tail and submits store_audit_append, which the storage
 * thread commits in seq order. If an append fails (disk full), the entries
 * chained after it fail too (their seq is no longer last + 1): audit_log
 * counts them and, once no append is in flight, reloads the tail from the
 * store and writes a "system" entry "audit.lost" with {"lost": N} before
 * the next event, so the gap itself is on the record. An entry is readable
 * (store_audit_list) once the storage thread has committed it, a few
 * milliseconds after audit_log returns; a crash in between loses it, like
 * any write not yet committed.
 *
 * Loop thread only.
 */
#ifndef DROVER_SECURITY_AUDIT_H
#define DROVER_SECURITY_AUDIT_H

#include <jansson.h>
#include <stdint.h>

#include "store/store.h"

typedef struct audit audit_t;

/* Largest detail text stored; a bigger detail is replaced by
 * {"error": "detail too large"}. */
#define AUDIT_DETAIL_MAX 8192

/* Starts a log over st (borrowed; must outlive the audit object and its
 * appends), continuing the chain from the newest stored entry. Returns 0,
 * -ENOMEM or a store error; on failure *out is untouched. */
int audit_new(store_t *st, audit_t **out);

/* NULL-safe. Call after store_close (every append callback has run). */
void audit_free(audit_t *a);

/* Appends one entry: seq = last + 1, ts = now. Strings are borrowed (NULL
 * is ""); detail is borrowed and may be NULL ({}). Never fails from the
 * caller's point of view: a failure to store the entry is counted and
 * recorded later (see above). */
void audit_log(audit_t *a, const char *actor, const char *action, const char *object,
               const char *outcome, const char *source, const json_t *detail);

/* Entries accepted by audit_log whose append failed, since the start. */
uint64_t audit_lost(const audit_t *a);

/* The hash of e as defined above, from every field but e->hash. Pure.
 * Returns 0, -EINVAL (a field longer than its store_audit_t array allows,
 * not NUL-terminated) or -ENOMEM. */
int audit_entry_hash(const store_audit_t *e, uint8_t out[CRYPTO_HASH_LEN]);

/* Recomputes the whole stored chain (synchronous reads, loop thread).
 * Returns 0 when it is intact (an empty log is intact), -EBADMSG when
 * it is broken, with *bad_seq = the seq of the first entry that fails:
 * its hash does not match its fields, its prev_hash is not the hash of
 * the entry before it, or its seq does not follow that entry's (a gap;
 * then *bad_seq is the seq found after the gap). Other negative codes
 * are store errors. */
int audit_verify(store_t *st, int64_t *bad_seq);

#endif

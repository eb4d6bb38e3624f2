/*
 * Helpers over jansson used by the API, telemetry and CLI.
 */
#ifndef DROVER_COMMON_JSON_H
#define DROVER_COMMON_JSON_H

#include <jansson.h>
#include <stddef.h>

/* Nesting depth of a value: scalars are 0, {} and [] are 1. */
int json_util_depth(const json_t *v);

/* Parses at most len bytes as one JSON value (no trailing garbage, any
 * top-level type). Returns NULL on error and, if err is given, writes a
 * one-line reason into it. Caller owns the result. */
json_t *json_util_parse(const char *buf, size_t len, char *err, size_t errlen);

/* Serialises compactly into a malloc'd NUL-terminated string. */
char *json_util_dump(const json_t *v);

/* Applies an RFC 7396 JSON merge patch to *target (which may be replaced:
 * a non-object patch replaces the target whole). Takes a reference to
 * nothing; *target is updated in place and stays owned by the caller.
 * Returns 0 or -ENOMEM. */
int json_util_merge_patch(json_t **target, const json_t *patch);

/* The delta of two objects: every key of desired whose value differs in
 * reported (missing, different type or value), recursing into objects so
 * that only the differing leaves appear. Returns a new object (possibly
 * empty) or NULL on -ENOMEM. Caller owns it. */
json_t *json_util_delta(const json_t *desired, const json_t *reported);

#endif

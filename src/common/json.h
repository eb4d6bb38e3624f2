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

#endif

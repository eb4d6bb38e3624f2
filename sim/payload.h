/*
 * What simulated devices say and how they read what they are told: the
 * telemetry bodies (shape and size), the command result and twin report
 * bodies, and the parsing of incoming command and desired-state messages.
 * Pure functions over caller buffers; no allocation except inside jansson
 * for the desired-state parse.
 */
#ifndef DROVER_SIM_PAYLOAD_H
#define DROVER_SIM_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim/opts.h"

typedef struct sim_payload_spec {
    sim_shape_t shape;
    uint32_t n;    /* metrics or batch objects (SIMPLE: ignored) */
    uint32_t size; /* pad to about this many bytes; 0 = natural size */
    bool seq;      /* include "seq" */
    bool sent_us;  /* include "t": the send time (monotonic µs) for relay latency */
    bool relay;    /* include "p": the publisher (pub below) and "seq", so the
                      subscriber can tell lost and reordered messages */
    uint32_t pub;  /* the publishing device's index (set per message) */
} sim_payload_spec_t;

/* Builds one telemetry body into out. seq: the device's message counter;
 * now_ms: wall clock (batch timestamps); mono_us: the send time. Returns 0
 * with *len set, or -ENOSPC. The body is always a valid JSON object (array
 * for BATCH) that droverd accepts as telemetry. */
int sim_payload_build(char *out, size_t cap, const sim_payload_spec_t *spec, uint64_t seq,
                      int64_t now_ms, int64_t mono_us, size_t *len);

/* The "t" member written by sim_payload_build (a plain scan, no JSON
 * parse: it runs once per delivered message on the subscriber). -ENOENT
 * when absent. */
int sim_payload_sent_us(const uint8_t *p, size_t len, int64_t *us);

/* The "p" and "seq" members written with spec->relay (the same plain
 * scan). -ENOENT unless both are there. */
int sim_payload_relay_ids(const uint8_t *p, size_t len, uint64_t *pub, uint64_t *seq);

/* Whether topic is devices/{id}/commands/{cid} (cid: 1..max-1 bytes, no
 * '/'); copies cid NUL-terminated into cid. */
bool sim_topic_command(const char *topic, size_t topic_len, const char *id, char *cid, size_t max);
/* Whether topic is devices/{id}/twin/desired. */
bool sim_topic_desired(const char *topic, size_t topic_len, const char *id);

/* "version" of a desired-state document {"version": N, "state": {...}};
 * -EINVAL when it is not JSON or has no integer version. */
int sim_desired_version(const uint8_t *p, size_t len, int64_t *version);

/* {"status":"succeeded"|"failed","output":{...}} into out. */
int sim_command_result(char *out, size_t cap, bool failed, size_t *len);
/* {"applied": version} into out. */
int sim_twin_applied(char *out, size_t cap, int64_t version, size_t *len);
/* A periodic reported-state change {"uptime_s": s, "sim": {"reports": n}}. */
int sim_twin_report(char *out, size_t cap, int64_t uptime_s, uint64_t n, size_t *len);

#endif

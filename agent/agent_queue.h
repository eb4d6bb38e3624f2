/*
 * agent_queue: the store-and-forward queue, a bounded FIFO of telemetry
 * messages on disk. Every sample is appended here first and removed only
 * after the server's PUBACK, so a message survives a lost connection, an
 * agent restart and a power cut (with durable appends).
 *
 * Layout (one directory):
 *   0000000000000001.seg ...  segments: append-only files of records
 *       record = u32 len | u32 crc32(seq | payload) | u64 seq | payload,
 *       little-endian, seq strictly increasing across the whole queue
 *   head                      the oldest live record (segment, offset) and
 *                             the total number of records ever dropped,
 *                             with a CRC; replaced atomically
 * Popping advances the head; a segment the head has left is unlinked. The
 * head file is written by agent_queue_sync(), not at every pop: after a
 * crash a few acknowledged messages are sent again and the server drops
 * them by seq.
 *
 * Bounded: live records (headers included) never exceed cap bytes; an
 * append that would pass the cap drops the oldest records first and counts
 * them. On disk the queue takes at most cap plus one segment.
 * Crash-safe: agent_queue_open() checks every record (length, CRC, seq
 * order) and truncates a segment at the first bad one, so a torn last
 * write is discarded and never replayed as garbage.
 *
 * Single-threaded: the agent's loop thread owns the queue. The library
 * does not log; counters tell the caller what happened.
 */
#ifndef DROVER_AGENT_QUEUE_H
#define DROVER_AGENT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_QUEUE_HDR 16
/* The largest payload: the server's default MQTT packet limit. */
#define AGENT_QUEUE_RECORD_MAX (256 * 1024)

typedef struct agent_queue agent_queue_t;

typedef struct agent_queue_stats {
    size_t count;       /* live records */
    uint64_t bytes;     /* live bytes, headers included */
    uint64_t dropped;   /* records dropped to honour the cap, ever (persisted) */
    uint64_t discarded; /* bytes cut off as torn or corrupt by the last open */
    uint64_t first_seq; /* of the oldest live record; 0 when empty */
    uint64_t last_seq;  /* the highest seq ever appended and still known */
    size_t segments;
} agent_queue_stats_t;

/* Opens (creating if needed) the queue in dir. cap: byte limit of live
 * records, at least 4096. durable: fsync every append and head write.
 * Caller frees with agent_queue_close(). */
int agent_queue_open(const char *dir, uint64_t cap, bool durable, agent_queue_t **out);

/* Writes the head and closes. Accepts NULL. */
void agent_queue_close(agent_queue_t *q);

/* Appends one record. seq must be above every seq appended before.
 * Drops the oldest records while the cap would be passed. -E2BIG if the
 * record alone is over the cap or AGENT_QUEUE_RECORD_MAX, -EINVAL for a
 * seq out of order, -errno for I/O (the queue is unchanged then). */
int agent_queue_append(agent_queue_t *q, uint64_t seq, const void *data, size_t len);

/* Index (0 = oldest) of the first record whose seq is above after_seq;
 * equals the count when there is none. */
size_t agent_queue_find(const agent_queue_t *q, uint64_t after_seq);

/* Seq of record i without reading it. i < count. */
uint64_t agent_queue_seq_at(const agent_queue_t *q, size_t i);

/* Reads record i (0 = oldest). *data is malloc'd with a NUL after len bytes
 * (caller frees). -ENOENT past the end, -EIO if the record no longer
 * matches its CRC. */
int agent_queue_peek(agent_queue_t *q, size_t i, uint64_t *seq, char **data, size_t *len);

/* Removes the oldest record. -ENOENT when empty. */
int agent_queue_pop(agent_queue_t *q);

/* Persists the head (and the drop counter) if it changed. */
int agent_queue_sync(agent_queue_t *q);

void agent_queue_stats(const agent_queue_t *q, agent_queue_stats_t *out);

/* CRC-32 (IEEE 802.3, as zlib), exposed for the tests. */
uint32_t agent_crc32(uint32_t crc, const void *data, size_t len);

#endif

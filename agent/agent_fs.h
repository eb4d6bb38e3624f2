/*
 * Small file helpers for the agent's data directory: whole-file reads with
 * a cap, atomic replace (temp file + rename, optionally fsync'd), and the
 * persistent telemetry sequence counter.
 *
 * The sequence counter hands out numbers from memory and persists only a
 * reservation ("every number below R may have been used") once per
 * AGENT_SEQ_BLOCK numbers, so a telemetry sample costs no extra fsync. After
 * a crash the agent starts at R: numbers are skipped, never reused. A fresh
 * data directory starts at the wall clock in milliseconds times 1000, so a
 * device whose data directory was wiped still sends numbers above the ones
 * the server has seen (unless the old clock ran ahead of the new one).
 */
#ifndef DROVER_AGENT_FS_H
#define DROVER_AGENT_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reads a whole file of at most max bytes into a NUL-terminated malloc'd
 * buffer (caller frees). -ENOENT if missing, -EFBIG if larger than max. */
int agent_fs_read(const char *path, size_t max, char **out, size_t *outlen);

/* Replaces dir/name with data atomically: writes dir/name.tmp, then
 * rename(2). With durable, fsyncs the file before and the directory after
 * the rename. Mode 0600. */
int agent_fs_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                          bool durable);

/* The same with the file's mode (set exactly, whatever the umask). The
 * temporary file is created with O_EXCL (a stale one from a crash is
 * removed first), so its mode is never that of an older file. */
int agent_fs_write_atomic_mode(const char *dir, const char *name, const void *data, size_t len,
                               bool durable, unsigned mode);

/* fsyncs a directory (after renames in it). */
int agent_fs_sync_dir(const char *dir);

/* Creates dir (one level, mode 0700) unless it exists as a directory. */
int agent_fs_mkdir(const char *dir);

#define AGENT_SEQ_BLOCK 1024

typedef struct agent_seq {
    char dir[512];
    uint64_t next;     /* the next number to hand out */
    uint64_t reserved; /* persisted: numbers below this may have been used */
} agent_seq_t;

/* Loads dir/seq (or starts from the clock if absent); the first number
 * handed out is at least min_next. */
int agent_seq_open(agent_seq_t *s, const char *dir, uint64_t min_next);

/* The next sequence number; persists a new reservation when needed. */
int agent_seq_take(agent_seq_t *s, uint64_t *out);

#endif

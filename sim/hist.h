/*
 * A log-linear latency histogram for drover-sim: exact below 128, then 64
 * buckets per power of two, so any recorded value is off by less than 0.8 %
 * (half a bucket) whatever its size, and the memory does not depend on how
 * many samples were taken. Histograms of the same layout merge by adding
 * counts, which is how worker processes' latencies are combined.
 *
 * Values are plain non-negative integers (drover-sim records microseconds);
 * negative values count as 0, values beyond the top bucket land in it.
 * A sim_hist_t is plain old data: it may be copied with memcpy and sent
 * over a pipe between processes of the same binary.
 */
#ifndef DROVER_SIM_HIST_H
#define DROVER_SIM_HIST_H

#include <stdint.h>

#define SIM_HIST_SUB 128      /* exact values below this; 64 per octave above */
#define SIM_HIST_MAX_SHIFT 36 /* top octave: about 2^43 (100 days in µs) */
#define SIM_HIST_BUCKETS (SIM_HIST_SUB + SIM_HIST_MAX_SHIFT * (SIM_HIST_SUB / 2))

typedef struct sim_hist {
    uint64_t counts[SIM_HIST_BUCKETS];
    uint64_t n;
    int64_t min, max; /* valid when n > 0 */
    double sum;
} sim_hist_t;

void sim_hist_reset(sim_hist_t *h);
void sim_hist_add(sim_hist_t *h, int64_t v);
/* Adds every sample of src to dst. */
void sim_hist_merge(sim_hist_t *dst, const sim_hist_t *src);
/* dst = a - b, for samples recorded between two snapshots of one
 * histogram (b taken before a). min/max are a's (not recoverable). */
void sim_hist_diff(sim_hist_t *dst, const sim_hist_t *a, const sim_hist_t *b);
/* The q-quantile (0 <= q <= 1, nearest rank), clamped to [min, max];
 * 0 for an empty histogram. */
double sim_hist_quantile(const sim_hist_t *h, double q);
double sim_hist_mean(const sim_hist_t *h);

/* Bucket of a value, and the middle of a bucket's range (exposed for the
 * unit tests of the error bound). */
unsigned sim_hist_index(int64_t v);
double sim_hist_bucket_mid(unsigned i);

#endif

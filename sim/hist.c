/*
 * Log-linear histogram (see hist.h). Bucket layout: values 0..127 have a
 * bucket each; above, a value v with its highest bit at position msb is
 * shifted right by msb - 6 so it lands in [64, 127], and each shift gets
 * 64 buckets. Bucket width / value < 1/64, so the middle of the bucket is
 * within 0.8 % of any value in it.
 */
#include "sim/hist.h"

#include <string.h>

unsigned sim_hist_index(int64_t v)
{
    if (v < 0)
        v = 0;
    if (v < SIM_HIST_SUB)
        return (unsigned)v;
    int msb = 63 - __builtin_clzll((unsigned long long)v);
    int shift = msb - 6; /* v >> shift lands in [64, 127] */
    if (shift > SIM_HIST_MAX_SHIFT)
        return SIM_HIST_BUCKETS - 1;
    return SIM_HIST_SUB + (unsigned)(shift - 1) * (SIM_HIST_SUB / 2) +
           (unsigned)((v >> shift) - SIM_HIST_SUB / 2);
}

double sim_hist_bucket_mid(unsigned i)
{
    if (i < SIM_HIST_SUB)
        return (double)i;
    unsigned k = i - SIM_HIST_SUB;
    int shift = (int)(k / (SIM_HIST_SUB / 2)) + 1;
    uint64_t lo = (uint64_t)(k % (SIM_HIST_SUB / 2) + SIM_HIST_SUB / 2) << shift;
    return (double)lo + (double)(((uint64_t)1 << shift) - 1) / 2.0;
}

void sim_hist_reset(sim_hist_t *h)
{
    memset(h, 0, sizeof(*h));
}

void sim_hist_add(sim_hist_t *h, int64_t v)
{
    if (v < 0)
        v = 0;
    h->counts[sim_hist_index(v)]++;
    if (h->n == 0 || v < h->min)
        h->min = v;
    if (h->n == 0 || v > h->max)
        h->max = v;
    h->n++;
    h->sum += (double)v;
}

void sim_hist_merge(sim_hist_t *dst, const sim_hist_t *src)
{
    if (src->n == 0)
        return;
    for (unsigned i = 0; i < SIM_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    if (dst->n == 0 || src->min < dst->min)
        dst->min = src->min;
    if (dst->n == 0 || src->max > dst->max)
        dst->max = src->max;
    dst->n += src->n;
    dst->sum += src->sum;
}

void sim_hist_diff(sim_hist_t *dst, const sim_hist_t *a, const sim_hist_t *b)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < SIM_HIST_BUCKETS; i++) {
        uint64_t c = a->counts[i] >= b->counts[i] ? a->counts[i] - b->counts[i] : 0;
        dst->counts[i] = c;
        n += c;
    }
    dst->n = n;
    dst->sum = n ? a->sum - b->sum : 0;
    dst->min = a->min;
    dst->max = a->max;
}

double sim_hist_quantile(const sim_hist_t *h, double q)
{
    if (h->n == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    /* Nearest rank: the smallest value with at least q * n samples at or
     * below it. */
    double want = q * (double)h->n;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < SIM_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            double v = sim_hist_bucket_mid(i);
            if (v < (double)h->min)
                v = (double)h->min;
            if (v > (double)h->max)
                v = (double)h->max;
            return v;
        }
    }
    return (double)h->max;
}

double sim_hist_mean(const sim_hist_t *h)
{
    return h->n ? h->sum / (double)h->n : 0;
}

/*
 * Shared by the fuzz targets: the libFuzzer entry points and a CHECK()
 * that aborts with the failed condition, so a broken invariant is a crash
 * libFuzzer records (and the replay test fails on) with a readable line.
 * CHECK is for the harness's oracles on the code under test; it is never
 * compiled out.
 */
#ifndef DROVER_FUZZ_COMMON_H
#define DROVER_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Whether [p, p + n) lies inside [base, base + len). */
static inline int fuzz_inside(const void *p, size_t n, const void *base, size_t len)
{
    const uint8_t *q = p, *b = base;
    if (n == 0)
        return q >= b && q <= b + len;
    return q >= b && q <= b + len && n <= (size_t)(b + len - q);
}

#endif

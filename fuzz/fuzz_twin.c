/*
 * fuzz_twin: the JSON paths of the device twin (src/common/json.c, used by
 * src/twin/twin.c): parsing with the depth limit, RFC 7396 merge patches
 * and the desired/reported delta.
 *
 * The input is two JSON documents separated by the first newline: a target
 * (the stored state) and a patch. Invariants checked on every pair that
 * parses:
 *  - merge_patch with an object patch yields an object; every key the patch
 *    sets to null is absent; every key it sets to a non-object value holds
 *    exactly that value; keys the patch does not name are unchanged.
 *  - applying the same patch twice changes nothing the second time
 *    (merge patches are idempotent).
 *  - delta(desired, reported) names only keys of desired, never one whose
 *    value reported already has; and once desired (with no nulls anywhere)
 *    is merged into reported, the delta is empty.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "fuzz_common.h"

static bool has_null(const json_t *v)
{
    if (json_is_null(v))
        return true;
    const char *k;
    json_t *c;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, c)
        {
            if (has_null(c))
                return true;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, c)
        {
            if (has_null(c))
                return true;
        }
    }
    return false;
}

static void check_merge(const json_t *target, const json_t *patch)
{
    json_t *t = json_deep_copy(target);
    if (t == NULL)
        return;
    if (json_util_merge_patch(&t, patch) < 0) {
        json_decref(t);
        return;
    }
    if (json_is_object(patch)) {
        CHECK(json_is_object(t));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)patch, k, v)
        {
            if (json_is_null(v))
                CHECK(json_object_get(t, k) == NULL);
            else if (!json_is_object(v))
                CHECK(json_equal(json_object_get(t, k), v));
        }
        if (json_is_object(target)) {
            json_object_foreach((json_t *)target, k, v)
            {
                if (json_object_get(patch, k) == NULL)
                    CHECK(json_equal(json_object_get(t, k), v));
            }
        }
    } else {
        CHECK(json_equal(t, patch));
    }
    /* Idempotent: a second application is a no-op. */
    json_t *t2 = json_deep_copy(t);
    if (t2 != NULL && json_util_merge_patch(&t2, patch) == 0)
        CHECK(json_equal(t, t2));
    json_decref(t2);
    json_decref(t);
}

static void check_delta(const json_t *desired, const json_t *reported)
{
    json_t *d = json_util_delta(desired, reported);
    if (d == NULL)
        return;
    CHECK(json_is_object(d));
    const char *k;
    json_t *v;
    json_object_foreach(d, k, v)
    {
        const json_t *dv = json_object_get(desired, k);
        CHECK(dv != NULL);
        const json_t *rv = json_is_object(reported) ? json_object_get(reported, k) : NULL;
        CHECK(rv == NULL || !json_equal(dv, rv));
    }
    json_decref(d);
    if (!json_is_object(desired) || has_null(desired))
        return;
    json_t *r = json_is_object(reported) ? json_deep_copy(reported) : json_object();
    if (r != NULL && json_util_merge_patch(&r, desired) == 0) {
        json_t *d2 = json_util_delta(desired, r);
        if (d2 != NULL)
            CHECK(json_object_size(d2) == 0);
        json_decref(d2);
    }
    json_decref(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t la = nl ? (size_t)(nl - s) : size;
    json_t *a = json_util_parse(s, la, NULL, 0);
    json_t *b = nl ? json_util_parse(nl + 1, size - la - 1, NULL, 0) : NULL;
    /* The twin refuses documents deeper than its limit before merging;
     * depth is computed for every value it sees. */
    if (a != NULL)
        CHECK(json_util_depth(a) >= 0);
    if (a != NULL && b != NULL && json_util_depth(a) <= 32 && json_util_depth(b) <= 32) {
        check_merge(a, b);
        check_delta(a, b);
        check_delta(b, a);
    }
    json_decref(a);
    json_decref(b);
    return 0;
}

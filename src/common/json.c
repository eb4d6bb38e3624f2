#include "common/json.h"

#include <errno.h>
#include <stdio.h>

int json_util_depth(const json_t *v)
{
    int max = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c)
        {
            int d = json_util_depth(c);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
        {
            int d = json_util_depth(c);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    return 0;
}

json_t *json_util_parse(const char *buf, size_t len, char *err, size_t errlen)
{
    json_error_t e;
    json_t *v = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
    if (v == NULL && err != NULL)
        snprintf(err, errlen, "%s at line %d column %d", e.text, e.line, e.column);
    return v;
}

char *json_util_dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

int json_util_merge_patch(json_t **target, const json_t *patch)
{
    if (!json_is_object(patch)) {
        json_t *copy = json_deep_copy(patch);
        if (copy == NULL)
            return -ENOMEM;
        json_decref(*target);
        *target = copy;
        return 0;
    }
    if (!json_is_object(*target)) {
        json_t *obj = json_object();
        if (obj == NULL)
            return -ENOMEM;
        json_decref(*target);
        *target = obj;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v)
    {
        if (json_is_null(v)) {
            json_object_del(*target, k);
            continue;
        }
        json_t *cur = json_object_get(*target, k);
        json_t *next = cur ? json_incref(cur) : json_null();
        if (json_util_merge_patch(&next, v) < 0) {
            json_decref(next);
            return -ENOMEM;
        }
        if (json_object_set_new(*target, k, next) < 0)
            return -ENOMEM;
    }
    return 0;
}

json_t *json_util_delta(const json_t *desired, const json_t *reported)
{
    json_t *out = json_object();
    if (out == NULL || !json_is_object(desired))
        return out;
    const char *k;
    json_t *dv;
    json_object_foreach((json_t *)desired, k, dv)
    {
        json_t *rv = json_is_object(reported) ? json_object_get(reported, k) : NULL;
        if (rv != NULL && json_equal(dv, rv))
            continue;
        json_t *d;
        if (rv != NULL && json_is_object(dv) && json_is_object(rv)) {
            d = json_util_delta(dv, rv);
            if (d == NULL)
                goto fail;
            if (json_object_size(d) == 0) {
                json_decref(d);
                continue;
            }
        } else {
            d = json_incref(dv);
        }
        if (json_object_set_new(out, k, d) < 0)
            goto fail;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

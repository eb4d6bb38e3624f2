/* Desired-state parsing and merge-patch diffs (see agent_twin.h). */
#include "agent_twin.h"

#include <errno.h>

#include "common/json.h"

int agent_twin_parse_desired(const char *payload, size_t len, int64_t *version, json_t **state)
{
    json_t *doc = json_util_parse(payload, len, NULL, 0);
    if (doc == NULL)
        return -EINVAL;
    const json_t *v = json_object_get(doc, "version");
    json_t *s = json_object_get(doc, "state");
    if (!json_is_object(doc) || !json_is_integer(v) || json_integer_value(v) < 0 ||
        !json_is_object(s)) {
        json_decref(doc);
        return -EINVAL;
    }
    *version = json_integer_value(v);
    *state = json_incref(s);
    json_decref(doc);
    return 0;
}

static json_t *diff(const json_t *a, const json_t *b)
{
    json_t *patch = json_object();
    if (patch == NULL)
        return NULL;
    const char *k;
    json_t *v;
    if (a != NULL) {
        json_object_foreach((json_t *)a, k, v)
        {
            if (json_object_get(b, k) == NULL && json_object_set_new(patch, k, json_null()) < 0)
                goto fail;
        }
    }
    json_object_foreach((json_t *)b, k, v)
    {
        const json_t *old = a != NULL ? json_object_get(a, k) : NULL;
        if (old != NULL && json_equal((json_t *)old, v))
            continue;
        json_t *item;
        if (old != NULL && json_is_object(old) && json_is_object(v)) {
            item = diff(old, v);
            if (item == NULL)
                goto fail;
            if (json_object_size(item) == 0) {
                json_decref(item);
                continue;
            }
        } else if (json_is_object(v)) {
            /* Replacing a non-object: the patch must not merge into the
             * old value, and a nested null in v would be read as a
             * removal anyway; diffing against {} gives the same object
             * without those nulls. */
            item = diff(NULL, v);
            if (item == NULL)
                goto fail;
        } else {
            item = json_incref(v);
        }
        if (json_object_set_new(patch, k, item) < 0)
            goto fail;
    }
    return patch;
fail:
    json_decref(patch);
    return NULL;
}

json_t *agent_twin_diff(const json_t *old_state, const json_t *new_state)
{
    if (!json_is_object(new_state))
        return NULL;
    return diff(json_is_object(old_state) ? old_state : NULL, new_state);
}

#include "common/json.h"

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

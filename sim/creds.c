/*
 * Credentials file (see creds.h). Lines are read with fgets into a fixed
 * buffer; a line longer than that buffer is an error, not a silent split.
 */
#include "sim/creds.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_LEN 512

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int sim_creds_parse_line(const char *line, sim_cred_t *out)
{
    const char *p = line;
    while (is_space(*p))
        p++;
    if (*p == '\0' || *p == '#')
        return -ENOENT;
    const char *id = p;
    while (*p && !is_space(*p))
        p++;
    size_t idl = (size_t)(p - id);
    while (*p == ' ' || *p == '\t')
        p++;
    const char *sec = p;
    while (*p && !is_space(*p))
        p++;
    size_t sl = (size_t)(p - sec);
    while (is_space(*p))
        p++;
    if (*p != '\0' || sl == 0 || sl >= SIM_SECRET_MAX || !util_id_valid(id, idl))
        return -EINVAL;
    for (size_t i = 0; i < sl; i++)
        if ((unsigned char)sec[i] < 0x21 || (unsigned char)sec[i] > 0x7e)
            return -EINVAL;
    memcpy(out->id, id, idl);
    out->id[idl] = '\0';
    /* "-" stands for "no password" (what --write-creds writes for --no-auth). */
    if (sl == 1 && sec[0] == '-')
        sl = 0;
    memcpy(out->secret, sec, sl);
    out->secret[sl] = '\0';
    return 0;
}

int sim_creds_read(const char *path, uint32_t max, sim_cred_t **out, uint32_t *n, char *err,
                   size_t errlen)
{
    int rc = 0;
    sim_cred_t *c = NULL;
    uint32_t k = 0, cap = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    char line[LINE_MAX_LEN];
    unsigned long lineno = 0;
    while (k < max && fgets(line, sizeof(line), f)) {
        lineno++;
        size_t ll = strlen(line);
        if (ll == sizeof(line) - 1 && line[ll - 1] != '\n') {
            rc = -EINVAL;
            snprintf(err, errlen, "%s:%lu: line too long", path, lineno);
            goto fail;
        }
        sim_cred_t one;
        int r = sim_creds_parse_line(line, &one);
        if (r == -ENOENT)
            continue;
        if (r < 0) {
            rc = -EINVAL;
            snprintf(err, errlen, "%s:%lu: expected \"device-id secret\"", path, lineno);
            goto fail;
        }
        if (k == cap) {
            uint32_t ncap = cap ? cap * 2 : 1024;
            sim_cred_t *nc = realloc(c, (size_t)ncap * sizeof(*nc));
            if (!nc) {
                rc = -ENOMEM;
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            c = nc;
            cap = ncap;
        }
        c[k++] = one;
    }
    if (ferror(f)) {
        rc = -EIO;
        snprintf(err, errlen, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    *out = c;
    *n = k;
    return 0;
fail:
    if (f)
        fclose(f);
    free(c);
    return rc;
}

int sim_creds_write(const char *path, const sim_cred_t *c, uint32_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int e = errno;
        close(fd);
        return -e;
    }
    for (uint32_t i = 0; i < n; i++)
        fprintf(f, "%s %s\n", c[i].id, c[i].secret[0] ? c[i].secret : "-");
    int rc = ferror(f) ? -EIO : 0;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

int sim_creds_generate(sim_cred_t *c, uint32_t n, const char *prefix, uint32_t first)
{
    for (uint32_t i = 0; i < n; i++) {
        int k = snprintf(c[i].id, sizeof(c[i].id), "%s%06u", prefix, first + i);
        if (k < 0 || (size_t)k >= sizeof(c[i].id))
            return -EINVAL;
        c[i].secret[0] = '\0';
    }
    return 0;
}

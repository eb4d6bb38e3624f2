/* User command allow-list and argv (see agent_cmd.h). */
#include "agent_cmd.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool agent_cmd_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > AGENT_CMD_NAME_MAX || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int agent_cmd_resolve(const char *dir, const char *name, char *out, size_t outlen)
{
    char rdir[PATH_MAX], cand[PATH_MAX + AGENT_CMD_NAME_MAX + 2], rpath[PATH_MAX];
    if (!agent_cmd_name_valid(name))
        return -EINVAL;
    if (realpath(dir, rdir) == NULL)
        return -ENOENT;
    snprintf(cand, sizeof(cand), "%s/%s", rdir, name);
    if (realpath(cand, rpath) == NULL)
        return errno == ENOENT || errno == ENOTDIR ? -ENOENT : -EACCES;
    /* Still directly inside commands_dir once every symlink is followed. */
    size_t dl = strlen(rdir);
    bool root = dl == 1; /* commands_dir "/" would make this test wrong */
    if (root || strncmp(rpath, rdir, dl) != 0 || rpath[dl] != '/' ||
        strchr(rpath + dl + 1, '/') != NULL)
        return -EACCES;
    struct stat st;
    if (stat(rpath, &st) < 0)
        return -ENOENT;
    if (!S_ISREG(st.st_mode) || access(rpath, X_OK) < 0)
        return -EACCES;
    size_t n = strlen(rpath);
    if (n >= outlen)
        return -ENAMETOOLONG;
    memcpy(out, rpath, n + 1);
    return 0;
}

void agent_cmd_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (char **p = argv; *p != NULL; p++)
        free(*p);
    free(argv);
}

int agent_cmd_argv(const char *name, const json_t *params, char ***out)
{
    const json_t *args = json_is_object(params) ? json_object_get(params, "args") : NULL;
    size_t n = 0;
    if (args != NULL) {
        if (!json_is_array(args) || json_array_size(args) > AGENT_CMD_ARGS_MAX)
            return -EINVAL;
        n = json_array_size(args);
        for (size_t i = 0; i < n; i++) {
            const json_t *a = json_array_get(args, i);
            if (!json_is_string(a) || json_string_length(a) > AGENT_CMD_ARG_LEN_MAX ||
                strlen(json_string_value(a)) != json_string_length(a))
                return -EINVAL;
        }
    }
    char **argv = calloc(n + 2, sizeof(*argv));
    if (argv == NULL)
        return -ENOMEM;
    argv[0] = strdup(name);
    if (argv[0] == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        argv[i + 1] = strdup(json_string_value(json_array_get(args, i)));
        if (argv[i + 1] == NULL)
            goto fail;
    }
    *out = argv;
    return 0;
fail:
    agent_cmd_argv_free(argv);
    return -ENOMEM;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    if (c >= 0x01 && c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    /* Overlong forms, surrogates and values past U+10FFFF. */
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

void agent_utf8_clean(char *buf, size_t len)
{
    unsigned char *p = (unsigned char *)buf;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq(p + i, len - i);
        if (n == 0) {
            p[i] = '?';
            n = 1;
        }
        i += n;
    }
}

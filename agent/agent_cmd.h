/*
 * User commands: the allow-list check and the argument vector.
 *
 * A command name maps to an executable directly inside commands_dir and
 * nothing else: the name is [A-Za-z0-9._-]{1,128} not starting with '.'
 * (so no "..", no '/', no hidden files), and the resolved path (symlinks
 * followed) must still be a direct child of commands_dir's own resolved
 * path: a symlink pointing outside, e.g. to /bin/sh, is refused. The
 * program runs without a shell with params.args as its argv.
 *
 * Pure helpers; no logging.
 */
#ifndef DROVER_AGENT_CMD_H
#define DROVER_AGENT_CMD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define AGENT_CMD_NAME_MAX 128
#define AGENT_CMD_ARGS_MAX 64
#define AGENT_CMD_ARG_LEN_MAX 4096

bool agent_cmd_name_valid(const char *name);

/* Resolves name inside dir into out (an absolute path). -EINVAL for a bad
 * name, -ENOENT if there is no such file, -EACCES if it is not a regular
 * executable file directly inside dir (after resolving symlinks),
 * -ENAMETOOLONG if out is too small. */
int agent_cmd_resolve(const char *dir, const char *name, char *out, size_t outlen);

/* Builds argv = {name, params.args...}, NULL-terminated, for execve.
 * params may be NULL or lack "args"; "args" must be an array of at most
 * AGENT_CMD_ARGS_MAX strings without NUL bytes, each at most
 * AGENT_CMD_ARG_LEN_MAX bytes (-EINVAL otherwise). Caller frees with
 * agent_cmd_argv_free(). */
int agent_cmd_argv(const char *name, const json_t *params, char ***out);
void agent_cmd_argv_free(char **argv);

/* Replaces every byte that is not part of valid UTF-8 with '?', in place,
 * so the output of a program can travel as a JSON string. NUL bytes
 * become '?' too. */
void agent_utf8_clean(char *buf, size_t len);

#endif

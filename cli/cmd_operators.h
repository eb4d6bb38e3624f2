/*
 * `drover token ...`, `drover user ...` and `drover login`: API tokens,
 * operator users and password login from the CLI. drover.c parses the
 * command line into cli_ops_opts_t and calls cli_ops_run(), handing it a
 * connect callback so that usage errors are reported before anything about
 * the server or credentials, and so that `login` can connect without a
 * token. This file does the checks, the requests and the output.
 *
 * Passwords come from the terminal with echo off (asked twice when one is
 * being set), or with --password-stdin from the first line of stdin; they
 * are wiped from memory after use and never printed. A token is printed
 * only by `token create` and `login` (without --save), each time with a
 * warning on stderr that it is shown once.
 *
 * The pure helpers (cli_ops_parse_duration, cli_ops_config_with_token)
 * do no I/O.
 */
#ifndef DROVER_CLI_CMD_OPERATORS_H
#define DROVER_CLI_CMD_OPERATORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli_common.h"

typedef struct {
    const char *arg;        /* the NAME or ID positional, NULL for list commands */
    const char *role;       /* --role, or NULL */
    const char *expires_in; /* --expires-in, or NULL */
    bool password_stdin;
    bool save;
    bool disable, enable;
    bool json;
} cli_ops_opts_t;

/* what: the command path: "token create", "token list", "token rm",
 * "user add", "user list", "user rm", "user set" or "login". Returns the
 * exit status: 0 ok, 1 the server answered with an error, 2 the server
 * could not be reached, 64 a usage error. */
int cli_ops_run(const char *what, const cli_ops_opts_t *o, cli_connect_fn connect, void *ctx);

/* A lifetime: a positive whole number with an optional unit, s (the
 * default), m, h, d or w: "3600", "90m", "12h", "30d", "2w". At most ten
 * years (the server's cap); the server's floor is 60 s. -EINVAL or
 * -ERANGE. */
int cli_ops_parse_duration(const char *s, int64_t *secs);

/* The config file text (len bytes, may be 0) with its `token = ...` line
 * replaced by `token = TOKEN` (appended when there is none; further token
 * lines dropped), and `server = SERVER` appended when server is non-NULL
 * and the text names no server. Other lines are kept as they are. Writes
 * into out (initialised by the caller). -ENOMEM / -EFBIG from the buffer. */
int cli_ops_config_with_token(const char *text, size_t len, const char *token, const char *server,
                              cli_buf_t *out);

#endif

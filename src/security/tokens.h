/*
 * Operator API tokens. A token is "drv_" followed by 43 random base64url
 * characters; the store keeps only its SHA-256, so a stolen database gives
 * no usable token. On first start the server makes an admin token, prints
 * it once and writes it to <data-dir>/admin.token (0600).
 *
 * Roles: "admin" (everything), "operator", "viewer" (read only).
 * Loop thread only.
 */
#ifndef DROVER_SECURITY_TOKENS_H
#define DROVER_SECURITY_TOKENS_H

#include <stdbool.h>

#include "store/store.h"

#define TOKENS_PREFIX "drv_"
#define TOKENS_LEN (4 + CRYPTO_SECRET_LEN)

typedef enum {
    ROLE_NONE = 0,
    ROLE_VIEWER = 1,
    ROLE_OPERATOR = 2,
    ROLE_ADMIN = 3,
} role_t;

role_t tokens_role_parse(const char *name);

/* If the store holds no token yet, creates an admin token, writes it to
 * <data_dir>/admin.token with mode 0600 and copies it to out (TOKENS_LEN+1
 * bytes) and sets *created. Blocks until durable (start-up only). */
int tokens_bootstrap(store_t *st, struct event_base *base, const char *data_dir, char *out,
                     size_t outlen, bool *created);

/* Checks a bearer token: 0 and *role on success, -EACCES if unknown or
 * expired. */
int tokens_verify(store_t *st, const char *token, role_t *role, store_token_t *info);

#endif

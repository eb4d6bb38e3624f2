/*
 * Operators: API tokens, operator users and password login.
 *
 *   POST   /api/v1/tokens        {"name", "role", "expires_in_s"?}  201, the token shown once
 *   GET    /api/v1/tokens        {"tokens": [...]}, never a token value or hash
 *   DELETE /api/v1/tokens/{id}   204; the token stops working at once
 *   POST   /api/v1/users         {"name", "password", "role"}       201
 *   GET    /api/v1/users[/{id}]  never a password hash
 *   PATCH  /api/v1/users/{id}    {"role"?, "password"?, "disabled"?}
 *   DELETE /api/v1/users/{id}    204
 *   POST   /api/v1/login         {"name", "password", "expires_in_s"?} (public)
 *
 * Tokens. A token is minted here ("drv_" + 256 random bits, see tokens.h);
 * the store keeps its SHA-256 only, so the value exists in the 201 answer
 * and nowhere else. Every bearer check reads the store (tokens_verify), and
 * a 204 to DELETE is sent once the delete is committed: from then on the
 * token is refused. Expiry: "expires_in_s" 60 s to 10 years, absent or
 * null for a token that never expires.
 *
 * Users. Names are device-id shaped (1 to 64 of [A-Za-z0-9._-]) because
 * {id} in the route table is checked that way. Passwords are 12 to 1024
 * bytes and stored as scrypt strings (security/users.h); hashing and
 * verifying run on the users worker, never on the loop. A login mints an
 * ordinary API token named "login:<user>" with the user's role (default
 * lifetime 12 h). Changing a user's role or password, disabling or
 * deleting the user revokes every "login:<user>" token before the answer,
 * so a demoted or removed operator keeps no session.
 *
 * Login answers 401 with one message whether the name is unknown, the user
 * disabled or the password wrong, and spends one scrypt either way (a
 * dummy one for a missing user), so neither the answer nor its timing
 * tells which users exist. Failed logins are limited per source address
 * and per user name (deps.login_limit, security/ratelimit.h): an attempt
 * is counted before the password is checked, so concurrent guesses cannot
 * overtake the count, and taken back when it succeeds. A blocked source or
 * name gets 429 too_many_requests with Retry-After, before any hashing.
 * Loopback peers are limited per name only, unless auth_fail_loopback: a
 * local reverse proxy makes every client loopback, and one guesser must
 * not lock everyone out.
 *
 * Deferred work. A handler that waits (for the worker or the store) keeps
 * an op_t holding its api_pending_t; every callback first checks that the
 * request is still there (p->req), since the connection may be gone or the
 * api freed, and then only frees. Revoking login tokens submits several
 * deletes: `outstanding` counts them, with one extra count held while they
 * are being submitted, because a store submission that fails for memory
 * calls back at once.
 *
 * Loop thread only.
 */
#include <errno.h>
#include <event2/http.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/util.h"
#include "security/ratelimit.h"
#include "security/users.h"

#define TOKEN_NAME_MAX 64
#define EXPIRES_MIN_S 60
#define EXPIRES_MAX_S (10LL * 365 * 24 * 3600)
#define LOGIN_DEFAULT_S (12LL * 3600)
#define LOGIN_PREFIX "login:"
#define BAD_LOGIN "wrong user name or password"

/* ---- Shared ------------------------------------------------------------------ */

static const char *role_text(role_t r)
{
    switch (r) {
    case ROLE_ADMIN:
        return "admin";
    case ROLE_OPERATOR:
        return "operator";
    case ROLE_VIEWER:
        return "viewer";
    case ROLE_NONE:
        break;
    }
    return "none";
}

static json_t *token_json(const store_token_t *t)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_t *name = json_string(t->name);
    json_object_set_new(o, "id", json_string(t->id));
    json_object_set_new(o, "name", name != NULL ? name : json_string("?"));
    json_object_set_new(o, "role", json_string(t->role));
    json_object_set_new(o, "created_at", json_integer(t->created_at));
    json_object_set_new(o, "expires_at",
                        t->expires_at != 0 ? json_integer(t->expires_at) : json_null());
    return o;
}

static json_t *user_json(const store_user_t *u)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "name", json_string(u->name));
    json_object_set_new(o, "role", json_string(u->role));
    json_object_set_new(o, "created_at", json_integer(u->created_at));
    json_object_set_new(o, "disabled", json_boolean(u->disabled));
    return o;
}

/* "role": one of admin, operator, viewer. Replies 400 otherwise. */
static int role_arg(api_req_t *r, const json_t *v, role_t *out)
{
    role_t role = json_is_string(v) ? tokens_role_parse(json_string_value(v)) : ROLE_NONE;
    if (role == ROLE_NONE) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"role\" must be \"admin\", \"operator\" or \"viewer\"");
        return -EINVAL;
    }
    *out = role;
    return 0;
}

/* "expires_in_s": absent or null gives dflt (0: never expires). */
static int expiry_arg(api_req_t *r, const json_t *body, int64_t dflt, int64_t *out)
{
    const json_t *v = json_object_get(body, "expires_in_s");
    if (v == NULL || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < EXPIRES_MIN_S ||
        json_integer_value(v) > EXPIRES_MAX_S) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"expires_in_s\" must be an integer from %d to %lld (10 years)",
                        EXPIRES_MIN_S, EXPIRES_MAX_S);
        return -EINVAL;
    }
    *out = json_integer_value(v);
    return 0;
}

/* A password given in a body: 12 to 1024 bytes. Replies 400 otherwise. */
static int password_arg(api_req_t *r, const json_t *v, const char **pw, size_t *len)
{
    if (!json_is_string(v) || json_string_length(v) < USERS_PASSWORD_MIN ||
        json_string_length(v) > USERS_PASSWORD_MAX) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"password\" must be a string of %d to %d bytes", USERS_PASSWORD_MIN,
                        USERS_PASSWORD_MAX);
        return -EINVAL;
    }
    *pw = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static bool token_name_ok(const json_t *v)
{
    if (!json_is_string(v))
        return false;
    size_t n = json_string_length(v);
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    if (n == 0 || n > TOKEN_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static void reply_busy(api_t *api, struct evhttp_request *req, const char *what)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    api_reply_error(api, req, 503, "unavailable", "%s: too many password checks in progress", what);
}

/* A freshly minted token: its text (shown once), its row and hash. */
typedef struct mint {
    char token[TOKENS_LEN + 1];
    store_token_t row;
    uint8_t hash[CRYPTO_HASH_LEN];
} mint_t;

static int mint_new(const char *name, role_t role, int64_t expires_in_s, mint_t *m)
{
    memset(m, 0, sizeof(*m));
    uint8_t idraw[8];
    int rc = crypto_secret_new(TOKENS_PREFIX, m->token, sizeof(m->token));
    if (rc == 0)
        rc = crypto_random(idraw, sizeof(idraw));
    if (rc < 0) {
        OPENSSL_cleanse(m->token, sizeof(m->token));
        return rc;
    }
    util_hex_encode(idraw, sizeof(idraw), m->row.id);
    snprintf(m->row.name, sizeof(m->row.name), "%s", name);
    snprintf(m->row.role, sizeof(m->row.role), "%s", role_text(role));
    m->row.created_at = util_now_ms();
    m->row.expires_at = expires_in_s > 0 ? m->row.created_at + expires_in_s * 1000 : 0;
    crypto_sha256(m->token, TOKENS_LEN, m->hash);
    return 0;
}

/* The 201 answer for a minted token: its row plus the token itself. */
static json_t *minted_json(const mint_t *m)
{
    json_t *o = token_json(&m->row);
    if (o != NULL && json_object_set_new(o, "token", json_string(m->token)) < 0) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

/* One deferred request. */
typedef struct op {
    api_pending_t *p;
    mint_t mint;
    store_user_t user;
    bool revoke;     /* revoke the user's login tokens before answering */
    int reply;       /* status of the final answer: 200, 201 or 204 */
    int outstanding; /* token deletes in flight (plus one while submitting) */
    char src_key[RATELIMIT_KEY_MAX];
    char user_key[RATELIMIT_KEY_MAX];
    bool by_source; /* src_key is limited (not loopback, or loopback is too) */
    int64_t expires_in_s;
} op_t;

static op_t *op_new(api_req_t *r)
{
    op_t *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->p = api_pending_new(r);
    if (op->p == NULL) {
        free(op);
        return NULL;
    }
    return op;
}

static void op_free(op_t *op)
{
    if (op == NULL)
        return;
    api_pending_free(op->p);
    OPENSSL_cleanse(op, sizeof(*op));
    free(op);
}

/* The request is still there to answer. */
static bool live(const op_t *op)
{
    return op->p->req != NULL;
}

/* ---- POST /api/v1/tokens ---------------------------------------------------- */

static void token_inserted(void *arg, int rc, int64_t value)
{
    (void)value;
    op_t *op = arg;
    api_pending_t *p = op->p;
    if (!live(op))
        goto done;
    if (rc < 0)
        api_reply_errno(p->api, p->req, rc, "storing the token");
    else
        api_reply_json(p->api, p->req, 201, minted_json(&op->mint));
done:
    op_free(op);
}

void api_tokens_create(api_req_t *r)
{
    json_t *body = NULL;
    if (api_store_busy(r) || api_body_json(r, &body) < 0)
        return;
    role_t role;
    int64_t expires;
    if (!json_is_object(body)) {
        api_reply_error(r->api, r->req, 400, "bad_request", "the body must be a JSON object");
        goto done;
    }
    const json_t *name = json_object_get(body, "name");
    if (!token_name_ok(name)) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"name\" must be a string of 1 to %d bytes without control characters",
                        TOKEN_NAME_MAX);
        goto done;
    }
    if (role_arg(r, json_object_get(body, "role"), &role) < 0 || expiry_arg(r, body, 0, &expires))
        goto done;
    op_t *op = op_new(r);
    if (op == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        goto done;
    }
    int rc = mint_new(json_string_value(name), role, expires, &op->mint);
    if (rc < 0) {
        op_free(op);
        api_reply_errno(r->api, r->req, rc, "making a token");
        goto done;
    }
    store_token_insert(r->api->deps.store, &op->mint.row, op->mint.hash, token_inserted, op);
done:
    json_decref(body);
}

/* ---- GET /api/v1/tokens ------------------------------------------------------ */

static int list_token(void *arg, const store_token_t *t)
{
    json_t *o = token_json(t);
    if (o == NULL || json_array_append_new(arg, o) < 0)
        return -ENOMEM;
    return 0;
}

void api_tokens_list(api_req_t *r)
{
    json_t *arr = json_array();
    int rc = arr != NULL ? store_token_list(r->api->deps.store, list_token, arr) : -ENOMEM;
    api_reply_list(r->api, r->req, arr, rc, "tokens", "listing tokens");
}

/* ---- DELETE /api/v1/tokens/{id} ------------------------------------------------ */

static void token_deleted(void *arg, int rc, int64_t value)
{
    (void)value;
    api_pending_t *p = arg;
    if (p->req == NULL)
        goto done;
    if (rc == -ENOENT)
        api_reply_error(p->api, p->req, 404, "not_found", "no token \"%s\"", p->id);
    else if (rc < 0)
        api_reply_errno(p->api, p->req, rc, "deleting the token");
    else
        api_reply_empty(p->api, p->req, 204);
done:
    api_pending_free(p);
}

void api_tokens_delete(api_req_t *r)
{
    if (api_store_busy(r))
        return;
    store_token_t t;
    int rc = store_token_get(r->api->deps.store, r->id, &t);
    if (rc == -ENOENT) {
        api_reply_error(r->api, r->req, 404, "not_found", "no token \"%s\"", r->id);
        return;
    }
    if (rc < 0) {
        api_reply_errno(r->api, r->req, rc, "reading the token");
        return;
    }
    api_pending_t *p = api_pending_new(r);
    if (p == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        return;
    }
    store_token_delete(r->api->deps.store, r->id, token_deleted, p);
}

/* ---- Revoking a user's login tokens ---------------------------------------------- */

static void answer_user(op_t *op)
{
    api_pending_t *p = op->p;
    if (op->reply == 204)
        api_reply_empty(p->api, p->req, 204);
    else
        api_reply_json(p->api, p->req, op->reply, user_json(&op->user));
}

static void revoke_one_done(void *arg, int rc, int64_t value)
{
    (void)value;
    op_t *op = arg;
    /* -ENOENT: gone already (another revocation); anything else is logged
     * and the token left to its expiry: the user change itself is done. */
    if (rc < 0 && rc != -ENOENT)
        log_warn("api: revoking a login token of user '%s': %s", op->user.name, strerror(-rc));
    if (--op->outstanding > 0)
        return;
    if (live(op))
        answer_user(op);
    op_free(op);
}

struct login_ids {
    const char *want; /* "login:<user>" */
    char (*ids)[sizeof(((store_token_t *)0)->id)];
    size_t n, cap;
};

static int collect_login(void *arg, const store_token_t *t)
{
    struct login_ids *c = arg;
    if (strcmp(t->name, c->want) != 0)
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        void *ids = realloc(c->ids, cap * sizeof(*c->ids));
        if (ids == NULL)
            return -ENOMEM;
        c->ids = ids;
        c->cap = cap;
    }
    snprintf(c->ids[c->n++], sizeof(c->ids[0]), "%s", t->id);
    return 0;
}

/* Deletes every "login:<user>" token, then answers (and frees op). */
static void revoke_and_answer(op_t *op)
{
    api_pending_t *p = op->p;
    store_t *st = p->api->deps.store;
    char want[sizeof(LOGIN_PREFIX) + sizeof(op->user.name)];
    snprintf(want, sizeof(want), LOGIN_PREFIX "%s", op->user.name);
    struct login_ids c = {.want = want};
    int rc = store_token_list(st, collect_login, &c);
    if (rc < 0) {
        /* The user row is already changed; say so rather than fail it. */
        log_warn("api: listing login tokens of user '%s': %s", op->user.name, strerror(-rc));
        c.n = 0;
    }
    op->outstanding = 1;
    for (size_t i = 0; i < c.n; i++) {
        op->outstanding++;
        store_token_delete(st, c.ids[i], revoke_one_done, op);
    }
    free(c.ids);
    revoke_one_done(op, 0, 0); /* drops the submission count */
}

/* ---- POST /api/v1/users --------------------------------------------------------- */

static void user_written(void *arg, int rc, int64_t value)
{
    (void)value;
    op_t *op = arg;
    api_pending_t *p = op->p;
    if (!live(op))
        goto done;
    if (rc == -EEXIST)
        api_reply_error(p->api, p->req, 409, "conflict", "user \"%s\" already exists",
                        op->user.name);
    else if (rc == -ENOENT)
        api_reply_error(p->api, p->req, 404, "not_found", "no user \"%s\"", op->user.name);
    else if (rc < 0)
        api_reply_errno(p->api, p->req, rc, "storing the user");
    else if (op->revoke) {
        revoke_and_answer(op);
        return;
    } else
        answer_user(op);
done:
    op_free(op);
}

/* The password hash is ready: store the user (insert for 201, else update). */
static void user_hashed(void *arg, int rc, const char *encoded)
{
    op_t *op = arg;
    api_pending_t *p = op->p;
    if (!live(op))
        goto fail;
    if (rc == 0 && strlen(encoded) >= sizeof(op->user.password_hash))
        rc = -EINVAL;
    if (rc < 0) {
        api_reply_errno(p->api, p->req, rc == -EINVAL ? -EIO : rc, "hashing the password");
        goto fail;
    }
    snprintf(op->user.password_hash, sizeof(op->user.password_hash), "%s", encoded);
    if (op->reply == 201)
        store_user_insert(p->api->deps.store, &op->user, user_written, op);
    else
        store_user_update(p->api->deps.store, &op->user, user_written, op);
    return;
fail:
    op_free(op);
}

/* Hands the password to the worker; on refusal replies and frees op. */
static void hash_password(api_req_t *r, op_t *op, const char *pw, size_t len)
{
    int rc = r->api->deps.users != NULL
                 ? users_hash_async(r->api->deps.users, pw, len, user_hashed, op)
                 : -ENOSYS;
    if (rc == 0)
        return;
    if (rc == -EAGAIN)
        reply_busy(r->api, r->req, "hashing the password");
    else
        api_reply_errno(r->api, r->req, rc, "hashing the password");
    op_free(op);
}

void api_users_create(api_req_t *r)
{
    json_t *body = NULL;
    if (api_store_busy(r) || api_body_json(r, &body) < 0)
        return;
    role_t role;
    const char *pw;
    size_t pwlen;
    if (!json_is_object(body)) {
        api_reply_error(r->api, r->req, 400, "bad_request", "the body must be a JSON object");
        goto done;
    }
    const json_t *name = json_object_get(body, "name");
    if (!json_is_string(name) ||
        !util_id_valid(json_string_value(name), json_string_length(name))) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "\"name\" must be a string of 1 to 64 characters from [A-Za-z0-9._-]");
        goto done;
    }
    if (role_arg(r, json_object_get(body, "role"), &role) < 0 ||
        password_arg(r, json_object_get(body, "password"), &pw, &pwlen) < 0)
        goto done;
    store_user_t existing;
    int rc = store_user_get(r->api->deps.store, json_string_value(name), &existing);
    OPENSSL_cleanse(&existing, sizeof(existing));
    if (rc == 0) {
        api_reply_error(r->api, r->req, 409, "conflict", "user \"%s\" already exists",
                        json_string_value(name));
        goto done;
    }
    if (rc != -ENOENT) {
        api_reply_errno(r->api, r->req, rc, "reading users");
        goto done;
    }
    op_t *op = op_new(r);
    if (op == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        goto done;
    }
    snprintf(op->user.name, sizeof(op->user.name), "%s", json_string_value(name));
    snprintf(op->user.role, sizeof(op->user.role), "%s", role_text(role));
    op->user.created_at = util_now_ms();
    op->reply = 201;
    hash_password(r, op, pw, pwlen);
done:
    json_decref(body);
}

/* ---- GET /api/v1/users, /api/v1/users/{id} ---------------------------------------- */

static int list_user(void *arg, const store_user_t *u)
{
    json_t *o = user_json(u);
    if (o == NULL || json_array_append_new(arg, o) < 0)
        return -ENOMEM;
    return 0;
}

void api_users_list(api_req_t *r)
{
    json_t *arr = json_array();
    int rc = arr != NULL ? store_user_list(r->api->deps.store, list_user, arr) : -ENOMEM;
    api_reply_list(r->api, r->req, arr, rc, "users", "listing users");
}

/* Reads {id}; replies 404 or an error when it cannot. */
static int get_user(api_req_t *r, store_user_t *u)
{
    int rc = store_user_get(r->api->deps.store, r->id, u);
    if (rc == -ENOENT)
        api_reply_error(r->api, r->req, 404, "not_found", "no user \"%s\"", r->id);
    else if (rc < 0)
        api_reply_errno(r->api, r->req, rc, "reading the user");
    return rc;
}

void api_users_get(api_req_t *r)
{
    store_user_t u;
    if (get_user(r, &u) < 0)
        return;
    api_reply_json(r->api, r->req, 200, user_json(&u));
    OPENSSL_cleanse(&u, sizeof(u));
}

/* ---- PATCH /api/v1/users/{id} ------------------------------------------------------- */

void api_users_update(api_req_t *r)
{
    json_t *body = NULL;
    op_t *op = NULL;
    if (api_store_busy(r) || api_body_json(r, &body) < 0)
        return;
    const char *key;
    json_t *v;
    role_t role = ROLE_NONE;
    const char *pw = NULL;
    size_t pwlen = 0;
    const json_t *disabled = NULL;
    if (!json_is_object(body) || json_object_size(body) == 0) {
        api_reply_error(r->api, r->req, 400, "bad_request",
                        "the body must be a JSON object with \"role\", \"password\" or "
                        "\"disabled\"");
        goto done;
    }
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "role") == 0) {
            if (role_arg(r, v, &role) < 0)
                goto done;
        } else if (strcmp(key, "password") == 0) {
            if (password_arg(r, v, &pw, &pwlen) < 0)
                goto done;
        } else if (strcmp(key, "disabled") == 0) {
            if (!json_is_boolean(v)) {
                api_reply_error(r->api, r->req, 400, "bad_request",
                                "\"disabled\" must be true or false");
                goto done;
            }
            disabled = v;
        } else {
            api_reply_error(r->api, r->req, 400, "bad_request",
                            "unknown field (allowed: \"role\", \"password\", \"disabled\")");
            goto done;
        }
    }
    op = op_new(r);
    if (op == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        goto done;
    }
    if (get_user(r, &op->user) < 0)
        goto done;
    if (role != ROLE_NONE && strcmp(op->user.role, role_text(role)) != 0) {
        snprintf(op->user.role, sizeof(op->user.role), "%s", role_text(role));
        op->revoke = true;
    }
    if (disabled != NULL) {
        if (json_is_true(disabled) && !op->user.disabled)
            op->revoke = true;
        op->user.disabled = json_is_true(disabled);
    }
    op->reply = 200;
    if (pw != NULL) {
        op->revoke = true;
        hash_password(r, op, pw, pwlen);
        op = NULL;
        goto done;
    }
    store_user_update(r->api->deps.store, &op->user, user_written, op);
    op = NULL;
done:
    op_free(op);
    json_decref(body);
}

/* ---- DELETE /api/v1/users/{id} ------------------------------------------------------- */

void api_users_delete(api_req_t *r)
{
    if (api_store_busy(r))
        return;
    op_t *op = op_new(r);
    if (op == NULL) {
        api_reply_error(r->api, r->req, 500, "internal", "out of memory");
        return;
    }
    if (get_user(r, &op->user) < 0) {
        op_free(op);
        return;
    }
    op->reply = 204;
    op->revoke = true;
    store_user_delete(r->api->deps.store, op->user.name, user_written, op);
}

/* ---- POST /api/v1/login ---------------------------------------------------------------- */

/* The limiter for this attempt's source key, or NULL when not limited. */
static ratelimit_t *src_limit(const op_t *op, ratelimit_t *rl)
{
    return op->by_source ? rl : NULL;
}

static int64_t now_mono_ms(void)
{
    return util_mono_us() / 1000;
}

static void login_inserted(void *arg, int rc, int64_t value)
{
    (void)value;
    op_t *op = arg;
    api_pending_t *p = op->p;
    if (!live(op))
        goto done;
    if (rc < 0)
        api_reply_errno(p->api, p->req, rc, "storing the login token");
    else
        api_reply_json(p->api, p->req, 201, minted_json(&op->mint));
done:
    op_free(op);
}

static void login_verified(void *arg, int rc)
{
    op_t *op = arg;
    api_pending_t *p = op->p;
    store_user_t u;
    memset(&u, 0, sizeof(u));
    if (!live(op))
        goto done;
    api_t *api = p->api;
    if (rc == 0) {
        /* The user may have changed (or gone) while the hash ran. */
        int grc = store_user_get(api->deps.store, op->user.name, &u);
        if (grc == 0 && (u.disabled || tokens_role_parse(u.role) == ROLE_NONE ||
                         strcmp(u.password_hash, op->user.password_hash) != 0))
            grc = -EACCES;
        if (grc < 0 && grc != -ENOENT && grc != -EACCES) {
            api_reply_errno(api, p->req, grc, "reading the user");
            goto done;
        }
        rc = grc < 0 ? -EACCES : 0;
    } else if (rc == -EINVAL) {
        log_error("api: user '%s' has a password hash this server cannot read", op->user.name);
        rc = -EACCES;
    }
    if (rc == -EACCES) {
        log_info("api: failed login for '%s' from %s", op->user.name, op->src_key);
        api_reply_error(api, p->req, 401, "unauthorized", BAD_LOGIN);
        goto done;
    }
    if (rc < 0) {
        api_reply_errno(api, p->req, rc, "checking the password");
        goto done;
    }
    /* Success: take back the attempt counted up front. */
    ratelimit_forgive(src_limit(op, api->deps.login_limit), op->src_key);
    ratelimit_reset(api->deps.login_limit, op->user_key);
    char name[sizeof(LOGIN_PREFIX) + sizeof(u.name)];
    snprintf(name, sizeof(name), LOGIN_PREFIX "%s", u.name);
    rc = mint_new(name, tokens_role_parse(u.role), op->expires_in_s, &op->mint);
    if (rc < 0) {
        api_reply_errno(api, p->req, rc, "making a token");
        goto done;
    }
    log_info("api: user '%s' logged in from %s", op->user.name, op->src_key);
    OPENSSL_cleanse(&u, sizeof(u));
    store_token_insert(api->deps.store, &op->mint.row, op->mint.hash, login_inserted, op);
    return;
done:
    OPENSSL_cleanse(&u, sizeof(u));
    op_free(op);
}

/* The peer's limiter key; false when it is not to be limited per source
 * (a loopback peer, unless auth_fail_loopback). */
static bool source_key(api_req_t *r, char *out, size_t len)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, &addr, &port);
    int rc = addr != NULL ? ratelimit_source_key(addr, false, out, len) : -EINVAL;
    if (rc < 0)
        snprintf(out, len, "ip:?");
    return rc == 0 || (rc == 1 && r->api->deps.config->auth_fail_loopback);
}

static void reply_limited(api_req_t *r, int64_t ms, const char *what)
{
    char secs[24];
    snprintf(secs, sizeof(secs), "%" PRId64, (ms + 999) / 1000);
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After", secs);
    api_reply_error(r->api, r->req, 429, "too_many_requests",
                    "too many failed logins %s; try again in %s s", what, secs);
}

void api_login(api_req_t *r)
{
    json_t *body = NULL;
    op_t *op = NULL;
    if (api_store_busy(r) || api_body_json(r, &body) < 0)
        return;
    api_t *api = r->api;
    ratelimit_t *rl = api->deps.login_limit;
    const json_t *name = json_object_get(body, "name");
    const json_t *pw = json_object_get(body, "password");
    int64_t expires;
    if (!json_is_object(body) || !json_is_string(name) || !json_is_string(pw)) {
        api_reply_error(api, r->req, 400, "bad_request",
                        "the body must be a JSON object with string \"name\" and \"password\"");
        goto done;
    }
    if (expiry_arg(r, body, LOGIN_DEFAULT_S, &expires) < 0)
        goto done;
    /* The audit entry names who tried to log in (valid names only: the
     * text goes into the log). */
    if (util_id_valid(json_string_value(name), json_string_length(name))) {
        snprintf(r->audit.actor, sizeof(r->audit.actor), "user:%s", json_string_value(name));
        snprintf(r->audit.object, sizeof(r->audit.object), "%s", json_string_value(name));
    }
    op = op_new(r);
    if (op == NULL) {
        api_reply_error(api, r->req, 500, "internal", "out of memory");
        goto done;
    }
    op->expires_in_s = expires;
    /* The name as given, cut to the column's size: only used for lookups,
     * keys and logs, and an over-long name matches no user anyway. */
    bool name_ok = util_id_valid(json_string_value(name), json_string_length(name));
    snprintf(op->user.name, sizeof(op->user.name), "%s", name_ok ? json_string_value(name) : "?");
    op->by_source = source_key(r, op->src_key, sizeof(op->src_key));
    snprintf(op->user_key, sizeof(op->user_key), "user:%s", json_string_value(name));

    int64_t now = now_mono_ms();
    int64_t wait = ratelimit_check(src_limit(op, rl), op->src_key, now);
    if (wait > 0) {
        log_info("api: login from %s refused: too many failures", op->src_key);
        reply_limited(r, wait, "from this address");
        goto done;
    }
    wait = ratelimit_check(rl, op->user_key, now);
    if (wait > 0) {
        log_info("api: login for '%s' from %s refused: too many failures", op->user.name,
                 op->src_key);
        reply_limited(r, wait, "for this user");
        goto done;
    }
    /* Counted now, taken back on success (see the top of the file). */
    ratelimit_fail(src_limit(op, rl), op->src_key, now);
    ratelimit_fail(rl, op->user_key, now);

    const char *encoded = NULL;
    store_user_t u;
    int rc = name_ok ? store_user_get(api->deps.store, op->user.name, &u) : -ENOENT;
    if (rc < 0 && rc != -ENOENT) {
        ratelimit_forgive(src_limit(op, rl), op->src_key);
        ratelimit_forgive(rl, op->user_key);
        api_reply_errno(api, r->req, rc, "reading the user");
        goto done;
    }
    if (rc == 0 && !u.disabled) {
        snprintf(op->user.password_hash, sizeof(op->user.password_hash), "%s", u.password_hash);
        encoded = op->user.password_hash;
    }
    OPENSSL_cleanse(&u, sizeof(u));
    size_t len = json_string_length(pw);
    if (len == 0 || len > USERS_PASSWORD_MAX) {
        log_info("api: failed login for '%s' from %s", op->user.name, op->src_key);
        api_reply_error(api, r->req, 401, "unauthorized", BAD_LOGIN);
        goto done;
    }
    rc = api->deps.users != NULL ? users_verify_async(api->deps.users, json_string_value(pw), len,
                                                      encoded, login_verified, op)
                                 : -ENOSYS;
    if (rc == 0) {
        op = NULL;
        goto done;
    }
    ratelimit_forgive(src_limit(op, rl), op->src_key);
    ratelimit_forgive(rl, op->user_key);
    if (rc == -EAGAIN)
        reply_busy(api, r->req, "logging in");
    else
        api_reply_errno(api, r->req, rc, "checking the password");
done:
    op_free(op);
    json_decref(body);
}

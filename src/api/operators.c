/*
 * Operators: API tokens, users and login. (Being written.)
 */
#include "api/api_internal.h"

void api_tokens_create(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_tokens_list(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_tokens_delete(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_users_create(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_users_list(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_users_get(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_users_update(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_users_delete(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_login(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

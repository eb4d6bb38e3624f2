/*
 * PKI, provisioning and revocation. (Being written.)
 */
#include "api/api_internal.h"

void api_ca_get(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_certs_create(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_certs_list(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_certs_revoke(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_devices_revoke(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_devices_import(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_enrollments_create(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_enrollments_list(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_enrollments_get(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_enrollments_revoke(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

void api_provision(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

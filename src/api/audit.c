/*
 * The audit log over the API. (Being written.)
 */
#include "api/api_internal.h"

void api_audit_list(api_req_t *r)
{
    api_reply_error(r->api, r->req, 501, "not_implemented", "not implemented yet");
}

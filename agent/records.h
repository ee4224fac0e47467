/* records.h — the JSON the commands print for store records; the records
 * themselves (finding, reading, writing, sealing) are records/records.h. */
#ifndef CS_AGENT_RECORDS_H
#define CS_AGENT_RECORDS_H

#include <stdbool.h>
#include <time.h>

#include <jansson.h>

#include "../records/records.h"

/* The JSON of a certificate (README, CONTRACT: CERT) with its warnings. */
json_t *rec_cert_json(const rec_cert *c, bool is_default, STACK_OF(X509) * pool, time_t now);
json_t *rec_request_json(const uint8_t id[PKI_ID_LEN], const Certsync__RequestRecord *r);

#endif

/* records.h — the agent's view of store records: finding them by the id or
 * name an operator types, packing them, sealing their keys, and turning them
 * into the JSON the command prints. */
#ifndef CS_RECORDS_H
#define CS_RECORDS_H

#include <stdbool.h>
#include <time.h>

#include <jansson.h>

#include "../pki/pki.h"
#include "../seal/seal.h"
#include "../store/store.h"
#include "proto/store.pb-c.h"

/* A certificate record and where it lives. */
typedef struct rec_cert {
	cs_table table; /* CS_TBL_CERTS or CS_TBL_CAS */
	uint8_t id[PKI_ID_LEN];
	Certsync__CertRecord *rec;
} rec_cert;

/* Finds a certificate by full id, unique id prefix of 8+ hex digits, or
 * unique friendly name, among identities and CA certificates. */
int rec_cert_find(cs_txn *txn, const char *ref, rec_cert *out, cs_err *err);
/* 0 found, 1 absent, -1 error. */
int rec_cert_get(cs_txn *txn, cs_table t, const uint8_t id[PKI_ID_LEN], rec_cert *out, cs_err *err);
void rec_cert_clear(rec_cert *c);

/* 0 when no certificate (identity or CA), nor with requests_too a request,
 * has the friendly name; else -1 with a refusal naming the holder's id
 * prefix, since a name must select one record. */
int rec_name_unused(cs_txn *txn, const char *name, bool requests_too, cs_err *err);

/* Finds a pending key by the id `key list` shows (the hash of its public
 * key; a prefix of 8+ hex digits) or its name. */
int rec_key_find(cs_txn *txn, const char *ref, uint8_t id[PKI_ID_LEN], cs_err *err);

/* Finds a request the same way as rec_cert_find. */
int rec_request_find(cs_txn *txn, const char *ref, uint8_t id[PKI_ID_LEN],
                     Certsync__RequestRecord **out, cs_err *err);

/* Packs msg and puts it under key. */
int rec_put(cs_txn *txn, cs_table t, const uint8_t *key, size_t klen, const ProtobufCMessage *msg,
            cs_err *err);

/* The default certificate's id: 0 when one is set, 1 when none. */
int rec_default(cs_txn *txn, uint8_t id[PKI_ID_LEN], cs_err *err);
int rec_set_default(cs_txn *txn, const uint8_t id[PKI_ID_LEN], cs_err *err);

/* Every CA certificate of the store, parsed: the pool chains are built from. */
STACK_OF(X509) * rec_ca_pool(cs_txn *txn, cs_err *err);

/* Sets rec's metadata fields from info; the strings stay info's, so pack
 * rec before freeing info. */
void rec_cert_describe(Certsync__CertRecord *rec, pki_cert_info *info);

/* Seals key's PKCS#8 DER under the cluster key with ad (the record id). */
int rec_seal_key(const cs_key *key, EVP_PKEY *pkey, const uint8_t *ad, size_t adlen,
                 ProtobufCBinaryData *out, cs_err *err);
CS_MUST_CHECK EVP_PKEY *rec_unseal_key(const cs_key *key, const ProtobufCBinaryData *sealed,
                                       const uint8_t *ad, size_t adlen, cs_err *err);

/* "2027-11-22T07:00:00Z" into out. */
void rec_time(time_t t, char out[32]);

/* The JSON of a certificate (README, CONTRACT: CERT) with its warnings. */
json_t *rec_cert_json(const rec_cert *c, bool is_default, STACK_OF(X509) * pool, time_t now);
json_t *rec_request_json(const uint8_t id[PKI_ID_LEN], const Certsync__RequestRecord *r);

/* Whether r is valid at now; when it is not, why, with the date ("expired
 * on 2026-03-01", "not valid until 2027-01-02") in why (NULL: not wanted). */
bool rec_valid_at(const Certsync__CertRecord *r, time_t now, char why[48]);

/* Whether newer renews old: a certificate with old's key or old's names
 * (the same set, in any order or case) that expires later. */
bool rec_renews(const Certsync__CertRecord *newer, const Certsync__CertRecord *old);

/* 8-hex-digit prefix of an id, for messages. */
void rec_short_id(const uint8_t id[PKI_ID_LEN], char out[9]);

#endif

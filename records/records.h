/* records.h — the record format of the store, the whole API of the records/
 * module: the one place that reads and writes the records of the replicated
 * tables (proto/records.proto), the settings keys, the cluster settings, the
 * CA pool, the acme table's records, and the sealing of a record's private
 * key under its id.
 *
 * It sits above store/ (the tables hold the packed bytes), seal/ (keys) and
 * pki/ (certificates); the agent, tls/ and replication/ use it. */
#ifndef CS_RECORDS_RECORDS_H
#define CS_RECORDS_RECORDS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "../common/err.h"
#include "../pki/pki.h"
#include "../seal/seal.h"
#include "../store/store.h"
#include "proto/records.pb-c.h"

/* Keys of the settings table. */
#define REC_SETTINGS_KDF     "kdf"     /* Certsync__KdfParams: the cluster settings */
#define REC_SETTINGS_DEFAULT "default" /* Certsync__DefaultCert */
#define REC_SETTINGS_MEMBERS "members" /* Certsync__Members: the cluster's nodes */

/* ---- the cluster's membership (members.c) ---- */

#define REC_MEMBERS_MAX     65 /* a primary and the replication's 64 peers */
#define REC_MEMBER_NAME_MAX 64
#define REC_MEMBER_KEY_LEN  32 /* a CURVE public key */

typedef struct rec_member {
	char name[REC_MEMBER_NAME_MAX + 1];
	char role[8]; /* "primary", "backup" or "traffic" */
	char hostname[256];
	char repl_endpoint[300]; /* tcp://HOST:PORT; "" when none */
	char tls_endpoint[300];  /* HOST:PORT; "" when none */
	uint8_t key[REC_MEMBER_KEY_LEN];
} rec_member;

typedef struct rec_members {
	size_t n;
	rec_member v[REC_MEMBERS_MAX];
} rec_members;

/* The membership: 0 read into *m, 1 absent, -1 when it does not decode, is
 * damaged (a bad role, a key not of 32 bytes) or the store fails. */
int rec_members_get(cs_txn *txn, rec_members *m, cs_err *err);
int rec_members_put(cs_txn *txn, const rec_members *m, cs_err *err);
/* The member named name, or NULL. */
const rec_member *rec_members_find(const rec_members *m, const char *name);

/* ---- the cluster settings ---- */

/* The cluster settings: 0 found (*out to free with
 * certsync__kdf_params__free_unpacked), 1 absent, -1 when they do not
 * decode or the store fails. */
int rec_kdf_get(cs_txn *txn, Certsync__KdfParams **out, cs_err *err);

/* Makes a new cluster in txn: random salt and cluster id, the limits given
 * (cs_kdf_default_limits for a real cluster), the key-check value of the
 * key pass gives; the settings are put in txn and the key goes to *key. */
CS_MUST_CHECK int rec_cluster_create(cs_txn *txn, const char *pass, size_t passlen,
                                     uint64_t opslimit, uint64_t memlimit, cs_key **key,
                                     cs_err *err);

/* Derives the cluster key from pass under kdf and checks it against kdf's
 * key-check value: 0 with *key; 1 when pass gives another key (nothing in
 * *key, err says "cluster passphrase does not match"); -1 when kdf is
 * damaged or the derivation fails. */
CS_MUST_CHECK int rec_cluster_key(const Certsync__KdfParams *kdf, const char *pass, size_t passlen,
                                  cs_key **key, cs_err *err);

/* Whether kdf's key-check value is key's (false for a NULL key). */
bool rec_kdf_names(const Certsync__KdfParams *kdf, const cs_key *key);
/* Whether the store in txn is sealed under key: 0 when it is (or has no
 * cluster settings yet), 1 when under another key (`cluster rekey`
 * changed it), -1 on error. */
int rec_sealed_under(cs_txn *txn, const cs_key *key, cs_err *err);

/* The default certificate's id: 0 when one is set, 1 when none, -1 error. */
int rec_default(cs_txn *txn, uint8_t id[PKI_ID_LEN], cs_err *err);
int rec_set_default(cs_txn *txn, const uint8_t id[PKI_ID_LEN], cs_err *err);

/* ---- certificates, requests and pending keys ---- */

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

/* A packed certificate record, as a table walk hands it: NULL when it does
 * not decode.  Free with certsync__cert_record__free_unpacked. */
Certsync__CertRecord *rec_cert_decode(const void *val, size_t vlen);

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

/* The largest record rec_put writes: a certificate at PKI_MAX_SANS names of
 * DNS's longest length, its names listed again in the record, fits; a
 * record is one of a change's ops, and a change travels to the followers
 * in messages of about a MiB (a larger one is refused, CS_EINPUT). */
#define REC_MAX_BYTES ((size_t)1 << 20)

/* Packs msg and puts it under key; refuses a record over REC_MAX_BYTES. */
int rec_put(cs_txn *txn, cs_table t, const uint8_t *key, size_t klen, const ProtobufCMessage *msg,
            cs_err *err);

/* Sets rec's metadata fields from info; the strings stay info's, so pack
 * rec before freeing info. */
void rec_cert_describe(Certsync__CertRecord *rec, pki_cert_info *info);

/* Whether r is valid at now; when it is not, why, with the date ("expired
 * on 2026-03-01", "not valid until 2027-01-02") in why (NULL: not wanted). */
bool rec_valid_at(const Certsync__CertRecord *r, time_t now, char why[48]);

/* Whether newer renews old: a certificate with old's key or old's names
 * (the same set, in any order or case) that expires later. */
bool rec_renews(const Certsync__CertRecord *newer, const Certsync__CertRecord *old);

/* ---- the CA pool ---- */

/* Every CA certificate of the store, parsed: the pool chains are built
 * from.  A CA record that does not decode is left out (logged once per
 * pool), so chains that needed it come out incomplete and say so; only the
 * store or memory failing fails the pool.  With ids_hash, the SHA-256 of
 * the ids of every CA record (decoded or not) in table order, which
 * changes whenever the table does. */
STACK_OF(X509) * rec_ca_pool(cs_txn *txn, uint8_t ids_hash[32], cs_err *err);

/* ---- keys ---- */

/* Seals key's PKCS#8 DER under the cluster key with ad (the record id). */
int rec_seal_key(const cs_key *key, EVP_PKEY *pkey, const uint8_t *ad, size_t adlen,
                 ProtobufCBinaryData *out, cs_err *err);
CS_MUST_CHECK EVP_PKEY *rec_unseal_key(const cs_key *key, const ProtobufCBinaryData *sealed,
                                       const uint8_t *ad, size_t adlen, cs_err *err);

/* Opens the sealed key of every record that holds one (certificates, CA
 * certificates, requests, pending keys) with from and seals it again under
 * to, in txn: the store's part of `cluster rekey`.  With to NULL it only
 * checks that each opens.  *count receives how many keys.  A key that does
 * not open fails with CS_ECRYPTO naming its table (txn must then be
 * aborted); the plaintext of a key lives only in wiped memory. */
int rec_reseal_all(cs_txn *txn, const cs_key *from, const cs_key *to, size_t *count, cs_err *err);

/* ---- text ---- */

/* 8-hex-digit prefix of an id, for messages. */
void rec_short_id(const uint8_t id[PKI_ID_LEN], char out[9]);

/* ---- the acme table (acme.c) ---- */

/* The kinds of key in the acme table: KIND/NAME ("account" alone). */
#define REC_ACME_ACCOUNT "account"
#define REC_ACME_CERT    "cert"
#define REC_ACME_ORDER   "order"
#define REC_ACME_HTTP01  "http01"
#define REC_ACME_ALPN    "alpn"

#define REC_ACME_KEY_MAX 320

/* States of a managed certificate. */
#define REC_ACME_STATE_SCHEDULED "scheduled"
#define REC_ACME_STATE_RUNNING   "running"
#define REC_ACME_STATE_FAILED    "failed" /* an operator error: no retry until `acme renew` */
#define REC_ACME_STATE_PAUSED    "paused" /* the account is paused or the CA stops us */

/* "KIND/NAME" (or KIND when name is NULL) into out; its length. */
size_t rec_acme_key(char out[REC_ACME_KEY_MAX], const char *kind, const char *name);

/* Reads and unpacks the record KIND/NAME of descriptor d: 0 found (*out to
 * free with protobuf_c_message_free_unpacked), 1 absent, -1 error. */
int rec_acme_get(cs_txn *txn, const char *kind, const char *name,
                 const ProtobufCMessageDescriptor *d, ProtobufCMessage **out, cs_err *err);
int rec_acme_put(cs_txn *txn, const char *kind, const char *name, const ProtobufCMessage *m,
                 cs_err *err);
int rec_acme_del(cs_txn *txn, const char *kind, const char *name, cs_err *err);

/* Calls fn for every record of kind, unpacked with d (freed after the
 * call); the name is what follows "KIND/".  A non-zero return stops. */
typedef int (*rec_acme_fn)(void *ctx, const char *name, ProtobufCMessage *m);
int rec_acme_foreach(cs_txn *txn, const char *kind, const ProtobufCMessageDescriptor *d,
                     rec_acme_fn fn, void *ctx, cs_err *err);

/* Reads managed certificate name, lets edit change a shallow copy of it
 * (set fields to strings that outlive the call) and stores the copy: 0
 * done, 1 absent, -1 error (edit's too). */
typedef int (*rec_acme_cert_edit)(cs_txn *txn, Certsync__AcmeCert *c, void *arg, cs_err *err);
int rec_acme_cert_update(cs_txn *txn, const char *name, rec_acme_cert_edit edit, void *arg,
                         cs_err *err);

#endif

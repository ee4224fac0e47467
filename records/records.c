/* records.c — the records of the certs, cas, requests and keys tables:
 * finding one by what an operator types, reading, packing and describing
 * them, and sealing their private keys (see records.h). */
#include "records.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "../common/clock.h"
#include "../common/hex.h"

#define MIN_PREFIX  8
#define MAX_MATCHES 4 /* named in an "ambiguous" message */

void rec_short_id(const uint8_t id[PKI_ID_LEN], char out[9])
{
	cs_hex(id, 4, out);
}

bool rec_valid_at(const Certsync__CertRecord *r, time_t now, char why[48])
{
	char day[32];

	if ((time_t)r->not_before <= now && now < (time_t)r->not_after)
		return true;
	if (why != NULL) {
		cs_iso_time(now < (time_t)r->not_before ? (time_t)r->not_before
		                                        : (time_t)r->not_after,
		            day);
		snprintf(why, 48, "%s %.10s",
		         now < (time_t)r->not_before ? "not valid until" : "expired on", day);
	}
	return false;
}

static bool has_name(char **names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(names[i], name) == 0)
			return true;
	return false;
}

bool rec_renews(const Certsync__CertRecord *newer, const Certsync__CertRecord *old)
{
	bool same_key = newer->spki_sha256.len == PKI_ID_LEN &&
	                old->spki_sha256.len == PKI_ID_LEN &&
	                memcmp(newer->spki_sha256.data, old->spki_sha256.data, PKI_ID_LEN) == 0;
	bool same_names = newer->n_sans == old->n_sans && newer->n_sans > 0;

	for (size_t i = 0; same_names && i < newer->n_sans; i++)
		same_names = has_name(old->sans, old->n_sans, newer->sans[i]) &&
		             has_name(newer->sans, newer->n_sans, old->sans[i]);
	return newer->not_after > old->not_after && (same_key || same_names);
}

Certsync__CertRecord *rec_cert_decode(const void *val, size_t vlen)
{
	return certsync__cert_record__unpack(NULL, vlen, val);
}

/* ---- finding by what the operator typed ---------------------------------- */

static bool is_hex_prefix(const char *s)
{
	size_t n = strlen(s);

	if (n < MIN_PREFIX || n > 2 * PKI_ID_LEN)
		return false;
	for (; *s; s++)
		if (!isxdigit((unsigned char)*s))
			return false;
	return true;
}

/* Name of a packed record, for matching a friendly name. */
typedef char *(*name_fn)(const void *val, size_t vlen);

static char *cert_name(const void *val, size_t vlen)
{
	Certsync__CertRecord *r = rec_cert_decode(val, vlen);
	char *name = r ? strdup(r->name) : NULL;

	certsync__cert_record__free_unpacked(r, NULL);
	return name;
}

static char *key_name(const void *val, size_t vlen)
{
	Certsync__PendingKey *k = certsync__pending_key__unpack(NULL, vlen, val);
	char *name = k ? strdup(k->name) : NULL;

	certsync__pending_key__free_unpacked(k, NULL);
	return name;
}

static char *request_name(const void *val, size_t vlen)
{
	Certsync__RequestRecord *r = certsync__request_record__unpack(NULL, vlen, val);
	char *name = r ? strdup(r->name) : NULL;

	certsync__request_record__free_unpacked(r, NULL);
	return name;
}

struct match_walk {
	const char *ref;
	bool by_prefix;
	uint8_t start[PKI_ID_LEN]; /* by_prefix: the whole bytes of the prefix */
	size_t nstart;
	name_fn name_of;
	cs_table table;
	size_t n;
	cs_table tables[MAX_MATCHES];
	uint8_t ids[MAX_MATCHES][PKI_ID_LEN];
};

static int match_one(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct match_walk *w = ctx;
	char hex[2 * PKI_ID_LEN + 1];
	bool hit;

	if (klen != PKI_ID_LEN)
		return 0;
	/* Ids are the keys, in order: past the prefix's bytes, nothing more
	 * can match. */
	if (w->by_prefix && memcmp(key, w->start, w->nstart) != 0)
		return 1;
	cs_hex(key, PKI_ID_LEN, hex);
	if (w->by_prefix) {
		hit = strncasecmp(hex, w->ref, strlen(w->ref)) == 0;
	} else {
		char *name = w->name_of(val, vlen);

		hit = name != NULL && *name != '\0' && strcmp(name, w->ref) == 0;
		free(name);
	}
	if (hit) {
		if (w->n < MAX_MATCHES) {
			w->tables[w->n] = w->table;
			memcpy(w->ids[w->n], key, PKI_ID_LEN);
		}
		w->n++;
	}
	return 0;
}

/* Finds the one record of tables[] that ref names: by id prefix when ref looks
 * like one, else by name.  what is "certificate" or "request". */
static int find_ref(cs_txn *txn, const cs_table *tables, size_t ntables, name_fn name_of,
                    const char *ref, const char *what, const char *list_cmd, cs_table *table,
                    uint8_t id[PKI_ID_LEN], cs_err *err)
{
	struct match_walk w = {.ref = ref, .name_of = name_of};

	for (int pass = 0; pass < 2 && w.n == 0; pass++) {
		w.by_prefix = pass == 0;
		if (w.by_prefix && !is_hex_prefix(ref))
			continue;
		if (w.by_prefix) {
			char whole[2 * PKI_ID_LEN + 1];

			/* Seek to the prefix's whole bytes rather than read every
			 * record: at most PKI_ID_LEN - 1 of them, since the walk
			 * starts above the seek key, and a full id is that key. */
			w.nstart = strlen(ref) / 2 < PKI_ID_LEN ? strlen(ref) / 2 : PKI_ID_LEN - 1;
			snprintf(whole, sizeof(whole), "%.*s", (int)(2 * w.nstart), ref);
			if (cs_unhex(whole, w.start, w.nstart) < 0)
				continue;
		}
		for (size_t i = 0; i < ntables; i++) {
			w.table = tables[i];
			if ((w.by_prefix ? cs_txn_foreach_after(txn, tables[i], w.start, w.nstart,
			                                        match_one, &w, err)
			                 : cs_txn_foreach(txn, tables[i], match_one, &w, err)) < 0)
				return -1;
		}
	}
	if (w.n == 0)
		return cs_fail(err, CS_ENOTFOUND,
		               "no %s matches '%s'; give an id (8 or more hex digits) or a name "
		               "from `certsync %s`",
		               what, ref, list_cmd);
	if (w.n > 1) {
		char list[256] = "", one[16];

		for (size_t i = 0; i < w.n && i < MAX_MATCHES; i++) {
			rec_short_id(w.ids[i], one);
			strcat(list, i ? ", " : "");
			strcat(list, one);
		}
		return cs_fail(err, CS_EINPUT, "'%s' matches %zu %ss (%s%s); give more of the id",
		               ref, w.n, what, list, w.n > MAX_MATCHES ? ", ..." : "");
	}
	*table = w.tables[0];
	memcpy(id, w.ids[0], PKI_ID_LEN);
	return 0;
}

int rec_name_unused(cs_txn *txn, const char *name, bool requests_too, cs_err *err)
{
	static const cs_table tables[] = {CS_TBL_CERTS, CS_TBL_CAS, CS_TBL_REQUESTS};
	struct match_walk w = {.ref = name};
	char sid[9];

	for (size_t i = 0; i < (requests_too ? 3u : 2u); i++) {
		w.table = tables[i];
		w.name_of = tables[i] == CS_TBL_REQUESTS ? request_name : cert_name;
		if (cs_txn_foreach(txn, tables[i], match_one, &w, err) < 0)
			return -1;
	}
	if (w.n == 0)
		return 0;
	rec_short_id(w.ids[0], sid);
	return cs_fail(err, CS_EREFUSED,
	               "the name '%s' is already used by %s %s; choose another --name (a name "
	               "must select one record)",
	               name, w.tables[0] == CS_TBL_REQUESTS ? "request" : "certificate", sid);
}

int rec_cert_get(cs_txn *txn, cs_table t, const uint8_t id[PKI_ID_LEN], rec_cert *out, cs_err *err)
{
	const void *val;
	size_t vlen;
	int rc = cs_txn_get(txn, t, id, PKI_ID_LEN, &val, &vlen, err);

	if (rc != 0)
		return rc;
	out->rec = rec_cert_decode(val, vlen);
	if (out->rec == NULL)
		return cs_fail(err, CS_EIO, "certificate record in table %s does not decode",
		               cs_table_name(t));
	out->table = t;
	memcpy(out->id, id, PKI_ID_LEN);
	return 0;
}

int rec_cert_find(cs_txn *txn, const char *ref, rec_cert *out, cs_err *err)
{
	static const cs_table tables[] = {CS_TBL_CERTS, CS_TBL_CAS};
	uint8_t id[PKI_ID_LEN];
	cs_table t;

	memset(out, 0, sizeof(*out));
	if (find_ref(txn, tables, 2, cert_name, ref, "certificate", "cert list", &t, id, err) < 0)
		return -1;
	return rec_cert_get(txn, t, id, out, err) == 0 ? 0 : -1;
}

int rec_key_find(cs_txn *txn, const char *ref, uint8_t id[PKI_ID_LEN], cs_err *err)
{
	static const cs_table tables[] = {CS_TBL_KEYS};
	cs_table t;

	return find_ref(txn, tables, 1, key_name, ref, "pending key", "key list", &t, id, err);
}

void rec_cert_clear(rec_cert *c)
{
	certsync__cert_record__free_unpacked(c->rec, NULL);
	c->rec = NULL;
}

int rec_request_find(cs_txn *txn, const char *ref, uint8_t id[PKI_ID_LEN],
                     Certsync__RequestRecord **out, cs_err *err)
{
	static const cs_table tables[] = {CS_TBL_REQUESTS};
	const void *val;
	size_t vlen;
	cs_table t;

	if (find_ref(txn, tables, 1, request_name, ref, "request", "csr list", &t, id, err) < 0)
		return -1;
	if (cs_txn_get(txn, t, id, PKI_ID_LEN, &val, &vlen, err) != 0)
		return -1;
	*out = certsync__request_record__unpack(NULL, vlen, val);
	return *out ? 0 : cs_fail(err, CS_EIO, "request record does not decode");
}

/* ---- writing --------------------------------------------------------------- */

int rec_put(cs_txn *txn, cs_table t, const uint8_t *key, size_t klen, const ProtobufCMessage *msg,
            cs_err *err)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf;
	int rc;

	if (len > REC_MAX_BYTES)
		return cs_fail(err, CS_EINPUT,
		               "its %s record would hold %zu bytes, over the limit of %zu KiB per "
		               "record",
		               cs_table_name(t), len, REC_MAX_BYTES >> 10);
	if ((buf = malloc(len ? len : 1)) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	protobuf_c_message_pack(msg, buf);
	rc = cs_txn_put(txn, t, key, klen, buf, len, err);
	free(buf);
	return rc;
}

void rec_cert_describe(Certsync__CertRecord *rec, pki_cert_info *info)
{
	rec->kind = (Certsync__CertKind)info->kind;
	rec->subject = info->subject;
	rec->subject_cn = info->subject_cn;
	rec->issuer = info->issuer;
	rec->n_sans = info->sans.n;
	rec->sans = info->sans.names;
	rec->not_before = info->not_before;
	rec->not_after = info->not_after;
	rec->key_type = info->key_type;
	rec->spki_sha256.data = info->spki_sha256;
	rec->spki_sha256.len = PKI_ID_LEN;
}

/* ---- keys ---------------------------------------------------------------- */

int rec_seal_key(const cs_key *key, EVP_PKEY *pkey, const uint8_t *ad, size_t adlen,
                 ProtobufCBinaryData *out, cs_err *err)
{
	uint8_t *der;
	size_t len;
	int rc;

	if (pki_key_to_der(pkey, &der, &len, err) < 0)
		return -1;
	rc = cs_seal(key, der, len, ad, adlen, &out->data, &out->len, err);
	OPENSSL_secure_clear_free(der, len);
	return rc;
}

EVP_PKEY *rec_unseal_key(const cs_key *key, const ProtobufCBinaryData *sealed, const uint8_t *ad,
                         size_t adlen, cs_err *err)
{
	uint8_t *der;
	size_t len;
	EVP_PKEY *pkey;

	if (cs_unseal(key, sealed->data, sealed->len, ad, adlen, &der, &len, err) < 0)
		return NULL;
	pkey = pki_key_from_der(der, len, err);
	cs_secret_free(der);
	return pkey;
}

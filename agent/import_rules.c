/* import_rules.c — the rules of an import, one certificate or key at a
 * time inside the command's transaction: an identity finds its key (in the
 * command, the store or a pending key) and must not clash; a CA certificate
 * is checked against its issuer; a self-signed server certificate marked
 * CA:TRUE is both; a key no certificate claimed is attached or kept
 * pending; a renewal of the default takes over from it. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/x509v3.h>

#include "import.h"
#include "ops.h"

/* ---- identities ---------------------------------------------------------- */

/* Where a new identity's key came from. */
struct key_source {
	EVP_PKEY *pkey; /* owned */
	const char *what;
	char name[256]; /* name inherited from a request or a renewed certificate */
	bool from_request;
	uint8_t request_id[PKI_ID_LEN];
};

static struct cmd_key *command_key(struct import *im, const uint8_t spki[PKI_ID_LEN])
{
	size_t at;

	return spki_map_find(&im->keymap, spki, &at, 1) > 0 ? &im->keys[at] : NULL;
}

static void inherit_name(struct import *im, cs_table t, const uint8_t id[PKI_ID_LEN],
                         struct key_source *ks)
{
	const void *val;
	size_t vlen;

	if (cs_txn_get(im->txn, t, id, PKI_ID_LEN, &val, &vlen, NULL) != 0)
		return;
	char *name = NULL;
	if (t == CS_TBL_REQUESTS) {
		Certsync__RequestRecord *r = certsync__request_record__unpack(NULL, vlen, val);
		name = r ? strdup(r->name) : NULL;
		certsync__request_record__free_unpacked(r, NULL);
	} else {
		Certsync__CertRecord *c = certsync__cert_record__unpack(NULL, vlen, val);
		name = c ? strdup(c->name) : NULL;
		certsync__cert_record__free_unpacked(c, NULL);
	}
	if (name != NULL)
		snprintf(ks->name, sizeof(ks->name), "%s", name);
	free(name);
}

/* Finds the key of a new identity: in this command, among pending keys, in a
 * request, or in a certificate with the same key (a renewal).  0 with
 * ks->pkey NULL when there is none. */
static int find_key(struct import *im, X509 *x, const uint8_t spki[PKI_ID_LEN],
                    struct key_source *ks)
{
	struct cmd_key *ck = command_key(im, spki);
	struct spki_walk w;

	memset(ks, 0, sizeof(*ks));
	if (ck != NULL && pki_key_matches(x, ck->pkey)) {
		ck->used = true;
		EVP_PKEY_up_ref(ck->pkey);
		ks->pkey = ck->pkey;
		ks->what = "with its key";
		return 0;
	}
	if ((ks->pkey = imp_claim_pending(im, spki)) != NULL) {
		ks->what = "with its pending key";
		return 0;
	}
	if (im->err->code != CS_OK || imp_find_spki(im, CS_TBL_REQUESTS, spki, &w) < 0)
		return -1;
	if (w.n > 0) {
		ks->pkey = imp_unseal_from(im, CS_TBL_REQUESTS, w.ids[0]);
		ks->from_request = true;
		memcpy(ks->request_id, w.ids[0], PKI_ID_LEN);
		inherit_name(im, CS_TBL_REQUESTS, w.ids[0], ks);
		ks->what = "with the key of its request";
		return ks->pkey ? 0 : -1;
	}
	if (imp_find_spki(im, CS_TBL_CERTS, spki, &w) < 0)
		return -1;
	for (size_t i = 0; i < w.n; i++) {
		if (!w.has_key[i])
			continue;
		ks->pkey = imp_unseal_from(im, CS_TBL_CERTS, w.ids[i]);
		inherit_name(im, CS_TBL_CERTS, w.ids[i], ks);
		ks->what = "with the key of the certificate it renews";
		return ks->pkey ? 0 : -1;
	}
	return 0;
}

/* A keyless leaf naming a host that a pending request asks for was most
 * likely issued for another key: refuse it rather than keep a useless copy. */
struct host_walk {
	const pki_cert_info *info;
	char found[256];
};

static int host_clash(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct host_walk *w = ctx;
	Certsync__RequestRecord *r = certsync__request_record__unpack(NULL, vlen, val);
	char sid[9];

	if (r == NULL || klen != PKI_ID_LEN || r->n_fulfilled_by > 0) {
		certsync__request_record__free_unpacked(r, NULL);
		return 0;
	}
	for (size_t i = 0; i < r->n_sans && !*w->found; i++)
		for (size_t j = 0; j < w->info->sans.n && !*w->found; j++)
			if (strcasecmp(r->sans[i], w->info->sans.names[j]) == 0) {
				rec_short_id(key, sid);
				snprintf(w->found, sizeof(w->found), "%s (%s)", sid, r->name);
			}
	certsync__request_record__free_unpacked(r, NULL);
	return *w->found != 0;
}

static int put_identity(struct import *im, const char *file, X509 *x, pki_cert_info *info,
                        const char *name, EVP_PKEY *pkey, const char *source,
                        const uint8_t *request_id)
{
	Certsync__CertRecord rec = CERTSYNC__CERT_RECORD__INIT;
	uint8_t *der;
	size_t derlen;
	int rc;

	if (pki_cert_der(x, &der, &derlen, im->err) < 0)
		return -1;
	rec_cert_describe(&rec, info);
	rec.der = (ProtobufCBinaryData){derlen, der};
	rec.name = (char *)name;
	rec.source = (char *)source;
	rec.created = time(NULL);
	if (request_id != NULL)
		rec.request_id = (ProtobufCBinaryData){PKI_ID_LEN, (uint8_t *)request_id};
	rc = pkey
	         ? rec_seal_key(im->node->key, pkey, info->id, PKI_ID_LEN, &rec.sealed_key, im->err)
	         : 0;
	if (rc == 0)
		rc = rec_put(im->txn, CS_TBL_CERTS, info->id, PKI_ID_LEN, &rec.base, im->err);
	if (rc == 0)
		rc = imp_index_put(im, info->id, info->spki_sha256, pkey != NULL);
	free(rec.sealed_key.data);
	free(der);
	if (rc == 0 && pkey != NULL) {
		if (im->nkeyed == im->capkeyed) {
			size_t cap = im->capkeyed ? 2 * im->capkeyed : 8;
			struct keyed *v = realloc(im->keyed, cap * sizeof(*v));

			if (v == NULL)
				return cs_fail(im->err, CS_EIO, "out of memory");
			im->keyed = v;
			im->capkeyed = cap;
		}
		memcpy(im->keyed[im->nkeyed].id, info->id, PKI_ID_LEN);
		im->keyed[im->nkeyed++].file = file;
	}
	return rc;
}

int imp_import_identity(struct import *im, const char *file, X509 *x, pki_cert_info *info)
{
	struct key_source ks;
	rec_cert existing = {0};
	struct host_walk hw = {.info = info};
	const char *name;
	char sid[9];
	int rc;

	rec_short_id(info->id, sid);
	if (info->sans.n == 0)
		return cs_fail(im->err, CS_EINPUT,
		               "%s: certificate %s (%s) has no subjectAltName: TLS clients ignore "
		               "the common name, so it would match no host; ask the CA for a "
		               "certificate with SANs",
		               file, sid, info->subject_cn);
	rc = rec_cert_get(im->txn, CS_TBL_CERTS, info->id, &existing, im->err);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		bool attach = existing.rec->sealed_key.len == 0;
		struct cmd_key *ck = attach ? command_key(im, info->spki_sha256) : NULL;

		if (ck != NULL && pki_key_matches(x, ck->pkey)) {
			ck->used = true;
			rc = put_identity(im, file, x, info, existing.rec->name, ck->pkey,
			                  existing.rec->source, NULL);
			if (rc == 0)
				imp_add_item(im, file, "key-attached", "identity", info->id,
				             existing.rec->name,
				             "certificate %s (%s) now holds its key", sid,
				             existing.rec->name);
		} else {
			if (ck != NULL)
				ck->used = true;
			imp_add_item(im, file, "exists", "identity", info->id, existing.rec->name,
			             "certificate %s (%s) is already in the store", sid,
			             existing.rec->name);
		}
		rec_cert_clear(&existing);
		return rc;
	}
	if (find_key(im, x, info->spki_sha256, &ks) < 0)
		return -1;
	if (ks.pkey == NULL) {
		if (cs_txn_foreach(im->txn, CS_TBL_REQUESTS, host_clash, &hw, im->err) < 0 &&
		    !*hw.found)
			return -1;
		if (*hw.found)
			return cs_fail(im->err, CS_EINPUT,
			               "%s: certificate %s (%s) does not match the key of pending "
			               "request %s; was it issued for another request?",
			               file, sid, info->subject_cn, hw.found);
	}
	/* --name must select this certificate alone.  Without it a renewal
	 * keeps the name of the certificate it renews, so both answer to that
	 * name and only their ids tell them apart. */
	if (im->name != NULL && rec_name_unused(im->txn, im->name, false, im->err) < 0) {
		EVP_PKEY_free(ks.pkey);
		return cs_err_prefix(im->err, "%s: ", file);
	}
	name = im->name ? im->name : *ks.name ? ks.name : info->subject_cn;
	rc = put_identity(im, file, x, info, name, ks.pkey, ks.from_request ? "csr" : "import",
	                  ks.from_request ? ks.request_id : NULL);
	if (rc == 0 && ks.from_request)
		rc = imp_add_fulfilled(im, ks.request_id, info->id);
	/* The first identity with its key becomes the default, once valid. */
	if (rc == 0 && ks.pkey != NULL && !im->has_default && info->not_before <= time(NULL) &&
	    time(NULL) < info->not_after) {
		rc = rec_set_default(im->txn, info->id, im->err);
		im->has_default = true;
	}
	if (rc == 0) {
		im->identities_added++;
		if (ks.pkey != NULL)
			imp_add_item(im, file, "added", "identity", info->id, name,
			             "added certificate %s (%s) %s", sid, name, ks.what);
		else
			imp_add_item(im, file, "added", "identity", info->id, name,
			             "added certificate %s (%s) without a key: import its key to "
			             "serve it",
			             sid, name);
	}
	EVP_PKEY_free(ks.pkey);
	return rc;
}

/* A CA certificate whose signature fails is damaged or forged: refused.
 * One whose issuer is not known yet is kept; `cert list` flags it until
 * its issuer arrives.  *unverified tells which. */
static int check_ca_signature(struct import *im, const char *file, X509 *x,
                              const pki_cert_info *info, bool *unverified)
{
	char sid[9];

	if (im->issuers == NULL) {
		if ((im->issuers = rec_ca_pool(im->txn, NULL, im->err)) == NULL)
			return -1;
		for (size_t f = 0; f < im->nfiles; f++)
			for (int i = 0; i < sk_X509_num(im->bundles[f].certs); i++) {
				X509 *c = sk_X509_value(im->bundles[f].certs, i);

				if (X509_check_ca(c) != 0 &&
				    (!X509_up_ref(c) || !sk_X509_push(im->issuers, c)))
					return cs_fail(im->err, CS_EIO, "out of memory");
			}
	}
	rec_short_id(info->id, sid);
	switch (pki_ca_signature(x, im->issuers, true)) {
	case PKI_SIG_BAD:
		return cs_fail(im->err, CS_EINPUT,
		               "%s: CA certificate %s (%s): its signature does not verify with the "
		               "key of %s; the file is damaged or forged: get the certificate "
		               "again from its CA",
		               file, sid, info->subject_cn,
		               strcmp(info->subject, info->issuer) == 0 ? "the certificate itself"
		                                                        : info->issuer);
	case PKI_SIG_UNKNOWN:
		*unverified = true;
		return 0;
	case PKI_SIG_OK:
		break;
	}
	*unverified = false;
	return 0;
}

int imp_import_ca(struct import *im, const char *file, X509 *x, pki_cert_info *info)
{
	static const char *const kinds[] = {"identity", "intermediate", "root"};
	Certsync__CertRecord rec = CERTSYNC__CERT_RECORD__INIT;
	const char *kind = kinds[info->kind];
	uint8_t *der;
	size_t derlen;
	char sid[9];
	bool unverified = false;
	int rc;

	rec_short_id(info->id, sid);
	rc = cs_txn_get(im->txn, CS_TBL_CAS, info->id, PKI_ID_LEN, &(const void *){0}, &(size_t){0},
	                im->err);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		imp_add_item(im, file, "exists", kind, info->id, info->subject_cn,
		             "CA certificate %s (%s) is already in the store", sid,
		             info->subject_cn);
		return 0;
	}
	if (check_ca_signature(im, file, x, info, &unverified) < 0 ||
	    pki_cert_der(x, &der, &derlen, im->err) < 0)
		return -1;
	rec_cert_describe(&rec, info);
	rec.der = (ProtobufCBinaryData){derlen, der};
	rec.name = info->subject_cn;
	rec.source = "import";
	rec.created = time(NULL);
	rc = rec_put(im->txn, CS_TBL_CAS, info->id, PKI_ID_LEN, &rec.base, im->err);
	free(der);
	if (rc == 0)
		imp_add_item(im, file, "added", kind, info->id, info->subject_cn,
		             "added %s CA certificate %s (%s)%s", kind, sid, info->subject_cn,
		             unverified ? "; signature unverified until its issuer is imported"
		                        : "");
	return rc;
}

/* ---- self-signed server certificates marked CA:TRUE -------------------------- */

/* `openssl req -x509` marks CA:TRUE unless told otherwise, and many
 * appliances ship such a certificate as their own.  A self-signed one with
 * subjectAltNames whose key this command brings or a pending key holds is
 * the appliance's identity, not a root: 1 then, 0 when it stays a root. */
int imp_server_root(struct import *im, X509 *x, const pki_cert_info *info)
{
	struct cmd_key *ck;
	int rc;

	if (info->kind != PKI_KIND_ROOT || info->sans.n == 0)
		return 0;
	/* Already an identity: imported again (a chain file holding it, say),
	 * it stays one and is reported as there, never filed as a root too. */
	rc = cs_txn_get(im->txn, CS_TBL_CERTS, info->id, PKI_ID_LEN, &(const void *){0},
	                &(size_t){0}, im->err);
	if (rc <= 0)
		return rc < 0 ? -1 : 1;
	ck = command_key(im, info->spki_sha256);
	if (ck == NULL || !pki_key_matches(x, ck->pkey)) {
		rc = cs_txn_get(im->txn, CS_TBL_KEYS, info->spki_sha256, PKI_ID_LEN,
		                &(const void *){0}, &(size_t){0}, im->err);
		if (rc != 0)
			return rc < 0 ? -1 : 0;
	}
	/* It becomes an identity: filed as a root by an earlier import
	 * without its key, it leaves the CA pool. */
	rc = cs_txn_del(im->txn, CS_TBL_CAS, info->id, PKI_ID_LEN, im->err);
	return rc < 0 ? -1 : 1;
}

/* ---- keys no certificate of this command claimed ------------------------- */

/* Attaches ck to the keyless certificates of w (in the certs table) or,
 * for w of the CA pool, to a self-signed one with subjectAltNames that came
 * before its key: it moves to the identities.  Counts them in *attached. */
static int attach_to_stored(struct import *im, struct cmd_key *ck, const struct spki_walk *w,
                            size_t *attached)
{
	bool ca = w->table == CS_TBL_CAS;

	for (size_t i = 0; i < w->n; i++) {
		rec_cert c = {0};
		X509 *x;
		pki_cert_info info;
		char sid[9];
		int rc;

		if (w->has_key[i] || rec_cert_get(im->txn, w->table, w->ids[i], &c, im->err))
			continue;
		x = pki_cert_from_der(c.rec->der.data, c.rec->der.len, im->err);
		rc = x && pki_key_matches(x, ck->pkey) ? pki_cert_inspect(x, &info, im->err) : 1;
		if (rc == 0 && ca && (info.kind != PKI_KIND_ROOT || info.sans.n == 0)) {
			pki_cert_info_free(&info);
			rc = 1;
		}
		if (rc == 0) {
			info.kind = PKI_KIND_IDENTITY;
			rc = ca ? cs_txn_del(im->txn, CS_TBL_CAS, w->ids[i], PKI_ID_LEN, im->err)
			        : 0;
			if (rc == 0)
				rc = put_identity(im, ck->file, x, &info, c.rec->name, ck->pkey,
				                  c.rec->source, NULL);
			if (rc == 0 && ca && !im->has_default &&
			    rec_valid_at(c.rec, time(NULL), NULL)) {
				rc = rec_set_default(im->txn, w->ids[i], im->err);
				im->has_default = true;
			}
			rec_short_id(w->ids[i], sid);
			if (rc == 0)
				imp_add_item(
				    im, ck->file, "key-attached", "identity", w->ids[i],
				    c.rec->name, "key joined certificate %s (%s)%s", sid,
				    c.rec->name,
				    ca ? ": self-signed with subjectAltNames, it is an identity "
				         "certificate now"
				       : "");
			(*attached)++;
			pki_cert_info_free(&info);
		}
		X509_free(x);
		rec_cert_clear(&c);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int imp_import_key(struct import *im, struct cmd_key *ck)
{
	Certsync__PendingKey pk = CERTSYNC__PENDING_KEY__INIT;
	struct spki_walk certs, reqs, cas;
	char sid[9], type[16], holder[9];
	size_t attached = 0;
	int rc;

	rec_short_id(ck->spki, sid);
	if (imp_find_spki(im, CS_TBL_CERTS, ck->spki, &certs) < 0 ||
	    attach_to_stored(im, ck, &certs, &attached) < 0 ||
	    imp_find_spki(im, CS_TBL_REQUESTS, ck->spki, &reqs) < 0)
		return -1;
	if (attached > 0)
		return 0;
	if (imp_find_spki(im, CS_TBL_CAS, ck->spki, &cas) < 0 ||
	    attach_to_stored(im, ck, &cas, &attached) < 0)
		return -1;
	if (attached > 0)
		return 0;
	rc = cs_txn_get(im->txn, CS_TBL_KEYS, ck->spki, PKI_ID_LEN, &(const void *){0},
	                &(size_t){0}, im->err);
	if (rc < 0)
		return -1;
	if (rc == 0 || certs.n > 0 || reqs.n > 0) {
		rec_short_id(certs.n ? certs.ids[0] : reqs.n ? reqs.ids[0] : ck->spki, holder);
		imp_add_item(im, ck->file, "exists", "key", ck->spki, "",
		             "key %s is already in the store (%s %s)", sid,
		             certs.n  ? "certificate"
		             : reqs.n ? "request"
		                      : "pending key",
		             holder);
		return 0;
	}
	pki_key_type(ck->pkey, type, sizeof(type));
	pk.key_type = type;
	pk.created = time(NULL);
	pk.name = im->name ? (char *)im->name : "";
	if (rec_seal_key(im->node->key, ck->pkey, ck->spki, PKI_ID_LEN, &pk.sealed_key, im->err) <
	    0)
		return -1;
	rc = rec_put(im->txn, CS_TBL_KEYS, ck->spki, PKI_ID_LEN, &pk.base, im->err);
	free(pk.sealed_key.data);
	if (rc == 0)
		imp_add_item(
		    im, ck->file, "pending-key", "key", ck->spki, pk.name,
		    "key %s (%s) matches no certificate or request; kept pending until its "
		    "certificate is imported",
		    sid, type);
	return rc;
}

/* ---- renewals of the default ------------------------------------------------ */

/* Whether c, held with its key, can serve now: valid, its chain complete. */
static int ready_to_serve(struct import *im, const rec_cert *c, STACK_OF(X509) * pool, bool *ok)
{
	X509 *x = pki_cert_from_der(c->rec->der.data, c->rec->der.len, im->err);
	STACK_OF(X509) *chain = NULL;
	bool complete = false;
	int rc = x != NULL ? pki_chain_build(x, pool, true, &chain, &complete, im->err) : -1;

	*ok = rc == 0 && complete && rec_valid_at(c->rec, time(NULL), NULL);
	sk_X509_pop_free(chain, X509_free);
	X509_free(x);
	return rc;
}

/* An identity of this command that renews the default (its key or its
 * names, later expiry), holds its key, is valid now and has its whole
 * chain becomes the default; the latest-expiring one when several do. */
int imp_renew_default(struct import *im)
{
	rec_cert d = {0}, best = {0};
	const char *best_file = NULL;
	uint8_t def[PKI_ID_LEN];
	STACK_OF(X509) *pool = NULL;
	char sid[9], did[9];
	int rc = 0;

	if (im->nkeyed == 0 || (rc = rec_default(im->txn, def, im->err)) != 0 ||
	    (rc = rec_cert_get(im->txn, CS_TBL_CERTS, def, &d, im->err)) != 0)
		return rc < 0 ? -1 : 0;
	if ((pool = rec_ca_pool(im->txn, NULL, im->err)) == NULL)
		rc = -1;
	for (size_t i = 0; rc == 0 && i < im->nkeyed; i++) {
		rec_cert c = {0};
		bool ok = false;
		int got = memcmp(im->keyed[i].id, def, PKI_ID_LEN) == 0
		              ? 1
		              : rec_cert_get(im->txn, CS_TBL_CERTS, im->keyed[i].id, &c, im->err);

		if (got != 0) {
			rc = got < 0 ? -1 : 0;
			continue;
		}
		if (rec_renews(c.rec, d.rec) &&
		    (best.rec == NULL || c.rec->not_after > best.rec->not_after) &&
		    (rc = ready_to_serve(im, &c, pool, &ok)) == 0 && ok) {
			rec_cert_clear(&best);
			best = c;
			best_file = im->keyed[i].file;
			continue;
		}
		rec_cert_clear(&c);
	}
	if (rc == 0 && best.rec != NULL && (rc = rec_set_default(im->txn, best.id, im->err)) == 0) {
		rec_short_id(best.id, sid);
		rec_short_id(d.id, did);
		imp_add_item(
		    im, best_file, "default", "identity", best.id, best.rec->name,
		    "certificate %s (%s) renews the default %s (%s) and is now the default; "
		    "`certsync cert default %s` chooses the old one again",
		    sid, best.rec->name, did, d.rec->name, did);
	}
	sk_X509_pop_free(pool, X509_free);
	rec_cert_clear(&best);
	rec_cert_clear(&d);
	return rc;
}

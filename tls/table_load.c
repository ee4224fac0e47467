/* table_load.c — a selection table from the store (tls_table_load).
 *
 * A build after a change costs what the change touched plus one pass over
 * the table's entries, not a read of the whole store: the log entries after
 * the position the previous table was built at name the certificates that
 * changed, and every other entry -- parsed leaf, opened key, chain, names,
 * coverage -- is taken over by reference.  The maps are made anew (their
 * keys point into the entries, so that is hashing, not copying). */
#include "tls_int.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "../common/hex.h"
#include "../common/log.h"
#include "../records/records.h"
#include "proto/store.pb-c.h"

/* ---- loading from the store ----------------------------------------------------- */

/* A change touching more certificates than this is read as a whole store:
 * walking prev's entries for each would cost more than one pass. */
#define DELTA_MAX 4096

struct load {
	cs_txn *txn;
	const cs_key *key;
	const tls_table *prev;
	uint64_t hosts_key;
	char hosts[2][TLS_NAME_MAX + 1]; /* as the table keeps them */
	bool same_cas;                   /* the CA pool is the one prev's chains were built from */
	STACK_OF(X509) * pool;           /* NULL until an entry needs it */
	uint8_t cas_hash[32];
	tls_entry **entries;
	size_t n, cap;
	uint8_t (*skipped)[TLS_ID_LEN];
	size_t nskipped, capskipped;
	cs_err *err;
};

/* The CA pool and the hash of its ids, read once per build. */
static int load_pool(struct load *ld)
{
	if (ld->pool == NULL)
		ld->pool = rec_ca_pool(ld->txn, ld->cas_hash, ld->err);
	return ld->pool != NULL ? 0 : -1;
}

/* The issuers to send after leaf: the store's chain without the root, which
 * clients must already hold for it to mean anything. */
static STACK_OF(X509) * serve_chain(X509 *leaf, STACK_OF(X509) * pool, const char *hex)
{
	STACK_OF(X509) *chain = NULL;
	bool complete;
	cs_err err;
	int n;

	if (pki_chain_build(leaf, pool, false, &chain, &complete, &err) < 0) {
		cs_warn("tls: certificate %.8s: serving it without its chain: %s", hex, err.msg);
		return NULL;
	}
	n = sk_X509_num(chain);
	if (n > 0 && (X509_get_extension_flags(sk_X509_value(chain, n - 1)) & EXFLAG_SS))
		X509_free(sk_X509_pop(chain));
	return chain;
}

static int copy_names(tls_entry *e, const Certsync__CertRecord *rec)
{
	char name[TLS_NAME_MAX + 3];

	for (size_t i = 0; i < rec->n_sans; i++) {
		const char *san = rec->sans[i];
		bool wild = strncmp(san, "*.", 2) == 0;
		const char *rest = wild ? san + 2 : san;

		/* IPv6 SANs are not names: no SNI can ask for them. */
		if (tls_name_normalize(rest, strlen(rest), name + 2) == 0)
			continue;
		name[0] = '*';
		name[1] = '.';
		if (pki_sans_add(&e->names, wild ? name : name + 2) < 0)
			return -1;
	}
	return 0;
}

/* A new entry for rec in *out: parses the leaf, opens its key and finds
 * its chain and coverage.  0 done; 1 when it cannot be served, with *why;
 * -1 with ld->err when the build must stop (out of memory, the store). */
static int open_entry(struct load *ld, const uint8_t id[TLS_ID_LEN], const uint8_t seal_hash[32],
                      const Certsync__CertRecord *rec, tls_entry **out, cs_err *why)
{
	tls_entry *e = tls_entry_new();

	if (e == NULL || copy_names(e, rec) < 0) {
		tls_entry_free(e);
		return cs_fail(ld->err, CS_EIO, "out of memory");
	}
	memcpy(e->id, id, TLS_ID_LEN);
	cs_hex(e->id, TLS_ID_LEN, e->id_hex);
	memcpy(e->seal_hash, seal_hash, sizeof(e->seal_hash));
	e->not_before = (time_t)rec->not_before;
	e->not_after = (time_t)rec->not_after;
	if ((e->leaf = pki_cert_from_der(rec->der.data, rec->der.len, why)) == NULL)
		goto skip;
	if ((e->key = rec_unseal_key(ld->key, &rec->sealed_key, e->id, TLS_ID_LEN, why)) == NULL)
		goto skip;
	if (!pki_key_matches(e->leaf, e->key)) {
		cs_fail(why, CS_EINPUT, "its key does not match it");
		goto skip;
	}
	e->ec = EVP_PKEY_is_a(e->key, "EC");
	if (load_pool(ld) < 0) {
		tls_entry_free(e);
		return -1;
	}
	e->chain = serve_chain(e->leaf, ld->pool, e->id_hex);
	e->covers = true;
	for (int i = 0; i < 2; i++)
		e->covers =
		    e->covers && (ld->hosts[i][0] == '\0' || pki_covers(e->leaf, ld->hosts[i]));
	e->covers_for = ld->hosts_key;
	*out = e;
	return 0;
skip:
	tls_entry_free(e);
	return 1;
}

static int push_entry(struct load *ld, tls_entry *e)
{
	if (ld->n == ld->cap) {
		size_t cap = ld->cap ? 2 * ld->cap : 64;
		tls_entry **v = realloc(ld->entries, cap * sizeof(*v));

		if (v == NULL) {
			tls_entry_free(e);
			return cs_fail(ld->err, CS_EIO, "out of memory");
		}
		ld->entries = v;
		ld->cap = cap;
	}
	ld->entries[ld->n++] = e;
	return 0;
}

static int push_skipped(struct load *ld, const uint8_t id[TLS_ID_LEN])
{
	if (ld->nskipped == ld->capskipped) {
		size_t cap = ld->capskipped ? 2 * ld->capskipped : 4;
		uint8_t(*v)[TLS_ID_LEN] = realloc(ld->skipped, cap * sizeof(*v));

		if (v == NULL)
			return cs_fail(ld->err, CS_EIO, "out of memory");
		ld->skipped = v;
		ld->capskipped = cap;
	}
	memcpy(ld->skipped[ld->nskipped++], id, TLS_ID_LEN);
	return 0;
}

/* Adds the entry for the record of id: prev's when the record still holds
 * the key prev's was opened from, else a new one.  A record that does not
 * decode, or whose key does not open, is skipped (counted, logged). */
static int load_record(struct load *ld, const uint8_t *id, size_t idlen, const void *val,
                       size_t vlen)
{
	Certsync__CertRecord *rec = rec_cert_decode(val, vlen);
	const tls_cands *old;
	uint8_t seal_hash[32];
	tls_entry *e = NULL;
	cs_err why;
	int rc = 0;

	if (rec == NULL || idlen != TLS_ID_LEN) {
		cs_warn("tls: a record of the certs table does not decode; it is not served");
		rc = idlen == TLS_ID_LEN ? push_skipped(ld, id) : 0;
		goto out;
	}
	if (rec->kind != CERTSYNC__CERT_KIND__CERT_KIND_IDENTITY || rec->sealed_key.len == 0)
		goto out;
	if (EVP_Digest(rec->sealed_key.data, rec->sealed_key.len, seal_hash, NULL, EVP_sha256(),
	               NULL) != 1) {
		rc = cs_fail(ld->err, CS_EIO, "hashing a sealed key failed");
		goto out;
	}
	old = ld->prev != NULL ? tls_map_get(&ld->prev->byid, id, TLS_ID_LEN) : NULL;
	if (old != NULL && ld->same_cas && memcmp(old->one->seal_hash, seal_hash, 32) == 0) {
		rc = push_entry(ld, tls_entry_ref((tls_entry *)old->one));
	} else if ((rc = open_entry(ld, id, seal_hash, rec, &e, &why)) == 0) {
		rc = push_entry(ld, e);
	} else if (rc > 0) {
		char hex[2 * TLS_ID_LEN + 1];

		cs_hex(id, TLS_ID_LEN, hex);
		cs_warn("tls: certificate %.8s is not served: %s", hex, why.msg);
		rc = push_skipped(ld, id);
	}
out:
	certsync__cert_record__free_unpacked(rec, NULL);
	return rc;
}

static int visit_record(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	return load_record(ctx, key, klen, val, vlen);
}

/* Every record of the certs table, reusing prev's entries where it can. */
static int load_all(struct load *ld)
{
	if (load_pool(ld) < 0)
		return -1;
	ld->same_cas = ld->prev != NULL && memcmp(ld->prev->cas_hash, ld->cas_hash, 32) == 0;
	return cs_txn_foreach(ld->txn, CS_TBL_CERTS, visit_record, ld, ld->err);
}

/* The certificates the log entries after prev's position changed, as a set
 * of ids (a map whose keys point into the unpacked entries): 0 with *ok,
 * or 0 without when the log cannot say (it no longer reaches back, the
 * store's history is not prev's, the CA pool changed, or too much
 * changed); then the whole store is read. */
struct delta {
	Certsync__LogEntry **entries;
	size_t n;
	tls_map ids;
};

static void delta_free(struct delta *d)
{
	for (size_t i = 0; i < d->n; i++)
		certsync__log_entry__free_unpacked(d->entries[i], NULL);
	free(d->entries);
	tls_map_free(&d->ids);
}

static Certsync__LogEntry *log_entry(cs_txn *txn, uint64_t seq, cs_err *err)
{
	const void *val;
	size_t vlen;

	if (cs_txn_log_get(txn, seq, &val, &vlen, err) != 0)
		return NULL;
	return certsync__log_entry__unpack(NULL, vlen, val);
}

static int read_delta(struct load *ld, cs_pos now, struct delta *d, bool *ok)
{
	const tls_table *prev = ld->prev;
	Certsync__LogEntry *at;
	size_t ops = 0;
	cs_err ignored;

	*ok = false;
	if (prev == NULL || !prev->from_store || prev->pos.seq > now.seq ||
	    now.seq - prev->pos.seq > DELTA_MAX)
		return 0;
	/* prev was built where this store's history still runs through. */
	if (prev->pos.seq > 0) {
		at = log_entry(ld->txn, prev->pos.seq, &ignored);
		if (at == NULL || at->epoch != prev->pos.epoch) {
			certsync__log_entry__free_unpacked(at, NULL);
			return 0;
		}
		certsync__log_entry__free_unpacked(at, NULL);
	}
	d->entries = calloc(now.seq - prev->pos.seq + 1, sizeof(*d->entries));
	if (d->entries == NULL)
		return cs_fail(ld->err, CS_EIO, "out of memory");
	for (uint64_t s = prev->pos.seq + 1; s <= now.seq; s++) {
		Certsync__LogEntry *e = log_entry(ld->txn, s, &ignored);

		if (e == NULL)
			return 0;
		d->entries[d->n++] = e;
		for (size_t i = 0; i < e->n_ops; i++) {
			if (e->ops[i]->table == CS_TBL_CAS || ++ops > DELTA_MAX)
				return 0;
		}
	}
	if (tls_map_reserve(&d->ids, ops) < 0)
		return cs_fail(ld->err, CS_EIO, "out of memory");
	for (size_t k = 0; k < d->n; k++) {
		for (size_t i = 0; i < d->entries[k]->n_ops; i++) {
			const Certsync__Op *op = d->entries[k]->ops[i];

			if (op->table == CS_TBL_CERTS && op->key.len == TLS_ID_LEN)
				tls_map_slot(&d->ids, op->key.data, TLS_ID_LEN)->n = 1;
		}
	}
	*ok = true;
	return 0;
}

/* prev's entries and skipped records the delta did not touch, then the
 * touched records as the store holds them now. */
static int load_delta(struct load *ld, const struct delta *d)
{
	const tls_table *prev = ld->prev;

	ld->same_cas = true;
	memcpy(ld->cas_hash, prev->cas_hash, sizeof(ld->cas_hash));
	for (size_t i = 0; i < prev->nentries; i++) {
		tls_entry *e = prev->entries[i];

		if (tls_map_get(&d->ids, e->id, TLS_ID_LEN) == NULL &&
		    push_entry(ld, tls_entry_ref(e)) < 0)
			return -1;
	}
	for (size_t i = 0; i < prev->nskipped; i++) {
		if (tls_map_get(&d->ids, prev->skipped[i], TLS_ID_LEN) == NULL &&
		    push_skipped(ld, prev->skipped[i]) < 0)
			return -1;
	}
	for (size_t i = 0; i < d->ids.cap; i++) {
		const struct tls_slot *s = &d->ids.slots[i];
		const void *val;
		size_t vlen;
		int rc;

		if (s->key == NULL)
			continue;
		rc = cs_txn_get(ld->txn, CS_TBL_CERTS, s->key, TLS_ID_LEN, &val, &vlen, ld->err);
		if (rc < 0 || (rc == 0 && load_record(ld, s->key, TLS_ID_LEN, val, vlen) < 0))
			return -1;
	}
	return 0;
}

int tls_table_load(tls_table **out, cs_txn *txn, const cs_key *key, const char *node_hostname,
                   const char *site_hostname, const tls_table *prev, time_t now, cs_err *err)
{
	struct load ld = {.txn = txn, .key = key, .err = err};
	struct delta d = {0};
	cs_pos pos = cs_txn_applied(txn);
	uint8_t default_id[TLS_ID_LEN];
	int has_default;
	bool delta;
	tls_table *t;

	/* A hostname that does not fit fails in tls_table_build, with its
	 * message. */
	if (tls_copy_host(ld.hosts[0], node_hostname) < 0 ||
	    tls_copy_host(ld.hosts[1], site_hostname) < 0)
		ld.hosts[0][0] = ld.hosts[1][0] = '\0';
	ld.hosts_key = tls_hosts_key(ld.hosts[0], ld.hosts[1]);
	/* Entries found for other hostnames carry the wrong coverage. */
	ld.prev = prev != NULL && prev->hosts_key == ld.hosts_key ? prev : NULL;
	if ((has_default = rec_default(txn, default_id, err)) < 0 ||
	    read_delta(&ld, pos, &d, &delta) < 0 ||
	    (delta ? load_delta(&ld, &d) : load_all(&ld)) < 0)
		goto fail;
	delta_free(&d);
	sk_X509_pop_free(ld.pool, X509_free);
	ld.pool = NULL;
	if (tls_table_build(&t, ld.entries, ld.n, has_default == 0 ? default_id : NULL,
	                    node_hostname, site_hostname, now, err) < 0) {
		free(ld.skipped);
		return cs_err_prefix(err, "TLS table: ");
	}
	memcpy(t->cas_hash, ld.cas_hash, sizeof(ld.cas_hash));
	t->skipped = ld.skipped;
	t->nskipped = ld.nskipped;
	t->from_store = true;
	t->pos = pos;
	*out = t;
	return 0;
fail:
	delta_free(&d);
	for (size_t i = 0; i < ld.n; i++)
		tls_entry_free(ld.entries[i]);
	free(ld.entries);
	free(ld.skipped);
	sk_X509_pop_free(ld.pool, X509_free);
	return cs_err_prefix(err, "TLS table: ");
}

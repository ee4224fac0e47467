/* table.c — the immutable selection table: which certificate a name gets.
 *
 * Built off the handshake path, from the store (tls_table_load) or from
 * entries a test made (tls_table_build); read by any number of workers at
 * once without locks, since nothing in it changes after the build; freed by
 * the last reference.  The ClientHello callback asks tls_table_select, which
 * costs two hash lookups and a few comparisons. */
#include "tls_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "../common/hex.h"
#include "../common/log.h"
#include "../pki/pki.h"
#include "proto/store.pb-c.h"

/* ---- hash map ------------------------------------------------------------ */

struct tls_slot {
	uint8_t *key; /* owned copy; NULL for an empty slot */
	size_t klen;
	uint64_t hash;
	void *val;
};

/* FNV-1a: the keys come from the operator's certificates, not from clients,
 * so a keyed hash buys nothing here. */
static uint64_t hash_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

static struct tls_slot *map_probe(struct tls_slot *slots, size_t cap, const void *key, size_t klen,
                                  uint64_t h)
{
	for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
		struct tls_slot *s = &slots[i];

		if (s->key == NULL ||
		    (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0))
			return s;
	}
}

static void *map_get(const tls_map *m, const void *key, size_t klen)
{
	struct tls_slot *s;

	if (m->cap == 0)
		return NULL;
	s = map_probe(m->slots, m->cap, key, klen, hash_bytes(key, klen));
	return s->key != NULL ? s->val : NULL;
}

static int map_grow(tls_map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16;
	struct tls_slot *slots = calloc(cap, sizeof(*slots));

	if (slots == NULL)
		return -1;
	for (size_t i = 0; i < m->cap; i++) {
		struct tls_slot *o = &m->slots[i];

		if (o->key != NULL)
			*map_probe(slots, cap, o->key, o->klen, o->hash) = *o;
	}
	free(m->slots);
	m->slots = slots;
	m->cap = cap;
	return 0;
}

/* The slot for key, created (val NULL) when absent; NULL when out of memory. */
static struct tls_slot *map_slot(tls_map *m, const void *key, size_t klen)
{
	uint64_t h = hash_bytes(key, klen);
	struct tls_slot *s;

	if (2 * (m->n + 1) > m->cap && map_grow(m) < 0)
		return NULL;
	s = map_probe(m->slots, m->cap, key, klen, h);
	if (s->key == NULL) {
		if ((s->key = malloc(klen)) == NULL)
			return NULL;
		memcpy(s->key, key, klen);
		s->klen = klen;
		s->hash = h;
		s->val = NULL;
		m->n++;
	}
	return s;
}

static void map_free(tls_map *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].key == NULL)
			continue;
		free(m->slots[i].key);
		if (free_val != NULL)
			free_val(m->slots[i].val);
	}
	free(m->slots);
}

/* ---- candidate lists ------------------------------------------------------ */

static int cands_push(tls_cands *c, const tls_entry *e)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 2;
		const tls_entry **v = realloc(c->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = e;
	return 0;
}

static void cands_free(void *p)
{
	tls_cands *c = p;

	free(c->v);
	free(c);
}

/* Latest expiry first; the id breaks ties so every node orders alike. */
static int cmp_expiry(const void *a, const void *b)
{
	const tls_entry *x = *(const tls_entry *const *)a, *y = *(const tls_entry *const *)b;

	if (x->not_after != y->not_after)
		return x->not_after > y->not_after ? -1 : 1;
	return memcmp(x->id, y->id, TLS_ID_LEN);
}

static void cands_sort(tls_cands *c)
{
	if (c->n > 1) /* an empty list has no array to give qsort */
		qsort(c->v, c->n, sizeof(*c->v), cmp_expiry);
}

/* ---- names ---------------------------------------------------------------- */

size_t tls_name_normalize(const char *name, size_t len, char *out)
{
	size_t label = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > TLS_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		           c == '_') {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
		out[i] = c;
	}
	if (label == 0)
		return 0;
	out[len] = '\0';
	return len;
}

/* ---- selection -------------------------------------------------------------- */

enum want { WANT_RSA, WANT_EC, WANT_ANY };

static bool valid_at(const tls_entry *e, time_t now)
{
	return e->not_before <= now && now < e->not_after;
}

static const tls_entry *first_valid(const tls_cands *c, enum want want, time_t now)
{
	if (c == NULL)
		return NULL;
	for (size_t i = 0; i < c->n; i++) {
		const tls_entry *e = c->v[i];

		if (valid_at(e, now) && (want == WANT_ANY || e->ec == (want == WANT_EC)))
			return e;
	}
	return NULL;
}

const tls_entry *tls_table_select(const tls_table *t, const char *name, bool ecdsa, time_t now)
{
	const tls_cands *stages[3] = {NULL, NULL, &t->dflt};
	const tls_entry *e;

	if (name != NULL) {
		const char *dot = strchr(name, '.');

		stages[0] = map_get(&t->exact, name, strlen(name));
		if (dot != NULL)
			stages[1] = map_get(&t->wild, dot + 1, strlen(dot + 1));
	}
	/* A certificate the client can use, the preferred key type first... */
	for (int s = 0; s < 3; s++) {
		if (ecdsa && (e = first_valid(stages[s], WANT_EC, now)) != NULL)
			return e;
		if ((e = first_valid(stages[s], WANT_RSA, now)) != NULL)
			return e;
	}
	/* ...then any valid one: its signature may yet suit the client. */
	for (int s = 0; s < 3; s++) {
		if ((e = first_valid(stages[s], WANT_ANY, now)) != NULL)
			return e;
	}
	return NULL;
}

/* ---- building ----------------------------------------------------------------- */

static void entry_clear(tls_entry *e)
{
	X509_free(e->leaf);
	EVP_PKEY_free(e->key);
	sk_X509_pop_free(e->chain, X509_free);
}

static void sans_clear(tls_sans *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->names[i]);
	free(s->names);
	s->names = NULL;
	s->n = 0;
}

static int index_name(tls_table *t, const char *san, const tls_entry *e)
{
	bool wild = strncmp(san, "*.", 2) == 0;
	const char *key = wild ? san + 2 : san;
	struct tls_slot *s;

	/* "*.com" would match every .com name: X509_check_host refuses it, and
	 * so do we. */
	if (wild && strchr(key, '.') == NULL)
		return 0;
	if ((s = map_slot(wild ? &t->wild : &t->exact, key, strlen(key))) == NULL)
		return -1;
	if (s->val == NULL && (s->val = calloc(1, sizeof(tls_cands))) == NULL)
		return -1;
	return cands_push(s->val, e);
}

static void sort_all(tls_map *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].key != NULL)
			cands_sort(m->slots[i].val);
	}
}

static bool covers_all(const tls_table *t, const tls_entry *e)
{
	const char *hosts[2] = {t->node_hostname, t->site_hostname};

	for (int i = 0; i < 2; i++) {
		if (hosts[i][0] != '\0' && !pki_covers(e->leaf, hosts[i]))
			return false;
	}
	return true;
}

/* The coverage gate: the store's default is served for no SNI and unknown
 * names only when it covers both hostnames; otherwise the best valid
 * certificate that does is served instead, and when none does, nothing is
 * (those handshakes fail, and /healthz says 503). */
static int gate(tls_table *t, time_t now)
{
	const char *hosts[2] = {t->node_hostname, t->site_hostname};
	const tls_entry *c = t->configured;
	tls_cands cover = {0};

	for (size_t i = 0; i < t->nentries; i++) {
		if (covers_all(t, &t->entries[i]) && cands_push(&cover, &t->entries[i]) < 0)
			goto oom;
	}
	cands_sort(&cover);
	for (int i = 0; i < 2; i++) {
		if (hosts[i][0] != '\0' && (c == NULL || !pki_covers(c->leaf, hosts[i])))
			t->uncovered[t->nuncovered++] = hosts[i];
	}
	if (c != NULL && t->nuncovered == 0) {
		/* The default first, the other covering ones behind it for
		 * clients of the other key type and for when it expires. */
		if (cands_push(&t->dflt, c) < 0)
			goto oom;
		for (size_t i = 0; i < cover.n; i++) {
			if (cover.v[i] != c && cands_push(&t->dflt, cover.v[i]) < 0)
				goto oom;
		}
		free(cover.v);
	} else {
		t->dflt = cover;
	}
	t->covered = first_valid(&t->dflt, WANT_ANY, now) != NULL;
	return 0;
oom:
	free(cover.v);
	return -1;
}

static void table_destroy(tls_table *t)
{
	for (size_t i = 0; i < t->nentries; i++)
		entry_clear(&t->entries[i]);
	free(t->entries);
	map_free(&t->exact, cands_free);
	map_free(&t->wild, cands_free);
	map_free(&t->byid, NULL);
	free(t->dflt.v);
	free(t);
}

int tls_table_build(tls_table **out, tls_entry *entries, tls_sans *sans, size_t n,
                    const uint8_t *default_id, const char *node_hostname, const char *site_hostname,
                    time_t now, cs_err *err)
{
	tls_table *t = calloc(1, sizeof(*t));
	const char *hosts[2] = {node_hostname, site_hostname};
	char *dst[2];
	int bad = 0;

	if (t == NULL)
		goto oom;
	atomic_init(&t->refs, 1);
	t->entries = entries;
	t->nentries = n;
	t->built = now;
	entries = NULL;
	dst[0] = t->node_hostname;
	dst[1] = t->site_hostname;
	for (int i = 0; i < 2; i++) {
		if (hosts[i] != NULL && hosts[i][0] != '\0' &&
		    tls_name_normalize(hosts[i], strlen(hosts[i]), dst[i]) == 0) {
			/* An IP literal is a legitimate hostname to cover. */
			if (strlen(hosts[i]) > TLS_NAME_MAX) {
				bad = i;
				goto bad_host;
			}
			strcpy(dst[i], hosts[i]);
		}
	}
	for (size_t i = 0; i < n; i++) {
		tls_entry *e = &t->entries[i];
		struct tls_slot *s = map_slot(&t->byid, e->id, TLS_ID_LEN);

		if (s == NULL)
			goto oom;
		s->val = e;
		for (size_t j = 0; j < sans[i].n; j++) {
			if (index_name(t, sans[i].names[j], e) < 0)
				goto oom;
		}
	}
	sort_all(&t->exact);
	sort_all(&t->wild);
	if (default_id != NULL) {
		t->has_configured = true;
		memcpy(t->configured_id, default_id, TLS_ID_LEN);
		t->configured = map_get(&t->byid, default_id, TLS_ID_LEN);
	}
	if (gate(t, now) < 0)
		goto oom;
	for (size_t i = 0; i < n; i++)
		sans_clear(&sans[i]);
	*out = t;
	return 0;
bad_host:
	cs_fail(err, CS_EUSAGE, "hostname \"%.40s...\" is too long", hosts[bad]);
	goto fail;
oom:
	cs_fail(err, CS_EIO, "out of memory building the TLS selection table");
fail:
	for (size_t i = 0; i < n; i++) {
		sans_clear(&sans[i]);
		if (entries != NULL)
			entry_clear(&entries[i]);
	}
	free(entries);
	if (t != NULL)
		table_destroy(t);
	return -1;
}

tls_table *tls_table_ref(tls_table *t)
{
	atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
	return t;
}

void tls_table_free(tls_table *t)
{
	if (t != NULL && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
		table_destroy(t);
}

/* ---- loading from the store ----------------------------------------------------- */

struct load {
	const cs_key *key;
	const tls_table *prev;
	bool same_cas; /* the CA pool is the one prev's chains were built from */
	STACK_OF(X509) * pool;
	EVP_MD_CTX *cas_md;
	tls_entry *entries;
	tls_sans *sans;
	size_t n, cap, skipped;
	cs_err *err;
};

static int load_ca(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct load *ld = ctx;
	Certsync__CertRecord *rec = certsync__cert_record__unpack(NULL, vlen, val);
	X509 *x = NULL;
	cs_err ignored;

	if (EVP_DigestUpdate(ld->cas_md, key, klen) != 1) {
		certsync__cert_record__free_unpacked(rec, NULL);
		return cs_fail(ld->err, CS_EIO, "hashing the CA pool failed");
	}
	/* A CA that does not decode only leaves chains shorter. */
	if (rec != NULL && (x = pki_cert_from_der(rec->der.data, rec->der.len, &ignored)) != NULL &&
	    sk_X509_push(ld->pool, x) <= 0) {
		X509_free(x);
		certsync__cert_record__free_unpacked(rec, NULL);
		return cs_fail(ld->err, CS_EIO, "out of memory");
	}
	certsync__cert_record__free_unpacked(rec, NULL);
	return 0;
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

/* Parses the leaf and opens its key; 1 when the record cannot be served. */
static int open_entry(struct load *ld, const Certsync__CertRecord *rec, tls_entry *e)
{
	uint8_t *plain = NULL;
	size_t plen;
	cs_err err;

	if ((e->leaf = pki_cert_from_der(rec->der.data, rec->der.len, &err)) == NULL)
		goto skip;
	if (cs_unseal(ld->key, rec->sealed_key.data, rec->sealed_key.len, e->id, TLS_ID_LEN, &plain,
	              &plen, &err) < 0)
		goto skip;
	e->key = pki_key_from_der(plain, plen, &err);
	cs_secret_free(plain);
	if (e->key == NULL)
		goto skip;
	if (!pki_key_matches(e->leaf, e->key)) {
		cs_fail(&err, CS_EINPUT, "its key does not match it");
		goto skip;
	}
	e->chain = serve_chain(e->leaf, ld->pool, e->id_hex);
	return 0;
skip:
	cs_warn("tls: certificate %.8s is not served: %s", e->id_hex, err.msg);
	entry_clear(e);
	memset(e, 0, sizeof(*e));
	return 1;
}

/* Takes the parsed certificate and key of prev's entry: nothing to unseal. */
static void reuse_entry(struct load *ld, const tls_entry *old, tls_entry *e)
{
	X509_up_ref(old->leaf);
	EVP_PKEY_up_ref(old->key);
	e->leaf = old->leaf;
	e->key = old->key;
	if (ld->same_cas)
		e->chain = old->chain != NULL ? X509_chain_up_ref(old->chain) : NULL;
	else
		e->chain = serve_chain(e->leaf, ld->pool, e->id_hex);
}

static int copy_sans(tls_sans *out, const Certsync__CertRecord *rec)
{
	char name[TLS_NAME_MAX + 1];

	if ((out->names = calloc(rec->n_sans ? rec->n_sans : 1, sizeof(char *))) == NULL)
		return -1;
	for (size_t i = 0; i < rec->n_sans; i++) {
		const char *san = rec->sans[i];
		bool wild = strncmp(san, "*.", 2) == 0;
		const char *rest = wild ? san + 2 : san;
		size_t len = tls_name_normalize(rest, strlen(rest), name);

		/* IPv6 SANs are not names: no SNI can ask for them. */
		if (len == 0)
			continue;
		if ((out->names[out->n] = malloc(len + 3)) == NULL)
			return -1;
		snprintf(out->names[out->n++], len + 3, "%s%s", wild ? "*." : "", name);
	}
	return 0;
}

static int load_cert(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct load *ld = ctx;
	Certsync__CertRecord *rec = certsync__cert_record__unpack(NULL, vlen, val);
	tls_entry *e = &ld->entries[ld->n];
	const tls_entry *old;
	int rc = 0;

	if (rec == NULL || klen != TLS_ID_LEN || ld->n == ld->cap) {
		cs_warn("tls: a record of the certs table does not decode; it is not served");
		ld->skipped++;
		goto out;
	}
	if (rec->kind != CERTSYNC__CERT_KIND__CERT_KIND_IDENTITY || rec->sealed_key.len == 0)
		goto out;
	memcpy(e->id, key, TLS_ID_LEN);
	cs_hex(e->id, TLS_ID_LEN, e->id_hex);
	e->not_before = (time_t)rec->not_before;
	e->not_after = (time_t)rec->not_after;
	if (EVP_Digest(rec->sealed_key.data, rec->sealed_key.len, e->seal_hash, NULL, EVP_sha256(),
	               NULL) != 1) {
		rc = cs_fail(ld->err, CS_EIO, "hashing a sealed key failed");
		goto out;
	}
	old = ld->prev != NULL ? map_get(&ld->prev->byid, e->id, TLS_ID_LEN) : NULL;
	if (old != NULL && memcmp(old->seal_hash, e->seal_hash, sizeof(e->seal_hash)) == 0) {
		reuse_entry(ld, old, e);
	} else if (open_entry(ld, rec, e) != 0) {
		ld->skipped++;
		goto out;
	}
	e->ec = EVP_PKEY_is_a(e->key, "EC");
	if (copy_sans(&ld->sans[ld->n], rec) < 0) {
		ld->n++; /* so the failure path frees what was taken */
		rc = cs_fail(ld->err, CS_EIO, "out of memory");
		goto out;
	}
	ld->n++;
out:
	certsync__cert_record__free_unpacked(rec, NULL);
	return rc;
}

static int read_default(cs_txn *txn, uint8_t id[TLS_ID_LEN], cs_err *err)
{
	static const char key[] = "default";
	Certsync__DefaultCert *d;
	const void *val;
	size_t vlen;
	int rc = cs_txn_get(txn, CS_TBL_SETTINGS, key, strlen(key), &val, &vlen, err);

	if (rc != 0)
		return rc;
	d = certsync__default_cert__unpack(NULL, vlen, val);
	rc = d != NULL && d->id.len == TLS_ID_LEN ? 0 : 1;
	if (rc == 0)
		memcpy(id, d->id.data, TLS_ID_LEN);
	certsync__default_cert__free_unpacked(d, NULL);
	return rc;
}

int tls_table_load(tls_table **out, cs_txn *txn, const cs_key *key, const char *node_hostname,
                   const char *site_hostname, const tls_table *prev, time_t now, cs_err *err)
{
	struct load ld = {.key = key, .prev = prev, .err = err};
	uint8_t default_id[TLS_ID_LEN], cas_hash[32];
	int has_default;
	tls_table *t;

	if ((has_default = read_default(txn, default_id, err)) < 0)
		return cs_err_prefix(err, "TLS table: ");
	ld.pool = sk_X509_new_null();
	ld.cas_md = EVP_MD_CTX_new();
	ld.cap = cs_txn_count(txn, CS_TBL_CERTS);
	ld.entries = calloc(ld.cap ? ld.cap : 1, sizeof(*ld.entries));
	ld.sans = calloc(ld.cap ? ld.cap : 1, sizeof(*ld.sans));
	if (ld.pool == NULL || ld.cas_md == NULL || ld.entries == NULL || ld.sans == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		goto fail;
	}
	if (EVP_DigestInit_ex(ld.cas_md, EVP_sha256(), NULL) != 1 ||
	    cs_txn_foreach(txn, CS_TBL_CAS, load_ca, &ld, err) != 0 ||
	    EVP_DigestFinal_ex(ld.cas_md, cas_hash, NULL) != 1)
		goto fail;
	ld.same_cas = prev != NULL && memcmp(prev->cas_hash, cas_hash, sizeof(cas_hash)) == 0;
	if (cs_txn_foreach(txn, CS_TBL_CERTS, load_cert, &ld, err) != 0)
		goto fail;
	if (tls_table_build(&t, ld.entries, ld.sans, ld.n, has_default == 0 ? default_id : NULL,
	                    node_hostname, site_hostname, now, err) < 0) {
		ld.entries = NULL; /* the build took them */
		goto fail;
	}
	memcpy(t->cas_hash, cas_hash, sizeof(cas_hash));
	t->skipped = ld.skipped;
	free(ld.sans);
	sk_X509_pop_free(ld.pool, X509_free);
	EVP_MD_CTX_free(ld.cas_md);
	*out = t;
	return 0;
fail:
	for (size_t i = 0; ld.entries != NULL && i < ld.n; i++) {
		entry_clear(&ld.entries[i]);
		sans_clear(&ld.sans[i]);
	}
	free(ld.entries);
	free(ld.sans);
	sk_X509_pop_free(ld.pool, X509_free);
	EVP_MD_CTX_free(ld.cas_md);
	return cs_err_prefix(err, "TLS table: ");
}

/* ---- status ------------------------------------------------------------------------ */

static json_t *id_json(const tls_entry *e)
{
	return e != NULL ? json_string(e->id_hex) : json_null();
}

static json_t *time_json(time_t t)
{
	char buf[32];
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

json_t *tls_table_status(const tls_table *t, time_t now)
{
	const char *hosts[2] = {t->node_hostname, t->site_hostname};
	json_t *uncovered = json_array(), *served = json_array();
	char hex[2 * TLS_ID_LEN + 1];

	for (size_t i = 0; i < t->nuncovered; i++)
		json_array_append_new(uncovered, json_string(t->uncovered[i]));
	for (int i = 0; i < 2; i++) {
		if (hosts[i][0] != '\0')
			json_array_append_new(
			    served, json_pack("{s:s, s:o}", "hostname", hosts[i], "certificate",
			                      id_json(tls_table_select(t, hosts[i], true, now))));
	}
	cs_hex(t->configured_id, TLS_ID_LEN, hex);
	return json_pack("{s:I, s:I, s:o, s:{s:o, s:o, s:b, s:o}, s:o}", "certificates",
	                 (json_int_t)t->nentries, "skipped", (json_int_t)t->skipped, "built",
	                 time_json(t->built), "default", "configured",
	                 t->has_configured ? json_string(hex) : json_null(), "served",
	                 id_json(tls_table_select(t, NULL, true, now)), "covered", t->covered,
	                 "uncovered", uncovered, "hosts", served);
}

bool tls_table_healthy(const tls_table *t, time_t now)
{
	/* Checked again now: the served default may have expired since. */
	return first_valid(&t->dflt, WANT_ANY, now) != NULL;
}

const char *tls_table_served(const tls_table *t, const char *sni, time_t now)
{
	char name[TLS_NAME_MAX + 1];
	const tls_entry *e;

	if (sni != NULL && tls_name_normalize(sni, strlen(sni), name) == 0)
		sni = NULL; /* as the ClientHello callback does */
	e = tls_table_select(t, sni != NULL ? name : NULL, true, now);
	return e != NULL ? e->id_hex : NULL;
}

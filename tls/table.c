/* table.c — the immutable selection table: which certificate a name gets.
 *
 * Built off the handshake path, from the store (tls_table_load) or from
 * entries a test made (tls_table_build); read by any number of workers at
 * once without locks, since nothing in it changes after the build; freed by
 * the last reference.  The ClientHello callback asks tls_table_select, which
 * costs two hash lookups and a few comparisons.
 *
 * A build after a change costs what the change touched plus one pass over
 * the table's entries, not a read of the whole store: the log entries after
 * the position the previous table was built at name the certificates that
 * changed, and every other entry -- parsed leaf, opened key, chain, names,
 * coverage -- is taken over by reference.  The maps are made anew (their
 * keys point into the entries, so that is hashing, not copying). */
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

/* ---- entries ------------------------------------------------------------- */

tls_entry *tls_entry_new(void)
{
	tls_entry *e = calloc(1, sizeof(*e));

	if (e != NULL)
		atomic_init(&e->refs, 1);
	return e;
}

static tls_entry *entry_ref(tls_entry *e)
{
	atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	return e;
}

void tls_entry_free(tls_entry *e)
{
	if (e == NULL || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
		return;
	X509_free(e->leaf);
	EVP_PKEY_free(e->key);
	sk_X509_pop_free(e->chain, X509_free);
	pki_sans_free(&e->names);
	free(e);
}

/* ---- hash map ------------------------------------------------------------ */

struct tls_slot {
	const void *key; /* owned by an entry of the table; NULL for an empty slot */
	size_t klen;
	uint64_t hash;
	tls_cands cands;
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

static const tls_cands *map_get(const tls_map *m, const void *key, size_t klen)
{
	struct tls_slot *s;

	if (m->cap == 0)
		return NULL;
	s = map_probe(m->slots, m->cap, key, klen, hash_bytes(key, klen));
	return s->key != NULL ? &s->cands : NULL;
}

/* Room for n keys without growing: a build sizes its maps once, for every
 * name it will index, so no insert pays for a rehash. */
static int map_reserve(tls_map *m, size_t n)
{
	size_t cap = 16;
	struct tls_slot *slots;

	while (cap < 2 * n)
		cap *= 2;
	if ((slots = calloc(cap, sizeof(*slots))) == NULL)
		return -1;
	m->slots = slots;
	m->cap = cap;
	m->n = 0;
	return 0;
}

/* The candidates of key, an empty list when it is new. */
static tls_cands *map_slot(tls_map *m, const void *key, size_t klen)
{
	uint64_t h = hash_bytes(key, klen);
	struct tls_slot *s = map_probe(m->slots, m->cap, key, klen, h);

	if (s->key == NULL) {
		s->key = key;
		s->klen = klen;
		s->hash = h;
		m->n++;
	}
	return &s->cands;
}

static void map_free(tls_map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->slots[i].cands.v);
	free(m->slots);
}

/* ---- candidate lists ------------------------------------------------------ */

static int cands_push(tls_cands *c, const tls_entry *e)
{
	if (c->n == 0) {
		c->one = e;
	} else {
		if (c->n == 1 || c->n == c->cap) {
			uint32_t cap = c->n == 1 ? 4 : 2 * c->cap;
			const tls_entry **v = realloc(c->v, cap * sizeof(*v));

			if (v == NULL)
				return -1;
			if (c->n == 1)
				v[0] = c->one;
			c->v = v;
			c->cap = cap;
		}
		c->v[c->n] = e;
	}
	c->n++;
	return 0;
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
	if (c->n > 1)
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

static bool valid_at(const tls_entry *e, time_t now)
{
	return e->not_before <= now && now < e->not_after;
}

static bool usable(const tls_entry *e, unsigned can)
{
	return (can & (e->ec ? TLS_CAN_EC : TLS_CAN_RSA)) != 0;
}

static const tls_entry *first_valid(const tls_cands *c, time_t now)
{
	if (c == NULL)
		return NULL;
	for (size_t i = 0; i < c->n; i++) {
		const tls_entry *e = TLS_CAND(c, i);

		if (valid_at(e, now))
			return e;
	}
	return NULL;
}

/* The best certificate of c the client can use: valid now, latest expiry;
 * the key type it prefers (ECDSA when it offers it) only between two that
 * expire at the same second. */
static const tls_entry *best_usable(const tls_cands *c, unsigned can, time_t now)
{
	const tls_entry *b = NULL;

	if (c == NULL)
		return NULL;
	for (size_t i = 0; i < c->n; i++) {
		const tls_entry *e = TLS_CAND(c, i);

		if (!valid_at(e, now) || !usable(e, can))
			continue;
		if (b == NULL)
			b = e;
		else if (e->not_after != b->not_after)
			break;
		if (!b->ec && e->ec && (can & TLS_CAN_EC))
			return e;
	}
	return b;
}

/* Whether e answers for the normalized name: one of its names, or a
 * one-label wildcard over name's parent. */
static bool answers(const tls_entry *e, const char *name)
{
	const char *dot = strchr(name, '.');

	for (size_t i = 0; i < e->names.n; i++) {
		const char *n = e->names.names[i];

		if (strcmp(n, name) == 0 ||
		    (dot != NULL && strncmp(n, "*.", 2) == 0 && strcmp(n + 2, dot + 1) == 0))
			return true;
	}
	return false;
}

const tls_entry *tls_table_select(const tls_table *t, const char *name, unsigned can, time_t now)
{
	const tls_cands *stages[3] = {NULL, NULL, &t->dflt};
	const tls_entry *d = t->configured, *e;

	if (name != NULL) {
		const char *dot = strchr(name, '.');

		stages[0] = map_get(&t->exact, name, strlen(name));
		if (dot != NULL)
			stages[1] = map_get(&t->wild, dot + 1, strlen(dot + 1));
	}
	/* The operator's choice first: the default, for no SNI, a name
	 * nothing else answers, or a name it covers -- when the client can
	 * use its key type. */
	if (d != NULL && valid_at(d, now) && usable(d, can) &&
	    (stages[0] == NULL && stages[1] == NULL ? t->dflt.n > 0 && TLS_CAND(&t->dflt, 0) == d
	                                            : answers(d, name)))
		return d;
	/* Else the best certificate the client can use, exact names before
	 * wildcards before the default's stand-ins... */
	for (int s = 0; s < 3; s++) {
		if ((e = best_usable(stages[s], can, now)) != NULL)
			return e;
	}
	/* ...then any valid one: its signature may yet suit the client. */
	for (int s = 0; s < 3; s++) {
		if ((e = first_valid(stages[s], now)) != NULL)
			return e;
	}
	return NULL;
}

/* ---- building ----------------------------------------------------------------- */

/* Never 0, which marks an entry whose coverage was not found. */
static uint64_t tls_hosts_key(const char *node_hostname, const char *site_hostname)
{
	uint64_t a = hash_bytes(node_hostname, strlen(node_hostname) + 1);

	return (a * 31 + hash_bytes(site_hostname, strlen(site_hostname))) | 1;
}

/* Whether e covers both hostnames of t: found once, when the entry was
 * opened for them, since X509_check_host decodes the SAN extension on every
 * call. */
static bool covers_all(const tls_table *t, const tls_entry *e)
{
	const char *hosts[2] = {t->node_hostname, t->site_hostname};

	if (e->covers_for == t->hosts_key)
		return e->covers;
	for (int i = 0; i < 2; i++) {
		if (hosts[i][0] != '\0' && !pki_covers(e->leaf, hosts[i]))
			return false;
	}
	return true;
}

static int index_name(tls_table *t, const char *san, const tls_entry *e)
{
	bool wild = strncmp(san, "*.", 2) == 0;
	const char *key = wild ? san + 2 : san;

	/* "*.com" would match every .com name: X509_check_host refuses it, and
	 * so do we. */
	if (wild && strchr(key, '.') == NULL)
		return 0;
	return cands_push(map_slot(wild ? &t->wild : &t->exact, key, strlen(key)), e);
}

static void sort_all(tls_map *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].key != NULL)
			cands_sort(&m->slots[i].cands);
	}
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
		if (covers_all(t, t->entries[i]) && cands_push(&cover, t->entries[i]) < 0)
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
			if (TLS_CAND(&cover, i) != c &&
			    cands_push(&t->dflt, TLS_CAND(&cover, i)) < 0)
				goto oom;
		}
		free(cover.v);
	} else {
		t->dflt = cover;
	}
	t->covered = first_valid(&t->dflt, now) != NULL;
	return 0;
oom:
	free(cover.v);
	return -1;
}

static void table_destroy(tls_table *t)
{
	for (size_t i = 0; i < t->nentries; i++)
		tls_entry_free(t->entries[i]);
	free(t->entries);
	map_free(&t->exact);
	map_free(&t->wild);
	map_free(&t->byid);
	free(t->dflt.v);
	free(t->skipped);
	free(t);
}

/* The hostname as tables keep it, in TLS_NAME_MAX + 1 bytes: normalized,
 * or as given when it is not a DNS name (an IP literal is a legitimate
 * hostname to cover); "" for none. */
static int copy_host(char *dst, const char *host)
{
	dst[0] = '\0';
	if (host == NULL || host[0] == '\0' || tls_name_normalize(host, strlen(host), dst) > 0)
		return 0;
	if (strlen(host) > TLS_NAME_MAX)
		return -1;
	strcpy(dst, host);
	return 0;
}

static int index_all(tls_table *t)
{
	size_t names = 0, wild = 0;

	for (size_t i = 0; i < t->nentries; i++) {
		const pki_sans *sans = &t->entries[i]->names;

		names += sans->n;
		for (size_t j = 0; j < sans->n; j++)
			wild += strncmp(sans->names[j], "*.", 2) == 0;
	}
	if (map_reserve(&t->byid, t->nentries) < 0 || map_reserve(&t->exact, names - wild) < 0 ||
	    map_reserve(&t->wild, wild) < 0)
		return -1;
	for (size_t i = 0; i < t->nentries; i++) {
		const tls_entry *e = t->entries[i];
		tls_cands *byid = map_slot(&t->byid, e->id, TLS_ID_LEN);

		/* Two records of one id cannot be: the id is the store's key. */
		if (byid->n == 0 && cands_push(byid, e) < 0)
			return -1;
		for (size_t j = 0; j < e->names.n; j++) {
			if (index_name(t, e->names.names[j], e) < 0)
				return -1;
		}
	}
	sort_all(&t->exact);
	sort_all(&t->wild);
	return 0;
}

int tls_table_build(tls_table **out, tls_entry **entries, size_t n, const uint8_t *default_id,
                    const char *node_hostname, const char *site_hostname, time_t now, cs_err *err)
{
	tls_table *t = calloc(1, sizeof(*t));
	const tls_cands *c;

	if (t == NULL) {
		for (size_t i = 0; i < n; i++)
			tls_entry_free(entries[i]);
		free(entries);
		return cs_fail(err, CS_EIO, "out of memory building the TLS selection table");
	}
	atomic_init(&t->refs, 1);
	t->entries = entries;
	t->nentries = n;
	t->built = now;
	if (copy_host(t->node_hostname, node_hostname) < 0 ||
	    copy_host(t->site_hostname, site_hostname) < 0) {
		cs_fail(err, CS_EUSAGE, "hostname \"%.40s...\" is too long",
		        copy_host(t->node_hostname, node_hostname) < 0 ? node_hostname
		                                                       : site_hostname);
		table_destroy(t);
		return -1;
	}
	t->hosts_key = tls_hosts_key(t->node_hostname, t->site_hostname);
	if (index_all(t) < 0)
		goto oom;
	if (default_id != NULL) {
		t->has_configured = true;
		memcpy(t->configured_id, default_id, TLS_ID_LEN);
		c = map_get(&t->byid, default_id, TLS_ID_LEN);
		t->configured = c != NULL ? c->one : NULL;
	}
	if (gate(t, now) < 0)
		goto oom;
	*out = t;
	return 0;
oom:
	table_destroy(t);
	return cs_fail(err, CS_EIO, "out of memory building the TLS selection table");
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
	EVP_MD_CTX *cas_md;              /* while the pool is read */
	uint8_t cas_hash[32];
	tls_entry **entries;
	size_t n, cap;
	uint8_t (*skipped)[TLS_ID_LEN];
	size_t nskipped, capskipped;
	cs_err *err;
};

static int load_ca(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct load *ld = ctx;
	Certsync__CertRecord *rec = certsync__cert_record__unpack(NULL, vlen, val);
	X509 *x = NULL;
	cs_err ignored;
	int rc = 0;

	if (EVP_DigestUpdate(ld->cas_md, key, klen) != 1)
		rc = cs_fail(ld->err, CS_EIO, "hashing the CA pool failed");
	/* A CA that does not decode only leaves chains shorter. */
	else if (rec != NULL &&
	         (x = pki_cert_from_der(rec->der.data, rec->der.len, &ignored)) != NULL &&
	         sk_X509_push(ld->pool, x) <= 0) {
		X509_free(x);
		rc = cs_fail(ld->err, CS_EIO, "out of memory");
	}
	certsync__cert_record__free_unpacked(rec, NULL);
	return rc;
}

/* The CA pool and the hash of its ids, read once per build. */
static int load_pool(struct load *ld)
{
	int rc = 0;

	if (ld->pool != NULL)
		return 0;
	ld->cas_md = EVP_MD_CTX_new();
	ld->pool = sk_X509_new_null();
	if (ld->cas_md == NULL || ld->pool == NULL ||
	    EVP_DigestInit_ex(ld->cas_md, EVP_sha256(), NULL) != 1)
		rc = cs_fail(ld->err, CS_EIO, "out of memory");
	else if (cs_txn_foreach(ld->txn, CS_TBL_CAS, load_ca, ld, ld->err) != 0)
		rc = -1; /* load_ca or the walk said why */
	else if (EVP_DigestFinal_ex(ld->cas_md, ld->cas_hash, NULL) != 1)
		rc = cs_fail(ld->err, CS_EIO, "hashing the CA pool failed");
	EVP_MD_CTX_free(ld->cas_md);
	ld->cas_md = NULL;
	return rc;
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
	uint8_t *plain = NULL;
	size_t plen;

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
	if (cs_unseal(ld->key, rec->sealed_key.data, rec->sealed_key.len, e->id, TLS_ID_LEN, &plain,
	              &plen, why) < 0)
		goto skip;
	e->key = pki_key_from_der(plain, plen, why);
	cs_secret_free(plain);
	if (e->key == NULL)
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
	Certsync__CertRecord *rec = certsync__cert_record__unpack(NULL, vlen, val);
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
	old = ld->prev != NULL ? map_get(&ld->prev->byid, id, TLS_ID_LEN) : NULL;
	if (old != NULL && ld->same_cas && memcmp(old->one->seal_hash, seal_hash, 32) == 0) {
		rc = push_entry(ld, entry_ref((tls_entry *)old->one));
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
	map_free(&d->ids);
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
	if (map_reserve(&d->ids, ops) < 0)
		return cs_fail(ld->err, CS_EIO, "out of memory");
	for (size_t k = 0; k < d->n; k++) {
		for (size_t i = 0; i < d->entries[k]->n_ops; i++) {
			const Certsync__Op *op = d->entries[k]->ops[i];

			if (op->table == CS_TBL_CERTS && op->key.len == TLS_ID_LEN)
				map_slot(&d->ids, op->key.data, TLS_ID_LEN)->n = 1;
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

		if (map_get(&d->ids, e->id, TLS_ID_LEN) == NULL && push_entry(ld, entry_ref(e)) < 0)
			return -1;
	}
	for (size_t i = 0; i < prev->nskipped; i++) {
		if (map_get(&d->ids, prev->skipped[i], TLS_ID_LEN) == NULL &&
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
	struct load ld = {.txn = txn, .key = key, .err = err};
	struct delta d = {0};
	cs_pos pos = cs_txn_applied(txn);
	uint8_t default_id[TLS_ID_LEN];
	int has_default;
	bool delta;
	tls_table *t;

	/* A hostname that does not fit fails in tls_table_build, with its
	 * message. */
	if (copy_host(ld.hosts[0], node_hostname) < 0 || copy_host(ld.hosts[1], site_hostname) < 0)
		ld.hosts[0][0] = ld.hosts[1][0] = '\0';
	ld.hosts_key = tls_hosts_key(ld.hosts[0], ld.hosts[1]);
	/* prev may have been built for other hostnames (verify --cluster
	 * builds one table per node from the node's own): its entries are
	 * reused all the same, as the gate finds again the coverage of every
	 * entry whose covers_for is not this table's hostnames. */
	ld.prev = prev;
	if ((has_default = read_default(txn, default_id, err)) < 0 ||
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
			    served,
			    json_pack("{s:s, s:o}", "hostname", hosts[i], "certificate",
			              id_json(tls_table_select(t, hosts[i], TLS_CAN_ANY, now))));
	}
	cs_hex(t->configured_id, TLS_ID_LEN, hex);
	return json_pack("{s:I, s:I, s:o, s:{s:o, s:o, s:b, s:o}, s:o}", "certificates",
	                 (json_int_t)t->nentries, "skipped", (json_int_t)t->nskipped, "built",
	                 time_json(t->built), "default", "configured",
	                 t->has_configured ? json_string(hex) : json_null(), "served",
	                 id_json(tls_table_select(t, NULL, TLS_CAN_ANY, now)), "covered",
	                 t->covered, "uncovered", uncovered, "hosts", served);
}

bool tls_table_healthy(const tls_table *t, time_t now)
{
	/* Checked again now: the served default may have expired since; and an
	 * expired default is the operator's to replace even while another
	 * certificate stands in for it. */
	return first_valid(&t->dflt, now) != NULL &&
	       (t->configured == NULL || now < t->configured->not_after);
}

const char *tls_table_served(const tls_table *t, const char *sni, time_t now)
{
	char name[TLS_NAME_MAX + 1];
	const tls_entry *e;

	if (sni != NULL && tls_name_normalize(sni, strlen(sni), name) == 0)
		sni = NULL; /* as the ClientHello callback does */
	e = tls_table_select(t, sni != NULL ? name : NULL, TLS_CAN_ANY, now);
	return e != NULL ? e->id_hex : NULL;
}

/* table.c — the immutable selection table as the handshake path reads it:
 * which certificate a name gets.
 *
 * Read by any number of workers at once without locks, since nothing in it
 * changes after the build (table_build.c, from the store: table_load.c);
 * freed by the last reference.  The ClientHello callback asks
 * tls_table_select, which costs two hash lookups and a few comparisons.
 * Here too: the entries' and tables' references, the open-addressing map
 * and candidate lists the build fills, and the table's status. */
#include "tls_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/hex.h"

/* ---- entries ------------------------------------------------------------- */

tls_entry *tls_entry_new(void)
{
	tls_entry *e = calloc(1, sizeof(*e));

	if (e != NULL)
		atomic_init(&e->refs, 1);
	return e;
}

tls_entry *tls_entry_ref(tls_entry *e)
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

uint64_t tls_hash_bytes(const void *p, size_t n)
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

const tls_cands *tls_map_get(const tls_map *m, const void *key, size_t klen)
{
	struct tls_slot *s;

	if (m->cap == 0)
		return NULL;
	s = map_probe(m->slots, m->cap, key, klen, tls_hash_bytes(key, klen));
	return s->key != NULL ? &s->cands : NULL;
}

int tls_map_reserve(tls_map *m, size_t n)
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

tls_cands *tls_map_slot(tls_map *m, const void *key, size_t klen)
{
	uint64_t h = tls_hash_bytes(key, klen);
	struct tls_slot *s = map_probe(m->slots, m->cap, key, klen, h);

	if (s->key == NULL) {
		s->key = key;
		s->klen = klen;
		s->hash = h;
		m->n++;
	}
	return &s->cands;
}

void tls_map_free(tls_map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->slots[i].cands.v);
	free(m->slots);
}

/* ---- candidate lists ------------------------------------------------------ */

int tls_cands_push(tls_cands *c, const tls_entry *e)
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

void tls_cands_sort(tls_cands *c)
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

const tls_entry *tls_cands_first_valid(const tls_cands *c, time_t now)
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

		stages[0] = tls_map_get(&t->exact, name, strlen(name));
		if (dot != NULL)
			stages[1] = tls_map_get(&t->wild, dot + 1, strlen(dot + 1));
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
		if ((e = tls_cands_first_valid(stages[s], now)) != NULL)
			return e;
	}
	return NULL;
}

void tls_table_destroy(tls_table *t)
{
	for (size_t i = 0; i < t->nentries; i++)
		tls_entry_free(t->entries[i]);
	free(t->entries);
	tls_map_free(&t->exact);
	tls_map_free(&t->wild);
	tls_map_free(&t->byid);
	free(t->dflt.v);
	free(t->skipped);
	free(t);
}

tls_table *tls_table_ref(tls_table *t)
{
	atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
	return t;
}

void tls_table_free(tls_table *t)
{
	if (t != NULL && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
		tls_table_destroy(t);
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
	return tls_cands_first_valid(&t->dflt, now) != NULL &&
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

/* table_build.c — making a selection table from its entries: the maps of
 * exact and wildcard names and of ids, each name's candidates in order, and
 * the coverage gate that decides what a client with no SNI (or an unknown
 * name) gets.  Runs off the handshake path, in the reloader or a test. */
#include "tls_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- building ----------------------------------------------------------------- */

uint64_t tls_hosts_key(const char *node_hostname, const char *site_hostname)
{
	uint64_t a = tls_hash_bytes(node_hostname, strlen(node_hostname) + 1);

	return (a * 31 + tls_hash_bytes(site_hostname, strlen(site_hostname))) | 1;
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
	return tls_cands_push(tls_map_slot(wild ? &t->wild : &t->exact, key, strlen(key)), e);
}

static void sort_all(tls_map *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].key != NULL)
			tls_cands_sort(&m->slots[i].cands);
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
		if (covers_all(t, t->entries[i]) && tls_cands_push(&cover, t->entries[i]) < 0)
			goto oom;
	}
	tls_cands_sort(&cover);
	for (int i = 0; i < 2; i++) {
		if (hosts[i][0] != '\0' && (c == NULL || !pki_covers(c->leaf, hosts[i])))
			t->uncovered[t->nuncovered++] = hosts[i];
	}
	if (c != NULL && t->nuncovered == 0) {
		/* The default first, the other covering ones behind it for
		 * clients of the other key type and for when it expires. */
		if (tls_cands_push(&t->dflt, c) < 0)
			goto oom;
		for (size_t i = 0; i < cover.n; i++) {
			if (TLS_CAND(&cover, i) != c &&
			    tls_cands_push(&t->dflt, TLS_CAND(&cover, i)) < 0)
				goto oom;
		}
		free(cover.v);
	} else {
		t->dflt = cover;
	}
	t->covered = tls_cands_first_valid(&t->dflt, now) != NULL;
	return 0;
oom:
	free(cover.v);
	return -1;
}

int tls_copy_host(char *dst, const char *host)
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
	if (tls_map_reserve(&t->byid, t->nentries) < 0 ||
	    tls_map_reserve(&t->exact, names - wild) < 0 || tls_map_reserve(&t->wild, wild) < 0)
		return -1;
	for (size_t i = 0; i < t->nentries; i++) {
		const tls_entry *e = t->entries[i];
		tls_cands *byid = tls_map_slot(&t->byid, e->id, TLS_ID_LEN);

		/* Two records of one id cannot be: the id is the store's key. */
		if (byid->n == 0 && tls_cands_push(byid, e) < 0)
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
	if (tls_copy_host(t->node_hostname, node_hostname) < 0 ||
	    tls_copy_host(t->site_hostname, site_hostname) < 0) {
		cs_fail(err, CS_EUSAGE, "hostname \"%.40s...\" is too long",
		        tls_copy_host(t->node_hostname, node_hostname) < 0 ? node_hostname
		                                                           : site_hostname);
		tls_table_destroy(t);
		return -1;
	}
	t->hosts_key = tls_hosts_key(t->node_hostname, t->site_hostname);
	if (index_all(t) < 0)
		goto oom;
	if (default_id != NULL) {
		t->has_configured = true;
		memcpy(t->configured_id, default_id, TLS_ID_LEN);
		c = tls_map_get(&t->byid, default_id, TLS_ID_LEN);
		t->configured = c != NULL ? c->one : NULL;
	}
	if (gate(t, now) < 0)
		goto oom;
	*out = t;
	return 0;
oom:
	tls_table_destroy(t);
	return cs_fail(err, CS_EIO, "out of memory building the TLS selection table");
}

/* ops_cert.c — operations on certificates already in the store: list, show,
 * delete, choose the default, export and verify. */
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <sodium.h>

#include "../common/clock.h"
#include "../common/hex.h"
#include "../common/hostport.h"
#include "control.h"
#include "live.h"
#include "ops.h"
#include "records.h"

/* Hostnames of the configuration a verify looks at (cs_config_hosts: the
 * site, this node's, each peer's); replication has at most 64 peers. */
#define HOSTS_MAX 66
/* What verify --cluster expects each node to serve: for its own hostname
 * and for the site hostname. */
#define EXPECTED_HOSTS 2

/* The certificate an operation names, parsed, with its chain from the pool. */
struct loaded {
	rec_cert c;
	bool is_default;
	X509 *leaf;
	STACK_OF(X509) * pool, *chain;
	bool complete;
};

static void unload(struct loaded *l)
{
	rec_cert_clear(&l->c);
	X509_free(l->leaf);
	sk_X509_pop_free(l->pool, X509_free);
	sk_X509_pop_free(l->chain, X509_free);
}

/* ref NULL loads the default certificate. */
static int load(cs_txn *txn, const char *ref, struct loaded *l, cs_err *err)
{
	uint8_t def[PKI_ID_LEN];
	int has_default;

	memset(l, 0, sizeof(*l));
	has_default = rec_default(txn, def, err);
	if (has_default < 0)
		return -1;
	if (ref == NULL) {
		if (has_default == 1)
			return cs_fail(err, CS_ENOTFOUND,
			               "there is no default certificate; choose one with `certsync "
			               "cert default ID` or name one with --cert");
		if (rec_cert_get(txn, CS_TBL_CERTS, def, &l->c, err) != 0)
			return cs_fail(err, CS_EIO, "the default certificate's record is missing");
	} else if (rec_cert_find(txn, ref, &l->c, err) < 0) {
		return -1;
	}
	l->is_default = has_default == 0 && memcmp(def, l->c.id, PKI_ID_LEN) == 0;
	l->leaf = pki_cert_from_der(l->c.rec->der.data, l->c.rec->der.len, err);
	l->pool = l->leaf ? rec_ca_pool(txn, NULL, err) : NULL;
	if (l->pool == NULL ||
	    pki_chain_build(l->leaf, l->pool, true, &l->chain, &l->complete, err) < 0) {
		unload(l);
		return -1;
	}
	return 0;
}

static char *cert_pem(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long n;

	if (b != NULL && PEM_write_bio_X509(b, x) && (n = BIO_get_mem_data(b, &data)) > 0 &&
	    (out = malloc((size_t)n + 1)) != NULL) {
		memcpy(out, data, (size_t)n);
		out[n] = '\0';
	}
	BIO_free(b);
	return out;
}

static json_t *chain_json(STACK_OF(X509) * chain)
{
	json_t *a = json_array();

	for (int i = 0; i < sk_X509_num(chain); i++) {
		pki_cert_info info;
		char id[2 * PKI_ID_LEN + 1];
		static const char *const kinds[] = {"identity", "intermediate", "root"};

		if (pki_cert_inspect(sk_X509_value(chain, i), &info, NULL) < 0)
			continue;
		cs_hex(info.id, PKI_ID_LEN, id);
		json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "id", id, "subject",
		                                   info.subject, "kind", kinds[info.kind]));
		pki_cert_info_free(&info);
	}
	return a;
}

json_t *op_cert_show(struct cs_node *node, json_t *args, cs_err *err)
{
	struct loaded l;
	const char *ref;
	json_t *j = NULL;
	char *pem;
	cs_txn *txn;

	if (ops_arg_string(args, "id", true, &ref, err) < 0 ||
	    cs_txn_begin(node->store, false, &txn, err) < 0)
		return NULL;
	if (load(txn, ref, &l, err) == 0) {
		pem = cert_pem(l.leaf);
		j = rec_cert_json(&l.c, l.is_default, l.pool, time(NULL));
		json_object_set_new(j, "chain", chain_json(l.chain));
		json_object_set_new(j, "chain_complete", json_boolean(l.complete));
		json_object_set_new(j, "pem", json_string(pem ? pem : ""));
		free(pem);
		unload(&l);
	}
	cs_txn_abort(txn);
	return j;
}

json_t *op_cert_delete(struct cs_node *node, json_t *args, cs_err *err)
{
	uint8_t def[PKI_ID_LEN];
	char hex[2 * PKI_ID_LEN + 1], summary[128], sid[9];
	const char *ref;
	rec_cert c;
	cs_txn *txn;

	if (ops_arg_string(args, "id", true, &ref, err) < 0 ||
	    cs_txn_begin(node->store, true, &txn, err) < 0)
		return NULL;
	if (rec_cert_find(txn, ref, &c, err) < 0)
		goto fail;
	rec_short_id(c.id, sid);
	if (rec_default(txn, def, err) == 0 && memcmp(def, c.id, PKI_ID_LEN) == 0) {
		cs_fail(err, CS_EREFUSED,
		        "certificate %s (%s) is the default certificate; make another one the "
		        "default first (`certsync cert default ID`)",
		        sid, c.rec->name);
		goto fail_rec;
	}
	snprintf(summary, sizeof(summary), "delete %s (%s)", sid, c.rec->name);
	if (cs_txn_del(txn, c.table, c.id, PKI_ID_LEN, err) < 0)
		goto fail_rec;
	cs_hex(c.id, PKI_ID_LEN, hex);
	rec_cert_clear(&c);
	if (ops_commit(node, txn, summary, err) < 0)
		return NULL;
	return json_pack("{s:s}", "deleted", hex);
fail_rec:
	rec_cert_clear(&c);
fail:
	cs_txn_abort(txn);
	return NULL;
}

/* Hosts of the configuration that cert does not cover, as a JSON array. */
static json_t *uncovered(const cs_config *cfg, X509 *cert)
{
	const char *hosts[HOSTS_MAX];
	size_t n = cs_config_hosts(cfg, hosts, HOSTS_MAX);
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		if (!pki_covers(cert, hosts[i]))
			json_array_append_new(a, json_string(hosts[i]));
	return a;
}

json_t *op_cert_default(struct cs_node *node, json_t *args, cs_err *err)
{
	char hex[2 * PKI_ID_LEN + 1], summary[128], sid[9], why[48], nb[32], na[32];
	const char *ref;
	json_t *missing;
	rec_cert c;
	cs_txn *txn;
	X509 *x;

	if (ops_arg_string(args, "id", true, &ref, err) < 0 ||
	    cs_txn_begin(node->store, true, &txn, err) < 0)
		return NULL;
	if (rec_cert_find(txn, ref, &c, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	rec_short_id(c.id, sid);
	cs_iso_time(c.rec->not_before, nb);
	cs_iso_time(c.rec->not_after, na);
	if (c.table != CS_TBL_CERTS || c.rec->sealed_key.len == 0) {
		cs_fail(err, CS_EREFUSED,
		        c.table != CS_TBL_CERTS
		            ? "certificate %s (%s) is a CA certificate; the default must be an "
		              "identity certificate with its key"
		            : "certificate %s (%s) holds no private key; import its key first",
		        sid, c.rec->name);
		rec_cert_clear(&c);
		cs_txn_abort(txn);
		return NULL;
	}
	if (!rec_valid_at(c.rec, time(NULL), why)) {
		cs_fail(
		    err, CS_EREFUSED,
		    "certificate %s (%s) is %s (valid %.10s to %.10s); clients would refuse it: "
		    "choose a certificate valid now",
		    sid, c.rec->name, why, nb, na);
		rec_cert_clear(&c);
		cs_txn_abort(txn);
		return NULL;
	}
	x = pki_cert_from_der(c.rec->der.data, c.rec->der.len, err);
	snprintf(summary, sizeof(summary), "default %s (%s)", sid, c.rec->name);
	cs_hex(c.id, PKI_ID_LEN, hex);
	if (x == NULL || rec_set_default(txn, c.id, err) < 0) {
		X509_free(x);
		rec_cert_clear(&c);
		cs_txn_abort(txn);
		return NULL;
	}
	missing = uncovered(node->cfg, x);
	X509_free(x);
	rec_cert_clear(&c);
	if (ops_commit(node, txn, summary, err) < 0) {
		json_decref(missing);
		return NULL;
	}
	return json_pack("{s:s, s:o}", "default", hex, "uncovered", missing);
}

/* ---- export ---------------------------------------------------------------- */

json_t *op_export(struct cs_node *node, json_t *args, cs_err *err)
{
	const char *ref, *fmt_name, *passphrase;
	pki_format fmt = PKI_FMT_PEM;
	EVP_PKEY *key = NULL;
	uint8_t *out = NULL;
	size_t outlen = 0;
	struct loaded l;
	json_t *j = NULL;
	cs_txn *txn;

	if (ops_arg_string(args, "id", true, &ref, err) < 0 ||
	    ops_arg_string(args, "format", false, &fmt_name, err) < 0 ||
	    ops_arg_string(args, "passphrase", false, &passphrase, err) < 0 ||
	    (fmt_name != NULL && pki_format_parse(fmt_name, &fmt, err) < 0))
		return NULL;
	if (fmt == PKI_FMT_P12 && (passphrase == NULL || *passphrase == '\0')) {
		cs_fail(err, CS_EUSAGE,
		        "export --format p12 carries the private key and needs an export "
		        "passphrase: give --passphrase-file FILE");
		return NULL;
	}
	if (cs_txn_begin(node->store, false, &txn, err) < 0)
		return NULL;
	if (load(txn, ref, &l, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	if (fmt == PKI_FMT_P12) {
		if (l.c.rec->sealed_key.len == 0)
			cs_fail(err, CS_EREFUSED,
			        "certificate %s holds no private key, so there is no PKCS#12 to "
			        "export; use --format pem",
			        l.c.rec->name);
		else
			key = rec_unseal_key(node->key, &l.c.rec->sealed_key, l.c.id, PKI_ID_LEN,
			                     err);
	}
	if ((fmt != PKI_FMT_P12 || key != NULL) &&
	    pki_export(fmt, l.leaf, l.chain, key, l.c.rec->name, passphrase, &out, &outlen, err) ==
	        0) {
		j = json_pack("{s:s, s:o}", "format", fmt_name ? fmt_name : "pem", "data",
		              cs_control_base64(out, outlen));
	}
	EVP_PKEY_free(key);
	free(out);
	unload(&l);
	cs_txn_abort(txn);
	return j;
}

/* ---- verify ---------------------------------------------------------------- */

json_t *op_verify(struct cs_node *node, json_t *args, cs_err *err)
{
	static const char *const status_names[] = {"ok", "warn", "fail"};
	pki_check checks[PKI_NCHECKS];
	const char *ref, *hosts[HOSTS_MAX];
	char hex[2 * PKI_ID_LEN + 1];
	size_t nhosts = cs_config_hosts(node->cfg, hosts, HOSTS_MAX);
	pki_check_status worst;
	EVP_PKEY *key = NULL;
	json_t *jchecks, *jhosts, *j;
	struct loaded l;
	cs_err keyerr = {0};
	cs_txn *txn;

	if (ops_arg_string(args, "cert", false, &ref, err) < 0 ||
	    cs_txn_begin(node->store, false, &txn, err) < 0)
		return NULL;
	if (load(txn, ref, &l, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	if (l.c.rec->sealed_key.len > 0)
		key = rec_unseal_key(node->key, &l.c.rec->sealed_key, l.c.id, PKI_ID_LEN, &keyerr);
	worst = pki_verify(l.leaf, l.pool, key, hosts, nhosts, time(NULL), checks);
	if (l.c.rec->sealed_key.len > 0 && key == NULL) {
		/* A seal that does not open is worth more than "no key held". */
		checks[2].status = PKI_CHECK_FAIL;
		snprintf(checks[2].detail, sizeof(checks[2].detail), "%s", keyerr.msg);
		worst = PKI_CHECK_FAIL;
	}
	jchecks = json_array();
	for (int i = 0; i < PKI_NCHECKS; i++)
		json_array_append_new(jchecks, json_pack("{s:s, s:s, s:s}", "name", checks[i].name,
		                                         "status", status_names[checks[i].status],
		                                         "detail", checks[i].detail));
	jhosts = json_array();
	for (size_t i = 0; i < nhosts; i++)
		json_array_append_new(jhosts, json_string(hosts[i]));
	cs_hex(l.c.id, PKI_ID_LEN, hex);
	j = json_pack("{s:{s:s, s:s}, s:o, s:b, s:o}", "certificate", "id", hex, "name",
	              l.c.rec->name, "hosts", jhosts, "ok", worst != PKI_CHECK_FAIL, "checks",
	              jchecks);
	EVP_PKEY_free(key);
	unload(&l);
	cs_txn_abort(txn);
	return j;
}

/* ---- verify --cluster ------------------------------------------------------- */

/* The operator's intent for one hostname: the default when it holds its
 * key, is valid now and covers the hostname, else the latest-expiring
 * valid renewal of it that does. */
struct intent_walk {
	const rec_cert *dflt;
	const char *host;
	time_t now;
	int64_t best_after;
	char hex[2 * PKI_ID_LEN + 1]; /* "" while none */
};

static bool servable(const Certsync__CertRecord *r, time_t now)
{
	return r->kind == CERTSYNC__CERT_KIND__CERT_KIND_IDENTITY && r->sealed_key.len > 0 &&
	       rec_valid_at(r, now, NULL);
}

static int intent_one(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct intent_walk *w = ctx;
	Certsync__CertRecord *r = certsync__cert_record__unpack(NULL, vlen, val);
	X509 *x = NULL;

	if (r != NULL && klen == PKI_ID_LEN && servable(r, w->now) &&
	    r->not_after > w->best_after && rec_renews(r, w->dflt->rec) &&
	    (x = pki_cert_from_der(r->der.data, r->der.len, NULL)) != NULL &&
	    pki_covers(x, w->host)) {
		w->best_after = r->not_after;
		cs_hex(key, PKI_ID_LEN, w->hex);
	}
	X509_free(x);
	certsync__cert_record__free_unpacked(r, NULL);
	return 0;
}

static int intended_id(cs_txn *txn, const struct loaded *dl, const char *host, time_t now,
                       char hex[2 * PKI_ID_LEN + 1], cs_err *err)
{
	struct intent_walk w = {.dflt = &dl->c, .host = host, .now = now};

	if (servable(dl->c.rec, now) && pki_covers(dl->leaf, host)) {
		cs_hex(dl->c.id, PKI_ID_LEN, hex);
		return 0;
	}
	if (cs_txn_foreach(txn, CS_TBL_CERTS, intent_one, &w, err) != 0)
		return -1;
	memcpy(hex, w.hex, sizeof(w.hex));
	return 0;
}

/* The ids a node must serve for its hostname and the site hostname: what
 * the operator chose (the default, or its renewal) where it covers them;
 * else, when the coverage check fails anyway, what the node's coverage
 * gate picks, as this node predicts it from its own store (the node's
 * table differs from ours only by its hostname).  dl: the default, or
 * NULL.  *prev (a reference, or NULL) is the last table built: every
 * certificate is unsealed and parsed once, not once per node; a table
 * built here replaces it. */
static json_t *expected_ids(struct cs_node *node, const cs_key *key, cs_txn *txn,
                            const struct loaded *dl, const char *hostname, tls_table **prev,
                            time_t now, cs_err *err)
{
	const char *hosts[EXPECTED_HOSTS] = {hostname, node->cfg->site_hostname};
	char ids[EXPECTED_HOSTS][2 * PKI_ID_LEN + 1] = {"", ""};
	tls_table *t = NULL;
	json_t *j = json_object();

	for (int i = 0; i < EXPECTED_HOSTS; i++) {
		const char *id = NULL;

		if (dl != NULL && intended_id(txn, dl, hosts[i], now, ids[i], err) < 0)
			goto fail;
		if (ids[i][0] != '\0') {
			id = ids[i];
		} else {
			if (t == NULL) {
				if (tls_table_load(&t, txn, key, hostname, hosts[1], *prev, now,
				                   err) < 0)
					goto fail;
				tls_table_free(*prev);
				*prev = t;
			}
			id = tls_table_served(t, hosts[i], now);
		}
		json_object_set_new(j, hosts[i], id != NULL ? json_string(id) : json_null());
	}
	return j;
fail:
	json_decref(j);
	return NULL;
}

/* Where this node's own endpoint is reached from here: its first
 * tls_listen, with a wildcard address replaced by loopback. */
static json_t *own_endpoint(const cs_config *cfg)
{
	char host[256], buf[300];
	unsigned port;

	if (cfg->ntls_listen == 0 ||
	    !cs_hostport_split(cfg->tls_listen[0], host, sizeof(host), &port, false))
		return json_null();
	if (strcmp(host, "0.0.0.0") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	else if (strcmp(host, "::") == 0)
		snprintf(host, sizeof(host), "::1");
	snprintf(buf, sizeof(buf), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
	return json_string(buf);
}

static json_t *peer_view(json_t *peers, const char *name)
{
	size_t i;
	json_t *p;

	json_array_foreach(peers, i, p)
	{
		if (strcmp(json_string_value(json_object_get(p, "name")), name) == 0)
			return p;
	}
	return NULL;
}

/* verify --cluster: its tables are built on the worker (a table of
 * thousands of certificates takes seconds to build from the store). */
struct cluster_job {
	ops_deferred d;       /* first: the job is run as one (ops_defer.c) */
	json_t *rs;           /* replication's status, read on the loop; NULL without it */
	const cs_key *key;    /* the node's when the command came (cluster rekey keeps it) */
	tls_table *prev;      /* the served table, then the last one built */
	cs_peers_snap *peers; /* the peers when the command came: the loop may replace them */
	json_t *result;
};

static void cluster_free(ops_deferred *d)
{
	struct cluster_job *j = (struct cluster_job *)d;

	json_decref(j->rs);
	cs_snap_drop((cs_snap *)j->peers);
	tls_table_free(j->prev);
	json_decref(j->result);
	free(j);
}

static int cluster_work(ops_deferred *d, const atomic_bool *stop)
{
	struct cluster_job *job = (struct cluster_job *)d;
	struct cs_node *node = d->node;
	/* on a worker: only the keys that never change while the agent runs */
	const cs_config *cfg = node->cfg;
	const cs_peers_snap *ps = job->peers;
	cs_err *err = &d->err;
	char digest[2 * CS_DIGEST_LEN + 1], hex[2 * PKI_ID_LEN + 1];
	uint8_t dg[CS_DIGEST_LEN];
	json_t *peers = json_object_get(job->rs, "peers"), *nodes = json_array(), *uncovered;
	json_t *expected, *dflt = json_null();
	time_t now = time(NULL);
	const char *hosts[HOSTS_MAX];
	size_t nhosts = cs_config_hosts_of(cfg, ps->v, ps->n, hosts, HOSTS_MAX);
	struct loaded l;
	cs_err lerr = {0};
	cs_txn *txn = NULL;
	bool has_dflt = false;
	cs_pos at;

	uncovered = json_array();
	if (cs_txn_begin(node->store, false, &txn, err) < 0)
		goto fail;
	at = cs_txn_applied(txn);
	cs_txn_digest(txn, dg);
	cs_hex(dg, CS_DIGEST_LEN, digest);
	/* No default is a finding of the check, not an error of the command. */
	if (load(txn, NULL, &l, &lerr) == 0) {
		has_dflt = true;
		cs_hex(l.c.id, PKI_ID_LEN, hex);
		dflt = json_pack("{s:s, s:s}", "id", hex, "name", l.c.rec->name);
		for (size_t i = 0; i < nhosts; i++)
			if (!pki_covers(l.leaf, hosts[i]))
				json_array_append_new(uncovered, json_string(hosts[i]));
	}
	if ((expected = expected_ids(node, job->key, txn, has_dflt ? &l : NULL, cfg->hostname,
	                             &job->prev, now, err)) == NULL)
		goto fail;
	json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:b, s:b, s:I, s:I, s:s, s:o, s:o}",
	                                       "name", cfg->name, "role", cs_role_name(cfg->role),
	                                       "hostname", cfg->hostname, "self", 1, "reachable", 1,
	                                       "epoch", (json_int_t)at.epoch, "seq",
	                                       (json_int_t)at.seq, "digest", digest, "tls_endpoint",
	                                       own_endpoint(cfg), "expected", expected));
	for (size_t i = 0; i < ps->n; i++) {
		const cs_peer *p = &ps->v[i];
		json_t *v = peer_view(peers, p->name);

		if (atomic_load(stop)) {
			cs_fail(err, CS_EIO, "the agent is stopping; run verify --cluster again");
			goto fail;
		}
		if ((expected = expected_ids(node, job->key, txn, has_dflt ? &l : NULL, p->hostname,
		                             &job->prev, now, err)) == NULL)
			goto fail;
		json_array_append_new(
		    nodes,
		    json_pack("{s:s, s:s, s:s, s:b, s:b, s:O?, s:O?, s:O?, s:s?, s:o}", "name",
		              p->name, "role", cs_role_name(p->role), "hostname", p->hostname,
		              "self", 0, "reachable", json_is_true(json_object_get(v, "reachable")),
		              "epoch", json_object_get(v, "epoch"), "seq",
		              json_object_get(v, "seq"), "digest", json_object_get(v, "digest"),
		              "tls_endpoint", p->tls_endpoint, "expected", expected));
	}
	if (has_dflt)
		unload(&l);
	cs_txn_abort(txn);
	job->result = json_pack("{s:s, s:o, s:o, s:o}", "site_hostname", cfg->site_hostname,
	                        "default", dflt, "uncovered", uncovered, "nodes", nodes);
	return job->result != NULL ? 0 : cs_fail(err, CS_EIO, "out of memory");
fail:
	if (has_dflt)
		unload(&l);
	if (txn != NULL)
		cs_txn_abort(txn);
	json_decref(nodes);
	json_decref(uncovered);
	json_decref(dflt);
	return -1;
}

static json_t *cluster_finish(ops_deferred *d, cs_err *err)
{
	struct cluster_job *j = (struct cluster_job *)d;
	json_t *result = j->result;

	(void)err;
	j->result = NULL;
	return result;
}

ops_deferred *ops_cluster_view_new(struct cs_node *node, cs_err *err)
{
	struct cluster_job *j = calloc(1, sizeof(*j));

	if (j == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	j->d = (ops_deferred){.node = node,
	                      .cmd = "verify --cluster",
	                      .work = cluster_work,
	                      .finish = cluster_finish,
	                      .free = cluster_free};
	j->rs = node->repl ? repl_status(node->repl) : NULL;
	j->peers = cs_live_peers(node->live);
	j->key = node->key;
	j->prev = node->tls ? tls_server_table(node->tls) : NULL;
	return &j->d;
}

json_t *ops_cluster_view_build(ops_deferred *d, const atomic_bool *stop, cs_err *err)
{
	if (cluster_work(d, stop) < 0) {
		*err = d->err;
		return NULL;
	}
	return cluster_finish(d, err);
}

json_t *op_verify_cluster(struct cs_node *node, json_t *args, cs_err *err)
{
	ops_deferred *d = ops_cluster_view_new(node, err);

	(void)args;
	return d != NULL ? ops_defer(d, err) : NULL;
}

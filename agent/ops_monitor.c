/* ops_monitor.c — the agent's side of the monitor: it gathers the facts
 * (the certificates this node uses, coverage of the cluster's hostnames,
 * peers, diverged changes) into a snapshot and hands it to the monitor,
 * which holds every rule about them; and the `alerts` commands.  No
 * judgement is made here. */
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "../common/hex.h"
#include "../common/log.h"
#include "acme_agent.h"
#include "node.h"
#include "ops.h"
#include "records.h"
#include "worker.h"

enum { MAX_HOSTS = 256 };

/* A certificate in use, with the strings its mon_cert points to. */
struct use {
	char id[2 * PKI_ID_LEN + 1];
	char name[128];
	char what[300];
};

struct snapshot {
	mon_facts f;
	struct use uses[3];
	mon_cert certs[3];
	mon_host hosts[MAX_HOSTS];
	mon_peer *peers;
	json_t *repl; /* owns the peers' strings */
	mon_serving *serving;
	mon_acme *acme;
	json_t *acme_text; /* owns the managed certificates' strings */
};

static void add_use(struct snapshot *s, const Certsync__CertRecord *rec, const char *id,
                    const char *what)
{
	size_t i = s->f.ncerts;

	if (i == sizeof(s->certs) / sizeof(s->certs[0]))
		return;
	snprintf(s->uses[i].id, sizeof(s->uses[i].id), "%s", id);
	snprintf(s->uses[i].name, sizeof(s->uses[i].name), "%s", rec->name);
	snprintf(s->uses[i].what, sizeof(s->uses[i].what), "%s", what);
	s->certs[i] = (mon_cert){s->uses[i].id, s->uses[i].name, s->uses[i].what,
	                         (int64_t)rec->not_before, (int64_t)rec->not_after};
	s->f.ncerts++;
}

/* The default, and what the TLS endpoint serves for the node's hostname and
 * the site hostname; the cluster's hostnames the default covers. */
static int certs_facts(struct cs_node *node, cs_txn *txn, struct snapshot *s, cs_err *err)
{
	const char *hosts[MAX_HOSTS];
	const char *own[2] = {node->cfg->hostname, node->cfg->site_hostname};
	uint8_t id[PKI_ID_LEN];
	char hex[2 * PKI_ID_LEN + 1], what[300];
	rec_cert c = {0};
	X509 *x = NULL;
	size_t nh = cs_config_hosts(node->cfg, hosts, MAX_HOSTS);
	int rc = rec_default(txn, id, err);

	if (rc < 0)
		return -1;
	if (rc == 0 && (rc = rec_cert_get(txn, CS_TBL_CERTS, id, &c, err)) < 0)
		return -1;
	if (rc == 0) {
		cs_hex(id, PKI_ID_LEN, hex);
		add_use(s, c.rec, hex, "the default certificate");
		x = pki_cert_from_der(c.rec->der.data, c.rec->der.len, NULL);
		rec_cert_clear(&c);
	}
	for (size_t i = 0; i < nh; i++)
		s->hosts[i] = (mon_host){hosts[i], x != NULL && pki_covers(x, hosts[i])};
	s->f.nhosts = nh;
	X509_free(x);
	if (node->tls == NULL)
		return 0;
	tls_table *t = tls_server_table(node->tls);

	for (int i = 0; t != NULL && i < 2; i++) {
		const char *served = tls_table_served(t, own[i], (time_t)s->f.now);

		if (served == NULL || cs_unhex(served, id, PKI_ID_LEN) < 0)
			continue;
		if ((rc = rec_cert_get(txn, CS_TBL_CERTS, id, &c, err)) < 0) {
			tls_table_free(t);
			return -1;
		}
		if (rc == 0) {
			snprintf(what, sizeof(what), "the certificate served for %s", own[i]);
			add_use(s, c.rec, served, what);
			rec_cert_clear(&c);
		}
	}
	tls_table_free(t);
	return 0;
}

/* Peers as replication reports them, and the diverged changes waiting. */
static int repl_facts(struct cs_node *node, struct snapshot *s, cs_err *err)
{
	json_t *peers, *p, *div, *d;
	size_t i;

	if (node->repl == NULL)
		return 0;
	s->repl = repl_status(node->repl);
	peers = json_object_get(s->repl, "peers");
	s->peers = calloc(json_array_size(peers) + 1, sizeof(*s->peers));
	if (s->repl == NULL || s->peers == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	json_array_foreach(peers, i, p)
	{
		json_t *lag = json_object_get(p, "lag");
		const char *refusal = json_string_value(json_object_get(p, "refusal"));

		s->peers[i] = (mon_peer){json_string_value(json_object_get(p, "name")),
		                         json_is_true(json_object_get(p, "reachable")),
		                         json_is_integer(lag) ? json_integer_value(lag) : -1,
		                         refusal != NULL, refusal};
	}
	s->f.peers = s->peers;
	s->f.npeers = json_array_size(peers);
	if ((div = ops_diverged_list(node->store, err)) == NULL)
		return -1;
	json_array_foreach(div, i, d) if (json_is_null(json_object_get(d, "applied_seq")))
	    s->f.diverged++;
	json_decref(div);
	return 0;
}

/* The managed certificates' renewals (the monitor judges them overdue or
 * stopped): one fact each, with the error that stopped it. */
static int acme_one(void *ctx, const char *name, ProtobufCMessage *m)
{
	struct snapshot *s = ctx;
	const Certsync__AcmeCert *mc = (const Certsync__AcmeCert *)m;
	bool stopped = strcmp(mc->state, REC_ACME_STATE_FAILED) == 0 ||
	               strcmp(mc->state, REC_ACME_STATE_PAUSED) == 0;
	json_t *j = json_pack("{s:s, s:s}", "name", name, "stopped",
	                      mc->last_error[0] != '\0' ? mc->last_error : mc->state);
	mon_acme *grown = realloc(s->acme, (s->f.nacme + 1) * sizeof(*s->acme));

	if (grown != NULL)
		s->acme = grown;
	if (j == NULL || grown == NULL || json_array_append_new(s->acme_text, j) < 0)
		return -1;
	s->acme[s->f.nacme++] =
	    (mon_acme){json_string_value(json_object_get(j, "name")), mc->window_end,
	               stopped ? json_string_value(json_object_get(j, "stopped")) : NULL};
	return 0;
}

static int acme_facts(cs_txn *txn, struct snapshot *s, cs_err *err)
{
	if ((s->acme_text = json_array()) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	if (rec_acme_foreach(txn, REC_ACME_CERT, &certsync__acme_cert__descriptor, acme_one, s,
	                     err) != 0)
		return err->code != CS_OK ? -1 : cs_fail(err, CS_EIO, "out of memory");
	s->f.acme = s->acme;
	return 0;
}

static void snapshot_clear(struct snapshot *s)
{
	free(s->acme);
	json_decref(s->acme_text);
	free(s->peers);
	free(s->serving);
	json_decref(s->repl);
}

void cs_node_monitor(cs_node *node)
{
	struct snapshot s = {.f = {.now = time(NULL)}};
	cs_err err = {0};
	cs_txn *txn;
	int rc = -1;

	if (node->mon == NULL)
		return;
	node->mon_pos = node->committed;
	node->mon_stale = false;
	s.f.primary = ops_leading(node) && (node->repl == NULL || !repl_starting(node->repl));
	s.f.refusing = ops_refusing(node);
	s.f.certs = s.certs;
	s.f.hosts = s.hosts;
	ops_serving_tick(node);
	s.serving = calloc(json_array_size(json_object_get(node->serving, "results")) + 1,
	                   sizeof(*s.serving));
	if (s.serving != NULL)
		s.f.nserving = ops_serving_facts(
		    node, s.serving, json_array_size(json_object_get(node->serving, "results")));
	s.f.serving = s.serving;
	if (cs_txn_begin(node->store, false, &txn, &err) == 0) {
		rc = certs_facts(node, txn, &s, &err);
		if (rc == 0)
			rc = acme_facts(txn, &s, &err);
		cs_txn_abort(txn);
	}
	if (rc == 0)
		rc = repl_facts(node, &s, &err);
	if (rc == 0 && mon_observe(node->mon, &s.f) < 0)
		rc = cs_fail(&err, CS_EIO, "out of memory");
	if (rc < 0)
		cs_error("monitor: cannot evaluate the conditions: %s", err.msg);
	snapshot_clear(&s);
}

void cs_node_monitor_changed(cs_node *node)
{
	if (node->mon_stale || !cs_pos_same(node->committed, node->mon_pos))
		cs_node_monitor(node);
}

/* Reads the secrets mc names, then runs start (mon_start or mon_retarget
 * with them); the secrets are wiped afterwards, the monitor holds copies. */
static int with_secrets(struct cs_node *node, const mon_config *mc, bool retarget, cs_err *err)
{
	char *token = NULL, *password = NULL;
	size_t len;
	int rc = 0;

	if (mc->webhook_token_file != NULL)
		rc = cs_secret_file_read("webhook_token_file", mc->webhook_token_file, false,
		                         &token, &len, err);
	if (rc == 0 && mc->smtp_password_file != NULL)
		rc = cs_secret_file_read("smtp_password_file", mc->smtp_password_file, false,
		                         &password, &len, err);
	if (rc == 0 && retarget)
		rc = mon_retarget(node->mon, mc, &(mon_secrets){token, password}, err);
	else if (rc == 0)
		rc = mon_start(&node->mon, mc, &(mon_secrets){token, password}, node->cfg->name,
		               err);
	if (token != NULL)
		cs_secret_free(token);
	if (password != NULL)
		cs_secret_free(password);
	return rc;
}

int ops_monitor_start(struct cs_node *node, cs_err *err)
{
	return with_secrets(node, &node->cfg->alerts, false, err);
}

int ops_monitor_retarget(struct cs_node *node, const mon_config *mc, cs_err *err)
{
	return with_secrets(node, mc, true, err);
}

/* The identity certificates, read straight from their records (no chain
 * is built): for /metrics with times in Unix seconds, whether it holds its
 * key and, for a managed certificate's current one, when it is due for
 * renewal (mon_metrics_certificates); for the page as `cert list` shows
 * them (names covered, issuer, key type, RFC 3339 times).  Any thread. */
struct cert_walk {
	const uint8_t *default_id;
	bool page;
	json_t *renewals; /* for /metrics: acme_renewal_times */
	json_t *out;
};

static int walk_cert(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct cert_walk *w = ctx;
	Certsync__CertRecord *rec;
	char hex[2 * PKI_ID_LEN + 1], nb[32], na[32];
	bool is_default = w->default_id != NULL && memcmp(w->default_id, key, PKI_ID_LEN) == 0;
	json_t *c, *sans;

	if (klen != PKI_ID_LEN || (rec = certsync__cert_record__unpack(NULL, vlen, val)) == NULL)
		return 0; /* status and cert list name a record that does not decode */
	cs_hex(key, PKI_ID_LEN, hex);
	if (!w->page) {
		c = json_pack("{s:s, s:s, s:I, s:I, s:b, s:b}", "id", hex, "name", rec->name,
		              "not_before", (json_int_t)rec->not_before, "not_after",
		              (json_int_t)rec->not_after, "default", is_default, "has_key",
		              rec->sealed_key.len > 0);
		if (c != NULL && json_object_get(w->renewals, hex) != NULL)
			json_object_set(c, "renewal", json_object_get(w->renewals, hex));
	} else {
		sans = json_array();
		for (size_t i = 0; i < rec->n_sans; i++)
			json_array_append_new(sans, json_string(rec->sans[i]));
		cs_iso_time((time_t)rec->not_before, nb);
		cs_iso_time((time_t)rec->not_after, na);
		c = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:b, s:b}", "id", hex,
		              "name", rec->name, "kind", "identity", "sans", sans, "issuer",
		              rec->issuer, "not_before", nb, "not_after", na, "key_type",
		              rec->key_type, "has_key", rec->sealed_key.len > 0, "default",
		              is_default);
	}
	json_array_append_new(w->out, c);
	certsync__cert_record__free_unpacked(rec, NULL);
	return 0;
}

static json_t *walk_certs(struct cs_node *node, bool page, cs_pos *pos)
{
	uint8_t def[PKI_ID_LEN];
	struct cert_walk w = {.page = page, .out = json_array()};
	cs_txn *txn;
	cs_err err = {0};
	int rc;

	if (cs_txn_begin(node->store, false, &txn, &err) < 0) {
		cs_error("admin listener: %s", err.msg);
		json_decref(w.out);
		return NULL;
	}
	*pos = cs_txn_applied(txn);
	rc = rec_default(txn, def, &err);
	w.default_id = rc == 0 ? def : NULL;
	if (rc >= 0 && !page && (w.renewals = acme_renewal_times(txn, &err)) == NULL)
		rc = -1;
	if (rc >= 0)
		rc = cs_txn_foreach(txn, CS_TBL_CERTS, walk_cert, &w, &err);
	cs_txn_abort(txn);
	json_decref(w.renewals);
	if (rc < 0) {
		cs_error("admin listener: %s", err.msg);
		json_decref(w.out);
		return NULL;
	}
	return w.out;
}

/* Where the store stands now, replicated changes included ({0, 0} when
 * it cannot be read: a generation no certificates have). */
static cs_pos node_position(struct cs_node *node)
{
	cs_pos pos = {0};
	cs_txn *txn;
	cs_err err;

	if (cs_txn_begin(node->store, false, &txn, &err) == 0) {
		pos = cs_txn_applied(txn);
		cs_txn_abort(txn);
	}
	return pos;
}

static json_t *position_json(cs_pos pos)
{
	return json_pack("{s:I, s:I}", "epoch", (json_int_t)pos.epoch, "seq", (json_int_t)pos.seq);
}

/* The node's facts for /metrics, besides its certificates (mon_facts_json_fn). */
static json_t *metrics_facts(void *ctx)
{
	struct cs_node *node = ctx;
	json_t *j = json_pack("{s:o}", "position", position_json(node_position(node)));

	if (j != NULL && node->tls != NULL)
		json_object_set_new(j, "tls", tls_server_status(node->tls));
	if (j != NULL && node->repl != NULL)
		json_object_set_new(j, "replication", repl_status(node->repl));
	if (j != NULL && node->serving != NULL)
		json_object_set(j, "serving", node->serving);
	if (j != NULL)
		json_object_set_new(j, "acme", acme_request_stats());
	return j;
}

/* The certificates for /metrics and their generation: the store's position
 * when they were read. */
static json_t *metrics_certs(void *ctx)
{
	cs_pos pos;
	json_t *certs = walk_certs(ctx, false, &pos);

	return certs != NULL ? json_pack("{s:o, s:o}", "generation", position_json(pos),
	                                 "certificates", certs)
	                     : NULL;
}

static json_t *metrics_generation(void *ctx)
{
	return position_json(node_position(ctx));
}

/* status --json, the identity certificates and what each node served at the
 * primary's last check, for /status.json and the page. */
static json_t *page_facts(void *ctx)
{
	cs_err err = {0};
	cs_pos pos;
	json_t *st = cs_node_handle(ctx, "status", NULL, &err), *certs;

	if (st == NULL) {
		cs_error("status page: %s", err.msg);
		return NULL;
	}
	if ((certs = walk_certs(ctx, true, &pos)) == NULL) {
		json_decref(st);
		return NULL;
	}
	json_object_set_new(st, "certificates", certs);
	json_object_set_new(st, "serving", ops_serving_status(ctx));
	return st;
}

/* The admin listener's renders run on a thread of their own: never behind
 * a probe that waits for an endpoint. */
static int offload(void *ctx, void (*work)(void *arg, const atomic_bool *stop),
                   void (*done)(void *arg, bool cancelled), void *arg)
{
	struct cs_node *node = ctx;

	return node->admin_worker != NULL ? cs_worker_submit(node->admin_worker, work, done, arg)
	                                  : -1;
}

void cs_node_set_mon_worker(cs_node *node, struct cs_worker *probes, struct cs_worker *renders)
{
	node->mon_worker = probes;
	node->admin_worker = renders;
}

int cs_node_admin_start(cs_node *node, struct event_base *base, mon_admin **out, cs_err *err)
{
	const cs_config *cfg = node->cfg;
	char *token = NULL;
	size_t len;
	int rc;

	*out = NULL;
	if (cfg->admin_listen == NULL)
		return 0;
	if (cfg->admin_token_file != NULL &&
	    cs_secret_file_read("admin_token_file", cfg->admin_token_file, false, &token, &len,
	                        err) < 0)
		return -1;
	rc = mon_admin_start(out, base, cfg->admin_listen, token, node->mon,
	                     &(mon_admin_source){.metrics = metrics_facts,
	                                         .certificates = metrics_certs,
	                                         .generation = metrics_generation,
	                                         .offload = offload,
	                                         .status = page_facts,
	                                         .ctx = node},
	                     err);
	if (token != NULL)
		cs_secret_free(token);
	return rc;
}

json_t *ops_monitor_status(struct cs_node *node)
{
	return node->mon != NULL ? mon_status(node->mon) : json_null();
}

json_t *op_alerts(struct cs_node *node, json_t *args, cs_err *err)
{
	(void)args;
	(void)err;
	cs_node_monitor(node); /* what is active now, not at the last tick */
	return ops_monitor_status(node);
}

json_t *op_alerts_test(struct cs_node *node, json_t *args, cs_err *err)
{
	size_t n;

	(void)args;
	(void)err;
	n = mon_send_test(node->mon, (int64_t)time(NULL));
	return json_pack("{s:I}", "targets", (json_int_t)n);
}

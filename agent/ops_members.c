/* ops_members.c — the membership commands: `cluster nodes` lists the
 * members with each one's state, `cluster add-node` and `cluster
 * remove-node` change the replicated membership on the primary (the
 * command line writes the new node's folder; see cli_members.c).  Every
 * node follows the change through members.c. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zmq.h>

#include "cluster_init.h"
#include "members.h"
#include "ops.h"
#include "records.h"

static json_t *member_json(const rec_member *x)
{
	char z85[REPL_Z85_LEN + 1];

	zmq_z85_encode(z85, x->key, REC_MEMBER_KEY_LEN);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "name", x->name, "role", x->role,
	                 "hostname", x->hostname, "repl_endpoint", x->repl_endpoint, "tls_endpoint",
	                 x->tls_endpoint, "public_key", z85);
}

/* The membership in txn; the configuration's when the store has none yet
 * (a cluster older than the record, before its primary seeded it). */
static int current(struct cs_node *node, cs_txn *txn, rec_members *m, bool *stored, cs_err *err)
{
	int rc;

	if (node->repl == NULL)
		return cs_fail(err, CS_EREFUSED,
		               "%s has no replication configured (repl_listen), so no cluster "
		               "membership",
		               node->cfg->name);
	rc = rec_members_get(txn, m, err);
	*stored = rc == 0;
	if (rc == 1)
		rc = members_from_config(node->cfg, m, err);
	return rc;
}

/* The peer's entry in the replication's status, or NULL. */
static json_t *peer_status(json_t *peers, const char *name)
{
	json_t *p;
	size_t i;

	json_array_foreach(peers, i, p)
	{
		if (strcmp(json_string_value(json_object_get(p, "name")), name) == 0)
			return p;
	}
	return NULL;
}

json_t *op_cluster_nodes(struct cs_node *node, json_t *args, cs_err *err)
{
	rec_members *m = malloc(sizeof(*m));
	json_t *rs = node->repl ? repl_status(node->repl) : NULL, *list = json_array();
	json_t *peers = json_object_get(rs, "peers");
	bool stored = false;
	cs_txn *txn = NULL;
	cs_pos at = {0, 0};
	int rc = -1;

	(void)args;
	if (m == NULL)
		cs_fail(err, CS_EIO, "out of memory");
	else if (cs_txn_begin(node->store, false, &txn, err) == 0) {
		rc = current(node, txn, m, &stored, err);
		at = cs_txn_applied(txn);
		cs_txn_abort(txn);
	}
	for (size_t i = 0; rc == 0 && i < m->n; i++) {
		json_t *j = member_json(&m->v[i]);
		json_t *p = peer_status(peers, m->v[i].name);
		bool self = strcmp(m->v[i].name, node->cfg->name) == 0;
		const char *state = self                                            ? "self"
		                    : json_is_true(json_object_get(p, "reachable")) ? "up"
		                                                                    : "down";

		json_object_set_new(j, "self", json_boolean(self));
		json_object_set_new(j, "state", json_string(state));
		json_object_set_new(j, "seq",
		                    self ? json_integer((json_int_t)at.seq)
		                         : json_incref(json_object_get(p, "seq")));
		json_object_set_new(j, "lag", json_incref(json_object_get(p, "lag")));
		json_array_append_new(list, j);
	}
	free(m);
	json_decref(rs);
	if (rc != 0) {
		json_decref(list);
		return NULL;
	}
	return json_pack("{s:s, s:o}", "source", stored ? "store" : "configuration", "nodes", list);
}

/* What of x node o already has ("name", "hostname", ...), or NULL. */
static const char *shared(const rec_member *o, const rec_member *x, const char **value)
{
	*value = NULL;
	if (strcmp(o->name, x->name) == 0)
		return *value = x->name, "name";
	if (strcasecmp(o->hostname, x->hostname) == 0)
		return *value = x->hostname, "hostname";
	if (strcmp(o->repl_endpoint, x->repl_endpoint) == 0)
		return *value = x->repl_endpoint, "replication endpoint";
	if (strcmp(o->tls_endpoint, x->tls_endpoint) == 0)
		return *value = x->tls_endpoint, "TLS endpoint";
	if (memcmp(o->key, x->key, REC_MEMBER_KEY_LEN) == 0)
		return *value = "given", "CURVE key";
	return NULL;
}

/* The new member must share nothing with the others: a name, hostname,
 * endpoint or key already there would make two nodes one. */
static int check_unique(const rec_members *m, const rec_member *x, cs_err *err)
{
	const char *what, *value;

	for (size_t i = 0; i < m->n; i++)
		if ((what = shared(&m->v[i], x, &value)) != NULL)
			return cs_fail(
			    err, CS_EEXIST,
			    "add-node refused: node %s already has the %s %s; every node "
			    "needs its own (`certsync cluster nodes` lists them)",
			    m->v[i].name, what, value);
	return 0;
}

/* The hostnames of the new node the default certificate does not cover. */
static json_t *uncovered(cs_txn *txn, const char *hostname)
{
	uint8_t id[PKI_ID_LEN];
	json_t *a = json_array();
	rec_cert c = {0};
	cs_err err;
	X509 *x = NULL;

	if (rec_default(txn, id, &err) == 0 && rec_cert_get(txn, CS_TBL_CERTS, id, &c, &err) == 0)
		x = pki_cert_from_der(c.rec->der.data, c.rec->der.len, &err);
	if (x != NULL && !pki_covers(x, hostname))
		json_array_append_new(a, json_string(hostname));
	X509_free(x);
	if (c.rec != NULL)
		rec_cert_clear(&c);
	return a;
}

/* Reads args.node (NAME=ROLE,HOSTNAME,REPL_ENDPOINT,TLS_LISTEN, checked as
 * `cluster init` checks a --node) and args.public_key into x. */
static int parse_new(json_t *args, rec_member *x, cs_err *err)
{
	const char *spec, *key;
	cs_cluster_node n;

	if (ops_arg_string(args, "node", true, &spec, err) < 0 ||
	    ops_arg_string(args, "public_key", true, &key, err) < 0 ||
	    cs_cluster_joiner_parse(spec, &n, err) < 0)
		return -1;
	memset(x, 0, sizeof(*x));
	if (repl_key_parse(key, x->key, err) < 0)
		return -1;
	snprintf(x->name, sizeof(x->name), "%s", n.name);
	snprintf(x->role, sizeof(x->role), "%s", cs_role_name(n.role));
	snprintf(x->hostname, sizeof(x->hostname), "%s", n.hostname);
	snprintf(x->repl_endpoint, sizeof(x->repl_endpoint), "%s", n.repl_endpoint);
	snprintf(x->tls_endpoint, sizeof(x->tls_endpoint), "%s", n.tls_endpoint);
	return 0;
}

/* The membership after fn changed it, committed as one change. */
static json_t *change(struct cs_node *node, json_t *args,
                      json_t *(*fn)(struct cs_node *, json_t *, rec_members *, cs_txn *, char *,
                                    size_t, cs_err *),
                      cs_err *err)
{
	rec_members *m = malloc(sizeof(*m));
	json_t *result = NULL, *list;
	char summary[160];
	bool stored;
	cs_txn *txn;

	if (m == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	if (cs_txn_begin(node->store, true, &txn, err) < 0) {
		free(m);
		return NULL;
	}
	if (current(node, txn, m, &stored, err) < 0 ||
	    (result = fn(node, args, m, txn, summary, sizeof(summary), err)) == NULL ||
	    rec_members_put(txn, m, err) < 0) {
		json_decref(result);
		cs_txn_abort(txn);
		free(m);
		return NULL;
	}
	list = json_array();
	for (size_t i = 0; i < m->n; i++)
		json_array_append_new(list, member_json(&m->v[i]));
	json_object_set_new(result, "nodes", list);
	json_object_set_new(result, "site_hostname", json_string(node->cfg->site_hostname));
	free(m);
	if (ops_commit(node, txn, summary, err) < 0) {
		json_decref(result);
		return NULL;
	}
	return result;
}

static json_t *add(struct cs_node *node, json_t *args, rec_members *m, cs_txn *txn, char *summary,
                   size_t len, cs_err *err)
{
	rec_member *x = &m->v[m->n];

	(void)node;
	if (m->n == REC_MEMBERS_MAX) {
		cs_fail(err, CS_EREFUSED, "add-node refused: a cluster has at most %d nodes",
		        REC_MEMBERS_MAX);
		return NULL;
	}
	if (parse_new(args, x, err) < 0 || check_unique(m, x, err) < 0)
		return NULL;
	m->n++;
	snprintf(summary, len, "add-node %s (%s, %s)", x->name, x->role, x->hostname);
	return json_pack("{s:o, s:o}", "added", member_json(x), "uncovered",
	                 uncovered(txn, x->hostname));
}

static json_t *remove_one(struct cs_node *node, json_t *args, rec_members *m, cs_txn *txn,
                          char *summary, size_t len, cs_err *err)
{
	const char *name;
	size_t at = m->n, capable = 0;

	(void)txn;
	/* the command line sends the node's name as a command's ID */
	if (ops_arg_string(args, "id", true, &name, err) < 0)
		return NULL;
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->v[i].name, name) == 0)
			at = i;
		else if (strcmp(m->v[i].role, "traffic") != 0 &&
		         strcmp(m->v[i].name, node->cfg->name) != 0)
			capable++;
	}
	if (at == m->n) {
		cs_fail(err, CS_ENOTFOUND,
		        "remove-node: %s is not a member of the cluster; `certsync cluster nodes` "
		        "lists them",
		        name);
		return NULL;
	}
	if (strcmp(name, node->cfg->name) == 0) {
		cs_fail(err, CS_EREFUSED,
		        "remove-node refused: %s is the primary, the node this command runs on; "
		        "promote another node first and remove %s there",
		        name, name);
		return NULL;
	}
	if (strcmp(m->v[at].role, "traffic") != 0 && capable == 0) {
		cs_fail(err, CS_EREFUSED,
		        "remove-node refused: %s is the cluster's last backup, and without one "
		        "no node can take over from the primary; add another backup first "
		        "(`certsync cluster add-node NAME=backup,...`)",
		        name);
		return NULL;
	}
	snprintf(summary, len, "remove-node %s (%s, %s)", name, m->v[at].role, m->v[at].hostname);
	memmove(&m->v[at], &m->v[at + 1], (m->n - at - 1) * sizeof(m->v[0]));
	m->n--;
	return json_pack("{s:s}", "removed", name);
}

json_t *op_cluster_add_node(struct cs_node *node, json_t *args, cs_err *err)
{
	return change(node, args, add, err);
}

json_t *op_cluster_remove_node(struct cs_node *node, json_t *args, cs_err *err)
{
	return change(node, args, remove_one, err);
}

/* ops_serving.c — the primary's check of what every node serves: every
 * [alerts] serving_check seconds it asks itself what verify --cluster asks
 * (ops_cluster_view: each node's TLS endpoint and the ids its store says
 * it serves), builds that and probes each endpoint on the monitor worker's thread with the same
 * check verify --cluster runs (tls_check.h), and keeps the results: facts
 * for the monitor (a node serving something else is an error alert) and
 * what the status page shows per node.  A node behind the primary is not
 * compared (it may serve an older choice; its lag is a condition of its
 * own), and a node not heard from is not faulted for not answering. */
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "../common/hex.h"
#include "../common/log.h"
#include "node.h"
#include "ops.h"
#include "records.h"
#include "tls_check.h"
#include "worker.h"

struct check {
	struct cs_node *node;
	ops_deferred *view; /* taken on the loop, built on the worker */
	json_t *cluster;    /* the view: verify --cluster's answer */
	json_t *results;    /* [{node, host, endpoint, status, served, expected, detail}] */
};

static const char *const status_names[] = {
    [CS_TLS_SERVES_EXPECTED] = "ok",
    [CS_TLS_SERVES_OTHER] = "other",
    [CS_TLS_NO_ANSWER] = "no answer",
    [CS_TLS_UNKNOWN] = "unknown",
};

static bool same_position(json_t *a, json_t *b)
{
	json_t *ae = json_object_get(a, "epoch"), *as = json_object_get(a, "seq");

	return json_is_integer(ae) && json_is_integer(as) &&
	       json_equal(ae, json_object_get(b, "epoch")) &&
	       json_equal(as, json_object_get(b, "seq"));
}

/* On the monitor worker's thread: touches only the check. */
static void check_work(void *arg, const atomic_bool *stop)
{
	struct check *c = arg;
	json_t *nodes, *self, *n;
	const char *site;
	cs_err err = {0};
	size_t i;

	if ((c->cluster = ops_cluster_view_build(c->view, stop, &err)) == NULL) {
		cs_error("monitor: cannot check what the nodes serve: %s", err.msg);
		return;
	}
	nodes = json_object_get(c->cluster, "nodes");
	self = json_array_get(nodes, 0);
	site = json_string_value(json_object_get(c->cluster, "site_hostname"));

	json_array_foreach(nodes, i, n)
	{
		const char *hosts[2] = {json_string_value(json_object_get(n, "hostname")), site};
		bool heard = json_is_true(json_object_get(n, "reachable"));

		for (int h = 0; h < 2 && !atomic_load(stop); h++) {
			cs_tls_check r = {.outcome = CS_TLS_UNKNOWN};
			const char *status;

			if (hosts[h] == NULL)
				continue;
			if (n != self && !same_position(n, self)) {
				status = "behind";
				snprintf(r.detail, sizeof(r.detail),
				         "not compared: the node is not at the primary's position");
			} else {
				cs_tls_check_node(n, hosts[h], &r);
				status = r.outcome == CS_TLS_NO_ANSWER && !heard
				             ? "not heard"
				             : status_names[r.outcome];
			}
			json_array_append_new(
			    c->results,
			    json_pack("{s:s, s:s, s:O?, s:s, s:s?, s:O?, s:s}", "node",
			              json_string_value(json_object_get(n, "name")), "host",
			              hosts[h], "endpoint", json_object_get(n, "tls_endpoint"),
			              "status", status, "served", r.served[0] ? r.served : NULL,
			              "expected",
			              json_object_get(json_object_get(n, "expected"), hosts[h]),
			              "detail", r.detail));
		}
	}
}

/* The name the store gives id, or NULL. */
static json_t *cert_name(cs_txn *txn, const char *id)
{
	uint8_t raw[PKI_ID_LEN];
	rec_cert rc = {0};
	cs_err err;
	json_t *name = NULL;

	if (id == NULL || cs_unhex(id, raw, PKI_ID_LEN) < 0 ||
	    rec_cert_get(txn, CS_TBL_CERTS, raw, &rc, &err) != 0)
		return NULL;
	name = json_string(rc.rec->name);
	rec_cert_clear(&rc);
	return name;
}

/* On the loop: names the certificates from the store and keeps the results. */
static void check_done(void *arg, bool cancelled)
{
	struct check *c = arg;
	struct cs_node *node = c->node;
	json_t *r;
	cs_txn *txn;
	cs_err err;
	size_t i;

	node->serving_busy = false;
	if (!cancelled && ops_leading(node) && cs_txn_begin(node->store, false, &txn, &err) == 0) {
		json_array_foreach(c->results, i, r)
		{
			const char *keys[2] = {"served", "expected"};

			for (int k = 0; k < 2; k++) {
				json_t *name =
				    cert_name(txn, json_string_value(json_object_get(r, keys[k])));

				if (name != NULL)
					json_object_set_new(
					    r, k == 0 ? "served_name" : "expected_name", name);
			}
		}
		cs_txn_abort(txn);
		json_decref(node->serving);
		node->serving = json_pack("{s:I, s:O}", "checked",
		                          (json_int_t)node->serving_started, "results", c->results);
		node->mon_stale = true; /* evaluated after this pass */
	}
	c->view->free(c->view);
	json_decref(c->cluster);
	json_decref(c->results);
	free(c);
}

void ops_serving_tick(struct cs_node *node)
{
	time_t now = time(NULL);
	struct check *c;
	cs_err err = {0};

	if (!ops_leading(node)) {
		json_decref(node->serving);
		node->serving = NULL;
		return;
	}
	if (node->mon_worker == NULL || node->serving_busy ||
	    (node->serving_started != 0 &&
	     now - node->serving_started < node->cfg->alerts.serving_check_s))
		return;
	node->serving_started = now;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->node = node;
	c->results = json_array();
	if ((c->view = ops_cluster_view_new(node, &err)) == NULL)
		cs_error("monitor: cannot check what the nodes serve: %s", err.msg);
	if (c->view == NULL || c->results == NULL ||
	    cs_worker_submit(node->mon_worker, check_work, check_done, c) < 0) {
		if (c->view != NULL)
			c->view->free(c->view);
		json_decref(c->results);
		free(c);
		return;
	}
	node->serving_busy = true;
}

size_t ops_serving_facts(struct cs_node *node, mon_serving *out, size_t max)
{
	json_t *r;
	size_t i, n = 0;

	json_array_foreach(json_object_get(node->serving, "results"), i, r)
	{
		const char *status = json_string_value(json_object_get(r, "status"));

		if (n == max || (strcmp(status, "ok") != 0 && strcmp(status, "other") != 0 &&
		                 strcmp(status, "no answer") != 0))
			continue;
		out[n++] = (mon_serving){
		    json_string_value(json_object_get(r, "node")),
		    json_string_value(json_object_get(r, "host")),
		    json_string_value(json_object_get(r, "endpoint")),
		    json_string_value(json_object_get(r, "served")),
		    json_string_value(json_object_get(r, "expected")),
		    json_string_value(json_object_get(r, "expected_name")),
		    strcmp(status, "no answer") == 0
		        ? json_string_value(json_object_get(r, "detail"))
		        : NULL,
		};
	}
	return n;
}

json_t *ops_serving_status(struct cs_node *node)
{
	char when[CS_ISO_TIME_LEN];
	json_t *j;

	if (node->serving == NULL)
		return json_null();
	j = json_deep_copy(node->serving);
	cs_iso_time((int64_t)json_integer_value(json_object_get(j, "checked")), when);
	json_object_set_new(j, "checked", json_string(when));
	return j;
}

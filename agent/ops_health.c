/* ops_health.c — whether this node does its job, for `status --check` (the
 * docker healthcheck) and /healthz: it serves a valid certificate that
 * covers its hostname and the site hostname, its default certificate has not
 * expired, it does not refuse the cluster passphrase, and no alert of error
 * severity is active. */
#include <string.h>

#include "../common/hex.h"
#include "ops.h"
#include "records.h"

bool ops_refusing(void *ctx)
{
	struct cs_node *node = ctx;

	return node->repl != NULL && repl_refusing(node->repl);
}

static void problem(json_t *problems, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(json_t *problems, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	json_array_append_new(problems, json_string(text));
}

/* The default certificate: chosen, held with its key, not expired; without
 * a TLS endpoint, also covering both hostnames (what it would serve). */
static int check_default(struct cs_node *node, cs_txn *txn, const char *const hosts[2], time_t now,
                         json_t *problems, cs_err *err)
{
	uint8_t id[PKI_ID_LEN];
	rec_cert c = {0};
	char sid[9], why[48];
	X509 *x;
	int rc = rec_default(txn, id, err);

	if (rc != 0) {
		if (rc > 0)
			problem(problems, "no default certificate is chosen; choose one with "
			                  "`certsync cert default ID`");
		return rc < 0 ? -1 : 0;
	}
	if ((rc = rec_cert_get(txn, CS_TBL_CERTS, id, &c, err)) != 0)
		return rc < 0 ? -1 : 0;
	rec_short_id(id, sid);
	if (!rec_valid_at(c.rec, now, why) && now >= (time_t)c.rec->not_after)
		problem(problems, "the default certificate %s (%s) %s; import its renewal", sid,
		        c.rec->name, why);
	if (node->tls == NULL &&
	    (x = pki_cert_from_der(c.rec->der.data, c.rec->der.len, NULL)) != NULL) {
		for (int i = 0; i < 2; i++)
			if (!pki_covers(x, hosts[i]))
				problem(problems,
				        "the default certificate %s (%s) does not cover %s", sid,
				        c.rec->name, hosts[i]);
		X509_free(x);
	}
	rec_cert_clear(&c);
	return 0;
}

/* Every alert of error severity the monitor has sent and not recovered:
 * the node's error state. */
static void alert_problems(struct cs_node *node, json_t *problems)
{
	json_t *st = ops_monitor_status(node), *a;
	size_t i;

	json_array_foreach(json_object_get(st, "active"), i, a)
	{
		if (strcmp(json_string_value(json_object_get(a, "severity")), "error") == 0)
			problem(problems, "alert: %s",
			        json_string_value(json_object_get(a, "text")));
	}
	json_decref(st);
}

json_t *ops_health(struct cs_node *node, cs_txn *txn, cs_err *err)
{
	const char *hosts[2] = {node->cfg->hostname, node->cfg->site_hostname};
	json_t *problems = json_array();
	time_t now = time(NULL);

	if (ops_refusing(node))
		problem(problems,
		        "it refuses the cluster: the cluster passphrase does not match the "
		        "primary's (see replication.refusal)");
	if (node->key == NULL)
		problem(problems,
		        "it has no cluster key yet: the cluster settings have not reached it");
	if (check_default(node, txn, hosts, now, problems, err) < 0) {
		json_decref(problems);
		return NULL;
	}
	if (node->tls != NULL) {
		tls_table *t = tls_server_table(node->tls);

		for (int i = 0; i < 2; i++)
			if (t == NULL || tls_table_served(t, hosts[i], now) == NULL)
				problem(problems, "it serves no valid certificate for %s",
				        hosts[i]);
		if (t != NULL && json_array_size(problems) == 0 && !tls_server_healthy(node->tls))
			problem(problems,
			        "clients without SNI get no valid certificate covering %s and %s",
			        hosts[0], hosts[1]);
		tls_table_free(t);
	}
	alert_problems(node, problems);
	return json_pack("{s:b, s:o}", "ok", json_array_size(problems) == 0, "problems", problems);
}

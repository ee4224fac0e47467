/* metrics.c — the Prometheus text exposition of what a node knows.
 * Certificate metrics follow cert-manager's names with the certsync_
 * prefix, so its dashboards and alert rules carry over; the rest are the
 * TLS endpoint's, replication's and the alerts' own counters.  Only ids,
 * names, times and counts appear: never a key, a token or a passphrase. */
#include <stdint.h>
#include <string.h>

#include "monitor_int.h"

static void help(FILE *f, const char *name, const char *type, const char *text)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* A label value as the text format wants it: \\, \" and \n escaped.  Runs
 * without them are written whole: at 10,000 certificates this is most of
 * what /metrics costs. */
static void label_value(FILE *f, const char *s)
{
	fputc('"', f);
	while (s != NULL && *s) {
		size_t n = strcspn(s, "\\\"\n");

		fwrite(s, 1, n, f);
		s += n;
		if (*s == '\n')
			fputs("\\n", f);
		else if (*s)
			fprintf(f, "\\%c", *s);
		if (*s)
			s++;
	}
	fputc('"', f);
}

static void cert_labels(FILE *f, const json_t *c)
{
	fputs("{id=", f);
	label_value(f, json_string_value(json_object_get(c, "id")));
	fputs(",name=", f);
	label_value(f, json_string_value(json_object_get(c, "name")));
	if (json_is_true(json_object_get(c, "default")))
		fputs(",default=\"true\"", f);
}

static json_int_t num(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* The next time after now at which not_before or not_after of c is. */
static int64_t next_change(const json_t *c, int64_t now, int64_t next)
{
	int64_t nb = num(c, "not_before"), na = num(c, "not_after");

	if (nb > now && nb < next)
		next = nb;
	if (na > now && na < next)
		next = na;
	return next;
}

int64_t mon_metrics_certificates(FILE *f, const json_t *certs, int64_t now)
{
	static const struct {
		const char *name, *field, *text;
	} times[] = {
	    {"certsync_certificate_expiration_timestamp_seconds", "not_after",
	     "The date after which the certificate expires, as a Unix timestamp."},
	    {"certsync_certificate_not_before_timestamp_seconds", "not_before",
	     "The date before which the certificate is not valid, as a Unix timestamp."},
	};
	const json_t *c;
	size_t i;
	int64_t next = INT64_MAX;

	for (size_t t = 0; t < sizeof(times) / sizeof(times[0]); t++) {
		help(f, times[t].name, "gauge", times[t].text);
		json_array_foreach(certs, i, c)
		{
			fputs(times[t].name, f);
			cert_labels(f, c);
			fprintf(f, "} %lld\n", (long long)num(c, times[t].field));
		}
	}
	help(f, "certsync_certificate_renewal_timestamp_seconds", "gauge",
	     "The date at which a managed (ACME) certificate is due for renewal, as a Unix "
	     "timestamp.");
	json_array_foreach(certs, i, c)
	{
		if (!json_is_integer(json_object_get(c, "renewal")))
			continue;
		fputs("certsync_certificate_renewal_timestamp_seconds", f);
		cert_labels(f, c);
		fprintf(f, "} %lld\n", (long long)num(c, "renewal"));
	}
	help(f, "certsync_certificate_ready_status", "gauge",
	     "The ready status of the certificate: it holds its key and is valid now.");
	json_array_foreach(certs, i, c)
	{
		bool ready = json_is_true(json_object_get(c, "has_key")) &&
		             now >= num(c, "not_before") && now < num(c, "not_after");

		next = next_change(c, now, next);
		for (int cond = 0; cond < 2; cond++) {
			fputs("certsync_certificate_ready_status", f);
			cert_labels(f, c);
			fprintf(f, ",condition=\"%s\"} %d\n", cond ? "False" : "True",
			        cond ? !ready : ready);
		}
	}
	return next;
}

static void tls(FILE *f, const json_t *t)
{
	const json_t *hs = json_object_get(t, "handshakes"),
	             *conn = json_object_get(t, "connections"),
	             *rel = json_object_get(t, "reloads");

	if (t == NULL)
		return;
	help(f, "certsync_tls_handshakes_total", "counter", "TLS handshakes by result.");
	fprintf(f, "certsync_tls_handshakes_total{result=\"done\"} %lld\n",
	        (long long)num(hs, "done"));
	fprintf(f, "certsync_tls_handshakes_total{result=\"failed\"} %lld\n",
	        (long long)num(hs, "failed"));
	help(f, "certsync_tls_connections_open", "gauge", "TLS connections open now.");
	fprintf(f, "certsync_tls_connections_open %lld\n", (long long)num(conn, "open"));
	help(f, "certsync_tls_connections_refused_total", "counter",
	     "Connections closed at accept because tls_max_connections were open.");
	fprintf(f, "certsync_tls_connections_refused_total %lld\n",
	        (long long)num(conn, "refused"));
	help(f, "certsync_tls_table_reloads_total", "counter",
	     "Selection tables built and swapped in.");
	fprintf(f, "certsync_tls_table_reloads_total %lld\n", (long long)num(rel, "count"));
	help(f, "certsync_tls_table_reload_last_duration_seconds", "gauge",
	     "How long the last selection table build took.");
	fprintf(f, "certsync_tls_table_reload_last_duration_seconds %.6f\n",
	        json_number_value(json_object_get(rel, "last_ms")) / 1000.0);
}

/* One gauge per peer that reports field (divided by scale). */
static void peer_gauge(FILE *f, const json_t *peers, const char *name, const char *text,
                       const char *field, int scale)
{
	const json_t *p;
	size_t i;

	help(f, name, "gauge", text);
	json_array_foreach(peers, i, p)
	{
		if (!json_is_integer(json_object_get(p, field)))
			continue;
		fprintf(f, "%s{peer=", name);
		label_value(f, json_string_value(json_object_get(p, "name")));
		fprintf(f, "} %g\n", (double)num(p, field) / scale);
	}
}

static void replication(FILE *f, const json_t *pos, const json_t *r)
{
	const json_t *v;
	const char *k;

	help(f, "certsync_replication_applied_seq", "gauge",
	     "The position (seq) of the last change this node applied.");
	fprintf(f, "certsync_replication_applied_seq %lld\n", (long long)num(pos, "seq"));
	help(f, "certsync_replication_applied_epoch", "gauge",
	     "The epoch of the last change this node applied.");
	fprintf(f, "certsync_replication_applied_epoch %lld\n", (long long)num(pos, "epoch"));
	if (r == NULL)
		return;
	peer_gauge(f, json_object_get(r, "peers"), "certsync_replication_peer_lag_entries",
	           "Changes a peer is behind the primary (as this node knows).", "lag", 1);
	peer_gauge(
	    f, json_object_get(r, "peers"), "certsync_replication_peer_last_heard_age_seconds",
	    "Seconds since this node last heard from a peer directly.", "last_heard_ms", 1000);
	help(f, "certsync_replication_dropped_messages_total", "counter",
	     "Replication messages dropped, by reason.");
	json_object_foreach((json_t *)json_object_get(r, "dropped"), k, v)
	    fprintf(f, "certsync_replication_dropped_messages_total{reason=\"%s\"} %lld\n", k,
	            (long long)json_integer_value(v));
}

/* The primary's last check of what each node serves: 1 when a node serves
 * what its store says, 0 when it serves another certificate or does not
 * answer; nodes not compared (behind, not heard) have no sample. */
static void serving(FILE *f, const json_t *results)
{
	const json_t *r;
	size_t i;

	if (results == NULL)
		return;
	help(f, "certsync_node_serving_expected", "gauge",
	     "Whether a node's TLS endpoint served what its store says at the primary's last "
	     "check.");
	json_array_foreach(results, i, r)
	{
		const char *status = json_string_value(json_object_get(r, "status"));

		if (strcmp(status, "ok") != 0 && strcmp(status, "other") != 0 &&
		    strcmp(status, "no answer") != 0)
			continue;
		fputs("certsync_node_serving_expected{node=", f);
		label_value(f, json_string_value(json_object_get(r, "node")));
		fputs(",host=", f);
		label_value(f, json_string_value(json_object_get(r, "host")));
		fprintf(f, "} %d\n", strcmp(status, "ok") == 0);
	}
}

static void alerts(FILE *f, mon_monitor *m)
{
	static const char *const sev[] = {"warning", "error"};
	json_t *st = mon_status(m), *a, *t;
	size_t i;

	help(f, "certsync_alerts_active", "gauge", "Alerts sent and not recovered, by severity.");
	for (size_t s = 0; s < 2; s++) {
		int n = 0;

		json_array_foreach(json_object_get(st, "active"), i, a) n +=
		    strcmp(json_string_value(json_object_get(a, "severity")), sev[s]) == 0;
		fprintf(f, "certsync_alerts_active{severity=\"%s\"} %d\n", sev[s], n);
	}
	help(f, "certsync_alerts_sent_total", "counter", "Alerts a target took, by target.");
	json_array_foreach(json_object_get(st, "targets"), i, t)
	    fprintf(f, "certsync_alerts_sent_total{target=\"%s\"} %lld\n",
	            json_string_value(json_object_get(t, "target")), (long long)num(t, "sent"));
	help(f, "certsync_alerts_failed_total", "counter",
	     "Delivery attempts that failed, by target.");
	json_array_foreach(json_object_get(st, "targets"), i, t)
	    fprintf(f, "certsync_alerts_failed_total{target=\"%s\"} %lld\n",
	            json_string_value(json_object_get(t, "target")), (long long)num(t, "failed"));
	json_decref(st);
}

void mon_metrics_write(FILE *f, const json_t *facts, mon_monitor *m)
{
	tls(f, json_object_get(facts, "tls"));
	replication(f, json_object_get(facts, "position"), json_object_get(facts, "replication"));
	serving(f, json_object_get(json_object_get(facts, "serving"), "results"));
	mon_metrics_acme(f, json_object_get(facts, "acme"));
	alerts(f, m);
}

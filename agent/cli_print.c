/* cli_print.c — the printers of the operator command's answers about the
 * node: status (store, TLS endpoint, replication, health) and alerts, with
 * the small helpers every printer shares.  They write through the run's
 * context (cli.h), never to a stream of their own choosing. */
#include "cli.h"
#include "cli_acme.h"

#include <stdio.h>
#include <string.h>

#include "../common/log.h"

/* ---- helpers every printer shares ---- */

/* "1 certificate", "2 certificates": n of key in obj with its word. */
const char *cli_count(char out[64], json_t *obj, const char *key, const char *one, const char *many)
{
	long long n = (long long)json_integer_value(json_object_get(obj, key));

	snprintf(out, 64, "%lld %s", n, CS_PLURAL(n, one, many));
	return out;
}

const char *cli_str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "";
}

json_int_t cli_num(json_t *obj, const char *key)
{
	return json_integer_value(json_object_get(obj, key));
}

/* Prints items of a JSON string array joined by sep. */
void cli_print_list(const cli_ctx *ctx, json_t *arr, const char *sep)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v)
	{
		hprintf(ctx, "%s%s", i ? sep : "", json_string_value(v));
	}
}

/* The date part of an ISO 8601 time. */
const char *cli_day(json_t *obj, const char *key)
{
	static char buf[4][11];
	static int next;
	char *b = buf[next++ % 4];

	snprintf(b, 11, "%s", cli_str(obj, key));
	return b;
}

/* The replication part of status: this node, then one line per peer. */
static void print_replication(const cli_ctx *ctx, json_t *rs)
{
	json_t *drop = json_object_get(rs, "dropped"), *p;
	size_t i;

	if (!json_is_object(rs))
		return;
	hprintf(ctx, "primary    %s (epoch %lld, %s)\n",
	        json_is_string(json_object_get(rs, "leader")) ? cli_str(rs, "leader") : "unknown",
	        (long long)json_integer_value(json_object_get(rs, "epoch")), cli_str(rs, "sync"));
	if (json_is_string(json_object_get(rs, "refusal")))
		hprintf(ctx, "REFUSED    %s\n", cli_str(rs, "refusal"));
	json_array_foreach(json_object_get(rs, "peers"), i, p)
	{
		json_t *lag = json_object_get(p, "lag"),
		       *heard = json_object_get(p, "last_heard_ms");

		hprintf(ctx, "peer       %-12s %-8s %-11s seq %-8lld", cli_str(p, "name"),
		        cli_str(p, "role"),
		        json_is_true(json_object_get(p, "reachable")) ? "reachable" : "UNREACHABLE",
		        (long long)json_integer_value(json_object_get(p, "seq")));
		if (json_is_integer(lag))
			hprintf(ctx, " lag %lld", (long long)json_integer_value(lag));
		if (json_is_integer(heard))
			hprintf(ctx, " heard %lld ms ago", (long long)json_integer_value(heard));
		if (json_is_string(json_object_get(p, "refusal")))
			hprintf(ctx, " refuses: %s", cli_str(p, "refusal"));
		hprintf(ctx, "\n");
	}
	hprintf(
	    ctx,
	    "dropped    %lld undecodable, %lld oversized, %lld unknown keys, %lld wrong cluster, "
	    "%lld stale epoch, %lld bad entries, %lld bad epoch, %lld unauthenticated "
	    "connections\n",
	    (long long)cli_num(drop, "undecodable"), (long long)cli_num(drop, "oversized"),
	    (long long)cli_num(drop, "unknown_key"), (long long)cli_num(drop, "wrong_cluster"),
	    (long long)cli_num(drop, "stale_epoch"), (long long)cli_num(drop, "bad_entry"),
	    (long long)cli_num(drop, "bad_epoch"), (long long)cli_num(drop, "unauthenticated"));
}

/* The TLS part of status, from the same figures as the JSON. */
static void print_tls(const cli_ctx *ctx, json_t *tls)
{
	json_t *table = json_object_get(tls, "table"), *dflt = json_object_get(table, "default");
	json_t *hs = json_object_get(tls, "handshakes"),
	       *conns = json_object_get(tls, "connections");
	json_t *uncovered = json_object_get(dflt, "uncovered"), *h;
	char w[64];
	size_t i;

	if (!json_is_object(tls)) {
		hprintf(ctx, "tls        not serving (no tls_listen, or no cluster key yet)\n");
		return;
	}
	hprintf(ctx, "tls        ");
	cli_print_list(ctx, json_object_get(tls, "listeners"), ", ");
	hprintf(ctx, " (%s)\n", cli_count(w, tls, "workers", "worker", "workers"));
	hprintf(ctx, "handshakes %lld done, %lld failed\n", (long long)cli_num(hs, "done"),
	        (long long)cli_num(hs, "failed"));
	hprintf(ctx,
	        "clients    %s open, %lld accepted, %lld refused (%lld for their address), "
	        "%lld timed out, %lld evicted\n",
	        cli_count(w, conns, "open", "connection", "connections"),
	        (long long)cli_num(conns, "accepted"), (long long)cli_num(conns, "refused"),
	        (long long)cli_num(conns, "refused_per_source"),
	        (long long)cli_num(conns, "timed_out"), (long long)cli_num(conns, "evicted"));
	json_array_foreach(json_object_get(table, "hosts"), i, h)
	{
		json_t *id = json_object_get(h, "certificate");

		if (json_is_string(id))
			hprintf(ctx, "serves     %s: %.8s\n", cli_str(h, "hostname"),
			        json_string_value(id));
		else
			hprintf(ctx,
			        "serves     %s: NOTHING (no valid certificate with its key covers "
			        "it)\n",
			        cli_str(h, "hostname"));
	}
	if (json_array_size(uncovered) > 0) {
		const char *them = json_array_size(uncovered) > 1 ? "them" : "it";

		hprintf(ctx, "uncovered  ");
		cli_print_list(ctx, uncovered, ", ");
		if (json_is_string(json_object_get(dflt, "configured")))
			hprintf(ctx, ": the default certificate %.8s does not cover %s",
			        cli_str(dflt, "configured"), them);
		else
			hprintf(ctx, ": no default certificate is chosen");
		hprintf(ctx,
		        "; make one that covers %s the default with `certsync cert default ID`\n",
		        them);
	}
	hprintf(ctx, "reload     %.1f ms the last time (%s)\n",
	        json_real_value(json_object_get(json_object_get(tls, "reloads"), "last_ms")),
	        cli_count(w, json_object_get(tls, "reloads"), "count", "reload", "reloads"));
}

/* The health lines of status; with --check, 1 unless healthy, and the
 * problems on standard error too, where a healthcheck's log takes them. */
static int print_health(const cli_ctx *ctx, json_t *health, json_t *args)
{
	bool check = json_is_true(json_object_get(args, "check"));
	json_t *p;
	size_t i;

	if (json_is_true(json_object_get(health, "ok"))) {
		hprintf(ctx, "health     ok\n");
		return 0;
	}
	json_array_foreach(json_object_get(health, "problems"), i, p)
	{
		hprintf(ctx, "UNHEALTHY  %s\n", json_string_value(p));
		if (check)
			fprintf(stderr, "certsync: unhealthy: %s\n", json_string_value(p));
	}
	return check ? 1 : 0;
}

static void print_store(const cli_ctx *ctx, json_t *st)
{
	if (!json_is_object(st))
		return;
	hprintf(ctx, "store      %.1f of %.1f MiB in use (%lld%%), %lld diverged entries\n",
	        (double)json_integer_value(json_object_get(st, "used_bytes")) / (1 << 20),
	        (double)json_integer_value(json_object_get(st, "map_bytes")) / (1 << 20),
	        (long long)json_integer_value(json_object_get(st, "used_percent")),
	        (long long)json_integer_value(
	            json_object_get(json_object_get(st, "diverged"), "entries")));
	if (json_is_string(json_object_get(st, "warning")))
		hprintf(ctx, "WARNING    %s\n", cli_str(st, "warning"));
}

/* ---- alerts ------------------------------------------------------------------ */

/* The active alerts, worst first; nothing when none. */
static void print_active_alerts(const cli_ctx *ctx, json_t *mon, bool say_none)
{
	static const char *const order[] = {"error", "warning"};
	json_t *a;
	size_t i;

	if (json_array_size(json_object_get(mon, "active")) == 0) {
		if (say_none)
			hprintf(ctx, "no active alerts\n");
		return;
	}
	for (size_t k = 0; k < 2; k++)
		json_array_foreach(json_object_get(mon, "active"), i,
		                   a) if (strcmp(cli_str(a, "severity"), order[k]) == 0)
		    hprintf(ctx, "ALERT %-7s %s (since %s)\n", order[k], cli_str(a, "text"),
		            cli_str(a, "since"));
}

static void print_alert_targets(const cli_ctx *ctx, json_t *mon)
{
	json_t *t;
	size_t i;

	json_array_foreach(json_object_get(mon, "targets"), i, t)
	{
		hprintf(ctx,
		        "target  %-8s %lld sent, %lld failed attempts, %lld given up, %lld "
		        "queued%s%s\n",
		        cli_str(t, "target"),
		        (long long)json_integer_value(json_object_get(t, "sent")),
		        (long long)json_integer_value(json_object_get(t, "failed")),
		        (long long)json_integer_value(json_object_get(t, "given_up")),
		        (long long)json_integer_value(json_object_get(t, "queued")),
		        json_is_string(json_object_get(t, "last_error")) ? "; last error: " : "",
		        cli_str(t, "last_error"));
	}
}

int cli_print_alerts(const cli_ctx *ctx, json_t *r, json_t *args)
{
	(void)args;
	print_active_alerts(ctx, r, true);
	print_alert_targets(ctx, r);
	return 0;
}

int cli_print_alerts_test(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_int_t n = json_integer_value(json_object_get(r, "targets"));

	(void)args;
	if (n == 0)
		hprintf(ctx, "a test alert was logged; no target is configured in [alerts]\n");
	else
		hprintf(ctx,
		        "a test alert was logged and queued to %lld %s; `certsync alerts` shows "
		        "what was sent\n",
		        (long long)n, CS_PLURAL(n, "target", "targets"));
	return 0;
}

int cli_print_status(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *def = json_object_get(r, "default"), *counts = json_object_get(r, "counts");
	json_t *digest_ok = json_object_get(r, "digest_ok");
	char a[64], b[64], c[64], d[64];
	int rc;

	print_active_alerts(ctx, json_object_get(r, "alerts"), false);
	hprintf(ctx, "node       %s (%s)\n", cli_str(r, "node"), cli_str(r, "role"));
	hprintf(ctx, "hostname   %s\n", cli_str(r, "hostname"));
	hprintf(ctx, "site       %s\n", cli_str(r, "site_hostname"));
	hprintf(ctx, "version    %s\n", cli_str(r, "version"));
	hprintf(ctx, "uptime     %llds\n",
	        (long long)json_integer_value(json_object_get(r, "uptime_seconds")));
	hprintf(ctx, "position   epoch %lld, seq %lld\n",
	        (long long)json_integer_value(json_object_get(r, "epoch")),
	        (long long)json_integer_value(json_object_get(r, "seq")));
	/* Recomputed only with --recompute: it reads every record. */
	hprintf(ctx, "digest     %s%s\n", cli_str(r, "digest"),
	        digest_ok == NULL         ? ""
	        : json_is_true(digest_ok) ? " (recomputed: equal)"
	                                  : " (RECOMPUTED DIGEST DIFFERS: the store is damaged)");
	if (json_is_object(def))
		hprintf(ctx, "default    %.8s %s (expires %s)\n", cli_str(def, "id"),
		        cli_str(def, "name"), cli_day(def, "not_after"));
	else
		hprintf(ctx, "default    none\n");
	hprintf(ctx, "counts     %s, %s, %s, %s\n",
	        cli_count(a, counts, "certificates", "certificate", "certificates"),
	        cli_count(b, counts, "cas", "CA certificate", "CA certificates"),
	        cli_count(c, counts, "requests", "request", "requests"),
	        cli_count(d, counts, "pending_keys", "pending key", "pending keys"));
	print_store(ctx, json_object_get(r, "store"));
	print_tls(ctx, json_object_get(r, "tls"));
	print_replication(ctx, json_object_get(r, "replication"));
	cli_acme_print_status(ctx->human, json_object_get(r, "acme"));
	rc = print_health(ctx, json_object_get(r, "health"), args);
	return digest_ok != NULL && !json_is_true(digest_ok) ? 1 : rc;
}

/* cli_verify.c — `certsync verify --cluster`: asks this node's agent what it
 * knows of every node, waits (bounded) for relayed positions to settle,
 * checks each node's store and coverage, and reaches every TLS endpoint for
 * real. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "control.h"
#include "tls_check.h"

#define SETTLE_TRIES   12 /* a relayed position is at most a beat old: 3 s */
#define SETTLE_STEP_US 250000

/* True when every node is reachable and at one position. */
static bool settled(json_t *nodes)
{
	json_t *n, *first = json_array_get(nodes, 0);
	size_t i;

	json_array_foreach(nodes, i, n)
	{
		if (!json_is_true(json_object_get(n, "reachable")) ||
		    cli_num(n, "epoch") != cli_num(first, "epoch") ||
		    cli_num(n, "seq") != cli_num(first, "seq"))
			return false;
	}
	return true;
}

/* The reachable node furthest ahead (the first such): what others must equal. */
static json_t *reference_node(json_t *nodes)
{
	json_t *n, *best = NULL;
	size_t i;

	json_array_foreach(nodes, i, n)
	{
		if (!json_is_true(json_object_get(n, "reachable")) ||
		    !json_is_string(json_object_get(n, "digest")))
			continue;
		if (best == NULL || cli_num(n, "epoch") > cli_num(best, "epoch") ||
		    (cli_num(n, "epoch") == cli_num(best, "epoch") &&
		     cli_num(n, "seq") > cli_num(best, "seq")))
			best = n;
	}
	return best;
}

static void add_check(json_t *checks, json_t *n, const char *check, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void add_check(json_t *checks, json_t *n, const char *check, bool ok, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	json_array_append_new(checks,
	                      json_pack("{s:s, s:s, s:s, s:s}", "node", cli_str(n, "name"), "check",
	                                check, "status", ok ? "ok" : "fail", "detail", detail));
}

static void check_store(json_t *checks, json_t *n, json_t *ref)
{
	if (!json_is_true(json_object_get(n, "reachable")))
		add_check(checks, n, "store", false, "unknown: the node is not reachable");
	else if (ref == NULL || cli_num(n, "epoch") != cli_num(ref, "epoch") ||
	         cli_num(n, "seq") != cli_num(ref, "seq"))
		add_check(checks, n, "store", false, "at %lld.%lld, behind %s at %lld.%lld",
		          (long long)cli_num(n, "epoch"), (long long)cli_num(n, "seq"),
		          cli_str(ref, "name"), (long long)cli_num(ref, "epoch"),
		          (long long)cli_num(ref, "seq"));
	else if (strcmp(cli_str(n, "digest"), cli_str(ref, "digest")) != 0)
		add_check(checks, n, "store", false,
		          "digest %.16s differs from %s's %.16s at %lld.%lld", cli_str(n, "digest"),
		          cli_str(ref, "name"), cli_str(ref, "digest"),
		          (long long)cli_num(n, "epoch"), (long long)cli_num(n, "seq"));
	else
		add_check(checks, n, "store", true, "at %lld.%lld, digest %.16s",
		          (long long)cli_num(n, "epoch"), (long long)cli_num(n, "seq"),
		          cli_str(n, "digest"));
}

static bool listed(json_t *arr, const char *s)
{
	json_t *v;
	size_t i;

	json_array_foreach(arr, i, v)
	{
		if (strcasecmp(json_string_value(v), s) == 0)
			return true;
	}
	return false;
}

static void check_coverage(json_t *checks, json_t *n, json_t *r)
{
	json_t *dflt = json_object_get(r, "default"), *uncovered = json_object_get(r, "uncovered");
	const char *site = cli_str(r, "site_hostname"), *host = cli_str(n, "hostname");
	bool site_bad = listed(uncovered, site), host_bad = listed(uncovered, host);

	if (!json_is_object(dflt))
		add_check(
		    checks, n, "coverage", false,
		    "there is no default certificate; choose one with `certsync cert default ID`");
	else if (site_bad || host_bad)
		add_check(checks, n, "coverage", false,
		          "the default certificate %.8s (%s) does not cover %s%s%s",
		          cli_str(dflt, "id"), cli_str(dflt, "name"), host_bad ? host : "",
		          host_bad && site_bad ? " and " : "", site_bad ? site : "");
	else
		add_check(checks, n, "coverage", true,
		          "the default certificate %.8s covers %s and %s", cli_str(dflt, "id"),
		          host, site);
}

static void check_tls(json_t *checks, json_t *n, const char *sni)
{
	cs_tls_check r;

	cs_tls_check_node(n, sni, &r);
	add_check(checks, n, "tls", r.outcome == CS_TLS_SERVES_EXPECTED, "%s", r.detail);
}

/* `verify --cluster`: asks this node's agent what it knows of every node,
 * waits (bounded) for positions relayed by heartbeats to settle, then
 * checks each node and reaches every TLS endpoint for real. */
int cli_verify_cluster(const cli_ctx *ctx, const char *path, cs_err *err)
{
	json_t *r = NULL, *nodes, *n, *checks = json_array(), *ref, *c;
	bool ok = true;
	size_t i;

	for (int t = 0; t < SETTLE_TRIES; t++) {
		json_t *args = json_object();

		json_decref(r);
		r = NULL;
		if (cs_control_call(path, "verify.cluster", args, &r, err) < 0) {
			json_decref(args);
			json_decref(checks);
			return -1;
		}
		json_decref(args);
		if (settled(json_object_get(r, "nodes")))
			break;
		usleep(SETTLE_STEP_US);
	}
	nodes = json_object_get(r, "nodes");
	ref = reference_node(nodes);
	json_array_foreach(nodes, i, n)
	{
		bool up = json_is_true(json_object_get(n, "reachable"));

		add_check(checks, n, "reachable", up, "%s",
		          json_is_true(json_object_get(n, "self")) ? "this node"
		          : up ? "heard within the failure timeout"
		               : "not heard within the failure timeout");
		check_store(checks, n, ref);
		check_coverage(checks, n, r);
		check_tls(checks, n, cli_str(n, "hostname"));
		check_tls(checks, n, cli_str(r, "site_hostname"));
	}
	json_array_foreach(checks, i, c)
	{
		ok = ok && strcmp(cli_str(c, "status"), "ok") == 0;
		if (!ctx->json)
			printf("%-12s %-9s %-4s %s\n", cli_str(c, "node"), cli_str(c, "check"),
			       cli_str(c, "status"), cli_str(c, "detail"));
	}
	if (ctx->json) {
		json_t *j =
		    json_pack("{s:b, s:o, s:O}", "ok", ok, "checks", checks, "nodes", nodes);

		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	} else {
		printf("cluster: %s\n", ok ? "every check passed" : "some checks failed");
		json_decref(checks);
	}
	json_decref(r);
	return ok ? 0 : 1;
}

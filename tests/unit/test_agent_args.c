/* test_agent_args.c — the agent's argument checks that stand alone: a
 * `cluster init --node` spec (agent/cluster_init.c), the role names
 * (agent/config.c) and a control request's string and --wait arguments
 * (agent/node.c, agent/ops_repl.c). Each refusal names what is wrong, with
 * the usage exit code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../agent/cluster_init.h"
#include "../../agent/config.h"
#include "../../agent/ops.h"

static void test_node_spec(void **state)
{
	cs_cluster_node n;
	cs_err err;

	(void)state;
	assert_int_equal(cs_cluster_node_parse("tn-1=traffic,tn1.example.test,"
	                                       "tcp://10.0.0.7:7700,127.0.0.1:8443",
	                                       &n, &err),
	                 0);
	assert_string_equal(n.name, "tn-1");
	assert_int_equal(n.role, CS_ROLE_TRAFFIC);
	assert_string_equal(n.hostname, "tn1.example.test");
	assert_string_equal(n.repl_endpoint, "tcp://10.0.0.7:7700");
	assert_string_equal(n.repl_host, "10.0.0.7");
	assert_int_equal(n.repl_port, 7700);
	assert_string_equal(n.tls_listen, "127.0.0.1:8443");
	assert_string_equal(n.tls_host, "127.0.0.1");
	assert_int_equal(n.tls_port, 8443);

	/* a DNS name as the replication host, IPv6 in brackets to listen on */
	assert_int_equal(cs_cluster_node_parse("p=primary,p.example.test,"
	                                       "tcp://p.example.test:7700,[::1]:443",
	                                       &n, &err),
	                 0);
	assert_int_equal(n.role, CS_ROLE_PRIMARY);
	assert_string_equal(n.repl_host, "p.example.test");
	assert_string_equal(n.tls_host, "::1");
	assert_int_equal(n.tls_port, 443);
}

/* spec is refused with CS_EUSAGE and a message holding spec, why and the
 * form to write. */
static void refused(const char *spec, const char *why)
{
	cs_cluster_node n;
	cs_err err = {0};

	if (cs_cluster_node_parse(spec, &n, &err) != -1)
		fail_msg("accepted: %s", spec);
	assert_int_equal(err.code, CS_EUSAGE);
	if (strstr(err.msg, spec) == NULL || strstr(err.msg, why) == NULL ||
	    strstr(err.msg, "NAME=ROLE,HOSTNAME,REPL_ENDPOINT,TLS_LISTEN") == NULL)
		fail_msg("%s: %s", spec, err.msg);
}

static void test_node_spec_refused(void **state)
{
	(void)state;
	refused("primary,p.example.test,tcp://p:1,0.0.0.0:1", "the name before '='");
	refused("=primary,p.example.test,tcp://p:1,0.0.0.0:1", "the name before '='");
	refused("a b=primary,p.example.test,tcp://p:1,0.0.0.0:1", "the name before '='");
	refused("p=primary,p.example.test,tcp://p:1", "exactly four comma-separated fields");
	refused("p=primary,p.example.test,tcp://p:1,0.0.0.0:1,x", "HTTP_LISTEN is ADDRESS:PORT");
	refused("p=primary,p.example.test,tcp://p:1,0.0.0.0:1,0.0.0.0:80,x",
	        "exactly four comma-separated fields, or five");
	refused("p=leader,p.example.test,tcp://p:1,0.0.0.0:1", "the role is primary");
	refused("p=primary,-p.example.test,tcp://p:1,0.0.0.0:1", "is not a DNS name");
	refused("p=primary,p.example.test,udp://p:1,0.0.0.0:1", "tcp://HOST:PORT");
	refused("p=primary,p.example.test,tcp://p:0,0.0.0.0:1", "PORT 1 to 65535");
	refused("p=primary,p.example.test,tcp://p:65536,0.0.0.0:1", "PORT 1 to 65535");
	refused("p=primary,p.example.test,tcp://p:1,localhost:8443", "numeric address");
	refused("p=primary,p.example.test,tcp://p:1,0.0.0.0", "numeric address");
}

static void test_roles(void **state)
{
	static const char *const names[] = {"primary", "backup", "traffic"};
	cs_role r;

	(void)state;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(cs_role_parse(names[i], &r), 0);
		assert_string_equal(cs_role_name(r), names[i]);
	}
	r = CS_ROLE_BACKUP;
	assert_int_equal(cs_role_parse("Primary", &r), -1);
	assert_int_equal(cs_role_parse("", &r), -1);
	assert_int_equal(r, CS_ROLE_BACKUP); /* untouched when refused */
}

static void test_arg_string(void **state)
{
	json_t *args = json_pack("{s:s, s:i, s:n}", "name", "site", "count", 3, "none");
	const char *v = "untouched";
	cs_err err = {0};

	(void)state;
	assert_int_equal(ops_arg_string(args, "name", true, &v, &err), 0);
	assert_string_equal(v, "site");
	/* absent or null: NULL when optional, a usage error naming it when not */
	assert_int_equal(ops_arg_string(args, "other", false, &v, &err), 0);
	assert_null(v);
	assert_int_equal(ops_arg_string(args, "none", false, &v, &err), 0);
	assert_null(v);
	assert_int_equal(ops_arg_string(args, "other", true, &v, &err), -1);
	assert_int_equal(err.code, CS_EUSAGE);
	assert_string_equal(err.msg, "control request: args.other is required");
	assert_int_equal(ops_arg_string(args, "count", false, &v, &err), -1);
	assert_int_equal(err.code, CS_EUSAGE);
	assert_string_equal(err.msg, "control request: args.count must be a string");
	json_decref(args);
}

/* ops_wait_args on args given as JSON text; its return value. */
static int wait_args(struct cs_node *node, const char *text, ops_wait_req *w, cs_err *err)
{
	json_t *args = json_loads(text, 0, NULL);
	int rc;

	assert_non_null(args);
	rc = ops_wait_args(node, args, w, err);
	json_decref(args);
	return rc;
}

static void test_wait_args(void **state)
{
	cs_peer peers[2] = {{.role = CS_ROLE_TRAFFIC}, {.role = CS_ROLE_BACKUP}};
	cs_config cfg = {.peers = peers, .npeers = 1};
	struct cs_node node = {.cfg = &cfg};
	ops_wait_req w;
	cs_err err = {0};

	(void)state;
	/* the default: none while every peer is a traffic node, else backup */
	assert_int_equal(wait_args(&node, "{}", &w, &err), 0);
	assert_string_equal(w.name, "none");
	assert_int_equal(w.mode, REPL_WAIT_NONE);
	assert_int_equal(w.timeout_ms, 5000);
	cfg.npeers = 2;
	assert_int_equal(wait_args(&node, "{}", &w, &err), 0);
	assert_string_equal(w.name, "backup");
	assert_int_equal(w.mode, REPL_WAIT_BACKUP);
	assert_int_equal(wait_args(&node, "{\"wait\": \"all\", \"wait_timeout_ms\": 0}", &w, &err),
	                 0);
	assert_int_equal(w.mode, REPL_WAIT_ALL);
	assert_int_equal(w.timeout_ms, 0);
	assert_int_equal(wait_args(&node, "{\"wait_timeout_ms\": 3600000}", &w, &err), 0);
	assert_int_equal(w.timeout_ms, 3600000);

	assert_int_equal(wait_args(&node, "{\"wait\": \"most\"}", &w, &err), -1);
	assert_int_equal(err.code, CS_EUSAGE);
	assert_string_equal(err.msg, "--wait most: use backup, all or none");
	for (int i = 0; i < 3; i++) {
		static const char *const bad[] = {"{\"wait_timeout_ms\": -1}",
		                                  "{\"wait_timeout_ms\": 3600001}",
		                                  "{\"wait_timeout_ms\": \"5s\"}"};

		err = (cs_err){0};
		assert_int_equal(wait_args(&node, bad[i], &w, &err), -1);
		assert_int_equal(err.code, CS_EUSAGE);
		assert_string_equal(err.msg,
		                    "control request: args.wait_timeout_ms must be 0 to 3600000");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_node_spec), cmocka_unit_test(test_node_spec_refused),
	    cmocka_unit_test(test_roles),     cmocka_unit_test(test_arg_string),
	    cmocka_unit_test(test_wait_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_agent_args.c — the agent's argument checks that stand alone: a
 * `cluster init --node` spec (agent/cluster_init.c) and the role names
 * (agent/config.c). Each refusal names the spec, what is wrong and the
 * form to write, with the usage exit code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../agent/cluster_init.h"
#include "../../agent/config.h"

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
	refused("p=primary,p.example.test,tcp://p:1,0.0.0.0:1,x",
	        "exactly four comma-separated fields");
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_node_spec),
	    cmocka_unit_test(test_node_spec_refused),
	    cmocka_unit_test(test_roles),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

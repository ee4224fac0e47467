/* tls_check.c — see tls_check.h. */
#include "tls_check.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../tls/tls.h"

#define PROBE_TIMEOUT_MS 5000
/* An endpoint swaps in a change shortly after its commit (within 100 ms is
 * the goal): a mismatch is probed again, 50 ms later, then 100, 200 and
 * 400 ms later, before it counts. */
#define SWAP_TRIES   5
#define SWAP_STEP_US 50000

/* Probes endpoint until it serves want or SWAP_TRIES probes saw something
 * else; got is the last certificate served. */
static int probe_until(const char *endpoint, const char *sni, const char *want, char got[65],
                       cs_err *err)
{
	for (int t = 0;; t++) {
		if (tls_probe(endpoint, sni, PROBE_TIMEOUT_MS, got, err) < 0)
			return -1;
		if (strcmp(got, want) == 0 || t + 1 >= SWAP_TRIES)
			return 0;
		usleep((useconds_t)SWAP_STEP_US << t);
	}
}

void cs_tls_check_node(const json_t *node, const char *sni, cs_tls_check *out)
{
	const char *endpoint = json_string_value(json_object_get(node, "tls_endpoint"));
	const char *want =
	    json_string_value(json_object_get(json_object_get(node, "expected"), sni));
	cs_err err = {0};

	out->served[0] = '\0';
	out->outcome = CS_TLS_UNKNOWN;
	if (endpoint == NULL)
		snprintf(out->detail, sizeof(out->detail),
		         "%s: no TLS endpoint is known; add tls_endpoint = HOST:PORT to its [peer] "
		         "section (or tls_listen on the node itself)",
		         sni);
	else if (want == NULL)
		snprintf(out->detail, sizeof(out->detail),
		         "%s: no valid certificate with a key answers it", sni);
	else if (probe_until(endpoint, sni, want, out->served, &err) < 0) {
		out->outcome = CS_TLS_NO_ANSWER;
		out->served[0] = '\0';
		snprintf(out->detail, sizeof(out->detail), "%s", err.msg);
	} else if (strcmp(out->served, want) != 0) {
		out->outcome = CS_TLS_SERVES_OTHER;
		snprintf(out->detail, sizeof(out->detail), "%s at %s serves %.8s, expected %.8s",
		         sni, endpoint, out->served, want);
	} else {
		out->outcome = CS_TLS_SERVES_EXPECTED;
		snprintf(out->detail, sizeof(out->detail), "%s at %s serves %.8s", sni, endpoint,
		         out->served);
	}
}

/* tls_check.h — the TLS check of `verify --cluster`: what a node's endpoint
 * serves for a hostname, against what its store says it should serve.  The
 * command runs it for every node, and the primary's monitor every few
 * minutes (ops_serving.c), on the same node descriptions (the
 * verify.cluster request's "nodes"). */
#ifndef CS_TLS_CHECK_H
#define CS_TLS_CHECK_H

#include <jansson.h>

typedef enum cs_tls_outcome {
	CS_TLS_SERVES_EXPECTED,
	CS_TLS_SERVES_OTHER,
	CS_TLS_NO_ANSWER, /* the handshake failed or timed out */
	CS_TLS_UNKNOWN,   /* no endpoint known, or nothing it should serve */
} cs_tls_outcome;

typedef struct cs_tls_check {
	cs_tls_outcome outcome;
	char served[65];   /* id (hex) of the leaf served; "" without an answer */
	char detail[1024]; /* a sentence for the operator, as verify prints it */
} cs_tls_check;

/* Reaches node's tls_endpoint sending sni and compares the leaf served
 * with node's "expected" id for sni.  A mismatch is probed again a few
 * times within about a second (an endpoint swaps a change in shortly after
 * its commit) before it counts.  Blocks for up to a few seconds: never on
 * the event loop. */
void cs_tls_check_node(const json_t *node, const char *sni, cs_tls_check *out);

#endif

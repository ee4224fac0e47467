/* acme_answer.c — what every node answers for a challenge, from its own
 * replicated store: http-01 tokens on http_listen, and the tls-alpn-01
 * challenge certificates its TLS endpoint shows for ALPN acme-tls/1.  So a
 * CA can ask any node the name resolves to, not only the primary. */
#include "acme_agent.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../tls/tls.h"
#include "node.h"
#include "ops.h"
#include "records.h"

struct acme_answer {
	struct cs_node *node;
	acme_http01 *http;
};

/* The responder's lookup: the token's key authorization as this node's
 * store holds it. */
static char *lookup(void *arg, const char *token)
{
	struct cs_node *node = arg;
	Certsync__AcmeHttpToken *t;
	char *ka = NULL;
	cs_err err;
	cs_txn *txn;

	if (cs_txn_begin(node->store, false, &txn, &err) < 0) {
		cs_warn("http-01: %s", err.msg);
		return NULL;
	}
	if (rec_acme_get(txn, REC_ACME_HTTP01, token, &certsync__acme_http_token__descriptor,
	                 (ProtobufCMessage **)&t, &err) == 0) {
		ka = strdup(t->key_authorization);
		certsync__acme_http_token__free_unpacked(t, NULL);
	}
	cs_txn_abort(txn);
	return ka;
}

int acme_answer_start(acme_answer **out, struct cs_node *node, struct event_base *base, cs_err *err)
{
	acme_http01_opts o = {
	    .base = base, .listen = node->cfg->http_listen, .lookup = lookup, .arg = node};
	acme_answer *a;
	acme_err e;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	a->node = node;
	if (node->cfg->http_listen != NULL && (a->http = acme_http01_new(&o, &e)) == NULL) {
		free(a);
		*err = e.err;
		return cs_err_prefix(err, "[node] http_listen = %s: ", node->cfg->http_listen);
	}
	if (a->http != NULL)
		cs_info("http-01: answering on %s", node->cfg->http_listen);
	*out = a;
	acme_answer_changed(node);
	return 0;
}

void acme_answer_stop(acme_answer *a)
{
	if (a == NULL)
		return;
	acme_http01_free(a->http);
	free(a);
}

struct alpn_walk {
	struct cs_node *node;
	char **names;
	X509 **certs;
	EVP_PKEY **keys;
	size_t n, cap;
};

static int add_alpn(void *ctx, const char *name, ProtobufCMessage *m)
{
	struct alpn_walk *w = ctx;
	Certsync__AcmeAlpnCert *rec = (Certsync__AcmeAlpnCert *)m;
	char ad[REC_ACME_KEY_MAX];
	cs_err err = {0};
	X509 *x;
	EVP_PKEY *k;

	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 8;
		char **names = realloc(w->names, cap * sizeof(*names));
		X509 **certs = names ? realloc(w->certs, cap * sizeof(*certs)) : NULL;
		EVP_PKEY **keys = certs ? realloc(w->keys, cap * sizeof(*keys)) : NULL;

		if (names)
			w->names = names;
		if (certs)
			w->certs = certs;
		if (keys == NULL)
			return -1;
		w->keys = keys;
		w->cap = cap;
	}
	rec_acme_key(ad, REC_ACME_ALPN, name);
	x = pki_cert_from_der(rec->der.data, rec->der.len, &err);
	k = x ? rec_unseal_key(w->node->key, &rec->sealed_key, (const uint8_t *)ad, strlen(ad),
	                       &err)
	      : NULL;
	if (k == NULL || (w->names[w->n] = strdup(name)) == NULL) {
		cs_warn("tls-alpn-01: the challenge certificate for %s is not served: %s", name,
		        err.msg);
		X509_free(x);
		EVP_PKEY_free(k);
		return 0;
	}
	w->certs[w->n] = x;
	w->keys[w->n] = k;
	w->n++;
	return 0;
}

void acme_answer_changed(struct cs_node *node)
{
	struct alpn_walk w = {.node = node};
	cs_err err = {0};
	cs_txn *txn;
	int rc;

	if (node->tls == NULL || node->key == NULL ||
	    cs_txn_begin(node->store, false, &txn, &err) < 0)
		return;
	rc = rec_acme_foreach(txn, REC_ACME_ALPN, &certsync__acme_alpn_cert__descriptor, add_alpn,
	                      &w, &err);
	cs_txn_abort(txn);
	if (rc == 0 && tls_server_set_acme(node->tls, (const char *const *)w.names, w.certs, w.keys,
	                                   w.n, &err) < 0)
		rc = -1;
	if (rc != 0)
		cs_warn("tls-alpn-01: %s", err.msg[0] ? err.msg : "out of memory");
	for (size_t i = 0; i < w.n; i++) {
		free(w.names[i]);
		X509_free(w.certs[i]);
		EVP_PKEY_free(w.keys[i]);
	}
	free(w.names);
	free(w.certs);
	free(w.keys);
}

/* acme.c — the tls-alpn-01 answer (RFC 8737): a client that offers ALPN
 * acme-tls/1 and nothing else is an ACME server validating a name; it gets
 * the challenge certificate for that name, and acme-tls/1 selected.  Every
 * other client is untouched.  The certificates come from the agent, which
 * reads them from the replicated store; they change rarely, so one mutex
 * guards them, taken only by such handshakes and by a change. */
#include "tls_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct acme_entry {
	char *name;
	X509 *cert;
	EVP_PKEY *key;
};

struct tls_acme {
	pthread_mutex_t lock;
	struct acme_entry *e;
	size_t n;
};

static const unsigned char ACME_TLS_1[] = "\x0a"
                                          "acme-tls/1";

tls_acme *tls_acme_new(void)
{
	tls_acme *a = calloc(1, sizeof(*a));

	if (a != NULL)
		pthread_mutex_init(&a->lock, NULL);
	return a;
}

static void entries_free(struct acme_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].name);
		X509_free(e[i].cert);
		EVP_PKEY_free(e[i].key);
	}
	free(e);
}

void tls_acme_free(tls_acme *a)
{
	if (a == NULL)
		return;
	entries_free(a->e, a->n);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

bool tls_acme_only(SSL *s)
{
	const unsigned char *p;
	size_t len;

	/* the protocol list: a 2-byte length, then exactly acme-tls/1 */
	return SSL_client_hello_get0_ext(s, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
	                                 &len) &&
	       len == sizeof(ACME_TLS_1) + 1 && p[0] == 0 && p[1] == sizeof(ACME_TLS_1) - 1 &&
	       memcmp(p + 2, ACME_TLS_1, sizeof(ACME_TLS_1) - 1) == 0;
}

bool tls_acme_use(tls_acme *a, SSL *s, const char *name)
{
	bool found = false;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n && !found; i++)
		if (strcasecmp(a->e[i].name, name) == 0)
			found = SSL_use_cert_and_key(s, a->e[i].cert, a->e[i].key, NULL, 1) == 1;
	pthread_mutex_unlock(&a->lock);
	return found;
}

int tls_acme_select(const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                    unsigned int inlen)
{
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, ACME_TLS_1, sizeof(ACME_TLS_1) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

int tls_server_set_acme(tls_server *srv, const char *const *names, X509 *const *certs,
                        EVP_PKEY *const *keys, size_t n, cs_err *err)
{
	tls_acme *a = tls_server_acme(srv);
	struct acme_entry *e = calloc(n + 1, sizeof(*e)), *old;
	size_t oldn;

	if (e == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if ((e[i].name = strdup(names[i])) == NULL) {
			entries_free(e, i);
			return cs_fail(err, CS_EIO, "out of memory");
		}
		X509_up_ref(certs[i]);
		EVP_PKEY_up_ref(keys[i]);
		e[i].cert = certs[i];
		e[i].key = keys[i];
	}
	pthread_mutex_lock(&a->lock);
	old = a->e;
	oldn = a->n;
	a->e = e;
	a->n = n;
	pthread_mutex_unlock(&a->lock);
	entries_free(old, oldn);
	return 0;
}

/* probe.c — the client side of the TLS endpoint: one bounded handshake
 * with an SNI, to learn which certificate a node really serves
 * (`certsync verify --cluster`). */
#include "tls.h"

#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "../common/clock.h"
#include "../common/hex.h"
#include "../common/net.h"

int tls_probe(const char *endpoint, const char *sni, int timeout_ms, char id_hex[65], cs_err *err)
{
	int64_t deadline = cs_mono_ms() + timeout_ms;
	unsigned char md[32];
	unsigned int mdlen = 0;
	SSL_CTX *ctx = NULL;
	X509 *leaf = NULL;
	SSL *ssl = NULL;
	int fd, rc = -1, r;

	if ((fd = cs_net_connect(endpoint, deadline, err)) < 0)
		return cs_err_prefix(err, "TLS endpoint %s: ", endpoint);
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(ssl, fd) ||
	    (sni != NULL && !SSL_set_tlsext_host_name(ssl, sni))) {
		cs_fail(err, CS_EIO, "TLS endpoint %s: cannot set up a client", endpoint);
		goto out;
	}
	while ((r = SSL_connect(ssl)) != 1) {
		int e = SSL_get_error(ssl, r);

		if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
		    !cs_net_wait(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
			cs_fail(err, CS_EIO, "TLS endpoint %s (SNI %s): the handshake failed%s",
			        endpoint, sni ? sni : "none",
			        e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE
			            ? ": timed out"
			            : "");
			goto out;
		}
	}
	leaf = SSL_get1_peer_certificate(ssl);
	if (leaf == NULL || !X509_digest(leaf, EVP_sha256(), md, &mdlen) || mdlen != sizeof(md)) {
		cs_fail(err, CS_EIO, "TLS endpoint %s: no certificate was served", endpoint);
		goto out;
	}
	cs_hex(md, sizeof(md), id_hex);
	rc = 0;
out:
	X509_free(leaf);
	if (ssl != NULL && rc == 0)
		SSL_shutdown(ssl);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	ERR_clear_error();
	return rc;
}

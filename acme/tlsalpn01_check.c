/* tlsalpn01_check.c — the tls-alpn-01 pre-validation probe: a TLS handshake
 * with each node's endpoint as the CA will make it (TLS 1.2 or later, SNI the
 * name, ALPN acme-tls/1 only, RFC 8737 §3), which must select acme-tls/1 and
 * show the challenge certificate for the name and this key authorization
 * (pki_tlsalpn01_check).  The certificate is self-signed by design, so it is
 * checked for its content, not against a trust store. */
#include "acme_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../common/net.h"
#include "../pki/pki.h"

static const unsigned char ALPN[] = "\x0a"
                                    "acme-tls/1";

typedef struct alpn_probe {
	SSL_CTX *ctx;
	const char *name;
	uint8_t digest[32];
} alpn_probe;

/* A TCP connection to endpoint within timeout_ms, its reads and writes then
 * bounded by what is left; -1 with seen set when there is none. */
static int connect_to(const char *endpoint, long timeout_ms, char *seen, size_t seenlen)
{
	int64_t deadline = cs_mono_ms() + timeout_ms;
	cs_err err;
	int fd = cs_net_connect(endpoint, deadline, &err);

	if (fd < 0) {
		snprintf(seen, seenlen, "%s", err.msg);
	} else {
		int64_t left = deadline - cs_mono_ms();
		struct timeval tv = {.tv_sec = left > 0 ? left / 1000 : 0,
		                     .tv_usec = left > 0 ? (left % 1000) * 1000 : 1000};

		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	return fd;
}

/* One handshake with endpoint (an acme_probe_fn). */
static bool handshake(void *arg, const char *endpoint, long timeout_ms, char *seen, size_t seenlen)
{
	alpn_probe *pr = arg;
	const unsigned char *sel = NULL;
	unsigned int sellen = 0;
	X509 *peer = NULL;
	SSL *ssl = NULL;
	cs_err err;
	bool ok = false;
	int fd;

	seen[0] = '\0';
	if ((fd = connect_to(endpoint, timeout_ms, seen, seenlen)) < 0)
		return false;
	if ((ssl = SSL_new(pr->ctx)) == NULL || !SSL_set_fd(ssl, fd) ||
	    !SSL_set_tlsext_host_name(ssl, pr->name) || SSL_connect(ssl) != 1) {
		unsigned long reason = ERR_peek_error();

		snprintf(seen, seenlen, "TLS handshake failed%s%s", reason ? ": " : "",
		         reason ? ERR_reason_error_string(reason) : "");
		goto out;
	}
	SSL_get0_alpn_selected(ssl, &sel, &sellen);
	peer = SSL_get1_peer_certificate(ssl);
	if (sellen != sizeof(ALPN) - 2 || memcmp(sel, ALPN + 1, sellen) != 0)
		snprintf(seen, seenlen, "the handshake did not select ALPN acme-tls/1");
	else if (peer == NULL)
		snprintf(seen, seenlen, "no certificate");
	else if (pki_tlsalpn01_check(peer, pr->name, pr->digest, &err) != 0)
		snprintf(seen, seenlen, "%s", err.msg);
	else
		ok = true;
	SSL_shutdown(ssl);
out:
	ERR_clear_error();
	X509_free(peer);
	SSL_free(ssl);
	close(fd);
	return ok;
}

int acme_tlsalpn01_check(const char *const *endpoints, size_t nendpoints, const char *name,
                         const char *key_auth, long wait_ms, const atomic_bool *cancel, acme_err *e)
{
	alpn_probe pr = {.name = name};
	int rc;

	if (acme_tlsalpn01_digest(key_auth, pr.digest, e) != 0)
		return -1;
	pr.ctx = SSL_CTX_new(TLS_client_method());
	if (pr.ctx == NULL || !SSL_CTX_set_min_proto_version(pr.ctx, TLS1_2_VERSION) ||
	    SSL_CTX_set_alpn_protos(pr.ctx, ALPN, sizeof(ALPN) - 1) != 0) {
		SSL_CTX_free(pr.ctx);
		ERR_clear_error();
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "cannot set up TLS for the probe");
	}
	/* the challenge certificate is self-signed: its content is what counts */
	SSL_CTX_set_verify(pr.ctx, SSL_VERIFY_NONE, NULL);
	rc = acme_probe_all("tls-alpn-01", name, endpoints, nendpoints, wait_ms, cancel, handshake,
	                    &pr, e);
	SSL_CTX_free(pr.ctx);
	return rc;
}

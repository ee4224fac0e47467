/* probe.c — the client side of the TLS endpoint: one bounded handshake
 * with an SNI, to learn which certificate a node really serves
 * (`certsync verify --cluster`). */
#include "tls.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "../common/hex.h"
#include "../common/hostport.h"

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for what OpenSSL (or connect) wants, up to the
 * deadline; false on timeout. */
static bool wait_fd(int fd, short events, long long deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	long long left;
	int rc;

	while ((left = deadline - now_ms()) > 0) {
		rc = poll(&pfd, 1, (int)left);
		if (rc > 0)
			return true;
		if (rc < 0 && errno != EINTR)
			return false;
	}
	return false;
}

static int connect_to(const char *endpoint, long long deadline, cs_err *err)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	char host[256], port[8];
	unsigned pnum;
	int fd = -1, rc, soerr = 0;
	socklen_t len = sizeof(soerr);

	if (!cs_hostport_split(endpoint, host, sizeof(host), &pnum, false))
		return cs_fail(err, CS_EUSAGE, "TLS endpoint %s: write HOST:PORT", endpoint);
	snprintf(port, sizeof(port), "%u", pnum);
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		return cs_fail(err, CS_EIO, "TLS endpoint %s: %s", endpoint, gai_strerror(rc));
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno != EINPROGRESS || !wait_fd(fd, POLLOUT, deadline) ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		return cs_fail(err, CS_EIO, "TLS endpoint %s: cannot connect: %s", endpoint,
		               soerr ? strerror(soerr) : "timed out or refused");
	return fd;
}

int tls_probe(const char *endpoint, const char *sni, int timeout_ms, char id_hex[65], cs_err *err)
{
	long long deadline = now_ms() + timeout_ms;
	unsigned char md[32];
	unsigned int mdlen = 0;
	SSL_CTX *ctx = NULL;
	X509 *leaf = NULL;
	SSL *ssl = NULL;
	int fd, rc = -1, r;

	if ((fd = connect_to(endpoint, deadline, err)) < 0)
		return -1;
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(ssl, fd) ||
	    (sni != NULL && !SSL_set_tlsext_host_name(ssl, sni))) {
		cs_fail(err, CS_EIO, "TLS endpoint %s: cannot set up a client", endpoint);
		goto out;
	}
	while ((r = SSL_connect(ssl)) != 1) {
		int e = SSL_get_error(ssl, r);

		if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
		    !wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
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

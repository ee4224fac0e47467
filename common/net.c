/* net.c — see net.h. */
#include "net.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "hostport.h"

int cs_net_addr(const char *s, bool allow_zero, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
	                         .ai_socktype = SOCK_STREAM};
	struct addrinfo *res;
	char host[256], port[8];
	unsigned pnum;

	if (!cs_hostport_split(s, host, sizeof(host), &pnum, allow_zero))
		return -1;
	snprintf(port, sizeof(port), "%u", pnum);
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int cs_net_listen(const struct sockaddr_storage *ss, socklen_t len)
{
	int one = 1, e;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0 &&
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0 &&
	    (ss->ss_family != AF_INET6 ||
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0) &&
	    bind(fd, (const struct sockaddr *)ss, len) == 0 && listen(fd, SOMAXCONN) == 0)
		return fd;
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

bool cs_net_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int64_t left;
	int rc;

	while ((left = deadline - cs_mono_ms()) > 0) {
		rc = poll(&pfd, 1, (int)left);
		if (rc > 0)
			return true;
		if (rc < 0 && errno != EINTR)
			return false;
	}
	return false;
}

/* One address: 0 with *fd connected, else the errno of the failure. */
static int connect_one(const struct addrinfo *ai, int64_t deadline, int *fd)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	*fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (*fd < 0)
		return errno;
	if (connect(*fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return 0;
	if (errno != EINPROGRESS)
		soerr = errno;
	else if (!cs_net_wait(*fd, POLLOUT, deadline))
		soerr = ETIMEDOUT;
	else if (getsockopt(*fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
		soerr = errno;
	if (soerr != 0) {
		close(*fd);
		*fd = -1;
	}
	return soerr;
}

int cs_net_connect(const char *endpoint, int64_t deadline, cs_err *err)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	char host[256], port[8];
	unsigned pnum;
	int fd = -1, rc, last = ETIMEDOUT;

	if (!cs_hostport_split(endpoint, host, sizeof(host), &pnum, false))
		return cs_fail(err, CS_EUSAGE, "not HOST:PORT");
	snprintf(port, sizeof(port), "%u", pnum);
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		return cs_fail(err, CS_EIO, "cannot resolve %s: %s", host, gai_strerror(rc));
	for (ai = res; ai != NULL && fd < 0 && cs_mono_ms() < deadline; ai = ai->ai_next)
		last = connect_one(ai, deadline, &fd);
	freeaddrinfo(res);
	if (fd < 0)
		return cs_fail(err, CS_EIO, "cannot connect: %s", strerror(last));
	return fd;
}

int cs_net_unix_addr(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -1;
	strcpy(sun->sun_path, path);
	return 0;
}

int cs_net_unix_connect(const struct sockaddr_un *sun)
{
	int e, fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0)
		return fd;
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

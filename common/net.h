/* net.h — the socket plumbing every endpoint shares: a numeric listen
 * address, a TCP listener, a TCP connection made within a deadline, waiting
 * on a socket until a deadline, and the control socket's UNIX address and
 * connection.  Addresses are written HOST:PORT (hostport.h splits them);
 * deadlines are on the monotonic clock (clock.h). */
#ifndef CS_NET_H
#define CS_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "err.h"

/* The address of "1.2.3.4:443" or "[::1]:443", numeric only (a listener
 * binds what the operator wrote, never what a name resolves to); port 0
 * too when allow_zero.  -1 when s is not such an address. */
int cs_net_addr(const char *s, bool allow_zero, struct sockaddr_storage *ss, socklen_t *len);

/* A listening TCP socket on ss: non-blocking, close-on-exec, SO_REUSEADDR
 * and SO_REUSEPORT (one socket per worker thread), TCP_NODELAY (accepted
 * sockets inherit it: a handshake flight must not wait for an ACK), IPv6
 * only for an IPv6 address.  -1 with errno. */
int cs_net_listen(const struct sockaddr_storage *ss, socklen_t len);

/* Waits until fd is ready for events (POLLIN, POLLOUT) or the deadline
 * (cs_mono_ms) passes; false on timeout or error. */
bool cs_net_wait(int fd, short events, int64_t deadline);

/* A TCP connection to endpoint (HOST:PORT; a host name is resolved), made
 * before the deadline: a non-blocking, close-on-exec socket, or -1 with err
 * ("not HOST:PORT" (CS_EUSAGE), "cannot resolve HOST: ...", "cannot
 * connect: ..." (CS_EIO)). */
int cs_net_connect(const char *endpoint, int64_t deadline, cs_err *err);

/* The address of the UNIX socket at path; -1 when path does not fit. */
int cs_net_unix_addr(struct sockaddr_un *sun, const char *path);
/* A blocking, close-on-exec connection to the UNIX socket at sun; -1 with
 * errno. */
int cs_net_unix_connect(const struct sockaddr_un *sun);

#endif

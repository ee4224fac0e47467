/* hostport.h — splitting "HOST:PORT" and "[V6]:PORT", the form of every
 * address in the configuration (tls_listen, tls_endpoint) and of the
 * replication endpoints after their "tcp://". */
#ifndef CS_HOSTPORT_H
#define CS_HOSTPORT_H

#include <stdbool.h>
#include <stddef.h>

/* Copies the host (without brackets) into host and the port into *port;
 * false when s is not HOST:PORT with a port of 1 to 65535 (0 too when
 * allow_zero), when an IPv6 address lacks its brackets, or when the host
 * does not fit in hostlen. */
bool cs_hostport_split(const char *s, char *host, size_t hostlen, unsigned *port, bool allow_zero);

/* True when host is a numeric IPv4 or IPv6 address. */
bool cs_host_is_ip(const char *host);

#endif

/* hostport.c — see hostport.h. */
#include "hostport.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

bool cs_hostport_split(const char *s, char *host, size_t hostlen, unsigned *port, bool allow_zero)
{
	const char *hend, *p;
	char *end;
	size_t hlen;
	long n;

	if (s[0] == '[') {
		s++;
		hend = strchr(s, ']');
		if (hend == NULL || hend[1] != ':')
			return false;
		p = hend + 2;
	} else {
		hend = strrchr(s, ':');
		/* A second colon before the last is an IPv6 address without
		 * brackets: its port cannot be told from its last group. */
		if (hend == NULL || memchr(s, ':', (size_t)(hend - s)) != NULL)
			return false;
		p = hend + 1;
	}
	hlen = (size_t)(hend - s);
	if (*p < '0' || *p > '9' || hlen == 0 || hlen >= hostlen)
		return false;
	n = strtol(p, &end, 10);
	if (*end != '\0' || n > 65535 || (n == 0 && !allow_zero))
		return false;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	*port = (unsigned)n;
	return true;
}

bool cs_host_is_ip(const char *host)
{
	unsigned char addr[16];

	return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

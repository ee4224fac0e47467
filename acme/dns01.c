/* dns01.c — publishing the dns-01 TXT record through an RFC 2136 UPDATE
 * signed with TSIG (HMAC-SHA256), and asking the authoritative server for it
 * before the CA is told to validate.  Messages are built, signed, sent and
 * verified by ldns; nothing here writes DNS wire format. */
#include "acme_int.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <ldns/ldns.h>
#include <sodium.h>

#include "../common/hostport.h"

#define DNS_TIMEOUT_MS 10000
#define TSIG_ALGORITHM "hmac-sha256."

/* "REFUSED", "NOTAUTH" ... from ldns's table (ldns_pkt_rcode2str allocates) */
static const char *rcode_name(ldns_pkt_rcode rc)
{
	const ldns_lookup_table *t = ldns_lookup_by_id(ldns_rcodes, (int)rc);

	return t != NULL ? t->name : "an unknown rcode";
}

/* acme_fail with the code the class implies: a server that could not be
 * reached (CS_EIO) or one that said no (CS_EREFUSED). */
__attribute__((format(printf, 3, 4))) static int dns_fail(acme_err *e, acme_errclass cls,
                                                          const char *fmt, ...)
{
	char msg[sizeof(e->err.msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return acme_fail(e, cls == ACME_ERR_TRANSIENT ? CS_EIO : CS_EREFUSED, cls, "%s", msg);
}

/* A resolver that asks server ("HOST:PORT") only, without recursion, over
 * UDP with one retry per address, each exchange bounded by timeout_ms. */
static ldns_resolver *resolver_for(const char *server, long timeout_ms, acme_err *e)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai = NULL;
	char host[256], port_s[8];
	unsigned port;
	ldns_resolver *r;
	struct timeval tv;
	int gai;

	if (!cs_hostport_split(server, host, sizeof(host), &port, false)) {
		acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		          "DNS server \"%.200s\" is not HOST:PORT; write it as ns1.example.com:53",
		          server);
		return NULL;
	}
	snprintf(port_s, sizeof(port_s), "%u", port);
	if ((gai = getaddrinfo(host, port_s, &hints, &ai)) != 0) {
		dns_fail(e, ACME_ERR_TRANSIENT, "DNS server %s: cannot resolve %s: %s", server,
		         host, gai_strerror(gai));
		return NULL;
	}
	if ((r = ldns_resolver_new()) == NULL) {
		freeaddrinfo(ai);
		acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
		return NULL;
	}
	for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
		struct sockaddr_storage ss = {0};
		uint16_t p;
		ldns_rdf *addr;

		memcpy(&ss, a->ai_addr, a->ai_addrlen);
		if ((addr = ldns_sockaddr_storage2rdf(&ss, &p)) != NULL)
			ldns_resolver_push_nameserver(r, addr);
		ldns_rdf_deep_free(addr);
	}
	freeaddrinfo(ai);
	if (timeout_ms <= 0)
		timeout_ms = DNS_TIMEOUT_MS;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	ldns_resolver_set_port(r, (uint16_t)port);
	ldns_resolver_set_recursive(r, false);
	ldns_resolver_set_timeout(r, tv);
	ldns_resolver_set_retry(r, 1);
	ldns_resolver_set_retrans(r, (uint8_t)(tv.tv_sec > 0 ? tv.tv_sec : 1));
	ldns_resolver_set_random(r, false);
	return r;
}

/* Frees r, wiping its copy of the TSIG secret first (ldns frees it as is). */
static void free_resolver(ldns_resolver *r)
{
	char *secret = r != NULL ? (char *)ldns_resolver_tsig_keydata(r) : NULL;

	if (secret != NULL)
		sodium_memzero(secret, strlen(secret));
	if (r != NULL)
		ldns_resolver_deep_free(r);
}

/* The record's owner: "_acme-challenge." + name, "*." dropped, as a dname. */
static ldns_rdf *owner_of(const char *name, acme_err *e)
{
	char fqdn[300];
	ldns_rdf *d = NULL;

	if (strncmp(name, "*.", 2) == 0)
		name += 2;
	if ((size_t)snprintf(fqdn, sizeof(fqdn), "_acme-challenge.%s", name) >= sizeof(fqdn) ||
	    ldns_str2rdf_dname(&d, fqdn) != LDNS_STATUS_OK) {
		acme_fail(e, CS_EINPUT, ACME_ERR_FATAL, "dns-01: \"%.255s\" is not a DNS name",
		          name);
		return NULL;
	}
	return d;
}

/* The server's answer to (owner, type): NULL with e set when there is none. */
static ldns_pkt *ask(ldns_resolver *r, const char *server, const ldns_rdf *owner, ldns_rr_type type,
                     acme_err *e)
{
	ldns_pkt *p = NULL;
	ldns_status s = ldns_resolver_send(&p, r, owner, type, LDNS_RR_CLASS_IN, 0);
	char *o;

	if (s == LDNS_STATUS_OK && p != NULL)
		return p;
	o = ldns_rdf2str(owner);
	dns_fail(e, ACME_ERR_TRANSIENT, "DNS server %s did not answer a query for %s: %s", server,
	         o != NULL ? o : "?", ldns_get_errorstr_by_id(s));
	free(o);
	ldns_pkt_free(p);
	return NULL;
}

/* The zone the server holds owner in: the owner of the SOA it answers with,
 * in the answer or (for a name that does not exist) the authority section. */
static ldns_rdf *zone_of(ldns_resolver *r, const char *server, const ldns_rdf *owner, acme_err *e)
{
	ldns_pkt *p = ask(r, server, owner, LDNS_RR_TYPE_SOA, e);
	ldns_rr_list *sections[2];
	ldns_rdf *zone = NULL;
	char *o;

	if (p == NULL)
		return NULL;
	sections[0] = ldns_pkt_answer(p);
	sections[1] = ldns_pkt_authority(p);
	for (int s = 0; s < 2 && zone == NULL; s++)
		for (size_t i = 0; i < ldns_rr_list_rr_count(sections[s]) && zone == NULL; i++) {
			ldns_rr *rr = ldns_rr_list_rr(sections[s], i);

			if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA && ldns_pkt_aa(p))
				zone = ldns_rdf_clone(ldns_rr_owner(rr));
		}
	if (zone == NULL) {
		o = ldns_rdf2str(owner);
		dns_fail(e, ACME_ERR_OPERATOR,
		         "DNS server %s is not authoritative for %s (answer %s without its zone's "
		         "SOA); set dns_server to the zone's primary server",
		         server, o != NULL ? o : "?", rcode_name(ldns_pkt_get_rcode(p)));
		free(o);
	}
	ldns_pkt_free(p);
	return zone;
}

/* The update: add "owner 60 IN TXT value", or delete exactly that record
 * (class NONE, RFC 2136 §2.5.4), so other names' records stay. */
static ldns_pkt *update_pkt(ldns_rdf *zone, const ldns_rdf *owner, const char *value, bool add)
{
	ldns_rr_list *up = ldns_rr_list_new();
	ldns_rr *rr = ldns_rr_new_frm_type(LDNS_RR_TYPE_TXT);
	ldns_rdf *txt = NULL;
	ldns_pkt *p = NULL;

	if (up == NULL || rr == NULL || ldns_str2rdf_str(&txt, value) != LDNS_STATUS_OK) {
		ldns_rr_list_free(up);
		ldns_rr_free(rr);
		return NULL;
	}
	ldns_rr_set_owner(rr, ldns_rdf_clone(owner));
	ldns_rr_set_ttl(rr, add ? 60 : 0);
	ldns_rr_set_class(rr, add ? LDNS_RR_CLASS_IN : LDNS_RR_CLASS_NONE);
	ldns_rr_push_rdf(rr, txt);
	ldns_rr_list_push_rr(up, rr);
	/* the packet takes the zone name it is given; the lists it copies */
	p = ldns_update_pkt_new(ldns_rdf_clone(zone), LDNS_RR_CLASS_IN, NULL, up, NULL);
	ldns_rr_list_deep_free(up);
	return p;
}

/* The TSIG error of an answer (RFC 8945 §5.3: BADSIG, BADKEY, BADTIME), as
 * " BADKEY", or "". */
static const char *tsig_error(const ldns_pkt *a)
{
	const ldns_rr *t = ldns_pkt_tsig(a);
	const ldns_rdf *err = t != NULL && ldns_rr_rd_count(t) > 5 ? ldns_rr_rdf(t, 5) : NULL;

	switch (err != NULL && ldns_rdf_size(err) == 2 ? ldns_rdf2native_int16(err) : 0) {
	case 16:
		return " BADSIG";
	case 17:
		return " BADKEY";
	case 18:
		return " BADTIME";
	default:
		return "";
	}
}

int acme_dns01_update(const char *server, const acme_tsig_key *key, bool add, const char *name,
                      const char *value, long timeout_ms, acme_err *e)
{
	ldns_resolver *r = resolver_for(server, timeout_ms, e);
	ldns_rdf *owner = r != NULL ? owner_of(name, e) : NULL;
	ldns_rdf *zone = owner != NULL ? zone_of(r, server, owner, e) : NULL;
	ldns_pkt *q = NULL, *a = NULL;
	ldns_status s;
	ldns_pkt_rcode rc;
	int ret = -1;

	if (zone == NULL)
		goto out;
	if ((q = update_pkt(zone, owner, value, add)) == NULL) {
		acme_fail(e, CS_EINPUT, ACME_ERR_FATAL, "dns-01: cannot make the update for %s",
		          name);
		goto out;
	}
	/* ldns signs what it sends and verifies the answer's TSIG with these */
	ldns_resolver_set_tsig_keyname(r, key->name);
	ldns_resolver_set_tsig_algorithm(r, TSIG_ALGORITHM);
	ldns_resolver_set_tsig_keydata(r, key->secret);
	s = ldns_update_pkt_tsig_add(q, r);
	if (s == LDNS_STATUS_OK)
		s = ldns_send(&a, r, q); /* keeps an unsigned answer, unlike send_pkt */
	/* a refusal of the key itself (NOTAUTH) comes unsigned: its rcode
	 * says more than the missing signature */
	if (s == LDNS_STATUS_CRYPTO_TSIG_BOGUS && a != NULL &&
	    ldns_pkt_get_rcode(a) != LDNS_RCODE_NOERROR)
		s = LDNS_STATUS_OK;
	if (s == LDNS_STATUS_CRYPTO_TSIG_BOGUS) {
		dns_fail(e, ACME_ERR_OPERATOR,
		         "DNS server %s: the update's answer does not carry a valid TSIG for key "
		         "%s; check dns_tsig_key_file matches the server's key",
		         server, key->name);
		goto out;
	}
	if (s != LDNS_STATUS_OK || a == NULL) {
		dns_fail(e, ACME_ERR_TRANSIENT,
		         "DNS server %s did not answer the update for %s: %s", server, name,
		         ldns_get_errorstr_by_id(s));
		goto out;
	}
	rc = ldns_pkt_get_rcode(a);
	if (rc != LDNS_RCODE_NOERROR) {
		/* NOTAUTH: the key is unknown or its signature wrong; REFUSED:
		 * the server's policy does not let this key change this name */
		dns_fail(e, rc == LDNS_RCODE_SERVFAIL ? ACME_ERR_TRANSIENT : ACME_ERR_OPERATOR,
		         "DNS server %s refused to %s the TXT record at _acme-challenge.%s with "
		         "TSIG key %s: %s%s%s",
		         server, add ? "add" : "remove", name[0] == '*' ? name + 2 : name,
		         key->name, rcode_name(rc), tsig_error(a),
		         rc == LDNS_RCODE_NOTAUTH
		             ? " (the server does not know the key or its secret differs: check "
		               "dns_tsig_key_file against the server's key)"
		         : rc == LDNS_RCODE_REFUSED
		             ? " (the zone's update policy does not grant this key the name)"
		             : "");
		goto out;
	}
	ret = 0;
out:
	ldns_pkt_free(q);
	ldns_pkt_free(a);
	ldns_rdf_deep_free(zone);
	ldns_rdf_deep_free(owner);
	free_resolver(r);
	return ret;
}

int acme_dns01_check(const char *server, const char *name, const char *value, long timeout_ms,
                     acme_err *e)
{
	ldns_resolver *r = resolver_for(server, timeout_ms, e);
	ldns_rdf *owner = r != NULL ? owner_of(name, e) : NULL;
	ldns_pkt *p = owner != NULL ? ask(r, server, owner, LDNS_RR_TYPE_TXT, e) : NULL;
	ldns_rr_list *ans;
	int found = 0;

	if (p == NULL) {
		found = -1;
		goto out;
	}
	ans = ldns_pkt_answer(p);
	for (size_t i = 0; i < ldns_rr_list_rr_count(ans) && !found; i++) {
		ldns_rr *rr = ldns_rr_list_rr(ans, i);
		ldns_rdf *d = ldns_rr_rd_count(rr) == 1 ? ldns_rr_rdf(rr, 0) : NULL;

		/* a character-string: its length byte, then the value */
		found = ldns_rr_get_type(rr) == LDNS_RR_TYPE_TXT && d != NULL &&
		        ldns_rdf_size(d) == strlen(value) + 1 &&
		        memcmp(ldns_rdf_data(d) + 1, value, strlen(value)) == 0;
	}
out:
	ldns_pkt_free(p);
	ldns_rdf_deep_free(owner);
	free_resolver(r);
	return found;
}

typedef struct dns01_probe {
	const char *name, *value;
} dns01_probe;

/* One query (an acme_probe_fn). */
static bool query_once(void *arg, const char *server, long timeout_ms, char *seen, size_t seenlen)
{
	dns01_probe *pr = arg;
	acme_err e;
	int rc = acme_dns01_check(server, pr->name, pr->value, timeout_ms, &e);

	if (rc == 0)
		snprintf(seen, seenlen, "no TXT record with the value");
	else if (rc < 0)
		snprintf(seen, seenlen, "%s", e.err.msg);
	return rc == 1;
}

int acme_dns01_wait(const char *server, const char *name, const char *value, long wait_ms,
                    const atomic_bool *cancel, acme_err *e)
{
	dns01_probe pr = {.name = name, .value = value};
	char owner[300];

	snprintf(owner, sizeof(owner), "_acme-challenge.%s",
	         strncmp(name, "*.", 2) == 0 ? name + 2 : name);
	return acme_probe_all("dns-01", owner, &server, 1, wait_ms, cancel, query_once, &pr, e);
}

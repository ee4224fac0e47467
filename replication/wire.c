/* wire.c — the replication sockets: one CURVE ROUTER every peer connects to,
 * one CURVE DEALER to each primary-capable peer, the ZAP handler that admits
 * only configured peers' keys, and the envelope on and off the wire.  A
 * message that is not one well-formed envelope from a known peer never
 * leaves this file: it is dropped, counted and logged. */
#include "repl_int.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <zmq.h>

#include "../common/log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define MON_ENDPOINT "inproc://certsync.router-events"
#define ZAP_DOMAIN   "certsync"
#define LOG_EVERY_MS 10000 /* a peer that keeps sending junk is logged this often */

static int set_opts(void *s, const repl *r, bool server, const uint8_t *server_key)
{
	/* libzmq drops a connection over this without a word: twice our own
	 * limit, so that what lies between is seen, counted and logged. */
	int64_t max = 2 * MAX_MSG;
	int linger = 0, one = 1, ivl = r->beat_ms, ttl = r->dead_ms;
	int rc = 0;

	rc |= zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	rc |= zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof(max));
	/* ZMTP heartbeats close a connection whose peer vanished, so a
	 * reconnect starts at once instead of after TCP's timeouts. */
	rc |= zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &ivl, sizeof(ivl));
	rc |= zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &ttl, sizeof(ttl));
	if (server) {
		rc |= zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof(one));
		rc |= zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN));
		rc |= zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
	} else {
		int first = 100, most = 5000;

		rc |= zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_key, REPL_KEY_LEN);
		rc |= zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, r->pub, REPL_KEY_LEN);
		/* Nothing queues for a peer that is not connected: beats are
		 * worthless late, and entries are resent from the acked seq. */
		rc |= zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof(one));
		rc |= zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &first, sizeof(first));
		rc |= zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &most, sizeof(most));
	}
	rc |= zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, r->sec, REPL_KEY_LEN);
	if (server) {
		/* A connection that has not authenticated in this time is closed
		 * by libzmq (its default is 30 s). */
		int hs = REPL_HANDSHAKE_MS;

		rc |= zmq_setsockopt(s, ZMQ_HANDSHAKE_IVL, &hs, sizeof(hs));
	}
	return rc == 0 ? 0 : -1;
}

/* Gives socket s the I/O thread of its own, number thread.  libzmq resolves
 * a peer's host name with a blocking getaddrinfo on the I/O thread of the
 * connecting socket (zeromq/libzmq#2961); when that name stops resolving --
 * a dead container whose name the resolver now forwards to a server it
 * cannot reach -- every lookup of each reconnect stalls that thread for
 * seconds.  On a thread shared with the other sockets, beats to and from
 * every live peer would stall with it, and live peers would be declared
 * down.  So the ROUTER and each DEALER get I/O threads of their own. */
static int own_io_thread(void *s, int thread)
{
	/* Past 64 (affinity is a 64-bit mask), dealers share threads again. */
	uint64_t affinity = (uint64_t)1 << (thread < 64 ? thread : 1 + thread % 63);

	return zmq_setsockopt(s, ZMQ_AFFINITY, &affinity, sizeof(affinity));
}

/* The TCP port the ROUTER bound ("tcp://127.0.0.1:7700"), or 0. */
static unsigned bound_port(void *router)
{
	char ep[256];
	size_t len = sizeof(ep);
	const char *colon;

	if (zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, ep, &len) != 0 ||
	    (colon = strrchr(ep, ':')) == NULL)
		return 0;
	return (unsigned)strtoul(colon + 1, NULL, 10);
}

int wire_open(repl *r, const char *listen, cs_err *err)
{
	int threads = 1;

	for (size_t i = 0; i < r->npeers; i++)
		threads += r->peers[i].role != CS_ROLE_TRAFFIC;
	r->zctx = zmq_ctx_new();
	if (r->zctx == NULL ||
	    zmq_ctx_set(r->zctx, ZMQ_IO_THREADS, threads < 64 ? threads : 64) != 0)
		return cs_fail(err, CS_EIO, "cannot create the ZeroMQ context: %s",
		               zmq_strerror(zmq_errno()));
	/* The ZAP handler must be bound before the first CURVE server socket,
	 * or libzmq admits connections without asking it. */
	r->zap = zmq_socket(r->zctx, ZMQ_REP);
	if (r->zap == NULL || zmq_bind(r->zap, ZAP_ENDPOINT) != 0)
		return cs_fail(err, CS_EIO, "cannot start the ZAP handler: %s",
		               zmq_strerror(zmq_errno()));
	r->router = zmq_socket(r->zctx, ZMQ_ROUTER);
	if (r->router == NULL || set_opts(r->router, r, true, NULL) != 0 ||
	    own_io_thread(r->router, 0) != 0)
		return cs_fail(err, CS_EIO, "cannot set up the replication socket: %s",
		               zmq_strerror(zmq_errno()));
	/* libzmq has no cap on a socket's connections (ZMQ_MAX_SOCKETS counts
	 * sockets, not connections), but its monitor names the descriptor of
	 * each accepted one: wire_watch keeps the count of young ones. */
	r->monitor = zmq_socket(r->zctx, ZMQ_PAIR);
	if (r->monitor == NULL ||
	    zmq_socket_monitor(r->router, MON_ENDPOINT,
	                       ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0 ||
	    zmq_connect(r->monitor, MON_ENDPOINT) != 0)
		return cs_fail(err, CS_EIO, "cannot watch the replication socket: %s",
		               zmq_strerror(zmq_errno()));
	if (zmq_bind(r->router, listen) != 0)
		return cs_fail(err, CS_EUSAGE, "repl_listen %s: cannot bind: %s", listen,
		               zmq_strerror(zmq_errno()));
	r->listen_port = bound_port(r->router);
	threads = 1;
	for (size_t i = 0; i < r->npeers; i++) {
		struct peer *p = &r->peers[i];

		if (p->role == CS_ROLE_TRAFFIC)
			continue;
		p->dealer = zmq_socket(r->zctx, ZMQ_DEALER);
		if (p->dealer == NULL || set_opts(p->dealer, r, false, p->pub) != 0 ||
		    own_io_thread(p->dealer, threads++) != 0)
			return cs_fail(err, CS_EIO, "peer %s: cannot set up a socket: %s", p->name,
			               zmq_strerror(zmq_errno()));
		if (zmq_connect(p->dealer, p->endpoint) != 0)
			return cs_fail(err, CS_EUSAGE, "peer %s: repl_endpoint %s: %s", p->name,
			               p->endpoint, zmq_strerror(zmq_errno()));
	}
	return 0;
}

void wire_close(repl *r)
{
	for (size_t i = 0; i < r->npeers; i++)
		if (r->peers[i].dealer != NULL)
			zmq_close(r->peers[i].dealer);
	if (r->router != NULL)
		zmq_close(r->router);
	if (r->monitor != NULL)
		zmq_close(r->monitor);
	if (r->zap != NULL)
		zmq_close(r->zap);
	if (r->zctx != NULL)
		zmq_ctx_term(r->zctx);
}

/* Every envelope carries our cluster id and the highest epoch we know. */
static void wire_header(repl *r, envelope *env)
{
	if (r->loc.kdf != NULL)
		env->cluster_id = r->loc.kdf->cluster_id;
	env->epoch = r->loc.epoch;
}

int wire_send(repl *r, struct peer *p, envelope *env, bool via_router)
{
	size_t len;
	zmq_msg_t msg;
	void *sock = via_router ? r->router : p->dealer;

	if (sock == NULL || (via_router && p->ridlen == 0))
		return -1;
	wire_header(r, env);
	len = certsync__envelope__get_packed_size(env);
	if ((int64_t)len > MAX_MSG) {
		cs_error("repl: a message of %zu bytes for %s is above the %" PRId64
		         " byte limit; not sent",
		         len, p->name, MAX_MSG);
		return -1;
	}
	if (zmq_msg_init_size(&msg, len) != 0)
		return -1;
	certsync__envelope__pack(env, zmq_msg_data(&msg));
	if (via_router && zmq_send(sock, p->rid, p->ridlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&msg);
		return -1;
	}
	if (zmq_msg_send(&msg, sock, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&msg);
		return -1;
	}
	return 0;
}

void wire_drop(repl *r, struct peer *p, uint64_t *counter, const char *fmt, ...)
{
	int64_t now = cs_mono_ms();
	int64_t *logged = p != NULL ? &p->logged : &r->zap_logged;
	char what[256];
	va_list ap;

	(*counter)++;
	if (*logged != 0 && now - *logged < LOG_EVERY_MS)
		return;
	*logged = now;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	cs_warn("repl: dropped a message from %s: %s", p != NULL ? p->name : "an unknown peer",
	        what);
}

static struct peer *peer_by_key(repl *r, const uint8_t *key)
{
	for (size_t i = 0; i < r->npeers; i++)
		if (memcmp(r->peers[i].pub, key, REPL_KEY_LEN) == 0)
			return &r->peers[i];
	return NULL;
}

struct peer *wire_peer_by_name(repl *r, const char *name)
{
	for (size_t i = 0; name != NULL && i < r->npeers; i++)
		if (strcmp(r->peers[i].name, name) == 0)
			return &r->peers[i];
	return NULL;
}

/* Reads the rest of a multi-part message and throws it away. */
static void drain(void *sock, zmq_msg_t *m)
{
	while (zmq_msg_more(m)) {
		zmq_msg_close(m);
		zmq_msg_init(m);
		if (zmq_msg_recv(m, sock, ZMQ_DONTWAIT) < 0)
			break;
	}
}

/* ZAP (RFC 27): the request is version, request id, domain, address,
 * routing id, mechanism and the credentials (for CURVE, the client's key). */
void wire_zap(repl *r)
{
	enum { NFRAMES = 7 };
	zmq_msg_t f[NFRAMES];
	int n = 0, more = 1, rc = 0;
	struct peer *p = NULL;
	char addr[64] = "?", z85[REPL_Z85_LEN + 1] = "?";

	while (more && n < NFRAMES) {
		zmq_msg_init(&f[n]);
		if (zmq_msg_recv(&f[n], r->zap, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&f[n]);
			break;
		}
		more = zmq_msg_more(&f[n++]);
	}
	if (n < 2)
		goto out; /* no request id to answer to */
	if (!more && n == NFRAMES && zmq_msg_size(&f[5]) == 5 &&
	    memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 && zmq_msg_size(&f[6]) == REPL_KEY_LEN) {
		p = peer_by_key(r, zmq_msg_data(&f[6]));
		zmq_z85_encode(z85, zmq_msg_data(&f[6]), REPL_KEY_LEN);
	}
	if (more)
		drain(r->zap, &f[n - 1]);
	if (p == NULL) {
		if (n > 3)
			snprintf(addr, sizeof(addr), "%.*s", (int)zmq_msg_size(&f[3]),
			         (const char *)zmq_msg_data(&f[3]));
		wire_drop(r, NULL, &r->cnt.unknown_key,
		          "connection from %s refused: CURVE key %s is no configured peer's", addr,
		          z85);
	}
	rc |= zmq_send(r->zap, "1.0", 3, ZMQ_SNDMORE) < 0;
	rc |= zmq_send(r->zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE) < 0;
	rc |= zmq_send(r->zap, p ? "200" : "400", 3, ZMQ_SNDMORE) < 0;
	rc |= zmq_send(r->zap, p ? "OK" : "unknown key", p ? 2 : 11, ZMQ_SNDMORE) < 0;
	rc |= zmq_send(r->zap, p ? p->name : "", p ? strlen(p->name) : 0, ZMQ_SNDMORE) < 0;
	rc |= zmq_send(r->zap, "", 0, 0) < 0;
	if (rc)
		cs_error("repl: cannot answer a ZAP request: %s", zmq_strerror(zmq_errno()));
out:
	for (int i = 0; i < n; i++)
		zmq_msg_close(&f[i]);
}

envelope *wire_decode(repl *r, struct peer *p, const void *data, size_t len)
{
	envelope *env;

	if (len > (size_t)MAX_MSG) {
		wire_drop(r, p, &r->cnt.oversized, "%zu bytes, over the %lld-byte limit", len,
		          (long long)MAX_MSG);
		return NULL;
	}
	env = certsync__envelope__unpack(NULL, len, data);
	if (env == NULL || env->body_case == CERTSYNC__ENVELOPE__BODY__NOT_SET) {
		if (env != NULL)
			certsync__envelope__free_unpacked(env, NULL);
		wire_drop(r, p, &r->cnt.undecodable, "%zu bytes that are no envelope", len);
		return NULL;
	}
	return env;
}

int wire_recv(repl *r, void *sock, struct peer *from, envelope **env, struct peer **p)
{
	zmq_msg_t rid, body;
	bool router = from == NULL;

	*env = NULL;
	*p = from;
	zmq_msg_init(&rid);
	zmq_msg_init(&body);
	if (zmq_msg_recv(router ? &rid : &body, sock, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&rid);
		zmq_msg_close(&body);
		return 0;
	}
	/* A ROUTER always puts the routing id before at least one frame. */
	if (router && (!zmq_msg_more(&rid) || zmq_msg_recv(&body, sock, ZMQ_DONTWAIT) < 0))
		goto out;
	/* ZAP named the sender when it admitted its key. */
	if (router && (*p = wire_peer_by_name(r, zmq_msg_gets(&body, "User-Id"))) == NULL) {
		drain(sock, &body);
		wire_drop(r, NULL, &r->cnt.unknown_key, "no peer behind its connection");
		goto out;
	}
	if (zmq_msg_more(&body)) {
		drain(sock, &body);
		wire_drop(r, *p, &r->cnt.undecodable, "a message of several frames");
		goto out;
	}
	if (router && zmq_msg_size(&body) <= (size_t)MAX_MSG &&
	    zmq_msg_size(&rid) <= sizeof((*p)->rid)) {
		memcpy((*p)->rid, zmq_msg_data(&rid), zmq_msg_size(&rid));
		(*p)->ridlen = zmq_msg_size(&rid);
	}
	*env = wire_decode(r, *p, zmq_msg_data(&body), zmq_msg_size(&body));
out:
	zmq_msg_close(&rid);
	zmq_msg_close(&body);
	return 1;
}

/* Whether fd is still a connection to our replication port: the event is
 * read after the fact, and a descriptor closed meanwhile may have been
 * reused for something else of this process. */
static bool ours(const repl *r, int fd, char *peer, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	unsigned port;
	const void *a;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return false;
	if (ss.ss_family == AF_INET)
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	else if (ss.ss_family == AF_INET6)
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else
		return false;
	sl = sizeof(ss);
	if (port != r->listen_port || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return false;
	a = ss.ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
	                            : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
	if (inet_ntop(ss.ss_family, a, peer, (socklen_t)len) == NULL)
		snprintf(peer, len, "?");
	return true;
}

static void young_forget(repl *r, int fd, int64_t now)
{
	size_t k = 0;

	/* Older than the handshake interval: authenticated, or closed by
	 * libzmq (with a little slack for its timer). */
	for (size_t i = 0; i < r->nyoung; i++)
		if (r->young[i].fd != fd && now - r->young[i].at <= REPL_HANDSHAKE_MS + 500)
			r->young[k++] = r->young[i];
	r->nyoung = k;
}

static void young_add(repl *r, int fd, int64_t now)
{
	char peer[INET6_ADDRSTRLEN];

	young_forget(r, fd, now);
	if (r->nyoung < REPL_MAX_UNAUTHENTICATED) {
		r->young[r->nyoung].fd = fd;
		r->young[r->nyoung++].at = now;
	} else if (ours(r, fd, peer, sizeof(peer))) {
		/* shutdown, not close: the descriptor stays libzmq's, which
		 * sees the connection end and closes it itself. */
		shutdown(fd, SHUT_RDWR);
		wire_drop(r, NULL, &r->cnt.unauthed,
		          "connection from %s cut: %d others have not authenticated yet", peer,
		          REPL_MAX_UNAUTHENTICATED);
	}
}

void wire_watch(repl *r)
{
	for (int i = 0; i < 256; i++) {
		zmq_msg_t head, addr;
		uint16_t event;
		uint32_t value;

		zmq_msg_init(&head);
		if (zmq_msg_recv(&head, r->monitor, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&head);
			return;
		}
		/* Two frames: event (16 bits) and value (32 bits), then the
		 * endpoint. */
		zmq_msg_init(&addr);
		if (zmq_msg_more(&head))
			zmq_msg_recv(&addr, r->monitor, ZMQ_DONTWAIT);
		if (zmq_msg_size(&head) == 6) {
			memcpy(&event, zmq_msg_data(&head), 2);
			memcpy(&value, (uint8_t *)zmq_msg_data(&head) + 2, 4);
			if (event == ZMQ_EVENT_ACCEPTED)
				young_add(r, (int)value, cs_mono_ms());
			else if (event == ZMQ_EVENT_DISCONNECTED)
				young_forget(r, (int)value, cs_mono_ms());
		}
		zmq_msg_close(&addr);
		zmq_msg_close(&head);
	}
}

/* conn.c — the TLS endpoint's connections, on their worker's loop: accept
 * (a batch per wake-up, paused when descriptors run out), admission (the
 * cap per source and the global cap, which evicts the oldest handshake),
 * the handshake driven on the fd with SSL_do_handshake, the minimal HTTP
 * answer, the timeouts and the close (structs recycled per worker). */
#include "server_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "../common/log.h"

/* ---- connections -------------------------------------------------------------- */

static void handshake_done(struct tls_conn *c)
{
	struct tls_worker *w = c->w;

	if (!c->in_handshake)
		return;
	c->in_handshake = false;
	if (c->older != NULL)
		c->older->newer = c->newer;
	else
		w->oldest_hs = c->newer;
	if (c->newer != NULL)
		c->newer->older = c->older;
	else
		w->newest_hs = c->older;
}

void tls_conn_close(struct tls_conn *c, bool polite)
{
	struct tls_worker *w = c->w;

	handshake_done(c);
	if (w->srv->sources != NULL)
		tls_sources_release(w->srv->sources, c->src);

	if (c->ssl != NULL) {
		/* close_notify only where the peer is still listening.
		 * Otherwise mark the SSL shut down anyway: sessions live in
		 * tickets only, and SSL_free would lock the context to drop
		 * an unfinished one from the cache we do not keep. */
		if (polite)
			SSL_shutdown(c->ssl);
		else
			SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
		SSL_free(c->ssl);
	}
	ERR_clear_error();
	event_del(&c->rev);
	event_del(&c->wev);
	event_del(&c->timer);
	close(c->fd);
	tls_table_free(c->hs.table);
	free(c->in);
	free(c->out);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->open = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	atomic_fetch_sub_explicit(&w->srv->open, 1, memory_order_relaxed);
	if (w->nspare < SPARE_CONNS) {
		c->next = w->spare;
		w->spare = c;
		w->nspare++;
	} else {
		free(c);
	}
}

/* After an SSL call that did not complete: wait for what it needs, or close
 * the connection (a handshake that ends so has failed). */
static void conn_wait(struct tls_conn *c, int r)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return; /* the read event is persistent */
	case SSL_ERROR_WANT_WRITE:
		/* Reading waits too: a level-triggered read event on unread
		 * bytes would spin until the socket drains. */
		if (event_del(&c->rev) == 0 && event_add(&c->wev, NULL) == 0)
			return;
		break;
	default:
		break;
	}
	if (c->state == CONN_HANDSHAKE)
		add_relaxed(&c->w->failed);
	tls_conn_close(c, false);
}

static void http_drive(struct tls_conn *c)
{
	tls_server *srv = c->w->srv;
	tls_http_info info = {srv->node_name, srv->role, c->hs.sni, c->hs.cert_id, false};
	long used;
	int r;

	for (;;) {
		if (c->out != NULL) {
			/* A client that asks for something will likely come
			 * back: one TLS 1.3 ticket, ahead of the first answer. */
			if (!c->ticketed && SSL_version(c->ssl) == TLS1_3_VERSION)
				SSL_new_session_ticket(c->ssl);
			c->ticketed = true;
			if ((r = SSL_write(c->ssl, c->out, (int)c->outlen)) <= 0) {
				conn_wait(c, r);
				return;
			}
			free(c->out);
			c->out = NULL;
			if (!c->keep) {
				tls_conn_close(c, true);
				return;
			}
			event_add(&c->timer, c->w->ka_tv);
		}
		if (c->inlen > 0) {
			info.healthy = tls_server_healthy(srv);
			used = tls_http_answer(c->in, c->inlen, HTTP_IN_MAX, &info, &c->out,
			                       &c->outlen, &c->keep);
			if (used < 0) {
				tls_conn_close(c, false);
				return;
			}
			if (used > 0) {
				c->inlen -= (size_t)used;
				memmove(c->in, c->in + used, c->inlen);
				continue;
			}
		}
		if (c->in == NULL && (c->in = malloc(HTTP_IN_MAX)) == NULL) {
			tls_conn_close(c, false);
			return;
		}
		if ((r = SSL_read(c->ssl, c->in + c->inlen, (int)(HTTP_IN_MAX - c->inlen))) <= 0) {
			conn_wait(c, r);
			return;
		}
		c->inlen += (size_t)r;
	}
}

/* The first bytes arrived: only now does the connection cost an SSL. */
static int conn_begin(struct tls_conn *c)
{
	struct tls_worker *w = c->w;

	if ((c->ssl = SSL_new(w->ctx)) == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		add_relaxed(&w->failed);
		tls_conn_close(c, false);
		return -1;
	}
	SSL_set_accept_state(c->ssl);
	SSL_set_app_data(c->ssl, &c->hs);
	c->hs.table = tls_server_table(w->srv);
	c->state = CONN_HANDSHAKE;
	/* It spoke: from now on it has the whole handshake timeout. */
	if (event_add(&c->timer, w->hs_tv) < 0) {
		tls_conn_close(c, false);
		return -1;
	}
	return 0;
}

static void conn_drive(struct tls_conn *c)
{
	int r;

	if (c->state == CONN_NEW && conn_begin(c) < 0)
		return;
	if (c->state == CONN_HANDSHAKE) {
		if ((r = SSL_do_handshake(c->ssl)) != 1) {
			conn_wait(c, r);
			return;
		}
		add_relaxed(&c->w->done);
		handshake_done(c);
		/* The certificate is the SSL's now; old tables need not wait
		 * for keep-alive connections. */
		tls_table_free(c->hs.table);
		c->hs.table = NULL;
		c->state = CONN_HTTP;
		event_add(&c->timer, c->w->ka_tv);
	}
	http_drive(c);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_drive(arg);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct tls_conn *c = arg;

	(void)fd;
	(void)what;
	if (event_add(&c->rev, NULL) < 0) {
		tls_conn_close(c, false);
		return;
	}
	conn_drive(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct tls_conn *c = arg;

	(void)fd;
	(void)what;
	add_relaxed(&c->w->timed_out);
	if (c->state == CONN_HANDSHAKE)
		add_relaxed(&c->w->failed);
	tls_conn_close(c, false);
}

static void conn_start(struct tls_worker *w, int fd, const uint8_t src[TLS_SRC_KEY_LEN])
{
	struct tls_conn *c = w->spare;

	if (c != NULL) {
		w->spare = c->next;
		w->nspare--;
		memset(c, 0, sizeof(*c));
	} else if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		atomic_fetch_sub_explicit(&w->srv->open, 1, memory_order_relaxed);
		if (w->srv->sources != NULL)
			tls_sources_release(w->srv->sources, src);
		return;
	}
	c->w = w;
	c->fd = fd;
	memcpy(c->src, src, TLS_SRC_KEY_LEN);
	c->hs.tickets = &w->tickets;
	c->hs.acme = w->srv->acme;
	c->next = w->open;
	if (w->open != NULL)
		w->open->prev = c;
	w->open = c;
	c->in_handshake = true;
	c->older = w->newest_hs;
	if (w->newest_hs != NULL)
		w->newest_hs->newer = c;
	else
		w->oldest_hs = c;
	w->newest_hs = c;
	event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, on_io, c);
	event_assign(&c->wev, w->base, fd, EV_WRITE, on_writable, c);
	evtimer_assign(&c->timer, w->base, on_timeout, c);
	if (event_add(&c->rev, NULL) < 0 || event_add(&c->timer, w->silent_tv) < 0)
		tls_conn_close(c, false);
}

/* Whether a new connection from src may open: within its source's cap, and
 * within the global cap, if need be by closing this worker's oldest
 * connection still in its handshake.  Counts it when it may. */
static bool admit(struct tls_worker *w, const uint8_t src[TLS_SRC_KEY_LEN])
{
	tls_server *srv = w->srv;

	if (srv->sources != NULL && !tls_sources_take(srv->sources, src)) {
		add_relaxed(&w->refused);
		add_relaxed(&w->per_source);
		return false;
	}
	/* Room is made before the new one counts, so open never shows more
	 * than the cap for longer than a worker's check. */
	if (atomic_load_explicit(&srv->open, memory_order_relaxed) >= srv->max_conns &&
	    w->oldest_hs != NULL) {
		add_relaxed(&w->evicted);
		if (w->oldest_hs->state == CONN_HANDSHAKE)
			add_relaxed(&w->failed);
		tls_conn_close(w->oldest_hs, false);
	}
	if (atomic_fetch_add_explicit(&srv->open, 1, memory_order_relaxed) < srv->max_conns)
		return true;
	atomic_fetch_sub_explicit(&srv->open, 1, memory_order_relaxed);
	if (srv->sources != NULL)
		tls_sources_release(srv->sources, src);
	add_relaxed(&w->refused);
	return false;
}

/* ---- accepting ---- */

static void listeners_enable(struct tls_worker *w, bool on)
{
	for (size_t i = 0; i < w->srv->naddrs; i++) {
		if (on)
			event_add(&w->ls[i].ev, NULL);
		else
			event_del(&w->ls[i].ev);
	}
}

void tls_conn_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	listeners_enable(arg, true);
}

void tls_conn_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct tls_worker *w = arg;
	int hs_ms = atomic_load_explicit(&w->srv->hs_timeout_ms, memory_order_relaxed);

	(void)what;
	/* New connections take a handshake timeout SIGHUP changed; those in
	 * their handshake keep theirs. */
	if (hs_ms != w->hs_ms && tls_worker_timeouts(w, hs_ms) < 0)
		cs_warn("tls: cannot use a handshake timeout of %d ms; keeping the one before",
		        hs_ms);
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sslen = sizeof(ss);
		uint8_t src[TLS_SRC_KEY_LEN];
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* The backlog stays readable: without a pause
				 * this loop would spin. */
				struct timeval tv = {0, EMFILE_PAUSE_MS * 1000};

				cs_warn("tls: cannot accept: %s; pausing %d ms", strerror(errno),
				        EMFILE_PAUSE_MS);
				listeners_enable(w, false);
				evtimer_add(&w->resume_ev, &tv);
			}
			return;
		}
		add_relaxed(&w->accepted);
		tls_source_key((struct sockaddr *)&ss, src);
		if (!admit(w, src)) {
			close(fd);
			continue;
		}
		conn_start(w, fd, src);
	}
}

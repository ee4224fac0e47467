/* control.c — the control socket: a libevent server in the agent and a
 * blocking client in the operator command.  See control.h for the protocol.
 *
 * The server bounds what clients can hold: CS_CONTROL_MAX_CONNS connections
 * (at the cap the oldest one still sending its request makes room), each
 * closed after CS_CONTROL_IDLE_MS without a byte, a request line of at most
 * CS_CONTROL_MAX_REQUEST and CS_CONTROL_MAX_BUFFERED of unfinished requests
 * in all; when accept runs out of descriptors the listener pauses instead
 * of spinning on the readable backlog. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <sodium.h>

#include "../common/log.h"
#include "../common/net.h"

#define CLIENT_TIMEOUT_MS (300 * 1000) /* an RSA 4096 key can take a while */
#define ACCEPT_PAUSE_MS   100          /* out of descriptors: stop accepting this long */
#define SEND_NOW_IOV      16           /* an answer sent while stopping spans few chains */

struct cs_control {
	struct evconnlistener *listener;
	struct event *resume; /* re-enables the listener after a pause */
	char *path;
	cs_control_fn fn;
	void *ctx;
	struct conn *conns;           /* every open connection, freed on close */
	struct conn *current;         /* the connection whose request runs now */
	cs_control_pending *deferred; /* set when that request is answered later */
	cs_control_pending *pending;  /* every request still to answer */
	size_t nconns;
	size_t buffered; /* bytes of unfinished request lines, every connection */
};

/* One client connection.  It lives from accept until its answer is flushed,
 * the client hangs up or the control socket closes, whichever comes first. */
struct conn {
	struct conn *prev, *next;
	cs_control *ctl;
	struct bufferevent *bev;
	cs_control_pending *pending; /* the deferred request it waits for, if any */
	bool reading;                /* still sending its request */
	size_t held;                 /* its share of ctl->buffered */
	size_t scanned;              /* bytes of its input known to hold no newline */
};

struct cs_control_pending {
	cs_control_pending *next;
	cs_control *ctl;   /* NULL once the control socket closed */
	struct conn *conn; /* NULL once the client hung up or the socket closed */
};

/* ---- wiping allocator ---------------------------------------------------- */

/* Every block carries its size in front so free can wipe it whole. */
typedef union {
	size_t size;
	max_align_t align;
} block_head;

static void *wipe_malloc(size_t n)
{
	block_head *h = malloc(sizeof(*h) + n);

	if (h == NULL)
		return NULL;
	h->size = n;
	return h + 1;
}

static void wipe_free(void *p)
{
	block_head *h;

	if (p == NULL)
		return;
	h = (block_head *)p - 1;
	sodium_memzero(p, h->size);
	free(h);
}

static void *wipe_realloc(void *p, size_t n)
{
	void *q;

	if (p == NULL)
		return wipe_malloc(n);
	q = wipe_malloc(n);
	if (q == NULL)
		return NULL;
	size_t old = ((block_head *)p - 1)->size;
	memcpy(q, p, old < n ? old : n);
	wipe_free(p);
	return q;
}

/* libevent's own warnings (an accept that fails, say) go through our log
 * and its rate limit instead of straight to stderr. */
static void event_log(int severity, const char *msg)
{
	cs_log(severity <= EVENT_LOG_DEBUG  ? CS_LOG_DEBUG
	       : severity == EVENT_LOG_MSG  ? CS_LOG_INFO
	       : severity == EVENT_LOG_WARN ? CS_LOG_WARN
	                                    : CS_LOG_ERROR,
	       "libevent: %s", msg);
}

void cs_control_init(void)
{
	json_set_alloc_funcs(wipe_malloc, wipe_free);
	event_set_mem_functions(wipe_malloc, wipe_realloc, wipe_free);
	event_set_log_callback(event_log);
}

/* ---- binary data ------------------------------------------------------------ */

json_t *cs_control_base64(const uint8_t *data, size_t len)
{
	size_t n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
	char *b64 = sodium_malloc(n);
	json_t *j;

	if (b64 == NULL)
		return NULL;
	sodium_bin2base64(b64, n, data, len, sodium_base64_VARIANT_ORIGINAL);
	j = json_string(b64);
	sodium_free(b64);
	return j;
}

int cs_control_unbase64(const char *s, uint8_t **data, size_t *len)
{
	size_t cap = strlen(s);
	uint8_t *buf = sodium_malloc(cap + 1);

	if (buf == NULL)
		return -1;
	if (sodium_base642bin(buf, cap + 1, s, cap, NULL, len, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0) {
		sodium_free(buf);
		return -1;
	}
	*data = buf;
	return 0;
}

/* ---- server ---------------------------------------------------------------- */

static json_t *error_json(enum cs_errcode code, const char *msg)
{
	return json_pack("{s:b, s:{s:s, s:s}}", "ok", 0, "error", "code", cs_err_name(code),
	                 "message", msg);
}

/* A message may quote what it refuses (a PEM label, say) in bytes that are
 * not UTF-8, which JSON cannot carry: then every byte outside ASCII becomes
 * '?', so the client still gets its answer. */
static json_t *error_answer(const cs_err *err)
{
	json_t *answer = error_json(err->code, err->msg);
	char ascii[sizeof(err->msg)];

	if (answer != NULL)
		return answer;
	for (size_t i = 0; i < sizeof(ascii); i++)
		ascii[i] = (unsigned char)err->msg[i] < 0x80 ? err->msg[i] : '?';
	ascii[sizeof(ascii) - 1] = '\0';
	return error_json(err->code, ascii);
}

json_t *cs_control_run(const char *line, size_t len, cs_control_fn fn, void *ctx)
{
	json_error_t jerr;
	json_t *req, *args, *result, *answer;
	const char *cmd;
	cs_err err = {0};

	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL) {
		cs_fail(&err, CS_EUSAGE, "control request is not valid JSON (%s at byte %d)",
		        jerr.text, jerr.position);
		return error_answer(&err);
	}
	cmd = json_string_value(json_object_get(req, "cmd"));
	args = json_object_get(req, "args");
	if (!json_is_object(req) || cmd == NULL || (args != NULL && !json_is_object(args))) {
		json_decref(req);
		cs_fail(&err, CS_EUSAGE,
		        "control request must be an object with a string \"cmd\" and an object "
		        "\"args\"");
		return error_answer(&err);
	}
	if (args == NULL)
		args = json_object_set_new(req, "args", json_object()) == 0
		           ? json_object_get(req, "args")
		           : NULL;
	result = args ? fn(ctx, cmd, args, &err) : NULL;
	json_decref(req);
	if (result == NULL)
		return error_answer(&err);
	answer = json_pack("{s:b, s:o}", "ok", 1, "result", result);
	return answer;
}

static void conn_close(struct conn *c)
{
	c->ctl->buffered -= c->held;
	c->ctl->nconns--;
	if (c->pending != NULL)
		c->pending->conn = NULL;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		c->ctl->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	bufferevent_free(c->bev);
	free(c);
}

static void close_when_flushed(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_close(arg);
}

static void on_error(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	conn_close(arg);
}

static void answer_and_close(struct conn *c, json_t *answer)
{
	char *text = answer ? json_dumps(answer, JSON_COMPACT) : NULL;

	json_decref(answer);
	bufferevent_disable(c->bev, EV_READ);
	c->reading = false;
	if (text == NULL) {
		conn_close(c);
		return;
	}
	bufferevent_write(c->bev, text, strlen(text));
	bufferevent_write(c->bev, "\n", 1);
	wipe_free(text);
	bufferevent_setcb(c->bev, NULL, close_when_flushed, on_error, c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	cs_control *ctl = c->ctl;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	struct evbuffer_ptr eol;
	cs_err err = {0};
	json_t *answer;
	char *line;

	/* Only the new bytes are searched: a long line is scanned once. */
	ctl->buffered += len - c->held;
	c->held = len;
	if (evbuffer_ptr_set(in, &eol, c->scanned, EVBUFFER_PTR_SET) == 0)
		eol = evbuffer_search_eol(in, &eol, NULL, EVBUFFER_EOL_LF);
	else
		eol.pos = -1;
	if (eol.pos < 0) {
		c->scanned = len;
		if (len > CS_CONTROL_MAX_REQUEST)
			cs_fail(&err, CS_EUSAGE,
			        "control request is larger than %u MiB; send files of a few "
			        "MiB at a time",
			        CS_CONTROL_MAX_REQUEST >> 20);
		else if (ctl->buffered > CS_CONTROL_MAX_BUFFERED)
			cs_fail(&err, CS_EREFUSED,
			        "control requests being sent hold more than %u MiB in all; "
			        "retry when the others are done",
			        CS_CONTROL_MAX_BUFFERED >> 20);
		if (err.code != CS_OK) {
			cs_warn("control: %s", err.msg);
			answer_and_close(c, error_answer(&err));
		}
		return;
	}
	ctl->buffered -= c->held;
	c->held = 0;
	line = wipe_malloc((size_t)eol.pos + 1);
	if (line == NULL) {
		conn_close(c);
		return;
	}
	evbuffer_remove(in, line, (size_t)eol.pos + 1);
	ctl->current = c;
	ctl->deferred = NULL;
	answer = cs_control_run(line, (size_t)eol.pos, ctl->fn, ctl->ctx);
	ctl->current = NULL;
	wipe_free(line);
	if (ctl->deferred != NULL)
		json_decref(answer);
	else
		answer_and_close(c, answer);
}

cs_control_pending *cs_control_defer(cs_control *ctl)
{
	cs_control_pending *p;

	if (ctl->current == NULL || (p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->conn = ctl->current;
	p->conn->pending = p;
	p->ctl = ctl;
	p->next = ctl->pending;
	ctl->pending = p;
	ctl->deferred = p;
	/* Reading stops, but a hang-up still reaches on_error, which tells p. */
	bufferevent_disable(p->conn->bev, EV_READ);
	p->conn->reading = false;
	bufferevent_setcb(p->conn->bev, NULL, NULL, on_error, p->conn);
	return p;
}

void cs_control_answer(cs_control_pending *p, json_t *result, const cs_err *err)
{
	json_t *answer =
	    result != NULL ? json_pack("{s:b, s:o}", "ok", 1, "result", result) : error_answer(err);

	cs_control_pending **link;

	if (p->conn != NULL) {
		p->conn->pending = NULL;
		answer_and_close(p->conn, answer);
	} else {
		json_decref(answer);
	}
	for (link = p->ctl ? &p->ctl->pending : NULL; link && *link; link = &(*link)->next) {
		if (*link == p) {
			*link = p->next;
			break;
		}
	}
	free(p);
}

/* The oldest connection still sending its request, or NULL. */
static struct conn *oldest_reading(cs_control *ctl)
{
	struct conn *oldest = NULL;

	for (struct conn *c = ctl->conns; c != NULL; c = c->next)
		if (c->reading)
			oldest = c; /* new connections go first: the last one is the oldest */
	return oldest;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	static const struct timeval idle = {CS_CONTROL_IDLE_MS / 1000,
	                                    CS_CONTROL_IDLE_MS % 1000 * 1000};
	cs_control *ctl = arg;
	struct conn *c, *old;

	(void)sa;
	(void)salen;
	/* An operator's command must get through a flood of idle clients:
	 * the oldest of them makes room. */
	if (ctl->nconns >= CS_CONTROL_MAX_CONNS) {
		if ((old = oldest_reading(ctl)) == NULL) {
			cs_warn("control: %d connections wait for answers; refusing another",
			        CS_CONTROL_MAX_CONNS);
			close(fd);
			return;
		}
		cs_warn("control: %d connections open; closing the oldest that has not sent "
		        "its request",
		        CS_CONTROL_MAX_CONNS);
		conn_close(old);
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd,
	                                                  BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		free(c);
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->reading = true;
	c->next = ctl->conns;
	if (ctl->conns != NULL)
		ctl->conns->prev = c;
	ctl->conns = c;
	ctl->nconns++;
	bufferevent_setcb(c->bev, on_read, NULL, on_error, c);
	/* The read timeout runs only while reading is enabled: a request
	 * waiting for the followers is not idle. */
	bufferevent_set_timeouts(c->bev, &idle, &idle);
	bufferevent_enable(c->bev, EV_READ);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evconnlistener_enable(arg);
}

/* accept failed for another reason than a client that left: out of
 * descriptors or memory.  The backlog stays readable, so the listener
 * pauses briefly instead of spinning. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	static const struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
	cs_control *ctl = arg;

	cs_warn("control: cannot accept: %s; pausing %d ms", strerror(errno), ACCEPT_PAUSE_MS);
	evconnlistener_disable(l);
	evtimer_add(ctl->resume, &pause);
}

static int fill_addr(struct sockaddr_un *sun, const char *path, cs_err *err)
{
	if (cs_net_unix_addr(sun, path) < 0)
		return cs_fail(err, CS_EUSAGE,
		               "control_socket %s is longer than %zu characters; choose a shorter "
		               "path",
		               path, sizeof(sun->sun_path) - 1);
	return 0;
}

/* A socket file left by an agent that died is removed; one where an agent
 * still answers is not ours to take, nor is anything that is no socket (a
 * mistyped path must not cost the operator a file). */
static int claim_path(const struct sockaddr_un *sun, const char *path, cs_err *err)
{
	struct stat st;
	int fd;

	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return cs_fail(err, CS_EUSAGE,
		               "control_socket %s exists and is not a socket; certsync removes "
		               "only a socket: choose another path, or move that file away",
		               path);
	if ((fd = cs_net_unix_connect(sun)) >= 0) {
		close(fd);
		return cs_fail(err, CS_EREFUSED,
		               "control_socket %s is in use by another running agent; stop it or "
		               "choose another path",
		               path);
	}
	/* Only a socket nothing listens on is a dead agent's. */
	if (errno != ECONNREFUSED && errno != ENOENT)
		return cs_fail(err, CS_EIO,
		               "control_socket %s: cannot tell whether an agent uses it: %s", path,
		               strerror(errno));
	if (unlink(path) < 0 && errno != ENOENT)
		return cs_fail(err, CS_EIO, "control_socket %s: cannot remove the old socket: %s",
		               path, strerror(errno));
	return 0;
}

int cs_control_listen(cs_control **out, struct event_base *base, const char *path, cs_control_fn fn,
                      void *ctx, cs_err *err)
{
	struct sockaddr_un sun;
	cs_control *ctl;
	mode_t old_mask;
	int fd, rc;

	if (fill_addr(&sun, path, err) < 0 || claim_path(&sun, path, err) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return cs_fail(err, CS_EIO, "socket: %s", strerror(errno));
	/* The umask makes the socket 0600 from its first moment. */
	old_mask = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old_mask);
	if (rc < 0 || chmod(path, 0600) < 0) {
		cs_fail(err, CS_EIO,
		        "control_socket %s: cannot bind: %s; check that its folder "
		        "exists and is writable",
		        path, strerror(errno));
		close(fd);
		return -1;
	}
	ctl = calloc(1, sizeof(*ctl));
	if (ctl == NULL || (ctl->path = strdup(path)) == NULL) {
		free(ctl);
		close(fd);
		unlink(path);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	ctl->fn = fn;
	ctl->ctx = ctx;
	ctl->listener = evconnlistener_new(base, on_accept, ctl, LEV_OPT_CLOSE_ON_FREE, 16, fd);
	if (ctl->listener != NULL &&
	    (ctl->resume = evtimer_new(base, on_resume, ctl->listener)) == NULL) {
		evconnlistener_free(ctl->listener);
		ctl->listener = NULL;
		fd = -1; /* the listener closed it */
	}
	if (ctl->listener == NULL) {
		if (fd >= 0)
			close(fd);
		cs_control_close(ctl);
		return cs_fail(err, CS_EIO, "control_socket %s: cannot listen", path);
	}
	evconnlistener_set_error_cb(ctl->listener, on_accept_error);
	*out = ctl;
	return 0;
}

/* Writes what c's output holds, as far as the socket takes it without
 * waiting.  The bufferevent keeps its output's start frozen for its own
 * writes, so the bytes are read in place. */
static void send_now(struct conn *c)
{
	struct evbuffer_iovec v[SEND_NOW_IOV];
	struct iovec iov[SEND_NOW_IOV];
	int n = evbuffer_peek(bufferevent_get_output(c->bev), -1, NULL, v, SEND_NOW_IOV);

	if (n > SEND_NOW_IOV)
		n = SEND_NOW_IOV;
	for (int i = 0; i < n; i++)
		iov[i] = (struct iovec){v[i].iov_base, v[i].iov_len};
	if (n > 0 && writev(bufferevent_getfd(c->bev), iov, n) < 0)
		cs_debug("control: an answer could not be sent while stopping");
}

void cs_control_close(cs_control *ctl)
{
	if (ctl == NULL)
		return;
	if (ctl->resume != NULL)
		event_free(ctl->resume);
	if (ctl->listener != NULL)
		evconnlistener_free(ctl->listener);
	/* Answers the loop had no pass left to send (those of requests the
	 * stopping worker gave up) go out now; other open connections close
	 * unanswered, and requests still waiting are later answered to nobody. */
	while (ctl->conns != NULL) {
		send_now(ctl->conns);
		conn_close(ctl->conns);
	}
	for (cs_control_pending *p = ctl->pending; p != NULL; p = p->next)
		p->ctl = NULL;
	unlink(ctl->path);
	free(ctl->path);
	free(ctl);
}

/* ---- client ---------------------------------------------------------------- */

/* MSG_NOSIGNAL: an agent that closes the connection early (a request over
 * its bounds) gives EPIPE, not a SIGPIPE that kills the command before it
 * reads why. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads until the answer's newline or end of stream into a wiped buffer. */
static char *read_answer(int fd, size_t *len, cs_err *err)
{
	size_t cap = 4096, n = 0;
	char *buf = wipe_malloc(cap);

	while (buf != NULL) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t got;

		if (poll(&pfd, 1, CLIENT_TIMEOUT_MS) == 0) {
			wipe_free(buf);
			cs_fail(err, CS_EIO, "the agent did not answer within %d s",
			        CLIENT_TIMEOUT_MS / 1000);
			return NULL;
		}
		if (n == cap) {
			char *bigger = wipe_realloc(buf, cap * 2);

			if (bigger == NULL)
				break;
			buf = bigger;
			cap *= 2;
		}
		got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += (size_t)got;
		if (memchr(buf + n - (size_t)got, '\n', (size_t)got) != NULL)
			break;
	}
	if (buf == NULL || n == 0) {
		wipe_free(buf);
		cs_fail(err, CS_EIO, "the agent closed the control connection without an answer");
		return NULL;
	}
	*len = n;
	return buf;
}

static int parse_answer(const char *buf, size_t len, json_t **result, cs_err *err)
{
	json_t *answer = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, NULL);
	const char *code, *message;
	json_t *error;

	if (answer == NULL)
		return cs_fail(err, CS_EIO, "the agent's answer is not valid JSON");
	if (json_is_true(json_object_get(answer, "ok"))) {
		*result = json_incref(json_object_get(answer, "result"));
		json_decref(answer);
		return *result ? 0 : cs_fail(err, CS_EIO, "the agent's answer has no result");
	}
	error = json_object_get(answer, "error");
	code = json_string_value(json_object_get(error, "code"));
	message = json_string_value(json_object_get(error, "message"));
	cs_fail(err, cs_err_code(code ? code : ""), "%s", message ? message : "the agent failed");
	json_decref(answer);
	return -1;
}

int cs_control_call(const char *path, const char *cmd, json_t *args, json_t **result, cs_err *err)
{
	struct sockaddr_un sun;
	json_t *req;
	char *text, *answer;
	size_t len;
	bool closed;
	int fd, rc;

	if (fill_addr(&sun, path, err) < 0)
		return -1;
	if ((fd = cs_net_unix_connect(&sun)) < 0)
		return cs_fail(err, CS_EIO,
		               "cannot reach the agent at %s: %s; is `certsync agent` running?",
		               path, strerror(errno));
	req = json_pack("{s:s, s:O}", "cmd", cmd, "args", args);
	text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (text == NULL) {
		close(fd);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	rc = write_all(fd, text, strlen(text)) == 0 && write_all(fd, "\n", 1) == 0;
	closed = !rc && (errno == EPIPE || errno == ECONNRESET);
	wipe_free(text);
	/* An agent that closed before the whole request arrived may have said
	 * why first: that answer is the one to give. */
	if (!rc && !closed) {
		close(fd);
		return cs_fail(err, CS_EIO, "cannot send the request to the agent at %s", path);
	}
	answer = read_answer(fd, &len, err);
	close(fd);
	if (answer == NULL && !rc)
		return cs_fail(err, CS_EIO,
		               "the agent at %s closed the connection before the whole request "
		               "arrived",
		               path);
	if (answer == NULL)
		return CS_CONTROL_NO_ANSWER;
	rc = parse_answer(answer, len, result, err);
	wipe_free(answer);
	return rc;
}

/* control.h — the control socket between `certsync` and the local agent.
 *
 * A UNIX stream socket, mode 0600.  One request per connection: a line of
 * JSON {"cmd": NAME, "args": {...}} and one line back, either
 * {"ok": true, "result": {...}} or {"ok": false, "error": {"code", "message"}}.
 * Requests may carry secrets (a PKCS#12 password, a key file); every buffer
 * that held one is wiped when freed (cs_control_init). */
#ifndef CS_CONTROL_H
#define CS_CONTROL_H

#include <event2/event.h>
#include <jansson.h>
#include <stdint.h>

#include "../common/err.h"

/* Largest request line accepted: room for a few imported files in base64. */
#define CS_CONTROL_MAX_REQUEST (48u << 20)
/* Unfinished request lines of every connection together: a few clients
 * sending huge requests cannot take the agent's memory. */
#define CS_CONTROL_MAX_BUFFERED (64u << 20)
/* Connections open at once; at the cap the oldest one still sending its
 * request is closed, so an operator's command always gets through. */
#define CS_CONTROL_MAX_CONNS 32
/* A connection that sends nothing (or reads nothing of its answer) this
 * long is closed. */
#define CS_CONTROL_IDLE_MS 10000

/* Makes jansson and libevent wipe every block they free.  Call once, before
 * any other use of either library.  Afterwards, memory either library hands
 * out (json_dumps, evbuffer_readln) must not reach free or realloc: use
 * json_dumpb into a buffer of one's own, or evbuffer_remove. */
void cs_control_init(void);

/* Runs one request; returns the result (a new reference) or NULL with err. */
typedef json_t *(*cs_control_fn)(void *ctx, const char *cmd, json_t *args, cs_err *err);

typedef struct cs_control cs_control;

/* Parses one request line (without its newline) and runs it through fn:
 * the answer to send back, {"ok": true, "result"} or {"ok": false,
 * "error"}, as a new reference; NULL only when out of memory.  The server
 * runs every request through it; so does the fuzz target. */
json_t *cs_control_run(const char *line, size_t len, cs_control_fn fn, void *ctx);

/* Binds path (refusing it when another agent answers there), 0600, and
 * serves requests on base. */
int cs_control_listen(cs_control **out, struct event_base *base, const char *path, cs_control_fn fn,
                      void *ctx, cs_err *err);
/* Stops listening and removes the socket file. */
void cs_control_close(cs_control *ctl);

/* A request answered later (a change waiting for the followers'
 * acknowledgements).  Called by the cs_control_fn while it runs a request,
 * cs_control_defer keeps that connection open and the fn's return is
 * ignored; cs_control_answer later sends result (a reference it takes) or,
 * when result is NULL, the error in err, and frees the pending request.  A
 * client that hung up in between gets nothing. */
typedef struct cs_control_pending cs_control_pending;
cs_control_pending *cs_control_defer(cs_control *ctl);
void cs_control_answer(cs_control_pending *p, json_t *result, const cs_err *err);

/* Binary data (files, exports) travels as base64 strings.  Both sides may
 * carry key material, so the intermediate text is wiped. */
json_t *cs_control_base64(const uint8_t *data, size_t len);
/* Decodes a base64 string into sodium_malloc'd memory (free with
 * sodium_free); -1 when s is not base64. */
int cs_control_unbase64(const char *s, uint8_t **data, size_t *len);

/* Client side: sends one request and waits for its answer.  On success
 * *result is a new reference; an error answer fills err with its code and
 * message (-1).  CS_CONTROL_NO_ANSWER when the request was sent but the
 * connection ended without an answer: the agent may have run it. */
#define CS_CONTROL_NO_ANSWER (-2)
int cs_control_call(const char *path, const char *cmd, json_t *args, json_t **result, cs_err *err);

#endif

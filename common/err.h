/* err.h — errors that travel up with context.
 *
 * A function that fails fills a cs_err and returns -1; each caller on the way
 * up may prefix what it was doing ("import ca.pem: "), and only the edge (the
 * command line, the control server) prints or logs it, once.  The code says
 * what kind of failure it was, so the edge can pick the exit status. */
#ifndef CS_ERR_H
#define CS_ERR_H

#include <stddef.h>

enum cs_errcode {
	CS_OK = 0,
	CS_EINPUT,    /* the input is malformed or unsupported: a check failed */
	CS_ENOTFOUND, /* the named thing does not exist */
	CS_EEXIST,    /* the thing is already there; nothing changed */
	CS_EREFUSED,  /* a rule or the node's role refuses the request */
	CS_EUSAGE,    /* bad flags or configuration: exit status 2 */
	CS_ECRYPTO,   /* a seal did not open: wrong passphrase or a tampered record */
	CS_EIO,       /* the disk, a socket or a library failed */
};

typedef struct cs_err {
	enum cs_errcode code;
	char msg[1024];
} cs_err;

/* On a function whose result says whether a secret opened, a key was
 * derived or a change reached the disk: ignoring it is a bug the compiler
 * catches. */
#define CS_MUST_CHECK __attribute__((warn_unused_result))

/* Sets err (when not NULL) and returns -1, so `return cs_fail(...)` reads well. */
int cs_fail(cs_err *err, enum cs_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with more context; returns -1. */
int cs_err_prefix(cs_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The exit status an operator command returns for this code (0, 1 or 2). */
int cs_err_exit_status(enum cs_errcode code);

/* A stable lower-case name for the code, used in JSON answers. */
const char *cs_err_name(enum cs_errcode code);
/* The code a name stands for; CS_EIO for a name it does not know. */
enum cs_errcode cs_err_code(const char *name);

#endif

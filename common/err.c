/* err.c — see err.h. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int cs_fail(cs_err *err, enum cs_errcode code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

int cs_err_prefix(cs_err *err, const char *fmt, ...)
{
	char prefix[512];
	size_t plen, olen, room = sizeof(err->msg) - 1;
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	plen = strlen(prefix);
	olen = strlen(err->msg);
	if (olen > room - plen)
		olen = room - plen; /* the end of a long message gives way */
	memmove(err->msg + plen, err->msg, olen);
	memcpy(err->msg, prefix, plen);
	err->msg[plen + olen] = '\0';
	return -1;
}

int cs_err_exit_status(enum cs_errcode code)
{
	switch (code) {
	case CS_OK:
		return 0;
	case CS_EUSAGE:
		return 2;
	default:
		return 1;
	}
}

static const char *const names[] = {
    [CS_OK] = "ok",          [CS_EINPUT] = "bad-input", [CS_ENOTFOUND] = "not-found",
    [CS_EEXIST] = "exists",  [CS_EREFUSED] = "refused", [CS_EUSAGE] = "usage",
    [CS_ECRYPTO] = "crypto", [CS_EIO] = "io",
};
#define NCODES (sizeof(names) / sizeof(names[0]))

const char *cs_err_name(enum cs_errcode code)
{
	if ((size_t)code < NCODES && names[code] != NULL)
		return names[code];
	return "error";
}

enum cs_errcode cs_err_code(const char *name)
{
	for (size_t i = 0; i < NCODES; i++)
		if (names[i] != NULL && strcmp(names[i], name) == 0)
			return (enum cs_errcode)i;
	return CS_EIO;
}

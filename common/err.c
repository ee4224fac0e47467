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
	char old[sizeof(err->msg)];
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(err->msg, sizeof(err->msg), "%s%s", prefix, old);
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

const char *cs_err_name(enum cs_errcode code)
{
	static const char *const names[] = {
		[CS_OK] = "ok",		  [CS_EINPUT] = "bad-input", [CS_ENOTFOUND] = "not-found",
		[CS_EEXIST] = "exists",	  [CS_EREFUSED] = "refused", [CS_EUSAGE] = "usage",
		[CS_ECRYPTO] = "crypto",  [CS_EIO] = "io",
	};

	if ((size_t)code < sizeof(names) / sizeof(names[0]) && names[code] != NULL)
		return names[code];
	return "error";
}

/* log.c — see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum cs_log_level min_level = CS_LOG_INFO;

void cs_log_set_level(enum cs_log_level level)
{
	min_level = level;
}

int cs_log_parse_level(const char *name, enum cs_log_level *out)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};

	for (int i = 0; i < 4; i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (enum cs_log_level)i;
			return 0;
		}
	}
	return -1;
}

void cs_log(enum cs_log_level level, const char *fmt, ...)
{
	static const char *const tags[] = {"debug", "info ", "warn ", "error"};
	char when[32], line[2048];
	struct tm tm;
	time_t now;
	va_list ap;

	if (level < min_level)
		return;
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One fprintf per line keeps lines whole when threads log at once. */
	fprintf(stderr, "%s %s %s\n", when, tags[level], line);
}

/* log.c — see log.h.
 *
 * Warnings, errors and debug lines are rate-limited per format string (a
 * call site, or the text itself when the format is a bare "%s"); info lines
 * are the record of what changed (each change, each follower) and only
 * operators and configured peers cause them, so they are never held back.
 * A token bucket per format
 * lets a burst of LOG_BURST lines through, then one a second; what it holds
 * back is counted and the next line of that format says how many.  So an
 * error that repeats in a loop (accept failing for lack of descriptors, a
 * peer sending junk) costs a line a second, not the disk. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"

#define LOG_SLOTS 256 /* formats tracked at once; a collision only resets a bucket */
#define LOG_BURST 5   /* lines of one format let through at once */

struct log_slot {
	uintptr_t key;
	int64_t last; /* monotonic second the bucket was last refilled */
	unsigned tokens;
	unsigned long suppressed;
};

static enum cs_log_level min_level = CS_LOG_INFO;
static struct log_slot slots[LOG_SLOTS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

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

/* FNV-1a of the line: the key of a bare "%s" format, whose call sites log
 * many different messages. */
static uintptr_t text_key(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (uintptr_t)(h | 1); /* odd: never a format's (aligned or not) address by chance */
}

/* Whether a line of key may be written now; *held is set to how many of
 * its lines were held back since the last one written. */
static int log_allowed(uintptr_t key, unsigned long *held)
{
	struct log_slot *s = &slots[(key >> 3) % LOG_SLOTS];
	struct timespec ts;
	int ok;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	pthread_mutex_lock(&slots_lock);
	if (s->key != key) {
		s->key = key;
		s->last = ts.tv_sec;
		s->tokens = LOG_BURST;
		s->suppressed = 0;
	} else if (ts.tv_sec > s->last) {
		int64_t add = ts.tv_sec - s->last;

		s->tokens = add >= LOG_BURST || s->tokens + add >= LOG_BURST
		                ? LOG_BURST
		                : s->tokens + (unsigned)add;
		s->last = ts.tv_sec;
	}
	ok = s->tokens > 0;
	if (ok) {
		s->tokens--;
		*held = s->suppressed;
		s->suppressed = 0;
	} else {
		s->suppressed++;
	}
	pthread_mutex_unlock(&slots_lock);
	return ok;
}

void cs_log(enum cs_log_level level, const char *fmt, ...)
{
	static const char *const tags[] = {"debug", "info ", "warn ", "error"};
	char when[CS_ISO_TIME_LEN], line[2048], more[64] = "";
	unsigned long held = 0;
	va_list ap;

	if (level < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (level != CS_LOG_INFO &&
	    !log_allowed(strcmp(fmt, "%s") == 0 ? text_key(line) : (uintptr_t)fmt, &held))
		return;
	if (held > 0)
		snprintf(more, sizeof(more), " (%lu similar lines suppressed)", held);
	cs_iso_time(time(NULL), when);
	/* One fprintf per line keeps lines whole when threads log at once. */
	fprintf(stderr, "%s %s %s%s\n", when, tags[level], line, more);
}

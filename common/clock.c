/* clock.c — see clock.h. */
#include "clock.h"

#include <inttypes.h>
#include <stdio.h>

#define DAY 86400

int64_t cs_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cs_iso_time(int64_t t, char out[CS_ISO_TIME_LEN])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(out, CS_ISO_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, CS_ISO_TIME_LEN, "%" PRId64, t);
}

long long cs_days_left(time_t not_after, time_t now)
{
	return ((long long)not_after - (long long)now + DAY - 1) / DAY;
}

const char *cs_days_text(long long days, char out[32])
{
	snprintf(out, 32, "%lld day%s", days, days == 1 ? "" : "s");
	return out;
}

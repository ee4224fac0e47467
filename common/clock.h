/* clock.h — time as certsync tells and measures it: the one monotonic clock
 * (timeouts, deadlines, "heard N ms ago"), the one way a moment is written
 * (ISO 8601 UTC, as every JSON answer and log line has it), and the one rule
 * for the days left before an expiry. */
#ifndef CS_CLOCK_H
#define CS_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC: for intervals only, never a date. */
int64_t cs_mono_ms(void);

/* "2027-11-22T07:00:00Z" into out; the number of seconds when the time
 * cannot be shown as a date. */
#define CS_ISO_TIME_LEN 32
void cs_iso_time(int64_t t, char out[CS_ISO_TIME_LEN]);

/* Whole days from now until not_after, a part of a day counting as a day:
 * "expires in 1 day" until it has expired.  Every message that tells days
 * left uses it, with cs_days_text for the wording. */
long long cs_days_left(time_t not_after, time_t now);
/* "1 day" or "N days" into out. */
const char *cs_days_text(long long days, char out[32]);

#endif

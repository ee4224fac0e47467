/* schedule.c — when to renew a certificate, when to try again after a
 * failure, and when to ask the CA's renewalInfo again: pure arithmetic on
 * the lifetime, so short-lived certificates (6 days) and long ones (90
 * days) follow the same rules. */
#include "acme.h"

/* lo + r/2^32 of (hi - lo), for hi >= lo. */
static time_t spread(time_t lo, time_t hi, uint32_t r)
{
	return lo + (time_t)(((uint64_t)(hi - lo) * r) >> 32);
}

time_t acme_emergency_line(time_t not_before, time_t not_after)
{
	return not_after - (not_after - not_before) / 20;
}

time_t acme_renewal_time(time_t not_before, time_t not_after, const acme_renewal_info *ari,
                         time_t now, uint32_t r)
{
	time_t lifetime = not_after - not_before, lo, at;

	if (now >= acme_emergency_line(not_before, not_after) || lifetime <= 0)
		return now;
	if (ari != NULL && ari->end > ari->start) {
		lo = ari->start > now ? ari->start : now;
		return lo >= ari->end ? now : spread(lo, ari->end, r);
	}
	lo = not_after - lifetime / 3;
	at = spread(lo, lo + lifetime / 30, r);
	return at > now ? at : now;
}

time_t acme_retry_time(unsigned failures, time_t now, long retry_after, time_t line)
{
	long delay = ACME_BACKOFF_MIN;
	time_t at;

	for (unsigned i = 1; i < failures && delay < ACME_BACKOFF_MAX; i++)
		delay *= 2;
	if (delay > ACME_BACKOFF_MAX)
		delay = ACME_BACKOFF_MAX;
	at = now + delay;
	if (line != 0 && line > now && at > line)
		at = line;
	if (retry_after > 0 && now + retry_after > at)
		at = now + retry_after; /* asking sooner only meets the same answer */
	return at;
}

time_t acme_ari_next_poll(time_t now, long retry_after)
{
	if (retry_after < 0)
		return now + ACME_ARI_POLL_DEFAULT;
	if (retry_after < ACME_ARI_POLL_MIN)
		return now + ACME_ARI_POLL_MIN;
	return now + (retry_after > ACME_ARI_POLL_MAX ? ACME_ARI_POLL_MAX : retry_after);
}

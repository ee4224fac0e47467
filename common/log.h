/* log.h — leveled logging to stderr, the agent's only log sink.
 *
 * Lines look like "2026-11-22T07:30:01Z warn  store: ..." so an operator can
 * grep by level.  Never pass key material or a passphrase to these.
 *
 * Warnings, errors and debug lines of one format (one call site) are
 * rate-limited: a burst of five, then one a second, and the next line
 * written says how many were held back ("(N similar lines suppressed)").  A
 * bare "%s" format is limited per text instead, as its call sites log many
 * different messages.  Info lines, the record of each change, never are:
 * keep them to what operators and configured peers cause. */
#ifndef CS_LOG_H
#define CS_LOG_H

enum cs_log_level { CS_LOG_DEBUG, CS_LOG_INFO, CS_LOG_WARN, CS_LOG_ERROR };

/* Lines below this level are dropped; the default is CS_LOG_INFO. */
void cs_log_set_level(enum cs_log_level level);
/* Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int cs_log_parse_level(const char *name, enum cs_log_level *out);

void cs_log(enum cs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The word for n things: CS_PLURAL(n, "entry", "entries"). */
#define CS_PLURAL(n, one, many) ((n) == 1 ? (one) : (many))

#define cs_debug(...) cs_log(CS_LOG_DEBUG, __VA_ARGS__)
#define cs_info(...)  cs_log(CS_LOG_INFO, __VA_ARGS__)
#define cs_warn(...)  cs_log(CS_LOG_WARN, __VA_ARGS__)
#define cs_error(...) cs_log(CS_LOG_ERROR, __VA_ARGS__)

#endif

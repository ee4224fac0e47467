/* verify.c — the four checks of `certsync verify` on one certificate:
 * coverage of the cluster's host names, a complete chain, the private key,
 * and validity with early renewal warnings. */
#include "pki_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../common/clock.h"

#define FAIL_DAYS 25
#define WARN_DAYS 30

enum { CHECK_COVERAGE, CHECK_CHAIN, CHECK_KEY, CHECK_VALIDITY };

static const char *const check_names[PKI_NCHECKS] = {"coverage", "chain", "key", "validity"};

/* Appends to a check's detail; a detail too long for it is cut short. */
__attribute__((format(printf, 2, 3))) static void say(pki_check *c, const char *fmt, ...)
{
	size_t n = strlen(c->detail);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->detail + n, sizeof(c->detail) - n, fmt, ap);
	va_end(ap);
}

static void say_list(pki_check *c, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		say(c, "%s%s", i > 0 ? ", " : "", names[i]);
}

static void check_coverage(pki_check *c, X509 *leaf, const pki_sans *sans, const char *const *hosts,
                           size_t nhosts)
{
	size_t missing = 0;

	for (size_t i = 0; i < nhosts; i++)
		if (!pki_covers(leaf, hosts[i]))
			say(c, "%s%s", missing++ > 0 ? ", " : "does not cover ", hosts[i]);
	if (missing > 0) {
		c->status = PKI_CHECK_FAIL;
		say(c, " (SANs: ");
		if (sans->n == 0)
			say(c, "none");
		say_list(c, (const char *const *)sans->names, sans->n);
		say(c, ")");
	} else if (nhosts == 0) {
		say(c, "no host names to check");
	} else {
		say(c, "covers ");
		say_list(c, hosts, nhosts);
	}
}

static void check_chain(pki_check *c, X509 *leaf, STACK_OF(X509) * pool)
{
	STACK_OF(X509) * chain;
	pki_chain_status st;
	char name[512];
	X509 *last, *at;
	cs_err err;
	int n;

	if (pki_chain_check(leaf, pool, true, &chain, &st, &err) < 0) {
		c->status = PKI_CHECK_FAIL;
		say(c, "%s", err.msg);
		return;
	}
	n = sk_X509_num(chain);
	last = n > 0 ? sk_X509_value(chain, n - 1) : leaf;
	if (st.error == X509_V_OK && n == 0) {
		say(c, "self-signed: clients must be told to trust this certificate itself");
	} else if (st.error == X509_V_OK) {
		pki_name_text(X509_get_subject_name(last), name, sizeof(name));
		say(c, "complete: %d issuer%s, up to %s", n, n > 1 ? "s" : "", name);
	} else if (st.error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
	           st.error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY) {
		c->status = PKI_CHECK_FAIL;
		pki_name_text(X509_get_issuer_name(last), name, sizeof(name));
		say(c,
		    "chain incomplete: no issuer found for %s; import the intermediate and root "
		    "certificates",
		    name);
	} else {
		c->status = PKI_CHECK_FAIL;
		at = st.depth > 0 && st.depth <= n ? sk_X509_value(chain, st.depth - 1) : leaf;
		pki_name_text(X509_get_subject_name(at), name, sizeof(name));
		say(c, "chain invalid at %s: %s", name, X509_verify_cert_error_string(st.error));
	}
	sk_X509_pop_free(chain, X509_free);
}

static void check_key(pki_check *c, X509 *leaf, EVP_PKEY *key)
{
	char type[16];

	if (key == NULL) {
		c->status = PKI_CHECK_FAIL;
		say(c, "no private key held for this certificate");
	} else if (!pki_key_matches(leaf, key)) {
		c->status = PKI_CHECK_FAIL;
		say(c, "the private key held does not match this certificate");
	} else {
		pki_key_type(key, type, sizeof(type));
		say(c, "the %s private key matches", type);
	}
}

static void day_text(time_t t, char out[16])
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(out, 16, "%Y-%m-%d", &tm) == 0)
		snprintf(out, 16, "?");
}

static void check_validity(pki_check *c, const pki_cert_info *info, time_t now)
{
	char day[16], left[32];
	long long days;

	if (now < info->not_before) {
		c->status = PKI_CHECK_FAIL;
		day_text(info->not_before, day);
		say(c, "not valid before %s", day);
		return;
	}
	day_text(info->not_after, day);
	if (now >= info->not_after) {
		c->status = PKI_CHECK_FAIL;
		say(c, "expired on %s", day);
		return;
	}
	days = cs_days_left(info->not_after, now);
	cs_days_text(days, left);
	if (days <= FAIL_DAYS) {
		c->status = PKI_CHECK_FAIL;
		say(c, "expires in %s (%s): renew now", left, day);
	} else if (days <= WARN_DAYS) {
		c->status = PKI_CHECK_WARN;
		say(c, "expires in %s (%s)", left, day);
	} else {
		say(c, "valid until %s (%s left)", day, left);
	}
}

pki_check_status pki_verify(X509 *leaf, STACK_OF(X509) * pool, EVP_PKEY *key,
                            const char *const *hosts, size_t nhosts, time_t now,
                            pki_check checks[PKI_NCHECKS])
{
	pki_check_status worst = PKI_CHECK_OK;
	pki_cert_info info;
	cs_err err;

	for (int i = 0; i < PKI_NCHECKS; i++) {
		checks[i].name = check_names[i];
		checks[i].status = PKI_CHECK_OK;
		checks[i].detail[0] = '\0';
	}
	if (pki_cert_inspect(leaf, &info, &err) < 0) {
		for (int i = 0; i < PKI_NCHECKS; i++) {
			checks[i].status = PKI_CHECK_FAIL;
			say(&checks[i], "cannot read the certificate: %s", err.msg);
		}
		return PKI_CHECK_FAIL;
	}
	check_coverage(&checks[CHECK_COVERAGE], leaf, &info.sans, hosts, nhosts);
	check_chain(&checks[CHECK_CHAIN], leaf, pool);
	check_key(&checks[CHECK_KEY], leaf, key);
	check_validity(&checks[CHECK_VALIDITY], &info, now);
	pki_cert_info_free(&info);
	for (int i = 0; i < PKI_NCHECKS; i++)
		if (checks[i].status > worst)
			worst = checks[i].status;
	return worst;
}

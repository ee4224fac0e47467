/* subject.c — the rules a new certificate's subject must meet before
 * anything is signed: ISO 3166 country codes, field lengths, DNS and IP SAN
 * syntax, wildcards, and the common name as first SAN. */
#include "pki_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ISO 3166-1 alpha-2, every officially assigned code (249), in order. */
static const char countries[] = "ADAEAFAGAIALAMAOAQARASATAUAWAXAZ"
                                "BABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBYBZ"
                                "CACCCDCFCGCHCICKCLCMCNCOCRCUCVCWCXCYCZ"
                                "DEDJDKDMDODZ"
                                "ECEEEGEHERESET"
                                "FIFJFKFMFOFR"
                                "GAGBGDGEGFGGGHGIGLGMGNGPGQGRGSGTGUGWGY"
                                "HKHMHNHRHTHU"
                                "IDIEILIMINIOIQIRISIT"
                                "JEJMJOJP"
                                "KEKGKHKIKMKNKPKRKWKYKZ"
                                "LALBLCLILKLRLSLTLULVLY"
                                "MAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZ"
                                "NANCNENFNGNINLNONPNRNUNZ"
                                "OM"
                                "PAPEPFPGPHPKPLPMPNPRPSPTPWPY"
                                "QA"
                                "RERORSRURW"
                                "SASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZ"
                                "TCTDTFTGTHTJTKTLTMTNTOTRTTTVTWTZ"
                                "UAUGUMUSUYUZ"
                                "VAVCVEVGVIVNVU"
                                "WFWS"
                                "YEYT"
                                "ZAZMZW";

#define DNS_MAX 253

bool pki_country_valid(const char *cc)
{
	if (cc == NULL || strlen(cc) != 2)
		return false;
	for (size_t i = 0; i + 1 < sizeof(countries); i += 2)
		if (countries[i] == cc[0] && countries[i + 1] == cc[1])
			return true;
	return false;
}

int pki_sans_add(pki_sans *sans, const char *name)
{
	char **names = realloc(sans->names, (sans->n + 1) * sizeof(*names));

	if (names == NULL)
		return -1;
	sans->names = names;
	if ((names[sans->n] = strdup(name)) == NULL)
		return -1;
	sans->n++;
	return 0;
}

void pki_sans_free(pki_sans *sans)
{
	for (size_t i = 0; i < sans->n; i++)
		free(sans->names[i]);
	free(sans->names);
	sans->names = NULL;
	sans->n = 0;
}

static bool listed(const pki_sans *sans, const char *name)
{
	for (size_t i = 0; i < sans->n; i++)
		if (strcmp(sans->names[i], name) == 0)
			return true;
	return false;
}

/* Lower-cases name into out without one trailing dot (the absolute form
 * names the same host); false when it does not fit. */
static bool dns_fold(const char *name, char out[DNS_MAX + 2])
{
	size_t n = strlen(name);

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n > DNS_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)name[i]);
	out[n] = '\0';
	return true;
}

/* Why a folded name is not a valid DNS SAN, or NULL when it is.  A
 * wildcard must be the whole left-most label with two labels after it, so
 * that it can never match a whole public suffix. */
static const char *dns_problem(const char *name)
{
	const char *label = name, *dot;
	size_t labels = 0, len;
	bool digits;

	if (*name == '\0')
		return "the name is empty";
	for (;;) {
		dot = strchr(label, '.');
		len = dot != NULL ? (size_t)(dot - label) : strlen(label);
		if (len == 0 || len > 63)
			return "each dot-separated label needs 1 to 63 characters";
		digits = true;
		for (size_t i = 0; i < len; i++) {
			char c = label[i];

			if (c == '*' && (labels > 0 || len > 1))
				return "a wildcard is allowed only as the whole left-most label, "
				       "as in *.example.com";
			if (c != '*' && c != '-' && !isalnum((unsigned char)c))
				return "a DNS name holds only letters, digits, '-' and '.' "
				       "(international names in their xn-- form)";
			digits = digits && isdigit((unsigned char)c);
		}
		if (label[0] == '-' || label[len - 1] == '-')
			return "a label cannot start or end with '-'";
		labels++;
		if (dot == NULL)
			break;
		label = dot + 1;
	}
	if (name[0] == '*' && labels < 3)
		return "a wildcard needs at least two labels after it, as in *.example.com";
	if (digits)
		return "it is not an IP address, and a DNS name cannot end in an all-digit label";
	return NULL;
}

const char *pki_hostname_problem(const char *name)
{
	char folded[DNS_MAX + 2];

	if (!dns_fold(name, folded))
		return "a DNS name has at most 253 characters";
	if (strchr(folded, '*') != NULL)
		return "a node's name is one host, not a wildcard";
	return dns_problem(folded);
}

/* The canonical text of an IPv4 or IPv6 literal in out; false when name
 * is neither. */
static bool ip_text(const char *name, char out[INET6_ADDRSTRLEN])
{
	unsigned char addr[16];

	if (inet_pton(AF_INET, name, addr) == 1)
		return inet_ntop(AF_INET, addr, out, INET6_ADDRSTRLEN) != NULL;
	if (inet_pton(AF_INET6, name, addr) == 1)
		return inet_ntop(AF_INET6, addr, out, INET6_ADDRSTRLEN) != NULL;
	return false;
}

/* Checks one given SAN and appends its canonical form unless listed. */
static int add_san(pki_sans *sans, const char *name, cs_err *err)
{
	char folded[DNS_MAX + 2], ip[INET6_ADDRSTRLEN];
	const char *why;

	if (ip_text(name, ip)) {
		strcpy(folded, ip);
	} else if (!dns_fold(name, folded)) {
		return cs_fail(err, CS_EINPUT,
		               "SAN %.64s...: a DNS name has at most 253 characters", name);
	} else if ((why = dns_problem(folded)) != NULL) {
		return cs_fail(err, CS_EINPUT, "SAN %s: %s", name, why);
	}
	if (!listed(sans, folded) && pki_sans_add(sans, folded) < 0)
		return cs_fail(err, CS_EIO, "out of memory");
	return 0;
}

/* Number of characters in UTF-8 text: X.520 bounds count characters. */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static int check_fields(const pki_subject *subj, cs_err *err)
{
	/* Upper bounds of RFC 5280 appendix A (ub-common-name and others). */
	const struct {
		const char *label, *value;
		size_t max;
	} fields[] = {
	    {"state", subj->state, 128},
	    {"locality", subj->locality, 128},
	    {"organization", subj->org, 64},
	    {"organizational unit", subj->unit, 64},
	    {"common name", subj->common_name, 64},
	};
	const char *cc = subj->country;

	if ((cc == NULL || *cc == '\0') && !subj->names_only)
		return cs_fail(
		    err, CS_EINPUT,
		    "a country code is required (ISO 3166 alpha-2, for example US, GB, DE)");
	if (cc != NULL && *cc != '\0' && !pki_country_valid(cc)) {
		if (strlen(cc) == 2) {
			char upper[3] = {(char)toupper((unsigned char)cc[0]),
			                 (char)toupper((unsigned char)cc[1]), '\0'};

			if (pki_country_valid(upper))
				return cs_fail(err, CS_EINPUT,
				               "country code %s must be upper case: %s", cc, upper);
		}
		return cs_fail(
		    err, CS_EINPUT,
		    "country code %.16s is not an ISO 3166 alpha-2 code (for example US, "
		    "GB, DE)",
		    cc);
	}
	if (subj->common_name == NULL || *subj->common_name == '\0')
		return cs_fail(err, CS_EINPUT, "a common name is required");
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i].value != NULL && utf8_chars(fields[i].value) > fields[i].max)
			return cs_fail(err, CS_EINPUT, "the %s is longer than %zu characters",
			               fields[i].label, fields[i].max);
	if (subj->days < 0 || subj->days > 3650)
		return cs_fail(err, CS_EINPUT,
		               "a validity of %d days is out of range; use 1 to 3650", subj->days);
	return 0;
}

/* Puts the common name first when it is a DNS name with a dot (or a valid
 * wildcard) that the SANs do not list yet: clients match SANs only. */
static int add_common_name(pki_sans *sans, const char *cn, char *note, size_t notelen, cs_err *err)
{
	char folded[DNS_MAX + 2];
	char *first;

	if (!dns_fold(cn, folded) || strchr(folded, '.') == NULL || dns_problem(folded) != NULL ||
	    listed(sans, folded))
		return 0;
	if (pki_sans_add(sans, folded) < 0)
		return cs_fail(err, CS_EIO, "out of memory");
	first = sans->names[sans->n - 1];
	memmove(sans->names + 1, sans->names, (sans->n - 1) * sizeof(*sans->names));
	sans->names[0] = first;
	if (note != NULL && notelen > 0)
		snprintf(note, notelen, "common name %s was added as the first SAN", folded);
	return 0;
}

int pki_subject_check(const pki_subject *subj, pki_sans *sans, char *note, size_t notelen,
                      cs_err *err)
{
	pki_sans out = {NULL, 0};

	*sans = out;
	if (note != NULL && notelen > 0)
		note[0] = '\0';
	if (check_fields(subj, err) < 0)
		return -1;
	for (size_t i = 0; i < subj->nsans; i++)
		if (add_san(&out, subj->sans[i] != NULL ? subj->sans[i] : "", err) < 0)
			goto fail;
	if (add_common_name(&out, subj->common_name, note, notelen, err) < 0)
		goto fail;
	if (out.n == 0) {
		cs_fail(err, CS_EINPUT,
		        "at least one --san is required (the common name becomes one only when "
		        "it is a fully qualified DNS name)");
		goto fail;
	}
	*sans = out;
	return 0;
fail:
	pki_sans_free(&out);
	return -1;
}

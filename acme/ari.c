/* ari.c — ACME Renewal Information (RFC 9773): the CertID of a certificate
 * and the CA's suggested renewal window for it. */
#include "acme_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

int acme_ari_certid(X509 *cert, char *out, size_t outlen, acme_err *e)
{
	const ASN1_OCTET_STRING *kid = X509_get0_authority_key_id(cert);
	const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
	uint8_t *der = NULL;
	char *k64 = NULL, *s64 = NULL;
	int derlen, rc = -1;

	if (kid == NULL || ASN1_STRING_length(kid) == 0)
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		                 "the certificate has no Authority Key Identifier; it has no ARI "
		                 "CertID");
	/* the serial's DER without tag and length: a serial is at most 20
	 * bytes (RFC 5280), so the length is one byte */
	derlen = i2d_ASN1_INTEGER(serial, &der);
	if (derlen > 2 && derlen < 2 + 127 &&
	    (k64 = acme_b64url(ASN1_STRING_get0_data(kid), (size_t)ASN1_STRING_length(kid))) &&
	    (s64 = acme_b64url(der + 2, (size_t)derlen - 2)) != NULL &&
	    (size_t)snprintf(out, outlen, "%s.%s", k64, s64) < outlen)
		rc = 0;
	else
		acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		          "cannot form the certificate's ARI CertID (serial of %d bytes)", derlen);
	OPENSSL_free(der);
	free(k64);
	free(s64);
	return rc;
}

int acme_ari_fetch(acme_client *c, const char *certid, acme_renewal_info *out, acme_err *e)
{
	const char *base = acme_directory_url(c, "renewalInfo");
	char url[1024];
	acme_http_resp r;
	json_t *doc, *win;
	const char *start, *end;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	out->retry_after = -1;
	if (base == NULL)
		return acme_fail(e, CS_ENOTFOUND, ACME_ERR_FATAL,
		                 "the CA's directory has no renewalInfo (ARI)");
	if ((size_t)snprintf(url, sizeof(url), "%s%s%s", base,
	                     base[0] && base[strlen(base) - 1] == '/' ? "" : "/",
	                     certid) >= sizeof(url))
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL, "renewalInfo URL too long");
	if (acme_http(c, ACME_REQ_RENEWAL_INFO, "GET", url, NULL, "application/json", &r, e) != 0)
		return cs_err_prefix(&e->err, "renewalInfo: ");
	if (r.status != 200) {
		acme_http_error(&r, "renewalInfo", url, e);
		acme_http_resp_free(&r);
		return -1;
	}
	out->retry_after = r.retry_after;
	doc = acme_json_object(&r, "renewalInfo", url, e);
	acme_http_resp_free(&r);
	if (doc == NULL)
		return -1;
	win = json_object_get(doc, "suggestedWindow");
	start = json_string_value(json_object_get(win, "start"));
	end = json_string_value(json_object_get(win, "end"));
	if (start == NULL || end == NULL || acme_parse_time(start, &out->start) != 0 ||
	    acme_parse_time(end, &out->end) != 0 || out->end <= out->start)
		acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		          "renewalInfo %s: no valid suggestedWindow (start and end RFC 3339 times, "
		          "start before end)",
		          url);
	else
		rc = acme_json_str(doc, "explanationURL", true, out->explanation,
		                   sizeof(out->explanation), "renewalInfo", e);
	json_decref(doc);
	return rc;
}

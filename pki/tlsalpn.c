/* tlsalpn.c — the ACME tls-alpn-01 challenge certificate (RFC 8737 §3):
 * building the one a node's TLS endpoint shows for ALPN acme-tls/1, and
 * checking one a node showed (the pre-validation probe).  It is here, in
 * pki/, so the TLS endpoint can make it without depending on the ACME
 * client. */
#include "pki_internal.h"

#include <string.h>

#include <openssl/err.h>

#define CHALLENGE_DAYS 7

static ASN1_OBJECT *acme_identifier_oid(void)
{
	return OBJ_txt2obj(PKI_ACME_IDENTIFIER_OID, 1);
}

/* The extension: critical, its value the DER of an OCTET STRING holding
 * the digest. */
static X509_EXTENSION *acme_identifier_ext(const uint8_t digest[32])
{
	ASN1_OBJECT *oid = acme_identifier_oid();
	ASN1_OCTET_STRING *inner = ASN1_OCTET_STRING_new(), *value = ASN1_OCTET_STRING_new();
	X509_EXTENSION *ext = NULL;
	unsigned char *der = NULL;
	int len;

	if (oid != NULL && inner != NULL && value != NULL &&
	    ASN1_OCTET_STRING_set(inner, digest, 32) &&
	    (len = i2d_ASN1_OCTET_STRING(inner, &der)) > 0 &&
	    ASN1_OCTET_STRING_set(value, der, len))
		ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, value);
	OPENSSL_free(der);
	ASN1_OCTET_STRING_free(inner);
	ASN1_OCTET_STRING_free(value);
	ASN1_OBJECT_free(oid);
	return ext;
}

X509 *pki_tlsalpn01_cert(EVP_PKEY *key, const char *name, const uint8_t digest[32], cs_err *err)
{
	const char *problem = pki_hostname_problem(name);
	time_t now = time(NULL);
	GENERAL_NAMES *gens = NULL;
	GENERAL_NAME *gen = NULL;
	ASN1_IA5STRING *ia5 = NULL;
	X509_EXTENSION *ext = NULL;
	X509_NAME *subj = NULL;
	X509 *x = NULL;

	if (problem != NULL) {
		cs_fail(err, CS_EINPUT, "tls-alpn-01: \"%.200s\" is not a DNS name: %s", name,
		        problem);
		return NULL;
	}
	gens = sk_GENERAL_NAME_new_null();
	gen = GENERAL_NAME_new();
	ia5 = ASN1_IA5STRING_new();
	subj = X509_NAME_new();
	ext = acme_identifier_ext(digest);
	x = X509_new();
	if (gens == NULL || gen == NULL || ia5 == NULL || subj == NULL || ext == NULL ||
	    x == NULL || !ASN1_STRING_set(ia5, name, (int)strlen(name))) {
		pki_fail_ssl(err, CS_EIO, "cannot build the tls-alpn-01 certificate");
		goto fail;
	}
	GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(gens, gen)) {
		pki_fail_ssl(err, CS_EIO, "cannot build the tls-alpn-01 certificate");
		goto fail;
	}
	gen = NULL;
	if (!X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)name, -1,
	                                -1, 0) ||
	    !X509_set_version(x, X509_VERSION_3) || !pki_random_serial(x) ||
	    !X509_set_subject_name(x, subj) || !X509_set_issuer_name(x, subj) ||
	    X509_time_adj(X509_getm_notBefore(x), -60, &now) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), CHALLENGE_DAYS, 0, &now) == NULL ||
	    !X509_set_pubkey(x, key) ||
	    X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1 ||
	    !X509_add_ext(x, ext, -1) || X509_sign(x, key, EVP_sha256()) <= 0) {
		pki_fail_ssl(err, CS_EIO, "cannot build the tls-alpn-01 certificate for %s", name);
		goto fail;
	}
	GENERAL_NAMES_free(gens);
	X509_NAME_free(subj);
	X509_EXTENSION_free(ext);
	return x;
fail:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	X509_NAME_free(subj);
	X509_EXTENSION_free(ext);
	X509_free(x);
	return NULL;
}

/* The one SAN must be the DNS name name. */
static int check_san(X509 *cert, const char *name, cs_err *err)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	const GENERAL_NAME *g =
	    gens != NULL && sk_GENERAL_NAME_num(gens) == 1 ? sk_GENERAL_NAME_value(gens, 0) : NULL;
	const ASN1_STRING *s = g != NULL && g->type == GEN_DNS ? g->d.dNSName : NULL;
	int ok = s != NULL && (size_t)ASN1_STRING_length(s) == strlen(name) &&
	         strncasecmp((const char *)ASN1_STRING_get0_data(s), name, strlen(name)) == 0;

	GENERAL_NAMES_free(gens);
	return ok ? 0
	          : cs_fail(err, CS_EINPUT,
	                    "the tls-alpn-01 certificate's subjectAltName is not exactly the DNS "
	                    "name %s",
	                    name);
}

int pki_tlsalpn01_check(X509 *cert, const char *name, const uint8_t digest[32], cs_err *err)
{
	ASN1_OBJECT *oid = acme_identifier_oid();
	int at = oid != NULL ? X509_get_ext_by_OBJ(cert, oid, -1) : -1;
	int again = at >= 0 ? X509_get_ext_by_OBJ(cert, oid, at) : -1;
	X509_EXTENSION *ext = at >= 0 ? X509_get_ext(cert, at) : NULL;
	const ASN1_OCTET_STRING *value = ext != NULL ? X509_EXTENSION_get_data(ext) : NULL;
	ASN1_OCTET_STRING *inner = NULL;
	int rc = 0;

	ASN1_OBJECT_free(oid);
	if (check_san(cert, name, err) != 0)
		return -1;
	if (ext == NULL || again >= 0)
		return cs_fail(
		    err, CS_EINPUT,
		    "the tls-alpn-01 certificate for %s does not carry one acmeIdentifier "
		    "extension",
		    name);
	if (!X509_EXTENSION_get_critical(ext))
		return cs_fail(err, CS_EINPUT,
		               "the tls-alpn-01 certificate for %s: acmeIdentifier is not critical",
		               name);
	inner = pki_d2i(ASN1_STRING_get0_data(value), (size_t)ASN1_STRING_length(value),
	                ASN1_ITEM_rptr(ASN1_OCTET_STRING));
	if (inner == NULL || ASN1_STRING_length(inner) != 32 ||
	    memcmp(ASN1_STRING_get0_data(inner), digest, 32) != 0)
		rc = cs_fail(err, CS_EINPUT,
		             "the tls-alpn-01 certificate for %s carries another key authorization "
		             "digest",
		             name);
	ERR_clear_error(); /* what pki_d2i left queued */
	ASN1_OCTET_STRING_free(inner);
	return rc;
}

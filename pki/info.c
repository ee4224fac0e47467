/* info.c — what a certificate or request says (ids, names, SANs,
 * validity, key type), whether a key belongs to it, and which host names
 * it covers. */
#include "pki_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

/* RFC 2253 without ASN1_STRFLGS_ESC_MSB, so UTF-8 names stay readable. */
#define NAME_FLAGS (XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB)

/* Copies text that comes from a certificate, with control characters
 * replaced, so that it cannot break a message or a terminal. */
static void copy_text(char *out, size_t size, const unsigned char *in, int len)
{
	size_t n = len > 0 ? (size_t)len : 0;

	if (n >= size)
		n = size - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = in[i] < 0x20 || in[i] == 0x7f ? '?' : (char)in[i];
	out[n] = '\0';
}

void pki_name_text(const X509_NAME *name, char *out, size_t size)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long n;

	out[0] = '\0';
	if (bio != NULL && X509_NAME_print_ex(bio, name, 0, NAME_FLAGS) >= 0 &&
	    (n = BIO_get_mem_data(bio, &data)) > 0)
		copy_text(out, size, (const unsigned char *)data, (int)n);
	BIO_free(bio);
	ERR_clear_error();
}

static void name_cn(const X509_NAME *name, char *out, size_t size)
{
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int n;

	out[0] = '\0';
	if (i < 0)
		return;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
	if (n >= 0)
		copy_text(out, size, utf8, n);
	OPENSSL_free(utf8);
	ERR_clear_error();
}

bool pki_signed_by_itself(X509 *cert)
{
	EVP_PKEY *pub = X509_get0_pubkey(cert);
	bool self = pub != NULL &&
	            X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)) == 0 &&
	            X509_verify(cert, pub) == 1;

	ERR_clear_error();
	return self;
}

int pki_sans_from_names(const GENERAL_NAMES *gens, pki_sans *sans)
{
	const GENERAL_NAME *gen;
	const ASN1_STRING *s;
	char text[256];
	int af;

	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		gen = sk_GENERAL_NAME_value(gens, i);
		if (gen->type == GEN_DNS) {
			s = gen->d.dNSName;
			copy_text(text, sizeof(text), ASN1_STRING_get0_data(s),
			          ASN1_STRING_length(s));
		} else if (gen->type == GEN_IPADD) {
			s = gen->d.iPAddress;
			af = ASN1_STRING_length(s) == 4 ? AF_INET : AF_INET6;
			/* Other lengths are address/mask pairs, which belong in name
			 * constraints, not in a SAN: nothing a host can match. */
			if ((ASN1_STRING_length(s) != 4 && ASN1_STRING_length(s) != 16) ||
			    inet_ntop(af, ASN1_STRING_get0_data(s), text, sizeof(text)) == NULL)
				continue;
		} else {
			continue;
		}
		if (pki_sans_add(sans, text) < 0)
			return -1;
	}
	return 0;
}

/* Converts an ASN.1 time to seconds since the epoch. */
static int asn1_time(const ASN1_TIME *t, time_t *out)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm)) {
		ERR_clear_error();
		return -1;
	}
	*out = timegm(&tm);
	return 0;
}

/* The parts certificates and requests share. */
static int fill_common(pki_cert_info *info, const X509_NAME *subject, EVP_PKEY *pub,
                       const X509_PUBKEY *spki, const GENERAL_NAMES *gens, cs_err *err)
{
	pki_name_text(subject, info->subject, sizeof(info->subject));
	name_cn(subject, info->subject_cn, sizeof(info->subject_cn));
	pki_key_type(pub, info->key_type, sizeof(info->key_type));
	if (pki_spki_hash(spki, info->spki_sha256, err) < 0)
		return -1;
	if (pki_sans_from_names(gens, &info->sans) < 0)
		return cs_fail(err, CS_EIO, "out of memory");
	return 0;
}

int pki_cert_inspect(X509 *cert, pki_cert_info *info, cs_err *err)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	unsigned int n;
	int rc = -1;

	memset(info, 0, sizeof(*info));
	if (!X509_digest(cert, EVP_sha256(), info->id, &n)) {
		pki_fail_ssl(err, CS_EIO, "cannot hash the certificate");
	} else if (asn1_time(X509_get0_notBefore(cert), &info->not_before) < 0 ||
	           asn1_time(X509_get0_notAfter(cert), &info->not_after) < 0) {
		cs_fail(err, CS_EINPUT, "the certificate's validity dates cannot be read");
	} else if (fill_common(info, X509_get_subject_name(cert), X509_get0_pubkey(cert),
	                       X509_get_X509_PUBKEY(cert), gens, err) == 0) {
		pki_name_text(X509_get_issuer_name(cert), info->issuer, sizeof(info->issuer));
		info->self_signed = pki_signed_by_itself(cert);
		if (X509_get_extension_flags(cert) & EXFLAG_CA)
			info->kind = info->self_signed ? PKI_KIND_ROOT : PKI_KIND_INTERMEDIATE;
		else
			info->kind = PKI_KIND_IDENTITY;
		rc = 0;
	}
	GENERAL_NAMES_free(gens);
	ERR_clear_error();
	if (rc < 0)
		pki_cert_info_free(info);
	return rc;
}

int pki_csr_inspect(X509_REQ *req, pki_cert_info *info, cs_err *err)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	GENERAL_NAMES *gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
	unsigned int n;
	int rc = -1;

	memset(info, 0, sizeof(*info));
	if (!X509_REQ_digest(req, EVP_sha256(), info->id, &n))
		pki_fail_ssl(err, CS_EIO, "cannot hash the request");
	else
		rc = fill_common(info, X509_REQ_get_subject_name(req), X509_REQ_get0_pubkey(req),
		                 X509_REQ_get_X509_PUBKEY(req), gens, err);
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	ERR_clear_error();
	if (rc < 0)
		pki_cert_info_free(info);
	return rc;
}

void pki_cert_info_free(pki_cert_info *info)
{
	pki_sans_free(&info->sans);
}

bool pki_key_matches(X509 *cert, EVP_PKEY *key)
{
	EVP_PKEY *pub = cert != NULL ? X509_get0_pubkey(cert) : NULL;
	bool match = pub != NULL && key != NULL && EVP_PKEY_eq(pub, key) == 1;

	ERR_clear_error();
	return match;
}

bool pki_covers(X509 *cert, const char *host)
{
	char name[256];
	unsigned char addr[16];
	size_t n = host != NULL ? strlen(host) : 0;
	bool covered;

	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n >= sizeof(name))
		return false;
	memcpy(name, host, n);
	name[n] = '\0';
	if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1)
		covered = X509_check_ip_asc(cert, name, 0) == 1;
	else
		/* Clients match SANs only (RFC 6125, browsers since 2017), so the
		 * subject CN is never consulted. */
		covered = X509_check_host(cert, name, n,
		                          X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
		                              X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
		                          NULL) == 1;
	ERR_clear_error();
	return covered;
}

/* issue.c — new certificates and requests from a checked subject: a
 * self-signed identity certificate, or a PKCS#10 request for a CA. */
#include "pki_internal.h"

#include <openssl/bn.h>
#include <openssl/err.h>

/* What a certificate and a request share: the subject name and SANs. */
typedef struct draft {
	X509_NAME *name;
	GENERAL_NAMES *gens;
} draft;

static void draft_free(draft *d)
{
	X509_NAME_free(d->name);
	GENERAL_NAMES_free(d->gens);
}

static int draft_name(draft *d, const pki_subject *subj, cs_err *err)
{
	const struct {
		const char *field, *value;
	} rdns[] = {
	    {"C", subj->country}, {"ST", subj->state}, {"L", subj->locality},
	    {"O", subj->org},     {"OU", subj->unit},  {"CN", subj->common_name},
	};

	if ((d->name = X509_NAME_new()) == NULL)
		return pki_fail_ssl(err, CS_EIO, "cannot build the subject");
	for (size_t i = 0; i < sizeof(rdns) / sizeof(rdns[0]); i++) {
		if (rdns[i].value == NULL || rdns[i].value[0] == '\0')
			continue;
		if (!X509_NAME_add_entry_by_txt(d->name, rdns[i].field, MBSTRING_UTF8,
		                                (const unsigned char *)rdns[i].value, -1, -1, 0))
			return pki_fail_ssl(err, CS_EINPUT, "subject field %s is not valid",
			                    rdns[i].field);
	}
	return 0;
}

static int draft_sans(draft *d, const pki_sans *sans, cs_err *err)
{
	GENERAL_NAME *gen;
	ASN1_OCTET_STRING *ip;
	ASN1_IA5STRING *dns;

	if ((d->gens = GENERAL_NAMES_new()) == NULL)
		return pki_fail_ssl(err, CS_EIO, "cannot build the SANs");
	for (size_t i = 0; i < sans->n; i++) {
		if ((gen = GENERAL_NAME_new()) == NULL || !sk_GENERAL_NAME_push(d->gens, gen)) {
			GENERAL_NAME_free(gen);
			return pki_fail_ssl(err, CS_EIO, "cannot build the SANs");
		}
		/* pki_subject_check left only IP literals and DNS names that
		 * cannot be read as one. */
		if ((ip = a2i_IPADDRESS(sans->names[i])) != NULL) {
			GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
			continue;
		}
		ERR_clear_error();
		if ((dns = ASN1_IA5STRING_new()) == NULL ||
		    !ASN1_STRING_set(dns, sans->names[i], -1)) {
			ASN1_IA5STRING_free(dns);
			return pki_fail_ssl(err, CS_EIO, "cannot build the SANs");
		}
		GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
	}
	return 0;
}

static int draft_init(draft *d, EVP_PKEY *key, const pki_subject *subj, cs_err *err)
{
	pki_sans sans;
	int rc;

	d->name = NULL;
	d->gens = NULL;
	if (pki_key_supported(key, err) < 0 || pki_subject_check(subj, &sans, NULL, 0, err) < 0)
		return -1;
	rc = draft_name(d, subj, err) < 0 || draft_sans(d, &sans, err) < 0 ? -1 : 0;
	pki_sans_free(&sans);
	if (rc < 0)
		draft_free(d);
	return rc;
}

int pki_random_serial(X509 *x)
{
	BIGNUM *bn = BN_new();
	int ok = bn != NULL && BN_rand(bn, 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) &&
	         BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;

	BN_free(bn);
	return ok;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok = ext != NULL && X509_add_ext(x, ext, -1);

	X509_EXTENSION_free(ext);
	return ok;
}

X509 *pki_self_signed(EVP_PKEY *key, const pki_subject *subj, cs_err *err)
{
	int days = subj->days != 0 ? subj->days : 365;
	time_t now = time(NULL);
	const char *usage;
	X509V3_CTX ctx;
	X509 *x;
	draft d;

	if (draft_init(&d, key, subj, err) < 0)
		return NULL;
	/* RSA key exchange (TLS 1.2 without ECDHE) encrypts with the key. */
	usage = EVP_PKEY_is_a(key, "RSA") ? "critical,digitalSignature,keyEncipherment"
	                                  : "critical,digitalSignature";
	x = X509_new();
	if (x == NULL || !X509_set_version(x, X509_VERSION_3) || !pki_random_serial(x) ||
	    !X509_set_subject_name(x, d.name) || !X509_set_issuer_name(x, d.name) ||
	    X509_time_adj(X509_getm_notBefore(x), -60, &now) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), days, -60, &now) == NULL ||
	    !X509_set_pubkey(x, key)) {
		pki_fail_ssl(err, CS_EIO, "cannot build the certificate");
		goto fail;
	}
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if (!add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
	    !add_ext(x, &ctx, NID_key_usage, usage) ||
	    !add_ext(x, &ctx, NID_ext_key_usage, "serverAuth,clientAuth") ||
	    !add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
	    X509_add1_ext_i2d(x, NID_subject_alt_name, d.gens, 0, X509V3_ADD_DEFAULT) != 1) {
		pki_fail_ssl(err, CS_EIO, "cannot add the certificate extensions");
		goto fail;
	}
	if (X509_sign(x, key, EVP_sha256()) <= 0) {
		pki_fail_ssl(err, CS_EIO, "cannot sign the certificate");
		goto fail;
	}
	draft_free(&d);
	return x;
fail:
	X509_free(x);
	draft_free(&d);
	return NULL;
}

X509_REQ *pki_csr(EVP_PKEY *key, const pki_subject *subj, cs_err *err)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_REQ *req;
	draft d;

	if (draft_init(&d, key, subj, err) < 0)
		return NULL;
	req = X509_REQ_new();
	if (req == NULL || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
	    !X509_REQ_set_subject_name(req, d.name) || !X509_REQ_set_pubkey(req, key) ||
	    X509V3_add1_i2d(&exts, NID_subject_alt_name, d.gens, 0, X509V3_ADD_DEFAULT) != 1 ||
	    !X509_REQ_add_extensions(req, exts)) {
		pki_fail_ssl(err, CS_EIO, "cannot build the request");
		goto fail;
	}
	if (X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
		pki_fail_ssl(err, CS_EIO, "cannot sign the request");
		goto fail;
	}
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	draft_free(&d);
	return req;
fail:
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	draft_free(&d);
	return NULL;
}

/* pbe.c — the key-derivation work an imported file asks for, read from
 * its ASN.1 parameters with OpenSSL's own types and bounded before any of
 * it is done.  A PKCS#12 MAC or an encrypted key may name any iteration
 * count; 2^31 - 1 of them keep a core busy for most of an hour, so counts
 * above PKI_MAX_KDF_ITER (or an scrypt cost above PKI_MAX_SCRYPT_COST) are
 * refused, naming the file, the structure and the count. */
#include "pki_internal.h"

#include <inttypes.h>

#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>

/* The work one AlgorithmIdentifier of a password-based scheme asks for:
 * its iteration count (scrypt: N * r * p).  0 for an algorithm that is no
 * password-based scheme certsync knows of: OpenSSL refuses those itself. */
static uint64_t pbe_work(const X509_ALGOR *alg, bool *scrypt)
{
	const ASN1_OBJECT *oid;
	const void *param;
	int ptype;
	uint64_t work = 0, r = 0, p = 0;

	*scrypt = false;
	X509_ALGOR_get0(&oid, &ptype, &param, alg);
	if (ptype != V_ASN1_SEQUENCE)
		return 0;
	if (OBJ_obj2nid(oid) != NID_pbes2) {
		/* PKCS#12 and PKCS#5 v1 schemes: PBEParameter (salt, count). */
		PBEPARAM *pbe = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBEPARAM), alg->parameter);

		if (pbe != NULL && !ASN1_INTEGER_get_uint64(&work, pbe->iter))
			work = UINT64_MAX;
		PBEPARAM_free(pbe);
		return work;
	}
	PBE2PARAM *pbe2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter);
	int kdf = pbe2 != NULL ? OBJ_obj2nid(pbe2->keyfunc->algorithm) : NID_undef;

	if (kdf == NID_id_pbkdf2) {
		PBKDF2PARAM *kp = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM),
		                                            pbe2->keyfunc->parameter);

		if (kp != NULL && !ASN1_INTEGER_get_uint64(&work, kp->iter))
			work = UINT64_MAX;
		PBKDF2PARAM_free(kp);
	} else if (kdf == NID_id_scrypt) {
		SCRYPT_PARAMS *sp = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(SCRYPT_PARAMS),
		                                              pbe2->keyfunc->parameter);

		*scrypt = true;
		if (sp != NULL &&
		    (!ASN1_INTEGER_get_uint64(&work, sp->costParameter) ||
		     !ASN1_INTEGER_get_uint64(&r, sp->blockSize) ||
		     !ASN1_INTEGER_get_uint64(&p, sp->parallelizationParameter) ||
		     (r != 0 && work > UINT64_MAX / r) || (p != 0 && work * r > UINT64_MAX / p)))
			work = UINT64_MAX;
		else if (sp != NULL)
			work *= r * p;
		SCRYPT_PARAMS_free(sp);
	}
	PBE2PARAM_free(pbe2);
	ERR_clear_error();
	return work;
}

static int too_much(const char *what, const char *where, uint64_t work, bool scrypt, cs_err *err)
{
	if (scrypt)
		return cs_fail(err, CS_EINPUT,
		               "%s: %s asks for an scrypt cost (N*r*p) of %" PRIu64
		               "; certsync refuses more than %d, as deriving its key would "
		               "stall the node; encrypt it again with a smaller cost",
		               what, where, work, PKI_MAX_SCRYPT_COST);
	return cs_fail(err, CS_EINPUT,
	               "%s: %s asks for %" PRIu64
	               " iterations of password hashing; certsync refuses more than %d, as "
	               "deriving its key would stall the node; export it again with at most "
	               "%d iterations (openssl: -iter 2048)",
	               what, where, work, PKI_MAX_KDF_ITER, PKI_MAX_KDF_ITER);
}

static int check_alg(const X509_ALGOR *alg, const char *what, const char *where, cs_err *err)
{
	bool scrypt;
	uint64_t work = pbe_work(alg, &scrypt);

	if (work > (scrypt ? (uint64_t)PKI_MAX_SCRYPT_COST : (uint64_t)PKI_MAX_KDF_ITER))
		return too_much(what, where, work, scrypt, err);
	return 0;
}

int pki_pbe_check_p8(const uint8_t *der, size_t len, const char *what, cs_err *err)
{
	X509_SIG *sig = pki_d2i(der, len, ASN1_ITEM_rptr(X509_SIG));
	const X509_ALGOR *alg;
	int rc = 0;

	ERR_clear_error();
	if (sig == NULL)
		return 0; /* not an encrypted PKCS#8: nothing to derive */
	X509_SIG_get0(sig, &alg, NULL);
	rc = check_alg(alg, what, "the encrypted private key", err);
	X509_SIG_free(sig);
	return rc;
}

/* Shrouded key bags, also inside nested SafeContents bags. */
static int check_bags(const STACK_OF(PKCS12_SAFEBAG) * bags, const char *what, cs_err *err)
{
	for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags); i++) {
		const PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, i);
		const X509_ALGOR *alg;

		switch (PKCS12_SAFEBAG_get_nid(bag)) {
		case NID_pkcs8ShroudedKeyBag:
			X509_SIG_get0(PKCS12_SAFEBAG_get0_pkcs8(bag), &alg, NULL);
			if (check_alg(alg, what, "the PKCS#12 file's encrypted key", err) < 0)
				return -1;
			break;
		case NID_safeContentsBag:
			if (check_bags(PKCS12_SAFEBAG_get0_safes(bag), what, err) < 0)
				return -1;
			break;
		default:
			break;
		}
	}
	return 0;
}

/* An encrypted SafeContents is opened (its own cost is checked first) to
 * see the key bags it holds; with the wrong password it stays closed and
 * PKCS12_parse refuses the file later. */
static int check_safe(PKCS7 *p7, const char *pass, const char *what, cs_err *err)
{
	STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
	int rc = 0;

	switch (OBJ_obj2nid(p7->type)) {
	case NID_pkcs7_data:
		bags = PKCS12_unpack_p7data(p7);
		break;
	case NID_pkcs7_encrypted:
		if (p7->d.encrypted == NULL || p7->d.encrypted->enc_data == NULL)
			return 0;
		if (check_alg(p7->d.encrypted->enc_data->algorithm, what,
		              "the PKCS#12 file's encrypted certificates", err) < 0)
			return -1;
		/* No password is tried as nothing and as "", like PKCS12_parse. */
		bags = PKCS12_unpack_p7encdata(p7, pass, pass != NULL ? -1 : 0);
		if (bags == NULL && pass == NULL)
			bags = PKCS12_unpack_p7encdata(p7, "", 0);
		break;
	default:
		break;
	}
	ERR_clear_error();
	if (bags != NULL)
		rc = check_bags(bags, what, err);
	sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	return rc;
}

int pki_pbe_check_p12(const PKCS12 *p12, const char *pass, const char *what, cs_err *err)
{
	const ASN1_INTEGER *iter = NULL;
	STACK_OF(PKCS7) * safes;
	uint64_t n = 1; /* an absent count means 1 (RFC 7292, MacData) */
	int rc = 0;

	if (PKCS12_mac_present(p12)) {
		PKCS12_get0_mac(NULL, NULL, NULL, &iter, p12);
		if (iter != NULL && !ASN1_INTEGER_get_uint64(&n, iter))
			n = UINT64_MAX;
		if (n > PKI_MAX_KDF_ITER)
			return too_much(what, "the PKCS#12 file's MAC", n, false, err);
	}
	if ((safes = PKCS12_unpack_authsafes(p12)) == NULL) {
		ERR_clear_error();
		return 0; /* PKCS12_parse names the damage */
	}
	for (int i = 0; rc == 0 && i < sk_PKCS7_num(safes); i++)
		rc = check_safe(sk_PKCS7_value(safes, i), pass, what, err);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	return rc;
}

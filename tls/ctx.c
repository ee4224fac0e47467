/* ctx.c — the server SSL_CTX and the callbacks that run inside a handshake:
 * certificate selection from the ClientHello, ALPN and session tickets.
 *
 * One SSL_CTX per worker, with no certificate of its own: the ClientHello
 * callback reads the SNI and the client's signature algorithms straight from
 * the raw extensions, asks the handshake's table, and installs the parsed
 * certificate, key and chain with SSL_use_cert_and_key (reference counts
 * only: nothing is parsed or copied per handshake).  A prepared SSL_CTX per
 * certificate would cost tens of kilobytes each in OpenSSL 3; see
 * bench/README.md for the measurement. */
#include "tls_int.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* Mozilla's "intermediate" TLS 1.2 suites (ECDHE, AEAD); TLS 1.3 keeps
 * OpenSSL's default suites. */
static const char CIPHERS_TLS12[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char GROUPS[] = "X25519:P-256:P-384";
/* Resumed sessions must come from a certsync server, whichever node. */
static const unsigned char SID_CTX[] = "certsync";
/* A ticket names the hour whose keys sealed it; it lives at most this long. */
#define TICKET_PERIOD_S 3600

static unsigned get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* The first host_name of the server_name extension, normalized; 0 when there
 * is none or it is absurd (the default answers then). */
static size_t hello_sni(SSL *s, char *out)
{
	const unsigned char *p;
	size_t len, n;

	if (!SSL_client_hello_get0_ext(s, TLSEXT_TYPE_server_name, &p, &len) || len < 5)
		return 0;
	if (get16(p) != len - 2 || p[2] != TLSEXT_NAMETYPE_host_name)
		return 0;
	n = get16(p + 3);
	if (n > len - 5)
		return 0;
	return tls_name_normalize((const char *)p + 5, n, out);
}

static bool offers_tls13(SSL *s)
{
	const unsigned char *p;
	size_t len;

	if (!SSL_client_hello_get0_ext(s, TLSEXT_TYPE_supported_versions, &p, &len) || len < 1 ||
	    p[0] != len - 1)
		return false;
	for (size_t i = 1; i + 1 < len; i += 2) {
		if (get16(p + i) == TLS1_3_VERSION)
			return true;
	}
	return false;
}

/* TLS 1.2 also needs an ECDHE_ECDSA suite for an ECDSA certificate. */
static bool ecdsa_suite(unsigned c)
{
	return c == 0xc009 || c == 0xc00a || c == 0xc023 || c == 0xc024 || c == 0xc02b ||
	       c == 0xc02c || c == 0xcca9 || (c >= 0xc0ac && c <= 0xc0af);
}

/* And an ECDHE_RSA suite for an RSA certificate (the only RSA suites we
 * enable). */
static bool rsa_suite(unsigned c)
{
	return c == 0xc02f || c == 0xc030 || c == 0xcca8;
}

static bool offers_suite(SSL *s, bool (*wanted)(unsigned))
{
	const unsigned char *p;
	size_t len = SSL_client_hello_get0_ciphers(s, &p);

	for (size_t i = 0; i + 1 < len; i += 2) {
		if (wanted(get16(p + i)))
			return true;
	}
	return false;
}

/* The key types the client can take from us: its signature_algorithms
 * (absent: TLS 1.2's defaults allow both) and, below TLS 1.3, a suite for
 * the type. */
static unsigned hello_can(SSL *s)
{
	const unsigned char *p;
	size_t len;
	bool ec = true, rsa = true, tls13 = offers_tls13(s);

	if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_signature_algorithms, &p, &len) && len >= 2) {
		ec = rsa = false;
		for (size_t i = 2; i + 1 < len; i += 2) {
			/* ecdsa_*: hash 2..6 (SHA-1 .. SHA-512), signature 3;
			 * rsa_pkcs1_*: signature 1; rsa_pss_rsae_*: 0x0804..6. */
			ec = ec || (p[i + 1] == 3 && p[i] >= 2 && p[i] <= 6);
			rsa = rsa || (p[i + 1] == 1 && p[i] >= 2 && p[i] <= 6) ||
			      (p[i] == 8 && p[i + 1] >= 4 && p[i + 1] <= 6);
		}
	}
	return (ec && (tls13 || offers_suite(s, ecdsa_suite)) ? TLS_CAN_EC : 0) |
	       (rsa && (tls13 || offers_suite(s, rsa_suite)) ? TLS_CAN_RSA : 0);
}

static int on_client_hello(SSL *s, int *alert, void *arg)
{
	tls_hs *hs = SSL_get_app_data(s);
	char name[TLS_NAME_MAX + 1];
	size_t n = hello_sni(s, name);
	const tls_entry *e;

	(void)arg;
	if (hs->acme != NULL && tls_acme_only(s)) {
		/* An ACME server validating tls-alpn-01: the challenge
		 * certificate, or no handshake at all (RFC 8737 section 3). */
		if (n == 0 || !tls_acme_use(hs->acme, s, name)) {
			*alert = SSL_AD_UNRECOGNIZED_NAME;
			return SSL_CLIENT_HELLO_ERROR;
		}
		hs->acme_tls = true;
		memcpy(hs->sni, name, n);
		hs->sni[n] = '\0';
		return SSL_CLIENT_HELLO_SUCCESS;
	}
	e = hs->table != NULL
	        ? tls_table_select(hs->table, n > 0 ? name : NULL, hello_can(s), time(NULL))
	        : NULL;
	if (e == NULL) {
		*alert = SSL_AD_HANDSHAKE_FAILURE;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (SSL_use_cert_and_key(s, e->leaf, e->key, e->chain, 1) != 1) {
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	memcpy(hs->cert_id, e->id_hex, sizeof(hs->cert_id));
	memcpy(hs->sni, name, n);
	hs->sni[n] = '\0';
	return SSL_CLIENT_HELLO_SUCCESS;
}

static int on_alpn(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char ours[] = "\x08http/1.1";
	unsigned char *sel;
	tls_hs *hs = SSL_get_app_data(s);

	(void)arg;
	if (hs->acme_tls)
		return tls_acme_select(out, outlen, in, inlen);
	/* A client that wants something else still gets HTTP/1.1, unannounced. */
	if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* ---- tickets ----------------------------------------------------------------- */

/* K = HMAC(master, label || hour); name, AES and HMAC keys = HMAC(K, purpose).
 * Every node derives the same keys for the same hour. */
static int derive(const uint8_t master[32], uint64_t period, struct tls_ticket_key *k)
{
	static const char label[] = "certsync tls ticket keys v1";
	uint8_t msg[sizeof(label) + 8], K[32], name[32];
	unsigned len;

	memcpy(msg, label, sizeof(label));
	for (int i = 0; i < 8; i++)
		msg[sizeof(label) + i] = (uint8_t)(period >> (56 - 8 * i));
	if (HMAC(EVP_sha256(), master, 32, msg, sizeof(msg), K, &len) == NULL ||
	    HMAC(EVP_sha256(), K, 32, (const uint8_t *)"name", 4, name, &len) == NULL ||
	    HMAC(EVP_sha256(), K, 32, (const uint8_t *)"aes", 3, k->aes, &len) == NULL ||
	    HMAC(EVP_sha256(), K, 32, (const uint8_t *)"hmac", 4, k->hmac, &len) == NULL) {
		OPENSSL_cleanse(K, sizeof(K));
		return -1;
	}
	memcpy(k->name, name, sizeof(k->name));
	OPENSSL_cleanse(K, sizeof(K));
	return 0;
}

static int tickets_refresh(struct tls_tickets *tk, time_t now)
{
	uint64_t period = (uint64_t)now / TICKET_PERIOD_S;

	if (period == tk->period)
		return 0;
	for (int i = 0; i < 3; i++) {
		if (derive(tk->master, period - 1 + (uint64_t)i, &tk->keys[i]) < 0) {
			tk->period = UINT64_MAX;
			return -1;
		}
	}
	tk->period = period;
	return 0;
}

int tls_tickets_init(struct tls_tickets *tk, const uint8_t master[32], cs_err *err)
{
	memset(tk, 0, sizeof(*tk));
	memcpy(tk->master, master, sizeof(tk->master));
	tk->period = UINT64_MAX;
	/* Fetched once: an implicit fetch per ticket costs a lock and a lookup. */
	if ((tk->cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL)) == NULL)
		return cs_fail(err, CS_EIO, "OpenSSL has no AES-256-CBC for session tickets");
	return 0;
}

void tls_tickets_clear(struct tls_tickets *tk)
{
	EVP_CIPHER_free(tk->cipher);
	OPENSSL_cleanse(tk, sizeof(*tk));
}

static int set_mac(EVP_MAC_CTX *hctx, struct tls_ticket_key *k)
{
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->hmac, sizeof(k->hmac)),
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
	    OSSL_PARAM_construct_end(),
	};

	return EVP_MAC_CTX_set_params(hctx, params);
}

/* enc: seal a new ticket with this hour's keys.  !enc: open one sealed in
 * the previous, this or the next hour (clocks of nodes differ a little);
 * 0 (unknown key) means a full handshake, 2 asks for a fresh ticket. */
static int on_ticket(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
	tls_hs *hs = SSL_get_app_data(s);
	struct tls_tickets *tk = hs->tickets;

	if (tk == NULL || tickets_refresh(tk, time(NULL)) < 0)
		return enc ? -1 : 0;
	if (enc) {
		struct tls_ticket_key *k = &tk->keys[1];

		memcpy(name, k->name, sizeof(k->name));
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(tk->cipher)) != 1 ||
		    EVP_EncryptInit_ex(cctx, tk->cipher, NULL, k->aes, iv) != 1 ||
		    set_mac(hctx, k) != 1)
			return -1;
		return 1;
	}
	for (int i = 0; i < 3; i++) {
		struct tls_ticket_key *k = &tk->keys[i];

		if (memcmp(name, k->name, sizeof(k->name)) != 0)
			continue;
		if (EVP_DecryptInit_ex(cctx, tk->cipher, NULL, k->aes, iv) != 1 ||
		    set_mac(hctx, k) != 1)
			return -1;
		return i == 1 ? 1 : 2;
	}
	return 0;
}

/* ---- the context ------------------------------------------------------------------ */

SSL_CTX *tls_ctx_new(cs_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	const char *reason;

	if (ctx == NULL)
		goto fail;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, CIPHERS_TLS12) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, GROUPS) != 1 ||
	    SSL_CTX_set_session_id_context(ctx, SID_CTX, sizeof(SID_CTX) - 1) != 1 ||
	    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket) != 1 ||
	    /* No TLS 1.3 ticket inside the handshake: it costs a fifth of
	     * the server's CPU there, and clients that connect and leave
	     * (health checks, scanners) never use it.  The server sends one
	     * with the first response instead (server.c). */
	    SSL_CTX_set_num_tickets(ctx, 0) != 1)
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* Tickets carry the whole session: no server-side cache to grow or lock. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_timeout(ctx, TICKET_PERIOD_S);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
	SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
	return ctx;
fail:
	reason = ERR_reason_error_string(ERR_get_error());
	cs_fail(err, CS_EIO, "cannot set up the TLS context: %s",
	        reason ? reason : "unknown error");
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

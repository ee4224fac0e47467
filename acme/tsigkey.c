/* tsigkey.c — reading the TSIG key for dns-01 updates from a BIND-format key
 * file, the one `tsig-keygen NAME` writes:
 *
 *     key "NAME" { algorithm hmac-sha256; secret "BASE64"; };
 *
 * No Debian library parses this grammar (BIND's own parser is not shipped
 * as a library), so this file reads the one statement with its comments
 * (#, //, C style).  An error names the file and line and says how the
 * statement is written; it never quotes the secret. */
#include "acme_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <sodium.h>

#define KEYFILE_MAX 8192

#define KEY_FORM                                                                                   \
	"key \"NAME\" { algorithm hmac-sha256; secret \"BASE64\"; }; (tsig-keygen NAME writes "    \
	"one)"

typedef struct lexer {
	const char *path;
	const char *p;
	int line;
	char tok[512];
	bool quoted;
} lexer;

/* The next token into lx->tok: a word, a quoted string, or one of { } ;.
 * 0 at the end of the file, 1 for a token, -1 for an unterminated string
 * or comment or an over-long token. */
static int next(lexer *lx)
{
	size_t n = 0;

	for (;;) {
		while (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\r' || *lx->p == '\n')
			if (*lx->p++ == '\n')
				lx->line++;
		if (*lx->p == '#' || (lx->p[0] == '/' && lx->p[1] == '/')) {
			while (*lx->p != '\0' && *lx->p != '\n')
				lx->p++;
		} else if (lx->p[0] == '/' && lx->p[1] == '*') {
			const char *end = strstr(lx->p + 2, "*/");

			if (end == NULL)
				return -1;
			for (; lx->p < end; lx->p++)
				if (*lx->p == '\n')
					lx->line++;
			lx->p += 2;
		} else {
			break;
		}
	}
	lx->quoted = false;
	if (*lx->p == '\0')
		return 0;
	if (strchr("{};", *lx->p) != NULL) {
		lx->tok[0] = *lx->p++;
		lx->tok[1] = '\0';
		return 1;
	}
	if (*lx->p == '"') {
		lx->quoted = true;
		for (lx->p++; *lx->p != '"'; lx->p++) {
			if (*lx->p == '\0' || *lx->p == '\n' || n + 1 >= sizeof(lx->tok))
				return -1;
			lx->tok[n++] = *lx->p;
		}
		lx->p++;
	} else {
		while (*lx->p != '\0' && strchr(" \t\r\n{};\"#", *lx->p) == NULL) {
			if (n + 1 >= sizeof(lx->tok))
				return -1;
			lx->tok[n++] = *lx->p++;
		}
	}
	lx->tok[n] = '\0';
	return 1;
}

static int syntax(const lexer *lx, acme_err *e, const char *what)
{
	return acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
	                 "TSIG key file %s line %d: %s; the file must hold " KEY_FORM, lx->path,
	                 lx->line, what);
}

/* The next token must be want (a punctuation mark or a keyword). */
static int expect(lexer *lx, const char *want, acme_err *e)
{
	char what[96];

	if (next(lx) == 1 && !lx->quoted && strcmp(lx->tok, want) == 0)
		return 0;
	snprintf(what, sizeof(what), "expected \"%s\"", want);
	return syntax(lx, e, what);
}

/* The value of a clause ("algorithm X;" or "secret \"X\";") into out. */
static int clause_value(lexer *lx, char *out, size_t outlen, acme_err *e)
{
	if (next(lx) != 1 || (!lx->quoted && strchr("{};", lx->tok[0]) != NULL) ||
	    strlen(lx->tok) >= outlen)
		return syntax(lx, e, "a clause has no usable value");
	strcpy(out, lx->tok);
	return expect(lx, ";", e);
}

static int parse(lexer *lx, acme_tsig_key *k, acme_err *e)
{
	char algorithm[64] = "";
	int rc;

	if (expect(lx, "key", e) != 0)
		return -1;
	if (next(lx) != 1 || (!lx->quoted && strchr("{};", lx->tok[0]) != NULL) ||
	    lx->tok[0] == '\0' || strlen(lx->tok) >= sizeof(k->name))
		return syntax(lx, e, "the key has no name");
	strcpy(k->name, lx->tok);
	if (expect(lx, "{", e) != 0)
		return -1;
	while ((rc = next(lx)) == 1 && !(strcmp(lx->tok, "}") == 0 && !lx->quoted)) {
		if (strcmp(lx->tok, "algorithm") == 0) {
			if (clause_value(lx, algorithm, sizeof(algorithm), e) != 0)
				return -1;
		} else if (strcmp(lx->tok, "secret") == 0) {
			if (clause_value(lx, k->secret, sizeof(k->secret), e) != 0)
				return -1;
		} else {
			return syntax(lx, e, "only the clauses algorithm and secret may follow");
		}
	}
	if (rc != 1)
		return syntax(lx, e, "the key statement is not closed with };");
	if (expect(lx, ";", e) != 0)
		return -1;
	if ((rc = next(lx)) != 0)
		return syntax(lx, e, "one key statement only, with nothing after it");
	if (algorithm[0] == '\0' || k->secret[0] == '\0')
		return syntax(lx, e, "the key needs both algorithm and secret");
	if (strcasecmp(algorithm, "hmac-sha256") != 0)
		return acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		                 "TSIG key file %s: algorithm %.64s is not supported; make a "
		                 "hmac-sha256 key (tsig-keygen -a hmac-sha256 NAME)",
		                 lx->path, algorithm);
	return 0;
}

/* The secret must be base64 of at least 16 bytes (RFC 8945 §6: a key
 * shorter than half the HMAC's output is weak). */
static int check_secret(const char *path, const char *secret, acme_err *e)
{
	uint8_t raw[sizeof(((acme_tsig_key *)0)->secret)];
	size_t len = 0;
	int rc = 0;

	if (sodium_base642bin(raw, sizeof(raw), secret, strlen(secret), NULL, &len, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0)
		rc = acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		               "TSIG key file %s: the secret is not base64; copy it as "
		               "tsig-keygen printed it",
		               path);
	else if (len < 16)
		rc = acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		               "TSIG key file %s: the secret is %zu bytes, fewer than 16; make a "
		               "new key with tsig-keygen -a hmac-sha256 NAME",
		               path, len);
	sodium_memzero(raw, sizeof(raw));
	return rc;
}

int acme_tsig_key_load(const char *path, acme_tsig_key *k, acme_err *e)
{
	char *text = calloc(1, KEYFILE_MAX + 1);
	FILE *f = fopen(path, "r");
	lexer lx = {.path = path, .line = 1};
	size_t n = 0;
	int rc = 0;

	memset(k, 0, sizeof(*k));
	if (text == NULL)
		rc = acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "out of memory");
	else if (f == NULL)
		rc = acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		               "cannot read the TSIG key file %s: %s", path, strerror(errno));
	if (rc == 0) {
		setvbuf(f, NULL, _IONBF, 0); /* no stdio buffer keeps a copy of the secret */
		n = fread(text, 1, KEYFILE_MAX + 1, f);
		if (ferror(f))
			rc = acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
			               "cannot read the TSIG key file %s: %s", path,
			               strerror(errno));
		else if (n > KEYFILE_MAX)
			rc = acme_fail(
			    e, CS_EUSAGE, ACME_ERR_OPERATOR,
			    "TSIG key file %s is over %d bytes; it must hold one " KEY_FORM, path,
			    KEYFILE_MAX);
		else if (memchr(text, '\0', n) != NULL)
			rc =
			    acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
			              "TSIG key file %s is not text; it must hold " KEY_FORM, path);
	}
	if (rc == 0) {
		lx.p = text;
		rc = parse(&lx, k, e);
	}
	if (rc == 0)
		rc = check_secret(path, k->secret, e);
	if (f != NULL)
		fclose(f);
	if (text != NULL)
		OPENSSL_cleanse(text, KEYFILE_MAX + 1);
	free(text);
	OPENSSL_cleanse(lx.tok, sizeof(lx.tok));
	if (rc != 0)
		acme_tsig_key_wipe(k);
	return rc;
}

void acme_tsig_key_wipe(acme_tsig_key *k)
{
	sodium_memzero(k, sizeof(*k));
}

/* target_curl.c — the `webhook` and `smtp` targets, both through libcurl:
 * a POST of the alert's JSON (with an optional bearer token and CA file),
 * and an e-mail whose body is the alert's sentence and its JSON (STARTTLS
 * required on smtp://).  Each attempt is bounded by the delivery timeout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "monitor_int.h"

static void common_options(CURL *c, const mon_config *cfg, char *errbuf)
{
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)cfg->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->timeout_ms);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	errbuf[0] = '\0';
}

static int curl_failed(CURLcode rc, const char *errbuf, char *why, size_t whylen)
{
	snprintf(why, whylen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
	return -1;
}

/* Frees what a delivery set up before it could start. */
static int out_of_memory(CURL *c, struct curl_slist *list, char *why, size_t whylen)
{
	curl_slist_free_all(list);
	curl_easy_cleanup(c);
	snprintf(why, whylen, "out of memory");
	return -1;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

int mon_deliver_webhook(const mon_config *cfg, const mon_secrets *sec, const char *json,
                        const char *subject, char *why, size_t whylen)
{
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	CURL *c = curl_easy_init();
	CURLcode rc;
	long status = 0;

	(void)subject;
	if (c == NULL || h == NULL)
		return out_of_memory(c, h, why, whylen);
	common_options(c, cfg, errbuf);
	curl_easy_setopt(c, CURLOPT_URL, cfg->webhook);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	if (cfg->webhook_ca_file != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, cfg->webhook_ca_file);
	if (sec->webhook_token != NULL) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
		curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, sec->webhook_token);
	}
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	if (rc != CURLE_OK)
		return curl_failed(rc, errbuf, why, whylen);
	if (status < 200 || status > 299) {
		snprintf(why, whylen, "the webhook answered HTTP %ld", status);
		return -1;
	}
	return 0;
}

struct reader {
	const char *p;
	size_t left;
};

static size_t read_body(char *buf, size_t size, size_t n, void *arg)
{
	struct reader *r = arg;
	size_t k = size * n < r->left ? size * n : r->left;

	memcpy(buf, r->p, k);
	r->p += k;
	r->left -= k;
	return k;
}

/* RFC 5322 message: headers, then the sentence and the JSON.  The subject
 * is the alert's sentence with every control character made a space: a
 * certificate's name could otherwise end the header and start another. */
static char *message(const mon_config *cfg, const char *json, const char *text)
{
	char date[64], subject[MON_TEXT_LEN + 64], *msg = NULL;
	time_t now = time(NULL);
	struct tm tm;
	size_t len = 0;
	FILE *f = open_memstream(&msg, &len);

	if (f == NULL)
		return NULL;
	snprintf(subject, sizeof(subject), "%s", text);
	for (char *p = subject; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	fprintf(f, "Date: %s\r\nFrom: %s\r\nTo: ", date, cfg->smtp_from);
	for (size_t i = 0; i < cfg->nsmtp_to; i++)
		fprintf(f, "%s%s", i ? ", " : "", cfg->smtp_to[i]);
	fprintf(f,
	        "\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"
	        "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n\r\n%s\r\n",
	        subject, subject, json);
	fclose(f);
	return msg;
}

int mon_deliver_smtp(const mon_config *cfg, const mon_secrets *sec, const char *json,
                     const char *subject, char *why, size_t whylen)
{
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *rcpt = NULL;
	char *msg = message(cfg, json, subject);
	struct reader r = {msg, msg ? strlen(msg) : 0};
	CURL *c = curl_easy_init();
	CURLcode rc;

	for (size_t i = 0; i < cfg->nsmtp_to; i++)
		rcpt = curl_slist_append(rcpt, cfg->smtp_to[i]);
	if (c == NULL || msg == NULL || rcpt == NULL) {
		free(msg);
		return out_of_memory(c, rcpt, why, whylen);
	}
	common_options(c, cfg, errbuf);
	curl_easy_setopt(c, CURLOPT_URL, cfg->smtp_url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, cfg->smtp_from);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_body);
	curl_easy_setopt(c, CURLOPT_READDATA, &r);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	if (cfg->smtp_ca_file != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, cfg->smtp_ca_file);
	if (cfg->smtp_user != NULL) {
		curl_easy_setopt(c, CURLOPT_USERNAME, cfg->smtp_user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, sec->smtp_password);
	}
	rc = curl_easy_perform(c);
	curl_slist_free_all(rcpt);
	curl_easy_cleanup(c);
	free(msg);
	return rc == CURLE_OK ? 0 : curl_failed(rc, errbuf, why, whylen);
}

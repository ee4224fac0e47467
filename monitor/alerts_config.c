/* alerts_config.c — the [alerts] section: its keys, their values and the
 * checks that refuse a target that could never deliver (a command that is
 * not an absolute path to an executable, a webhook that would send alerts
 * in the clear off this machine, e-mail without a recipient, a secret file
 * anyone can read), and the admin listener's address and token.  The
 * agent's configuration reader hands each key here. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "../common/hostport.h"
#include "monitor.h"

void mon_config_init(mon_config *c)
{
	memset(c, 0, sizeof(*c));
	c->grace_s = 120;
	c->interval_s = 15;
	c->timeout_ms = 10000;
	c->serving_check_s = 300;
}

void mon_config_free(mon_config *c)
{
	char **strings[] = {
	    &c->command,           &c->webhook,   &c->webhook_ca_file, &c->webhook_token_file,
	    &c->smtp_url,          &c->smtp_from, &c->smtp_ca_file,    &c->smtp_user,
	    &c->smtp_password_file};

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		free(*strings[i]);
	for (size_t i = 0; i < c->nsmtp_to; i++)
		free(c->smtp_to[i]);
	free(c->smtp_to);
	mon_config_init(c);
}

bool mon_config_repeatable(const char *key)
{
	return strcmp(key, "smtp_to") == 0;
}

static int set(char **slot, const char *key, const char *value, cs_err *err)
{
	if (*value == '\0')
		return cs_fail(err, CS_EUSAGE, "[alerts] %s is empty; give it a value", key);
	free(*slot);
	*slot = strdup(value);
	return *slot ? 0 : cs_fail(err, CS_EIO, "out of memory");
}

static int absolute_file(const char *key, const char *value, struct stat *st, cs_err *err)
{
	if (value[0] != '/')
		return cs_fail(err, CS_EUSAGE,
		               "[alerts] %s = %s is not an absolute path; give an absolute one",
		               key, value);
	if (stat(value, st) < 0)
		return cs_fail(err, CS_EUSAGE, "[alerts] %s = %s: %s; give an existing file", key,
		               value, strerror(errno));
	if (!S_ISREG(st->st_mode))
		return cs_fail(err, CS_EUSAGE, "[alerts] %s = %s is not a regular file", key,
		               value);
	return 0;
}

static int set_file(char **slot, const char *key, const char *value, cs_err *err)
{
	struct stat st;

	return absolute_file(key, value, &st, err) < 0 ? -1 : set(slot, key, value, err);
}

static int check_command(const char *value, cs_err *err)
{
	struct stat st;

	if (absolute_file("command", value, &st, err) < 0)
		return -1;
	if (access(value, X_OK) < 0)
		return cs_fail(err, CS_EUSAGE,
		               "[alerts] command = %s is not executable; chmod +x it or name the "
		               "program itself (it runs without a shell)",
		               value);
	return 0;
}

/* 127.0.0.0/8, ::1 or localhost: an address that never leaves the machine. */
static bool loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	char h[64];
	size_t n = strlen(host);

	if (strcmp(host, "localhost") == 0)
		return true;
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(h)) {
		memcpy(h, host + 1, n - 2);
		h[n - 2] = '\0';
		return inet_pton(AF_INET6, h, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
	}
	return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* A token or password anyone on the machine can read is no secret. */
static int secret_file(const char *section, const char *key, const char *value, cs_err *err)
{
	struct stat st;

	if (value[0] != '/' || stat(value, &st) < 0 || !S_ISREG(st.st_mode))
		return cs_fail(err, CS_EUSAGE,
		               "[%s] %s = %s: give the absolute path of an existing file", section,
		               key, value);
	if (st.st_mode & S_IROTH)
		return cs_fail(err, CS_EUSAGE,
		               "[%s] %s = %s is readable by every user; chmod 600 it", section, key,
		               value);
	return 0;
}

static int check_secret_file(const char *key, const char *value, cs_err *err)
{
	return secret_file("alerts", key, value, err);
}

int mon_admin_config_check(const char *listen, const char *token_file, cs_err *err)
{
	char host[256];
	unsigned port;

	if (listen == NULL)
		return token_file == NULL
		           ? 0
		           : cs_fail(err, CS_EUSAGE,
		                     "[node] admin_token_file needs admin_listen, the "
		                     "address of the admin listener");
	if (!cs_hostport_split(listen, host, sizeof(host), &port, false))
		return cs_fail(err, CS_EUSAGE,
		               "[node] admin_listen = %s: write ADDR:PORT, as in 127.0.0.1:9443",
		               listen);
	if (token_file != NULL)
		return secret_file("node", "admin_token_file", token_file, err);
	if (!loopback(host))
		return cs_fail(
		    err, CS_EUSAGE,
		    "[node] admin_listen = %s is not a loopback address: add admin_token_file "
		    "(a bearer token, chmod 600) or listen on 127.0.0.1",
		    listen);
	return 0;
}

/* The URL's scheme and host, read by libcurl's URL parser. */
static int url_parts(const char *key, const char *value, char **scheme, char **host, cs_err *err)
{
	CURLU *u = curl_url();
	int rc = 0;

	*scheme = *host = NULL;
	if (u == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, value, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK)
		rc = cs_fail(err, CS_EUSAGE, "[alerts] %s = %s is not a URL; write it as in %s",
		             key, value,
		             strcmp(key, "webhook") == 0 ? "https://alerts.example.com/certsync"
		                                         : "smtp://mail.example.com:587");
	curl_url_cleanup(u);
	return rc;
}

static int check_webhook(const char *value, cs_err *err)
{
	char *scheme, *host;
	int rc = url_parts("webhook", value, &scheme, &host, err);

	if (rc == 0 && strcmp(scheme, "https") != 0 &&
	    !(strcmp(scheme, "http") == 0 && loopback(host)))
		rc = cs_fail(err, CS_EUSAGE,
		             "[alerts] webhook = %s: use https:// (http:// only to a loopback "
		             "address such as 127.0.0.1)",
		             value);
	curl_free(scheme);
	curl_free(host);
	return rc;
}

static int check_smtp(const char *value, cs_err *err)
{
	char *scheme, *host;
	int rc = url_parts("smtp_url", value, &scheme, &host, err);

	if (rc == 0 && strcmp(scheme, "smtp") != 0 && strcmp(scheme, "smtps") != 0)
		rc = cs_fail(err, CS_EUSAGE,
		             "[alerts] smtp_url = %s: use smtp:// (STARTTLS) or smtps://", value);
	curl_free(scheme);
	curl_free(host);
	return rc;
}

static int set_int(int *slot, const char *key, const char *value, long min, long max,
                   const char *unit, cs_err *err)
{
	char *end;
	long v = strtol(value, &end, 10);

	if (*value == '\0' || *end != '\0' || v < min || v > max)
		return cs_fail(err, CS_EUSAGE,
		               "[alerts] %s = %s: give a whole number of %s from %ld to %ld", key,
		               value, unit, min, max);
	*slot = (int)v;
	return 0;
}

static int add_to(mon_config *c, const char *value, cs_err *err)
{
	char **list;

	if (strchr(value, '@') == NULL || strpbrk(value, " \t<>,\r\n") != NULL)
		return cs_fail(err, CS_EUSAGE,
		               "[alerts] smtp_to = %s: give one address, as in ops@example.com; "
		               "repeat the key for more",
		               value);
	list = realloc(c->smtp_to, (c->nsmtp_to + 1) * sizeof(*list));
	if (list == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	c->smtp_to = list;
	if ((list[c->nsmtp_to] = strdup(value)) == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	c->nsmtp_to++;
	return 0;
}

int mon_config_set(mon_config *c, const char *key, const char *value, cs_err *err)
{
	if (strcmp(key, "command") == 0)
		return check_command(value, err) < 0 ? -1 : set(&c->command, key, value, err);
	if (strcmp(key, "webhook") == 0)
		return check_webhook(value, err) < 0 ? -1 : set(&c->webhook, key, value, err);
	if (strcmp(key, "webhook_ca_file") == 0)
		return set_file(&c->webhook_ca_file, key, value, err);
	if (strcmp(key, "smtp_ca_file") == 0)
		return set_file(&c->smtp_ca_file, key, value, err);
	if (strcmp(key, "webhook_token_file") == 0)
		return check_secret_file(key, value, err) < 0
		           ? -1
		           : set(&c->webhook_token_file, key, value, err);
	if (strcmp(key, "smtp_url") == 0)
		return check_smtp(value, err) < 0 ? -1 : set(&c->smtp_url, key, value, err);
	if (strcmp(key, "smtp_from") == 0)
		return set(&c->smtp_from, key, value, err);
	if (strcmp(key, "smtp_to") == 0)
		return add_to(c, value, err);
	if (strcmp(key, "smtp_user") == 0)
		return set(&c->smtp_user, key, value, err);
	if (strcmp(key, "smtp_password_file") == 0)
		return check_secret_file(key, value, err) < 0
		           ? -1
		           : set(&c->smtp_password_file, key, value, err);
	if (strcmp(key, "grace") == 0)
		return set_int(&c->grace_s, key, value, 0, 86400, "seconds", err);
	if (strcmp(key, "interval") == 0)
		return set_int(&c->interval_s, key, value, 1, 60, "seconds", err);
	if (strcmp(key, "timeout") == 0)
		return set_int(&c->timeout_ms, key, value, 100, 120000, "milliseconds", err);
	if (strcmp(key, "serving_check") == 0)
		return set_int(&c->serving_check_s, key, value, 5, 86400, "seconds", err);
	return cs_fail(err, CS_EUSAGE,
	               "unknown key '%s' in [alerts]; the keys are command, webhook, "
	               "webhook_ca_file, webhook_token_file, smtp_url, smtp_from, smtp_to, "
	               "smtp_ca_file, smtp_user, smtp_password_file, grace, interval, timeout and "
	               "serving_check",
	               key);
}

int mon_config_check(const mon_config *c, cs_err *err)
{
	bool smtp_any =
	    c->smtp_from || c->nsmtp_to || c->smtp_user || c->smtp_password_file || c->smtp_ca_file;

	if (c->smtp_url == NULL && smtp_any)
		return cs_fail(
		    err, CS_EUSAGE,
		    "[alerts] smtp_from, smtp_to, smtp_ca_file, smtp_user and smtp_password_file "
		    "need "
		    "smtp_url, the mail server (as in smtp://mail.example.com:587)");
	if (c->smtp_url != NULL && c->nsmtp_to == 0)
		return cs_fail(err, CS_EUSAGE,
		               "[alerts] smtp_url needs a recipient: add smtp_to = ADDRESS");
	if (c->smtp_url != NULL && c->smtp_from == NULL)
		return cs_fail(err, CS_EUSAGE,
		               "[alerts] smtp_url needs a sender: add smtp_from = ADDRESS");
	if ((c->smtp_user == NULL) != (c->smtp_password_file == NULL))
		return cs_fail(err, CS_EUSAGE,
		               "[alerts] smtp_user and smtp_password_file go together; give both "
		               "or neither");
	if (c->webhook == NULL && (c->webhook_ca_file || c->webhook_token_file))
		return cs_fail(err, CS_EUSAGE,
		               "[alerts] webhook_ca_file and webhook_token_file need webhook, the "
		               "URL alerts are posted to");
	return 0;
}

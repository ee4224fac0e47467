/* reload.c — SIGHUP (reload.h).
 *
 * The new file is loaded with the same checks as at start; only once it
 * loads whole is anything applied.  Keys that can change live are compared
 * with what was last applied; every other key with what the agent started
 * with, since that is what still runs: a key changed once keeps being
 * reported until the agent restarts. */
#include "reload.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "acme_agent.h"
#include "ops.h"

/* What a changed key does. */
enum effect {
	RESTART,     /* needs a restart; the running value stays */
	LIVE_LOG,    /* log_level */
	LIVE_ALERTS, /* the alert targets and their delivery */
	LIVE_PER_IP, /* tls_max_connections_per_ip */
	LIVE_HS,     /* tls_handshake_timeout */
	LIVE_ACME,   /* [acme]: the runner takes it at its next pass (acme_reload.c) */
};

enum kind { STR, INT, STRS, ROLE, LEVEL, BOOL };

static const struct field {
	const char *section, *key;
	enum kind kind;
	size_t off, count_off; /* count_off: STRS only */
	enum effect effect;
} fields[] = {
#define F(sec, key, kind, member, effect)                                                          \
	{                                                                                          \
		sec, key, kind, offsetof(cs_config, member), 0, effect                             \
	}
#define FS(sec, key, member, count, effect)                                                        \
	{                                                                                          \
		sec, key, STRS, offsetof(cs_config, member), offsetof(cs_config, count), effect    \
	}
    F("node", "name", STR, name, RESTART),
    F("node", "role", ROLE, role, RESTART),
    F("node", "hostname", STR, hostname, RESTART),
    F("node", "data_dir", STR, data_dir, RESTART),
    F("node", "control_socket", STR, control_socket, RESTART),
    F("node", "passphrase_file", STR, passphrase_file, RESTART),
    F("node", "log_level", LEVEL, log_level, LIVE_LOG),
    FS("node", "tls_listen", tls_listen, ntls_listen, RESTART),
    F("node", "tls_workers", INT, tls_workers, RESTART),
    F("node", "tls_handshake_timeout", INT, tls_handshake_timeout_ms, LIVE_HS),
    F("node", "tls_max_connections", INT, tls_max_connections, RESTART),
    F("node", "tls_max_connections_per_ip", INT, tls_max_connections_per_ip, LIVE_PER_IP),
    F("node", "repl_listen", STR, repl_listen, RESTART),
    F("node", "curve_secret_file", STR, curve_secret_file, RESTART),
    F("node", "log_retain", INT, log_retain, RESTART),
    F("node", "store_map_size", INT, store_map_size_mib, RESTART),
    F("node", "core_dumps", INT, core_dumps, RESTART),
    F("node", "admin_listen", STR, admin_listen, RESTART),
    F("node", "admin_token_file", STR, admin_token_file, RESTART),
    /* read at start and when a rekey arrives, from the configuration loaded at start */
    F("node", "next_passphrase_file", STR, next_passphrase_file, RESTART),
    F("cluster", "site_hostname", STR, site_hostname, RESTART),
    F("alerts", "command", STR, alerts.command, LIVE_ALERTS),
    F("alerts", "webhook", STR, alerts.webhook, LIVE_ALERTS),
    F("alerts", "webhook_ca_file", STR, alerts.webhook_ca_file, LIVE_ALERTS),
    F("alerts", "webhook_token_file", STR, alerts.webhook_token_file, LIVE_ALERTS),
    F("alerts", "smtp_url", STR, alerts.smtp_url, LIVE_ALERTS),
    F("alerts", "smtp_from", STR, alerts.smtp_from, LIVE_ALERTS),
    F("alerts", "smtp_ca_file", STR, alerts.smtp_ca_file, LIVE_ALERTS),
    FS("alerts", "smtp_to", alerts.smtp_to, alerts.nsmtp_to, LIVE_ALERTS),
    F("alerts", "smtp_user", STR, alerts.smtp_user, LIVE_ALERTS),
    F("alerts", "smtp_password_file", STR, alerts.smtp_password_file, LIVE_ALERTS),
    F("alerts", "timeout", INT, alerts.timeout_ms, LIVE_ALERTS),
    /* the tracker's grace and the loop's timer are set up once */
    F("alerts", "grace", INT, alerts.grace_s, RESTART),
    F("alerts", "interval", INT, alerts.interval_s, RESTART),
    /* the http-01 listener binds it once; a peer's http_endpoint is in diff_peers */
    F("node", "http_listen", STR, http_listen, RESTART),
    F("acme", "directory", STR, acme.directory, LIVE_ACME),
    FS("acme", "contact", acme.contact, acme.ncontact, LIVE_ACME),
    F("acme", "agree_tos", BOOL, acme.agree_tos, LIVE_ACME),
    F("acme", "ca_file", STR, acme.ca_file, LIVE_ACME),
    F("acme", "eab_kid", STR, acme.eab_kid, LIVE_ACME),
    F("acme", "eab_hmac_file", STR, acme.eab_hmac_file, LIVE_ACME),
    F("acme", "profile", STR, acme.profile, LIVE_ACME),
    F("acme", "key", STR, acme.key, LIVE_ACME),
    F("acme", "dns_server", STR, acme.dns_server, LIVE_ACME),
    F("acme", "dns_tsig_key_file", STR, acme.dns_tsig_key_file, LIVE_ACME),
    F("acme", "dns_hook", STR, acme.dns_hook, LIVE_ACME),
    F("acme", "check_timeout", INT, acme.check_timeout_s, LIVE_ACME),
#undef F
#undef FS
};

struct cs_reload {
	struct event *ev;
	struct event_base *base; /* where a runner SIGHUP starts runs */
	cs_node *node;
	const cs_config *boot;
	const cs_config *applied; /* the live keys as last applied: boot or a loaded one */
	cs_config *loaded;        /* the last configuration loaded (NULL: none yet) */
	cs_config *alerts_owner;  /* the loaded configuration the monitor delivers by */
};

/* The value of f in cfg as text, for comparing and for the log. */
static void value(const cs_config *cfg, const struct field *f, char *out, size_t len)
{
	const char *p = (const char *)cfg + f->off;
	static const char *const levels[] = {"debug", "info", "warn", "error"};
	size_t used = 0;

	out[0] = '\0';
	switch (f->kind) {
	case STR:
		snprintf(out, len, "%s", *(char *const *)p ? *(char *const *)p : "(unset)");
		break;
	case INT: /* 0: the key is not set */
		if (*(const int *)p == 0)
			snprintf(out, len, "default");
		else
			snprintf(out, len, "%d", *(const int *)p);
		break;
	case ROLE:
		snprintf(out, len, "%s", cs_role_name(*(const cs_role *)p));
		break;
	case BOOL:
		snprintf(out, len, "%s", *(const bool *)p ? "yes" : "no");
		break;
	case LEVEL:
		snprintf(out, len, "%s", levels[*(const enum cs_log_level *)p & 3]);
		break;
	case STRS:
		for (size_t i = 0;
		     i < *(const size_t *)((const char *)cfg + f->count_off) && used < len; i++)
			used += (size_t)snprintf(out + used, len - used, "%s%s", i ? ", " : "",
			                         (*(char *const *const *)p)[i]);
		break;
	}
}

static const cs_peer *find_peer(const cs_peer *peers, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(peers[i].name, name) == 0)
			return &peers[i];
	return NULL;
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool same_peer(const cs_peer *a, const cs_peer *b)
{
	return a->role == b->role && same_str(a->hostname, b->hostname) &&
	       same_str(a->repl_endpoint, b->repl_endpoint) &&
	       same_str(a->curve_public_key, b->curve_public_key) &&
	       same_str(a->tls_endpoint, b->tls_endpoint) &&
	       same_str(a->http_endpoint, b->http_endpoint);
}

static void restart_needed(const char *what)
{
	cs_warn("SIGHUP: %s changed: it takes effect only when the agent restarts; until then "
	        "the agent keeps the value it started with",
	        what);
}

/* [peer NAME] sections added, removed or changed: replication reads them
 * at start.  They are compared with the sections the agent started with:
 * once the node follows the replicated membership, its peers are the
 * membership's, and the file's sections are its seed (members.c). */
static size_t diff_peers(const struct cs_reload *r, const cs_config *cfg)
{
	const struct cs_node *node = r->node;
	const cs_peer *boot = node->seed != NULL ? node->seed : r->boot->peers;
	size_t nboot = node->seed != NULL ? node->nseed : r->boot->npeers;
	char what[160];
	size_t n = 0;

	for (size_t i = 0; i < cfg->npeers; i++) {
		const cs_peer *was = find_peer(boot, nboot, cfg->peers[i].name);

		if (was != NULL && same_peer(was, &cfg->peers[i]))
			continue;
		snprintf(what, sizeof(what), "[peer %s] (%s)", cfg->peers[i].name,
		         was ? "its keys" : "a new section");
		restart_needed(what);
		n++;
	}
	for (size_t i = 0; i < nboot; i++) {
		if (find_peer(cfg->peers, cfg->npeers, boot[i].name) != NULL)
			continue;
		snprintf(what, sizeof(what), "[peer %s] (removed)", boot[i].name);
		restart_needed(what);
		n++;
	}
	return n;
}

/* The TLS endpoint's limits that change live; -1 when this one cannot
 * (no endpoint runs, or the per-source table was not made at start). */
static int apply_tls(struct cs_reload *r, const struct field *f, const cs_config *cfg)
{
	tls_server *tls = r->node->tls;

	if (tls == NULL)
		return -1;
	if (f->effect == LIVE_HS) {
		tls_server_set_handshake_timeout(tls, cfg->tls_handshake_timeout_ms);
		return 0;
	}
	return tls_server_set_max_per_source(tls, cfg->tls_max_connections_per_ip > 0
	                                              ? cfg->tls_max_connections_per_ip
	                                              : TLS_DEFAULT_MAX_PER_SOURCE);
}

/* Applies what changed between r->applied and cfg on the live keys; the
 * effects are or'ed into *effects. */
static size_t diff_fields(struct cs_reload *r, const cs_config *cfg, unsigned *effects)
{
	char was[512], now[512], what[96];
	size_t n = 0;

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const struct field *f = &fields[i];

		/* [acme] is the node's own copy, replaced only when applied */
		value(f->effect == RESTART     ? r->boot
		      : f->effect == LIVE_ACME ? r->node->cfg
		                               : r->applied,
		      f, was, sizeof(was));
		value(cfg, f, now, sizeof(now));
		if (strcmp(was, now) == 0)
			continue;
		n++;
		snprintf(what, sizeof(what), "[%s] %s", f->section, f->key);
		if ((f->effect == LIVE_PER_IP || f->effect == LIVE_HS) &&
		    apply_tls(r, f, cfg) < 0) {
			restart_needed(what);
			continue;
		}
		if (f->effect == RESTART) {
			restart_needed(what);
			continue;
		}
		*effects |= 1u << f->effect;
		cs_info("SIGHUP: %s: %s -> %s (applied)", what, was, now);
	}
	return n;
}

static void reload(struct cs_reload *r)
{
	cs_config *cfg = calloc(1, sizeof(*cfg));
	unsigned effects = 0;
	cs_err err = {0};
	size_t changed;

	if (cfg == NULL || cs_config_load(cfg, r->boot->path, &err) < 0) {
		cs_error("SIGHUP: the configuration no longer loads, so the agent keeps running on "
		         "the one it loaded before: %s",
		         cfg ? err.msg : "out of memory");
		free(cfg);
		return;
	}
	changed = diff_fields(r, cfg, &effects) + diff_peers(r, cfg);
	if (effects & (1u << LIVE_LOG))
		cs_log_set_level(cfg->log_level);
	if (effects & (1u << LIVE_ACME)) {
		if (acme_reload(r->node, &cfg->acme, r->base, &err) < 0)
			cs_error("SIGHUP: [acme]: %s; ACME keeps the section it had", err.msg);
		else
			cs_info(
			    "SIGHUP: [acme] applied: ACME commands use it now and the runner from "
			    "its next order; an order already running finishes with the section "
			    "it started with");
	}
	/* A token or password file may hold a new secret under the same name. */
	if (cfg->alerts.webhook_token_file != NULL || cfg->alerts.smtp_password_file != NULL)
		effects |= 1u << LIVE_ALERTS;
	if (effects & (1u << LIVE_ALERTS)) {
		if (ops_monitor_retarget(r->node, &cfg->alerts, &err) < 0) {
			/* the monitor delivers to what it had */
			cs_error(
			    "SIGHUP: [alerts]: %s; alerts still go to the targets they went to",
			    err.msg);
		} else {
			if (r->alerts_owner != NULL && r->alerts_owner != r->loaded) {
				cs_config_free(r->alerts_owner);
				free(r->alerts_owner);
			}
			r->alerts_owner = cfg;
			cs_info("SIGHUP: alerts go to the targets of [alerts] as it is now");
		}
	}
	if (r->loaded != NULL && r->loaded != r->alerts_owner) {
		cs_config_free(r->loaded);
		free(r->loaded);
	}
	r->loaded = cfg;
	r->applied = cfg;
	if (changed == 0)
		cs_info("SIGHUP: %s read again: nothing changed", cfg->path);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	reload(arg);
}

int cs_reload_start(cs_reload **out, struct event_base *base, cs_node *node, const cs_config *boot,
                    cs_err *err)
{
	struct cs_reload *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (r == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	r->node = node;
	r->base = base;
	r->boot = boot;
	r->applied = boot;
	r->ev = evsignal_new(base, SIGHUP, on_hup, r);
	if (r->ev == NULL || evsignal_add(r->ev, NULL) < 0) {
		cs_reload_stop(r);
		cs_reload_free(r);
		return cs_fail(err, CS_EIO, "cannot catch SIGHUP");
	}
	*out = r;
	return 0;
}

void cs_reload_stop(cs_reload *r)
{
	if (r != NULL && r->ev != NULL) {
		event_free(r->ev);
		r->ev = NULL;
	}
}

void cs_reload_free(cs_reload *r)
{
	if (r == NULL)
		return;
	cs_reload_stop(r);
	if (r->alerts_owner != NULL && r->alerts_owner != r->loaded) {
		cs_config_free(r->alerts_owner);
		free(r->alerts_owner);
	}
	if (r->loaded != NULL) {
		cs_config_free(r->loaded);
		free(r->loaded);
	}
	free(r);
}

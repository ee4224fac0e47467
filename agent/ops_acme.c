/* ops_acme.c — the `certsync acme` commands: add, list, show, renew, remove
 * and account, and the acme part of `status`.  Changes are primary-only
 * like every other; the work itself (orders, challenges, renewals) is the
 * runner's (acme_runner.c), which these commands wake. */
#include "acme_agent.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/clock.h"
#include "../common/hostport.h"
#include "../pki/pki.h"
#include "node.h"
#include "ops.h"
#include "live.h"
#include "records.h"
#include "worker.h"

#define ACME_NAME_MAX 64

static int need_acme(struct cs_node *node, const char *cmd, cs_err *err)
{
	if (node->cfg->acme.directory != NULL)
		return 0;
	return cs_fail(err, CS_EREFUSED,
	               "%s refused: %s has no [acme] directory in %s; add an [acme] section "
	               "(see README.md, Configuration) on every primary-capable node and "
	               "send the agent SIGHUP",
	               cmd, node->cfg->name, node->cfg->path);
}

static int check_name(const char *name, cs_err *err)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && strchr("-_.", name[i]) == NULL)
			n = 0;
	if (n == 0 || n > ACME_NAME_MAX)
		return cs_fail(err, CS_EUSAGE,
		               "acme add: NAME '%.80s' must be 1 to 64 letters, digits, '-', '_' "
		               "or '.'",
		               name);
	return 0;
}

/* A domain the CA can be asked for with challenge ch. */
static int check_domain(const char *d, const char *ch, const cs_acme_config *a, cs_err *err)
{
	bool wild = strncmp(d, "*.", 2) == 0;
	const char *why;

	if (cs_host_is_ip(d)) {
		if (strcmp(ch, "http-01") != 0)
			return cs_fail(err, CS_EUSAGE,
			               "acme add: --domain %s is an IP address; only http-01 can "
			               "validate one (RFC 8738), and only when the CA issues for "
			               "IP addresses",
			               d);
		return 0;
	}
	if ((why = pki_hostname_problem(wild ? d + 2 : d)) != NULL || strchr(d + 1, '*') != NULL)
		return cs_fail(err, CS_EUSAGE,
		               "acme add: --domain %.255s is not a valid DNS name: %s; give a name "
		               "like www.example.com or *.example.com",
		               d,
		               why != NULL ? why : "a wildcard is only the whole left-most label");
	if (wild && strcmp(ch, "dns-01") != 0)
		return cs_fail(err, CS_EUSAGE,
		               "acme add: --domain %s is a wildcard, which CAs validate only "
		               "with dns-01; add --challenge dns-01",
		               d);
	if (strcmp(ch, "dns-01") == 0 && a->dns_server == NULL && a->dns_hook == NULL)
		return cs_fail(err, CS_EUSAGE,
		               "acme add: --challenge dns-01 needs dns_server (with "
		               "dns_tsig_key_file) or dns_hook in [acme]; add one and restart "
		               "the agent");
	return 0;
}

/* Hosts of the configuration no domain covers (one left-most wildcard
 * label, as the TLS endpoint matches). */
static json_t *uncovered(const cs_config *cfg, json_t *domains)
{
	const char *hosts[256];
	size_t n = cs_config_hosts(cfg, hosts, 256), k;
	json_t *missing = json_array(), *d;

	for (size_t i = 0; i < n; i++) {
		const char *dot = strchr(hosts[i], '.');
		bool covered = false;

		json_array_foreach(domains, k, d)
		{
			const char *s = json_string_value(d);

			covered =
			    covered || strcasecmp(s, hosts[i]) == 0 ||
			    (strncmp(s, "*.", 2) == 0 && dot && strcasecmp(s + 2, dot + 1) == 0);
		}
		if (!covered)
			json_array_append_new(missing, json_string(hosts[i]));
	}
	return missing;
}

struct add_job {
	struct cs_node *node;
	cs_control_pending *pending;
	ops_wait_req wait;
	Certsync__AcmeCert rec;
	char **domains;
	json_t *uncovered;
	char *name, *challenge, *profile, *key_type;
	cs_acme_snap *acme; /* [acme] when the command came: the worker reads it */
	cs_err err;
	int rc;
};

static void add_job_free(struct add_job *j)
{
	for (size_t i = 0; i < j->rec.n_domains; i++)
		free(j->domains[i]);
	free(j->domains);
	free(j->name);
	free(j->challenge);
	free(j->profile);
	free(j->key_type);
	json_decref(j->uncovered);
	cs_snap_drop((cs_snap *)j->acme);
	free(j);
}

/* On the worker: the directory must answer as an ACME directory (and list
 * the profile asked for) before anything is stored. */
static void add_work(void *arg, const atomic_bool *stop)
{
	struct add_job *j = arg;
	const cs_acme_config *a = &j->acme->a;
	acme_client_opts o = {
	    .directory = a->directory, .ca_file = a->ca_file, .timeout_ms = 15000};
	acme_client *c;
	acme_err e;

	(void)stop;
	if ((c = acme_client_new(&o, &e)) == NULL) {
		j->err = e.err;
		j->err.code = CS_EREFUSED;
		cs_err_prefix(&j->err, "acme add refused: [acme] directory %s: ", a->directory);
		j->rc = -1;
		return;
	}
	if (j->profile[0] != '\0' && !acme_profile_offered(c, j->profile)) {
		cs_fail(&j->err, CS_EUSAGE,
		        "acme add: --profile %s is not offered by the CA's directory %s; give a "
		        "profile its meta.profiles lists, or none",
		        j->profile, a->directory);
		j->rc = -1;
	}
	acme_client_free(c);
}

static void add_done(void *arg, bool cancelled)
{
	struct add_job *j = arg;
	struct cs_node *node = j->node;
	json_t *result = NULL;
	ProtobufCMessage *old;
	char summary[160];
	cs_pos before = node->committed;
	cs_txn *txn;
	int rc = j->rc;

	if (cancelled)
		rc =
		    cs_fail(&j->err, CS_EIO, "the agent stopped; nothing was stored: add it again");
	else if (rc == 0 && !ops_leading(node))
		rc = cs_fail(&j->err, CS_EREFUSED,
		             "acme add refused: %s stopped being the primary meanwhile; run it on "
		             "the primary",
		             node->cfg->name);
	if (rc == 0 && ops_batch_begin(node, &j->err) == 0 &&
	    cs_txn_begin(node->store, true, &txn, &j->err) == 0) {
		before = node->committed;
		rc = rec_acme_get(txn, REC_ACME_CERT, j->name, &certsync__acme_cert__descriptor,
		                  &old, &j->err);
		if (rc == 0) {
			protobuf_c_message_free_unpacked(old, NULL);
			rc = cs_fail(
			    &j->err, CS_EREFUSED,
			    "acme add refused: %s is already managed; `certsync acme remove "
			    "%s` first, or choose another NAME",
			    j->name, j->name);
		} else if (rc == 1) {
			rc = rec_acme_put(txn, REC_ACME_CERT, j->name, &j->rec.base, &j->err);
		}
		snprintf(summary, sizeof(summary), "acme add %s", j->name);
		if (rc < 0)
			cs_txn_abort(txn);
		else if ((rc = ops_commit(node, txn, summary, &j->err)) == 0)
			result =
			    json_pack("{s:s, s:O}", "name", j->name, "uncovered", j->uncovered);
	} else {
		rc = -1;
	}
	if (result != NULL && !cs_pos_same(node->committed, before)) {
		ops_hold_pending(node, j->pending, &j->wait, result);
		acme_runner_wake(node->acme);
	} else {
		cs_control_answer(j->pending, result, &j->err);
	}
	add_job_free(j);
}

static int read_add(struct cs_node *node, json_t *args, struct add_job *j, cs_err *err)
{
	const cs_acme_config *a = &node->cfg->acme;
	const char *name, *ch, *profile, *key;
	json_t *domains = json_object_get(args, "domains"), *d;
	pki_keyspec spec;
	size_t i;

	if (ops_arg_string(args, "name", true, &name, err) < 0 ||
	    ops_arg_string(args, "challenge", false, &ch, err) < 0 ||
	    ops_arg_string(args, "profile", false, &profile, err) < 0 ||
	    ops_arg_string(args, "key", false, &key, err) < 0 || check_name(name, err) < 0)
		return -1;
	ch = ch != NULL ? ch : "http-01";
	key = key != NULL ? key : cs_config_acme_key(a);
	profile = profile != NULL ? profile : a->profile != NULL ? a->profile : "";
	if (acme_chal_parse(ch, &(acme_chal_type){0}) != 0)
		return cs_fail(err, CS_EUSAGE,
		               "acme add: --challenge %.40s: use http-01, tls-alpn-01 or dns-01",
		               ch);
	if (pki_keyspec_parse(key, &spec, err) < 0)
		return cs_err_prefix(err, "acme add: --key %.40s: ", key);
	if (!json_is_array(domains) || json_array_size(domains) == 0 ||
	    json_array_size(domains) > ACME_MAX_IDENTIFIERS)
		return cs_fail(err, CS_EUSAGE, "acme add: give 1 to %d --domain names",
		               ACME_MAX_IDENTIFIERS);
	j->domains = calloc(json_array_size(domains), sizeof(char *));
	if (j->domains == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	json_array_foreach(domains, i, d)
	{
		if (!json_is_string(d))
			return cs_fail(err, CS_EUSAGE,
			               "control request: args.domains holds strings");
		if (check_domain(json_string_value(d), ch, a, err) < 0)
			return -1;
		for (size_t k = 0; k < j->rec.n_domains; k++)
			if (strcasecmp(j->domains[k], json_string_value(d)) == 0)
				return cs_fail(err, CS_EUSAGE,
				               "acme add: --domain %s is given twice",
				               j->domains[k]);
		if ((j->domains[j->rec.n_domains] = strdup(json_string_value(d))) == NULL)
			return cs_fail(err, CS_EIO, "out of memory");
		for (char *p = j->domains[j->rec.n_domains]; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		j->rec.n_domains++;
	}
	j->name = strdup(name);
	j->challenge = strdup(ch);
	j->profile = strdup(profile);
	j->key_type = strdup(key);
	if (!j->name || !j->challenge || !j->profile || !j->key_type)
		return cs_fail(err, CS_EIO, "out of memory");
	j->rec.name = j->name;
	j->rec.domains = j->domains;
	j->rec.challenge = j->challenge;
	j->rec.profile = j->profile;
	j->rec.key_type = j->key_type;
	j->rec.make_default = json_is_true(json_object_get(args, "default"));
	j->rec.state = REC_ACME_STATE_SCHEDULED;
	j->rec.next_attempt = j->rec.created = time(NULL);
	j->rec.next_reason = "new: obtained at once";
	j->uncovered = uncovered(node->cfg, domains);
	return ops_wait_args(node, args, &j->wait, err);
}

json_t *op_acme_add(struct cs_node *node, json_t *args, cs_err *err)
{
	struct add_job *j = calloc(1, sizeof(*j));
	Certsync__AcmeCert init = CERTSYNC__ACME_CERT__INIT;

	if (j == NULL) {
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	j->node = node;
	j->rec = init;
	j->acme = cs_live_acme(node->live);
	if (need_acme(node, "acme add", err) < 0 || read_add(node, args, j, err) < 0)
		goto fail;
	if (node->worker == NULL || (j->pending = cs_control_defer(node->ctl)) == NULL) {
		cs_fail(err, CS_EIO, "cannot check the ACME directory off the loop; try again");
		goto fail;
	}
	if (cs_worker_submit(node->worker, add_work, add_done, j) < 0) {
		cs_fail(&j->err, CS_EIO, "out of memory");
		cs_control_answer(j->pending, NULL, &j->err);
		add_job_free(j);
	}
	return NULL;
fail:
	add_job_free(j);
	return NULL;
}

/* ---- list, show ---------------------------------------------------------------- */

struct list_walk {
	cs_txn *txn;
	json_t *list;
};

static int list_one(void *ctx, const char *name, ProtobufCMessage *m)
{
	struct list_walk *w = ctx;

	(void)name;
	json_array_append_new(w->list, acme_cert_json(w->txn, (Certsync__AcmeCert *)m, false));
	return 0;
}

json_t *op_acme_list(struct cs_node *node, json_t *args, cs_err *err)
{
	struct list_walk w = {.list = json_array()};

	(void)args;
	if (cs_txn_begin(node->store, false, &w.txn, err) < 0 ||
	    rec_acme_foreach(w.txn, REC_ACME_CERT, &certsync__acme_cert__descriptor, list_one, &w,
	                     err) != 0) {
		if (w.txn != NULL)
			cs_txn_abort(w.txn);
		json_decref(w.list);
		return NULL;
	}
	cs_txn_abort(w.txn);
	return json_pack("{s:o}", "certificates", w.list);
}

/* The managed certificate args.name names, in a transaction of the
 * caller's: 0 with *out, -1 with a refusal naming it. */
static int find_managed(cs_txn *txn, json_t *args, const char *cmd, Certsync__AcmeCert **out,
                        cs_err *err)
{
	const char *name;
	int rc;

	if (ops_arg_string(args, "name", true, &name, err) < 0)
		return -1;
	rc = rec_acme_get(txn, REC_ACME_CERT, name, &certsync__acme_cert__descriptor,
	                  (ProtobufCMessage **)out, err);
	if (rc == 1)
		return cs_fail(err, CS_EREFUSED,
		               "%s: no managed certificate is named %.80s; `certsync acme list` "
		               "shows them",
		               cmd, name);
	return rc;
}

json_t *op_acme_show(struct cs_node *node, json_t *args, cs_err *err)
{
	Certsync__AcmeCert *c;
	cs_txn *txn;
	json_t *j;

	if (cs_txn_begin(node->store, false, &txn, err) < 0)
		return NULL;
	if (find_managed(txn, args, "acme show", &c, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	j = acme_cert_json(txn, c, true);
	certsync__acme_cert__free_unpacked(c, NULL);
	cs_txn_abort(txn);
	return j;
}

/* ---- renew, remove ---------------------------------------------------------- */

static int renew_now(cs_txn *txn, Certsync__AcmeCert *c, void *arg, cs_err *err)
{
	(void)txn;
	(void)arg;
	(void)err;
	c->state = REC_ACME_STATE_SCHEDULED;
	c->next_attempt = time(NULL);
	c->next_reason = "acme renew: now";
	c->failures = 0;
	return 0;
}

json_t *op_acme_renew(struct cs_node *node, json_t *args, cs_err *err)
{
	Certsync__AcmeCert *c;
	char summary[160];
	cs_txn *txn;

	if (need_acme(node, "acme renew", err) < 0 ||
	    cs_txn_begin(node->store, true, &txn, err) < 0)
		return NULL;
	if (find_managed(txn, args, "acme renew", &c, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	snprintf(summary, sizeof(summary), "acme renew %s", c->name);
	certsync__acme_cert__free_unpacked(c, NULL);
	if (rec_acme_cert_update(txn, json_string_value(json_object_get(args, "name")), renew_now,
	                         NULL, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	if (ops_commit(node, txn, summary, err) < 0)
		return NULL;
	acme_runner_wake(node->acme);
	return json_pack("{s:s, s:s}", "name", json_string_value(json_object_get(args, "name")),
	                 "state", REC_ACME_STATE_SCHEDULED);
}

struct del_walk {
	cs_txn *txn;
	const char *kind, *name;
	char **keys;
	size_t n;
};

static int collect(void *ctx, const char *name, ProtobufCMessage *m)
{
	struct del_walk *w = ctx;
	const char *owner = m->descriptor == &certsync__acme_http_token__descriptor
	                        ? ((Certsync__AcmeHttpToken *)m)->name
	                        : ((Certsync__AcmeAlpnCert *)m)->name;
	char **keys;

	if (strcmp(owner, w->name) != 0)
		return 0;
	if ((keys = realloc(w->keys, (w->n + 1) * sizeof(*keys))) == NULL)
		return -1;
	w->keys = keys;
	return (w->keys[w->n] = strdup(name)) != NULL ? (w->n++, 0) : -1;
}

/* Deletes the challenge records of kind that belong to name. */
static int drop_challenges(cs_txn *txn, const char *kind, const ProtobufCMessageDescriptor *d,
                           const char *name, cs_err *err)
{
	struct del_walk w = {txn, kind, name, NULL, 0};
	int rc = rec_acme_foreach(txn, kind, d, collect, &w, err);

	if (rc > 0 || rc < 0)
		rc = err->code != CS_OK ? -1 : cs_fail(err, CS_EIO, "out of memory");
	for (size_t i = 0; i < w.n; i++) {
		if (rc == 0)
			rc = rec_acme_del(txn, kind, w.keys[i], err);
		free(w.keys[i]);
	}
	free(w.keys);
	return rc;
}

int ops_acme_drop_challenges(cs_txn *txn, const char *name, cs_err *err)
{
	if (drop_challenges(txn, REC_ACME_HTTP01, &certsync__acme_http_token__descriptor, name,
	                    err) < 0)
		return -1;
	return drop_challenges(txn, REC_ACME_ALPN, &certsync__acme_alpn_cert__descriptor, name,
	                       err);
}

json_t *op_acme_remove(struct cs_node *node, json_t *args, cs_err *err)
{
	Certsync__AcmeCert *c;
	char summary[160];
	cs_txn *txn;
	json_t *j;

	if (cs_txn_begin(node->store, true, &txn, err) < 0)
		return NULL;
	if (find_managed(txn, args, "acme remove", &c, err) < 0) {
		cs_txn_abort(txn);
		return NULL;
	}
	snprintf(summary, sizeof(summary), "acme remove %s", c->name);
	j = json_pack("{s:s, s:s}", "name", c->name, "message",
	              "no longer managed; its certificates stay in the store");
	if (rec_acme_del(txn, REC_ACME_CERT, c->name, err) < 0 ||
	    rec_acme_del(txn, REC_ACME_ORDER, c->name, err) < 0 ||
	    ops_acme_drop_challenges(txn, c->name, err) < 0) {
		certsync__acme_cert__free_unpacked(c, NULL);
		json_decref(j);
		cs_txn_abort(txn);
		return NULL;
	}
	certsync__acme_cert__free_unpacked(c, NULL);
	if (ops_commit(node, txn, summary, err) < 0) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* ---- account, status ---------------------------------------------------------- */

static json_t *account_json(cs_txn *txn, cs_err *err)
{
	Certsync__AcmeAccount *a;
	json_t *contact = json_array(), *j;
	char created[32];
	int rc = rec_acme_get(txn, REC_ACME_ACCOUNT, NULL, &certsync__acme_account__descriptor,
	                      (ProtobufCMessage **)&a, err);

	if (rc != 0) {
		json_decref(contact);
		return rc < 0 ? NULL : json_null();
	}
	for (size_t i = 0; i < a->n_contact; i++)
		json_array_append_new(contact, json_string(a->contact[i]));
	cs_iso_time((time_t)a->created, created);
	j = json_pack("{s:s, s:s, s:o, s:s, s:s}", "url", a->url, "status", a->status, "contact",
	              contact, "directory", a->directory, "created", created);
	certsync__acme_account__free_unpacked(a, NULL);
	return j;
}

json_t *op_acme_account(struct cs_node *node, json_t *args, cs_err *err)
{
	cs_txn *txn;
	json_t *j;

	(void)args;
	if (cs_txn_begin(node->store, false, &txn, err) < 0)
		return NULL;
	j = account_json(txn, err);
	cs_txn_abort(txn);
	if (j == NULL)
		return NULL;
	return json_pack("{s:o, s:s?}", "account", j, "directory", node->cfg->acme.directory);
}

struct count_walk {
	cs_txn *txn;
	json_t *states;
	json_t *managed; /* each as `acme list` shows it */
	int64_t next;
	const char *next_name;
	char next_buf[ACME_NAME_MAX + 1];
};

static int count_one(void *ctx, const char *name, ProtobufCMessage *m)
{
	struct count_walk *w = ctx;
	Certsync__AcmeCert *c = (Certsync__AcmeCert *)m;
	json_t *n = json_object_get(w->states, c->state);

	(void)name;
	json_object_set_new(w->states, c->state, json_integer(json_integer_value(n) + 1));
	json_array_append_new(w->managed, acme_cert_json(w->txn, c, false));
	if (c->next_attempt > 0 && (w->next == 0 || c->next_attempt < w->next)) {
		w->next = c->next_attempt;
		snprintf(w->next_buf, sizeof(w->next_buf), "%s", c->name);
		w->next_name = w->next_buf;
	}
	return 0;
}

json_t *ops_acme_status(struct cs_node *node, cs_txn *txn)
{
	struct count_walk w = {.txn = txn,
	                       .states =
	                           json_pack("{s:i, s:i, s:i, s:i}", REC_ACME_STATE_SCHEDULED, 0,
	                                     REC_ACME_STATE_RUNNING, 0, REC_ACME_STATE_FAILED, 0,
	                                     REC_ACME_STATE_PAUSED, 0),
	                       .managed = json_array()};
	json_t *account, *next = json_null();
	char at[32];
	cs_err err;

	if ((account = account_json(txn, &err)) == NULL)
		account = json_null();
	rec_acme_foreach(txn, REC_ACME_CERT, &certsync__acme_cert__descriptor, count_one, &w, &err);
	if (w.next_name != NULL) {
		cs_iso_time((time_t)w.next, at);
		json_decref(next);
		next = json_pack("{s:s, s:s}", "name", w.next_name, "at", at);
	}
	return json_pack("{s:b, s:s?, s:o, s:o, s:o, s:o, s:o}", "configured",
	                 node->cfg->acme.directory != NULL, "directory", node->cfg->acme.directory,
	                 "account", account, "certificates", w.states, "managed", w.managed,
	                 "next_renewal", next, "runner", acme_runner_status(node->acme));
}

/* ---- the node's side ------------------------------------------------------------ */

int cs_node_acme_start(cs_node *node, struct event_base *base, cs_err *err)
{
	if (acme_answer_start(&node->acme_answer, node, base, err) < 0)
		return -1;
	return acme_runner_start(&node->acme, node, base, err);
}

void cs_node_acme_tick(cs_node *node)
{
	acme_runner_tick(node->acme);
}

void cs_node_acme_stop(cs_node *node)
{
	acme_runner_stop(node->acme);
	node->acme = NULL;
	acme_answer_stop(node->acme_answer);
	node->acme_answer = NULL;
}

/* cli_acme.c — `certsync acme ...`: managed certificates that the cluster
 * obtains and renews itself.  Parses each subcommand's flags into a control
 * request, sends it and prints the answer (for a person, or the agent's
 * JSON with --json), and the acme part of `status`. */
#include "cli_acme.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/err.h"
#include "control.h"

#define UNCONFIRMED_EXIT 3
#define NO_ANSWER_EXIT   4

static const struct sub {
	const char *word, *request, *usage, *help;
	bool change;
} subs[] = {
    {"add", "acme.add",
     "acme add NAME --domain D [--domain D ...] [--challenge http-01|tls-alpn-01|dns-01] "
     "[--profile P] [--key TYPE] [--default] [--wait backup|all|none]",
     "Manages a certificate the cluster obtains at once from the [acme] CA and renews "
     "itself; --default makes it the default when it arrives.",
     true},
    {"list", "acme.list", "acme list",
     "Lists managed certificates: state, certificate and expiry, next attempt and why, "
     "renewal window, last error.",
     false},
    {"show", "acme.show", "acme show NAME", "Shows one managed certificate and its order.", false},
    {"renew", "acme.renew", "acme renew NAME [--wait backup|all|none]",
     "Renews now, whatever the schedule (and retries one that failed).", true},
    {"remove", "acme.remove", "acme remove NAME [--wait backup|all|none]",
     "Stops managing it; its certificates stay.", true},
    {"account", "acme.account", "acme account", "Shows the ACME account: URL, status, contact.",
     false},
};
#define NSUBS (sizeof(subs) / sizeof(subs[0]))

void cli_acme_usage(FILE *out)
{
	for (size_t i = 0; i < NSUBS; i++)
		fprintf(out, "  acme %-13s %s\n", subs[i].word, subs[i].help);
}

static int usage(const struct sub *s, const char *what)
{
	if (s == NULL) {
		fprintf(stderr, "certsync: %s\nusage: certsync acme COMMAND [ARGS]\n\ncommands:\n",
		        what);
		cli_acme_usage(stderr);
	} else {
		fprintf(stderr, "certsync: %s; usage: certsync %s\n", what, s->usage);
	}
	return 2;
}

static int parse_add(const struct sub *s, int argc, char **argv, json_t *args)
{
	static const struct option opts[] = {
	    {"domain", required_argument, NULL, 'd'},  {"challenge", required_argument, NULL, 'c'},
	    {"profile", required_argument, NULL, 'p'}, {"key", required_argument, NULL, 'k'},
	    {"default", no_argument, NULL, 'D'},       {NULL, 0, NULL, 0},
	};
	json_t *domains = json_array();
	char what[160];
	int c;

	json_object_set_new(args, "domains", domains);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			json_array_append_new(domains, json_string(optarg));
			break;
		case 'c':
			json_object_set_new(args, "challenge", json_string(optarg));
			break;
		case 'p':
			json_object_set_new(args, "profile", json_string(optarg));
			break;
		case 'k':
			json_object_set_new(args, "key", json_string(optarg));
			break;
		case 'D':
			json_object_set_new(args, "default", json_true());
			break;
		case ':':
			snprintf(what, sizeof(what), "%s needs a value", argv[optind - 1]);
			return usage(s, what);
		default:
			snprintf(what, sizeof(what), "unknown flag %s", argv[optind - 1]);
			return usage(s, what);
		}
	}
	if (optind + 1 != argc)
		return usage(s, "give exactly one NAME");
	if (json_array_size(domains) == 0)
		return usage(s, "give at least one --domain");
	json_object_set_new(args, "name", json_string(argv[optind]));
	return 0;
}

static int parse(const struct sub *s, int argc, char **argv, json_t *args)
{
	if (strcmp(s->word, "add") == 0)
		return parse_add(s, argc, argv, args);
	if (strcmp(s->word, "list") == 0 || strcmp(s->word, "account") == 0)
		return argc == 1 ? 0 : usage(s, "unexpected arguments");
	if (argc != 2 || argv[1][0] == '-')
		return usage(s, "give exactly one NAME");
	json_object_set_new(args, "name", json_string(argv[1]));
	return 0;
}

static const char *str(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v != NULL ? v : "";
}

static void print_cert(json_t *c, bool full)
{
	json_t *cur = json_object_get(c, "certificate"), *w = json_object_get(c, "renewal_window");
	json_t *e = json_object_get(c, "last_error"), *d, *o = json_object_get(c, "order");
	size_t i;

	printf("%-20s %-9s %s%s\n", str(c, "name"), str(c, "state"), str(c, "challenge"),
	       json_is_true(json_object_get(c, "default")) ? ", default" : "");
	printf("  domains:      ");
	json_array_foreach(json_object_get(c, "domains"), i, d)
	    printf("%s%s", i ? ", " : "", json_string_value(d));
	printf("\n");
	if (json_is_object(cur))
		printf("  certificate:  %.8s, expires %s\n", str(cur, "id"), str(cur, "not_after"));
	else
		printf("  certificate:  none yet\n");
	if (json_is_string(json_object_get(c, "next_attempt")))
		printf("  next attempt: %s (%s)\n", str(c, "next_attempt"), str(c, "next_reason"));
	else
		printf("  next attempt: none (%s)\n", str(c, "next_reason"));
	if (json_is_string(json_object_get(c, "renewal_time")))
		printf("  renewal due:  %s\n", str(c, "renewal_time"));
	if (json_is_object(w))
		printf("  renewal window: %s to %s (%s)\n", str(w, "start"), str(w, "end"),
		       str(w, "source"));
	if (json_is_object(e))
		printf("  last error:   %s%s%s\n", str(e, "message"),
		       str(e, "url")[0] ? " — see " : "", str(e, "url"));
	if (full && json_is_object(o))
		printf("  order:        %s (%s, next: %s)\n", str(o, "url"), str(o, "status"),
		       str(o, "next"));
}

static void print(const struct sub *s, json_t *r)
{
	json_t *c, *a, *m;
	size_t i;

	if (strcmp(s->word, "list") == 0) {
		if (json_array_size(json_object_get(r, "certificates")) == 0)
			printf("no managed certificates; add one with `certsync acme add`\n");
		json_array_foreach(json_object_get(r, "certificates"), i, c) print_cert(c, false);
	} else if (strcmp(s->word, "show") == 0) {
		print_cert(r, true);
	} else if (strcmp(s->word, "account") == 0) {
		a = json_object_get(r, "account");
		if (!json_is_object(a)) {
			printf(
			    "no ACME account yet (directory %s); it is registered with the first "
			    "order\n",
			    str(r, "directory")[0] ? str(r, "directory") : "not configured");
			return;
		}
		printf("account   %s\nstatus    %s\ndirectory %s\ncontact   ", str(a, "url"),
		       str(a, "status"), str(a, "directory"));
		json_array_foreach(json_object_get(a, "contact"), i, c)
		    printf("%s%s", i ? ", " : "", json_string_value(c));
		printf("%s\n", json_array_size(json_object_get(a, "contact")) ? "" : "none");
	} else if (strcmp(s->word, "add") == 0) {
		printf("%s is managed; it is being obtained now (`certsync acme show %s`)\n",
		       str(r, "name"), str(r, "name"));
		m = json_object_get(r, "uncovered");
		if (json_array_size(m) > 0) {
			printf("warning: it does not cover ");
			json_array_foreach(m, i, c)
			    printf("%s%s", i ? ", " : "", json_string_value(c));
			printf("; `certsync verify` will fail until a certificate covers them\n");
		}
	} else if (strcmp(s->word, "renew") == 0) {
		printf("%s: renewal scheduled now\n", str(r, "name"));
	} else {
		printf("%s: %s\n", str(r, "name"), str(r, "message"));
	}
}

int cli_acme_main(int argc, char **argv, const char *socket, bool json, const char *wait)
{
	const struct sub *s = NULL;
	json_t *args, *result = NULL, *unconfirmed;
	cs_err err = {0};
	int rc;

	for (size_t i = 0; argc > 1 && i < NSUBS; i++)
		if (strcmp(argv[1], subs[i].word) == 0)
			s = &subs[i];
	if (s == NULL)
		return argc > 1 && strcmp(argv[1], "--help") == 0
		           ? (printf("usage: certsync acme COMMAND [ARGS]\n\ncommands:\n"),
		              cli_acme_usage(stdout), 0)
		           : usage(NULL,
		                   argc > 1 ? "unknown acme command" : "acme needs a command");
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0) {
			printf("usage: certsync %s\n\n%s\n", s->usage, s->help);
			return 0;
		}
	if (wait != NULL && !s->change)
		return usage(s, "--wait applies to changes only");
	args = json_object();
	if (wait != NULL)
		json_object_set_new(args, "wait", json_string(wait));
	if ((rc = parse(s, argc - 1, argv + 1, args)) != 0) {
		json_decref(args);
		return rc;
	}
	rc = cs_control_call(socket, s->request, args, &result, &err);
	json_decref(args);
	if (rc < 0) {
		if (json) {
			json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code",
			                      cs_err_name(err.code), "message", err.msg);

			json_dumpf(j, stdout, JSON_INDENT(2));
			putchar('\n');
			json_decref(j);
		}
		fprintf(stderr, "certsync: %s\n", err.msg);
		return rc == CS_CONTROL_NO_ANSWER && s->change ? NO_ANSWER_EXIT
		                                               : cs_err_exit_status(err.code);
	}
	if (json) {
		json_dumpf(result, stdout, JSON_INDENT(2));
		putchar('\n');
	} else {
		print(s, result);
	}
	unconfirmed = json_object_get(json_object_get(result, "replication"), "unconfirmed");
	rc = json_array_size(unconfirmed) > 0 ? UNCONFIRMED_EXIT : 0;
	if (rc != 0)
		fprintf(stderr,
		        "certsync: the change is committed, but not confirmed by every node "
		        "of --wait; it reaches them when they catch up\n");
	json_decref(result);
	return rc;
}

void cli_acme_print_status(FILE *out, json_t *acme)
{
	json_t *states = json_object_get(acme, "certificates"), *next, *acct;

	if (!json_is_true(json_object_get(acme, "configured")))
		return;
	acct = json_object_get(acme, "account");
	next = json_object_get(acme, "next_renewal");
	fprintf(out, "acme       %s; account %s\n", str(acme, "directory"),
	        json_is_object(acct) ? str(acct, "url") : "not registered yet");
	fprintf(out, "           %lld scheduled, %lld running, %lld failed, %lld paused",
	        (long long)json_integer_value(json_object_get(states, "scheduled")),
	        (long long)json_integer_value(json_object_get(states, "running")),
	        (long long)json_integer_value(json_object_get(states, "failed")),
	        (long long)json_integer_value(json_object_get(states, "paused")));
	if (json_is_object(next))
		fprintf(out, "; next: %s at %s", str(next, "name"), str(next, "at"));
	fprintf(out, "\n");
}

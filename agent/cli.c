/* cli.c — the operator command: parses a subcommand's flags into a control
 * request, sends it to the agent, and prints the answer for a person or, with
 * --json, for a program.  This is the edge where errors are printed, once. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "../common/log.h"
#include "../replication/repl.h"
#include "../store/seal.h"
#include "../tls/tls.h"
#include "cli_acme.h"
#include "cluster_init.h"
#include "config.h"
#include "control.h"

#define DEFAULT_CONFIG   "/etc/certsync/certsync.conf"
#define MAX_IMPORT_BYTES (32u << 20)
#define USAGE_EXIT       2
/* A change committed on the primary but not confirmed by the nodes --wait
 * names; and a change sent whose answer never came (the agent stopped):
 * neither is "nothing changed" (1), so a script can tell retry from done. */
#define UNCONFIRMED_EXIT 3
#define NO_ANSWER_EXIT   4

static bool json_output;
/* Where the text for a person goes: standard output, or nowhere with --json
 * (the printers still run for what they do besides printing). */
static FILE *human;
#define hprintf(...) fprintf(human, __VA_ARGS__)
/* What a command whose standard output is a file (a PEM to hand to a CA)
 * says to the operator: standard error, so `> file` holds the file alone;
 * nowhere with --json. */
static FILE *aside;

/* ---- small helpers ----------------------------------------------------------- */

/* "1 certificate", "2 certificates": n of key in obj with its word. */
static const char *count(char out[64], json_t *obj, const char *key, const char *one,
                         const char *many)
{
	long long n = (long long)json_integer_value(json_object_get(obj, key));

	snprintf(out, 64, "%lld %s", n, CS_PLURAL(n, one, many));
	return out;
}

static const char *str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "";
}

static json_int_t num(json_t *obj, const char *key)
{
	return json_integer_value(json_object_get(obj, key));
}

/* Prints items of a JSON string array joined by sep. */
static void print_list(json_t *arr, const char *sep)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v)
	{
		hprintf("%s%s", i ? sep : "", json_string_value(v));
	}
}

/* The date part of an ISO 8601 time. */
static const char *day(json_t *obj, const char *key)
{
	static char buf[4][11];
	static int next;
	char *b = buf[next++ % 4];

	snprintf(b, 11, "%s", str(obj, key));
	return b;
}

static int read_file(const char *path, uint8_t **data, size_t *len, cs_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *buf;
	size_t n = 0;

	/* The file is the command's input, not its usage: one that cannot be
	 * read is refused like one that cannot be decoded (exit 1). */
	if (fd < 0)
		return cs_fail(err, CS_EINPUT, "%s: cannot read it: %s; give a readable file", path,
		               strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > MAX_IMPORT_BYTES) {
		close(fd);
		return cs_fail(err, CS_EINPUT, "%s: not a regular file of at most %u MiB", path,
		               MAX_IMPORT_BYTES >> 20);
	}
	/* It may hold a private key: keep it in memory that is wiped. */
	buf = sodium_malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		close(fd);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	while (n < (size_t)st.st_size) {
		ssize_t got = read(fd, buf + n, (size_t)st.st_size - n);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	*data = buf;
	*len = n;
	return 0;
}

/* Reads a secret file into args[key]; allow_empty for PKCS#12 passwords,
 * which may be empty. */
static int secret_arg(json_t *args, const char *key, const char *flag, const char *path,
                      bool allow_empty, cs_err *err)
{
	char *secret;
	size_t len;
	int rc;

	if (cs_secret_file_read(flag, path, allow_empty, &secret, &len, err) < 0) {
		/* For the agent an unreadable passphrase_file is a configuration
		 * error; here the file is the command's input, refused like an
		 * unreadable import file (exit 1). */
		if (err->code == CS_EUSAGE)
			err->code = CS_EINPUT;
		return -1;
	}
	rc = json_object_set_new(args, key, json_string(secret));
	cs_secret_free(secret);
	return rc == 0 ? 0 : cs_fail(err, CS_EIO, "out of memory");
}

/* ---- the commands ------------------------------------------------------------ */

struct command;
typedef int (*parse_fn)(const struct command *cmd, int argc, char **argv, json_t *args,
                        cs_err *err);
typedef int (*print_fn)(json_t *result, json_t *args);
/* A command that needs no agent; argv[0] is its last word. */
typedef int (*local_fn)(const struct command *cmd, int argc, char **argv);

struct command {
	const char *words; /* "cert list" */
	const char *request;
	const char *usage; /* after "certsync " */
	const char *help;
	parse_fn parse;
	print_fn print;
	local_fn local; /* instead of request, parse and print */
};

static int usage_error(const struct command *cmd, cs_err *err, const char *what)
{
	return cs_fail(err, CS_EUSAGE, "%s; usage: certsync %s", what, cmd->usage);
}

/* What the usage calls flag's value ("ID" for "--cert ID"), into out; ""
 * when the usage does not show it (an abbreviated flag). */
static void value_name(const char *usage, const char *flag, char *out, size_t len)
{
	size_t n = strlen(flag);
	const char *p;

	*out = '\0';
	for (p = strstr(usage, flag); p != NULL; p = strstr(p + 1, flag)) {
		if ((p == usage || p[-1] == ' ' || p[-1] == '[') && p[n] == ' ') {
			p += n + 1;
			snprintf(out, len, "%.*s", (int)strcspn(p, " ]"), p);
			return;
		}
	}
}

/* getopt_long, with flag errors said in words: returns the flag's value
 * char, -1 after the last flag, or 0 with err set.  A flag followed by
 * another flag has no value either, though getopt would take the next flag
 * as one ("--name --country GB"). */
static int next_flag(const struct command *cmd, int argc, char **argv, const char *shortopts,
                     const struct option *opts, cs_err *err)
{
	char colon[16], what[160], value[96];
	int c;
	bool took_flag;

	/* A leading ':' makes getopt tell a missing value (':') from an
	 * unknown flag ('?'). */
	snprintf(colon, sizeof(colon), ":%s", shortopts);
	c = getopt_long(argc, argv, colon, opts, NULL);
	if (c == -1)
		return -1;
	took_flag = optarg != NULL && optarg == argv[optind - 1] && strncmp(optarg, "--", 2) == 0;
	if (c != '?' && c != ':' && !took_flag)
		return c;
	if (c == '?') {
		snprintf(what, sizeof(what), "unknown flag %s", argv[optind - 1]);
	} else {
		const char *flag = argv[optind - (took_flag ? 2 : 1)];

		value_name(cmd->usage, flag, value, sizeof(value));
		snprintf(what, sizeof(what), "%s needs a value%s%s%s", flag, *value ? " (" : "",
		         value, *value ? ")" : "");
	}
	usage_error(cmd, err, what);
	return 0;
}

/* Commands with no flags, or one positional ID. */
static int parse_none(const struct command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	(void)argv;
	(void)args;
	return argc == 1 ? 0 : usage_error(cmd, err, "unexpected arguments");
}

static int parse_id(const struct command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	if (argc != 2 || argv[1][0] == '-')
		return usage_error(cmd, err, "give exactly one ID");
	return json_object_set_new(args, "id", json_string(argv[1]));
}

static int parse_new(const struct command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"key", required_argument, NULL, 'k'},
	    {"country", required_argument, NULL, 'C'},
	    {"state", required_argument, NULL, 'S'},
	    {"locality", required_argument, NULL, 'L'},
	    {"org", required_argument, NULL, 'O'},
	    {"unit", required_argument, NULL, 'U'},
	    {"common-name", required_argument, NULL, 'N'},
	    {"san", required_argument, NULL, 's'},
	    {"days", required_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	static const char *const keys[] = {
	    ['n'] = "name",     ['k'] = "key", ['C'] = "country", ['S'] = "state",
	    ['L'] = "locality", ['O'] = "org", ['U'] = "unit",    ['N'] = "common_name",
	};
	bool self_signed = strcmp(cmd->request, "cert.self-signed") == 0;
	json_t *sans = json_array();
	char *end;
	int c;

	json_object_set_new(args, "sans", sans);
	while ((c = next_flag(cmd, argc, argv, "", opts, err)) > 0) {
		if (c == 's') {
			json_array_append_new(sans, json_string(optarg));
		} else if (c == 'd' && self_signed) {
			long days = strtol(optarg, &end, 10);

			if (*end != '\0' || days < 1 || days > 3650)
				return usage_error(cmd, err,
				                   "--days takes a number from 1 to 3650");
			json_object_set_new(args, "days", json_integer(days));
		} else if (c != 'd' && (size_t)c < sizeof(keys) / sizeof(keys[0]) &&
		           keys[c] != NULL) {
			json_object_set_new(args, keys[c], json_string(optarg));
		} else {
			return usage_error(cmd, err, "--days applies to cert self-signed only");
		}
	}
	if (c == 0)
		return -1;
	if (optind != argc)
		return usage_error(cmd, err, "unexpected arguments");
	if (json_object_get(args, "name") == NULL || json_object_get(args, "country") == NULL ||
	    json_object_get(args, "common_name") == NULL)
		return usage_error(cmd, err, "--name, --country and --common-name are required");
	return 0;
}

static int parse_import(const struct command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	static const struct option opts[] = {
	    {"password-file", required_argument, NULL, 'p'},
	    {"name", required_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0},
	};
	json_t *files = json_array();
	int c;

	json_object_set_new(args, "files", files);
	while ((c = next_flag(cmd, argc, argv, "", opts, err)) > 0) {
		if (c == 'p') {
			if (secret_arg(args, "password", "--password-file", optarg, true, err) < 0)
				return -1;
		} else {
			json_object_set_new(args, "name", json_string(optarg));
		}
	}
	if (c == 0)
		return -1;
	if (optind == argc)
		return usage_error(cmd, err, "give at least one FILE");
	for (int i = optind; i < argc; i++) {
		uint8_t *data = NULL;
		size_t len = 0;
		json_t *b64;

		if (read_file(argv[i], &data, &len, err) < 0)
			return -1;
		b64 = cs_control_base64(data, len);
		sodium_free(data);
		if (b64 == NULL)
			return cs_fail(err, CS_EIO, "out of memory");
		json_array_append_new(files, json_pack("{s:s, s:o}", "name", argv[i], "data", b64));
	}
	return 0;
}

static int parse_export(const struct command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	static const struct option opts[] = {
	    {"format", required_argument, NULL, 'f'},
	    {"passphrase-file", required_argument, NULL, 'p'},
	    {"output", required_argument, NULL, 'o'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = next_flag(cmd, argc, argv, "o:", opts, err)) > 0) {
		if (c == 'f')
			json_object_set_new(args, "format", json_string(optarg));
		else if (c == 'o')
			json_object_set_new(args, "output", json_string(optarg));
		else if (secret_arg(args, "passphrase", "--passphrase-file", optarg, false, err) <
		         0)
			return -1;
	}
	if (c == 0)
		return -1;
	if (optind != argc - 1)
		return usage_error(cmd, err, "give exactly one ID");
	return json_object_set_new(args, "id", json_string(argv[optind]));
}

static int parse_prune(const struct command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	static const struct option opts[] = {
	    {"expired", no_argument, NULL, 'e'},
	    {"older-than", required_argument, NULL, 'o'},
	    {"yes", no_argument, NULL, 'y'},
	    {NULL, 0, NULL, 0},
	};
	char *end;
	long days;
	int c;

	while ((c = next_flag(cmd, argc, argv, "", opts, err)) > 0) {
		if (c == 'e') {
			json_object_set_new(args, "expired", json_true());
		} else if (c == 'y') {
			json_object_set_new(args, "yes", json_true());
		} else {
			days = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || days < 0 || days > 36500)
				return usage_error(
				    cmd, err,
				    "--older-than takes a number of days from 0 to 36500");
			json_object_set_new(args, "older_than", json_integer(days));
		}
	}
	if (c == 0)
		return -1;
	if (optind != argc)
		return usage_error(cmd, err, "unexpected arguments");
	if (!json_is_true(json_object_get(args, "expired")))
		return usage_error(cmd, err,
		                   "cert prune removes expired certificates only: say "
		                   "--expired");
	return 0;
}

static int parse_verify(const struct command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	static const struct option opts[] = {
	    {"cert", required_argument, NULL, 'c'},
	    {"cluster", no_argument, NULL, 'C'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = next_flag(cmd, argc, argv, "", opts, err)) > 0) {
		if (c == 'c')
			json_object_set_new(args, "cert", json_string(optarg));
		else
			json_object_set_new(args, "cluster", json_true());
	}
	if (c == 0)
		return -1;
	if (json_object_get(args, "cert") != NULL && json_object_get(args, "cluster") != NULL)
		return usage_error(cmd, err,
		                   "--cluster checks the default certificate; drop --cert");
	return optind == argc ? 0 : usage_error(cmd, err, "unexpected arguments");
}

/* A command whose one flag is --NAME with no value: args.NAME = true. */
static int parse_switch(const struct command *cmd, int argc, char **argv, json_t *args,
                        const char *name, cs_err *err)
{
	const struct option opts[] = {
	    {name, no_argument, NULL, 's'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = next_flag(cmd, argc, argv, "", opts, err)) > 0)
		json_object_set_new(args, name, json_true());
	if (c == 0)
		return -1;
	return optind == argc ? 0 : usage_error(cmd, err, "unexpected arguments");
}

static int parse_promote(const struct command *cmd, int argc, char **argv, json_t *args,
                         cs_err *err)
{
	return parse_switch(cmd, argc, argv, args, "force", err);
}

static int parse_status(const struct command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	return parse_switch(cmd, argc, argv, args, "check", err);
}

static int parse_diverged_prune(const struct command *cmd, int argc, char **argv, json_t *args,
                                cs_err *err)
{
	return parse_switch(cmd, argc, argv, args, "all", err);
}

/* ---- printing ---------------------------------------------------------------- */

/* The replication part of status: this node, then one line per peer. */
static void print_replication(json_t *rs)
{
	json_t *drop = json_object_get(rs, "dropped"), *p;
	size_t i;

	if (!json_is_object(rs))
		return;
	hprintf("primary    %s (epoch %lld, %s)\n",
	        json_is_string(json_object_get(rs, "leader")) ? str(rs, "leader") : "unknown",
	        (long long)json_integer_value(json_object_get(rs, "epoch")), str(rs, "sync"));
	if (json_is_string(json_object_get(rs, "refusal")))
		hprintf("REFUSED    %s\n", str(rs, "refusal"));
	json_array_foreach(json_object_get(rs, "peers"), i, p)
	{
		json_t *lag = json_object_get(p, "lag"),
		       *heard = json_object_get(p, "last_heard_ms");

		hprintf("peer       %-12s %-8s %-11s seq %-8lld", str(p, "name"), str(p, "role"),
		        json_is_true(json_object_get(p, "reachable")) ? "reachable" : "UNREACHABLE",
		        (long long)json_integer_value(json_object_get(p, "seq")));
		if (json_is_integer(lag))
			hprintf(" lag %lld", (long long)json_integer_value(lag));
		if (json_is_integer(heard))
			hprintf(" heard %lld ms ago", (long long)json_integer_value(heard));
		if (json_is_string(json_object_get(p, "refusal")))
			hprintf(" refuses: %s", str(p, "refusal"));
		hprintf("\n");
	}
	hprintf(
	    "dropped    %lld undecodable, %lld oversized, %lld unknown keys, %lld wrong cluster, "
	    "%lld stale epoch, %lld bad entries, %lld bad epoch, %lld unauthenticated "
	    "connections\n",
	    (long long)num(drop, "undecodable"), (long long)num(drop, "oversized"),
	    (long long)num(drop, "unknown_key"), (long long)num(drop, "wrong_cluster"),
	    (long long)num(drop, "stale_epoch"), (long long)num(drop, "bad_entry"),
	    (long long)num(drop, "bad_epoch"), (long long)num(drop, "unauthenticated"));
}

/* The TLS part of status, from the same figures as the JSON. */
static void print_tls(json_t *tls)
{
	json_t *table = json_object_get(tls, "table"), *dflt = json_object_get(table, "default");
	json_t *hs = json_object_get(tls, "handshakes"),
	       *conns = json_object_get(tls, "connections");
	json_t *uncovered = json_object_get(dflt, "uncovered"), *h;
	char w[64];
	size_t i;

	if (!json_is_object(tls)) {
		hprintf("tls        not serving (no tls_listen, or no cluster key yet)\n");
		return;
	}
	hprintf("tls        ");
	print_list(json_object_get(tls, "listeners"), ", ");
	hprintf(" (%s)\n", count(w, tls, "workers", "worker", "workers"));
	hprintf("handshakes %lld done, %lld failed\n", (long long)num(hs, "done"),
	        (long long)num(hs, "failed"));
	hprintf("clients    %s open, %lld accepted, %lld refused (%lld for their address), "
	        "%lld timed out, %lld evicted\n",
	        count(w, conns, "open", "connection", "connections"),
	        (long long)num(conns, "accepted"), (long long)num(conns, "refused"),
	        (long long)num(conns, "refused_per_source"), (long long)num(conns, "timed_out"),
	        (long long)num(conns, "evicted"));
	json_array_foreach(json_object_get(table, "hosts"), i, h)
	{
		json_t *id = json_object_get(h, "certificate");

		if (json_is_string(id))
			hprintf("serves     %s: %.8s\n", str(h, "hostname"), json_string_value(id));
		else
			hprintf("serves     %s: NOTHING (no valid certificate with its key covers "
			        "it)\n",
			        str(h, "hostname"));
	}
	if (json_array_size(uncovered) > 0) {
		const char *them = json_array_size(uncovered) > 1 ? "them" : "it";

		hprintf("uncovered  ");
		print_list(uncovered, ", ");
		if (json_is_string(json_object_get(dflt, "configured")))
			hprintf(": the default certificate %.8s does not cover %s",
			        str(dflt, "configured"), them);
		else
			hprintf(": no default certificate is chosen");
		hprintf("; make one that covers %s the default with `certsync cert default ID`\n",
		        them);
	}
	hprintf("reload     %.1f ms the last time (%s)\n",
	        json_real_value(json_object_get(json_object_get(tls, "reloads"), "last_ms")),
	        count(w, json_object_get(tls, "reloads"), "count", "reload", "reloads"));
}

/* The health lines of status; with --check, 1 unless healthy, and the
 * problems on standard error too, where a healthcheck's log takes them. */
static int print_health(json_t *health, json_t *args)
{
	bool check = json_is_true(json_object_get(args, "check"));
	json_t *p;
	size_t i;

	if (json_is_true(json_object_get(health, "ok"))) {
		hprintf("health     ok\n");
		return 0;
	}
	json_array_foreach(json_object_get(health, "problems"), i, p)
	{
		hprintf("UNHEALTHY  %s\n", json_string_value(p));
		if (check)
			fprintf(stderr, "certsync: unhealthy: %s\n", json_string_value(p));
	}
	return check ? 1 : 0;
}

static void print_store(json_t *st)
{
	if (!json_is_object(st))
		return;
	hprintf("store      %.1f of %.1f MiB in use (%lld%%), %lld diverged entries\n",
	        (double)json_integer_value(json_object_get(st, "used_bytes")) / (1 << 20),
	        (double)json_integer_value(json_object_get(st, "map_bytes")) / (1 << 20),
	        (long long)json_integer_value(json_object_get(st, "used_percent")),
	        (long long)json_integer_value(
	            json_object_get(json_object_get(st, "diverged"), "entries")));
	if (json_is_string(json_object_get(st, "warning")))
		hprintf("WARNING    %s\n", str(st, "warning"));
}

/* ---- alerts ------------------------------------------------------------------ */

/* The active alerts, worst first; nothing when none. */
static void print_active_alerts(json_t *mon, bool say_none)
{
	static const char *const order[] = {"error", "warning"};
	json_t *a;
	size_t i;

	if (json_array_size(json_object_get(mon, "active")) == 0) {
		if (say_none)
			hprintf("no active alerts\n");
		return;
	}
	for (size_t k = 0; k < 2; k++)
		json_array_foreach(json_object_get(mon, "active"), i,
		                   a) if (strcmp(str(a, "severity"), order[k]) == 0)
		    hprintf("ALERT %-7s %s (since %s)\n", order[k], str(a, "text"),
		            str(a, "since"));
}

static void print_alert_targets(json_t *mon)
{
	json_t *t;
	size_t i;

	json_array_foreach(json_object_get(mon, "targets"), i, t)
	{
		hprintf("target  %-8s %lld sent, %lld failed attempts, %lld given up, %lld "
		        "queued%s%s\n",
		        str(t, "target"), (long long)json_integer_value(json_object_get(t, "sent")),
		        (long long)json_integer_value(json_object_get(t, "failed")),
		        (long long)json_integer_value(json_object_get(t, "given_up")),
		        (long long)json_integer_value(json_object_get(t, "queued")),
		        json_is_string(json_object_get(t, "last_error")) ? "; last error: " : "",
		        str(t, "last_error"));
	}
}

static int print_alerts(json_t *r, json_t *args)
{
	(void)args;
	print_active_alerts(r, true);
	print_alert_targets(r);
	return 0;
}

static int print_alerts_test(json_t *r, json_t *args)
{
	json_int_t n = json_integer_value(json_object_get(r, "targets"));

	(void)args;
	if (n == 0)
		hprintf("a test alert was logged; no target is configured in [alerts]\n");
	else
		hprintf("a test alert was logged and queued to %lld %s; `certsync alerts` shows "
		        "what was sent\n",
		        (long long)n, CS_PLURAL(n, "target", "targets"));
	return 0;
}

static int print_status(json_t *r, json_t *args)
{
	json_t *def = json_object_get(r, "default"), *counts = json_object_get(r, "counts");
	char a[64], b[64], c[64], d[64];

	(void)args;
	print_active_alerts(json_object_get(r, "alerts"), false);
	hprintf("node       %s (%s)\n", str(r, "node"), str(r, "role"));
	hprintf("hostname   %s\n", str(r, "hostname"));
	hprintf("site       %s\n", str(r, "site_hostname"));
	hprintf("version    %s\n", str(r, "version"));
	hprintf("uptime     %llds\n",
	        (long long)json_integer_value(json_object_get(r, "uptime_seconds")));
	hprintf("position   epoch %lld, seq %lld\n",
	        (long long)json_integer_value(json_object_get(r, "epoch")),
	        (long long)json_integer_value(json_object_get(r, "seq")));
	hprintf("digest     %s (%s)\n", str(r, "digest"),
	        json_is_true(json_object_get(r, "digest_ok"))
	            ? "recomputed: equal"
	            : "RECOMPUTED DIGEST DIFFERS: the store is damaged");
	if (json_is_object(def))
		hprintf("default    %.8s %s (expires %s)\n", str(def, "id"), str(def, "name"),
		        day(def, "not_after"));
	else
		hprintf("default    none\n");
	hprintf("counts     %s, %s, %s, %s\n",
	        count(a, counts, "certificates", "certificate", "certificates"),
	        count(b, counts, "cas", "CA certificate", "CA certificates"),
	        count(c, counts, "requests", "request", "requests"),
	        count(d, counts, "pending_keys", "pending key", "pending keys"));
	print_store(json_object_get(r, "store"));
	print_tls(json_object_get(r, "tls"));
	print_replication(json_object_get(r, "replication"));
	cli_acme_print_status(human, json_object_get(r, "acme"));
	return print_health(json_object_get(r, "health"), args);
}

static void print_cert_line(json_t *c)
{
	json_t *warnings = json_object_get(c, "warnings");

	hprintf("%.8s  %-20s %-12s %-28s %-10s %-8s %-3s %s\n", str(c, "id"), str(c, "name"),
	        str(c, "kind"), str(c, "subject_cn"), day(c, "not_after"), str(c, "key_type"),
	        json_is_true(json_object_get(c, "has_key")) ? "key" : "-",
	        json_is_true(json_object_get(c, "default")) ? "*" : "");
	if (json_array_size(json_object_get(c, "sans")) > 0) {
		hprintf("          SANs: ");
		print_list(json_object_get(c, "sans"), ", ");
		hprintf("\n");
	}
	hprintf("          issuer: %s\n", str(c, "issuer"));
	if (json_array_size(warnings) > 0) {
		hprintf("          warnings: ");
		print_list(warnings, ", ");
		hprintf("\n");
	}
}

static int print_cert_list(json_t *r, json_t *args)
{
	json_t *certs = json_object_get(r, "certificates"), *c;
	size_t i;

	(void)args;
	if (json_array_size(certs) == 0) {
		hprintf("no certificates; create one with `certsync cert self-signed` or import "
		        "one\n");
		return 0;
	}
	hprintf("ID        %-20s %-12s %-28s %-10s %-8s %-3s %s\n", "NAME", "KIND", "SUBJECT CN",
	        "NOT AFTER", "KEY TYPE", "KEY", "DEFAULT");
	json_array_foreach(certs, i, c) print_cert_line(c);
	return 0;
}

static int print_cert_show(json_t *r, json_t *args)
{
	json_t *link;
	size_t i;

	(void)args;
	hprintf("id         %s\nname       %s\nkind       %s\nsubject    %s\nissuer     %s\n",
	        str(r, "id"), str(r, "name"), str(r, "kind"), str(r, "subject"), str(r, "issuer"));
	hprintf("SANs       ");
	print_list(json_object_get(r, "sans"), ", ");
	hprintf("\nvalid      %s to %s\nkey        %s, %s\nsource     %s\ndefault    %s\n",
	        str(r, "not_before"), str(r, "not_after"), str(r, "key_type"),
	        json_is_true(json_object_get(r, "has_key")) ? "held (sealed)" : "missing",
	        str(r, "source"), json_is_true(json_object_get(r, "default")) ? "yes" : "no");
	hprintf("chain      %s\n",
	        json_is_true(json_object_get(r, "chain_complete")) ? "complete" : "INCOMPLETE");
	json_array_foreach(json_object_get(r, "chain"), i, link)
	{
		hprintf("  %.8s %s (%s)\n", str(link, "id"), str(link, "subject"),
		        str(link, "kind"));
	}
	if (json_array_size(json_object_get(r, "warnings")) > 0) {
		hprintf("warnings   ");
		print_list(json_object_get(r, "warnings"), ", ");
		hprintf("\n");
	}
	hprintf("%s", str(r, "pem"));
	return 0;
}

static int print_deleted(json_t *r, json_t *args)
{
	(void)args;
	hprintf("deleted certificate %s\n", str(r, "deleted"));
	return 0;
}

/* key delete, csr delete: the agent's message says what went. */
static int print_message(json_t *r, json_t *args)
{
	(void)args;
	hprintf("%s\n", str(r, "message"));
	return 0;
}

static int print_key_list(json_t *r, json_t *args)
{
	json_t *keys = json_object_get(r, "keys"), *k;
	size_t i;

	(void)args;
	if (json_array_size(keys) == 0) {
		hprintf("no pending keys\n");
		return 0;
	}
	hprintf("ID        %-20s %-8s %s\n", "NAME", "KEY TYPE", "CREATED");
	json_array_foreach(keys, i, k)
	{
		hprintf("%.8s  %-20s %-8s %s\n", str(k, "id"), str(k, "name"), str(k, "key_type"),
		        day(k, "created"));
	}
	return 0;
}

static int print_prune(json_t *r, json_t *args)
{
	json_t *certs = json_object_get(r, "certificates"), *c;
	bool deleted = json_is_true(json_object_get(r, "deleted"));
	size_t i, n = json_array_size(certs);

	(void)args;
	json_array_foreach(certs, i, c)
	{
		hprintf("%s %.8s (%s), expired %s\n", deleted ? "deleted" : "would delete",
		        str(c, "id"), str(c, "name"), day(c, "not_after"));
	}
	if (n == 0)
		hprintf("no expired certificate to prune (the default is never pruned)\n");
	else if (!deleted)
		hprintf("%zu %s would be deleted: run it again with --yes to delete %s\n", n,
		        CS_PLURAL(n, "certificate", "certificates"), CS_PLURAL(n, "it", "them"));
	return 0;
}

static int print_default(json_t *r, json_t *args)
{
	json_t *missing = json_object_get(r, "uncovered");

	(void)args;
	hprintf("certificate %.8s is now the default\n", str(r, "default"));
	if (json_array_size(missing) > 0) {
		hprintf("warning: it does not cover ");
		print_list(missing, ", ");
		hprintf("; `certsync verify` will fail until a certificate covers them\n");
	}
	return 0;
}

static void print_notes(FILE *to, json_t *r)
{
	json_t *note;
	size_t i;

	json_array_foreach(json_object_get(r, "notes"), i, note)
	{
		fprintf(to, "note: %s\n", json_string_value(note));
	}
}

static int print_self_signed(json_t *r, json_t *args)
{
	json_t *c = json_object_get(r, "certificate");

	(void)args;
	print_notes(human, r);
	hprintf("created self-signed certificate %.8s (%s), valid until %s\n", str(c, "id"),
	        str(c, "name"), day(c, "not_after"));
	return 0;
}

static int print_csr_created(json_t *r, json_t *args)
{
	json_t *req = json_object_get(r, "request");

	(void)args;
	print_notes(aside, r);
	fprintf(aside,
	        "created request %.8s (%s); hand its PEM (standard output) to your CA, then "
	        "import the certificate it issues\n",
	        str(req, "id"), str(req, "name"));
	hprintf("%s", str(r, "pem"));
	return 0;
}

static int print_csr_list(json_t *r, json_t *args)
{
	json_t *reqs = json_object_get(r, "requests"), *q;
	size_t i;

	(void)args;
	if (json_array_size(reqs) == 0) {
		hprintf("no requests; create one with `certsync csr create`\n");
		return 0;
	}
	hprintf("ID        %-20s %-28s %-8s %-10s %s\n", "NAME", "SUBJECT CN", "KEY TYPE",
	        "CREATED", "STATUS");
	json_array_foreach(reqs, i, q)
	{
		json_t *by = json_object_get(q, "fulfilled_by"), *id;
		size_t k;

		hprintf("%.8s  %-20s %-28s %-8s %-10s ", str(q, "id"), str(q, "name"),
		        str(q, "subject_cn"), str(q, "key_type"), day(q, "created"));
		if (json_array_size(by) == 0)
			hprintf("pending");
		json_array_foreach(by, k, id)
		{
			hprintf("%s%.8s", k ? ", " : "fulfilled by ", json_string_value(id));
		}
		hprintf("\n          SANs: ");
		print_list(json_object_get(q, "sans"), ", ");
		hprintf("\n");
	}
	return 0;
}

static int print_csr_show(json_t *r, json_t *args)
{
	(void)args;
	hprintf("%s", str(r, "pem"));
	return 0;
}

static int print_import(json_t *r, json_t *args)
{
	json_t *item;
	size_t i;

	(void)args;
	json_array_foreach(json_object_get(r, "items"), i, item)
	{
		hprintf("%s: %s\n", str(item, "file"), str(item, "message"));
	}
	if (!json_is_true(json_object_get(r, "changed")))
		hprintf("nothing changed: all of it is already in the store\n");
	return 0;
}

/* Writes the exported bytes to -o FILE (whole or not at all: a temporary
 * file renamed into place) or to standard output. */
static int write_output(const char *path, const uint8_t *data, size_t len, cs_err *err)
{
	char tmp[4096];
	int fd, ok;

	if (path == NULL || strcmp(path, "-") == 0)
		return fwrite(data, 1, len, stdout) == len && fflush(stdout) == 0
		           ? 0
		           : cs_fail(err, CS_EIO, "cannot write to standard output");
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= sizeof(tmp))
		return cs_fail(err, CS_EUSAGE, "-o %s: the path is too long", path);
	fd = mkstemp(tmp);
	if (fd < 0)
		return cs_fail(err, CS_EUSAGE, "-o %s: cannot create it: %s", path,
		               strerror(errno));
	ok = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return cs_fail(err, CS_EIO, "-o %s: cannot write it: %s", path, strerror(errno));
	}
	return 0;
}

static int print_export(json_t *r, json_t *args)
{
	const char *out = json_string_value(json_object_get(args, "output"));
	uint8_t *data = NULL;
	cs_err err = {0};
	size_t len = 0;
	int rc = -1;

	if (json_output && out == NULL)
		return 0; /* the base64 stays in the JSON answer */
	if (cs_control_unbase64(str(r, "data"), &data, &len) == 0)
		rc = write_output(out, data, len, &err);
	else
		cs_fail(&err, CS_EIO, "the agent's export is not base64");
	if (data != NULL)
		sodium_free(data);
	if (rc < 0) {
		fprintf(stderr, "certsync: %s\n", err.msg);
		return cs_err_exit_status(err.code);
	}
	json_object_set_new(r, "file", json_string(out ? out : "-"));
	json_object_set_new(r, "bytes", json_integer((json_int_t)len));
	json_object_del(r, "data");
	if (out != NULL)
		hprintf("wrote %zu bytes (%s) to %s\n", len, str(r, "format"), out);
	return 0;
}

static int print_verify(json_t *r, json_t *args)
{
	json_t *cert = json_object_get(r, "certificate"), *check;
	size_t i;

	(void)args;
	hprintf("certificate %.8s (%s) for ", str(cert, "id"), str(cert, "name"));
	print_list(json_object_get(r, "hosts"), ", ");
	hprintf("\n");
	json_array_foreach(json_object_get(r, "checks"), i, check)
	{
		hprintf("%-5s %-9s %s\n", str(check, "status"), str(check, "name"),
		        str(check, "detail"));
	}
	return json_is_true(json_object_get(r, "ok")) ? 0 : 1;
}

static int print_promote(json_t *r, json_t *args)
{
	(void)args;
	hprintf("%s is the primary now (epoch %lld)\n", str(r, "leader"),
	        (long long)json_integer_value(json_object_get(r, "epoch")));
	return 0;
}

static int print_diverged(json_t *r, json_t *args)
{
	json_t *d, *seq;
	size_t i;

	(void)args;
	json_array_foreach(json_object_get(r, "diverged"), i, d)
	{
		seq = json_object_get(d, "applied_seq");
		hprintf("%.8s  %s  epoch %lld seq %lld  %s  from %s  %s\n", str(d, "id"),
		        str(d, "time"), (long long)json_integer_value(json_object_get(d, "epoch")),
		        (long long)json_integer_value(json_object_get(d, "seq")), str(d, "summary"),
		        str(d, "origin"), json_is_integer(seq) ? "re-applied" : "not applied");
	}
	if (json_array_size(json_object_get(r, "diverged")) == 0)
		hprintf("no diverged entries\n");
	return 0;
}

static int print_diverged_delete(json_t *r, json_t *args)
{
	(void)args;
	hprintf("deleted diverged entry %.8s\n", str(r, "deleted"));
	return 0;
}

static int print_diverged_prune(json_t *r, json_t *args)
{
	(void)args;
	hprintf("removed %lld diverged entries\n",
	        (long long)json_integer_value(json_object_get(r, "removed")));
	return 0;
}

static int print_diverged_apply(json_t *r, json_t *args)
{
	(void)args;
	hprintf("re-applied %.8s as seq %lld\n", str(r, "applied"),
	        (long long)json_integer_value(json_object_get(r, "seq")));
	return 0;
}

#define NEW_FLAGS                                                                                  \
	"--name NAME --country CC --common-name CN [--san HOST]... [--key "                        \
	"ec:p256|ec:p384|rsa:2048|rsa:3072|rsa:4096] [--state S] [--locality L] [--org O] "        \
	"[--unit OU]"
/* Every change takes it (take_wait_flag); the agent applies it. */
#define WAIT_FLAG " [--wait backup|all|none]"

static int keygen(const struct command *cmd, int argc, char **argv);
static int cluster_init(const struct command *cmd, int argc, char **argv);

static const struct command commands[] = {
    {"status", "status", "status [--check]",
     "Shows the node, its store position and digest, the "
     "default certificate and counts; --check exits 1 unless the node is healthy (serves a "
     "valid certificate covering its hostname and the site hostname, its default has not "
     "expired, it does not refuse the cluster passphrase, no alert of error severity is "
     "active).",
     parse_status, print_status},
    {"cert list", "cert.list", "cert list",
     "Lists identity and CA certificates with their "
     "warnings.",
     parse_none, print_cert_list},
    {"cert show", "cert.show", "cert show ID",
     "Shows one certificate, its chain and its "
     "PEM.",
     parse_id, print_cert_show},
    {"cert delete", "cert.delete", "cert delete ID" WAIT_FLAG,
     "Deletes a certificate (not the "
     "default).",
     parse_id, print_deleted},
    {"cert default", "cert.default", "cert default ID" WAIT_FLAG,
     "Makes an identity certificate that "
     "holds its key the default.",
     parse_id, print_default},
    {"cert self-signed", "cert.self-signed", "cert self-signed " NEW_FLAGS " [--days N]" WAIT_FLAG,
     "Creates a key and a self-signed certificate.", parse_new, print_self_signed},
    {"csr create", "csr.create", "csr create " NEW_FLAGS WAIT_FLAG,
     "Creates a key and a certificate "
     "signing request, and prints the request.",
     parse_new, print_csr_created},
    {"csr list", "csr.list", "csr list", "Lists requests and what fulfilled them.", parse_none,
     print_csr_list},
    {"csr delete", "csr.delete", "csr delete ID" WAIT_FLAG,
     "Deletes a request and its sealed private key.", parse_id, print_message},
    {"key list", "key.list", "key list",
     "Lists pending keys: imported keys whose certificate has not come yet.", parse_none,
     print_key_list},
    {"key delete", "key.delete", "key delete ID" WAIT_FLAG, "Deletes a pending key.", parse_id,
     print_message},
    {"cert prune", "cert.prune", "cert prune --expired [--older-than DAYS] [--yes]" WAIT_FLAG,
     "Lists the expired identity certificates, except the default (expired more than DAYS "
     "days ago with --older-than); --yes deletes them.",
     parse_prune, print_prune},
    {"csr show", "csr.show", "csr show ID", "Prints a request's PEM, to hand to a CA.", parse_id,
     print_csr_show},
    {"import", "import", "import FILE... [--password-file F] [--name NAME]" WAIT_FLAG,
     "Imports "
     "certificates, chains and keys in any format (DER, PEM, PKCS#8, PKCS#12, OpenSSL "
     "keys).",
     parse_import, print_import},
    {"export", "export",
     "export ID [--format pem|der|p7b|p12] [--passphrase-file F] [-o "
     "FILE]",
     "Writes a certificate: pem (leaf + chain), der (leaf), p7b (chain), p12 "
     "(leaf + chain + key under the export passphrase).",
     parse_export, print_export},
    {"verify", "verify", "verify [--cert ID | --cluster]",
     "Checks the default certificate (or ID): "
     "coverage of every hostname, chain, key, validity; --cluster: every node reachable, "
     "in sync, covered and serving the expected certificate.",
     parse_verify, print_verify},
    {"promote", "promote", "promote [--force]",
     "Makes this backup the primary; refused while the primary is heard, unless --force.",
     parse_promote, print_promote},
    {"diverged list", "diverged.list", "diverged list",
     "Lists changes an old primary wrote after it was cut off, moved aside.", parse_none,
     print_diverged},
    {"diverged apply", "diverged.apply", "diverged apply ID" WAIT_FLAG,
     "Re-applies a diverged change through this primary.", parse_id, print_diverged_apply},
    {"diverged delete", "diverged.delete", "diverged delete ID",
     "Deletes a diverged change from this node's diverged table.", parse_id, print_diverged_delete},
    {"diverged prune", "diverged.prune", "diverged prune [--all]",
     "Deletes the diverged changes already re-applied from this node's diverged table; "
     "--all: every one.",
     parse_diverged_prune, print_diverged_prune},
    {"alerts test", "alerts.test", "alerts test",
     "Sends a test alert to every target of [alerts] (and logs it).", parse_none,
     print_alerts_test},
    {"alerts", "alerts", "alerts",
     "Lists the active alerts (worst first) and what each target sent and failed.", parse_none,
     print_alerts},
    {.words = "keygen",
     .usage = "keygen -o FILE",
     .help = "Writes a new CURVE key pair for a node's replication socket (mode 0600) and "
             "prints its public key; needs no agent.",
     .local = keygen},
    {.words = "cluster init",
     .usage = "cluster init DIR --site HOST --node NAME=ROLE,HOSTNAME,REPL_ENDPOINT,TLS_LISTEN[,HTTP_LISTEN] "
              "[--node ...] [--container]",
     .help = "Writes, for every node, DIR/NAME/ with certsync.conf, node.secret (its CURVE key "
             "pair) and passphrase (the cluster's, random, 0600); needs no agent.  "
             "--container names the image's paths in the configurations.",
     .local = cluster_init},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_usage(FILE *out)
{
	fprintf(out, "usage: certsync [-c FILE | -S SOCKET] [--json] COMMAND [ARGS]\n"
	             "       certsync agent -c FILE\n"
	             "\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(out, "  %-18s %s\n", commands[i].words, commands[i].help);
	cli_acme_usage(out);
	fprintf(out, "\nEvery command takes --help.  Exit status: 0 ok, 1 a check failed or "
	             "the request was refused, 2 usage or configuration error.\n");
}

/* Matches argv against the command words; returns how many words matched. */
static const struct command *find_command(int argc, char **argv, int *nwords)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		char words[64], *save, *w;
		int n = 0;
		bool match = true;

		snprintf(words, sizeof(words), "%s", commands[i].words);
		for (w = strtok_r(words, " ", &save); w && match; w = strtok_r(NULL, " ", &save))
			match = n < argc && strcmp(argv[n++], w) == 0;
		if (match) {
			*nwords = n;
			return &commands[i];
		}
	}
	return NULL;
}

static int fail(cs_err *err)
{
	if (json_output) {
		json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", cs_err_name(err->code),
		                      "message", err->msg);

		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	}
	fprintf(stderr, "certsync: %s\n", err->msg);
	return cs_err_exit_status(err->code);
}

static int socket_path(const char *config, const char *sock, char **out, cs_err *err)
{
	cs_config cfg;

	if (sock != NULL) {
		*out = strdup(sock);
		return 0;
	}
	if (config == NULL)
		config = getenv("CERTSYNC_CONFIG") ? getenv("CERTSYNC_CONFIG") : DEFAULT_CONFIG;
	if (cs_config_load(&cfg, config, err) < 0)
		return -1;
	*out = strdup(cfg.control_socket);
	cs_config_free(&cfg);
	return 0;
}

/* Removes every --json from argv (it may come before or after the command). */
/* --wait MODE (or --wait=MODE) applies to every change: how many nodes must
 * acknowledge it before the command returns. */
static const char *wait_mode;

static int take_wait_flag(int argc, char **argv)
{
	int n = 0;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--wait") == 0)
			wait_mode = i + 1 < argc ? argv[++i] : ""; /* "": no value, said later */
		else if (strncmp(argv[i], "--wait=", 7) == 0)
			wait_mode = argv[i] + 7;
		else
			argv[n++] = argv[i];
	}
	argv[n] = NULL;
	return n;
}

/* `certsync keygen -o FILE`: needs no agent. */
static int keygen(const struct command *cmd, int argc, char **argv)
{
	char pub[REPL_Z85_LEN + 1];
	cs_err err = {0};

	if (argc != 3 || strcmp(argv[1], "-o") != 0) {
		usage_error(cmd, &err, "give -o FILE");
		return fail(&err);
	}
	if (repl_keygen(argv[2], pub, &err) < 0)
		return fail(&err);
	if (json_output)
		printf("{\"file\": \"%s\", \"public_key\": \"%s\"}\n", argv[2], pub);
	else
		printf("%s\n", pub);
	return 0;
}

/* ---- verify --cluster ---------------------------------------------------------- */

#define PROBE_TIMEOUT_MS 5000
#define SETTLE_TRIES     12 /* a relayed position is at most a beat old: 3 s */
#define SETTLE_STEP_US   250000
/* An endpoint swaps in a change shortly after its commit (within 100 ms is
 * the goal): a mismatch is probed again, 50 ms later, then 100, 200 and
 * 400 ms later, before it counts. */
#define SWAP_TRIES   5
#define SWAP_STEP_US 50000

/* True when every node is reachable and at one position. */
static bool settled(json_t *nodes)
{
	json_t *n, *first = json_array_get(nodes, 0);
	size_t i;

	json_array_foreach(nodes, i, n)
	{
		if (!json_is_true(json_object_get(n, "reachable")) ||
		    num(n, "epoch") != num(first, "epoch") || num(n, "seq") != num(first, "seq"))
			return false;
	}
	return true;
}

/* The reachable node furthest ahead (the first such): what others must equal. */
static json_t *reference_node(json_t *nodes)
{
	json_t *n, *best = NULL;
	size_t i;

	json_array_foreach(nodes, i, n)
	{
		if (!json_is_true(json_object_get(n, "reachable")) ||
		    !json_is_string(json_object_get(n, "digest")))
			continue;
		if (best == NULL || num(n, "epoch") > num(best, "epoch") ||
		    (num(n, "epoch") == num(best, "epoch") && num(n, "seq") > num(best, "seq")))
			best = n;
	}
	return best;
}

static void add_check(json_t *checks, json_t *n, const char *check, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void add_check(json_t *checks, json_t *n, const char *check, bool ok, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	json_array_append_new(checks,
	                      json_pack("{s:s, s:s, s:s, s:s}", "node", str(n, "name"), "check",
	                                check, "status", ok ? "ok" : "fail", "detail", detail));
}

static void check_store(json_t *checks, json_t *n, json_t *ref)
{
	if (!json_is_true(json_object_get(n, "reachable")))
		add_check(checks, n, "store", false, "unknown: the node is not reachable");
	else if (ref == NULL || num(n, "epoch") != num(ref, "epoch") ||
	         num(n, "seq") != num(ref, "seq"))
		add_check(checks, n, "store", false, "at %lld.%lld, behind %s at %lld.%lld",
		          (long long)num(n, "epoch"), (long long)num(n, "seq"), str(ref, "name"),
		          (long long)num(ref, "epoch"), (long long)num(ref, "seq"));
	else if (strcmp(str(n, "digest"), str(ref, "digest")) != 0)
		add_check(checks, n, "store", false,
		          "digest %.16s differs from %s's %.16s at %lld.%lld", str(n, "digest"),
		          str(ref, "name"), str(ref, "digest"), (long long)num(n, "epoch"),
		          (long long)num(n, "seq"));
	else
		add_check(checks, n, "store", true, "at %lld.%lld, digest %.16s",
		          (long long)num(n, "epoch"), (long long)num(n, "seq"), str(n, "digest"));
}

static bool listed(json_t *arr, const char *s)
{
	json_t *v;
	size_t i;

	json_array_foreach(arr, i, v)
	{
		if (strcasecmp(json_string_value(v), s) == 0)
			return true;
	}
	return false;
}

static void check_coverage(json_t *checks, json_t *n, json_t *r)
{
	json_t *dflt = json_object_get(r, "default"), *uncovered = json_object_get(r, "uncovered");
	const char *site = str(r, "site_hostname"), *host = str(n, "hostname");
	bool site_bad = listed(uncovered, site), host_bad = listed(uncovered, host);

	if (!json_is_object(dflt))
		add_check(
		    checks, n, "coverage", false,
		    "there is no default certificate; choose one with `certsync cert default ID`");
	else if (site_bad || host_bad)
		add_check(checks, n, "coverage", false,
		          "the default certificate %.8s (%s) does not cover %s%s%s",
		          str(dflt, "id"), str(dflt, "name"), host_bad ? host : "",
		          host_bad && site_bad ? " and " : "", site_bad ? site : "");
	else
		add_check(checks, n, "coverage", true,
		          "the default certificate %.8s covers %s and %s", str(dflt, "id"), host,
		          site);
}

/* Probes endpoint until it serves want or SWAP_TRIES probes saw something
 * else; got is the last certificate served. */
static int probe_until(const char *endpoint, const char *sni, const char *want, char got[65],
                       cs_err *err)
{
	for (int t = 0;; t++) {
		if (tls_probe(endpoint, sni, PROBE_TIMEOUT_MS, got, err) < 0)
			return -1;
		if (strcmp(got, want) == 0 || t + 1 >= SWAP_TRIES)
			return 0;
		usleep((useconds_t)SWAP_STEP_US << t);
	}
}

static void check_tls(json_t *checks, json_t *n, const char *sni)
{
	const char *endpoint = json_string_value(json_object_get(n, "tls_endpoint"));
	const char *want = json_string_value(json_object_get(json_object_get(n, "expected"), sni));
	char got[65];
	cs_err err = {0};

	if (endpoint == NULL)
		add_check(
		    checks, n, "tls", false,
		    "%s: no TLS endpoint is known; add tls_endpoint = HOST:PORT to its [peer] "
		    "section (or tls_listen on the node itself)",
		    sni);
	else if (want == NULL)
		add_check(checks, n, "tls", false, "%s: no valid certificate with a key answers it",
		          sni);
	else if (probe_until(endpoint, sni, want, got, &err) < 0)
		add_check(checks, n, "tls", false, "%s", err.msg);
	else if (strcmp(got, want) != 0)
		add_check(checks, n, "tls", false, "%s at %s serves %.8s, expected %.8s", sni,
		          endpoint, got, want);
	else
		add_check(checks, n, "tls", true, "%s at %s serves %.8s", sni, endpoint, got);
}

/* `verify --cluster`: asks this node's agent what it knows of every node,
 * waits (bounded) for positions relayed by heartbeats to settle, then
 * checks each node and reaches every TLS endpoint for real. */
static int verify_cluster(const char *path, cs_err *err)
{
	json_t *r = NULL, *nodes, *n, *checks = json_array(), *ref, *c;
	bool ok = true;
	size_t i;

	for (int t = 0; t < SETTLE_TRIES; t++) {
		json_t *args = json_object();

		json_decref(r);
		r = NULL;
		if (cs_control_call(path, "verify.cluster", args, &r, err) < 0) {
			json_decref(args);
			json_decref(checks);
			return -1;
		}
		json_decref(args);
		if (settled(json_object_get(r, "nodes")))
			break;
		usleep(SETTLE_STEP_US);
	}
	nodes = json_object_get(r, "nodes");
	ref = reference_node(nodes);
	json_array_foreach(nodes, i, n)
	{
		bool up = json_is_true(json_object_get(n, "reachable"));

		add_check(checks, n, "reachable", up, "%s",
		          json_is_true(json_object_get(n, "self")) ? "this node"
		          : up ? "heard within the failure timeout"
		               : "not heard within the failure timeout");
		check_store(checks, n, ref);
		check_coverage(checks, n, r);
		check_tls(checks, n, str(n, "hostname"));
		check_tls(checks, n, str(r, "site_hostname"));
	}
	json_array_foreach(checks, i, c)
	{
		ok = ok && strcmp(str(c, "status"), "ok") == 0;
		if (!json_output)
			printf("%-12s %-9s %-4s %s\n", str(c, "node"), str(c, "check"),
			       str(c, "status"), str(c, "detail"));
	}
	if (json_output) {
		json_t *j =
		    json_pack("{s:b, s:o, s:O}", "ok", ok, "checks", checks, "nodes", nodes);

		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	} else {
		printf("cluster: %s\n", ok ? "every check passed" : "some checks failed");
		json_decref(checks);
	}
	json_decref(r);
	return ok ? 0 : 1;
}

/* `certsync cluster init`: needs no agent. */
static int cluster_init(const struct command *cmd, int argc, char **argv)
{
	static const struct option opts[] = {{"site", required_argument, NULL, 's'},
	                                     {"node", required_argument, NULL, 'n'},
	                                     {"container", no_argument, NULL, 'c'},
	                                     {NULL, 0, NULL, 0}};
	cs_cluster_spec spec = {0};
	cs_cluster_node *nodes;
	cs_err err = {0};
	json_t *list;
	int c, rc = 0;

	if ((nodes = calloc((size_t)argc, sizeof(*nodes))) == NULL) {
		cs_fail(&err, CS_EIO, "out of memory");
		return fail(&err);
	}
	while (rc == 0 && (c = next_flag(cmd, argc, argv, "", opts, &err)) > 0) {
		if (c == 's')
			spec.site = optarg;
		else if (c == 'n')
			rc = cs_cluster_node_parse(optarg, &nodes[spec.nnodes++], &err);
		else
			spec.container = true;
	}
	if (rc == 0 && c == 0)
		rc = -1;
	if (rc == 0 && optind != argc - 1)
		rc = usage_error(cmd, &err, "cluster init needs one folder, DIR");
	if (rc == 0) {
		spec.dir = argv[optind];
		spec.nodes = nodes;
		rc = cs_cluster_init(&spec, &err);
	}
	if (rc < 0) {
		free(nodes);
		return fail(&err);
	}
	list = json_array();
	for (size_t i = 0; i < spec.nnodes; i++) {
		char conf[PATH_MAX];

		snprintf(conf, sizeof(conf), "%s/%s/" CS_CLUSTER_CONF, spec.dir, nodes[i].name);
		json_array_append_new(list,
		                      json_pack("{s:s, s:s, s:s, s:s}", "name", nodes[i].name,
		                                "role", cs_role_name(nodes[i].role), "public_key",
		                                nodes[i].public_key, "config", conf));
		if (!json_output)
			printf("%-10s %-8s %s  public key %s\n", nodes[i].name,
			       cs_role_name(nodes[i].role), conf, nodes[i].public_key);
	}
	if (json_output) {
		json_t *j = json_pack("{s:s, s:o}", "dir", spec.dir, "nodes", list);

		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	} else {
		json_decref(list);
		printf("Each folder holds the cluster passphrase: keep it 0600 and copy it only to "
		       "that node.\nStart a node with `certsync agent -c DIR/NAME/" CS_CLUSTER_CONF
		       "`.\n");
	}
	free(nodes);
	return 0;
}

static int take_json_flag(int argc, char **argv)
{
	int n = 0;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json_output = true;
		else
			argv[n++] = argv[i];
	}
	argv[n] = NULL;
	return n;
}

static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	return false;
}

/* A group word ("cert") followed by --help, nothing, or a word no command
 * has: lists the group's commands.  Anything else is an unknown command. */
static bool in_group(const struct command *cmd, const char *word)
{
	size_t len = strlen(word);

	return len > 0 && strncmp(cmd->words, word, len) == 0 && cmd->words[len] == ' ';
}

static int unknown_command(int argc, char **argv)
{
	bool group = false, help = argc > 1 && wants_help(2, argv);

	for (size_t i = 0; i < NCOMMANDS && argc > 0; i++)
		group = group || in_group(&commands[i], argv[0]);
	if (!group) {
		if (argc > 0)
			fprintf(stderr, "certsync: unknown command '%s'\n", argv[0]);
		print_usage(stderr);
		return USAGE_EXIT;
	}
	if (argc > 1 && !help)
		fprintf(stderr, "certsync: unknown command '%s %s'\n", argv[0], argv[1]);
	else if (!help)
		fprintf(stderr, "certsync: '%s' needs a command after it\n", argv[0]);
	fprintf(help ? stdout : stderr, "usage: certsync %s COMMAND [ARGS]\n\ncommands:\n",
	        argv[0]);
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (in_group(&commands[i], argv[0]))
			fprintf(help ? stdout : stderr, "  %-18s %s\n", commands[i].words,
			        commands[i].help);
	return help ? 0 : USAGE_EXIT;
}

/* A change the wait timed out on is committed all the same: say which nodes
 * have not confirmed it; true when some have not. */
static bool warn_unconfirmed(json_t *result)
{
	json_t *rs = json_object_get(result, "replication");
	json_t *names = json_object_get(rs, "unconfirmed");

	if (json_array_size(names) == 0)
		return false;
	fprintf(stderr, "certsync: the change is committed, but not confirmed by:");
	for (size_t i = 0; i < json_array_size(names); i++)
		fprintf(stderr, "%s %s", i ? "," : "", json_string_value(json_array_get(names, i)));
	fprintf(stderr, " (--wait %s); it reaches them when they catch up\n", str(rs, "wait"));
	return true;
}

/* The changes are the commands that take --wait. */
static bool is_change(const struct command *cmd)
{
	return strstr(cmd->usage, "--wait") != NULL;
}

int cs_cli_main(int argc, char **argv)
{
	const char *config = NULL, *sock = NULL;
	const struct command *cmd;
	char *path = NULL;
	json_t *args, *result = NULL;
	cs_err err = {0};
	int i, nwords, rc;

	argc = take_json_flag(argc, argv);
	argc = take_wait_flag(argc, argv);
	if (cs_seal_init(&err) < 0) /* secrets read here live in sodium_malloc'd memory */
		return fail(&err);
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			print_usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("certsync %s\n", CERTSYNC_VERSION);
			return 0;
		} else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			config = argv[++i];
		} else if (strcmp(argv[i], "-S") == 0 && i + 1 < argc) {
			sock = argv[++i];
		} else {
			fprintf(stderr, "certsync: %s %s\n", argv[i],
			        strcmp(argv[i], "-c") == 0   ? "needs a value (FILE)"
			        : strcmp(argv[i], "-S") == 0 ? "needs a value (SOCKET)"
			                                     : "is an unknown option");
			print_usage(stderr);
			return USAGE_EXIT;
		}
	}
	cmd = find_command(argc - i, argv + i, &nwords);
	if (cmd == NULL && i < argc && strcmp(argv[i], "acme") == 0) {
		if (i + 1 < argc && strcmp(argv[i + 1], "--help") != 0 &&
		    socket_path(config, sock, &path, &err) < 0)
			return fail(&err);
		rc = cli_acme_main(argc - i, argv + i, path, json_output, wait_mode);
		free(path);
		return rc;
	}
	if (cmd == NULL)
		return unknown_command(argc - i, argv + i);
	argc -= i + nwords - 1;
	argv += i + nwords - 1;
	if (wants_help(argc, argv)) {
		printf("usage: certsync %s\n\n%s\n", cmd->usage, cmd->help);
		return 0;
	}
	if (wait_mode != NULL && !is_change(cmd)) {
		usage_error(cmd, &err, "--wait applies to changes only");
		return fail(&err);
	}
	if (wait_mode != NULL && *wait_mode == '\0') {
		usage_error(cmd, &err, "--wait needs a value (backup|all|none)");
		return fail(&err);
	}
	optind = 1;
	opterr = 0;
	if (cmd->local != NULL)
		return cmd->local(cmd, argc, argv);
	args = json_object();
	if (wait_mode != NULL)
		json_object_set_new(args, "wait", json_string(wait_mode));
	if (cmd->parse(cmd, argc, argv, args, &err) < 0 ||
	    socket_path(config, sock, &path, &err) < 0) {
		json_decref(args);
		free(path);
		return fail(&err);
	}
	if (json_is_true(json_object_get(args, "cluster"))) {
		rc = verify_cluster(path, &err);
		json_decref(args);
		free(path);
		return rc < 0 ? fail(&err) : rc;
	}
	rc = cs_control_call(path, cmd->request, args, &result, &err);
	if (rc < 0) {
		json_decref(args);
		free(path);
		if (rc == CS_CONTROL_NO_ANSWER && is_change(cmd)) {
			cs_err_prefix(&err,
			              "the change may or may not have been committed: check "
			              "with `certsync status` or `cert list` before sending it "
			              "again; ");
			fail(&err);
			return NO_ANSWER_EXIT;
		}
		return fail(&err);
	}
	human = json_output ? fopen("/dev/null", "w") : stdout;
	aside = json_output ? human : stderr;
	rc = human ? cmd->print(result, args) : 1;
	if (warn_unconfirmed(result) && rc == 0)
		rc = UNCONFIRMED_EXIT;
	if (human != NULL && human != stdout)
		fclose(human);
	if (json_output) {
		json_dumpf(result, stdout, JSON_INDENT(2));
		putchar('\n');
	}
	json_decref(result);
	json_decref(args);
	free(path);
	return rc;
}

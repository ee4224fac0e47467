/* cli_args.c — the operator command's flags: each command's parser turns
 * its flags into the control request's arguments, and says what is wrong
 * with a flag in words, with the usage. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../seal/seal.h"
#include "config.h"
#include "control.h"

#define MAX_IMPORT_BYTES (32u << 20)

int cli_read_file(const char *path, uint8_t **data, size_t *len, cs_err *err)
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
int cli_secret_arg(json_t *args, const char *key, const char *flag, const char *path,
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

int cli_usage_error(const struct cli_command *cmd, cs_err *err, const char *what)
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
int cli_next_flag(const struct cli_command *cmd, int argc, char **argv, const char *shortopts,
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
	cli_usage_error(cmd, err, what);
	return 0;
}

/* Commands with no flags, or one positional ID. */
int cli_parse_none(const struct cli_command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	(void)argv;
	(void)args;
	return argc == 1 ? 0 : cli_usage_error(cmd, err, "unexpected arguments");
}

int cli_parse_id(const struct cli_command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	if (argc != 2 || argv[1][0] == '-')
		return cli_usage_error(cmd, err, "give exactly one ID");
	return json_object_set_new(args, "id", json_string(argv[1]));
}

int cli_parse_new(const struct cli_command *cmd, int argc, char **argv, json_t *args, cs_err *err)
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
	while ((c = cli_next_flag(cmd, argc, argv, "", opts, err)) > 0) {
		if (c == 's') {
			json_array_append_new(sans, json_string(optarg));
		} else if (c == 'd' && self_signed) {
			long days = strtol(optarg, &end, 10);

			if (*end != '\0' || days < 1 || days > 3650)
				return cli_usage_error(cmd, err,
				                       "--days takes a number from 1 to 3650");
			json_object_set_new(args, "days", json_integer(days));
		} else if (c != 'd' && (size_t)c < sizeof(keys) / sizeof(keys[0]) &&
		           keys[c] != NULL) {
			json_object_set_new(args, keys[c], json_string(optarg));
		} else {
			return cli_usage_error(cmd, err, "--days applies to cert self-signed only");
		}
	}
	if (c == 0)
		return -1;
	if (optind != argc)
		return cli_usage_error(cmd, err, "unexpected arguments");
	if (json_object_get(args, "name") == NULL || json_object_get(args, "country") == NULL ||
	    json_object_get(args, "common_name") == NULL)
		return cli_usage_error(cmd, err,
		                       "--name, --country and --common-name are required");
	return 0;
}

int cli_parse_export(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                     cs_err *err)
{
	static const struct option opts[] = {
	    {"format", required_argument, NULL, 'f'},
	    {"passphrase-file", required_argument, NULL, 'p'},
	    {"output", required_argument, NULL, 'o'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = cli_next_flag(cmd, argc, argv, "o:", opts, err)) > 0) {
		if (c == 'f')
			json_object_set_new(args, "format", json_string(optarg));
		else if (c == 'o')
			json_object_set_new(args, "output", json_string(optarg));
		else if (cli_secret_arg(args, "passphrase", "--passphrase-file", optarg, false,
		                        err) < 0)
			return -1;
	}
	if (c == 0)
		return -1;
	if (optind != argc - 1)
		return cli_usage_error(cmd, err, "give exactly one ID");
	return json_object_set_new(args, "id", json_string(argv[optind]));
}

/* The value of a numeric flag into args[key]: "--limit takes a number from
 * 1 to 1000000" otherwise (what names the number: "a number of days"). */
static int number_flag(const struct cli_command *cmd, const char *flag, const char *what, long min,
                       long max, json_t *args, const char *key, cs_err *err)
{
	char *end, msg[128];
	long n = strtol(optarg, &end, 10);

	if (*optarg == '\0' || *end != '\0' || n < min || n > max) {
		snprintf(msg, sizeof(msg), "%s takes %s from %ld to %ld", flag, what, min, max);
		return cli_usage_error(cmd, err, msg);
	}
	return json_object_set_new(args, key, json_integer(n));
}

int cli_parse_prune(const struct cli_command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	static const struct option opts[] = {
	    {"expired", no_argument, NULL, 'e'},
	    {"older-than", required_argument, NULL, 'o'},
	    {"yes", no_argument, NULL, 'y'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = cli_next_flag(cmd, argc, argv, "", opts, err)) > 0) {
		if (c == 'e')
			json_object_set_new(args, "expired", json_true());
		else if (c == 'y')
			json_object_set_new(args, "yes", json_true());
		else if (number_flag(cmd, "--older-than", "a number of days", 0, 36500, args,
		                     "older_than", err) < 0)
			return -1;
	}
	if (c == 0)
		return -1;
	if (optind != argc)
		return cli_usage_error(cmd, err, "unexpected arguments");
	if (!json_is_true(json_object_get(args, "expired")))
		return cli_usage_error(cmd, err,
		                       "cert prune removes expired certificates only: say "
		                       "--expired");
	return 0;
}

int cli_parse_verify(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                     cs_err *err)
{
	static const struct option opts[] = {
	    {"cert", required_argument, NULL, 'c'},
	    {"cluster", no_argument, NULL, 'C'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = cli_next_flag(cmd, argc, argv, "", opts, err)) > 0) {
		if (c == 'c')
			json_object_set_new(args, "cert", json_string(optarg));
		else
			json_object_set_new(args, "cluster", json_true());
	}
	if (c == 0)
		return -1;
	if (json_object_get(args, "cert") != NULL && json_object_get(args, "cluster") != NULL)
		return cli_usage_error(cmd, err,
		                       "--cluster checks the default certificate; drop --cert");
	return optind == argc ? 0 : cli_usage_error(cmd, err, "unexpected arguments");
}

/* A command whose flags are switches --NAME with no value (at most two):
 * args.NAME = true for each one given. */
static int parse_switches(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                          const char *name, const char *other, cs_err *err)
{
	const struct option opts[] = {
	    {name, no_argument, NULL, 1},
	    {other != NULL ? other : name, no_argument, NULL, 2},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = cli_next_flag(cmd, argc, argv, "", opts, err)) > 0)
		json_object_set_new(args, opts[c - 1].name, json_true());
	if (c == 0)
		return -1;
	return optind == argc ? 0 : cli_usage_error(cmd, err, "unexpected arguments");
}

static int parse_switch(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                        const char *name, cs_err *err)
{
	return parse_switches(cmd, argc, argv, args, name, NULL, err);
}

int cli_parse_promote(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                      cs_err *err)
{
	return parse_switch(cmd, argc, argv, args, "force", err);
}

int cli_parse_status(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                     cs_err *err)
{
	return parse_switches(cmd, argc, argv, args, "check", "recompute", err);
}

int cli_parse_diverged_prune(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                             cs_err *err)
{
	return parse_switch(cmd, argc, argv, args, "all", err);
}

int cli_parse_cert_list(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                        cs_err *err)
{
	static const struct option opts[] = {
	    {"limit", required_argument, NULL, 'l'},
	    {"after", required_argument, NULL, 'a'},
	    {"name", required_argument, NULL, 'n'},
	    {"expiring", required_argument, NULL, 'e'},
	    {NULL, 0, NULL, 0},
	};
	int c, rc = 0;

	while (rc == 0 && (c = cli_next_flag(cmd, argc, argv, "", opts, err)) > 0) {
		if (c == 'a' || c == 'n')
			rc = json_object_set_new(args, c == 'a' ? "after" : "name",
			                         json_string(optarg));
		else if (c == 'l')
			rc =
			    number_flag(cmd, "--limit", "a number", 1, 1000000, args, "limit", err);
		else
			rc = number_flag(cmd, "--expiring", "a number of days", 0, 36500, args,
			                 "expiring", err);
	}
	if (rc != 0 || c == 0)
		return -1;
	return optind == argc ? 0 : cli_usage_error(cmd, err, "unexpected arguments");
}

/* cli.c — the operator command's dispatch: the table of commands, the
 * global flags, and the run of one command (parse its flags into a control
 * request, send it to the agent, print the answer for a person or, with
 * --json, for a program).  This is the edge where errors are printed, once.
 * Parsers are in cli_args.c, printers in cli_print*.c, `verify --cluster` in
 * cli_verify.c, the commands that need no agent in cli_local.c. */
#include "agent.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../seal/seal.h"
#include "cli.h"
#include "cli_acme.h"
#include "config.h"
#include "control.h"

#define DEFAULT_CONFIG "/etc/certsync/certsync.conf"
#define USAGE_EXIT     2
/* A change committed on the primary but not confirmed by the nodes --wait
 * names; and a change sent whose answer never came (the agent stopped):
 * neither is "nothing changed" (1), so a script can tell retry from done. */
#define UNCONFIRMED_EXIT 3
#define NO_ANSWER_EXIT   4

/* ---- the commands ---- */

#define NEW_FLAGS                                                                                  \
	"--name NAME --country CC --common-name CN [--san HOST]... [--key "                        \
	"ec:p256|ec:p384|rsa:2048|rsa:3072|rsa:4096] [--state S] [--locality L] [--org O] "        \
	"[--unit OU]"
/* Every change takes it (take_wait_flag); the agent applies it. */
#define WAIT_FLAG " [--wait backup|all|none]"

static const struct cli_command commands[] = {
    {"status", "status", "status [--check] [--recompute]",
     "Shows the node, its store position and digest, the "
     "default certificate and counts; --check exits 1 unless the node is healthy (serves a "
     "valid certificate covering its hostname and the site hostname, its default has not "
     "expired, it does not refuse the cluster passphrase, no alert of error severity is "
     "active); --recompute also recomputes the digest from every record (exit 1 when it "
     "differs: the store is damaged).",
     cli_parse_status, cli_print_status},
    {"cert list", "cert.list", "cert list [--name GLOB] [--expiring DAYS] [--limit N] [--after ID]",
     "Lists identity and CA certificates with their warnings; --name: those whose name, "
     "CN or a SAN matches GLOB; --expiring: those that expire within DAYS days (or have); "
     "--limit: at most N, then the ID to give --after for the next page.",
     cli_parse_cert_list, cli_print_cert_list},
    {"cert show", "cert.show", "cert show ID",
     "Shows one certificate, its chain and its "
     "PEM.",
     cli_parse_id, cli_print_cert_show},
    {"cert delete", "cert.delete", "cert delete ID" WAIT_FLAG,
     "Deletes a certificate (not the "
     "default).",
     cli_parse_id, cli_print_deleted},
    {"cert default", "cert.default", "cert default ID" WAIT_FLAG,
     "Makes an identity certificate that "
     "holds its key the default.",
     cli_parse_id, cli_print_default},
    {"cert self-signed", "cert.self-signed", "cert self-signed " NEW_FLAGS " [--days N]" WAIT_FLAG,
     "Creates a key and a self-signed certificate.", cli_parse_new, cli_print_self_signed},
    {"csr create", "csr.create", "csr create " NEW_FLAGS WAIT_FLAG,
     "Creates a key and a certificate "
     "signing request, and prints the request.",
     cli_parse_new, cli_print_csr_created},
    {"csr list", "csr.list", "csr list", "Lists requests and what fulfilled them.", cli_parse_none,
     cli_print_csr_list},
    {"csr delete", "csr.delete", "csr delete ID" WAIT_FLAG,
     "Deletes a request and its sealed private key.", cli_parse_id, cli_print_message},
    {"key list", "key.list", "key list",
     "Lists pending keys: imported keys whose certificate has not come yet.", cli_parse_none,
     cli_print_key_list},
    {"key delete", "key.delete", "key delete ID" WAIT_FLAG, "Deletes a pending key.", cli_parse_id,
     cli_print_message},
    {"cert prune", "cert.prune", "cert prune --expired [--older-than DAYS] [--yes]" WAIT_FLAG,
     "Lists the expired identity certificates, except the default (expired more than DAYS "
     "days ago with --older-than); --yes deletes them.",
     cli_parse_prune, cli_print_prune},
    {"csr show", "csr.show", "csr show ID", "Prints a request's PEM, to hand to a CA.",
     cli_parse_id, cli_print_csr_show},
    {"import", "import", "import FILE|DIR... [--password-file F] [--name NAME]" WAIT_FLAG,
     "Imports "
     "certificates, chains and keys in any format (DER, PEM, PKCS#8, PKCS#12, OpenSSL "
     "keys); a DIR stands for its regular files, not its subfolders or hidden files. The "
     "whole command is one change.",
     cli_parse_import, cli_print_import},
    {"export", "export",
     "export ID [--format pem|der|p7b|p12] [--passphrase-file F] [-o "
     "FILE]",
     "Writes a certificate: pem (leaf + chain), der (leaf), p7b (chain), p12 "
     "(leaf + chain + key under the export passphrase).",
     cli_parse_export, cli_print_export},
    {"verify", "verify", "verify [--cert ID | --cluster]",
     "Checks the default certificate (or ID): "
     "coverage of every hostname, chain, key, validity; --cluster: every node reachable, "
     "in sync, covered and serving the expected certificate.",
     cli_parse_verify, cli_print_verify},
    {"promote", "promote", "promote [--force]",
     "Makes this backup the primary; refused while the primary is heard, unless --force.",
     cli_parse_promote, cli_print_promote},
    {"diverged list", "diverged.list", "diverged list",
     "Lists changes an old primary wrote after it was cut off, moved aside.", cli_parse_none,
     cli_print_diverged},
    {"diverged apply", "diverged.apply", "diverged apply ID" WAIT_FLAG,
     "Re-applies a diverged change through this primary.", cli_parse_id, cli_print_diverged_apply},
    {"diverged delete", "diverged.delete", "diverged delete ID",
     "Deletes a diverged change from this node's diverged table.", cli_parse_id,
     cli_print_diverged_delete},
    {"diverged prune", "diverged.prune", "diverged prune [--all]",
     "Deletes the diverged changes already re-applied from this node's diverged table; "
     "--all: every one.",
     cli_parse_diverged_prune, cli_print_diverged_prune},
    {"alerts test", "alerts.test", "alerts test",
     "Sends a test alert to every target of [alerts] (and logs it).", cli_parse_none,
     cli_print_alerts_test},
    {"alerts", "alerts", "alerts",
     "Lists the active alerts (worst first) and what each target sent and failed.", cli_parse_none,
     cli_print_alerts},
    {"backup", "backup", "backup -o FILE",
     "Writes a consistent, compacted copy of the running node's store to FILE (0600), with "
     "the cluster, position and digest in its header; keys stay sealed, so it is useless "
     "without the cluster passphrase.",
     cli_parse_backup, cli_print_backup},
    {.words = "restore",
     .usage = "restore FILE --data-dir DIR",
     .help = "Restores a backup into the empty data_dir of a stopped node, after checking its "
             "digest and that this node's passphrase opens its cluster; the node starts as a "
             "follower and catches up.  Needs no agent.",
     .local = cli_restore},
    {.words = "keygen",
     .usage = "keygen -o FILE",
     .help = "Writes a new CURVE key pair for a node's replication socket (mode 0600) and "
             "prints its public key; needs no agent.",
     .local = cli_keygen},
    {.words = "cluster init",
     .usage = "cluster init DIR --site HOST --node "
              "NAME=ROLE,HOSTNAME,REPL_ENDPOINT,TLS_LISTEN[,HTTP_LISTEN] "
              "[--node ...] [--container]",
     .help = "Writes, for every node, DIR/NAME/ with certsync.conf, node.secret (its CURVE key "
             "pair) and passphrase (the cluster's, random, 0600); needs no agent.  "
             "--container names the image's paths in the configurations.",
     .local = cli_cluster_init},
    {.words = "cluster add-node",
     .usage = "cluster add-node NAME=ROLE,HOSTNAME,REPL_ENDPOINT,TLS_LISTEN -o DIR",
     .help = "On the primary: makes the node's CURVE key pair, adds it to the cluster's "
             "membership (every running node admits its key at once) and writes its folder "
             "into DIR (certsync.conf, node.secret, passphrase); ROLE is backup or traffic.  "
             "Warns when the default certificate does not cover HOSTNAME.",
     .local = cli_add_node},
    {"cluster remove-node", "cluster.remove-node", "cluster remove-node NAME" WAIT_FLAG,
     "On the primary: removes the node from the membership; every node refuses its key from "
     "then on and cuts its connection.  Refused for the primary and the last backup.",
     cli_parse_id, cli_print_removed},
    {"cluster nodes", "cluster.nodes", "cluster nodes",
     "Lists the cluster's members (name, role, state, hostname, endpoints, public key).",
     cli_parse_none, cli_print_nodes},
    {"cluster rekey", "cluster.rekey", "cluster rekey --new-passphrase-file F" WAIT_FLAG,
     "On the primary: seals every private key of the cluster under a key derived from the "
     "passphrase in F (a new salt), in one change the other nodes apply once one of their "
     "passphrase files (passphrase_file, next_passphrase_file) holds it.",
     cli_parse_rekey, cli_print_message},
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
static const struct cli_command *find_command(int argc, char **argv, int *nwords)
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

int cli_fail(const cli_ctx *ctx, cs_err *err)
{
	if (ctx->json) {
		json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", cs_err_name(err->code),
		                      "message", err->msg);

		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	}
	fprintf(stderr, "certsync: %s\n", err->msg);
	return cs_err_exit_status(err->code);
}

/* The configuration without -c: $CERTSYNC_CONFIG, else the installed one. */
static const char *default_config(void)
{
	return getenv("CERTSYNC_CONFIG") ? getenv("CERTSYNC_CONFIG") : DEFAULT_CONFIG;
}

static int socket_path(const char *config, const char *sock, char **out, cs_err *err)
{
	cs_config cfg;

	if (sock != NULL) {
		*out = strdup(sock);
		return 0;
	}
	if (config == NULL)
		config = default_config();
	if (cs_config_load(&cfg, config, err) < 0)
		return -1;
	*out = strdup(cfg.control_socket);
	cs_config_free(&cfg);
	return 0;
}

/* --wait MODE (or --wait=MODE) applies to every change: how many nodes must
 * acknowledge it before the command returns.  Takes it out of argv. */
static int take_wait_flag(int argc, char **argv, const char **wait_mode)
{
	int n = 0;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--wait") == 0)
			*wait_mode = i + 1 < argc ? argv[++i] : ""; /* "": no value, said later */
		else if (strncmp(argv[i], "--wait=", 7) == 0)
			*wait_mode = argv[i] + 7;
		else
			argv[n++] = argv[i];
	}
	argv[n] = NULL;
	return n;
}

/* Removes every --json from argv (it may come before or after the command). */
static int take_json_flag(int argc, char **argv, bool *json)
{
	int n = 0;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			*json = true;
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
static bool in_group(const struct cli_command *cmd, const char *word)
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
	fprintf(stderr, " (--wait %s); it reaches them when they catch up\n", cli_str(rs, "wait"));
	return true;
}

/* The changes are the commands that take --wait. */
static bool is_change(const struct cli_command *cmd)
{
	return strstr(cmd->usage, "--wait") != NULL;
}

int cs_cli_main(int argc, char **argv)
{
	const char *config = NULL, *sock = NULL, *wait_mode = NULL;
	cli_ctx ctx = {.human = stdout, .aside = stderr};
	const struct cli_command *cmd;
	char *path = NULL;
	json_t *args, *result = NULL;
	cs_err err = {0};
	int i, nwords, rc;

	argc = take_json_flag(argc, argv, &ctx.json);
	argc = take_wait_flag(argc, argv, &wait_mode);
	if (cs_seal_init(&err) < 0) /* secrets read here live in sodium_malloc'd memory */
		return cli_fail(&ctx, &err);
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
		if (i + 1 < argc && !wants_help(argc - i, argv + i) &&
		    socket_path(config, sock, &path, &err) < 0)
			return cli_fail(&ctx, &err);
		rc = cli_acme_main(argc - i, argv + i, path, ctx.json, wait_mode);
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
		cli_usage_error(cmd, &err, "--wait applies to changes only");
		return cli_fail(&ctx, &err);
	}
	if (wait_mode != NULL && *wait_mode == '\0') {
		cli_usage_error(cmd, &err, "--wait needs a value (backup|all|none)");
		return cli_fail(&ctx, &err);
	}
	optind = 1;
	opterr = 0;
	ctx.config = config != NULL ? config : default_config();
	ctx.socket = sock;
	if (cmd->local != NULL)
		return cmd->local(&ctx, cmd, argc, argv);
	args = json_object();
	if (wait_mode != NULL)
		json_object_set_new(args, "wait", json_string(wait_mode));
	if (cmd->parse(cmd, argc, argv, args, &err) < 0 ||
	    socket_path(config, sock, &path, &err) < 0) {
		json_decref(args);
		free(path);
		return cli_fail(&ctx, &err);
	}
	if (json_is_true(json_object_get(args, "cluster"))) {
		rc = cli_verify_cluster(&ctx, path, &err);
		json_decref(args);
		free(path);
		return rc < 0 ? cli_fail(&ctx, &err) : rc;
	}
	rc = strcmp(cmd->request, "import") == 0
	         ? cli_import_call(path, args, &result, &err)
	         : cs_control_call(path, cmd->request, args, &result, &err);
	if (rc < 0) {
		json_decref(args);
		free(path);
		if (rc == CS_CONTROL_NO_ANSWER && is_change(cmd)) {
			cs_err_prefix(&err,
			              "the change may or may not have been committed: check "
			              "with `certsync status` or `cert list` before sending it "
			              "again; ");
			cli_fail(&ctx, &err);
			return NO_ANSWER_EXIT;
		}
		return cli_fail(&ctx, &err);
	}
	if (ctx.json)
		ctx.human = ctx.aside = fopen("/dev/null", "w");
	rc = ctx.human ? cmd->print(&ctx, result, args) : 1;
	if (warn_unconfirmed(result) && rc == 0)
		rc = UNCONFIRMED_EXIT;
	if (ctx.human != NULL && ctx.human != stdout)
		fclose(ctx.human);
	if (ctx.json) {
		json_dumpf(result, stdout, JSON_INDENT(2));
		putchar('\n');
	}
	json_decref(result);
	json_decref(args);
	free(path);
	return rc;
}

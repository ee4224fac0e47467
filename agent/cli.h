/* cli.h — the parts of the operator command (agent/cli*.c): the command
 * table's entry, the context printers write through, and the parsers,
 * printers and local commands the table in cli.c names.
 *
 * A new command is a parser and a printer in a file of its own (or the ones
 * here, when they fit), declared below, and one line in cli.c's table. */
#ifndef CS_AGENT_CLI_H
#define CS_AGENT_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <getopt.h>
#include <jansson.h>

#include "../common/err.h"

/* Where one run's output goes; cs_cli_main sets it up once. */
typedef struct cli_ctx {
	bool json; /* --json: the answer is printed as JSON, for a program */
	/* Where the text for a person goes: standard output, or nowhere with
	 * --json (the printers still run for what they do besides printing). */
	FILE *human;
	/* What a command whose standard output is a file (a PEM to hand to a
	 * CA) says to the operator: standard error, so `> file` holds the file
	 * alone; nowhere with --json. */
	FILE *aside;
	/* The configuration: -c FILE, $CERTSYNC_CONFIG or the installed one. */
	const char *config;
	/* -S SOCKET as given, or NULL: for the local commands that call the
	 * agent themselves */
	const char *socket;
} cli_ctx;

#define hprintf(ctx, ...) fprintf((ctx)->human, __VA_ARGS__)

struct cli_command;
/* Turns a command's flags into the control request's arguments. */
typedef int cli_parse_func(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                           cs_err *err);
/* Prints the agent's answer; returns the exit status. */
typedef int cli_print_func(const cli_ctx *ctx, json_t *result, json_t *args);
/* A command that needs no agent; argv[0] is its last word. */
typedef int cli_local_func(const cli_ctx *ctx, const struct cli_command *cmd, int argc,
                           char **argv);
typedef cli_parse_func *cli_parse_fn;
typedef cli_print_func *cli_print_fn;
typedef cli_local_func *cli_local_fn;

struct cli_command {
	const char *words; /* "cert list" */
	const char *request;
	const char *usage; /* after "certsync " */
	const char *help;
	cli_parse_fn parse;
	cli_print_fn print;
	cli_local_fn local; /* instead of request, parse and print */
};

/* Prints err on standard error (and as JSON with --json); the exit status. */
int cli_fail(const cli_ctx *ctx, cs_err *err);

/* ---- flags (cli_args.c) ---- */

/* Sets a usage error: what, then the command's usage; returns -1. */
int cli_usage_error(const struct cli_command *cmd, cs_err *err, const char *what);
/* getopt_long, with flag errors said in words: returns the flag's value
 * char, -1 after the last flag, or 0 with err set. */
int cli_next_flag(const struct cli_command *cmd, int argc, char **argv, const char *shortopts,
                  const struct option *opts, cs_err *err);

cli_parse_func cli_parse_none, cli_parse_id, cli_parse_new, cli_parse_import, cli_parse_export,
    cli_parse_prune, cli_parse_verify, cli_parse_promote, cli_parse_cert_list, cli_parse_status,
    cli_parse_diverged_prune;

/* Reads a file named on the command line into sodium_malloc'd memory (it
 * may hold a key); one that cannot be read is bad input (exit 1). */
int cli_read_file(const char *path, uint8_t **data, size_t *len, cs_err *err);
/* Reads a secret file into args[key]; allow_empty for PKCS#12 passwords. */
int cli_secret_arg(json_t *args, const char *key, const char *flag, const char *path,
                   bool allow_empty, cs_err *err);

/* cli_import.c: sends the files cli_parse_import listed, in parts when
 * they do not fit one control request; the last part's answer in *result. */
int cli_import_call(const char *sock, json_t *args, json_t **result, cs_err *err);

/* cli_rekey.c */
int cli_parse_rekey(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                    cs_err *err);

/* ---- helpers every printer shares (cli_print.c) ---- */

/* "1 certificate", "2 certificates": n of key in obj with its word. */
const char *cli_count(char out[64], json_t *obj, const char *key, const char *one,
                      const char *many);
/* obj[key] as a string; "" when it is not one. */
const char *cli_str(json_t *obj, const char *key);
json_int_t cli_num(json_t *obj, const char *key);
/* Prints items of a JSON string array joined by sep. */
void cli_print_list(const cli_ctx *ctx, json_t *arr, const char *sep);
/* The date part of the ISO 8601 time obj[key] (four may be in use at once). */
const char *cli_day(json_t *obj, const char *key);

/* ---- printers: the node (cli_print.c) ---- */

cli_print_func cli_print_status, cli_print_alerts, cli_print_alerts_test;

/* ---- printers: records and changes (cli_print_records.c) ---- */

cli_print_func cli_print_cert_list, cli_print_cert_show, cli_print_deleted, cli_print_message,
    cli_print_key_list, cli_print_prune, cli_print_default, cli_print_self_signed,
    cli_print_csr_created, cli_print_csr_list, cli_print_csr_show, cli_print_import,
    cli_print_export, cli_print_verify, cli_print_promote, cli_print_diverged,
    cli_print_diverged_apply, cli_print_diverged_delete, cli_print_diverged_prune;

/* ---- verify --cluster (cli_verify.c) ---- */

/* Checks every node through the agent at the control socket path and
 * prints the checks; 0 when all pass, 1 when one fails, -1 with err. */
int cli_verify_cluster(const cli_ctx *ctx, const char *path, cs_err *err);

/* ---- commands that need no agent (cli_local.c) ---- */

cli_local_func cli_keygen, cli_cluster_init;

/* ---- the membership (cli_members.c) ---- */

/* `cluster add-node`: the node's key pair, the agent's change, its folder. */
int cli_add_node(const cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv);
int cli_print_nodes(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_removed(const cli_ctx *ctx, json_t *r, json_t *args);

/* ---- backup and restore (cli_backup.c) ---- */

/* -o FILE, made absolute: the agent writes it, from its own folder. */
int cli_parse_backup(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                     cs_err *err);
int cli_print_backup(const cli_ctx *ctx, json_t *r, json_t *args);
/* Needs no agent: the node is stopped. */
int cli_restore(const cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv);

#endif

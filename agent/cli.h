/* cli.h — the parts of the operator command (agent/cli*.c): the command
 * table's entry, the context printers write through, and the parsers,
 * printers and local commands the table in cli.c names.
 *
 * A new command is a parser and a printer in a file of its own (or the ones
 * here, when they fit), declared below, and one line in cli.c's table. */
#ifndef CS_AGENT_CLI_H
#define CS_AGENT_CLI_H

#include <stdbool.h>
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
} cli_ctx;

#define hprintf(ctx, ...) fprintf((ctx)->human, __VA_ARGS__)

struct cli_command;
/* Turns a command's flags into the control request's arguments. */
typedef int (*cli_parse_fn)(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                            cs_err *err);
/* Prints the agent's answer; returns the exit status. */
typedef int (*cli_print_fn)(const cli_ctx *ctx, json_t *result, json_t *args);
/* A command that needs no agent; argv[0] is its last word. */
typedef int (*cli_local_fn)(const cli_ctx *ctx, const struct cli_command *cmd, int argc,
                            char **argv);

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

int cli_parse_none(const struct cli_command *cmd, int argc, char **argv, json_t *args, cs_err *err);
int cli_parse_id(const struct cli_command *cmd, int argc, char **argv, json_t *args, cs_err *err);
int cli_parse_new(const struct cli_command *cmd, int argc, char **argv, json_t *args, cs_err *err);
int cli_parse_import(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                     cs_err *err);
int cli_parse_export(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                     cs_err *err);
int cli_parse_prune(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                    cs_err *err);
int cli_parse_verify(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                     cs_err *err);
int cli_parse_promote(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                      cs_err *err);
int cli_parse_cert_list(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                        cs_err *err);
int cli_parse_status(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                     cs_err *err);
int cli_parse_diverged_prune(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                             cs_err *err);

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

int cli_print_status(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_alerts(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_alerts_test(const cli_ctx *ctx, json_t *r, json_t *args);

/* ---- printers: records and changes (cli_print_records.c) ---- */

int cli_print_cert_list(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_cert_show(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_deleted(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_message(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_key_list(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_prune(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_default(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_self_signed(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_csr_created(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_csr_list(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_csr_show(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_import(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_export(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_verify(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_promote(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_diverged(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_diverged_apply(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_diverged_delete(const cli_ctx *ctx, json_t *r, json_t *args);
int cli_print_diverged_prune(const cli_ctx *ctx, json_t *r, json_t *args);

/* ---- verify --cluster (cli_verify.c) ---- */

/* Checks every node through the agent at the control socket path and
 * prints the checks; 0 when all pass, 1 when one fails, -1 with err. */
int cli_verify_cluster(const cli_ctx *ctx, const char *path, cs_err *err);

/* ---- commands that need no agent (cli_local.c) ---- */

int cli_keygen(const cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv);
int cli_cluster_init(const cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv);

#endif

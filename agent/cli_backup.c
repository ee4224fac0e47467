/* cli_backup.c — `certsync backup -o FILE` asks the agent for a copy of
 * its store (the agent writes FILE: it holds the store); `certsync restore
 * FILE --data-dir DIR` puts one into a stopped node's empty data_dir, with
 * no agent involved (backup_file.h does the work). */
#include "cli_backup.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../store/seal.h"
#include "backup_file.h"
#include "cli.h"
#include "config.h"
#include "control.h"

static int usage(cs_err *err, const char *usage_line, const char *what)
{
	return cs_fail(err, CS_EUSAGE, "%s; usage: certsync %s", what, usage_line);
}

static void print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2));
	putchar('\n');
}

/* The agent may run in another folder: it gets an absolute path. */
static int absolute(const char *path, char *out, size_t len, cs_err *err)
{
	char cwd[PATH_MAX];

	if (path[0] == '/')
		return (size_t)snprintf(out, len, "%s", path) < len
		           ? 0
		           : cs_fail(err, CS_EUSAGE, "-o %s: the path is too long", path);
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return cs_fail(err, CS_EIO, "cannot read the current folder");
	return (size_t)snprintf(out, len, "%s/%s", cwd, path) < len
	           ? 0
	           : cs_fail(err, CS_EUSAGE, "-o %s: the path is too long", path);
}

int cli_backup(const struct command *cmd, int argc, char **argv)
{
	static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
	                                     {NULL, 0, NULL, 0}};
	const char *out = NULL;
	char path[PATH_MAX], *sock = NULL;
	json_t *args, *r = NULL;
	cs_err err = {0};
	int c, rc;

	(void)cmd;
	while ((c = getopt_long(argc, argv, ":o:", opts, NULL)) != -1) {
		if (c != 'o') {
			usage(&err, CLI_BACKUP_USAGE,
			      c == ':' ? "-o needs a value (FILE)" : "unknown flag");
			return cli_fail(&err);
		}
		out = optarg;
	}
	if (out == NULL || optind != argc || strcmp(out, "-") == 0 || out[0] == '\0') {
		usage(&err, CLI_BACKUP_USAGE,
		      out == NULL ? "give -o FILE"
		                  : "give one file to write (not standard output)");
		return cli_fail(&err);
	}
	if (absolute(out, path, sizeof(path), &err) < 0 || cli_socket(&sock, &err) < 0)
		return cli_fail(&err);
	args = json_pack("{s:s}", "file", path);
	rc = cs_control_call(sock, "backup", args, &r, &err);
	json_decref(args);
	free(sock);
	if (rc < 0)
		return cli_fail(&err);
	if (cli_json()) {
		print_json(r);
	} else {
		printf("wrote the backup of cluster %s at %lld.%lld (digest %.16s..., %lld bytes, "
		       "taken on %s) to %s\n",
		       json_string_value(json_object_get(r, "cluster")),
		       (long long)json_integer_value(json_object_get(r, "epoch")),
		       (long long)json_integer_value(json_object_get(r, "seq")),
		       json_string_value(json_object_get(r, "digest")),
		       (long long)json_integer_value(json_object_get(r, "bytes")),
		       json_string_value(json_object_get(r, "node")), path);
		printf("note: %s\n", json_string_value(json_object_get(r, "note")));
	}
	json_decref(r);
	return 0;
}

int cli_restore(const struct command *cmd, int argc, char **argv)
{
	static const struct option opts[] = {{"data-dir", required_argument, NULL, 'd'},
	                                     {NULL, 0, NULL, 0}};
	const char *dir = NULL, *file;
	cs_config cfg;
	cs_err err = {0};
	bk_info info;
	char *pass;
	size_t passlen;
	int c, rc;

	(void)cmd;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		if (c != 'd') {
			usage(&err, CLI_RESTORE_USAGE,
			      c == ':' ? "--data-dir needs a value (DIR)" : "unknown flag");
			return cli_fail(&err);
		}
		dir = optarg;
	}
	if (optind != argc - 1 || dir == NULL || dir[0] == '\0') {
		usage(&err, CLI_RESTORE_USAGE,
		      dir == NULL ? "give --data-dir DIR" : "give exactly one backup FILE");
		return cli_fail(&err);
	}
	file = argv[optind];
	/* The node's configuration names its passphrase: only a backup of the
	 * cluster that passphrase opens is restored. */
	if (cs_config_load(&cfg, cli_config(), &err) < 0)
		return cli_fail(&err);
	if (cs_passphrase_file_read(&cfg, &pass, &passlen, &err) < 0) {
		cs_config_free(&cfg);
		return cli_fail(&err);
	}
	rc = bk_restore(file, dir, pass, passlen, &info, &err);
	cs_secret_free(pass);
	if (rc < 0) {
		cs_config_free(&cfg);
		return cli_fail(&err);
	}
	if (cli_json()) {
		json_t *j = bk_info_json(&info);

		json_object_set_new(j, "restored", json_string(file));
		json_object_set_new(j, "data_dir", json_string(dir));
		print_json(j);
		json_decref(j);
	} else {
		printf("restored the backup of cluster %s (taken on %s at %s, position %llu.%llu) "
		       "into %s\n",
		       info.cluster, info.node, info.created, (unsigned long long)info.pos.epoch,
		       (unsigned long long)info.pos.seq, dir);
		printf("The node starts as a follower and catches up from the cluster's primary; "
		       "if every node was lost, start it and run `certsync promote` on it.\n");
	}
	if (strcmp(dir, cfg.data_dir) != 0)
		fprintf(stderr,
		        "certsync: note: %s names data_dir %s; the agent reads that one, not %s\n",
		        cfg.path, cfg.data_dir, dir);
	cs_config_free(&cfg);
	return 0;
}

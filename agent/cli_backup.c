/* cli_backup.c — `certsync backup -o FILE` asks the agent for a copy of
 * its store (the agent writes FILE: it holds the store); `certsync restore
 * FILE --data-dir DIR` puts one into a stopped node's empty data_dir, with
 * no agent involved (backup_file.h does the work). */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backup_file.h"
#include "cli.h"
#include "config.h"

int cli_parse_backup(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                     cs_err *err)
{
	static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
	                                     {NULL, 0, NULL, 0}};
	const char *out = NULL;
	char path[PATH_MAX], cwd[PATH_MAX];
	int c;

	while ((c = cli_next_flag(cmd, argc, argv, "o:", opts, err)) > 0)
		out = optarg;
	if (c == 0)
		return -1;
	if (out == NULL)
		return cli_usage_error(cmd, err, "give -o FILE");
	if (optind != argc || out[0] == '\0' || strcmp(out, "-") == 0)
		return cli_usage_error(cmd, err, "give one file to write (not standard output)");
	/* The agent runs in a folder of its own: it gets an absolute path. */
	if (out[0] != '/' && getcwd(cwd, sizeof(cwd)) == NULL)
		return cs_fail(err, CS_EIO, "cannot read the current folder");
	if ((size_t)snprintf(path, sizeof(path), "%s%s%s", out[0] == '/' ? "" : cwd,
	                     out[0] == '/' ? "" : "/", out) >= sizeof(path))
		return cli_usage_error(cmd, err, "the path of -o is too long");
	return json_object_set_new(args, "file", json_string(path));
}

int cli_print_backup(const cli_ctx *ctx, json_t *r, json_t *args)
{
	(void)args;
	hprintf(
	    ctx,
	    "wrote the backup of cluster %s at %lld.%lld (digest %.16s..., %lld bytes, taken on "
	    "%s) to %s\nnote: %s\n",
	    cli_str(r, "cluster"), (long long)cli_num(r, "epoch"), (long long)cli_num(r, "seq"),
	    cli_str(r, "digest"), (long long)cli_num(r, "bytes"), cli_str(r, "node"),
	    cli_str(r, "file"), cli_str(r, "note"));
	return 0;
}

int cli_restore(const cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv)
{
	static const struct option opts[] = {{"data-dir", required_argument, NULL, 'd'},
	                                     {NULL, 0, NULL, 0}};
	const char *dir = NULL;
	cs_config cfg;
	cs_err err = {0};
	bk_info info;
	json_t *j;
	int c;

	while ((c = cli_next_flag(cmd, argc, argv, "", opts, &err)) > 0)
		dir = optarg;
	if (c == 0)
		return cli_fail(ctx, &err);
	if (dir == NULL || dir[0] == '\0' || optind != argc - 1) {
		cli_usage_error(cmd, &err,
		                dir == NULL ? "give --data-dir DIR"
		                            : "give exactly one backup FILE");
		return cli_fail(ctx, &err);
	}
	/* The node's configuration names its passphrases: only a backup of
	 * the cluster one of them opens is restored. */
	if (cs_config_load(&cfg, ctx->config, &err) < 0)
		return cli_fail(ctx, &err);
	if (bk_restore(argv[optind], dir, &cfg, &info, &err) < 0) {
		cs_config_free(&cfg);
		return cli_fail(ctx, &err);
	}
	if (!ctx->json) /* a local command: ctx->human is standard output here */
		printf(
		    "restored the backup of cluster %s (taken on %s at %s, position %llu.%llu) "
		    "into %s\nThe node starts as a follower and catches up from the cluster's "
		    "primary; if every node was lost, start it and run `certsync promote` on it.\n",
		    info.cluster, info.node, info.created, (unsigned long long)info.pos.epoch,
		    (unsigned long long)info.pos.seq, dir);
	if (strcmp(dir, cfg.data_dir) != 0)
		fprintf(stderr, "note: %s names data_dir %s; the agent reads that one, not %s\n",
		        cfg.path, cfg.data_dir, dir);
	if (ctx->json && (j = bk_info_json(&info)) != NULL) {
		json_object_set_new(j, "restored", json_string(argv[optind]));
		json_object_set_new(j, "data_dir", json_string(dir));
		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	}
	cs_config_free(&cfg);
	return 0;
}

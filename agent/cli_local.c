/* cli_local.c — the commands that need no agent: `keygen` (a node's CURVE
 * key pair) and `cluster init` (every node's configuration folder). */
#include "cli.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../replication/repl.h"
#include "cluster_init.h"
#include "config.h"

/* `certsync keygen -o FILE`: needs no agent. */
int cli_keygen(const cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv)
{
	char pub[REPL_Z85_LEN + 1];
	cs_err err = {0};

	if (argc != 3 || strcmp(argv[1], "-o") != 0) {
		cli_usage_error(cmd, &err, "give -o FILE");
		return cli_fail(ctx, &err);
	}
	if (repl_keygen(argv[2], pub, &err) < 0)
		return cli_fail(ctx, &err);
	if (ctx->json)
		printf("{\"file\": \"%s\", \"public_key\": \"%s\"}\n", argv[2], pub);
	else
		printf("%s\n", pub);
	return 0;
}

/* `certsync cluster init`: needs no agent. */
int cli_cluster_init(const cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv)
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
		return cli_fail(ctx, &err);
	}
	while (rc == 0 && (c = cli_next_flag(cmd, argc, argv, "", opts, &err)) > 0) {
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
		rc = cli_usage_error(cmd, &err, "cluster init needs one folder, DIR");
	if (rc == 0) {
		spec.dir = argv[optind];
		spec.nodes = nodes;
		rc = cs_cluster_init(&spec, &err);
	}
	if (rc < 0) {
		free(nodes);
		return cli_fail(ctx, &err);
	}
	list = json_array();
	for (size_t i = 0; i < spec.nnodes; i++) {
		char conf[PATH_MAX];

		snprintf(conf, sizeof(conf), "%s/%s/" CS_CLUSTER_CONF, spec.dir, nodes[i].name);
		json_array_append_new(list,
		                      json_pack("{s:s, s:s, s:s, s:s}", "name", nodes[i].name,
		                                "role", cs_role_name(nodes[i].role), "public_key",
		                                nodes[i].public_key, "config", conf));
		if (!ctx->json)
			printf("%-10s %-8s %s  public key %s\n", nodes[i].name,
			       cs_role_name(nodes[i].role), conf, nodes[i].public_key);
	}
	if (ctx->json) {
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

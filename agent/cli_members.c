/* cli_members.c — `certsync cluster add-node`, `cluster nodes` and
 * `cluster remove-node` on the command line.  add-node runs on the
 * primary's machine: the new node's key pair and passphrase are written
 * into a folder beside DIR first, the agent then adds the node to the
 * replicated membership, and the configuration (its peers: every member)
 * completes the folder, which is moved into place.  The folder is written
 * by the same code as `cluster init`'s (cluster_init.h). */
#include "cli.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../seal/seal.h"
#include "cluster_init.h"
#include "config.h"
#include "control.h"

/* The passphrase file's first line, as `cluster init` writes it. */
static int passphrase_line(const cs_config *cfg, char **line, cs_err *err)
{
	char *pass;
	size_t len;

	if (cs_passphrase_file_read(cfg, &pass, &len, err) < 0)
		return -1;
	*line = sodium_malloc(len + 2);
	if (*line != NULL) {
		memcpy(*line, pass, len);
		memcpy(*line + len, "\n", 2);
	}
	cs_secret_free(pass);
	return *line != NULL ? 0 : cs_fail(err, CS_EIO, "out of memory");
}

/* The members the agent answered with, as `cluster init` nodes; the new
 * node is n itself, which knows its own listen addresses. */
static int members_spec(json_t *r, const cs_cluster_node *n, cs_cluster_spec *spec, cs_err *err)
{
	json_t *nodes = json_object_get(r, "nodes"), *j;
	size_t i;

	spec->nodes = calloc(json_array_size(nodes) + 1, sizeof(*spec->nodes));
	if (spec->nodes == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	json_array_foreach(nodes, i, j)
	{
		cs_cluster_node *x = &spec->nodes[spec->nnodes++];

		if (strcmp(cli_str(j, "name"), n->name) == 0) {
			*x = *n;
			continue;
		}
		snprintf(x->name, sizeof(x->name), "%s", cli_str(j, "name"));
		if (cs_role_parse(cli_str(j, "role"), &x->role) < 0)
			return cs_fail(err, CS_EIO, "the agent's answer names a bad role");
		snprintf(x->hostname, sizeof(x->hostname), "%s", cli_str(j, "hostname"));
		snprintf(x->repl_endpoint, sizeof(x->repl_endpoint), "%s",
		         cli_str(j, "repl_endpoint"));
		snprintf(x->tls_endpoint, sizeof(x->tls_endpoint), "%s",
		         cli_str(j, "tls_endpoint"));
		snprintf(x->public_key, sizeof(x->public_key), "%s", cli_str(j, "public_key"));
	}
	spec->site = cli_str(r, "site_hostname");
	return 0;
}

/* Asks the agent to add n; then the configuration completes tmp. */
static json_t *add(const char *path, const char *spec_text, cs_cluster_node *n, const char *tmp,
                   const char *root, cs_err *err)
{
	cs_cluster_spec spec = {0};
	json_t *args, *r = NULL;
	int rc;

	args = json_pack("{s:s, s:s}", "node", spec_text, "public_key", n->public_key);
	rc = args != NULL ? cs_control_call(path, "cluster.add-node", args, &r, err)
	                  : cs_fail(err, CS_EIO, "out of memory");
	json_decref(args);
	if (rc == CS_CONTROL_NO_ANSWER)
		cs_err_prefix(err,
		              "%s may or may not have been added: check with `certsync "
		              "cluster nodes`; ",
		              n->name);
	if (rc < 0)
		return NULL;
	if (members_spec(r, n, &spec, err) < 0 ||
	    cs_cluster_write_config(&spec, n, tmp, root, err) < 0) {
		cs_err_prefix(err,
		              "%s was added to the cluster, but its folder was not written: "
		              "remove it (`certsync cluster remove-node %s`) and add it again; ",
		              n->name, n->name);
		json_decref(r);
		r = NULL;
	}
	free(spec.nodes);
	return r;
}

/* Writes the node's folder into dir, the agent's answer with "dir" and
 * "config" added, or NULL with err: nothing is left in dir then. */
static json_t *add_node(const char *config, const char *sock, const char *spec_text,
                        const char *dir, cs_err *err)
{
	char root[CS_CLUSTER_ROOT_MAX], tmp[CS_CLUSTER_ROOT_MAX + 16], conf[PATH_MAX];
	cs_cluster_node n;
	cs_config cfg;
	char *pass = NULL;
	json_t *r = NULL;
	int rc;

	if (cs_cluster_joiner_parse(spec_text, &n, err) < 0 || cs_cluster_check_dir(dir, err) < 0)
		return NULL;
	/* The configuration names the passphrase the new node needs. */
	if (cs_config_load(&cfg, config, err) < 0)
		return NULL;
	rc = passphrase_line(&cfg, &pass, err);
	if (rc == 0 && (rc = cs_cluster_stage(dir, root, tmp, err)) == 0) {
		rc = cs_cluster_write_keys(tmp, &n, pass, err);
		if (rc == 0)
			r = add(sock ? sock : cfg.control_socket, spec_text, &n, tmp, root, err);
		rc = cs_cluster_unstage(tmp, root, dir, r != NULL ? 0 : -1, err);
	}
	sodium_free(pass);
	cs_config_free(&cfg);
	if (rc < 0) {
		json_decref(r);
		return NULL;
	}
	snprintf(conf, sizeof(conf), "%s/" CS_CLUSTER_CONF, dir);
	json_object_set_new(r, "dir", json_string(dir));
	json_object_set_new(r, "config", json_string(conf));
	return r;
}

/* The new node's folder, and a warning when the default does not cover
 * its hostname (on standard error, with --json too). */
static void print_added(const cli_ctx *ctx, json_t *r)
{
	json_t *added = json_object_get(r, "added"), *unc = json_object_get(r, "uncovered");

	if (ctx->json) {
		json_dumpf(r, stdout, JSON_INDENT(2));
		putchar('\n');
	} else {
		printf("added %s (%s, %s), public key %s\nits folder: %s (it holds the cluster "
		       "passphrase: keep it 0600 and copy it only to that node)\nstart it with "
		       "`certsync agent -c %s`\n",
		       cli_str(added, "name"), cli_str(added, "role"), cli_str(added, "hostname"),
		       cli_str(added, "public_key"), cli_str(r, "dir"), cli_str(r, "config"));
	}
	if (json_array_size(unc) > 0)
		fprintf(stderr,
		        "certsync: warning: the default certificate does not cover %s; import "
		        "or choose one that does (`certsync verify` shows the coverage)\n",
		        json_string_value(json_array_get(unc, 0)));
}

int cli_add_node(const cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv)
{
	static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
	                                     {NULL, 0, NULL, 0}};
	const char *dir = NULL;
	cs_err err = {0};
	json_t *r;
	int c;

	while ((c = cli_next_flag(cmd, argc, argv, "o:", opts, &err)) > 0)
		dir = optarg;
	if (c == 0)
		return cli_fail(ctx, &err);
	if (optind != argc - 1 || dir == NULL) {
		cli_usage_error(cmd, &err, "give the node and -o DIR");
		return cli_fail(ctx, &err);
	}
	if ((r = add_node(ctx->config, ctx->socket, argv[optind], dir, &err)) == NULL)
		return cli_fail(ctx, &err);
	print_added(ctx, r);
	json_decref(r);
	return 0;
}

int cli_print_nodes(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *nodes = json_object_get(r, "nodes"), *j;
	size_t i;

	(void)args;
	json_array_foreach(nodes, i, j)
	{
		json_t *lag = json_object_get(j, "lag");

		hprintf(ctx, "%-12s %-8s %-5s %-30s %-28s %s", cli_str(j, "name"),
		        cli_str(j, "role"), cli_str(j, "state"), cli_str(j, "hostname"),
		        cli_str(j, "repl_endpoint"), cli_str(j, "tls_endpoint"));
		if (json_is_integer(lag))
			hprintf(ctx, "  lag %lld", (long long)json_integer_value(lag));
		hprintf(ctx, "\n");
	}
	if (strcmp(cli_str(r, "source"), "configuration") == 0)
		hprintf(ctx, "(from the configuration: the primary has not recorded the membership "
		             "yet)\n");
	return 0;
}

int cli_print_removed(const cli_ctx *ctx, json_t *r, json_t *args)
{
	(void)args;
	hprintf(ctx, "removed %s: its key is refused by every node from now on\n",
	        cli_str(r, "removed"));
	return 0;
}

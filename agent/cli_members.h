/* cli_members.h — the command line's side of the membership commands:
 * `cluster add-node` (which writes the new node's folder here, on the
 * primary's machine) and the printing of `cluster nodes` and
 * `cluster remove-node`. */
#ifndef CS_CLI_MEMBERS_H
#define CS_CLI_MEMBERS_H

#include <stdio.h>

#include <jansson.h>

#include "../common/err.h"

/* Generates the node's key pair, has the agent (at sock, else the one
 * config names) add it to the membership, and writes the node's folder
 * into dir: configuration, key pair and the cluster passphrase.  Nothing
 * is left in dir unless the node was added.  Returns the agent's answer
 * with "dir" and "config" added, or NULL with err. */
json_t *cli_add_node(const char *config, const char *sock, const char *spec, const char *dir,
                     cs_err *err);

/* out NULL (--json): only the warning, on standard error. */
int cli_print_added(FILE *out, json_t *r);
int cli_print_nodes(FILE *out, json_t *r);
int cli_print_removed(FILE *out, json_t *r);

#endif

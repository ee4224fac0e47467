/* ops.h — the operations behind the control socket, one function per command,
 * shared by node.c (which dispatches) and the ops_*.c files (which do them). */
#ifndef CS_OPS_H
#define CS_OPS_H

#include <stdbool.h>
#include <time.h>

#include <jansson.h>

#include "../store/seal.h"
#include "../store/store.h"
#include "../tls/tls.h"
#include "config.h"

struct cs_node {
	const cs_config *cfg;
	cs_store *store;
	cs_key *key; /* NULL on a non-primary until it has the cluster settings */
	time_t started;
	tls_server *tls; /* NULL without tls_listen */
};

typedef json_t *(*cs_op_fn)(struct cs_node *node, json_t *args, cs_err *err);

/* Reads string argument name: 0 and *out set (NULL when absent and not
 * required), -1 with a usage error otherwise. */
int ops_arg_string(json_t *args, const char *name, bool required, const char **out, cs_err *err);

/* Commits txn and logs the change; txn has ended either way. */
int ops_commit(struct cs_node *node, cs_txn *txn, const char *summary, cs_err *err);

json_t *op_cert_list(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_cert_show(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_cert_delete(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_cert_default(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_export(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_verify(struct cs_node *node, json_t *args, cs_err *err);

json_t *op_self_signed(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_csr_create(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_csr_list(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_csr_show(struct cs_node *node, json_t *args, cs_err *err);

json_t *op_import(struct cs_node *node, json_t *args, cs_err *err);

#endif

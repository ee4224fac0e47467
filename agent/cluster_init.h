/* cluster_init.h — `certsync cluster init`: writes, for every node of a new
 * cluster, a ready configuration, its CURVE key pair and the shared
 * passphrase file, so that no operator assembles peer sections by hand. */
#ifndef CS_CLUSTER_INIT_H
#define CS_CLUSTER_INIT_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/err.h"
#include "config.h"

#define CS_NODE_NAME_MAX 64

/* One --node NAME=ROLE,HOSTNAME,REPL_ENDPOINT,TLS_LISTEN[,HTTP_LISTEN], parsed
 * and checked: the endpoint is tcp://HOST:PORT, the listeners ADDR:PORT. */
typedef struct cs_cluster_node {
	char name[CS_NODE_NAME_MAX + 1];
	cs_role role;
	char hostname[256];
	char repl_endpoint[300];
	char repl_host[256];
	unsigned repl_port;
	char tls_listen[300];
	char tls_host[256];
	unsigned tls_port;
	char http_listen[300]; /* the optional fifth field, HTTP_LISTEN; "" when not given */
	char http_host[256];
	unsigned http_port;
	char public_key[41]; /* filled by cs_cluster_init: its CURVE key in Z85 */
} cs_cluster_node;

int cs_cluster_node_parse(const char *spec, cs_cluster_node *out, cs_err *err);

typedef struct cs_cluster_spec {
	const char *dir;  /* where DIR/NAME/ folders are written; absent or empty */
	const char *site; /* the site hostname */
	/* The folder the configurations name for a node's own files; NULL for
	 * DIR/NAME itself.  With container, the fixed paths of the image
	 * (docker/) instead: data in /var/lib/certsync, the socket in
	 * /run/certsync, the passphrase as the secret /run/secrets/... */
	bool container;
	cs_cluster_node *nodes;
	size_t nnodes;
} cs_cluster_spec;

/* The file names written in every DIR/NAME/, and the container's paths. */
#define CS_CLUSTER_CONF     "certsync.conf"
#define CS_CLUSTER_KEY      "node.secret"
#define CS_CLUSTER_PASS     "passphrase"
#define CS_CONTAINER_CONF   "/etc/certsync/certsync.conf"
#define CS_CONTAINER_KEY    "/etc/certsync/node.secret"
#define CS_CONTAINER_PASS   "/run/secrets/cluster_passphrase"
#define CS_CONTAINER_DATA   "/var/lib/certsync"
#define CS_CONTAINER_SOCKET "/run/certsync/control.sock"

/* Checks the whole cluster (one primary, unique names and hostnames, a
 * valid site), then writes every node's folder into a temporary folder
 * beside DIR and renames it into place: on any error nothing is left. */
int cs_cluster_init(const cs_cluster_spec *spec, cs_err *err);

#endif

/* cluster_init.c — `certsync cluster init`: every node's configuration, key
 * pair and passphrase file for a new cluster, written all or nothing. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "cluster_init.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../common/hostport.h"
#include "../pki/pki.h"
#include "../replication/repl.h"

#define PASS_BYTES 32             /* 256 bits: the Argon2id input needs no more */
#define ROOT_MAX   (PATH_MAX / 2) /* DIR, so that DIR/NAME/FILE always fits */

/* ---- one --node ------------------------------------------------------------ */

static int bad_node(cs_err *err, const char *spec, const char *why)
{
	return cs_fail(err, CS_EUSAGE,
	               "--node %s: %s; write NAME=ROLE,HOSTNAME,REPL_ENDPOINT,TLS_LISTEN as in "
	               "primary=primary,primary.example.test,tcp://primary.example.test:7700,"
	               "0.0.0.0:8443",
	               spec, why);
}

/* A name is a folder and an INI section: keep it to what both take. */
static bool good_name(const char *s, size_t n)
{
	if (n == 0 || n > CS_NODE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

static bool copy_field(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap)
		return false;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return true;
}

int cs_cluster_node_parse(const char *spec, cs_cluster_node *out, cs_err *err)
{
	const char *eq = strchr(spec, '='), *field[5], *end[5], *p;
	int nfields = 4;
	char role[16], msg[320];
	const char *why = NULL;

	memset(out, 0, sizeof(*out));
	if (eq == NULL || !good_name(spec, (size_t)(eq - spec)))
		return bad_node(err, spec,
		                "the name before '=' needs 1 to 64 letters, digits, '-' or '_'");
	memcpy(out->name, spec, (size_t)(eq - spec));
	p = eq + 1;
	for (int i = 0; i < nfields; i++) {
		field[i] = p;
		end[i] = i < 3 ? strchr(p, ',') : p + strcspn(p, ",");
		/* a fifth field, HTTP_LISTEN, is optional */
		nfields += i == 3 && *end[i] == ',';
		if (end[i] == NULL || (i == 4 && *end[i] == ','))
			return bad_node(
			    err, spec,
			    "it needs exactly four comma-separated fields, or five with "
			    "HTTP_LISTEN");
		p = end[i] + 1;
	}
	if (!copy_field(role, sizeof(role), field[0], (size_t)(end[0] - field[0])) ||
	    cs_role_parse(role, &out->role) < 0)
		return bad_node(err, spec, "the role is primary, backup or traffic");
	if (!copy_field(out->hostname, sizeof(out->hostname), field[1],
	                (size_t)(end[1] - field[1])) ||
	    (why = pki_hostname_problem(out->hostname)) != NULL) {
		snprintf(msg, sizeof(msg), "hostname '%.255s' is not a DNS name: %s", out->hostname,
		         why ? why : "too long");
		return bad_node(err, spec, msg);
	}
	if (!copy_field(out->repl_endpoint, sizeof(out->repl_endpoint), field[2],
	                (size_t)(end[2] - field[2])) ||
	    strncmp(out->repl_endpoint, "tcp://", 6) != 0 ||
	    !cs_hostport_split(out->repl_endpoint + 6, out->repl_host, sizeof(out->repl_host),
	                       &out->repl_port, false) ||
	    (!cs_host_is_ip(out->repl_host) && pki_hostname_problem(out->repl_host) != NULL))
		return bad_node(
		    err, spec,
		    "the replication endpoint is tcp://HOST:PORT, HOST a DNS name or an "
		    "IP address, PORT 1 to 65535");
	if (!copy_field(out->tls_listen, sizeof(out->tls_listen), field[3],
	                (size_t)(end[3] - field[3])) ||
	    !cs_hostport_split(out->tls_listen, out->tls_host, sizeof(out->tls_host),
	                       &out->tls_port, false) ||
	    !cs_host_is_ip(out->tls_host))
		return bad_node(
		    err, spec,
		    "TLS_LISTEN is ADDRESS:PORT with a numeric address, as 0.0.0.0:8443 "
		    "or 127.0.0.1:8443, PORT 1 to 65535");
	if (nfields == 5 && (!copy_field(out->http_listen, sizeof(out->http_listen), field[4],
	                                 (size_t)(end[4] - field[4])) ||
	                     !cs_hostport_split(out->http_listen, out->http_host,
	                                        sizeof(out->http_host), &out->http_port, false) ||
	                     !cs_host_is_ip(out->http_host)))
		return bad_node(err, spec,
		                "HTTP_LISTEN is ADDRESS:PORT with a numeric address, as 0.0.0.0:80 "
		                "or 127.0.0.1:8080, PORT 1 to 65535");
	return 0;
}

/* ---- checks across nodes --------------------------------------------------- */

static int check_cluster(const cs_cluster_spec *spec, cs_err *err)
{
	size_t primaries = 0;
	const char *why;

	if (spec->site == NULL)
		return cs_fail(err, CS_EUSAGE,
		               "--site is missing; give the hostname clients use for the whole "
		               "cluster, as in --site support.example.test");
	if ((why = pki_hostname_problem(spec->site)) != NULL)
		return cs_fail(err, CS_EUSAGE, "--site %s: %s", spec->site, why);
	if (spec->nnodes == 0)
		return cs_fail(err, CS_EUSAGE, "no --node given; give one for every node");
	for (size_t i = 0; i < spec->nnodes; i++) {
		const cs_cluster_node *a = &spec->nodes[i];

		primaries += a->role == CS_ROLE_PRIMARY;
		for (size_t j = 0; j < i; j++) {
			const cs_cluster_node *b = &spec->nodes[j];

			if (strcmp(a->name, b->name) == 0)
				return cs_fail(
				    err, CS_EUSAGE,
				    "--node %s is given twice; every node needs a name of "
				    "its own",
				    a->name);
			if (strcasecmp(a->hostname, b->hostname) == 0)
				return cs_fail(
				    err, CS_EUSAGE,
				    "nodes %s and %s have the same hostname %s; every node "
				    "needs a hostname of its own",
				    b->name, a->name, a->hostname);
		}
	}
	if (primaries != 1)
		return cs_fail(err, CS_EUSAGE,
		               "the cluster has %zu primaries; give exactly one --node with role "
		               "primary",
		               primaries);
	return 0;
}

/* DIR may be absent or an empty folder: a cluster is never written over
 * another's keys. */
static int check_dir(const char *dir, cs_err *err)
{
	struct dirent *e;
	DIR *d = opendir(dir);
	bool empty = true;

	if (d == NULL) {
		if (errno == ENOENT)
			return 0;
		return cs_fail(err, CS_EUSAGE, "%s: %s; give a new or empty folder", dir,
		               strerror(errno));
	}
	while (empty && (e = readdir(d)) != NULL)
		empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
	closedir(d);
	if (!empty)
		return cs_fail(err, CS_EEXIST,
		               "%s is not empty; give a new or empty folder (a cluster is never "
		               "written over another's keys)",
		               dir);
	return 0;
}

/* ---- writing --------------------------------------------------------------- */

static int write_file(const char *path, mode_t mode, const char *text, size_t len, cs_err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	int rc = 0;

	if (fd < 0)
		return cs_fail(err, CS_EIO, "%s: cannot create it: %s", path, strerror(errno));
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) != 0)
		rc = cs_fail(err, CS_EIO, "%s: cannot write it: %s", path, strerror(errno));
	if (close(fd) != 0 && rc == 0)
		rc = cs_fail(err, CS_EIO, "%s: cannot write it: %s", path, strerror(errno));
	return rc;
}

/* Where a node's own files are, as its configuration names them. */
struct node_paths {
	char conf[PATH_MAX], key[PATH_MAX], pass[PATH_MAX], data[PATH_MAX], sock[PATH_MAX];
};

static void node_paths(const cs_cluster_spec *spec, const char root[ROOT_MAX],
                       const char name[CS_NODE_NAME_MAX + 1], struct node_paths *p)
{
	if (spec->container) {
		snprintf(p->conf, sizeof(p->conf), "%s", CS_CONTAINER_CONF);
		snprintf(p->key, sizeof(p->key), "%s", CS_CONTAINER_KEY);
		snprintf(p->pass, sizeof(p->pass), "%s", CS_CONTAINER_PASS);
		snprintf(p->data, sizeof(p->data), "%s", CS_CONTAINER_DATA);
		snprintf(p->sock, sizeof(p->sock), "%s", CS_CONTAINER_SOCKET);
		return;
	}
	snprintf(p->conf, sizeof(p->conf), "%s/%s/" CS_CLUSTER_CONF, root, name);
	snprintf(p->key, sizeof(p->key), "%s/%s/" CS_CLUSTER_KEY, root, name);
	snprintf(p->pass, sizeof(p->pass), "%s/%s/" CS_CLUSTER_PASS, root, name);
	snprintf(p->data, sizeof(p->data), "%s/%s/data", root, name);
	snprintf(p->sock, sizeof(p->sock), "%s/%s/control.sock", root, name);
}

/* "HOST:PORT" with brackets for IPv6. */
static void host_port(char *out, size_t cap, const char *host, unsigned port)
{
	snprintf(out, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

/* A peer's TLS endpoint as others reach it: its hostname when it listens on
 * every address, else the address it listens on. */
static void reach(const cs_cluster_node *n, const char *host, unsigned port, char *out, size_t cap)
{
	bool any = strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;

	host_port(out, cap, any ? n->hostname : host, port);
}

static char *config_text(const cs_cluster_spec *spec, const cs_cluster_node *n,
                         const struct node_paths *p)
{
	char listen[300], endpoint[300];
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	/* A DNS name is resolved when the socket binds, so listen on every
	 * address for it; an IP address is bound as given. */
	if (cs_host_is_ip(n->repl_host))
		snprintf(listen, sizeof(listen), "%s", n->repl_endpoint);
	else
		snprintf(listen, sizeof(listen), "tcp://0.0.0.0:%u", n->repl_port);
	fprintf(f,
	        "# certsync configuration of node %s, written by `certsync cluster init`.\n"
	        "[node]\nname = %s\nrole = %s\nhostname = %s\ndata_dir = %s\n"
	        "control_socket = %s\npassphrase_file = %s\nrepl_listen = %s\n"
	        "curve_secret_file = %s\ntls_listen = %s\n",
	        n->name, n->name, cs_role_name(n->role), n->hostname, p->data, p->sock, p->pass,
	        listen, p->key, n->tls_listen);
	if (n->http_listen[0] != '\0')
		fprintf(f, "http_listen = %s\n", n->http_listen);
	fprintf(f, "\n[cluster]\nsite_hostname = %s\n", spec->site);
	for (size_t i = 0; i < spec->nnodes; i++) {
		const cs_cluster_node *peer = &spec->nodes[i];

		if (peer == n)
			continue;
		reach(peer, peer->tls_host, peer->tls_port, endpoint, sizeof(endpoint));
		fprintf(f,
		        "\n[peer %s]\nrole = %s\nhostname = %s\nrepl_endpoint = %s\n"
		        "curve_public_key = %s\ntls_endpoint = %s\n",
		        peer->name, cs_role_name(peer->role), peer->hostname, peer->repl_endpoint,
		        peer->public_key, endpoint);
		if (peer->http_listen[0] != '\0') {
			reach(peer, peer->http_host, peer->http_port, endpoint, sizeof(endpoint));
			fprintf(f, "http_endpoint = %s\n", endpoint);
		}
	}
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Every node folder with its key pair and a copy of the passphrase. */
static int write_keys(const cs_cluster_spec *spec, const char tmp[ROOT_MAX + 16], const char *pass,
                      cs_err *err)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < spec->nnodes; i++) {
		cs_cluster_node *n = &spec->nodes[i];

		snprintf(path, sizeof(path), "%s/%s", tmp, n->name);
		if (mkdir(path, 0700) != 0)
			return cs_fail(err, CS_EIO, "%s: cannot create it: %s", path,
			               strerror(errno));
		snprintf(path, sizeof(path), "%s/%s/" CS_CLUSTER_KEY, tmp, n->name);
		if (repl_keygen(path, n->public_key, err) < 0)
			return -1;
		snprintf(path, sizeof(path), "%s/%s/" CS_CLUSTER_PASS, tmp, n->name);
		if (write_file(path, 0600, pass, strlen(pass), err) < 0)
			return -1;
	}
	return 0;
}

static int write_configs(const cs_cluster_spec *spec, const char tmp[ROOT_MAX + 16],
                         const char root[ROOT_MAX], cs_err *err)
{
	struct node_paths p;
	char path[PATH_MAX];
	char *text;
	int rc;

	for (size_t i = 0; i < spec->nnodes; i++) {
		node_paths(spec, root, spec->nodes[i].name, &p);
		if ((text = config_text(spec, &spec->nodes[i], &p)) == NULL)
			return cs_fail(err, CS_EIO, "out of memory");
		snprintf(path, sizeof(path), "%s/%s/" CS_CLUSTER_CONF, tmp, spec->nodes[i].name);
		rc = write_file(path, 0644, text, strlen(text), err);
		free(text);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int cs_cluster_init(const cs_cluster_spec *spec, cs_err *err)
{
	uint8_t raw[PASS_BYTES];
	char root[ROOT_MAX], tmp[ROOT_MAX + 16], cwd[PATH_MAX];
	char *pass;
	int rc;

	if (check_cluster(spec, err) < 0 || check_dir(spec->dir, err) < 0)
		return -1;
	if (spec->dir[0] == '/')
		rc = snprintf(root, sizeof(root), "%s", spec->dir);
	else if (getcwd(cwd, sizeof(cwd)) != NULL)
		rc = snprintf(root, sizeof(root), "%s/%s", cwd, spec->dir);
	else
		return cs_fail(err, CS_EIO, "cannot tell the current folder: %s", strerror(errno));
	if (rc < 0 || (size_t)rc >= sizeof(root))
		return cs_fail(err, CS_EUSAGE, "%s: the path is too long", spec->dir);
	while (rc > 1 && root[rc - 1] == '/')
		root[--rc] = '\0';
	/* Beside DIR, so the final rename stays within one file system. */
	snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", root);
	if (mkdtemp(tmp) == NULL)
		return cs_fail(err, CS_EUSAGE,
		               "%s: cannot create a folder beside it: %s; check that "
		               "its parent exists and is writable",
		               spec->dir, strerror(errno));
	/* The passphrase lives in wiped memory and only ever goes to the files. */
	pass =
	    sodium_malloc(sodium_base64_ENCODED_LEN(PASS_BYTES, sodium_base64_VARIANT_URLSAFE) + 1);
	if (pass == NULL) {
		rc = cs_fail(err, CS_EIO, "out of memory");
	} else {
		randombytes_buf(raw, sizeof(raw));
		sodium_bin2base64(
		    pass, sodium_base64_ENCODED_LEN(PASS_BYTES, sodium_base64_VARIANT_URLSAFE), raw,
		    sizeof(raw), sodium_base64_VARIANT_URLSAFE);
		sodium_memzero(raw, sizeof(raw));
		strcat(pass, "\n");
		rc = write_keys(spec, tmp, pass, err);
		sodium_free(pass);
	}
	if (rc == 0)
		rc = write_configs(spec, tmp, root, err);
	if (rc == 0 && rename(tmp, root) != 0)
		rc = cs_fail(err, CS_EIO, "%s: cannot move the new cluster into place: %s",
		             spec->dir, strerror(errno));
	if (rc != 0)
		nftw(tmp, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}

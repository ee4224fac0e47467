/* serve_store.c — tls-serve-store: the TLS module serving a store, without
 * the agent.  The TLS tests and the nginx comparison run it.
 *
 *   tls-serve-store --data-dir DIR --passphrase-file F --listen ADDR:PORT...
 *       [--workers N] [--handshake-timeout MS] [--max-connections N]
 *       [--node-name N] [--role R] [--node-hostname H] [--site-hostname H]
 *       [--nofile N] [--import CERT[,KEY]]... [--default-first]
 *       [--replace CERT,KEY --replace CERT,KEY ... --replace-every MS]
 *
 * After the first table is served it prints one JSON line {"ready": true,
 * "listeners": [...], "startup_ms", "table_ms" (its build), "pid"}.  Then it reads commands on
 * stdin, one per line, each answered by one JSON line on stdout, every change committed to the
 * store and reloaded as the agent does after a commit: import CERT [KEY] [default] | delete ID
 * [NEW_DEFAULT_ID] | default ID | status | quit
 * --replace with --replace-every imports the next certificate of the list
 * and deletes the previous one every MS milliseconds (live replacement).
 * SIGTERM or SIGINT stops it cleanly; EOF on stdin does not. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "../common/hex.h"
#include "../common/log.h"
#include "../tls/tls.h"
#include "storekit.h"

#define MAX_LISTEN  8
#define MAX_REPLACE 64

struct serve {
	cs_store *st;
	cs_key *key;
	tls_server *srv;
	char *replace[MAX_REPLACE];
	size_t nreplace, next_replace;
	uint8_t replaced_id[32];
	bool have_replaced;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int reload(struct serve *s, double *ms, cs_err *err)
{
	double t0 = now_ms();
	cs_txn *txn;
	int rc;

	if (cs_txn_begin(s->st, false, &txn, err) < 0)
		return -1;
	rc = tls_server_reload(s->srv, txn, s->key, time(NULL), err);
	cs_txn_abort(txn);
	*ms = now_ms() - t0;
	return rc;
}

/* "CERT" or "CERT,KEY" */
static int import_spec(struct serve *s, char *spec, bool make_default, uint8_t id[32], cs_err *err)
{
	char *comma = strchr(spec, ',');
	int rc;

	if (comma != NULL)
		*comma = '\0';
	rc = storekit_import(s->st, s->key, spec, comma != NULL ? comma + 1 : NULL, make_default,
	                     id, err);
	if (comma != NULL)
		*comma = ',';
	return rc;
}

static void reply(json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);

	printf("%s\n", text != NULL ? text : "{}");
	fflush(stdout);
	free(text);
	json_decref(j);
}

static json_t *change_reply(struct serve *s, int rc, const uint8_t *id, cs_err *err)
{
	char hex[65];
	double ms = 0;

	if (rc == 0 && reload(s, &ms, err) < 0)
		rc = -1;
	if (rc < 0)
		return json_pack("{s:b, s:s}", "ok", 0, "error", err->msg);
	if (id != NULL)
		cs_hex(id, 32, hex);
	return json_pack("{s:b, s:s?, s:f}", "ok", 1, "id", id != NULL ? hex : NULL, "reload_ms",
	                 ms);
}

static json_t *command(struct serve *s, char *line, bool *quit)
{
	char *argv[4] = {0};
	int argc = 0;
	uint8_t id[32], other[32];
	cs_err err = {0};
	int rc;

	for (char *tok = strtok(line, " \t\r\n"); tok != NULL && argc < 4;
	     tok = strtok(NULL, " \t\r\n"))
		argv[argc++] = tok;
	if (argc == 0)
		return NULL;
	if (strcmp(argv[0], "status") == 0)
		return tls_server_status(s->srv);
	if (strcmp(argv[0], "quit") == 0) {
		*quit = true;
		return json_pack("{s:b}", "ok", 1);
	}
	if (strcmp(argv[0], "import") == 0 && argc >= 2) {
		bool dflt = argc >= 3 && strcmp(argv[argc - 1], "default") == 0;
		const char *keyf = argc >= 3 && !(argc == 3 && dflt) ? argv[2] : NULL;

		rc = storekit_import(s->st, s->key, argv[1], keyf, dflt, id, &err);
		return change_reply(s, rc, id, &err);
	}
	if (strcmp(argv[0], "delete") == 0 && argc >= 2 && cs_unhex(argv[1], id, 32) == 0) {
		if (argc >= 3 && cs_unhex(argv[2], other, 32) < 0)
			return json_pack("{s:b, s:s}", "ok", 0, "error", "bad id");
		rc = storekit_delete(s->st, id, argc >= 3 ? other : NULL, &err);
		return change_reply(s, rc, NULL, &err);
	}
	if (strcmp(argv[0], "default") == 0 && argc == 2 && cs_unhex(argv[1], id, 32) == 0) {
		rc = storekit_set_default(s->st, id, &err);
		return change_reply(s, rc, id, &err);
	}
	return json_pack("{s:b, s:s}", "ok", 0, "error",
	                 "commands: import CERT [KEY] [default] | delete ID [NEW_DEFAULT] | "
	                 "default ID | status | quit");
}

/* Imports the next certificate of the --replace list and deletes the one
 * before it: one commit each, as an operator's renewal would be. */
static int replace_step(struct serve *s, cs_err *err)
{
	uint8_t id[32];
	double ms;

	if (import_spec(s, s->replace[s->next_replace], false, id, err) < 0)
		return -1;
	s->next_replace = (s->next_replace + 1) % s->nreplace;
	if (reload(s, &ms, err) < 0)
		return -1;
	if (s->have_replaced && memcmp(s->replaced_id, id, 32) != 0 &&
	    (storekit_delete(s->st, s->replaced_id, NULL, err) < 0 || reload(s, &ms, err) < 0))
		return -1;
	memcpy(s->replaced_id, id, 32);
	s->have_replaced = true;
	return 0;
}

static int serve_loop(struct serve *s, int every_ms)
{
	sigset_t stop;
	struct pollfd pfd[2];
	char line[4096];
	double next = now_ms() + every_ms;
	bool quit = false, in_open = true;
	cs_err err;

	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pfd[0].fd = signalfd(-1, &stop, SFD_CLOEXEC);
	pfd[0].events = POLLIN;
	pfd[1].fd = STDIN_FILENO;
	pfd[1].events = POLLIN;
	if (pfd[0].fd < 0)
		return 1;
	while (!quit) {
		int timeout = -1;

		if (every_ms > 0 && s->nreplace > 0) {
			timeout = (int)(next - now_ms());
			if (timeout <= 0) {
				if (replace_step(s, &err) < 0)
					cs_error("tls-serve-store: replacement: %s", err.msg);
				next += every_ms;
				continue;
			}
		}
		if (poll(pfd, in_open ? 2 : 1, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents & POLLIN)
			break;
		if (in_open && (pfd[1].revents & (POLLIN | POLLHUP))) {
			if (fgets(line, sizeof(line), stdin) == NULL) {
				in_open = false;
				continue;
			}
			json_t *r = command(s, line, &quit);

			if (r != NULL)
				reply(r);
		}
	}
	close(pfd[0].fd);
	return 0;
}

static int read_pass(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");

	if (f == NULL || fgets(buf, (int)size, f) == NULL) {
		if (f != NULL)
			fclose(f);
		return -1;
	}
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: tls-serve-store --data-dir DIR --passphrase-file F "
	                "--listen ADDR:PORT... [options]; see bench/serve_store.c\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"data-dir", 1, 0, 'd'},
	    {"passphrase-file", 1, 0, 'p'},
	    {"listen", 1, 0, 'l'},
	    {"workers", 1, 0, 'w'},
	    {"handshake-timeout", 1, 0, 't'},
	    {"max-connections", 1, 0, 'm'},
	    {"node-name", 1, 0, 'n'},
	    {"role", 1, 0, 'r'},
	    {"node-hostname", 1, 0, 'H'},
	    {"site-hostname", 1, 0, 'S'},
	    {"nofile", 1, 0, 'f'},
	    {"import", 1, 0, 'i'},
	    {"default-first", 0, 0, 'D'},
	    {"replace", 1, 0, 'R'},
	    {"replace-every", 1, 0, 'E'},
	    {0, 0, 0, 0},
	};
	const char *listen[MAX_LISTEN], *data_dir = NULL, *pass_file = NULL;
	char *imports[4096];
	size_t nimports = 0;
	tls_config cfg = {.listen = listen, .node_name = "tls-serve-store", .role = "primary"};
	struct serve s = {0};
	bool default_first = false;
	int every_ms = 0, c, rc = 1;
	char pass[1024];
	uint8_t master[32], id[32];
	double t0 = now_ms(), ms;
	sigset_t stop;
	cs_err err = {0};

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			data_dir = optarg;
			break;
		case 'p':
			pass_file = optarg;
			break;
		case 'l':
			if (cfg.nlisten == MAX_LISTEN)
				usage();
			listen[cfg.nlisten++] = optarg;
			break;
		case 'w':
			cfg.workers = atoi(optarg);
			break;
		case 't':
			cfg.handshake_timeout_ms = atoi(optarg);
			break;
		case 'm':
			cfg.max_connections = atoi(optarg);
			break;
		case 'n':
			cfg.node_name = optarg;
			break;
		case 'r':
			cfg.role = optarg;
			break;
		case 'H':
			cfg.node_hostname = optarg;
			break;
		case 'S':
			cfg.site_hostname = optarg;
			break;
		case 'f': {
			rlim_t n = (rlim_t)strtoul(optarg, NULL, 10);
			struct rlimit rl = {n, n};

			if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
				fprintf(stderr, "tls-serve-store: RLIMIT_NOFILE %s: %s\n", optarg,
				        strerror(errno));
			break;
		}
		case 'i':
			if (nimports == sizeof(imports) / sizeof(imports[0]))
				usage();
			imports[nimports++] = optarg;
			break;
		case 'D':
			default_first = true;
			break;
		case 'R':
			if (s.nreplace == MAX_REPLACE)
				usage();
			s.replace[s.nreplace++] = optarg;
			break;
		case 'E':
			every_ms = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (data_dir == NULL || pass_file == NULL || cfg.nlisten == 0 || optind != argc)
		usage();
	/* Blocked before any thread starts, so only the signalfd sees them. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (read_pass(pass_file, pass, sizeof(pass)) < 0) {
		fprintf(stderr, "tls-serve-store: cannot read %s\n", pass_file);
		return 2;
	}
	if (storekit_open(data_dir, pass, &s.st, &s.key, &err) < 0)
		goto out;
	for (size_t i = 0; i < nimports; i++) {
		if (import_spec(&s, imports[i], default_first && i == 0, id, &err) < 0)
			goto out;
	}
	cs_key_subkey(s.key, 0, "tlsticks", master);
	if (tls_server_start(&s.srv, &cfg, master, &err) < 0 || reload(&s, &ms, &err) < 0)
		goto out;
	{
		json_t *st = tls_server_status(s.srv);

		reply(json_pack("{s:b, s:O, s:f, s:f, s:i}", "ready", 1, "listeners",
		                json_object_get(st, "listeners"), "startup_ms", now_ms() - t0,
		                "table_ms", ms, "pid", (int)getpid()));
		json_decref(st);
	}
	rc = serve_loop(&s, every_ms);
out:
	if (rc != 0 && err.msg[0] != '\0')
		fprintf(stderr, "tls-serve-store: %s\n", err.msg);
	tls_server_stop(s.srv);
	cs_key_free(s.key);
	cs_store_close(s.st);
	memset(pass, 0, sizeof(pass));
	return rc;
}

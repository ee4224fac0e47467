/* fuzz_control.c — libFuzzer target for control requests: the request line
 * a client writes to the control socket, parsed and validated by
 * cs_control_run (agent/control.c) and dispatched by cs_node_handle to every
 * command's argument checks and operation, against a real single-node
 * primary whose store lives in a temporary folder.
 *
 * The input is what arrives on a connection; like the agent, only the bytes
 * before the first newline are a request.  Each input starts from the same
 * store: the cluster settings and one certificate with its key (FIXTURE
 * below, made at start and valid for ten years), so requests can name an existing
 * certificate.  When an input changed the store, the store file
 * is put back from a copy before the next one; the node and its cluster key
 * stay, which keeps the passphrase's key derivation out of every input.
 * Besides the sanitizers it checks what a client relies on: every request
 * gets an answer, {"ok": true, "result"} or {"ok": false, "error": {"code",
 * "message"}} with a message, that serializes to JSON.  It runs with the
 * wiping allocators the agent installs (cs_control_init). */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "../agent/config.h"
#include "../agent/control.h"
#include "../agent/node.h"
#include "../agent/ops.h"
#include "../agent/worker.h"
#include "../common/log.h"
#include "fuzz_files.h"

/* The certificate every input starts with: made by the node itself, as
 * `certsync cert self-signed` does, so no key is kept in the tree.  Seeds
 * name it by its friendly name, which stays the same from run to run. */
static const char FIXTURE[] =
    "{\"cmd\":\"cert.self-signed\",\"args\":{\"name\":\"fixture\",\"key\":\"ec:p256\","
    "\"common_name\":\"fixture.example.com\",\"sans\":[\"www.example.com\"],"
    "\"country\":\"GB\",\"days\":3650}}";

static char dir[64];
static cs_config cfg;
static cs_node *node;
static struct event_base *loop;
static cs_control *ctl;
static cs_pos pristine; /* where the store stands after setup */

static void write_file(const char *name, const char *text, mode_t mode)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) != 0)
		fuzz_die(path, "cannot write");
}

static void remove_all(void)
{
	cs_node_set_control(node, NULL);
	cs_control_close(ctl);
	cs_node_close(node);
	event_base_free(loop);
	cs_config_free(&cfg);
	fuzz_remove_dir(dir);
}

/* Puts the store file back as setup left it. */
static void restore_store(void)
{
	char from[128], to[128];
	cs_err err;

	snprintf(from, sizeof(from), "%s/pristine.mdb", dir);
	snprintf(to, sizeof(to), "%s/data/data.mdb", dir);
	cs_store_close(node->store);
	fuzz_copy_file(from, to);
	if (cs_store_open(&node->store, cfg.data_dir, &err) != 0)
		fuzz_die("reopening the store", err.msg);
	node->committed = node->durable = pristine;
}

/* The fixture is made as the command asks for it: over the control socket,
 * answered once committed (on the worker, when the node uses one), with the
 * loop run here (at most about 20 s) until the answer line arrives. */
static bool make_fixture(const char *line)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char answer[4096];
	size_t got = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cs_err err;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", cfg.control_socket);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    write(fd, line, strlen(line)) != (ssize_t)strlen(line) || write(fd, "\n", 1) != 1 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) != 0)
		fuzz_die("making the fixture", "cannot send the request");
	for (int i = 0; i < 20000 && memchr(answer, '\n', got) == NULL; i++) {
		ssize_t n;

		event_base_loop(loop, EVLOOP_NONBLOCK);
		cs_node_flush(node, &err);
		n = read(fd, answer + got, sizeof(answer) - 1 - got);
		if (n == 0)
			break;
		if (n > 0)
			got += (size_t)n;
		else
			usleep(1000);
	}
	close(fd);
	answer[got] = '\0';
	return strstr(answer, "\"ok\":true") != NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char text[1024], path[128];
	cs_worker *worker;
	cs_txn *txn;
	cs_err err;

	(void)argc;
	(void)argv;
	cs_control_init();
	cs_log_set_level(CS_LOG_ERROR);
	fuzz_mkdtemp(dir, sizeof(dir), "fuzz-control");
	atexit(remove_all);
	write_file("passphrase", "fuzzing passphrase\n", 0600);
	snprintf(text, sizeof(text),
	         "[node]\nname = fuzz\nrole = primary\nhostname = fixture.example.com\n"
	         "data_dir = %s/data\ncontrol_socket = %s/control.sock\n"
	         "passphrase_file = %s/passphrase\n[cluster]\nsite_hostname = www.example.com\n",
	         dir, dir, dir);
	write_file("certsync.conf", text, 0600);
	snprintf(path, sizeof(path), "%s/certsync.conf", dir);
	/* A listening control socket, as the agent has: a change asks it to
	 * answer later, and is answered at once when no connection is current. */
	loop = event_base_new();
	if (loop == NULL || cs_config_load(&cfg, path, &err) != 0 ||
	    cs_node_open(&node, &cfg, &err) != 0 ||
	    cs_control_listen(&ctl, loop, cfg.control_socket, cs_node_handle, node, &err) != 0)
		fuzz_die("opening the node", err.msg);
	cs_node_set_control(node, ctl);
	if (cs_worker_start(&worker, loop, &err) != 0)
		fuzz_die("starting the import worker", err.msg);
	cs_node_set_worker(node, worker);
	if (!make_fixture(FIXTURE))
		fuzz_die("making the fixture", "refused");
	/* Inputs run without a connection, so an import they ask for is
	 * refused before it reaches the worker: it is stopped here, and its
	 * thread's OpenSSL state goes with it before the leak check. */
	cs_node_set_worker(node, NULL);
	cs_worker_stop(worker);
	if (cs_txn_begin(node->store, false, &txn, &err) != 0)
		fuzz_die("reading the store", err.msg);
	pristine = cs_txn_applied(txn);
	cs_txn_abort(txn);
	snprintf(path, sizeof(path), "%s/pristine.mdb", dir);
	snprintf(text, sizeof(text), "%s/data/data.mdb", dir);
	fuzz_copy_file(text, path);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t len = nl != NULL ? (size_t)(nl - data) : size;
	char *line = malloc(len ? len : 1), text[65536];
	json_t *answer, *error;
	cs_err err;

	if (line == NULL)
		return 0;
	memcpy(line, data, len);
	answer = cs_control_run(line, len, cs_node_handle, node);
	free(line);
	cs_node_flush(node, &err);
	/* the answer as the agent sends it (answer_and_close) */
	error = json_object_get(answer, "error");
	if (answer == NULL || !json_is_boolean(json_object_get(answer, "ok")) ||
	    (json_is_false(json_object_get(answer, "ok")) &&
	     (json_string_value(json_object_get(error, "code")) == NULL ||
	      json_string_length(json_object_get(error, "message")) == 0)) ||
	    json_dumpb(answer, text, sizeof(text), JSON_COMPACT) == 0)
		__builtin_trap();
	json_decref(answer);
	if (node->committed.seq != pristine.seq || node->committed.epoch != pristine.epoch)
		restore_store();
	return 0;
}

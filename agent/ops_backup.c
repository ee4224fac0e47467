/* ops_backup.c — the `backup` control request: a copy of the running
 * node's store written to a file (backup_file.h), made on the worker
 * thread so that the event loop keeps answering and committing while the
 * copy is taken. */
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "backup_file.h"
#include "ops.h"
#include "worker.h"

/* What the command tells the operator with every backup. */
#define SEALED_NOTE                                                                                \
	"the private keys in it stay sealed under the cluster key: the backup is useless "         \
	"without the cluster passphrase; keep the passphrase safe, apart from the backup"

struct backup_job {
	struct cs_node *node;
	cs_control_pending *pending;
	char *path;
	bk_info info;
	cs_err err;
	int rc;
	bool ran; /* the work ran: the file is written (or the error said why not) */
};

static void backup_work(void *arg, const atomic_bool *stop)
{
	struct backup_job *job = arg;

	(void)stop; /* LMDB's copy cannot be interrupted; it ends with the store's size */
	job->rc =
	    bk_write(job->node->store, job->path, job->node->cfg->name, &job->info, &job->err);
}

static void backup_done(void *arg, bool cancelled)
{
	struct backup_job *job = arg;
	json_t *result = NULL;

	/* A stop while the copy ran waits for it: that backup is answered as
	 * it went, only one that never started is cancelled. */
	if (cancelled && !job->ran)
		cs_fail(&job->err, CS_EIO,
		        "the agent stopped before the backup was written; nothing was written: "
		        "take it again");
	else if (job->rc == 0 && (result = bk_info_json(&job->info)) != NULL) {
		json_object_set_new(result, "file", json_string(job->path));
		json_object_set_new(result, "note", json_string(SEALED_NOTE));
		cs_info("backup of %llu.%llu written to %s (%llu bytes)",
		        (unsigned long long)job->info.pos.epoch,
		        (unsigned long long)job->info.pos.seq, job->path,
		        (unsigned long long)job->info.bytes);
	} else if (job->rc == 0) {
		cs_fail(&job->err, CS_EIO, "out of memory");
	}
	cs_control_answer(job->pending, result, &job->err);
	free(job->path);
	free(job);
}

json_t *op_backup(struct cs_node *node, json_t *args, cs_err *err)
{
	struct backup_job *job;
	const char *path;

	if (ops_arg_string(args, "file", true, &path, err) < 0)
		return NULL;
	if (path[0] != '/') {
		cs_fail(err, CS_EUSAGE, "control request: args.file must be an absolute path");
		return NULL;
	}
	if (node->worker == NULL) {
		cs_fail(err, CS_EIO, "the agent's worker is not running; restart the agent");
		return NULL;
	}
	if ((job = calloc(1, sizeof(*job))) == NULL || (job->path = strdup(path)) == NULL) {
		free(job);
		cs_fail(err, CS_EIO, "out of memory");
		return NULL;
	}
	job->node = node;
	if ((job->pending = cs_control_defer(node->ctl)) == NULL) {
		cs_fail(err, CS_EIO, "cannot answer the backup later; try again");
		free(job->path);
		free(job);
		return NULL;
	}
	if (cs_worker_submit(node->worker, backup_work, backup_done, job) < 0) {
		cs_fail(&job->err, CS_EIO, "out of memory");
		cs_control_answer(job->pending, NULL, &job->err);
		free(job->path);
		free(job);
	}
	return NULL;
}

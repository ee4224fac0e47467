/* env.c — the store's LMDB environment under data_dir: the lock that keeps
 * a second agent off the same data_dir, opening and closing the environment
 * and its tables, and the map (its size and how much of it is in use). */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/log.h"
#include "store_int.h"

/* Only a ceiling: the data file is sparse and grows as pages are used.  A full
 * map fails a write transaction cleanly (MDB_MAP_FULL), so err high. */
#if SIZE_MAX > 0xffffffffu
#define MAPSIZE ((size_t)4 << 30)
#else
#define MAPSIZE ((size_t)1 << 30)
#endif
#define MAXDBS 16 /* the ten tables here, and room for later local ones */

/* ---- the lock ---- */

/* Whoever may write data_dir may replace the store or plant links in it. */
static int check_dir(const char *dir, cs_err *err)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return cs_fail(err, CS_EIO, "data_dir %s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return cs_fail(err, CS_EUSAGE, "data_dir %s is not a folder; give a folder's path",
		               dir);
	if ((st.st_mode & 022) != 0)
		return cs_fail(err, CS_EUSAGE,
		               "data_dir %s can be written by group or others (mode %04o); make it "
		               "writable by its owner alone: chmod go-w %s",
		               dir, (unsigned)(st.st_mode & 07777), dir);
	return 0;
}

static int lock_dir(cs_store *st, const char *dir, cs_err *err)
{
	char path[PATH_MAX];
	char buf[32];
	ssize_t n;
	int len;
	int fd;

	if (snprintf(path, sizeof(path), "%s/lock", dir) >= (int)sizeof(path))
		return cs_fail(err, CS_EUSAGE, "data_dir %s: path too long", dir);
	/* O_NOFOLLOW: a symlink planted there must not make the agent
	 * overwrite its target with a pid. */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == ELOOP)
		return cs_fail(err, CS_EUSAGE,
		               "%s is a symbolic link; the agent writes its lock there and follows "
		               "no link: remove it",
		               path);
	if (fd < 0)
		return cs_fail(err, CS_EIO, "open %s: %s", path, strerror(errno));
	/* flock belongs to the open file description, so this also catches a
	 * second open in the same process, which LMDB itself does not allow. */
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		long pid = 0;

		if (e != EWOULDBLOCK) {
			close(fd);
			return cs_fail(err, CS_EIO, "lock %s: %s", path, strerror(e));
		}
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		close(fd);
		if (n > 0) {
			buf[n] = '\0';
			pid = strtol(buf, NULL, 10);
		}
		/* The holder writes its pid right after locking; in that window
		 * the file may still be empty. */
		if (pid > 0)
			return cs_fail(err, CS_EREFUSED,
			               "data_dir %s is in use by another certsync agent (pid %ld); "
			               "stop it first or use another data_dir",
			               dir, pid);
		return cs_fail(err, CS_EREFUSED,
		               "data_dir %s is in use by another certsync agent (pid unknown); "
		               "stop it first or use another data_dir",
		               dir);
	}
	len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
		int e = errno;

		close(fd);
		return cs_fail(err, CS_EIO, "write pid to %s: %s", path, strerror(e));
	}
	st->lockfd = fd;
	return 0;
}

/* ---- opening ---- */

/* Opens (creating) local table name into *dbi. */
static int open_local(MDB_txn *txn, const char *name, MDB_dbi *dbi, cs_err *err)
{
	int rc = mdb_dbi_open(txn, name, MDB_CREATE, dbi);

	return rc == 0 ? 0 : st_mdb_fail(err, rc, "open table ", name);
}

static int open_tables(cs_store *st, cs_err *err)
{
	MDB_txn *txn;
	MDB_val k = {sizeof("epoch") - 1, (void *)"epoch"};
	MDB_val v;
	MDB_stat es;
	uint8_t one[8];
	int rc;

	rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc != 0)
		return st_mdb_fail(err, rc, "begin transaction", "");
	for (int t = 0; t < CS_TBL_NREPL; t++) {
		if (open_local(txn, cs_table_name(t), &st->tbl[t], err) != 0)
			goto fail;
	}
	if (open_local(txn, "log", &st->log, err) != 0 ||
	    open_local(txn, "meta", &st->meta, err) != 0 ||
	    open_local(txn, "epochs", &st->epochs, err) != 0 ||
	    open_local(txn, "diverged", &st->diverged, err) != 0)
		goto fail;
	/* A new store starts at epoch 1; applied and digest start absent,
	 * which reads as position (0, 0) and the all-zero digest of no pairs. */
	st_put_be64(one, 1);
	rc = mdb_get(txn, st->meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		v.mv_size = sizeof(one);
		v.mv_data = one;
		rc = mdb_put(txn, st->meta, &k, &v, 0);
	}
	/* A store written before epochs were recorded holds entries of epoch 1
	 * only, from seq 1: its history is that one epoch. */
	k.mv_size = sizeof("applied") - 1;
	k.mv_data = (void *)"applied";
	if (rc == 0 && (rc = mdb_stat(txn, st->epochs, &es)) == 0 && es.ms_entries == 0 &&
	    (rc = mdb_get(txn, st->meta, &k, &v)) == 0) {
		k.mv_size = sizeof(one);
		k.mv_data = one;
		v.mv_size = sizeof(one);
		v.mv_data = one;
		rc = mdb_put(txn, st->epochs, &k, &v, 0);
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		st_mdb_fail(err, rc, "initialise ", "meta");
		goto fail;
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		return st_mdb_fail(err, rc, "commit new tables", "");
	return 0;
fail:
	mdb_txn_abort(txn);
	return -1;
}

void cs_store_usage(cs_store *st, size_t *used, size_t *map)
{
	MDB_envinfo info;
	MDB_stat ms;

	mdb_env_info(st->env, &info);
	mdb_env_stat(st->env, &ms);
	*used = (info.me_last_pgno + 1) * (size_t)ms.ms_psize;
	*map = info.me_mapsize;
}

int cs_store_set_map_size(cs_store *st, size_t bytes, cs_err *err)
{
	size_t used, map;
	int rc;

	cs_store_usage(st, &used, &map);
	if (bytes < used)
		return cs_fail(err, CS_EUSAGE,
		               "store_map_size %zu MiB is below the %zu MiB the store in "
		               "data_dir already uses; give a larger size",
		               bytes >> 20, (used + (1u << 20) - 1) >> 20);
	rc = mdb_env_set_mapsize(st->env, bytes);
	return rc == 0 ? 0 : st_mdb_fail(err, rc, "set the store's map size", "");
}

int cs_store_open(cs_store **out, const char *data_dir, cs_err *err)
{
	cs_store *st;
	int dead;
	int rc;

	*out = NULL;
	if (sodium_init() < 0)
		return cs_fail(err, CS_EIO, "libsodium failed to initialise");
	if (mkdir(data_dir, 0700) != 0 && errno != EEXIST)
		return cs_fail(err, CS_EIO, "create data_dir %s: %s", data_dir, strerror(errno));
	if (check_dir(data_dir, err) < 0)
		return -1;
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	st->lockfd = -1;
	/* The lock comes first: LMDB must not be opened twice in one process. */
	if (lock_dir(st, data_dir, err) != 0)
		goto fail;
	rc = mdb_env_create(&st->env);
	if (rc != 0) {
		st->env = NULL;
		st_mdb_fail(err, rc, "create LMDB environment", "");
		goto fail;
	}
	rc = mdb_env_set_mapsize(st->env, MAPSIZE);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(st->env, MAXDBS);
	if (rc != 0) {
		st_mdb_fail(err, rc, "configure LMDB environment", "");
		goto fail;
	}
	/* No MDB_NOSYNC: a commit is on disk when it returns. */
	rc = mdb_env_open(st->env, data_dir, 0, 0600);
	if (rc != 0) {
		st_mdb_fail(err, rc, "open LMDB environment in ", data_dir);
		goto fail;
	}
	/* Reader slots of a crashed agent would pin old pages forever. */
	rc = mdb_reader_check(st->env, &dead);
	if (rc != 0) {
		st_mdb_fail(err, rc, "clear stale readers in ", data_dir);
		goto fail;
	}
	st->maxkey = (size_t)mdb_env_get_maxkeysize(st->env);
	if (open_tables(st, err) != 0) {
		cs_err_prefix(err, "data_dir %s: ", data_dir);
		goto fail;
	}
	st_digest_key(st);
	*out = st;
	return 0;
fail:
	cs_store_close(st);
	return -1;
}

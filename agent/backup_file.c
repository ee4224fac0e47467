/* backup_file.c — writing and restoring the backup file (backup_file.h).
 *
 * LMDB makes the copy (mdb_env_copyfd2 with MDB_CP_COMPACT, in its own read
 * transaction), so the header is read back from the copy itself: position,
 * digest and cluster id then describe exactly the bytes that follow.  A
 * restore writes the copy into a folder beside data_dir and renames it into
 * place only once every check passed. */
#include "backup_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "../common/hex.h"
#include "../records/records.h"
#include "passphrases.h"

#define FORMAT     "certsync-backup"
#define VERSION    1
#define MAX_HEADER 4096
#define DATA_FILE  "data.mdb"
#define COPY_CHUNK (1u << 16)

json_t *bk_info_json(const bk_info *i)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:I}", "cluster", i->cluster, "node",
	                 i->node, "created", i->created, "epoch", (json_int_t)i->pos.epoch, "seq",
	                 (json_int_t)i->pos.seq, "digest", i->digest, "bytes",
	                 (json_int_t)i->bytes);
}

/* ---- files and folders ---- */

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Removes a store folder this file made (the data file and the two locks). */
static void remove_store_dir(const char *dir)
{
	static const char *const files[] = {DATA_FILE, "lock.mdb", "lock"};
	char p[PATH_MAX];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (snprintf(p, sizeof(p), "%s/%s", dir, files[i]) < (int)sizeof(p))
			unlink(p);
	rmdir(dir);
}

/* The folder that holds path, opened to make a rename in it durable. */
static void sync_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int fd;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		return;
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Copies len bytes from in to out (out < 0: only reads), hashing them; a
 * short read is a truncated file (1). */
static int copy_hashed(int in, int out, uint64_t len, uint8_t hash[32], cs_err *err)
{
	crypto_generichash_state h;
	uint8_t *buf = malloc(COPY_CHUNK);

	if (buf == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	crypto_generichash_init(&h, NULL, 0, 32);
	while (len > 0) {
		size_t want = len < COPY_CHUNK ? (size_t)len : COPY_CHUNK;
		ssize_t n = read(in, buf, want);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return cs_fail(err, CS_EIO, "read: %s", strerror(errno));
		}
		if (n == 0) {
			free(buf);
			return 1;
		}
		crypto_generichash_update(&h, buf, (size_t)n);
		if (out >= 0 && write_all(out, buf, (size_t)n) < 0) {
			int e = errno;

			free(buf);
			return cs_fail(err, CS_EIO, "write: %s", strerror(e));
		}
		len -= (uint64_t)n;
	}
	free(buf);
	crypto_generichash_final(&h, hash, 32);
	return 0;
}

/* ---- what a store copy holds ---- */

/* Fills info's cluster, position and digest from the store in dir, and
 * checks its digest against a recomputation; *kdf (may be NULL) receives
 * its cluster settings. */
static int read_store(const char *dir, bk_info *info, Certsync__KdfParams **kdf, cs_err *err)
{
	uint8_t digest[CS_DIGEST_LEN], again[CS_DIGEST_LEN];
	Certsync__KdfParams *k = NULL;
	cs_store *st;
	cs_txn *txn;
	int rc;

	if (cs_store_open(&st, dir, err) < 0)
		return -1;
	if (cs_txn_begin(st, false, &txn, err) < 0) {
		cs_store_close(st);
		return -1;
	}
	info->pos = cs_txn_applied(txn);
	cs_txn_digest(txn, digest);
	rc = cs_txn_digest_recompute(txn, again, err);
	if (rc == 0 && sodium_memcmp(digest, again, CS_DIGEST_LEN) != 0)
		rc = cs_fail(err, CS_EINPUT, "its store digest does not match its pairs");
	if (rc == 0 && (rc = rec_kdf_get(txn, &k, err)) == 1)
		rc = cs_fail(err, CS_EREFUSED,
		             "the store holds no cluster settings yet (the node has not joined a "
		             "cluster)");
	if (rc == 0 && (k->cluster_id.len == 0 || k->cluster_id.len > 16))
		rc = cs_fail(err, CS_EINPUT, "its cluster settings are damaged");
	cs_txn_abort(txn);
	cs_store_close(st);
	if (rc < 0) {
		if (k != NULL)
			certsync__kdf_params__free_unpacked(k, NULL);
		return -1;
	}
	cs_hex(digest, CS_DIGEST_LEN, info->digest);
	cs_hex(k->cluster_id.data, k->cluster_id.len, info->cluster);
	if (kdf != NULL)
		*kdf = k;
	else
		certsync__kdf_params__free_unpacked(k, NULL);
	return 0;
}

/* ---- backup ---- */

static int write_file(const char *path, const char *copy, const bk_info *info, cs_err *err)
{
	char tmp[PATH_MAX] = "", header[MAX_HEADER];
	uint8_t hash[32];
	char check[65];
	json_t *j = bk_info_json(info);
	size_t hlen = 0;
	int in = -1, out = -1, rc = -1;

	/* In a buffer of our own: the agent's jansson wipes what it frees. */
	if (j == NULL || json_object_set_new(j, "format", json_string(FORMAT)) != 0 ||
	    json_object_set_new(j, "version", json_integer(VERSION)) != 0 ||
	    json_object_set_new(j, "blake2b", json_string(info->checksum)) != 0 ||
	    (hlen = json_dumpb(j, header, sizeof(header) - 1, JSON_COMPACT | JSON_SORT_KEYS)) ==
	        0 ||
	    hlen >= sizeof(header) - 1) {
		cs_fail(err, CS_EIO, "cannot write the backup's header");
		goto out;
	}
	header[hlen++] = '\n';
	snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
	if ((in = open(copy, O_RDONLY | O_CLOEXEC)) < 0 || (out = mkstemp(tmp)) < 0) {
		cs_fail(err, CS_EIO, "%s: %s", in < 0 ? copy : path, strerror(errno));
		goto out;
	}
	if (write_all(out, header, hlen) < 0) {
		cs_fail(err, CS_EIO, "%s: write: %s", path, strerror(errno));
		goto out;
	}
	if ((rc = copy_hashed(in, out, info->bytes, hash, err)) != 0 ||
	    (cs_hex(hash, sizeof(hash), check), strcmp(check, info->checksum) != 0)) {
		if (rc >= 0)
			cs_fail(err, CS_EIO, "the store copy changed while it was written");
		rc = -1;
		goto out;
	}
	if (fsync(out) != 0 || close(out) != 0) {
		out = -1;
		rc = cs_fail(err, CS_EIO, "%s: %s", path, strerror(errno));
		goto out;
	}
	out = -1;
	if (rename(tmp, path) != 0) {
		rc = cs_fail(err, CS_EIO, "%s: %s", path, strerror(errno));
		goto out;
	}
	tmp[0] = '\0';
	sync_parent(path);
	rc = 0;
out:
	if (out >= 0)
		close(out);
	if (in >= 0)
		close(in);
	if (rc < 0 && tmp[0] != '\0')
		unlink(tmp);
	json_decref(j);
	return rc;
}

int bk_write(cs_store *st, const char *path, const char *node, bk_info *info, cs_err *err)
{
	char dir[PATH_MAX], copy[PATH_MAX + 16];
	uint8_t hash[32];
	struct stat sb;
	time_t now = time(NULL);
	struct tm tm;
	int fd, rc;

	memset(info, 0, sizeof(*info));
	if (path[0] != '/')
		return cs_fail(err, CS_EUSAGE, "backup: %s is not an absolute path", path);
	/* The copy goes into a folder of its own beside the file, so that it
	 * can be opened as a store and read back. */
	if ((size_t)snprintf(dir, sizeof(dir), "%s.tmpXXXXXX", path) >= sizeof(dir) - 16)
		return cs_fail(err, CS_EUSAGE, "-o %s: the path is too long", path);
	if (mkdtemp(dir) == NULL)
		return cs_fail(err, CS_EINPUT,
		               "-o %s: cannot create a file there: %s; give a path in a folder "
		               "the agent can write",
		               path, strerror(errno));
	snprintf(copy, sizeof(copy), "%s/" DATA_FILE, dir);
	fd = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = cs_fail(err, CS_EIO, "%s: %s", copy, strerror(errno));
		goto out;
	}
	rc = cs_store_copy(st, fd, err);
	close(fd);
	if (rc < 0 || (rc = read_store(dir, info, NULL, err)) < 0)
		goto out;
	if (stat(copy, &sb) != 0 || (fd = open(copy, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = cs_fail(err, CS_EIO, "%s: %s", copy, strerror(errno));
		goto out;
	}
	info->bytes = (uint64_t)sb.st_size;
	rc = copy_hashed(fd, -1, info->bytes, hash, err);
	close(fd);
	if (rc != 0) {
		rc = rc > 0 ? cs_fail(err, CS_EIO, "the store copy shrank while it was read") : -1;
		goto out;
	}
	cs_hex(hash, sizeof(hash), info->checksum);
	snprintf(info->node, sizeof(info->node), "%s", node);
	gmtime_r(&now, &tm);
	strftime(info->created, sizeof(info->created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	rc = write_file(path, copy, info, err);
out:
	remove_store_dir(dir);
	return rc < 0 ? cs_err_prefix(err, "backup: ") : 0;
}

/* ---- restore ---- */

static int str_field(json_t *h, const char *key, char *out, size_t len, size_t exact)
{
	const char *s = json_string_value(json_object_get(h, key));

	if (s == NULL || strlen(s) >= len || (exact && strlen(s) != exact))
		return -1;
	snprintf(out, len, "%s", s);
	return 0;
}

static int int_field(json_t *h, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(h, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* Reads the header line of fd into info; *offset receives where the store
 * copy starts. */
static int read_header(int fd, const char *file, bk_info *info, off_t *offset, cs_err *err)
{
	char buf[MAX_HEADER];
	ssize_t n = pread(fd, buf, sizeof(buf), 0);
	char *nl = n > 0 ? memchr(buf, '\n', (size_t)n) : NULL;
	json_t *h = nl ? json_loadb(buf, (size_t)(nl - buf), JSON_REJECT_DUPLICATES, NULL) : NULL;
	const char *format = json_string_value(json_object_get(h, "format"));
	uint64_t version = 0;
	int bad;

	bad = h == NULL || format == NULL || strcmp(format, FORMAT) != 0 ||
	      int_field(h, "version", &version) < 0;
	if (!bad && version != VERSION) {
		json_decref(h);
		return cs_fail(
		    err, CS_EINPUT,
		    "%s is a backup of format version %llu, which this certsync does not "
		    "read; restore it with the certsync that wrote it",
		    file, (unsigned long long)version);
	}
	bad = bad || str_field(h, "cluster", info->cluster, sizeof(info->cluster), 0) < 0 ||
	      str_field(h, "node", info->node, sizeof(info->node), 0) < 0 ||
	      str_field(h, "created", info->created, sizeof(info->created), 0) < 0 ||
	      str_field(h, "digest", info->digest, sizeof(info->digest), 64) < 0 ||
	      str_field(h, "blake2b", info->checksum, sizeof(info->checksum), 64) < 0 ||
	      int_field(h, "epoch", &info->pos.epoch) < 0 ||
	      int_field(h, "seq", &info->pos.seq) < 0 || int_field(h, "bytes", &info->bytes) < 0;
	json_decref(h);
	if (bad)
		return cs_fail(err, CS_EINPUT,
		               "%s is not a certsync backup (no valid header); give a file that "
		               "`certsync backup` wrote",
		               file);
	*offset = nl - buf + 1;
	return 0;
}

/* data_dir must be missing, or an empty folder no agent holds. */
static int check_target(const char *dir, cs_err *err)
{
	char lock[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(dir);
	int fd;

	if (d == NULL && errno == ENOENT)
		return 0;
	if (d == NULL)
		return cs_fail(err, CS_EINPUT, "--data-dir %s: %s; give a folder", dir,
		               strerror(errno));
	snprintf(lock, sizeof(lock), "%s/lock", dir);
	fd = open(lock, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
		close(fd);
		closedir(d);
		return cs_fail(err, CS_EREFUSED,
		               "--data-dir %s is in use by a running certsync agent; restore works "
		               "only on a stopped node: stop the agent first (systemctl stop "
		               "certsync), move the folder aside and restore into an empty one",
		               dir);
	}
	if (fd >= 0)
		close(fd);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		cs_fail(err, CS_EREFUSED,
		        "--data-dir %s is not empty (it holds %s); restore writes only into an "
		        "empty data_dir of a stopped node: stop the agent, move the folder aside "
		        "(mv %s %s.old) and run restore again",
		        dir, e->d_name, dir, dir);
		closedir(d);
		return -1;
	}
	closedir(d);
	return 0;
}

/* One of the node's passphrases must give the key-check value of the
 * backup's cluster (passphrase_file, or next_passphrase_file during a
 * rekey). */
static int check_cluster(const Certsync__KdfParams *kdf, const char *file, const bk_info *info,
                         const cs_config *cfg, cs_err *err)
{
	const char *which;
	cs_key *key;
	int rc = cs_pass_find(cfg, kdf, &key, &which, err);

	if (rc == 0)
		cs_key_free(key);
	if (rc == 1)
		return cs_fail(err, CS_EREFUSED,
		               "%s is a backup of another cluster (id %s): cluster passphrase does "
		               "not match: the passphrase in %s%s%s%s does not open it; restore a "
		               "backup of this node's cluster, or give the node the configuration "
		               "and passphrase of the backup's cluster",
		               file, info->cluster, cfg->passphrase_file,
		               cfg->next_passphrase_file ? " (nor the one in " : "",
		               cfg->next_passphrase_file ? cfg->next_passphrase_file : "",
		               cfg->next_passphrase_file ? ")" : "");
	return rc < 0 ? -1 : 0;
}

/* The restored store leads nothing until an operator promotes it. */
static int mark_following(const char *dir, cs_err *err)
{
	cs_store *st;
	cs_txn *txn;
	int rc;

	if (cs_store_open(&st, dir, err) < 0)
		return -1;
	rc = cs_txn_begin(st, true, &txn, err);
	if (rc == 0 && cs_txn_follow(txn, err) < 0) {
		cs_txn_abort(txn);
		rc = -1;
	} else if (rc == 0) {
		rc = cs_txn_commit(txn, NULL, NULL, err);
	}
	cs_store_close(st);
	return rc;
}

int bk_restore(const char *file, const char *data_dir, const cs_config *cfg, bk_info *info,
               cs_err *err)
{
	char dir[PATH_MAX], tmp[PATH_MAX + 32], copy[PATH_MAX + 48], lock[PATH_MAX + 48];
	Certsync__KdfParams *kdf = NULL;
	bk_info got;
	uint8_t hash[32];
	char hex[65];
	off_t offset = 0;
	size_t n;
	int in, out, rc;

	memset(info, 0, sizeof(*info));
	snprintf(dir, sizeof(dir), "%s", data_dir);
	for (n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
		dir[n - 1] = '\0';
	if ((in = open(file, O_RDONLY | O_CLOEXEC)) < 0)
		return cs_fail(err, CS_EINPUT, "%s: cannot read it: %s; give a readable file", file,
		               strerror(errno));
	if (read_header(in, file, info, &offset, err) < 0 || check_target(dir, err) < 0) {
		close(in);
		return -1;
	}
	/* Beside data_dir, so the final rename stays on one file system. */
	snprintf(tmp, sizeof(tmp), "%s.restore-XXXXXX", dir);
	if (mkdtemp(tmp) == NULL) {
		close(in);
		return cs_fail(err, CS_EINPUT,
		               "--data-dir %s: cannot create a folder beside it: %s", dir,
		               strerror(errno));
	}
	snprintf(copy, sizeof(copy), "%s/" DATA_FILE, tmp);
	out = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0 || lseek(in, offset, SEEK_SET) != offset) {
		rc = cs_fail(err, CS_EIO, "%s: %s", copy, strerror(errno));
	} else {
		rc = copy_hashed(in, out, info->bytes, hash, err);
		cs_hex(hash, sizeof(hash), hex);
		/* Exactly the bytes the header announces, and their checksum. */
		if (rc > 0 || (rc == 0 && (read(in, hash, 1) != 0 || strcmp(hex, info->checksum))))
			rc = cs_fail(err, CS_EINPUT,
			             "%s is truncated or damaged: its content does not match the "
			             "digest in its header; nothing was restored: use another copy "
			             "of the backup",
			             file);
	}
	if (out >= 0 && (fsync(out) != 0 || close(out) != 0) && rc == 0)
		rc = cs_fail(err, CS_EIO, "%s: %s", copy, strerror(errno));
	close(in);
	if (rc == 0 && read_store(tmp, &got, &kdf, err) < 0)
		rc = cs_err_prefix(err, "%s: ", file);
	if (rc == 0 && (strcmp(got.cluster, info->cluster) != 0 ||
	                strcmp(got.digest, info->digest) != 0 || !cs_pos_same(got.pos, info->pos)))
		rc = cs_fail(err, CS_EINPUT,
		             "%s is damaged: its store does not match its header (cluster, "
		             "position or digest); nothing was restored: use another copy",
		             file);
	if (rc == 0)
		rc = check_cluster(kdf, file, info, cfg, err);
	if (kdf != NULL)
		certsync__kdf_params__free_unpacked(kdf, NULL);
	if (rc == 0)
		rc = mark_following(tmp, err);
	/* The agent makes its own locks; none of these may travel. */
	snprintf(lock, sizeof(lock), "%s/lock", tmp);
	unlink(lock);
	snprintf(lock, sizeof(lock), "%s/lock.mdb", tmp);
	unlink(lock);
	if (rc == 0 && rename(tmp, dir) != 0)
		rc = cs_fail(err, CS_EIO, "--data-dir %s: %s", dir, strerror(errno));
	if (rc < 0) {
		remove_store_dir(tmp);
		return -1;
	}
	sync_parent(dir);
	return 0;
}

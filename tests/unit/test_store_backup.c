/* test_store_backup.c — what backup and restore take from the store: a
 * compacted copy that opens as a store at the same position and digest, and
 * a store marked as following, which then refuses changes of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../store/store.h"

struct fix {
	char dir[2][64]; /* the store, and the folder its copy goes to */
	cs_store *st;
};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	cs_err err;

	assert_non_null(f);
	for (int i = 0; i < 2; i++) {
		snprintf(f->dir[i], sizeof(f->dir[i]), "/tmp/cs-backup-XXXXXX");
		assert_non_null(mkdtemp(f->dir[i]));
	}
	if (cs_store_open(&f->st, f->dir[0], &err) != 0)
		fail_msg("open: %s", err.msg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	cs_store_close(f->st);
	for (int i = 0; i < 2; i++)
		nftw(f->dir[i], rm_one, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Puts key=val in the certs table as one change. */
static void change(cs_store *st, const char *key, const char *val)
{
	cs_txn *txn;
	cs_err err;

	assert_int_equal(cs_txn_begin(st, true, &txn, &err), 0);
	assert_int_equal(cs_txn_put(txn, CS_TBL_CERTS, key, strlen(key), val, strlen(val), &err),
	                 0);
	if (cs_txn_commit(txn, "test", NULL, &err) != 0)
		fail_msg("commit: %s", err.msg);
}

static void position(cs_store *st, cs_pos *pos, uint8_t digest[CS_DIGEST_LEN])
{
	cs_txn *txn;
	cs_err err;

	assert_int_equal(cs_txn_begin(st, false, &txn, &err), 0);
	*pos = cs_txn_applied(txn);
	cs_txn_digest(txn, digest);
	cs_txn_abort(txn);
}

static void test_copy_opens_at_the_same_position(void **state)
{
	struct fix *f = *state;
	uint8_t d0[CS_DIGEST_LEN], d1[CS_DIGEST_LEN], again[CS_DIGEST_LEN];
	char path[128];
	cs_pos p0, p1;
	cs_store *copy;
	cs_txn *txn;
	cs_err err;
	int fd;

	for (int i = 0; i < 50; i++) {
		char k[16];

		snprintf(k, sizeof(k), "key%02d", i);
		change(f->st, k, "a value of some length, to fill a few pages");
	}
	position(f->st, &p0, d0);
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir[1]);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	if (cs_store_copy(f->st, fd, &err) != 0)
		fail_msg("copy: %s", err.msg);
	close(fd);
	change(f->st, "after", "not in the copy");

	if (cs_store_open(&copy, f->dir[1], &err) != 0)
		fail_msg("open the copy: %s", err.msg);
	position(copy, &p1, d1);
	assert_true(cs_pos_same(p0, p1));
	assert_memory_equal(d0, d1, CS_DIGEST_LEN);
	assert_int_equal(cs_txn_begin(copy, false, &txn, &err), 0);
	assert_int_equal(cs_txn_digest_recompute(txn, again, &err), 0);
	assert_memory_equal(d1, again, CS_DIGEST_LEN);
	assert_int_equal(cs_txn_count(txn, CS_TBL_CERTS), 50);
	cs_txn_abort(txn);
	cs_store_close(copy);
}

static void test_a_following_store_refuses_changes(void **state)
{
	struct fix *f = *state;
	uint64_t led;
	cs_txn *txn;
	cs_err err;

	/* a primary's store: it leads epoch 1 and writes */
	assert_int_equal(cs_txn_begin(f->st, true, &txn, &err), 0);
	assert_int_equal(cs_txn_set_epoch(txn, 1, true, &err), 0);
	assert_int_equal(cs_txn_commit(txn, NULL, NULL, &err), 0);
	change(f->st, "one", "1");

	assert_int_equal(cs_txn_begin(f->st, true, &txn, &err), 0);
	assert_int_equal(cs_txn_follow(txn, &err), 0);
	assert_int_equal(cs_txn_commit(txn, NULL, NULL, &err), 0);

	assert_int_equal(cs_txn_begin(f->st, true, &txn, &err), 0);
	assert_int_equal(cs_txn_led(txn, &led), 0);
	assert_int_equal(led, 0);
	assert_int_equal(cs_txn_put(txn, CS_TBL_CERTS, "two", 3, "2", 1, &err), 0);
	assert_int_not_equal(cs_txn_commit(txn, "refused", NULL, &err), 0);
	assert_int_equal(err.code, CS_EREFUSED);

	/* a read transaction cannot be marked */
	assert_int_equal(cs_txn_begin(f->st, false, &txn, &err), 0);
	assert_int_not_equal(cs_txn_follow(txn, &err), 0);
	cs_txn_abort(txn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_copy_opens_at_the_same_position, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_following_store_refuses_changes, setup,
	                                    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* testlib.h — what the unit tests share: a temporary folder made under
 * $TMPDIR (or /tmp) and removed with everything in it, and, for the tests
 * that include store/store.h first, a store in such a folder as a cmocka
 * fixture and transactions that fail the test when the store refuses.
 * Header-only, as each test executable links only the module it tests.
 * Include it after cmocka.h. */
#ifndef CS_TESTLIB_H
#define CS_TESTLIB_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static inline int testlib_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Makes a new folder named after prefix ("cs-store") into dir. */
static inline void test_dir_make(char *dir, size_t len, const char *prefix)
{
	snprintf(dir, len, "%s/%s-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", prefix);
	assert_non_null(mkdtemp(dir));
}

/* Removes dir and everything below it. */
static inline void test_dir_remove(const char *dir)
{
	nftw(dir, testlib_rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

#ifdef CS_STORE_H
/* The state of test_store_setup: a store open in a folder of its own. */
struct test_store {
	char dir[64];
	cs_store *st;
};

static inline int test_store_setup(void **state)
{
	struct test_store *f = calloc(1, sizeof(*f));
	cs_err err;

	assert_non_null(f);
	test_dir_make(f->dir, sizeof(f->dir), "cs-store");
	if (cs_store_open(&f->st, f->dir, &err) != 0)
		fail_msg("open: %s", err.msg);
	*state = f;
	return 0;
}

static inline int test_store_teardown(void **state)
{
	struct test_store *f = *state;

	cs_store_close(f->st);
	test_dir_remove(f->dir);
	free(f);
	return 0;
}

static inline cs_txn *test_begin(cs_store *st, bool write)
{
	cs_txn *txn;
	cs_err err;

	if (cs_txn_begin(st, write, &txn, &err) != 0)
		fail_msg("begin: %s", err.msg);
	return txn;
}
#endif

#endif

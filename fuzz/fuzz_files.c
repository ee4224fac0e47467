/* fuzz_files.c — temporary folders and files of the fuzz targets
 * (fuzz_files.h). */
#include "fuzz_files.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void fuzz_die(const char *what, const char *detail)
{
	fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, detail);
	exit(1);
}

void fuzz_mkdtemp(char *dir, size_t len, const char *name)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	snprintf(dir, len, "%s/%s-XXXXXX", base, name);
	if (mkdtemp(dir) == NULL)
		fuzz_die(dir, strerror(errno));
}

void fuzz_copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ssize_t n = 0;

	if (in < 0 || out < 0)
		fuzz_die(in < 0 ? from : to, strerror(errno));
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			fuzz_die(to, "cannot write");
	close(in);
	if (n < 0 || close(out) != 0)
		fuzz_die(to, "cannot copy");
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void fuzz_remove_dir(const char *dir)
{
	nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

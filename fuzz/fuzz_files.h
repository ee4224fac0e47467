/* fuzz_files.h — the temporary folders and files the fuzz targets that
 * need a store keep, and how they stop on a setup failure. */
#ifndef CS_FUZZ_FILES_H
#define CS_FUZZ_FILES_H

#include <stddef.h>

/* Prints "PROGRAM: what: detail" and exits 1: a setup failure, not a
 * finding. */
_Noreturn void fuzz_die(const char *what, const char *detail);

/* A new folder NAME-XXXXXX on tmpfs (/dev/shm) when there is one, where
 * commits cost no disk sync, else under /tmp; into dir (len bytes). */
void fuzz_mkdtemp(char *dir, size_t len, const char *name);

/* Copies the file from onto to, replacing it. */
void fuzz_copy_file(const char *from, const char *to);

/* Removes dir and everything in it. */
void fuzz_remove_dir(const char *dir);

#endif

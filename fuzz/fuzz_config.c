/* fuzz_config.c — libFuzzer target for the configuration parser
 * (cs_config_load in agent/config.c: inih and every check of a key's
 * value, a section, a peer).
 *
 * The input is the whole file.  It goes through the real entry point, which
 * reads a path, by way of a memory file (memfd) opened as /proc/self/fd/N,
 * so no disk is touched.  Besides the sanitizers it checks the contract of
 * config.h: a success has every required key, a failure is a usage error
 * with a message and leaves nothing to free. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../agent/config.h"

static int memfd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	memfd = memfd_create("certsync.conf", MFD_CLOEXEC);
	if (memfd < 0) {
		perror("memfd_create");
		exit(1);
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cs_config cfg;
	cs_err err = {0};

	if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
		__builtin_trap();
	if (cs_config_load(&cfg, path, &err) == 0) {
		if (cfg.name == NULL || cfg.hostname == NULL || cfg.data_dir == NULL ||
		    cfg.control_socket == NULL || cfg.passphrase_file == NULL ||
		    cfg.site_hostname == NULL)
			__builtin_trap();
		cs_config_hosts(&cfg, (const char *[16]){0}, 16);
		cs_config_primary(&cfg);
		cs_config_free(&cfg);
	} else if (err.code != CS_EUSAGE || err.msg[0] == '\0' || cfg.name != NULL ||
	           cfg.peers != NULL) {
		__builtin_trap();
	}
	return 0;
}

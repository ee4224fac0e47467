/* cli.h — what the command's own files (cli_*.c) share with the dispatcher
 * in cli.c: the global flags and the edge where errors are printed. */
#ifndef CS_CLI_H
#define CS_CLI_H

#include <stdbool.h>

#include "../common/err.h"

/* Whether --json was given. */
bool cli_json(void);
/* The configuration the command reads: -c FILE, $CERTSYNC_CONFIG or the
 * default path. */
const char *cli_config(void);
/* The control socket: -S SOCKET, or the one the configuration names
 * (malloc'd into *out). */
int cli_socket(char **out, cs_err *err);
/* Prints err (as JSON too with --json) and returns its exit status. */
int cli_fail(cs_err *err);

#endif

/* cli_rekey.c — the flags of `certsync cluster rekey`.  The agent reads the
 * new passphrase's file itself, with the checks of passphrase_file, so the
 * passphrase never travels on the control socket: the request names the
 * file by its absolute path. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_rekey(const struct cli_command *cmd, int argc, char **argv, json_t *args, cs_err *err)
{
	static const struct option opts[] = {
	    {"new-passphrase-file", required_argument, NULL, 'p'},
	    {NULL, 0, NULL, 0},
	};
	char *path;
	int c;

	while ((c = cli_next_flag(cmd, argc, argv, "", opts, err)) > 0) {
		if ((path = realpath(optarg, NULL)) == NULL)
			return cs_fail(
			    err, CS_EINPUT,
			    "--new-passphrase-file %s: cannot read it: %s; give a readable "
			    "file",
			    optarg, strerror(errno));
		json_object_set_new(args, "new_passphrase_file", json_string(path));
		free(path);
	}
	if (c == 0)
		return -1;
	if (optind != argc || json_object_get(args, "new_passphrase_file") == NULL)
		return cli_usage_error(cmd, err, "give --new-passphrase-file F and nothing else");
	return 0;
}

/* cli_backup.h — `certsync backup` (through the agent) and `certsync
 * restore` (no agent: the node is stopped), the command's side. */
#ifndef CS_CLI_BACKUP_H
#define CS_CLI_BACKUP_H

#define CLI_BACKUP_USAGE "backup -o FILE"
#define CLI_BACKUP_HELP                                                                            \
	"Writes a consistent, compacted copy of the running node's store to FILE (0600), "         \
	"with the cluster, position and digest in its header; keys stay sealed, so it is "         \
	"useless without the cluster passphrase."
#define CLI_RESTORE_USAGE "restore FILE --data-dir DIR"
#define CLI_RESTORE_HELP                                                                           \
	"Restores a backup into the empty data_dir of a stopped node, after checking its "         \
	"digest and that this node's passphrase opens its cluster; the node starts as a "          \
	"follower and catches up.  Needs no agent."

struct command;
int cli_backup(const struct command *cmd, int argc, char **argv);
int cli_restore(const struct command *cmd, int argc, char **argv);

#endif

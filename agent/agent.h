/* agent.h — the two faces of the certsync program: `certsync agent`, the node
 * agent, and every other subcommand, the operator command that talks to it. */
#ifndef CS_AGENT_H
#define CS_AGENT_H

/* `certsync agent -c FILE`: runs until SIGTERM or SIGINT; returns the exit
 * status (0 after a clean stop, 2 for a configuration error, 1 otherwise). */
int cs_agent_main(int argc, char **argv);

/* `certsync [-c FILE | -S SOCKET] [--json] COMMAND ...`: returns the exit
 * status (0 ok, 1 check failed or refused, 2 usage or configuration). */
int cs_cli_main(int argc, char **argv);

#endif

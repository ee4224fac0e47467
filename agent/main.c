/* main.c — the certsync program: the agent or an operator command. */
#include <string.h>

#include "../pki/pki.h"
#include "agent.h"
#include "control.h"

int main(int argc, char **argv)
{
	/* Before jansson or libevent allocate anything: every freed block is
	 * wiped, since requests and answers may carry secrets. */
	cs_control_init();
	pki_memory_init(); /* nothing of OpenSSL ran yet: it cannot fail */
	if (argc >= 2 && strcmp(argv[1], "agent") == 0)
		return cs_agent_main(argc - 1, argv + 1);
	return cs_cli_main(argc, argv);
}

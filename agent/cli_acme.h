/* cli_acme.h — the `certsync acme` commands of the operator command
 * (cli_acme.c), which cli.c hands the words after `acme`. */
#ifndef CS_CLI_ACME_H
#define CS_CLI_ACME_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

/* argv[0] is "acme"; socket the agent's control socket; json: --json was
 * given; wait: --wait's value or NULL.  Returns the exit status. */
int cli_acme_main(int argc, char **argv, const char *socket, bool json, const char *wait);
/* The lines `certsync acme` adds to `certsync --help`. */
void cli_acme_usage(FILE *out);
/* The acme part of `status` for a person (nothing without [acme]). */
void cli_acme_print_status(FILE *out, json_t *acme);

#endif

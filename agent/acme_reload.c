/* acme_reload.c — SIGHUP's part for [acme] (reload.c).  The new section
 * loaded with every check it gets at start (config_acme.c) before it comes
 * here; it becomes the loop's and is published to the threads (live.h).
 * The runner takes it at the start of its next pass, so an order in flight
 * finishes with the section it started with; the runner starts now when
 * the agent started without [acme]. */
#include "acme_agent.h"

#include "live.h"
#include "node.h"
#include "ops.h"

int acme_reload(struct cs_node *node, const cs_acme_config *a, struct event_base *base, cs_err *err)
{
	cs_acme_config copy;

	if (cs_config_acme_copy(&copy, a, err) < 0)
		return -1;
	if (cs_live_set_acme(node->live, a, err) < 0) {
		cs_config_acme_free(&copy);
		return -1;
	}
	cs_config_acme_free(&node->cfg->acme);
	node->cfg->acme = copy;
	if (node->acme == NULL && a->directory != NULL &&
	    acme_runner_start(&node->acme, node, base, err) < 0)
		return -1;
	acme_runner_wake(node->acme);
	return 0;
}

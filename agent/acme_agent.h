/* acme_agent.h — the agent's side of ACME: the records of the replicated
 * acme table (acme_records.c), the `certsync acme` commands (ops_acme.c),
 * the runner that obtains and renews certificates on the primary
 * (acme_runner.c, acme_obtain.c, acme_install.c), and what every node answers for a
 * challenge (acme_answer.c).  The RFC 8555 client itself is acme/. */
#ifndef CS_ACME_AGENT_H
#define CS_ACME_AGENT_H

#include <stdbool.h>
#include <time.h>

#include <jansson.h>

#include "../acme/acme.h"
#include "../records/records.h"
#include "config.h"

struct cs_node;
struct event_base;

/* ---- records (the acme table: records/records.h) -------------------------- */

/* The managed certificate as `acme list --json` shows it (README). */
json_t *acme_cert_json(cs_txn *txn, const Certsync__AcmeCert *c, bool full);
/* When each managed certificate's current certificate is due for renewal:
 * {"ID (hex)": Unix seconds}; NULL with err on failure. */
json_t *acme_renewal_times(cs_txn *txn, cs_err *err);

/* ---- commands (ops_acme.c) ------------------------------------------------ */

json_t *op_acme_add(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_acme_list(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_acme_show(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_acme_renew(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_acme_remove(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_acme_account(struct cs_node *node, json_t *args, cs_err *err);
/* The acme part of `status`: configured, account, certificates by state,
 * each managed certificate as `acme list` shows it, next renewal; a new
 * reference. */
json_t *ops_acme_status(struct cs_node *node, cs_txn *txn);

/* ---- the runner (acme_runner.c) -------------------------------------------- */

typedef struct acme_runner acme_runner;

/* Starts the thread that runs ACME while this node is primary, on the
 * agent's loop base (its changes come back to the loop to be committed).
 * Without [acme] directory: nothing started, *out NULL. */
int acme_runner_start(acme_runner **out, struct cs_node *node, struct event_base *base,
                      cs_err *err);
/* After every pass of the agent's loop: tells the runner whether the node
 * still leads (a node that stops leading stops ACME work at once), and
 * wakes it when the store changed. */
void acme_runner_tick(acme_runner *r);
/* Wakes it to look at the schedule now (after acme add / renew). */
void acme_runner_wake(acme_runner *r);
/* {"running", "leading", "working_on"}: a new reference. */
json_t *acme_runner_status(acme_runner *r);
void acme_runner_stop(acme_runner *r);

/* SIGHUP loaded a changed [acme] section a (acme_reload.c): the agent's
 * commands use it from now on and the runner from its next pass (started
 * now when none runs).  -1 with err: the old section stays. */
int acme_reload(struct cs_node *node, const cs_acme_config *a, struct event_base *base,
                cs_err *err);

/* ---- what every node answers (acme_answer.c) ------------------------------ */

typedef struct acme_answer acme_answer;

/* http-01 on http_listen (none without it) from the store, and the
 * tls-alpn-01 challenge certificates handed to the TLS endpoint. */
int acme_answer_start(acme_answer **out, struct cs_node *node, struct event_base *base,
                      cs_err *err);
/* The store changed: the TLS endpoint gets the challenge certificates the
 * store holds now. */
void acme_answer_changed(struct cs_node *node);
void acme_answer_stop(acme_answer *a);

#endif

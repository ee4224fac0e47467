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
#include "../store/store.h"
#include "proto/store.pb-c.h"

struct cs_node;
struct event_base;

/* ---- records (acme_records.c) ------------------------------------------- */

/* The kinds of key in the acme table: KIND/NAME ("account" alone). */
#define ACME_REC_ACCOUNT "account"
#define ACME_REC_CERT    "cert"
#define ACME_REC_ORDER   "order"
#define ACME_REC_HTTP01  "http01"
#define ACME_REC_ALPN    "alpn"

#define ACME_KEY_MAX 320

/* States of a managed certificate. */
#define ACME_STATE_SCHEDULED "scheduled"
#define ACME_STATE_RUNNING   "running"
#define ACME_STATE_FAILED    "failed" /* an operator error: no retry until `acme renew` */
#define ACME_STATE_PAUSED    "paused" /* the account is paused or the CA stops us */

/* "KIND/NAME" (or KIND when name is NULL) into out; its length. */
size_t acme_rec_key(char out[ACME_KEY_MAX], const char *kind, const char *name);

/* Reads and unpacks the record KIND/NAME of descriptor d: 0 found (*out to
 * free with protobuf_c_message_free_unpacked), 1 absent, -1 error. */
int acme_rec_get(cs_txn *txn, const char *kind, const char *name,
                 const ProtobufCMessageDescriptor *d, ProtobufCMessage **out, cs_err *err);
int acme_rec_put(cs_txn *txn, const char *kind, const char *name, const ProtobufCMessage *m,
                 cs_err *err);
int acme_rec_del(cs_txn *txn, const char *kind, const char *name, cs_err *err);

/* Calls fn for every record of kind, unpacked with d (freed after the
 * call); the name is what follows "KIND/".  A non-zero return stops. */
typedef int (*acme_rec_fn)(void *ctx, const char *name, ProtobufCMessage *m);
int acme_rec_foreach(cs_txn *txn, const char *kind, const ProtobufCMessageDescriptor *d,
                     acme_rec_fn fn, void *ctx, cs_err *err);

/* Reads managed certificate name, lets edit change a shallow copy of it
 * (set fields to strings that outlive the call) and stores the copy: 0
 * done, 1 absent, -1 error (edit's too). */
typedef int (*acme_cert_edit)(cs_txn *txn, Certsync__AcmeCert *c, void *arg, cs_err *err);
int acme_cert_update(cs_txn *txn, const char *name, acme_cert_edit edit, void *arg, cs_err *err);

/* The managed certificate as `acme list --json` shows it (README). */
json_t *acme_cert_json(cs_txn *txn, const Certsync__AcmeCert *c, bool full);

/* ---- commands (ops_acme.c) ------------------------------------------------ */

json_t *op_acme_add(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_acme_list(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_acme_show(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_acme_renew(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_acme_remove(struct cs_node *node, json_t *args, cs_err *err);
json_t *op_acme_account(struct cs_node *node, json_t *args, cs_err *err);
/* The acme part of `status`: configured, account, certificates by state,
 * next renewal; a new reference. */
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

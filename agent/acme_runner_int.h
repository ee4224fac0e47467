/* acme_runner_int.h — what the runner's files share (acme_runner.c: the
 * thread, its schedule and its bridge to the agent's loop; acme_account.c:
 * the client and the account; acme_obtain.c:
 * one managed certificate's order; acme_install.c: verifying and storing
 * what the CA issued).  Nothing outside them uses it. */
#ifndef CS_ACME_RUNNER_INT_H
#define CS_ACME_RUNNER_INT_H

#include "acme_agent.h"

#include "../seal/seal.h"
#include "live.h"

/* A change the runner makes: runs on the agent's loop inside a write
 * transaction; the loop commits it as any change (replicated, and
 * acknowledged by the backup before acme_runner_commit returns). */
typedef int (*acme_change_fn)(cs_txn *txn, void *ctx, cs_err *err);

/* -1 with err when this node no longer leads (nothing is written then), or
 * the change failed. */
int acme_runner_commit(acme_runner *r, const char *summary, acme_change_fn fn, void *ctx,
                       cs_err *err);
/* Whether the node still leads; the runner's work checks it between steps. */
bool acme_runner_leading(acme_runner *r);

/* What one pass over a managed certificate needs. */
typedef struct acme_ctx {
	acme_runner *r;
	/* the keys that never change while the agent runs (name, listeners);
	 * [acme] and the peers are the snapshots below */
	const struct cs_config *cfg;
	/* taken at the start of each pass (live.h): an order in flight
	 * finishes with the [acme] section and peers it started with */
	cs_acme_snap *acme;
	cs_peers_snap *peers;
	cs_store *store;
	const cs_key *key;
	acme_client *client;       /* with the account's URL known */
	const atomic_bool *cancel; /* true once the node stops leading or the agent stops */
	EVP_PKEY *account_key;
	bool ari; /* the directory has renewalInfo */
} acme_ctx;

/* Makes sure ctx has a client and a registered account (created and
 * stored the first time).  Errors as the CA or the network gave them. */
int acme_ctx_ready(acme_ctx *ctx, acme_err *e);
void acme_ctx_clear(acme_ctx *ctx);
/* The CA no longer knows the stored account (accountDoesNotExist: its state
 * was reset, or it let the account go): its URL is forgotten and the key
 * kept, so the next acme_ctx_ready registers the same key again. */
int acme_ctx_forget_account(acme_ctx *ctx, cs_err *err);

/* Whether url (an order's) is on another server than [acme] directory:
 * SIGHUP changed the directory while the order of managed certificate name
 * was in progress; logged, and a new order is made with the new CA. */
bool acme_ctx_other_ca(const acme_ctx *ctx, const char *name, const char *url);

/* e from a local error err of class cls (no problem document); -1. */
int acme_local_fail(acme_err *e, acme_errclass cls, const cs_err *err);

/* Runs the order of managed certificate name as far as it goes (obtaining
 * it, or renewing it), then stores the outcome and the next attempt.
 * Returns when it is done, failed, or the node stopped leading. */
void acme_obtain(acme_ctx *ctx, const char *name);

/* Verifies what the CA issued (pem: leaf first) against the order's key
 * and names and the certificate it replaces, and makes the change that
 * stores it like an import, moves the default when due and schedules the
 * renewal.  -1 with e (operator class: the CA issued something unusable). */
int acme_install(acme_ctx *ctx, const Certsync__AcmeCert *mc, EVP_PKEY *cert_key, const char *pem,
                 acme_err *e);

/* Asks the CA's renewalInfo again for the first managed certificate whose
 * poll time has come (its Retry-After), and moves its next attempt to the
 * window it gives now (acme_install.c). */
void acme_ari_poll(acme_ctx *ctx);

/* Deletes the certificates a renewal replaced, once every node serves the
 * new one or they have expired (acme_retire.c). */
void acme_retire(acme_ctx *ctx);

/* Removes the challenge records of name (and the dns-01 records when
 * published) in the change it is part of. */
int ops_acme_drop_challenges(cs_txn *txn, const char *name, cs_err *err);

/* The renewal schedule of a certificate valid from nb to na: the window
 * and the next attempt into mc (ARI when ctx->ari). */
void acme_schedule(acme_ctx *ctx, Certsync__AcmeCert *mc, X509 *leaf, time_t nb, time_t na);

#endif

/* stats.c — the count of requests made to the CA, by type and outcome,
 * with a histogram of their durations, for the node's /metrics.  Requests
 * are made on the ACME runner's thread (and on a command's worker), the
 * counts read on the admin listener's: one lock keeps a reader from seeing
 * a count without its bucket. */
#include "acme_int.h"

#include <pthread.h>
#include <string.h>

/* Upper bounds in seconds: a CA answers in tens of milliseconds to
 * seconds; a request is cut at its timeout (30 s by default). */
static const double bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
enum { NBOUNDS = sizeof(bounds) / sizeof(bounds[0]), NOUTCOMES = ACME_ERR_FATAL + 1 };

struct cell {
	uint64_t count;
	double sum;
	uint64_t buckets[NBOUNDS]; /* not cumulative: the bound a request fell under */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct cell cells[ACME_REQ_TYPES][NOUTCOMES];

const char *acme_req_name(acme_req_type t)
{
	static const char *const names[ACME_REQ_TYPES] = {
	    [ACME_REQ_DIRECTORY] = "directory",         [ACME_REQ_NEW_NONCE] = "newNonce",
	    [ACME_REQ_NEW_ACCOUNT] = "newAccount",      [ACME_REQ_NEW_ORDER] = "newOrder",
	    [ACME_REQ_AUTHORIZATION] = "authorization", [ACME_REQ_CHALLENGE] = "challenge",
	    [ACME_REQ_FINALIZE] = "finalize",           [ACME_REQ_ORDER] = "order",
	    [ACME_REQ_CERTIFICATE] = "certificate",     [ACME_REQ_RENEWAL_INFO] = "renewalInfo",
	};

	return (unsigned)t < ACME_REQ_TYPES ? names[t] : "unknown";
}

void acme_req_record(acme_req_type t, acme_errclass outcome, double seconds)
{
	struct cell *c;
	size_t b = 0;

	if ((unsigned)t >= ACME_REQ_TYPES || (unsigned)outcome >= NOUTCOMES)
		return;
	while (b < NBOUNDS && seconds > bounds[b])
		b++;
	pthread_mutex_lock(&lock);
	c = &cells[t][outcome];
	c->count++;
	c->sum += seconds;
	if (b < NBOUNDS)
		c->buckets[b]++;
	pthread_mutex_unlock(&lock);
}

static json_t *cell_json(acme_req_type t, acme_errclass outcome, const struct cell *c)
{
	json_t *buckets = json_array();
	uint64_t below = 0;

	for (size_t b = 0; buckets != NULL && b < NBOUNDS; b++) {
		below += c->buckets[b];
		json_array_append_new(buckets, json_integer((json_int_t)below));
	}
	return json_pack("{s:s, s:s, s:I, s:f, s:o}", "type", acme_req_name(t), "outcome",
	                 outcome == ACME_ERR_NONE ? "ok" : acme_errclass_name(outcome), "count",
	                 (json_int_t)c->count, "sum", c->sum, "buckets", buckets);
}

json_t *acme_request_stats(void)
{
	struct cell copy[ACME_REQ_TYPES][NOUTCOMES];
	json_t *b = json_array(), *requests = json_array();

	for (size_t i = 0; b != NULL && i < NBOUNDS; i++)
		json_array_append_new(b, json_real(bounds[i]));
	pthread_mutex_lock(&lock);
	memcpy(copy, cells, sizeof(copy));
	pthread_mutex_unlock(&lock);
	for (int t = 0; requests != NULL && t < ACME_REQ_TYPES; t++)
		for (int o = 0; o < NOUTCOMES; o++)
			if (json_array_append_new(requests, cell_json(t, o, &copy[t][o])) < 0) {
				json_decref(requests);
				requests = NULL;
				break;
			}
	return json_pack("{s:o, s:o}", "bounds", b, "requests", requests);
}

/* metrics_acme.c — the ACME client's part of /metrics: requests made to
 * the CA by type and outcome, and a histogram of their durations.  Every
 * type and outcome has its series from the start (zero on a node that
 * never ran ACME), so a rate or an alert on them works before the first
 * request.  Only fixed names appear: no URL, account or token. */
#include "monitor_int.h"

static void series(FILE *f, const char *name, const json_t *r)
{
	fprintf(f, "%s{type=\"%s\",outcome=\"%s\"", name,
	        json_string_value(json_object_get(r, "type")),
	        json_string_value(json_object_get(r, "outcome")));
}

void mon_metrics_acme(FILE *f, const json_t *acme)
{
	const json_t *requests = json_object_get(acme, "requests"),
	             *bounds = json_object_get(acme, "bounds"), *r, *b;
	size_t i, k;

	if (!json_is_array(requests))
		return;
	fputs("# HELP certsync_acme_requests_total Requests made to the ACME CA, by type and "
	      "outcome (ok, or the class of the failure: transient, operator, fatal).\n"
	      "# TYPE certsync_acme_requests_total counter\n",
	      f);
	json_array_foreach(requests, i, r)
	{
		series(f, "certsync_acme_requests_total", r);
		fprintf(f, "} %lld\n", (long long)json_integer_value(json_object_get(r, "count")));
	}
	fputs("# HELP certsync_acme_request_duration_seconds How long requests to the ACME CA "
	      "took, by type and outcome.\n"
	      "# TYPE certsync_acme_request_duration_seconds histogram\n",
	      f);
	json_array_foreach(requests, i, r)
	{
		long long count = (long long)json_integer_value(json_object_get(r, "count"));

		json_array_foreach(bounds, k, b)
		{
			series(f, "certsync_acme_request_duration_seconds_bucket", r);
			fprintf(f, ",le=\"%g\"} %lld\n", json_number_value(b),
			        (long long)json_integer_value(
			            json_array_get(json_object_get(r, "buckets"), k)));
		}
		series(f, "certsync_acme_request_duration_seconds_bucket", r);
		fprintf(f, ",le=\"+Inf\"} %lld\n", count);
		series(f, "certsync_acme_request_duration_seconds_sum", r);
		fprintf(f, "} %.6f\n", json_number_value(json_object_get(r, "sum")));
		series(f, "certsync_acme_request_duration_seconds_count", r);
		fprintf(f, "} %lld\n", count);
	}
}

/* cli_print_records.c — the printers of the operator command's answers
 * about records and changes: certificates, requests, pending keys, imports,
 * exports, verify, promote and the diverged changes. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "../common/log.h"
#include "control.h"

static void print_cert_line(const cli_ctx *ctx, json_t *c)
{
	json_t *warnings = json_object_get(c, "warnings");

	hprintf(ctx, "%.8s  %-20s %-12s %-28s %-10s %-8s %-3s %s\n", cli_str(c, "id"),
	        cli_str(c, "name"), cli_str(c, "kind"), cli_str(c, "subject_cn"),
	        cli_day(c, "not_after"), cli_str(c, "key_type"),
	        json_is_true(json_object_get(c, "has_key")) ? "key" : "-",
	        json_is_true(json_object_get(c, "default")) ? "*" : "");
	if (json_array_size(json_object_get(c, "sans")) > 0) {
		hprintf(ctx, "          SANs: ");
		cli_print_list(ctx, json_object_get(c, "sans"), ", ");
		hprintf(ctx, "\n");
	}
	hprintf(ctx, "          issuer: %s\n", cli_str(c, "issuer"));
	if (json_array_size(warnings) > 0) {
		hprintf(ctx, "          warnings: ");
		cli_print_list(ctx, warnings, ", ");
		hprintf(ctx, "\n");
	}
}

int cli_print_cert_list(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *certs = json_object_get(r, "certificates"), *c;
	size_t i;

	if (json_array_size(certs) == 0 && json_object_size(args) > 0) {
		hprintf(ctx, "no certificate matches\n");
		return 0;
	}
	if (json_array_size(certs) == 0) {
		hprintf(ctx,
		        "no certificates; create one with `certsync cert self-signed` or import "
		        "one\n");
		return 0;
	}
	hprintf(ctx, "ID        %-20s %-12s %-28s %-10s %-8s %-3s %s\n", "NAME", "KIND",
	        "SUBJECT CN", "NOT AFTER", "KEY TYPE", "KEY", "DEFAULT");
	json_array_foreach(certs, i, c) print_cert_line(ctx, c);
	if (json_object_get(r, "next_after") != NULL)
		hprintf(ctx, "more: the next page starts with --after %.16s\n",
		        cli_str(r, "next_after"));
	return 0;
}

int cli_print_cert_show(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *link;
	size_t i;

	(void)args;
	hprintf(ctx, "id         %s\nname       %s\nkind       %s\nsubject    %s\nissuer     %s\n",
	        cli_str(r, "id"), cli_str(r, "name"), cli_str(r, "kind"), cli_str(r, "subject"),
	        cli_str(r, "issuer"));
	hprintf(ctx, "SANs       ");
	cli_print_list(ctx, json_object_get(r, "sans"), ", ");
	hprintf(ctx, "\nvalid      %s to %s\nkey        %s, %s\nsource     %s\ndefault    %s\n",
	        cli_str(r, "not_before"), cli_str(r, "not_after"), cli_str(r, "key_type"),
	        json_is_true(json_object_get(r, "has_key")) ? "held (sealed)" : "missing",
	        cli_str(r, "source"), json_is_true(json_object_get(r, "default")) ? "yes" : "no");
	hprintf(ctx, "chain      %s\n",
	        json_is_true(json_object_get(r, "chain_complete")) ? "complete" : "INCOMPLETE");
	json_array_foreach(json_object_get(r, "chain"), i, link)
	{
		hprintf(ctx, "  %.8s %s (%s)\n", cli_str(link, "id"), cli_str(link, "subject"),
		        cli_str(link, "kind"));
	}
	if (json_array_size(json_object_get(r, "warnings")) > 0) {
		hprintf(ctx, "warnings   ");
		cli_print_list(ctx, json_object_get(r, "warnings"), ", ");
		hprintf(ctx, "\n");
	}
	hprintf(ctx, "%s", cli_str(r, "pem"));
	return 0;
}

int cli_print_deleted(const cli_ctx *ctx, json_t *r, json_t *args)
{
	(void)args;
	hprintf(ctx, "deleted certificate %s\n", cli_str(r, "deleted"));
	return 0;
}

/* key delete, csr delete: the agent's message says what went. */
int cli_print_message(const cli_ctx *ctx, json_t *r, json_t *args)
{
	(void)args;
	hprintf(ctx, "%s\n", cli_str(r, "message"));
	return 0;
}

int cli_print_key_list(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *keys = json_object_get(r, "keys"), *k;
	size_t i;

	(void)args;
	if (json_array_size(keys) == 0) {
		hprintf(ctx, "no pending keys\n");
		return 0;
	}
	hprintf(ctx, "ID        %-20s %-8s %s\n", "NAME", "KEY TYPE", "CREATED");
	json_array_foreach(keys, i, k)
	{
		hprintf(ctx, "%.8s  %-20s %-8s %s\n", cli_str(k, "id"), cli_str(k, "name"),
		        cli_str(k, "key_type"), cli_day(k, "created"));
	}
	return 0;
}

int cli_print_prune(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *certs = json_object_get(r, "certificates"), *c;
	bool deleted = json_is_true(json_object_get(r, "deleted"));
	size_t i, n = json_array_size(certs);

	(void)args;
	json_array_foreach(certs, i, c)
	{
		hprintf(ctx, "%s %.8s (%s), expired %s\n", deleted ? "deleted" : "would delete",
		        cli_str(c, "id"), cli_str(c, "name"), cli_day(c, "not_after"));
	}
	if (n == 0)
		hprintf(ctx, "no expired certificate to prune (the default is never pruned)\n");
	else if (!deleted)
		hprintf(ctx, "%zu %s would be deleted: run it again with --yes to delete %s\n", n,
		        CS_PLURAL(n, "certificate", "certificates"), CS_PLURAL(n, "it", "them"));
	return 0;
}

int cli_print_default(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *missing = json_object_get(r, "uncovered");

	(void)args;
	hprintf(ctx, "certificate %.8s is now the default\n", cli_str(r, "default"));
	if (json_array_size(missing) > 0) {
		hprintf(ctx, "warning: it does not cover ");
		cli_print_list(ctx, missing, ", ");
		hprintf(ctx, "; `certsync verify` will fail until a certificate covers them\n");
	}
	return 0;
}

static void print_notes(FILE *to, json_t *r)
{
	json_t *note;
	size_t i;

	json_array_foreach(json_object_get(r, "notes"), i, note)
	{
		fprintf(to, "note: %s\n", json_string_value(note));
	}
}

int cli_print_self_signed(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *c = json_object_get(r, "certificate");

	(void)args;
	print_notes(ctx->human, r);
	hprintf(ctx, "created self-signed certificate %.8s (%s), valid until %s\n",
	        cli_str(c, "id"), cli_str(c, "name"), cli_day(c, "not_after"));
	return 0;
}

int cli_print_csr_created(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *req = json_object_get(r, "request");

	(void)args;
	print_notes(ctx->aside, r);
	fprintf(ctx->aside,
	        "created request %.8s (%s); hand its PEM (standard output) to your CA, then "
	        "import the certificate it issues\n",
	        cli_str(req, "id"), cli_str(req, "name"));
	hprintf(ctx, "%s", cli_str(r, "pem"));
	return 0;
}

int cli_print_csr_list(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *reqs = json_object_get(r, "requests"), *q;
	size_t i;

	(void)args;
	if (json_array_size(reqs) == 0) {
		hprintf(ctx, "no requests; create one with `certsync csr create`\n");
		return 0;
	}
	hprintf(ctx, "ID        %-20s %-28s %-8s %-10s %s\n", "NAME", "SUBJECT CN", "KEY TYPE",
	        "CREATED", "STATUS");
	json_array_foreach(reqs, i, q)
	{
		json_t *by = json_object_get(q, "fulfilled_by"), *id;
		size_t k;

		hprintf(ctx, "%.8s  %-20s %-28s %-8s %-10s ", cli_str(q, "id"), cli_str(q, "name"),
		        cli_str(q, "subject_cn"), cli_str(q, "key_type"), cli_day(q, "created"));
		if (json_array_size(by) == 0)
			hprintf(ctx, "pending");
		json_array_foreach(by, k, id)
		{
			hprintf(ctx, "%s%.8s", k ? ", " : "fulfilled by ", json_string_value(id));
		}
		hprintf(ctx, "\n          SANs: ");
		cli_print_list(ctx, json_object_get(q, "sans"), ", ");
		hprintf(ctx, "\n");
	}
	return 0;
}

int cli_print_csr_show(const cli_ctx *ctx, json_t *r, json_t *args)
{
	(void)args;
	hprintf(ctx, "%s", cli_str(r, "pem"));
	return 0;
}

int cli_print_import(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *item;
	size_t i;

	(void)args;
	json_array_foreach(json_object_get(r, "items"), i, item)
	{
		hprintf(ctx, "%s: %s\n", cli_str(item, "file"), cli_str(item, "message"));
	}
	if (!json_is_true(json_object_get(r, "changed")))
		hprintf(ctx, "nothing changed: all of it is already in the store\n");
	return 0;
}

/* Writes the exported bytes to -o FILE (whole or not at all: a temporary
 * file renamed into place) or to standard output. */
static int write_output(const char *path, const uint8_t *data, size_t len, cs_err *err)
{
	char tmp[4096];
	int fd, ok;

	if (path == NULL || strcmp(path, "-") == 0)
		return fwrite(data, 1, len, stdout) == len && fflush(stdout) == 0
		           ? 0
		           : cs_fail(err, CS_EIO, "cannot write to standard output");
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= sizeof(tmp))
		return cs_fail(err, CS_EUSAGE, "-o %s: the path is too long", path);
	fd = mkstemp(tmp);
	if (fd < 0)
		return cs_fail(err, CS_EUSAGE, "-o %s: cannot create it: %s", path,
		               strerror(errno));
	ok = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return cs_fail(err, CS_EIO, "-o %s: cannot write it: %s", path, strerror(errno));
	}
	return 0;
}

int cli_print_export(const cli_ctx *ctx, json_t *r, json_t *args)
{
	const char *out = json_string_value(json_object_get(args, "output"));
	uint8_t *data = NULL;
	cs_err err = {0};
	size_t len = 0;
	int rc = -1;

	if (ctx->json && out == NULL)
		return 0; /* the base64 stays in the JSON answer */
	if (cs_control_unbase64(cli_str(r, "data"), &data, &len) == 0)
		rc = write_output(out, data, len, &err);
	else
		cs_fail(&err, CS_EIO, "the agent's export is not base64");
	if (data != NULL)
		sodium_free(data);
	if (rc < 0) {
		fprintf(stderr, "certsync: %s\n", err.msg);
		return cs_err_exit_status(err.code);
	}
	json_object_set_new(r, "file", json_string(out ? out : "-"));
	json_object_set_new(r, "bytes", json_integer((json_int_t)len));
	json_object_del(r, "data");
	if (out != NULL)
		hprintf(ctx, "wrote %zu bytes (%s) to %s\n", len, cli_str(r, "format"), out);
	return 0;
}

int cli_print_verify(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *cert = json_object_get(r, "certificate"), *check;
	size_t i;

	(void)args;
	hprintf(ctx, "certificate %.8s (%s) for ", cli_str(cert, "id"), cli_str(cert, "name"));
	cli_print_list(ctx, json_object_get(r, "hosts"), ", ");
	hprintf(ctx, "\n");
	json_array_foreach(json_object_get(r, "checks"), i, check)
	{
		hprintf(ctx, "%-5s %-9s %s\n", cli_str(check, "status"), cli_str(check, "name"),
		        cli_str(check, "detail"));
	}
	return json_is_true(json_object_get(r, "ok")) ? 0 : 1;
}

int cli_print_promote(const cli_ctx *ctx, json_t *r, json_t *args)
{
	(void)args;
	hprintf(ctx, "%s is the primary now (epoch %lld)\n", cli_str(r, "leader"),
	        (long long)json_integer_value(json_object_get(r, "epoch")));
	return 0;
}

int cli_print_diverged(const cli_ctx *ctx, json_t *r, json_t *args)
{
	json_t *d, *seq;
	size_t i;

	(void)args;
	json_array_foreach(json_object_get(r, "diverged"), i, d)
	{
		seq = json_object_get(d, "applied_seq");
		hprintf(
		    ctx, "%.8s  %s  epoch %lld seq %lld  %s  from %s  %s\n", cli_str(d, "id"),
		    cli_str(d, "time"), (long long)json_integer_value(json_object_get(d, "epoch")),
		    (long long)json_integer_value(json_object_get(d, "seq")), cli_str(d, "summary"),
		    cli_str(d, "origin"), json_is_integer(seq) ? "re-applied" : "not applied");
	}
	if (json_array_size(json_object_get(r, "diverged")) == 0)
		hprintf(ctx, "no diverged entries\n");
	return 0;
}

int cli_print_diverged_delete(const cli_ctx *ctx, json_t *r, json_t *args)
{
	(void)args;
	hprintf(ctx, "deleted diverged entry %.8s\n", cli_str(r, "deleted"));
	return 0;
}

int cli_print_diverged_prune(const cli_ctx *ctx, json_t *r, json_t *args)
{
	(void)args;
	hprintf(ctx, "removed %lld diverged entries\n",
	        (long long)json_integer_value(json_object_get(r, "removed")));
	return 0;
}

int cli_print_diverged_apply(const cli_ctx *ctx, json_t *r, json_t *args)
{
	(void)args;
	hprintf(ctx, "re-applied %.8s as seq %lld\n", cli_str(r, "applied"),
	        (long long)json_integer_value(json_object_get(r, "seq")));
	return 0;
}

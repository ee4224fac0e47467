/* page.c — the status page of the admin listener: one self-contained HTML
 * document (inline style and script, no external asset), drawn by the
 * server from the node's status: the active alerts, the cluster (with what
 * each node served at the primary's last check), the
 * certificates with an expiry bar coloured by the alert thresholds and,
 * for managed ones, their ACME state and next renewal, and an SVG timeline
 * of every identity certificate's validity over the next 120 days with
 * each renewal marked.  A small script polls /status.json and redraws
 * (reloads) the page when what it shows has changed.  Every value is HTML-escaped. */
#include <string.h>
#include <time.h>

#include "monitor.h"

#include "../common/clock.h"

#define DAY       86400
#define SPAN_DAYS 120

/* Text as HTML: &, <, >, " and ' escaped. */
static void h(FILE *f, const char *s)
{
	for (; s != NULL && *s; s++) {
		switch (*s) {
		case '&':
			fputs("&amp;", f);
			break;
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		case '\'':
			fputs("&#39;", f);
			break;
		default:
			fputc(*s, f);
		}
	}
}

static const char *s_of(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static int64_t parse_utc(const char *s)
{
	struct tm tm = {0};

	if (s == NULL || strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL)
		return 0;
	return (int64_t)timegm(&tm);
}

static const char STYLE[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}"
    "h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}"
    "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;"
    "text-align:left;vertical-align:top}"
    ".alert{padding:4px 8px;margin:3px 0;border-radius:3px}"
    ".alert.error{background:#fde0e0}.alert.warning{background:#fff4d0}"
    ".track{width:160px;height:10px;background:#eee;border-radius:5px}"
    ".expiry{height:10px;border-radius:5px}"
    ".expiry.warning{background:#f9a825}"
    ".expiry.error{background:#c62828}.expiry.ok{background:#2e7d32}"
    ".dead{color:#c62828}.muted{color:#777}"
    ".acme.failed,.acme.paused{color:#c62828;font-weight:bold}.acme.running{color:#1565c0}";

/* Polls /status.json; a change in what the page shows redraws it. */
static const char SCRIPT[] =
    "(function(){var seen=null;function key(s){var a=(s.alerts&&s.alerts.active)||[];"
    "var p=(s.replication&&s.replication.peers)||[];var c=s.certificates||[];"
    "return JSON.stringify([s.epoch,s.seq,a.map(function(x){return x.key+x.severity}),"
    "p.map(function(x){return [x.name,x.reachable,x.seq]}),"
    "c.map(function(x){return x.id}),"
    "((s.acme&&s.acme.managed)||[]).map(function(x){return x.state+x.renewal_time}),"
    "((s.serving&&s.serving.results)||[]).map(function(x){return x.status+x.served})]);}"
    "function poll(){fetch('/status.json',{cache:'no-store'}).then(function(r){"
    "return r.ok?r.json():null}).then(function(s){if(!s)return;var k=key(s);"
    "if(seen!==null&&k!==seen){location.reload();return;}seen=k;"
    "document.getElementById('updated').textContent='checked '+new Date().toISOString()})"
    ".catch(function(){});}poll();setInterval(poll,5000);})();";

static void alerts(FILE *f, const json_t *st)
{
	const json_t *a;
	size_t i;

	fputs("<h2>Alerts</h2>\n<div id=\"alerts\">", f);
	if (json_array_size(json_object_get(json_object_get(st, "alerts"), "active")) == 0)
		fputs("<p class=\"muted\">no active alerts</p>", f);
	json_array_foreach(json_object_get(json_object_get(st, "alerts"), "active"), i, a)
	{
		fprintf(f, "<div class=\"alert %s\"><b>%s</b> ",
		        strcmp(s_of(a, "severity"), "error") == 0 ? "error" : "warning",
		        strcmp(s_of(a, "severity"), "error") == 0 ? "error" : "warning");
		h(f, s_of(a, "text"));
		fputs(" <span class=\"muted\">since ", f);
		h(f, s_of(a, "since"));
		fputs("</span></div>\n", f);
	}
	fputs("</div>\n", f);
}

/* What node served for each hostname at the primary's last check. */
static void served_cell(FILE *f, const json_t *serving, const char *node)
{
	const json_t *r;
	size_t i;
	bool any = false;

	json_array_foreach(json_object_get(serving, "results"), i, r)
	{
		const char *status = s_of(r, "status");
		bool ok = strcmp(status, "ok") == 0, other = strcmp(status, "other") == 0;

		if (strcmp(s_of(r, "node"), node) != 0)
			continue;
		fprintf(f, "%s<span class=\"%s\">", any ? "<br>" : "", ok ? "" : "dead");
		any = true;
		h(f, s_of(r, "host"));
		fputs(": ", f);
		if (ok || other) {
			fprintf(f, "%.8s", s_of(r, "served"));
			if (json_is_string(json_object_get(r, "served_name"))) {
				fputs(" (", f);
				h(f, s_of(r, "served_name"));
				fputs(")", f);
			}
		}
		if (other) {
			fprintf(f, ", expected %.8s (", s_of(r, "expected"));
			h(f, s_of(r, "expected_name"));
			fputs(")", f);
		} else if (!ok) {
			h(f, status);
		}
		fputs("</span>", f);
	}
	if (!any)
		fputs("<span class=\"muted\">not checked</span>", f);
}

static void node_row(FILE *f, const char *name, const char *role, bool up, json_int_t epoch,
                     json_int_t seq, const json_t *lag, const json_t *heard, const json_t *serving)
{
	fputs("<tr class=\"node\"><td>", f);
	h(f, name);
	fputs("</td><td>", f);
	h(f, role);
	fprintf(f, "</td><td class=\"%s\">%s</td><td>%lld.%lld</td><td>", up ? "" : "dead",
	        up ? "reachable" : "not heard", (long long)epoch, (long long)seq);
	if (json_is_integer(lag))
		fprintf(f, "%lld", (long long)json_integer_value(lag));
	fputs("</td><td>", f);
	if (json_is_integer(heard))
		fprintf(f, "%.1f s ago", (double)json_integer_value(heard) / 1000.0);
	fputs("</td><td>", f);
	served_cell(f, serving, name);
	fputs("</td></tr>\n", f);
}

static void cluster(FILE *f, const json_t *st)
{
	const json_t *rep = json_object_get(st, "replication"), *p,
	             *def = json_object_get(st, "default"),
	             *serving = json_object_get(st, "serving");
	size_t i;

	fputs("<h2>Cluster</h2>\n<table id=\"cluster\"><tr><th>node</th><th>role</th><th>state</th>"
	      "<th>position</th><th>lag</th><th>last heard</th><th>serves",
	      f);
	if (json_is_object(serving)) {
		fputs(" <span class=\"muted\">(checked ", f);
		h(f, s_of(serving, "checked"));
		fputs(")</span>", f);
	}
	fputs("</th></tr>\n", f);
	node_row(f, s_of(st, "node"), s_of(st, "role"), true,
	         json_integer_value(json_object_get(st, "epoch")),
	         json_integer_value(json_object_get(st, "seq")), NULL, NULL, serving);
	json_array_foreach(json_object_get(rep, "peers"), i, p) node_row(
	    f, s_of(p, "name"), s_of(p, "role"), json_is_true(json_object_get(p, "reachable")),
	    json_integer_value(json_object_get(p, "epoch")),
	    json_integer_value(json_object_get(p, "seq")), json_object_get(p, "lag"),
	    json_object_get(p, "last_heard_ms"), serving);
	fputs("</table>\n<p>Site ", f);
	h(f, s_of(st, "site_hostname"));
	fputs(", this node ", f);
	h(f, s_of(st, "hostname"));
	fputs("; default certificate: ", f);
	if (json_is_object(def)) {
		fprintf(f, "%.8s (", s_of(def, "id"));
		h(f, s_of(def, "name"));
		fputs(")", f);
	} else {
		fputs("none", f);
	}
	fputs(". Health: ", f);
	if (json_is_true(json_object_get(json_object_get(st, "health"), "ok")))
		fputs("ok", f);
	json_array_foreach(json_object_get(json_object_get(st, "health"), "problems"), i, p)
	{
		fputs("<br><span class=\"dead\">", f);
		h(f, json_string_value(p));
		fputs("</span>", f);
	}
	fputs("</p>\n", f);
}

static bool identity(const json_t *c)
{
	return strcmp(s_of(c, "kind"), "identity") == 0;
}

/* The managed certificate (status's acme.managed) whose current
 * certificate is c, or NULL. */
static const json_t *managed_for(const json_t *managed, const json_t *c)
{
	const json_t *m;
	size_t i;

	if (s_of(c, "id")[0] == '\0')
		return NULL;
	json_array_foreach(managed, i, m)
	{
		if (strcmp(s_of(json_object_get(m, "certificate"), "id"), s_of(c, "id")) == 0)
			return m;
	}
	return NULL;
}

/* A managed certificate's ACME state and when it is next renewed. */
static void acme_cell(FILE *f, const json_t *m)
{
	const json_t *err = json_object_get(m, "last_error");

	if (m == NULL)
		return;
	fputs("<span class=\"acme ", f);
	h(f, s_of(m, "state"));
	fputs("\">ACME ", f);
	h(f, s_of(m, "state"));
	fputs("</span>", f);
	if (json_is_string(json_object_get(m, "renewal_time"))) {
		fputs("<br>next renewal <span class=\"renewal\">", f);
		h(f, s_of(m, "renewal_time"));
		fputs("</span>", f);
	}
	if (json_is_string(json_object_get(m, "next_attempt")) &&
	    strcmp(s_of(m, "next_attempt"), s_of(m, "renewal_time")) != 0) {
		fputs("<br>next attempt ", f);
		h(f, s_of(m, "next_attempt"));
	}
	if (json_is_object(err)) {
		fputs("<br><span class=\"dead\">", f);
		h(f, s_of(err, "message"));
		fputs("</span>", f);
	}
}

static void certificates(FILE *f, const json_t *certs, const json_t *managed, int64_t now,
                         const mon_rules *r)
{
	const json_t *c, *san;
	size_t i, k;

	fputs("<h2>Certificates</h2>\n<table id=\"certificates\"><tr><th></th><th>name</th>"
	      "<th>names covered</th><th>issuer</th><th>key</th><th>expires</th><th></th>"
	      "<th>renewal</th></tr>\n",
	      f);
	json_array_foreach(certs, i, c)
	{
		int64_t nb = parse_utc(s_of(c, "not_before")), na = parse_utc(s_of(c, "not_after"));
		mon_severity sev = mon_cert_severity(nb, na, now, r);
		double left = na > nb ? (double)(na - now) / (double)(na - nb) : 0;

		if (!identity(c))
			continue;
		fprintf(f, "<tr class=\"certificate %s\" data-id=\"%.16s\"><td>%s</td><td>",
		        mon_severity_name(sev), s_of(c, "id"),
		        json_is_true(json_object_get(c, "default")) ? "&#9733; default" : "");
		h(f, s_of(c, "name"));
		fputs("</td><td>", f);
		json_array_foreach(json_object_get(c, "sans"), k, san)
		{
			fputs(k ? ", " : "", f);
			h(f, json_string_value(san));
		}
		fputs("</td><td>", f);
		h(f, s_of(c, "issuer"));
		fputs("</td><td>", f);
		h(f, s_of(c, "key_type"));
		fputs("</td><td>", f);
		h(f, s_of(c, "not_after"));
		fprintf(
		    f,
		    "</td><td><div class=\"track\"><div class=\"expiry %s\" style=\"width:%d%%\">"
		    "</div></div></td><td>",
		    mon_severity_name(sev), left <= 0 ? 100 : (int)(left * 100 + 0.5));
		acme_cell(f, managed_for(managed, c));
		fputs("</td></tr>\n", f);
	}
	fputs("</table>\n", f);
}

/* A managed certificate's renewal on its row of the timeline: a tick, at
 * the left edge when it is already due. */
static void renewal_mark(FILE *f, const json_t *m, int64_t now, int64_t end, int x0, int width,
                         int y)
{
	int64_t at = parse_utc(s_of(m, "renewal_time"));
	long long x = x0 + (at > now ? (at - now) * width / (end - now) : 0);

	if (m == NULL || at == 0 || at > end)
		return;
	fprintf(f,
	        "<path class=\"renewal\" d=\"M%lld %d l5 7 l-5 7 l-5 -7 z\" fill=\"#6a1b9a\" "
	        "stroke=\"#fff\"><title>renewal ",
	        x, y + 3);
	h(f, s_of(m, "renewal_time"));
	fputs("</title></path>\n", f);
}

/* The validity of every identity certificate from today to 120 days on,
 * with each managed certificate's renewal marked. */
static void timeline(FILE *f, const json_t *certs, const json_t *managed, int64_t now,
                     const mon_rules *r)
{
	enum { LEFT = 220, WIDTH = 660, ROW = 22, TOP = 24 };
	const int64_t end = now + (int64_t)SPAN_DAYS * DAY;
	const json_t *c;
	size_t i, rows = 0;
	int y;

	json_array_foreach(certs, i, c) rows += identity(c);
	fprintf(f,
	        "<h2>Validity over the next %d days</h2>\n<svg id=\"timeline\" "
	        "xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%zu\" "
	        "font-size=\"12\">\n",
	        SPAN_DAYS, LEFT + WIDTH + 40, TOP + rows * ROW + 10);
	for (int d = 0; d <= SPAN_DAYS; d += 30) {
		int x = LEFT + WIDTH * d / SPAN_DAYS;

		fprintf(
		    f,
		    "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%zu\" stroke=\"#ccc\"/>"
		    "<text x=\"%d\" y=\"14\" text-anchor=\"middle\" fill=\"#777\">%s%d d</text>\n",
		    x, TOP - 6, x, TOP + rows * ROW, x, d ? "+" : "", d);
	}
	y = TOP;
	json_array_foreach(certs, i, c)
	{
		int64_t nb = parse_utc(s_of(c, "not_before")), na = parse_utc(s_of(c, "not_after"));
		int64_t from = nb > now ? nb : now, to = na < end ? na : end;
		mon_severity sev = mon_cert_severity(nb, na, now, r);
		static const char *const fill[] = {"#2e7d32", "#f9a825", "#c62828"};

		if (!identity(c))
			continue;
		fprintf(f, "<text x=\"4\" y=\"%d\">", y + 14);
		h(f, s_of(c, "name"));
		fputs(json_is_true(json_object_get(c, "default")) ? " &#9733;" : "", f);
		fputs("</text>", f);
		if (to > from && from < end)
			fprintf(f,
			        "<rect class=\"bar %s\" x=\"%lld\" y=\"%d\" width=\"%lld\" "
			        "height=\"14\" "
			        "rx=\"3\" fill=\"%s\"><title>",
			        mon_severity_name(sev),
			        (long long)(LEFT + (from - now) * WIDTH / (end - now)), y + 3,
			        (long long)((to - from) * WIDTH / (end - now) + 1), fill[sev]);
		else
			fprintf(
			    f,
			    "<rect class=\"bar %s\" x=\"%d\" y=\"%d\" width=\"4\" height=\"14\" "
			    "fill=\"%s\"><title>",
			    mon_severity_name(sev), na <= now ? LEFT - 4 : LEFT + WIDTH, y + 3,
			    fill[sev]);
		h(f, s_of(c, "not_before"));
		fputs(" to ", f);
		h(f, s_of(c, "not_after"));
		fputs("</title></rect>\n", f);
		renewal_mark(f, managed_for(managed, c), now, end, LEFT, WIDTH, y);
		y += ROW;
	}
	fprintf(
	    f,
	    "<line id=\"today\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%zu\" stroke=\"#1565c0\" "
	    "stroke-width=\"2\"/><text x=\"%d\" y=\"%zu\" fill=\"#1565c0\">today</text>\n</svg>\n",
	    LEFT, TOP - 6, LEFT, TOP + rows * ROW, LEFT + 4, TOP + rows * ROW + 8);
}

void mon_page_write(FILE *f, const json_t *st, int64_t now)
{
	const json_t *certs = json_object_get(st, "certificates"),
	             *managed = json_object_get(json_object_get(st, "acme"), "managed");
	char when[32];
	mon_rules r;

	mon_rules_default(&r);
	cs_iso_time(now, when);
	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	      "<meta name=\"viewport\" content=\"width=device-width\"><title>certsync ",
	      f);
	h(f, s_of(st, "node"));
	fprintf(f, "</title><style>%s</style></head><body>\n<h1>certsync: ", STYLE);
	h(f, s_of(st, "node"));
	fputs(" (", f);
	h(f, s_of(st, "role"));
	fprintf(f, ")</h1>\n<p class=\"muted\">drawn %s <span id=\"updated\"></span></p>\n", when);
	alerts(f, st);
	cluster(f, st);
	certificates(f, certs, managed, now, &r);
	timeline(f, certs, managed, now, &r);
	fprintf(f, "<script>%s</script>\n</body></html>\n", SCRIPT);
}

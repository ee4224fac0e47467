/* config.c — reading and checking the agent's INI file.
 *
 * inih does the parsing; this file knows the keys.  inih does not tell the
 * handler which line it is on, so a small reader counts lines (and checks
 * section headers, which inih reports only through their keys).  The reader
 * hands inih lines of the file read whole, so that a NUL byte (which would
 * silently cut a value short) and a line longer than inih's buffer are
 * refused by their line number rather than misread. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>
#include <sodium.h>

#include "../common/hostport.h"
#include "../pki/pki.h"
#include "../replication/repl.h"
#include "../seal/seal.h"

/* Where a required key of [node] or [cluster] is kept, so presence and
 * storage are checked from one table. */
struct key_slot {
	const char *section, *key;
	size_t offset;
	bool required;
};

static const struct key_slot string_keys[] = {
    {"node", "name", offsetof(cs_config, name), true},
    {"node", "hostname", offsetof(cs_config, hostname), true},
    {"node", "data_dir", offsetof(cs_config, data_dir), true},
    {"node", "control_socket", offsetof(cs_config, control_socket), true},
    {"node", "passphrase_file", offsetof(cs_config, passphrase_file), true},
    {"cluster", "site_hostname", offsetof(cs_config, site_hostname), true},
    {"node", "repl_listen", offsetof(cs_config, repl_listen), false},
    {"node", "curve_secret_file", offsetof(cs_config, curve_secret_file), false},
    {"node", "admin_listen", offsetof(cs_config, admin_listen), false},
    {"node", "admin_token_file", offsetof(cs_config, admin_token_file), false},
    {"node", "http_listen", offsetof(cs_config, http_listen), false},
    {"node", "next_passphrase_file", offsetof(cs_config, next_passphrase_file), false},
};
#define NSTRING_KEYS (sizeof(string_keys) / sizeof(string_keys[0]))

#define CONFIG_MAX_LINE 4096      /* characters, without the line's end */
#define CONFIG_MAX_SIZE (1 << 20) /* bytes of the whole file */

struct parse_state {
	cs_config *cfg;
	cs_err *err;
	const char *text; /* the whole file */
	size_t len, pos;
	int line;
	bool role_set;
	bool *peer_role_set; /* parallel to cfg->peers */
	bool *peer_host_set;
	char *seen[512]; /* "section\nkey" of every single-valued key so far */
	size_t nseen;
};

static int fail_at(struct parse_state *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail_at(struct parse_state *ps, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return cs_fail(ps->err, CS_EUSAGE, "%s:%d: %s", ps->cfg->path, ps->line, what);
}

static bool valid_peer_name(const char *s)
{
	if (*s == '\0' || strlen(s) > 63)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

/* Returns 0 and sets *peer_name for "peer NAME", -1 for a bad header. */
static int check_section(struct parse_state *ps, const char *section, const char **peer_name)
{
	*peer_name = NULL;
	if (strcmp(section, "node") == 0 || strcmp(section, "cluster") == 0 ||
	    strcmp(section, "alerts") == 0 || strcmp(section, "acme") == 0)
		return 0;
	if (strncmp(section, "peer ", 5) == 0) {
		const char *name = section + 5;

		while (*name == ' ')
			name++;
		if (!valid_peer_name(name))
			return fail_at(ps,
			               "section [%s]: a peer's name is 1 to 63 letters, digits, "
			               "'-', '_' or '.'",
			               section);
		*peer_name = name;
		return 0;
	}
	return fail_at(ps,
	               "unknown section [%s]; sections are [node], [cluster], [alerts], [acme] "
	               "and [peer NAME]",
	               section);
}

static cs_peer *find_or_add_peer(struct parse_state *ps, const char *name)
{
	cs_config *cfg = ps->cfg;
	size_t n = cfg->npeers;

	for (size_t i = 0; i < n; i++)
		if (strcmp(cfg->peers[i].name, name) == 0)
			return &cfg->peers[i];
	cs_peer *peers = realloc(cfg->peers, (n + 1) * sizeof(*peers));
	bool *rs = realloc(ps->peer_role_set, (n + 1) * sizeof(bool));
	if (peers != NULL)
		cfg->peers = peers;
	if (rs != NULL)
		ps->peer_role_set = rs;
	bool *hs = realloc(ps->peer_host_set, (n + 1) * sizeof(bool));
	if (hs != NULL)
		ps->peer_host_set = hs;
	if (peers == NULL || rs == NULL || hs == NULL)
		return NULL;
	memset(&peers[n], 0, sizeof(peers[n]));
	peers[n].name = strdup(name);
	rs[n] = hs[n] = false;
	cfg->npeers = n + 1;
	return peers[n].name ? &peers[n] : NULL;
}

static int set_string(struct parse_state *ps, char **slot, const char *section, const char *key,
                      const char *value)
{
	if (*value == '\0')
		return fail_at(ps, "[%s] %s is empty; give it a value", section, key);
	*slot = strdup(value);
	return *slot ? 0 : cs_fail(ps->err, CS_EIO, "out of memory");
}

/* Integer keys of [node], with their bounds. */
struct int_slot {
	const char *key;
	size_t offset;
	long min, max;
	const char *unit;
};

static const struct int_slot int_keys[] = {
    {"tls_workers", offsetof(cs_config, tls_workers), 1, 256, "worker threads"},
    {"tls_handshake_timeout", offsetof(cs_config, tls_handshake_timeout_ms), 100, 600000,
     "milliseconds"},
    {"tls_max_connections", offsetof(cs_config, tls_max_connections), 1, 1000000, "connections"},
    {"tls_max_connections_per_ip", offsetof(cs_config, tls_max_connections_per_ip), 1, 1000000,
     "connections"},
    {"log_retain", offsetof(cs_config, log_retain), 1, 100000000, "log entries"},
    {"store_map_size", offsetof(cs_config, store_map_size_mib), 1, 1 << 20, "MiB"},
    {"core_dumps", offsetof(cs_config, core_dumps), 0, 1, "(0: off, 1: on)"},
};
#define NINT_KEYS (sizeof(int_keys) / sizeof(int_keys[0]))

static int set_int(struct parse_state *ps, const struct int_slot *is, const char *value)
{
	char *end;
	long v = strtol(value, &end, 10);

	if (*value == '\0' || *end != '\0' || v < is->min || v > is->max)
		return fail_at(ps, "[node] %s = %s: give a whole number of %s from %ld to %ld",
		               is->key, value, is->unit, is->min, is->max);
	*(int *)((char *)ps->cfg + is->offset) = (int)v;
	return 0;
}

/* tls_listen repeats: one listener per line, IPv4 "ADDR:PORT" or IPv6
 * "[ADDR]:PORT"; the TLS endpoint checks the address itself. */
static int add_listen(struct parse_state *ps, const char *value)
{
	cs_config *cfg = ps->cfg;
	char host[256];
	unsigned port;
	char **list;

	if (!cs_hostport_split(value, host, sizeof(host), &port, true))
		return fail_at(ps,
		               "[node] tls_listen = %s: write ADDR:PORT, as in 0.0.0.0:8443 "
		               "or [::]:8443",
		               value);
	list = realloc(cfg->tls_listen, (cfg->ntls_listen + 1) * sizeof(*list));
	if (list == NULL)
		return cs_fail(ps->err, CS_EIO, "out of memory");
	cfg->tls_listen = list;
	list[cfg->ntls_listen] = strdup(value);
	if (list[cfg->ntls_listen] == NULL)
		return cs_fail(ps->err, CS_EIO, "out of memory");
	cfg->ntls_listen++;
	return 0;
}

static int peer_key(struct parse_state *ps, const char *section, const char *peer_name,
                    const char *key, const char *value)
{
	cs_peer *peer = find_or_add_peer(ps, peer_name);
	size_t i;

	if (peer == NULL)
		return cs_fail(ps->err, CS_EIO, "out of memory");
	i = (size_t)(peer - ps->cfg->peers);
	if (strcmp(key, "role") == 0) {
		if (cs_role_parse(value, &peer->role) < 0)
			return fail_at(ps, "[%s] role = %s: use primary, backup or traffic",
			               section, value);
		ps->peer_role_set[i] = true;
		return 0;
	}
	if (strcmp(key, "hostname") == 0) {
		ps->peer_host_set[i] = true;
		return set_string(ps, &peer->hostname, section, key, value);
	}
	if (strcmp(key, "repl_endpoint") == 0)
		return set_string(ps, &peer->repl_endpoint, section, key, value);
	if (strcmp(key, "tls_endpoint") == 0 || strcmp(key, "http_endpoint") == 0) {
		bool tls = key[0] == 't';
		char host[256];
		unsigned port;

		if (!cs_hostport_split(value, host, sizeof(host), &port, false))
			return fail_at(ps,
			               "[%s] %s = %s: write HOST:PORT, as in "
			               "backup.example.test:%s",
			               section, key, value, tls ? "8443" : "80");
		return set_string(ps, tls ? &peer->tls_endpoint : &peer->http_endpoint, section,
		                  key, value);
	}
	if (strcmp(key, "curve_public_key") == 0) {
		uint8_t k[REPL_KEY_LEN];

		if (repl_key_parse(value, k, NULL) < 0)
			return fail_at(ps,
			               "[%s] curve_public_key: give the 40 Z85 characters "
			               "`certsync keygen` printed for that node",
			               section);
		return set_string(ps, &peer->curve_public_key, section, key, value);
	}
	return fail_at(ps,
	               "unknown key '%s' in [%s]; a peer has role, hostname, repl_endpoint, "
	               "curve_public_key, tls_endpoint and http_endpoint",
	               key, section);
}

/* Every key but tls_listen may appear once per section: a second value would
 * silently win, and the operator would not know which one is in force. */
static int once(struct parse_state *ps, const char *section, const char *key)
{
	char id[512];

	if (strcmp(key, "tls_listen") == 0 ||
	    (strcmp(section, "alerts") == 0 && mon_config_repeatable(key)) ||
	    (strcmp(section, "acme") == 0 && strcmp(key, "contact") == 0))
		return 0;
	snprintf(id, sizeof(id), "%s\n%s", section, key);
	for (size_t i = 0; i < ps->nseen; i++)
		if (strcmp(ps->seen[i], id) == 0)
			return fail_at(ps, "[%s] %s is given twice; keep one", section, key);
	if (ps->nseen == sizeof(ps->seen) / sizeof(ps->seen[0]))
		return fail_at(ps, "too many keys; see the configuration keys in README.md");
	ps->seen[ps->nseen] = strdup(id);
	if (ps->seen[ps->nseen] == NULL)
		return cs_fail(ps->err, CS_EIO, "out of memory");
	ps->nseen++;
	return 0;
}

static int handle(void *user, const char *section, const char *key, const char *value)
{
	struct parse_state *ps = user;
	cs_config *cfg = ps->cfg;
	const char *peer_name;
	char peer_section[80]; /* "peer NAME": [peer  NAME] is the same peer */

	if (check_section(ps, section, &peer_name) < 0)
		return 0;
	if (peer_name != NULL) {
		snprintf(peer_section, sizeof(peer_section), "peer %s", peer_name);
		return once(ps, peer_section, key) == 0 &&
		       peer_key(ps, section, peer_name, key, value) == 0;
	}
	if (once(ps, section, key) < 0)
		return 0;
	if (strcmp(section, "alerts") == 0 || strcmp(section, "acme") == 0) {
		if ((section[1] == 'l' ? mon_config_set(&cfg->alerts, key, value, ps->err)
		                       : cs_config_acme_set(&cfg->acme, key, value, ps->err)) < 0)
			cs_err_prefix(ps->err, "%s:%d: ", cfg->path, ps->line);
		return ps->err->code == CS_OK;
	}
	for (size_t i = 0; i < NSTRING_KEYS; i++) {
		const struct key_slot *ks = &string_keys[i];

		if (strcmp(section, ks->section) != 0 || strcmp(key, ks->key) != 0)
			continue;
		if (ks->offset == offsetof(cs_config, passphrase_file))
			cfg->passphrase_file_line = ps->line;
		return set_string(ps, (char **)((char *)cfg + ks->offset), section, key, value) ==
		       0;
	}
	if (strcmp(section, "node") == 0 && strcmp(key, "role") == 0) {
		if (cs_role_parse(value, &cfg->role) < 0)
			return fail_at(ps, "[node] role = %s: use primary, backup or traffic",
			               value) == 0;
		ps->role_set = true;
		return 1;
	}
	if (strcmp(section, "node") == 0 && strcmp(key, "tls_listen") == 0)
		return add_listen(ps, value) == 0;
	for (size_t i = 0; i < NINT_KEYS; i++)
		if (strcmp(section, "node") == 0 && strcmp(key, int_keys[i].key) == 0)
			return set_int(ps, &int_keys[i], value) == 0;
	if (strcmp(section, "node") == 0 && strcmp(key, "log_level") == 0) {
		if (cs_log_parse_level(value, &cfg->log_level) < 0)
			return fail_at(ps, "[node] log_level = %s: use debug, info, warn or error",
			               value) == 0;
		return 1;
	}
	fail_at(ps, "unknown key '%s' in [%s]; see the configuration keys in README.md", key,
	        section);
	return 0;
}

/* fgets for inih that counts lines and checks section headers as they pass:
 * a header with no keys under it never reaches the handler. */
static char *read_line(char *buf, int size, void *stream)
{
	struct parse_state *ps = stream;
	const char *peer_name, *p, *start = ps->text + ps->pos, *nl;
	char section[256];
	size_t n, take;

	if (ps->pos >= ps->len)
		return NULL;
	nl = memchr(start, '\n', ps->len - ps->pos);
	take = nl != NULL ? (size_t)(nl - start) + 1 : ps->len - ps->pos;
	ps->pos += take;
	ps->line++;
	n = take - (nl != NULL);
	if (n > 0 && start[n - 1] == '\r')
		n--;
	if (memchr(start, '\0', take) != NULL)
		fail_at(ps,
		        "this line holds a NUL byte, which would cut its value short; remove it");
	else if (n > CONFIG_MAX_LINE || take >= (size_t)size)
		fail_at(ps, "this line is longer than %d characters; shorten it", CONFIG_MAX_LINE);
	if (ps->err->code != CS_OK) {
		buf[0] = '\0';
		return NULL; /* stop: the error is in ps->err */
	}
	memcpy(buf, start, take);
	buf[take] = '\0';
	for (p = buf; *p == ' ' || *p == '\t'; p++)
		;
	if (*p != '[')
		return buf;
	n = strcspn(p + 1, "]");
	if (p[1 + n] != ']' || n >= sizeof(section))
		return buf; /* inih reports the malformed header */
	memcpy(section, p + 1, n);
	section[n] = '\0';
	if (check_section(ps, section, &peer_name) < 0) {
		buf[0] = '\0';
		return NULL; /* stop: the error is already in ps->err */
	}
	return buf;
}

/* With repl_listen, every peer is in the allowlist, and this node connects
 * to each primary-capable one. */
static int check_replication(const cs_config *cfg, cs_err *err)
{
	if (cfg->curve_secret_file == NULL)
		return cs_fail(
		    err, CS_EUSAGE,
		    "%s: [node] repl_listen needs curve_secret_file, this node's key pair "
		    "(make it with `certsync keygen -o FILE`)",
		    cfg->path);
	for (size_t i = 0; i < cfg->npeers; i++) {
		const cs_peer *p = &cfg->peers[i];

		if (p->curve_public_key == NULL)
			return cs_fail(err, CS_EUSAGE,
			               "%s: [peer %s] needs curve_public_key for replication",
			               cfg->path, p->name);
		if (p->role != CS_ROLE_TRAFFIC && p->repl_endpoint == NULL)
			return cs_fail(err, CS_EUSAGE,
			               "%s: [peer %s] is a %s and needs repl_endpoint, as in "
			               "tcp://HOST:7700",
			               cfg->path, p->name, cs_role_name(p->role));
	}
	return 0;
}

/* Paths are absolute because the agent runs from wherever a service
 * manager starts it; host names are real because certificates are checked
 * against them. */
static int check_values(const cs_config *cfg, cs_err *err)
{
	const struct {
		const char *key, *value;
	} paths[] = {{"data_dir", cfg->data_dir},
	             {"control_socket", cfg->control_socket},
	             {"passphrase_file", cfg->passphrase_file},
	             {"next_passphrase_file", cfg->next_passphrase_file},
	             {"curve_secret_file", cfg->curve_secret_file}};
	const char *why;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (paths[i].value != NULL && paths[i].value[0] != '/')
			return cs_fail(
			    err, CS_EUSAGE,
			    "%s: [node] %s = %s is a relative path; give an absolute one",
			    cfg->path, paths[i].key, paths[i].value);
	if ((why = pki_hostname_problem(cfg->hostname)) != NULL)
		return cs_fail(err, CS_EUSAGE, "%s: [node] hostname = %s: %s", cfg->path,
		               cfg->hostname, why);
	if ((why = pki_hostname_problem(cfg->site_hostname)) != NULL)
		return cs_fail(err, CS_EUSAGE, "%s: [cluster] site_hostname = %s: %s", cfg->path,
		               cfg->site_hostname, why);
	for (size_t i = 0; i < cfg->npeers; i++)
		if ((why = pki_hostname_problem(cfg->peers[i].hostname)) != NULL)
			return cs_fail(err, CS_EUSAGE, "%s: [peer %s] hostname = %s: %s", cfg->path,
			               cfg->peers[i].name, cfg->peers[i].hostname, why);
	return 0;
}

static int check_complete(struct parse_state *ps)
{
	cs_config *cfg = ps->cfg;

	for (size_t i = 0; i < NSTRING_KEYS; i++) {
		const struct key_slot *ks = &string_keys[i];

		if (ks->required && *(char **)((char *)cfg + ks->offset) == NULL)
			return cs_fail(ps->err, CS_EUSAGE,
			               "%s: [%s] %s is missing; add it (see README.md, "
			               "Configuration)",
			               cfg->path, ks->section, ks->key);
	}
	if (!ps->role_set)
		return cs_fail(ps->err, CS_EUSAGE,
		               "%s: [node] role is missing; add role = primary, backup or traffic",
		               cfg->path);
	for (size_t i = 0; i < cfg->npeers; i++) {
		if (!ps->peer_role_set[i] || !ps->peer_host_set[i])
			return cs_fail(ps->err, CS_EUSAGE,
			               "%s: [peer %s] needs both role and hostname", cfg->path,
			               cfg->peers[i].name);
		if (strcmp(cfg->peers[i].name, cfg->name) == 0)
			return cs_fail(ps->err, CS_EUSAGE,
			               "%s: [peer %s] has this node's own name; peers are the "
			               "other nodes",
			               cfg->path, cfg->name);
	}
	if (check_values(cfg, ps->err) < 0)
		return -1;
	if (mon_admin_config_check(cfg->admin_listen, cfg->admin_token_file, ps->err) < 0 ||
	    mon_config_check(&cfg->alerts, ps->err) < 0 || cs_config_acme_check(cfg, ps->err) < 0)
		return cs_err_prefix(ps->err, "%s: ", cfg->path);
	return cfg->repl_listen != NULL ? check_replication(cfg, ps->err) : 0;
}

static int read_text(const char *path, char **text, size_t *len, cs_err *err)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	if (f == NULL)
		return cs_fail(err, CS_EUSAGE, "%s: cannot read the configuration: %s", path,
		               strerror(errno));
	buf = malloc(CONFIG_MAX_SIZE + 1);
	n = buf != NULL ? fread(buf, 1, CONFIG_MAX_SIZE + 1, f) : 0;
	if (buf == NULL || ferror(f) || n > CONFIG_MAX_SIZE) {
		fclose(f);
		free(buf);
		return cs_fail(err, CS_EUSAGE, "%s: cannot read the configuration: %s", path,
		               n > CONFIG_MAX_SIZE ? "it is larger than 1 MiB" : "read error");
	}
	fclose(f);
	*text = buf;
	*len = n;
	return 0;
}

int cs_config_load(cs_config *cfg, const char *path, cs_err *err)
{
	struct parse_state ps = {.cfg = cfg, .err = err};
	char *text = NULL;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = CS_LOG_INFO;
	mon_config_init(&cfg->alerts);
	cfg->path = strdup(path);
	if (cfg->path == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	if (read_text(path, &text, &ps.len, err) < 0) {
		cs_config_free(cfg);
		return -1;
	}
	ps.text = text;
	err->code = CS_OK;
	ini_allow_multiline = false;
	ini_stop_on_first_error = true;
	/* A heap line buffer of CONFIG_MAX_LINE: long paths fit (Debian's
	 * inih otherwise reads 200 bytes at a time). */
	ini_use_stack = false;
	ini_allow_realloc = false;
	ini_initial_alloc = ini_max_line = CONFIG_MAX_LINE + 3;
	rc = ini_parse_stream(read_line, &ps, handle, &ps);
	free(text);
	if (rc != 0 && err->code == CS_OK)
		cs_fail(err, CS_EUSAGE,
		        "%s:%d: cannot parse this line; write [section] or key = value", path,
		        rc > 0 ? rc : ps.line);
	if (rc == 0 && err->code == CS_OK)
		check_complete(&ps);
	for (size_t i = 0; i < ps.nseen; i++)
		free(ps.seen[i]);
	free(ps.peer_role_set);
	free(ps.peer_host_set);
	if (err->code != CS_OK) {
		cs_config_free(cfg);
		return -1;
	}
	return 0;
}

void cs_config_free(cs_config *cfg)
{
	free(cfg->path);
	free(cfg->name);
	free(cfg->hostname);
	free(cfg->data_dir);
	free(cfg->control_socket);
	free(cfg->passphrase_file);
	free(cfg->site_hostname);
	free(cfg->repl_listen);
	free(cfg->curve_secret_file);
	free(cfg->admin_listen);
	free(cfg->admin_token_file);
	free(cfg->http_listen);
	cs_config_acme_free(&cfg->acme);
	free(cfg->next_passphrase_file);
	for (size_t i = 0; i < cfg->ntls_listen; i++)
		free(cfg->tls_listen[i]);
	free(cfg->tls_listen);
	cs_config_peers_free(cfg->peers, cfg->npeers);
	mon_config_free(&cfg->alerts);
	memset(cfg, 0, sizeof(*cfg));
}

/* owner_only: a file group or others may read is refused, as ssh refuses
 * such a key: the cluster passphrase opens every key of the cluster. */
static int read_secret(const char *what, const char *path, bool allow_empty, bool owner_only,
                       char **secret, size_t *len, cs_err *err)
{
	enum { MAX_SECRET = 1024 };
	struct stat st;
	char *buf;
	ssize_t got;
	size_t total = 0, n;
	int fd;

	/* O_NONBLOCK: opening a FIFO must not wait for a writer forever. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return cs_fail(err, CS_EUSAGE, "%s %s: cannot read it: %s; give a readable file",
		               what, path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return cs_fail(err, CS_EUSAGE,
		               "%s %s is not a regular file (a FIFO, device or folder); write the "
		               "secret in a regular file",
		               what, path);
	}
	if (owner_only && (st.st_mode & 077) != 0) {
		close(fd);
		return cs_fail(err, CS_EUSAGE,
		               "%s %s can be read by group or others (mode %04o); make it readable "
		               "by its owner alone: chmod 600 %s",
		               what, path, (unsigned)(st.st_mode & 07777), path);
	}
	buf = sodium_malloc(MAX_SECRET + 2);
	if (buf == NULL) {
		close(fd);
		return cs_fail(err, CS_EIO, "out of memory");
	}
	/* Read straight into wiped memory: no copy in a stdio buffer. */
	while (total < MAX_SECRET + 1 && memchr(buf, '\n', total) == NULL &&
	       ((got = read(fd, buf + total, MAX_SECRET + 1 - total)) > 0 ||
	        (got < 0 && errno == EINTR)))
		total += got > 0 ? (size_t)got : 0;
	close(fd);
	for (n = 0; n < total && buf[n] != '\n' && buf[n] != '\r'; n++)
		;
	if (memchr(buf, '\0', n) != NULL) {
		cs_secret_free(buf);
		return cs_fail(err, CS_EUSAGE,
		               "%s %s: the first line holds a NUL byte, which would cut the secret "
		               "short; write it without one",
		               what, path);
	}
	buf[n] = '\0';
	if (n > MAX_SECRET || (n == 0 && !allow_empty)) {
		cs_secret_free(buf);
		return cs_fail(err, CS_EUSAGE, "%s %s: %s", what, path,
		               n ? "the first line is longer than 1024 bytes"
		                 : "the first line is empty; write the secret in it");
	}
	*secret = buf;
	*len = n;
	return 0;
}

int cs_secret_file_read(const char *what, const char *path, bool allow_empty, char **secret,
                        size_t *len, cs_err *err)
{
	return read_secret(what, path, allow_empty, false, secret, len, err);
}

int cs_passphrase_file_read(const cs_config *cfg, char **secret, size_t *len, cs_err *err)
{
	return read_secret("passphrase_file", cfg->passphrase_file, false, true, secret, len, err);
}

int cs_passphrase_read(const char *what, const char *path, char **secret, size_t *len, cs_err *err)
{
	return read_secret(what, path, false, true, secret, len, err);
}

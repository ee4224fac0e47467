/* cli_import.c — `certsync import FILE|DIR...`: which files a command
 * imports (a folder's regular files, in byte order of their names), and
 * how they reach the agent.  A control request holds at most
 * CS_CONTROL_MAX_REQUEST, so the files of a large command go in parts of at
 * most PART_BYTES (base64): the agent decodes each part as it comes and
 * commits the whole command with the last one, or nothing of it. */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "control.h"

/* A part's file data in base64: well under the control request's bound,
 * and large enough that 100,000 small files take a few dozen requests. */
#define PART_BYTES ((size_t)8 << 20)

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends DIR's regular files (a symbolic link counts as what it names) to
 * paths, in byte order of their names: not its subfolders, nor the files
 * whose name starts with a dot. */
static int add_folder(json_t *paths, const char *dir, cs_err *err)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0, before = json_array_size(paths);
	int rc = 0;

	if (d == NULL)
		return cs_fail(err, CS_EINPUT, "%s: cannot read the folder: %s", dir,
		               strerror(errno));
	while (rc == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **more = realloc(names, (cap = cap ? 2 * cap : 256) * sizeof(*names));

			if (more == NULL) {
				rc = cs_fail(err, CS_EIO, "out of memory");
				break;
			}
			names = more;
		}
		if ((names[n] = strdup(e->d_name)) == NULL)
			rc = cs_fail(err, CS_EIO, "out of memory");
		else
			n++;
	}
	closedir(d);
	if (rc == 0 && n > 0)
		qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		char *path = NULL;

		if (rc == 0 && asprintf(&path, "%s/%s", dir, names[i]) < 0)
			rc = cs_fail(err, CS_EIO, "out of memory");
		else if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
			json_array_append_new(paths, json_string(path));
		free(path);
		free(names[i]);
	}
	free(names);
	if (rc == 0 && json_array_size(paths) == before)
		rc = cs_fail(err, CS_EINPUT,
		             "%s: the folder holds no file to import (its subfolders and hidden "
		             "files are not read)",
		             dir);
	return rc;
}

int cli_parse_import(const struct cli_command *cmd, int argc, char **argv, json_t *args,
                     cs_err *err)
{
	static const struct option opts[] = {
	    {"password-file", required_argument, NULL, 'p'},
	    {"name", required_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0},
	};
	json_t *paths = json_array();
	struct stat st;
	int c;

	json_object_set_new(args, "paths", paths);
	while ((c = cli_next_flag(cmd, argc, argv, "", opts, err)) > 0) {
		if (c == 'p') {
			if (cli_secret_arg(args, "password", "--password-file", optarg, true, err) <
			    0)
				return -1;
		} else {
			json_object_set_new(args, "name", json_string(optarg));
		}
	}
	if (c == 0)
		return -1;
	if (optind == argc)
		return cli_usage_error(cmd, err, "give at least one FILE or DIR");
	for (int i = optind; i < argc; i++) {
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			if (add_folder(paths, argv[i], err) < 0)
				return -1;
		} else {
			json_array_append_new(paths, json_string(argv[i]));
		}
	}
	return 0;
}

/* One request of the command: files, and what the part says about the
 * command (the first names the password and --name, the last --wait). */
static int send_part(const char *sock, json_t *args, json_t *files, bool first, bool last,
                     const char *session, json_t **result, cs_err *err)
{
	json_t *part = json_deep_copy(args);
	int rc;

	if (part == NULL)
		return cs_fail(err, CS_EIO, "out of memory");
	json_object_del(part, "paths");
	if (!first) {
		json_object_del(part, "password");
		json_object_del(part, "name");
		json_object_set_new(part, "session", json_string(session));
	}
	if (!last) {
		json_object_del(part, "wait");
		json_object_set_new(part, "more", json_true());
	}
	json_object_set(part, "files", files);
	rc = cs_control_call(sock, "import", part, result, err);
	json_decref(part);
	return rc;
}

/* Whether every file can be read, before the first part goes: a command
 * cut short by an unreadable file would leave its parts on the agent. */
static int check_readable(json_t *paths, cs_err *err)
{
	for (size_t i = 0; i < json_array_size(paths); i++) {
		const char *path = json_string_value(json_array_get(paths, i));
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			return cs_fail(err, CS_EINPUT,
			               "%s: cannot read it: %s; give a readable file", path,
			               strerror(errno));
		close(fd);
	}
	return 0;
}

int cli_import_call(const char *sock, json_t *args, json_t **result, cs_err *err)
{
	json_t *paths = json_object_get(args, "paths"), *files = json_array(), *answer = NULL;
	size_t n = json_array_size(paths), bytes = 0;
	char session[64] = "";
	bool first = true;
	int rc = json_array_size(paths) > 1 ? check_readable(paths, err) : 0;

	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *path = json_string_value(json_array_get(paths, i));
		uint8_t *data = NULL;
		size_t len = 0;
		json_t *b64;

		if (cli_read_file(path, &data, &len, err) < 0) {
			rc = -1;
			break;
		}
		b64 = cs_control_base64(data, len);
		sodium_free(data);
		if (b64 == NULL) {
			rc = cs_fail(err, CS_EIO, "out of memory");
			break;
		}
		/* a full part goes before this file joins the next one */
		if (json_array_size(files) > 0 && bytes + json_string_length(b64) > PART_BYTES) {
			rc = send_part(sock, args, files, first, false, session, &answer, err);
			if (rc == 0)
				snprintf(session, sizeof(session), "%s",
				         cli_str(answer, "session"));
			json_decref(answer);
			answer = NULL;
			json_array_clear(files);
			bytes = 0;
			first = false;
		}
		bytes += json_string_length(b64);
		json_array_append_new(files, json_pack("{s:s, s:o}", "name", path, "data", b64));
	}
	if (rc == 0)
		rc = send_part(sock, args, files, first, true, session, result, err);
	json_decref(files);
	return rc;
}

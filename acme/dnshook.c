/* dnshook.c — the dns-01 hook: an operator's program that publishes the TXT
 * record with a DNS service that has no RFC 2136, run as
 *
 *     HOOK add|remove _acme-challenge.NAME VALUE
 *
 * directly (fork and exec, no shell, so nothing in NAME or VALUE is ever
 * interpreted), in its own process group, and killed with that group when it
 * outlives its time.  What it prints (the first 400 bytes) goes into the
 * error when it fails, so the operator sees the hook's own words. */
#include "acme_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HOOK_TIMEOUT_MS 60000
#define HOOK_OUTPUT_MAX 400

static int check_hook(const char *hook, acme_err *e)
{
	struct stat st;

	if (hook[0] != '/')
		return acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		                 "dns_hook \"%.200s\" is not an absolute path; give the full path "
		                 "of the program (it is run directly, without a shell)",
		                 hook);
	if (stat(hook, &st) != 0)
		return acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR, "dns_hook %.200s: %s", hook,
		                 strerror(errno));
	if (!S_ISREG(st.st_mode) || access(hook, X_OK) != 0)
		return acme_fail(e, CS_EUSAGE, ACME_ERR_OPERATOR,
		                 "dns_hook %.200s is not an executable file; chmod +x it or point "
		                 "dns_hook at the program",
		                 hook);
	return 0;
}

/* In the child: stdin from /dev/null, stdout and stderr into the pipe. */
static void exec_child(const char *hook, char *const argv[], int out)
{
	int devnull = open("/dev/null", O_RDONLY);
	sigset_t none;

	/* The hook gets the default signals, not the agent's: it ignores
	 * SIGPIPE and its threads block SIGHUP, and both survive exec. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	setpgid(0, 0);
	if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
		_exit(126);
	closefrom(3);
	execv(hook, argv);
	_exit(127);
}

/* The output, made printable, into buf. */
static void printable(char *buf, size_t n)
{
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] == 0x7f)
			buf[i] = ' ';
}

int acme_dns_hook(const char *hook, bool add, const char *name, const char *value, long timeout_ms,
                  acme_err *e)
{
	char record[300], out[HOOK_OUTPUT_MAX + 1];
	char *argv[] = {(char *)hook, add ? "add" : "remove", record, (char *)value, NULL};
	long long deadline;
	size_t nout = 0;
	int fds[2], status = 0;
	bool open_pipe = true, killed = false;
	pid_t pid, w = 0;

	if (check_hook(hook, e) != 0)
		return -1;
	if (strncmp(name, "*.", 2) == 0)
		name += 2;
	if ((size_t)snprintf(record, sizeof(record), "_acme-challenge.%s", name) >= sizeof(record))
		return acme_fail(e, CS_EINPUT, ACME_ERR_FATAL,
		                 "dns-01: the name %.200s is too long", name);
	if (pipe2(fds, O_CLOEXEC) != 0)
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "dns_hook: pipe: %s",
		                 strerror(errno));
	if ((pid = fork()) < 0) {
		close(fds[0]);
		close(fds[1]);
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "dns_hook: fork: %s",
		                 strerror(errno));
	}
	if (pid == 0)
		exec_child(hook, argv, fds[1]);
	setpgid(pid, pid); /* as the child does, so a kill at once reaches the group */
	close(fds[1]);
	deadline = cs_mono_ms() + (timeout_ms > 0 ? timeout_ms : HOOK_TIMEOUT_MS);
	/* the hook may leave children holding the pipe open, so its own exit
	 * ends the wait, not the pipe's end */
	while ((w = waitpid(pid, &status, WNOHANG)) == 0 || (w < 0 && errno == EINTR)) {
		long long left = deadline - cs_mono_ms();
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		char sink[512];
		ssize_t n;

		if (left <= 0) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			w = waitpid(pid, &status, 0);
			killed = true;
			break;
		}
		if (!open_pipe) { /* then its exit is polled alone, by short naps */
			poll(NULL, 0, left < 50 ? (int)left : 50);
			continue;
		}
		if (poll(&pfd, 1, left < 50 ? (int)left : 50) <= 0)
			continue;
		/* past the first bytes, the rest is drained so the hook never
		 * blocks on a full pipe */
		n = read(fds[0], nout < HOOK_OUTPUT_MAX ? out + nout : sink,
		         nout < HOOK_OUTPUT_MAX ? HOOK_OUTPUT_MAX - nout : sizeof(sink));
		if (n > 0 && nout < HOOK_OUTPUT_MAX)
			nout += (size_t)n;
		else if (n == 0)
			open_pipe = false;
	}
	/* what it wrote just before exiting */
	while (!killed && open_pipe && nout < HOOK_OUTPUT_MAX) {
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		ssize_t n;

		if (poll(&pfd, 1, 0) <= 0 ||
		    (n = read(fds[0], out + nout, HOOK_OUTPUT_MAX - nout)) <= 0)
			break;
		nout += (size_t)n;
	}
	close(fds[0]);
	printable(out, nout);
	if (killed)
		return acme_fail(
		    e, CS_EIO, ACME_ERR_TRANSIENT,
		    "dns_hook %s %s %s did not finish within %ld ms and was killed%s%s", hook,
		    argv[1], record, timeout_ms > 0 ? timeout_ms : HOOK_TIMEOUT_MS,
		    out[0] ? "; it printed: " : "", out);
	if (w < 0)
		return acme_fail(e, CS_EIO, ACME_ERR_TRANSIENT, "dns_hook %s: waitpid: %s", hook,
		                 strerror(errno));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && nout == 0)
		return acme_fail(
		    e, CS_EUSAGE, ACME_ERR_OPERATOR,
		    "dns_hook %s could not be run (exec failed); check it is a program "
		    "this system can execute",
		    hook);
	if (WIFSIGNALED(status))
		return acme_fail(e, CS_EREFUSED, ACME_ERR_OPERATOR,
		                 "dns_hook %s %s %s was killed by signal %d%s%s", hook, argv[1],
		                 record, WTERMSIG(status), out[0] ? "; it printed: " : "", out);
	return acme_fail(e, CS_EREFUSED, ACME_ERR_OPERATOR,
	                 "dns_hook %s %s %s failed with exit status %d%s%s", hook, argv[1], record,
	                 WEXITSTATUS(status), out[0] ? "; it printed: " : "", out);
}

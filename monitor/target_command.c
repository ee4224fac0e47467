/* target_command.c — the `command` target: the configured program runs
 * directly (posix_spawn, no shell, so nothing in an alert is ever
 * interpreted), reads the alert's JSON on standard input, and has the
 * delivery timeout to exit 0; past it, it is killed. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "monitor_int.h"

#include "../common/clock.h"

extern char **environ;

/* Writes all of json to fd before the deadline; a program that does not
 * read its input is not waited for beyond it. */
static int feed(int fd, const char *json, long long deadline)
{
	size_t len = strlen(json), off = 0;

	while (off < len) {
		struct pollfd p = {fd, POLLOUT, 0};
		long long left = deadline - cs_mono_ms();
		ssize_t w;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -1;
		w = write(fd, json + off, len - off);
		if (w < 0 && errno != EINTR && errno != EAGAIN)
			return -1;
		if (w > 0)
			off += (size_t)w;
	}
	return 0;
}

/* Waits for pid until the deadline; kills it past that.  The exit status,
 * or -1 when it was killed or died of a signal. */
static int reap(pid_t pid, long long deadline, bool *timed_out)
{
	int status;

	*timed_out = false;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (cs_mono_ms() >= deadline) {
			*timed_out = true;
			kill(-pid, SIGKILL); /* its group: what it started goes too */
			waitpid(pid, &status, 0);
			return -1;
		}
		nanosleep(&(struct timespec){0, 20 * 1000000}, NULL);
	}
}

int mon_deliver_command(const mon_config *cfg, const mon_secrets *sec, const char *json,
                        const char *subject, char *why, size_t whylen)
{
	long long deadline = cs_mono_ms() + cfg->timeout_ms;
	char *argv[] = {cfg->command, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, piped;
	int pipefd[2], rc, status;
	bool timed_out;
	pid_t pid;

	(void)sec;
	(void)subject;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "cannot make a pipe: %s", strerror(errno));
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[0], STDIN_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1); /* not the agent's */
	/* The agent ignores SIGPIPE; the program gets the default, and no
	 * signal the delivery thread blocks. */
	sigemptyset(&none);
	sigemptyset(&piped);
	sigaddset(&piped, SIGPIPE);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &piped);
	posix_spawnattr_setpgroup(&attr, 0); /* a group of its own, killed whole at the bound */
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
	                                    POSIX_SPAWN_SETPGROUP);
	rc = posix_spawn(&pid, cfg->command, &fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[0]);
	if (rc != 0) {
		close(pipefd[1]);
		snprintf(why, whylen, "cannot run %s: %s", cfg->command, strerror(rc));
		return -1;
	}
	fcntl(pipefd[1], F_SETFL, O_NONBLOCK);
	feed(pipefd[1], json, deadline); /* what it did not read shows in its status */
	close(pipefd[1]);
	status = reap(pid, deadline, &timed_out);
	if (status == 0)
		return 0;
	if (timed_out)
		snprintf(why, whylen, "%s did not finish within %d ms and was killed", cfg->command,
		         cfg->timeout_ms);
	else if (status < 0)
		snprintf(why, whylen, "%s was ended by a signal", cfg->command);
	else
		snprintf(why, whylen, "%s exited with status %d", cfg->command, status);
	return -1;
}

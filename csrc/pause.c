/*
 * nspod-pause: the pod's infra process. It holds the pod's namespaces by existing,
 * exits 0 on SIGTERM/SIGINT, and reaps every zombie when it is PID 1 of a shared pid
 * namespace (orphans of any container are re-parented to it there).
 * Learned from Kubernetes' build/pause/linux/pause.c and catatonit: no allocation,
 * no configuration, a distinct exit code for each setup failure.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "unknown"
#endif

static void sigdown(int signo)
{
	(void)signo;
	/* _exit: exit() would run atexit handlers from inside a signal handler. */
	_exit(0);
}

static void sigreap(int signo)
{
	int saved = errno;
	(void)signo;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

int main(int argc, char **argv)
{
	struct sigaction down = { .sa_handler = sigdown };
	struct sigaction reap = { .sa_handler = sigreap, .sa_flags = SA_NOCLDSTOP | SA_RESTART };

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		printf("nspod-pause %s\n", VERSION);
		return 0;
	}
	/* Do not pin the directory nspod started us in (it may be a mount to remove). */
	if (chdir("/") < 0)
		return 4;
	sigemptyset(&down.sa_mask);
	sigemptyset(&reap.sa_mask);
	if (sigaction(SIGINT, &down, NULL) < 0)
		return 1;
	if (sigaction(SIGTERM, &down, NULL) < 0)
		return 2;
	if (sigaction(SIGCHLD, &reap, NULL) < 0)
		return 3;
	/* Zombies that existed before the handler was installed. */
	sigreap(SIGCHLD);
	for (;;)
		pause();
	return 42;
}

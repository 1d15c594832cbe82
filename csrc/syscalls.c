/* C side of nsPod._syscalls: only what glibc lacks a wrapper for. */
#define _GNU_SOURCE
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NSPOD_ABI "nspod-syscalls-1"

static int nspod_pivot_root(const char *new_root, const char *put_old)
{
	return syscall(SYS_pivot_root, new_root, put_old);
}

static const char *nspod_abi(void)
{
	return NSPOD_ABI;
}

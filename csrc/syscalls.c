/* C side of nsPod._syscalls: only what glibc lacks a wrapper for. */
#define _GNU_SOURCE
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>
#include <string.h>

#define NSPOD_ABI "nspod-syscalls-2"

static int nspod_pivot_root(const char *new_root, const char *put_old)
{
	return syscall(SYS_pivot_root, new_root, put_old);
}

/* openat2(2): glibc 2.36 has no wrapper. */
static int nspod_openat2(int dirfd, const char *path, unsigned long long flags,
			 unsigned long long mode, unsigned long long resolve)
{
	struct open_how how;

	memset(&how, 0, sizeof(how));
	how.flags = flags;
	how.mode = mode;
	how.resolve = resolve;
	return syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* bpf(2): the caller builds `union bpf_attr` as bytes (nsPod/kernel side). */
static long nspod_bpf(int cmd, void *attr, unsigned int size)
{
	return syscall(SYS_bpf, cmd, attr, size);
}

static const char *nspod_abi(void)
{
	return NSPOD_ABI;
}

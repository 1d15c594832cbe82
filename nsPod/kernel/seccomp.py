"""Kubernetes' RuntimeDefault seccomp profile: the only importer of pyseccomp.

Why pyseccomp: the filter is compiled by libseccomp, the library runc, crun and containerd's
profiles go through (and which every Debian system has, as apt depends on it), rather than
assembled by hand as BPF. Of its Python bindings, pyseccomp installs cleanly from PyPI as a
pure-Python wheel (ctypes, no compiler, no build dependency) and mirrors the API of
libseccomp's own bindings (Debian's python3-seccomp), which a virtualenv built on another
Python cannot import. Its import finds libseccomp with ldconfig and loads it, so it must
happen while the host's files are visible: before a container's mount namespace changes, or in
`exec`'s parent (container.prepare_security does it).

The profile is the deny-list form of moby's profiles/seccomp/default.json (which containerd
ships as its default too): moby allows a long list and refuses the rest with EPERM; here
everything is allowed except what moby refuses, each with the capability that lifts the ban
in moby's profile. Syscalls newer than this table are therefore allowed, where moby would
refuse them; the ones that matter for escaping a container are all here.
"""
import errno

import pyseccomp

from nsPod.kernel.tracing import traced

# (syscalls, capabilities any one of which allows them, errno). Names this libseccomp or this
# architecture does not know are skipped.
RULES = (
    # Mount and namespace work, and what leaks or changes host-wide state: CAP_SYS_ADMIN.
    (("mount", "umount", "umount2", "mount_setattr", "move_mount", "open_tree", "fsopen",
      "fsconfig", "fsmount", "fspick", "unshare", "setns", "sethostname", "setdomainname",
      "quotactl", "quotactl_fd", "lookup_dcookie", "fanotify_init"), {"SYS_ADMIN"}, errno.EPERM),
    (("bpf",), {"SYS_ADMIN", "BPF"}, errno.EPERM),
    (("perf_event_open",), {"SYS_ADMIN", "PERFMON"}, errno.EPERM),
    (("syslog",), {"SYS_ADMIN", "SYSLOG"}, errno.EPERM),
    # clone3's flags sit in memory seccomp cannot read: ENOSYS makes libc fall back to clone,
    # whose namespace flags are checked below (moby's choice).
    (("clone3",), {"SYS_ADMIN"}, errno.ENOSYS),
    (("open_by_handle_at",), {"DAC_READ_SEARCH"}, errno.EPERM),  # the "shocker" escape
    (("reboot",), {"SYS_BOOT"}, errno.EPERM),
    (("chroot",), {"SYS_CHROOT"}, errno.EPERM),
    (("init_module", "finit_module", "delete_module"), {"SYS_MODULE"}, errno.EPERM),
    (("acct",), {"SYS_PACCT"}, errno.EPERM),
    # ptrace and process_vm_* are allowed, as moby allows them on kernels >= 4.8 (where
    # ptrace can no longer bypass seccomp); these three still need CAP_SYS_PTRACE.
    (("kcmp", "pidfd_getfd", "process_madvise"), {"SYS_PTRACE"}, errno.EPERM),
    (("iopl", "ioperm"), {"SYS_RAWIO"}, errno.EPERM),
    (("settimeofday", "stime", "clock_settime", "clock_settime64"), {"SYS_TIME"}, errno.EPERM),
    (("vhangup",), {"SYS_TTY_CONFIG"}, errno.EPERM),
    (("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"), {"SYS_NICE"},
     errno.EPERM),
    # Never allowed by moby, whatever the capabilities: kernel replacement, keyrings (not
    # namespaced), swap, pivot_root, userfaultfd, obsolete and unimplemented calls.
    (("kexec_load", "kexec_file_load", "keyctl", "add_key", "request_key", "swapon", "swapoff",
      "pivot_root", "userfaultfd", "uselib", "_sysctl", "sysfs", "ustat", "nfsservctl",
      "create_module", "get_kernel_syms", "query_module", "vm86", "vm86old", "move_pages",
      "migrate_pages", "afs_syscall", "getpmsg", "putpmsg", "security", "tuxcall", "vserver"),
     set(), errno.EPERM),
)
# clone's namespace flags (moby's mask 0x7E020000): without CAP_SYS_ADMIN, a clone asking for
# any of them is refused, a plain clone (fork, threads) is not.
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                         0x20000000, 0x40000000)
AF_VSOCK = 40  # moby refuses sockets of this family: a way out of a VM, not of a namespace
# Architectures a process can call the kernel through besides the native one (moby's archMap):
# each gets the same rules, so the 32-bit entry points are no way around them.
_SUB_ARCHES = {
    pyseccomp.Arch.X86_64: (pyseccomp.Arch.X86, pyseccomp.Arch.X32),
    pyseccomp.Arch.AARCH64: (pyseccomp.Arch.ARM,),
}
_NR_SCMP_ERROR = -1  # what libseccomp resolves an unknown name to


def runtime_default(capabilities):
    """The compiled RuntimeDefault filter for a container with these capabilities (names)."""
    caps = set(capabilities)
    f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    # libseccomp sets no_new_privs itself when loading unless told not to: whether the
    # container gets it is allowPrivilegeEscalation's business (container.apply_security).
    f.set_attr(pyseccomp.Attr.CTL_NNP, 0)
    for arch in _SUB_ARCHES.get(pyseccomp.system_arch(), ()):
        f.add_arch(arch)
    denied = []
    for names, allowed_by, err in RULES:
        if caps & allowed_by:
            continue
        for name in names:
            number = _resolve(name)
            if number is not None:
                f.add_rule(pyseccomp.ERRNO(err), number)
                denied.append(name)
    if "SYS_ADMIN" not in caps:
        clone = _resolve("clone")
        for flag in CLONE_NAMESPACE_FLAGS:
            f.add_rule(pyseccomp.ERRNO(errno.EPERM), clone,
                       pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
        denied.append("clone(CLONE_NEW*)")
    f.add_rule(pyseccomp.ERRNO(errno.EPERM), _resolve("socket"),
               pyseccomp.Arg(0, pyseccomp.EQ, AF_VSOCK))
    # personality(2) is not narrowed to moby's five values: libseccomp cannot compare one
    # argument twice in a rule, and the personalities it guards change only this process.
    f.denied = denied
    return f


# A Localhost profile's actions (the OCI runtime spec's names), as nsPod/cri reads them.
ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
           "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_LOG")


def _action(name, err):
    if name == "SCMP_ACT_ERRNO":
        return pyseccomp.ERRNO(err)
    return {"SCMP_ACT_ALLOW": pyseccomp.ALLOW, "SCMP_ACT_KILL": pyseccomp.KILL_THREAD,
            "SCMP_ACT_KILL_THREAD": pyseccomp.KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": pyseccomp.KILL_PROCESS, "SCMP_ACT_TRAP": pyseccomp.TRAP,
            "SCMP_ACT_LOG": pyseccomp.LOG}[name]


def localhost(profile):
    """A Localhost profile compiled: {"defaultAction", "defaultErrno", "rules": [[action,
    errno, [syscall names]]]}, as nsPod/cri/seccomp_profiles.py checked it (no argument
    conditions). Names this libseccomp does not know are skipped, as runc skips them."""
    f = pyseccomp.SyscallFilter(_action(profile["defaultAction"], profile["defaultErrno"]))
    f.set_attr(pyseccomp.Attr.CTL_NNP, 0)
    for arch in _SUB_ARCHES.get(pyseccomp.system_arch(), ()):
        f.add_arch(arch)
    ruled = []
    for action, err, names in profile["rules"]:
        if action == profile["defaultAction"] and err == profile["defaultErrno"]:
            continue  # libseccomp refuses a rule that only repeats the default
        for name in names:
            number = _resolve(name)
            if number is not None:
                f.add_rule(_action(action, err), number)
                ruled.append(name)
    f.denied = ruled
    return f


def load(f):
    """Install the filter on this thread (inherited by children, kept across execve)."""
    with traced("seccomp", ["SECCOMP_SET_MODE_FILTER",
                            f"RuntimeDefault: EPERM for {len(f.denied)} syscalls: "
                            f"{' '.join(f.denied)}"]):
        f.load()


def _resolve(name):
    number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    return None if number == _NR_SCMP_ERROR else number

"""Which pod sysctls the node allows: the kubelet's safe set plus the admin's opt-in.

The kubelet refuses a pod with a sysctl outside its safe set (SysctlForbidden) unless the
node's --allowed-unsafe-sysctls names it or a pattern of it (pkg/kubelet/sysctl/
safe_sysctls.go, allowlist.go). Pure: no files, no kernel; imported by config (the option)
and spec (the pod check), so it loads nothing else.
"""
import re

from nsPod.errors import InputError

OPTION = "--allowed-unsafe-sysctls"

# pkg/kubelet/sysctl/safe_sysctls.go safeSysctls: namespaced and isolated, so a pod may set
# them without affecting any other. (The kubelet drops the ones newer than the running
# kernel; every one of them is namespaced since Linux 4.15, older than nspod supports.)
SAFE_SYSCTLS = frozenset((
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
))

# component-helpers' NamespacedBy: a sysctl (or a pattern's prefix) starting with one of
# these is kept per namespace by the kernel.
_NAMESPACED_PREFIXES = ("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.", "net.")

_SEGMENT = r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
# policy validation's IsValidSysctlPattern: segments joined by '.' or '/', the last one may
# end in '*' (kernel.msg*, net.*).
_PATTERN = re.compile(rf"({_SEGMENT}[./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]")
_MAX_LENGTH = 253


def _dots(name):
    """net/ipv4/ip_forward -> net.ipv4.ip_forward (utilsysctl's
    ConvertSysctlVariableToDotsSeparator: with '/' first, '.' and '/' swap)."""
    separator = re.search(r"[./]", name)
    if separator and separator.group() == "/":
        return name.translate(str.maketrans("./", "/."))
    return name


def _namespaced(prefix):
    return any(prefix.startswith(p) for p in _NAMESPACED_PREFIXES)


def parse_allowlist(text):
    """The option's comma list -> a tuple of names and patterns ('*' last), in dots.

    InputError naming the option and the entry for one that is no sysctl pattern or not
    known to be namespaced (the kubelet refuses to start with such a list)."""
    out = []
    for raw in (text or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        if len(entry) > _MAX_LENGTH or not _PATTERN.fullmatch(entry) or "*" in entry[:-1]:
            raise InputError(f"{OPTION}: {entry!r} is not a sysctl name or pattern "
                             "(such as kernel.msgmax or kernel.msg*)")
        entry = _dots(entry)
        if not _namespaced(entry.rstrip("*")):
            raise InputError(f"{OPTION}: {entry!r}: not known to be namespaced (only "
                             "kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* and net.* are)")
        out.append(entry)
    return tuple(out)


def allowed(name, allowlist):
    """Whether a pod may set sysctl `name` (dots): safe, or named or matched by the list."""
    if name in SAFE_SYSCTLS:
        return True
    for entry in allowlist:
        if entry.endswith("*"):
            if name.startswith(entry[:-1]):
                return True
        elif name == entry:
            return True
    return False


def problem(name, allowlist):
    """What is wrong with a pod setting sysctl `name` (dots) on this node, or None."""
    if allowed(name, allowlist):
        return None
    return (f"is an unsafe sysctl (SysctlForbidden: not in the kubelet's safe set); "
            f"allow it with {OPTION} {name}")


def forbidden(sysctls, allowlist, path="spec.securityContext.sysctls"):
    """["field: message"] for each of a pod's sysctls ((name, value) pairs) not allowed."""
    out = []
    for i, (name, _) in enumerate(sysctls):
        why = problem(name, allowlist)
        if why:
            out.append(f'{path}[{i}].name: "{name}" {why}')
    return out

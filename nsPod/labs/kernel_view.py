"""Reading what the kernel says about a pod's processes, for the labs: /proc/PID/ns/*,
/proc/PID/status, /proc/PID/stat, /proc/PID/mountinfo and the cgroup file systems. Plain
reads; nothing here changes anything."""
import os
import signal

NS_KINDS = ("net", "ipc", "uts", "pid", "mnt", "cgroup")
CGROUP_ROOT = "/sys/fs/cgroup"

# capability(7) numbers, as in <linux/capability.h>.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")


def ns_links(pid):
    """{kind: 'net:[4026532326]'} of a process; a kind the kernel lacks is left out."""
    links = {}
    for kind in NS_KINDS:
        try:
            links[kind] = os.readlink(f"/proc/{pid}/ns/{kind}")
        except FileNotFoundError:
            continue
    return links


def status(pid):
    """/proc/PID/status as {field: value}; {} when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except (FileNotFoundError, ProcessLookupError):
        return {}


def decode_caps(hex_mask):
    """'00000000a80425fb' -> ['CAP_CHOWN', ...], as capsh --decode prints them."""
    mask = int(hex_mask, 16)
    return [f"CAP_{name}" for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1]


def stat(pid):
    """(state, ppid, comm) from /proc/PID/stat; None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    state, ppid = text[text.rindex(")") + 2:].split()[:2]
    return state, int(ppid), comm


def children(pid):
    """[(pid, state, comm)] of the processes whose parent is pid (a scan of /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = stat(int(entry))
            if info and info[1] == pid:
                found.append((int(entry), info[0], info[2]))
    return sorted(found)


def in_cgroup(pid, rel):
    """Whether the process is in cgroup rel (relative to the hierarchy root) in any
    hierarchy: how a lab knows a pid from `nspod inspect` is still that container's."""
    try:
        return any(path.strip("/") == rel.strip("/") for _, _, path in proc_cgroups(pid))
    except (FileNotFoundError, ProcessLookupError):
        return False


def signal_member(pid, rel, signum):
    """Send signum to pid if it is a process of cgroup rel; False when it is not (gone, or
    the pid reused). The pidfd pins the process between the check and the signal."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not in_cgroup(pid, rel):
            return False
        signal.pidfd_send_signal(pidfd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def alive(pid):
    info = stat(pid)
    return info is not None and info[0] != "Z"


def mounts(pid):
    """[(mount point, fs type, source, super options)] from /proc/PID/mountinfo."""
    rows = []
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            head, tail = line.rstrip("\n").split(" - ", 1)
            fstype, source, options = (tail.split(" ") + ["", ""])[:3]
            rows.append((unescape(head.split(" ")[4]), fstype, source, options))
    return rows


def unescape(path):
    """mountinfo's octal escapes (\\040 for a space) undone."""
    return path.encode().decode("unicode_escape") if "\\" in path else path


def cgroup_v2():
    """True on a pure cgroup v2 host (the unified hierarchy at /sys/fs/cgroup)."""
    return os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))


def cgroup_dir(rel, controller="memory"):
    """Where a cgroup (relative to the hierarchy root) of a controller lives."""
    base = CGROUP_ROOT if cgroup_v2() else os.path.join(CGROUP_ROOT, controller)
    return os.path.join(base, rel.strip("/"))


def proc_cgroups(pid):
    """/proc/PID/cgroup as [(hierarchy id, controllers, path)]."""
    with open(f"/proc/{pid}/cgroup") as f:
        return [tuple(line.rstrip("\n").split(":", 2)) for line in f]


def meminfo_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0

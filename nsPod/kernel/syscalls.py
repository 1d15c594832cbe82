"""Typed wrappers over the cffi extension nsPod._syscalls: the only importer of its lib.

Every failure becomes an OSError built from errno (so callers can catch PermissionError,
FileNotFoundError...) whose message names the call, its flags by their kernel names, and the
path it acted on. With --trace, each call is narrated (kernel/tracing.py).
"""
import enum
import os

from nsPod._syscalls import ffi, lib
from nsPod.errors import os_error
from nsPod.kernel import tracing
from nsPod.kernel.tracing import traced

ABI = "nspod-syscalls-2"
if ffi.string(lib.nspod_abi()).decode() != ABI:
    raise ImportError("nsPod._syscalls is a stale build: reinstall nspod")


class CloneFlag(enum.IntFlag):
    CLONE_NEWNS = lib.CLONE_NEWNS
    CLONE_NEWUTS = lib.CLONE_NEWUTS
    CLONE_NEWIPC = lib.CLONE_NEWIPC
    CLONE_NEWNET = lib.CLONE_NEWNET
    CLONE_NEWPID = lib.CLONE_NEWPID
    CLONE_NEWCGROUP = lib.CLONE_NEWCGROUP
    CLONE_NEWUSER = lib.CLONE_NEWUSER


class MountFlag(enum.IntFlag):
    MS_RDONLY = lib.MS_RDONLY
    MS_NOSUID = lib.MS_NOSUID
    MS_NODEV = lib.MS_NODEV
    MS_NOEXEC = lib.MS_NOEXEC
    MS_REMOUNT = lib.MS_REMOUNT
    MS_BIND = lib.MS_BIND
    MS_REC = lib.MS_REC
    MS_PRIVATE = lib.MS_PRIVATE
    MS_SLAVE = lib.MS_SLAVE
    MS_SHARED = lib.MS_SHARED
    MS_STRICTATIME = lib.MS_STRICTATIME
    MS_RELATIME = lib.MS_RELATIME


MNT_DETACH = lib.MNT_DETACH


def flag_names(flags, kind):
    """'MS_BIND|MS_REC' for the bits set; unknown bits as hex, so nothing is hidden."""
    names = []
    rest = int(flags)
    for member in kind:
        if member.value and rest & member.value == member.value:
            names.append(member.name)
            rest &= ~member.value
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def set_trace(enabled):
    """--trace on ("text"/True, "json") or off: kernel/tracing.py does the narrating."""
    tracing.set_trace(enabled)


def trace(message):
    """Narrate one kernel-level step that is not a single call (a summary, a fact)."""
    tracing.note(message)


def _cstr(value):
    return ffi.NULL if value is None else os.fsencode(value)


def unshare(flags):
    with traced("unshare", [flag_names(flags, CloneFlag)]):
        if lib.unshare(int(flags)) != 0:
            raise os_error(ffi.errno, "unshare", detail=flag_names(flags, CloneFlag))


def setns(fd, nstype, what=None):
    """Join the namespace open as `fd`; `what` (e.g. '/proc/42/ns/net') is for messages."""
    with traced("setns", [what or fd, flag_names(nstype, CloneFlag)]):
        if lib.setns(fd, int(nstype)) != 0:
            raise os_error(ffi.errno, "setns", what, flag_names(nstype, CloneFlag))


def mount(source, target, fstype=None, flags=0, data=None):
    details = [f"src={source}", f"flags={flag_names(flags, MountFlag)}"]
    if fstype:
        details.insert(0, f"type={fstype}")
    if data:
        details.append(f"data={data}")
    with traced("mount", [target, *details]):
        if lib.mount(_cstr(source), _cstr(target), _cstr(fstype), int(flags), _cstr(data)) != 0:
            raise os_error(ffi.errno, "mount", target, ", ".join(details))


def umount2(target, flags=0):
    with traced("umount2", [target, "MNT_DETACH" if flags & MNT_DETACH else flags]):
        if lib.umount2(_cstr(target), flags) != 0:
            raise os_error(ffi.errno, "umount2", target)


def pivot_root(new_root, put_old):
    with traced("pivot_root", [new_root, put_old]):
        if lib.nspod_pivot_root(_cstr(new_root), _cstr(put_old)) != 0:
            raise os_error(ffi.errno, "pivot_root", new_root)


def sethostname(name):
    data = name.encode()
    with traced("sethostname", [name]):
        if lib.sethostname(data, len(data)) != 0:
            raise os_error(ffi.errno, "sethostname", detail=name)


class ResolveFlag(enum.IntFlag):
    RESOLVE_NO_XDEV = lib.RESOLVE_NO_XDEV
    RESOLVE_NO_MAGICLINKS = lib.RESOLVE_NO_MAGICLINKS
    RESOLVE_NO_SYMLINKS = lib.RESOLVE_NO_SYMLINKS
    RESOLVE_BENEATH = lib.RESOLVE_BENEATH
    RESOLVE_IN_ROOT = lib.RESOLVE_IN_ROOT


def openat2(dirfd, path, flags, resolve, mode=0):
    """openat2(2): open `path` relative to `dirfd` under the RESOLVE_* rules; returns the fd.

    ENOSYS (kernel < 5.6) is raised like any other error: callers fall back to an
    O_NOFOLLOW walk. EXDEV/ELOOP mean the path tried to leave `dirfd` or met a symlink.
    """
    details = [f"flags={oct(flags)}", f"resolve={flag_names(resolve, ResolveFlag)}"]
    with traced("openat2", [dirfd, path, *details]) as step:
        fd = lib.nspod_openat2(dirfd, _cstr(path), flags, mode, int(resolve))
        if fd < 0:
            raise os_error(ffi.errno, "openat2", path, ", ".join(details))
        step.result = fd
    return fd


def bpf(cmd, attr, what="bpf"):
    """bpf(2) with `attr` a bytearray laid out as the kernel's union bpf_attr; returns the
    syscall's non-negative result (an fd for BPF_PROG_LOAD)."""
    buf = ffi.from_buffer(attr)
    with traced("bpf", [what]) as step:
        result = lib.nspod_bpf(cmd, buf, len(attr))
        if result < 0:
            raise os_error(ffi.errno, "bpf", detail=what)
        step.result = result
    return result

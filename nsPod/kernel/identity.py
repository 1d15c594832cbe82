"""Who a container's process is: its user and groups (from the container's own /etc/passwd
and /etc/group), capabilities, no_new_privs and seccomp filter, applied in the order the
privileges they need allow. Shared by the container (kernel/container.py) and `exec`.
"""
import errno
import os
import stat

from nsPod.kernel import security
from nsPod.kernel.process import step

# A plan written before security settings existed means what an empty securityContext means.
DEFAULT_SECURITY = {
    "user": "", "group": "", "supplementalGroups": [], "fsGroup": None, "runAsNonRoot": False,
    "privileged": False, "noNewPrivs": False, "readOnlyRootFilesystem": False,
    "capabilities": None, "seccomp": "Unconfined",
    "seccompProfile": None,   # "Localhost" (nspod cri): the checked profile, kernel/seccomp.py
    # nspod cri's masked_paths/readonly_paths; None: container.py's defaults (containerd's)
    "maskedPaths": None, "readonlyPaths": None,
    # "rslave" (nspod cri, a mount with HOST_TO_CONTAINER propagation): the container's
    # mount namespace receives the host's mounts, never sends its own back.
    "rootPropagation": "private",
}


def security_settings(container):
    """The container plan's security settings, with an old plan's gaps filled with the defaults."""
    from nsPod.plan.make import DEFAULT_CAPABILITIES
    settings = {**DEFAULT_SECURITY, **(container.security or {})}
    if settings["capabilities"] is None:
        settings["capabilities"] = list(DEFAULT_CAPABILITIES)
    return settings


def prepare_security(container):
    """What apply_security needs that must be made while the host's files are still visible:
    the compiled seccomp filter (pyseccomp loads libseccomp from the host). Call it before the
    mount namespace changes (the container) or in the parent, before joining (exec)."""
    settings = security_settings(container)
    if settings["seccomp"] == "Localhost" and settings["seccompProfile"]:
        from nsPod.kernel import seccomp
        return seccomp.localhost(settings["seccompProfile"])
    if settings["seccomp"] != "RuntimeDefault":
        return None
    from nsPod.kernel import seccomp
    return seccomp.runtime_default(settings["capabilities"])


def apply_security(container, prepared):
    """Become the container's user with its capabilities, no_new_privs and seccomp filter.

    Runs as root with every capability, after pivot_root (the container's and exec's child
    alike: /etc/passwd, /etc/group and /proc are the container's), right before execve.
    `prepared` is what prepare_security returned. Each step's place is forced by the
    privileges it needs or takes away.
    """
    settings = security_settings(container)
    privileged = settings["privileged"]
    with step("find the user and groups in the container's /etc/passwd and /etc/group"):
        uid, gid, groups = resolve_identity(settings)
    if settings["runAsNonRoot"] and uid == 0:
        with step("check runAsNonRoot"):
            raise PermissionError(errno.EPERM, "container has runAsNonRoot and image will run "
                                               "as root (set runAsUser, or USER in the image)")
    # Privileged: everything this process has (which the host may have limited).
    keep = (security.permitted_capabilities() if privileged
            else security.capability_numbers(settings["capabilities"]))
    if prepared is not None:
        from nsPod.kernel import seccomp  # loaded already, by prepare_security
    if prepared is not None and not settings["noNewPrivs"]:
        with step("load the seccomp filter"):
            # Without no_new_privs the kernel lets only CAP_SYS_ADMIN install a filter: now,
            # while we have it. The filter allows every step below (capset, setuid, prctl).
            seccomp.load(prepared)
    if not privileged:
        with step("drop capabilities from the bounding set"):
            # Before the effective set loses CAP_SETPCAP, which PR_CAPBSET_DROP needs. For a
            # root process the bounding set is what it gets back at execve.
            security.limit_bounding_set(keep)
    with step(f"set user {uid}, group {gid}, groups {groups}"):
        # After the bounding set, before the capset: setuid() away from root empties the
        # permitted set unless KEEPCAPS is on; with it, permitted survives (effective does
        # not) until the capset below. Groups before gid before uid: each needs
        # CAP_SETGID/CAP_SETUID, which the uid change takes away.
        security.set_identity(uid, gid, groups)
    with step("set capabilities"):
        # After setuid: effective and permitted become the container's set. A non-root user
        # loses them at execve (no ambient capabilities), as in Kubernetes.
        security.set_capabilities(keep)
    if settings["noNewPrivs"]:
        with step("set no_new_privs"):
            security.set_no_new_privs()
        if prepared is not None:
            with step("load the seccomp filter"):
                # Last, just before execve: no_new_privs lets it in without CAP_SYS_ADMIN,
                # and the filter has nothing of ours left to judge but the execve.
                seccomp.load(prepared)


def resolve_identity(settings):
    """(uid, gid, supplementary groups) as runc finds them: a user name or number from the
    container's /etc/passwd (the number needs no entry), its primary group unless a group is
    given, the groups that list it as a member, then supplementalGroups and fsGroup."""
    user, group = str(settings["user"] or ""), str(settings["group"] or "")
    passwd = _read_db("/etc/passwd")
    if not user:
        user = "0"
    if _is_number(user):
        uid = _parse_id(user, "user")
        entry = next((e for e in passwd if e[2] == user), None)
    else:
        entry = next((e for e in passwd if e[0] == user), None)
        if entry is None:
            raise LookupError(f"unable to find user {user}: no matching entries in passwd file")
        uid = _parse_id(entry[2], f"user {user}: uid in /etc/passwd")
    gid = 0
    if entry and len(entry) > 3 and _is_number(entry[3]):
        gid = _parse_id(entry[3], f"user {entry[0]}: gid in /etc/passwd")
    group_db = _read_db("/etc/group")
    if group:
        if _is_number(group):
            gid = _parse_id(group, "group")
        else:
            found = next((e for e in group_db if e[0] == group), None)
            if found is None:
                raise LookupError(f"unable to find group {group}: no matching entries in "
                                  "group file")
            gid = _parse_id(found[2], f"group {group}: gid in /etc/group")
    groups = []
    if entry:
        groups += [int(e[2]) for e in group_db
                   if len(e) > 3 and entry[0] in e[3].split(",") and _is_id(e[2])]
    groups += [int(g) for g in settings["supplementalGroups"] or ()]
    if settings["fsGroup"] is not None:
        groups.append(int(settings["fsGroup"]))
    return uid, gid, list(dict.fromkeys(groups))


MAX_ID = 2**32 - 2   # (uid_t)-1 means "unchanged" to the kernel


def _is_number(text):
    return text.isascii() and text.isdigit()


def _is_id(text):
    return _is_number(text) and len(text) <= 10 and int(text) <= MAX_ID


def _parse_id(text, what):
    """A uid or gid from a file or setting the container controls, or a clear LookupError."""
    if not _is_id(text):
        raise LookupError(f"{what}: {text[:20]!r} is not a number from 0 to {MAX_ID}")
    return int(text)


# /etc/passwd and /etc/group are the container's files, as hostile as the container: at most
# this much is read of each (a real one is a few KiB).
DB_LIMIT = 1 << 20


def _read_db(path):
    """The colon-separated records of /etc/passwd or /etc/group; none if there is no file.

    Read where only the container's tree is visible (after pivot_root or setns), so a symlink
    in it cannot lead to the host's files; what it can still be made into is refused: a FIFO
    (opened O_NONBLOCK, so the open itself cannot wait for a writer), a device such as
    /dev/zero, a directory, or a file larger than DB_LIMIT (a sparse 20 GB one).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return []   # missing, or unreadable: only numeric ids can be used then, as in runc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file ({_file_kind(st.st_mode)})", path)
        if st.st_size > DB_LIMIT:
            raise OSError(errno.EFBIG, f"larger than {DB_LIMIT >> 20} MiB", path)
        data = b""
        while len(data) <= DB_LIMIT:
            chunk = os.read(fd, DB_LIMIT + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > DB_LIMIT:
            raise OSError(errno.EFBIG, f"larger than {DB_LIMIT >> 20} MiB", path)
    finally:
        os.close(fd)
    text = data.decode("utf-8", errors="replace")
    return [line.split(":") for line in text.split("\n")
            if line.strip() and not line.startswith("#") and line.count(":") >= 2]


def _file_kind(mode):
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"

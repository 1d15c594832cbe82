"""Localhost seccomp profiles (the kubelet's `localhost_ref`, an OCI/Docker seccomp JSON
file on the host): read as hostile input (a regular file, not followed through a final
symlink, non-blocking, at most 1 MiB) and checked into the plain form kernel/seccomp.py
compiles: {"defaultAction", "defaultErrno", "rules": [[action, errno, [names]]]}.
Argument conditions and Docker's includes/excludes are not supported (UNIMPLEMENTED)."""
import errno
import json
import os
import re
import stat

from nsPod.errors import InputError
from nsPod.cri import checks
from nsPod.cri.protocol import Code, CriError

ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
           "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_LOG")
PROFILE_MAX = 1 << 20
SYSCALL_RE = re.compile(r"[a-z0-9_]{1,64}")


def read(path, field):
    checks.absolute_path(path, field)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise InputError(f"{field}: {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{field}: {path} is not a regular file")
        if st.st_size > PROFILE_MAX:
            raise InputError(f"{field}: {path} is larger than 1 MiB")
        data = os.read(fd, PROFILE_MAX + 1)
    finally:
        os.close(fd)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{field}: {path} is not JSON: {e}") from None
    return check(doc, f"{field} {path}")


def _errno(value, where):
    if value is None:
        return errno.EPERM
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4095:
        raise InputError(f"{where}: errnoRet {value!r} is not an errno (0-4095)")
    return value


def check(doc, where):
    if not isinstance(doc, dict):
        raise InputError(f"{where}: not a JSON object")
    default = doc.get("defaultAction")
    if default not in ACTIONS:
        raise InputError(f"{where}: defaultAction {default!r} is not one of {', '.join(ACTIONS)}")
    rules = []
    syscalls = doc.get("syscalls") or []
    if not isinstance(syscalls, list) or len(syscalls) > 4096:
        raise InputError(f"{where}: syscalls is not a list of at most 4096 rules")
    for i, rule in enumerate(syscalls):
        at = f"{where}: syscalls[{i}]"
        if not isinstance(rule, dict):
            raise InputError(f"{at}: not an object")
        if rule.get("args") or rule.get("includes") or rule.get("excludes"):
            raise CriError(f"{at}: argument conditions and includes/excludes are not "
                           "supported", Code.UNIMPLEMENTED)
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not isinstance(names, list) or not names or \
                not all(isinstance(n, str) and SYSCALL_RE.fullmatch(n) for n in names):
            raise InputError(f"{at}: names must be a list of syscall names")
        action = rule.get("action")
        if action not in ACTIONS:
            raise InputError(f"{at}: action {action!r} is not one of {', '.join(ACTIONS)}")
        rules.append([action, _errno(rule.get("errnoRet"), at), names])
    return {"defaultAction": default, "defaultErrno": _errno(doc.get("defaultErrnoRet"), where),
            "rules": rules}

"""Names, and every path under the state root: checked before any path is formed.

nspod runs as root and joins user-typed names to its state root: a pod name of `..`, `/` or
`../../etc` would make `rm` delete host directories. So every name is checked against
Kubernetes' rules at the entry of each command and library call (check_pod_name and friends),
every path under the root is formed by `join` (which refuses `/`, `.`, `..` and empty
components), and directories are opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)
(an O_NOFOLLOW walk where the kernel lacks it), so that a symlink planted in the state root is
refused, never followed.

The state root itself (open_root) is created 0700 by root and refused when it is a symlink,
owned by another user, writable by group or others, or below a directory another user could
rename it in. Every root nspod uses is recorded in a host-wide registry (kernel/root_registry.py)
so that host-root containers of any root hide all of them, not only their own.

Pure standard library: the monitor imports this module.
"""
import contextlib
import errno
import os
import stat

from nsPod.errors import InputError, StateError
from nsPod.manifest.dns import dns_label_problem, dns_subdomain_problem
from nsPod.kernel import root_registry

# Kubernetes' apimachinery validation: IsDNS1123Subdomain (pod names, at most 253) and
# IsDNS1123Label (container and volume names, at most 63).

# What nspod itself puts at the top of a state root: an existing non-empty directory with none
# of these is not a state root (a mistyped --root /usr must not become one).
ROOT_ENTRIES = frozenset(("pods", "network", "images", "volumes", "admission.lock",
                          "cgroup-parents.json", "cgroup-parents.lock", "warm"))


# --- names ----------------------------------------------------------------------------------

def _show(name):
    """A name as messages quote it (as the manifest checks do): JSON, cut at 80 characters."""
    import json
    text = json.dumps(name, ensure_ascii=False) if isinstance(name, str) else repr(name)
    return text if len(text) <= 80 else text[:76] + '..."'


def subdomain_problem(name):
    """None when `name` is a DNS-1123 subdomain of at most 253 characters, else why not."""
    return _name_problem(name, dns_subdomain_problem)


def label_problem(name):
    """None when `name` is a DNS-1123 label of at most 63 characters, else why not."""
    return _name_problem(name, dns_label_problem)


def _name_problem(name, rule):
    # The manifest's own rules (manifest/syntax.py), so a name the CLI takes is one a
    # manifest may hold and the other way round.
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "must not be empty"
    return rule(name)


def check_pod_name(name):
    """InputError (exit 2) unless `name` is a valid pod name; returns it."""
    problem = subdomain_problem(name)
    if problem:
        raise InputError(f"invalid pod name {_show(name)}: {problem}")
    return name


def check_container_name(name):
    problem = label_problem(name)
    if problem:
        raise InputError(f"invalid container name {_show(name)}: {problem}")
    return name


def check_volume_name(name):
    problem = label_problem(name)
    if problem:
        raise InputError(f"invalid volume name {_show(name)}: {problem}")
    return name


# --- paths under the root -------------------------------------------------------------------

def check_component(part):
    """One path component nspod forms: never empty, '.', '..', or holding '/' or NUL."""
    if not isinstance(part, str) or part in ("", ".", "..") or "/" in part or "\0" in part:
        raise StateError(f"refusing path component {_show(part)} under the state root "
                         "(empty, '.', '..', '/' or NUL)")
    return part


def join(base, *parts):
    """base/part/...: the one way a path under the state root is formed."""
    return os.path.join(base, *(check_component(p) for p in parts))


_NO_FOLLOW = None


def _resolve_flags():
    global _NO_FOLLOW
    if _NO_FOLLOW is None:
        from nsPod.kernel.syscalls import ResolveFlag
        _NO_FOLLOW = int(ResolveFlag.RESOLVE_BENEATH | ResolveFlag.RESOLVE_NO_SYMLINKS
                         | ResolveFlag.RESOLVE_NO_MAGICLINKS)
    return _NO_FOLLOW


_have_openat2 = True


def open_beneath(dir_fd, relative, flags, mode=0):
    """Open `relative` (components already checked) below dir_fd, following no symlink and
    never leaving dir_fd; ELOOP/EXDEV become a StateError naming the path."""
    global _have_openat2
    flags |= os.O_CLOEXEC
    try:
        if _have_openat2:
            from nsPod.kernel.syscalls import openat2
            try:
                return openat2(dir_fd, relative, flags, _resolve_flags(), mode)
            except OSError as e:
                if e.errno != errno.ENOSYS:
                    raise
                _have_openat2 = False
        return _walk_open(dir_fd, relative, flags, mode)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EXDEV):
            raise StateError(f"refusing {relative}: a symlink (or a path leaving its directory) "
                             "where nspod expects its own file or directory") from None
        raise


def _walk_open(dir_fd, relative, flags, mode):
    """openat2's fallback: one O_NOFOLLOW open per component (kernels before 5.6)."""
    parts = relative.split("/")
    fd = os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            nxt = _open_no_follow(fd, part, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0)
            os.close(fd)
            fd = nxt
        return _open_no_follow(fd, parts[-1], flags, mode)
    finally:
        os.close(fd)


def _open_no_follow(fd, part, flags, mode):
    try:
        return os.open(check_component(part), flags | os.O_NOFOLLOW, mode, dir_fd=fd)
    except NotADirectoryError:
        # O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR: say ELOOP, as openat2 does.
        if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), part) from None
        raise


def open_dir(dir_fd, *parts, path_only=False):
    """An fd of the directory dir_fd/parts..., no symlink on the way."""
    relative = "/".join(check_component(p) for p in parts)
    kind = os.O_PATH if path_only else os.O_RDONLY
    return open_beneath(dir_fd, relative, kind | os.O_DIRECTORY)


@contextlib.contextmanager
def fd_of(fd):
    try:
        yield fd
    finally:
        os.close(fd)


# --- the state root -------------------------------------------------------------------------

def check_root_path(root, what="--root"):
    """The root as given: absolute, normalized, not '/'. InputError otherwise."""
    if not isinstance(root, str) or not os.path.isabs(root):
        raise InputError(f"{what}: {root!r} is not an absolute path")
    if any(ord(c) < 32 or c == "\x7f" for c in root):
        # The registry keeps one path a line, mountinfo escapes them: plain names only.
        raise InputError(f"{what}: {root!r} holds control characters")
    root = os.path.normpath(root)
    if root == "/" or root.startswith("//"):
        raise InputError(f"{what}: {root!r} cannot be a state root (choose a directory of "
                         "its own, such as /run/nspod)")
    return root


def _check_ancestors(root, missing_ok=False):
    """No other user may rename or replace the root: every directory above it belongs to root
    (or to us) and is not writable by group or others unless sticky, as ssh's StrictModes."""
    euid = os.geteuid()
    # The directories the path names as spelt (a symlink on the way lives in one of them) and
    # the ones it resolves to.
    lexical = []
    path = os.path.dirname(root)
    while path != "/":
        lexical.append(path)
        path = os.path.dirname(path)
    resolved = []
    path = os.path.dirname(os.path.realpath(root))
    while path != "/":
        resolved.append(path)
        path = os.path.dirname(path)
    for path in lexical:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if missing_ok:
                continue
            raise
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, euid):
            # In a sticky directory such as /tmp, its owner may replace it at any time.
            raise StateError(f"state root {root}: {path} is a symlink of uid {st.st_uid}, who "
                             "could point it elsewhere; choose a root reached through "
                             "root-owned directories")
    for path in dict.fromkeys(lexical + resolved + ["/"]):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if missing_ok:
                continue
            raise
        if st.st_uid not in (0, euid):
            raise StateError(f"state root {root}: {path} belongs to uid {st.st_uid}, who could "
                             "replace the state root; choose a root below root-owned "
                             "directories")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise StateError(f"state root {root}: {path} is writable by group or others "
                             f"(mode {stat.S_IMODE(st.st_mode):o}), who could replace the "
                             "state root; choose a root below directories only root writes")


def _check_root_fd(root, fd):
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        raise StateError(f"state root {root} belongs to uid {st.st_uid}, not to uid "
                         f"{os.geteuid()}: refusing it (make a new one, or chown it)")
    if st.st_mode & 0o022:
        raise StateError(f"state root {root} is writable by group or others (mode "
                         f"{stat.S_IMODE(st.st_mode):o}): refusing it (chmod 700 it)")
    entries = os.listdir(fd)
    for entry in entries:
        try:
            est = os.stat(entry, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # a temporary file renamed meanwhile (cgroup-parents.json.tmp.PID)
        if stat.S_ISLNK(est.st_mode):
            raise StateError(f"state root {root}: {entry} is a symlink; refusing to follow it "
                             "(nspod never makes one there)")
        if est.st_uid != os.geteuid():
            raise StateError(f"state root {root}: {entry} belongs to uid {est.st_uid}; "
                             "refusing it")
    if entries and not ROOT_ENTRIES.intersection(entries):
        shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        raise StateError(f"state root {root} is not empty and is not an nspod state root "
                         f"(it holds {shown}); choose a new or empty directory")


_settled = set()


def open_root(root, create=False, registry=None):
    """An O_DIRECTORY fd of the checked state root, or None when it does not exist and
    create is false. Made 0700 (its missing parents 0755) when create is true."""
    root = check_root_path(root)
    if not create and not os.path.lexists(root):
        return None
    if create:
        # Checked before anything is made through them, and again once the parents exist.
        if root not in _settled:
            _check_ancestors(root, missing_ok=True)
        os.makedirs(os.path.dirname(root), mode=0o755, exist_ok=True)
        if root not in _settled:
            _check_ancestors(root)
        with contextlib.suppress(FileExistsError):
            os.mkdir(root, 0o700)
    elif root not in _settled:
        _check_ancestors(root)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a symlink" if os.path.islink(root) else "not a directory"
            raise StateError(f"state root {root} is {kind}: refusing it") from None
        raise
    try:
        _check_root_fd(root, fd)
        if root not in _settled:
            try:
                root_registry.register(root, registry)
            except OSError as e:
                raise StateError(f"state root {root}: cannot record it in "
                                 f"{registry or root_registry.REGISTRY} (host-root containers of other "
                                 f"roots hide the roots recorded there): {e.strerror}") from e
            # Its ancestors and its registration are checked once a process: only root can
            # change them, and the monitor opens the root at every state write.
            _settled.add(root)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_root(root, create=False):
    """open_root for callers that only need the checks; True when the root exists."""
    fd = open_root(root, create)
    if fd is None:
        return False
    os.close(fd)
    return True


def write_json(path, data, dir_fd=None):
    """temp + fsync + rename: a reader sees the old file or the new one, never half of one.

    With dir_fd, `path` is one name in that directory, and a symlink there is replaced, never
    followed."""
    import json  # here, as in _show: importing this module stays cheap
    _write_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode(), 0o600, dir_fd,
                  sync=True)


def write_text(path, text, mode=0o644, dir_fd=None):
    """temp + rename, like write_json (a container may be reading the file)."""
    _write_atomic(path, text.encode(), mode, dir_fd, sync=False)


def _write_atomic(path, data, mode, dir_fd, sync):
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                 dir_fd=dir_fd)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

"""The thin `nspod`'s side of podd: find the warm process of this state root, start it when
none runs, hand it the command, forward signals, return its exit code.

Cheap to import (standard library only, no json): it is all the thin client loads.

One podd per (state root, caller's context): the context is the caller's namespaces, its
root directory and its cgroups, because a command forked from podd runs in podd's, and the
pods it makes must land where the caller's would. Files, in <root>/warm/ (0700, ours):

    podd.<key>.sock   the listening socket (0600); peers must be root or podd's own uid
    podd.<key>.lock   flock held for podd's life ("<pid> <start time>"): one podd per key
    podd.log          podd's stderr

A client that finds no podd takes the lock, starts one in the background (handing it the
locked fd, as netclient does for netd) and runs this command in-process: the command is
never made to wait for podd's imports. Whatever goes wrong on the warm path before the
command has started (no root yet, a refused request, podd gone) ends in the same in-process
run, so `nspod` always works; once podd says "P<pid>" the command is running and its exit
code is the only answer.
"""
import fcntl
import os
import signal
import socket
import stat
import sys
import time

from nsPod.warm import protocol

DEFAULT_ROOT = "/run/nspod"
WARM_DIR = "warm"
LOG_FILE = "podd.log"
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")
# The global options that take a value: what comes before the subcommand (cli.py's group).
VALUE_OPTIONS = {"--root", "--cgroup-parent", "--bridge", "--subnet", "--restart-backoff",
                 "--allowed-unsafe-sysctls"}
FLAG_OPTIONS = {"-v", "--verbose", "--trace"}
CONNECT_TIMEOUT = 30.0
SUN_PATH_MAX = 100       # podd binds its socket by path: sun_path holds 108 bytes
# What podd itself keeps of the starting client's environment: what finds and loads Python
# code the same way. A command's own environment comes with each request.
PODD_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPYCACHEPREFIX",
                    "PYTHONDONTWRITEBYTECODE", "NSPOD_WARM_IDLE")


def enabled(environ=None):
    """NSPOD_WARM=0 turns the warm path off: every command and monitor is a fresh Python."""
    env = os.environ if environ is None else environ
    return env.get("NSPOD_WARM", "1") != "0"


def root_of(argv, environ=None):
    """The state root the command will use, read as cli.py's group reads it (--root before
    the subcommand, then NSPOD_ROOT); only to find podd: the command checks it itself."""
    env = os.environ if environ is None else environ
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in VALUE_OPTIONS:
            if not args:
                break
            value = args.pop(0)
            if arg == "--root":
                return value
        elif arg.startswith("--root="):
            return arg[len("--root="):]
        elif arg.split("=", 1)[0] in VALUE_OPTIONS or arg in FLAG_OPTIONS:
            continue
        else:
            break
    return env.get("NSPOD_ROOT") or DEFAULT_ROOT


def _sha256(data):
    try:
        from _sha2 import sha256          # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256    # Python <= 3.11: no OpenSSL load
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()


def context_key():
    """16 hex digits naming the caller's namespaces, root directory and cgroups."""
    parts = []
    for name in NAMESPACES:
        try:
            parts.append(str(os.stat(f"/proc/self/ns/{name}").st_ino))
        except OSError:
            parts.append("-")
    top = os.stat("/")
    parts.append(f"{top.st_dev}:{top.st_ino}")
    # And the code: a podd of another checkout or Python must not run this one's commands.
    parts += [sys.executable, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    with open("/proc/self/cgroup", "rb") as f:
        parts.append(f.read(65536).decode(errors="replace"))
    return _sha256("\0".join(parts).encode())[:16]


def warm_dir(root):
    return os.path.join(root, WARM_DIR)


def socket_path(root, key=None):
    return os.path.join(warm_dir(root), f"podd.{key or context_key()}.sock")


def lock_path(root, key=None):
    return os.path.join(warm_dir(root), f"podd.{key or context_key()}.lock")


def usable_dir(root, create=True):
    """<root>/warm when it is safe to use: the root an existing state root of ours (no
    symlink, not writable by others, holding pods/), warm/ ours and 0700. None otherwise: the in-process
    command then says what is wrong with the root, if anything."""
    if not os.path.isabs(root):
        return None
    euid = os.geteuid()
    try:
        st = os.lstat(root)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, euid) or st.st_mode & 0o022:
        return None
    try:   # a state root already (its first `run` made pods/): never a mistyped --root /usr
        if not stat.S_ISDIR(os.lstat(os.path.join(root, "pods")).st_mode):
            return None
    except OSError:
        return None
    path = warm_dir(root)
    try:
        if create:
            os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != euid or st.st_mode & 0o077:
        return None
    return path


def same_file(fd, path):
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def start(root, key=None):
    """Start podd for (root, this context) unless one holds the lock; True when started.
    Detached (own session), stdin and stdout /dev/null, stderr <root>/warm/podd.log."""
    directory = usable_dir(root)
    if directory is None:
        return False
    key = key or context_key()
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        lock_fd = os.open(lock_path(root, key), os.O_RDWR | os.O_CREAT | flags, 0o600)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False           # one runs, starts or exits
        if not same_file(lock_fd, lock_path(root, key)):
            return False           # the podd that held it just removed it
        try:
            log_fd = os.open(os.path.join(directory, LOG_FILE),
                             os.O_WRONLY | os.O_CREAT | os.O_APPEND | flags, 0o600)
        except OSError:
            return False
        import subprocess   # only when starting one
        env = {k: os.environ[k] for k in PODD_ENVIRONMENT if k in os.environ}
        try:
            subprocess.Popen([sys.executable, "-P", "-m", "nsPod.podd", root,
                              "--lock-fd", str(lock_fd), "--key", key],
                             pass_fds=(lock_fd,), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=log_fd, start_new_session=True,
                             cwd="/", env=env)
        except OSError:
            return False
        finally:
            os.close(log_fd)
        return True
    finally:
        os.close(lock_fd)      # the lock lives on in podd's copy


def running(root, key=None):
    """podd's pid for (root, this context), or None when none holds the lock."""
    from nsPod import lockwait    # not at the top: the thin client's commands never look
    return lockwait.lock_holder_pid(lock_path(root, key))


def connect(root, key=None, timeout=CONNECT_TIMEOUT):
    """A connected socket to podd, or None when none listens."""
    path = socket_path(root, key)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        if len(os.fsencode(path)) < 100:
            sock.connect(path)
        else:   # past sun_path's 108 bytes: through an O_PATH fd of the directory
            dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
            try:
                sock.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
            finally:
                os.close(dir_fd)
    except OSError:
        sock.close()
        return None
    return sock


def stop(root, key=None, timeout=10.0):
    """Ask podd of (root, this context) to exit and wait until it has; True when one ran.
    For tests and tools (it waits by looking every 10 ms: a podd still importing has no
    socket yet)."""
    from nsPod import lockwait    # not at the top: the thin client's commands never stop podd

    def ask(deadline):
        sock = connect(root, key, timeout)
        if sock is None:
            return False
        with sock:
            try:
                sock.sendall(protocol.encode_request(protocol.Request("exit")))
                return sock.recv(protocol.MAX_REPLY).startswith(b"P")
            except OSError:
                return False

    return lockwait.stop_lock_holder(
        lock_path(root, key), ask, timeout,
        too_late=lambda: TimeoutError(f"podd of {root} did not exit within {timeout:g} s"))


def stop_all(root, timeout=10.0):
    """stop() every podd of the root, whatever its context (one started inside `unshare`
    too: its socket is in the same directory); returns how many ran."""
    try:
        names = os.listdir(warm_dir(root))
    except OSError:
        return 0
    keys = [n[len("podd."):-len(".lock")] for n in names
            if n.startswith("podd.") and n.endswith(".lock")]
    return sum(stop(root, key, timeout) for key in keys)


class _Forwarder:
    """SIGINT, SIGTERM, SIGHUP and SIGWINCH while the command runs elsewhere: each one is a
    byte to the command's process; those that came before the connection wait for it."""

    def __init__(self):
        self.sock = None
        self.pending = []
        self.last_fatal = None
        self.previous = {}

    def install(self):
        for signo in protocol.FORWARDED_SIGNALS:
            self.previous[signo] = signal.signal(signo, self.on_signal)

    def restore(self):
        for signo, handler in self.previous.items():
            signal.signal(signo, handler)

    def on_signal(self, signo, frame):
        if signo != signal.SIGWINCH:
            self.last_fatal = signo
        if self.sock is None:
            self.pending.append(signo)
            return
        try:
            self.sock.send(bytes([signo]), socket.MSG_DONTWAIT)
        except OSError:
            pass

    def attach(self, sock):
        self.sock = sock
        for signo in self.pending:
            self.on_signal(signo, None)


def run(argv):
    """Run the command in a process forked from podd: its exit code, or None when the warm
    path is not available and the caller must run the command itself."""
    if not enabled() or os.geteuid() != 0:
        return None
    root = root_of(argv)
    if usable_dir(root) is None:
        return None
    key = context_key()
    if len(os.fsencode(socket_path(root, key))) >= SUN_PATH_MAX:
        return None      # podd does not listen past sun_path: never start one that cannot
    forwarder = _Forwarder()
    forwarder.install()
    sock = connect(root, key)
    if sock is None:
        start(root, key)
        return _fallback(forwarder)
    with sock:
        try:
            code = _exchange(sock, argv, forwarder)
        except (OSError, protocol.ProtocolError):
            code = None
        if code is None:
            return _fallback(forwarder)
        forwarder.restore()
        return code


def _fallback(forwarder):
    forwarder.restore()
    fatal = [s for s in forwarder.pending if s != signal.SIGWINCH]
    if fatal:     # what the in-process command would have got
        if fatal[-1] == signal.SIGINT:
            os.write(2, b"interrupted\n")
            os._exit(130)
        signal.signal(fatal[-1], signal.SIG_DFL)
        os.kill(os.getpid(), fatal[-1])
    return None


def _exchange(sock, argv, forwarder):
    request = protocol.Request("run", argv, dict(os.environ), umask())
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fds = [0, 1, 2, cwd]
        for fd in fds[:3]:
            fcntl.fcntl(fd, fcntl.F_GETFD)       # a closed 0, 1 or 2: in-process instead
        frame = protocol.encode_request(request)
        sent = socket.send_fds(sock, [frame], fds)
        if sent < len(frame):
            sock.sendall(frame[sent:])
    finally:
        os.close(cwd)
    lines = Lines(sock)
    kind, pid = lines.next()
    if kind != "P":
        return None      # refused, or podd went away before the command started
    sock.settimeout(None)
    forwarder.attach(sock)
    try:
        kind, value = lines.next()
    except (OSError, protocol.ProtocolError, EOFError):
        kind, value = None, None
    if kind == "X":
        # Until the command's process has closed its end, in its exit: when nspod returns,
        # its process is gone, as when it ran here.
        try:
            while sock.recv(64):
                pass
        except OSError:
            pass
        return value
    # The command's process ended without its exit code: killed. What we forwarded killed
    # it: so ends this process too, as a command run in-process would have.
    if forwarder.last_fatal is not None:
        forwarder.restore()
        signal.signal(forwarder.last_fatal, signal.SIG_DFL)
        os.kill(os.getpid(), forwarder.last_fatal)
    os.write(2, f"error: the nspod command's process {pid} ended without an exit status "
                f"(killed?)\n".encode())
    return 1


def umask():
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    return 0o022


class Lines:
    def __init__(self, sock):
        self.sock = sock
        self.data = b""

    def next(self):
        """The next reply line as (kind, value); (None, None) at EOF."""
        while b"\n" not in self.data:
            if len(self.data) > protocol.MAX_REPLY:
                raise protocol.ProtocolError("reply too long")
            chunk = self.sock.recv(protocol.MAX_REPLY)
            if not chunk:
                return None, None
            self.data += chunk
        line, self.data = self.data.split(b"\n", 1)
        return protocol.decode_reply(line + b"\n")

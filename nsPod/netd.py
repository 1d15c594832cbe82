"""netd: the warm network helper of one state root.

    python -P -m nsPod.netd ROOT [--ready-fd N] [--lock-fd N]

Loads pyroute2 once and does the netlink work of every pod of ROOT, so neither the per-pod
monitor nor the CLI pays its import (200-400 ms, ~25 MB). It is started on demand by
nsPod.netclient and exits after NSPOD_NETD_IDLE seconds (default 30) without a request.

    <root>/network/netd.lock   flock held for netd's whole life: one netd per root. netclient
                               takes it before starting one and hands it over (--lock-fd);
                               started by hand, netd takes it itself, or exits quietly when
                               another netd holds it. Holds "<pid> <start time>".
    <root>/network/netd.sock   root-only unix socket (0600 in a 0700 directory; peers must be
                               uid 0): one JSON request line in, one JSON reply line out, per
                               connection; requests are served one at a time, in order.
    <root>/network/netd.log    its stderr

Requests ({"op": ..., "trace": true adds the narrated steps as "trace": [...]}):
    ping    -> {"ok": true, "pid": N}
    attach  {"pod", "pid", "bridge", "subnet", "preferred"?, "netns"?: true}
            lease from ipam, bridge ensured, veth, eth0 configured, /run/netns/nspod-<pod>
            -> {"ok", "ip", "prefixLength", "gateway", "mac", "hostVeth", "podVeth",
                "bridge", "netns"}       on failure nothing of it stays (the lease only if
                                         the pod held it before)
            {"address": CIDR, "gateway": IP} instead of "subnet": no ipam, that address.
    detach  {"pod", "bridge", "subnet"?, "hostVeth"?, "release"?: true, "removeBridge"?: false,
             "wait"?: true}
            netns name, veth, lease (with "subnet"), the bridge when unused; idempotent
            -> {"ok", "removed": [...]}   "wait": false replies before deleting the veth
                                          (~20 ms of RCU waits), which is done before the
                                          next request is read
    gc      {"bridge", "subnet", "keep": [pod names]}: every lease, veth and netns name of a
            pod not in keep goes, then the bridge when unused -> {"ok", "removed": [...]}
    exit    reply, then exit
On failure: {"error": "one line"}.

At idle exit, a bridge this netd worked with is removed when no pod of ROOT holds a lease
and no link is its port.
"""
import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import traceback

from nsPod import ipam, jsonline, syscalls
from nsPod.errors import InputError, NetworkError, NspodError
from nsPod.netclient import unix_address

SOCKET_FILE = "netd.sock"
LOCK_FILE = "netd.lock"
LOG_FILE = "netd.log"
DEFAULT_IDLE = 30.0
MAX_IDLE = 86400.0   # selectors take no longer wait than ~24.8 days (epoll's int milliseconds)
LOG_LIMIT = 1 << 20


def idle_seconds(environ=None):
    env = os.environ if environ is None else environ
    try:
        value = float(env.get("NSPOD_NETD_IDLE") or DEFAULT_IDLE)
    except ValueError:
        return DEFAULT_IDLE
    if value != value or value <= 0:   # NaN, zero, negative: the default
        return DEFAULT_IDLE
    return min(value, MAX_IDLE)      # 1e9 and inf: as long as a selector can wait


def _log(message):
    try:
        os.write(2, f"{time.strftime('%Y-%m-%dT%H:%M:%S')} netd[{os.getpid()}]: {message}\n".encode())
    except OSError:
        pass


class Netd:
    def __init__(self, root):
        self.root = root
        self.dir = ipam.network_dir(root)
        self.socket_path = os.path.join(self.dir, SOCKET_FILE)
        self.bridges = {}        # bridge -> subnet, of every bridge this netd worked with
        self.stop = False
        self.network = None
        self.after_reply = []    # work a request left for after its reply was sent

    # --- requests ------------------------------------------------------------------------------

    def handle(self, request):
        if not isinstance(request, dict):
            raise InputError("a request is a JSON object")
        op = request.get("op")
        handler = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        if handler is None:
            raise InputError(f"unknown op {op!r}")
        reply = handler(request) or {}
        reply["ok"] = True
        return reply

    def op_ping(self, request):
        return {"pid": os.getpid(), "root": self.root}

    def op_exit(self, request):
        self.stop = True
        return {"pid": os.getpid()}

    def op_attach(self, request):
        network = self.network
        pod = _pod_name(request)
        pid = _positive_int(request, "pid")
        bridge = _bridge(request)
        want_netns = request.get("netns", True)
        undo = []
        ns_fd = network.open_netns(pid)
        try:
            if request.get("address"):
                address = str(request["address"])
                gateway = _required(request, "gateway")
            else:
                leases = ipam.Leases(self.root, _required(request, "subnet"))
                self._check_owner(bridge)
                ip, created = leases.acquire(pod, request.get("preferred"))
                if created:
                    undo.append(lambda: leases.release(pod))
                address, gateway = leases.cidr(ip), leases.gateway
                self.bridges[bridge] = leases.subnet
            result = network.attach(pod, pid, address, gateway, bridge, netns_fd=ns_fd,
                                    owner=self.root)
            undo.append(lambda: network.detach(result["hostVeth"]))
            if want_netns:
                result["netns"] = network.netns_attach(pod, pid, netns_fd=ns_fd)
            return result
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except Exception as e:   # keep the first error; say what could not be undone
                    _log(f"attach {pod}: undo failed: {e}")
            raise
        finally:
            os.close(ns_fd)

    def op_detach(self, request):
        network = self.network
        pod = _pod_name(request)
        bridge = _bridge(request)
        host = request.get("hostVeth") or network.host_veth_name(pod, bridge)
        if not network.is_host_veth_name(host):
            raise InputError(f"hostVeth {host!r} is not the name of an nspod veth")
        subnet = request.get("subnet")
        if subnet:
            self.bridges[bridge] = ipam.parse_subnet(subnet).exploded
        removed = []
        with _Teardown(f"detach pod {pod}") as steps:
            with steps.step():
                if network.netns_detach(pod):
                    removed.append(network.netns_path(pod))
            with steps.step():
                if request.get("wait", True):
                    if network.detach(host):
                        removed.append(f"veth {host}")
                elif network.link_exists(host):
                    # Deleting a veth waits for RCU grace periods (~20 ms): done after the
                    # reply, and before the next request is read, so no later request sees it.
                    self.after_reply.append(lambda: network.detach(host))
                    removed.append(f"veth {host}")
            if subnet and request.get("release", True):
                with steps.step():
                    ip = ipam.Leases(self.root, subnet).release(pod)
                    if ip:
                        removed.append(f"lease {ip}")
            if request.get("removeBridge"):
                with steps.step():
                    if self.after_reply:
                        self.after_reply.append(lambda: self._remove_bridge(bridge, subnet))
                    elif self._remove_bridge(bridge, subnet):
                        removed.append(f"bridge {bridge}")
        return {"removed": removed}

    def _remove_bridge(self, bridge, subnet):
        return self._bridge_unused(bridge, subnet) and self.network.remove_bridge_if_unused(bridge)

    def op_gc(self, request):
        network = self.network
        bridge = _bridge(request)
        leases = ipam.Leases(self.root, _required(request, "subnet"))
        keep = request.get("keep") or []
        if not isinstance(keep, list) or not all(isinstance(p, str) for p in keep):
            raise InputError("keep: a list of pod names")
        removed = []
        kept_veths = {network.host_veth_name(p, bridge) for p in keep}
        with _Teardown("gc") as steps:
            for pod, ip in sorted(leases.all().items()):
                if pod in keep:
                    continue
                host = network.host_veth_name(pod, bridge)
                with steps.step():
                    if network.netns_detach(pod):
                        removed.append(network.netns_path(pod))
                with steps.step():
                    if network.detach(host):
                        removed.append(f"veth {host}")
                with steps.step():
                    if leases.release(pod):
                        removed.append(f"lease {ip} of pod {pod}")
            if network.bridge_owner(bridge) in (self.root, None):
                for port in network.bridge_ports(bridge):
                    if network.is_host_veth_name(port) and port not in kept_veths:
                        with steps.step():
                            if network.detach(port):
                                removed.append(f"veth {port}")
            with steps.step():
                if self._remove_bridge(bridge, leases.subnet):
                    removed.append(f"bridge {bridge}")
        return {"removed": removed}

    # --- helpers -----------------------------------------------------------------------------

    def _check_owner(self, bridge):
        """A bridge serves one state root: two roots handing out the same subnet would clash."""
        owner = self.network.bridge_owner(bridge)
        if owner is None or owner == self.root:
            return
        try:
            with open(os.path.join(ipam.network_dir(owner), ipam.LEASES_FILE)) as f:
                held = json.load(f).get("leases") or {}
        except (OSError, ValueError, AttributeError):
            held = {}
        if held:
            raise NetworkError(
                f"bridge {bridge} serves the pods of nspod root {owner} ({len(held)} leases); "
                f"give {self.root} its own --bridge and --subnet")

    def _bridge_unused(self, bridge, subnet):
        if self.network.bridge_owner(bridge) not in (self.root, None):
            return False
        if subnet:
            try:
                if ipam.Leases(self.root, subnet).all():
                    return False
            except NspodError:
                return False
        return not self.network.bridge_ports(bridge)

    def cleanup_on_exit(self):
        for bridge, subnet in self.bridges.items():
            try:
                if self._bridge_unused(bridge, subnet) and self.network.remove_bridge_if_unused(bridge):
                    _log(f"idle: removed the unused bridge {bridge}")
            except Exception as e:
                _log(f"idle: could not remove bridge {bridge}: {e}")

    # --- serving -----------------------------------------------------------------------------

    def serve(self, conn):
        conn.settimeout(5.0)
        reply = None
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            data = jsonline.read_line(conn)
            if not data:
                return
            if uid != 0:
                reply = {"error": "netd serves root only"}
            else:
                reply = self.answer(data)
            jsonline.send(conn, reply)
        except OSError as e:
            _log(f"connection: {e}")
        finally:
            conn.close()
            self.run_after_reply()

    def run_after_reply(self):
        work, self.after_reply = self.after_reply, []
        for step in work:
            try:
                step()
            except Exception as e:
                _log(f"after reply: {e}")

    def answer(self, data):
        lines = None
        saved_trace = syscalls.trace
        try:
            request = json.loads(data)
            if isinstance(request, dict) and request.get("trace"):
                lines = []
                syscalls.trace = lines.append
            reply = self.handle(request)
        except ValueError as e:
            reply = {"error": f"netd: bad request: {e}"}
        except NspodError as e:
            reply = {"error": str(e)}
        except Exception as e:
            _log("internal error:\n" + traceback.format_exc())
            reply = {"error": f"netd: internal error: {type(e).__name__}: {e}"}
        finally:
            syscalls.trace = saved_trace
        if lines is not None:
            reply["trace"] = lines
        return reply


class _Teardown:
    """Every step of an undo is tried; the failures are raised together at the end.

        with _Teardown("detach pod web") as steps:
            with steps.step(): first()
            with steps.step(): second()     # runs even when first() failed
    """

    def __init__(self, what):
        self.what = what
        self.errors = []

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None and self.errors:
            raise NetworkError(f"{self.what}: " + "; ".join(self.errors))
        return False

    @contextlib.contextmanager
    def step(self):
        try:
            yield
        except Exception as e:
            self.errors.append(str(e) if isinstance(e, NspodError) else f"{type(e).__name__}: {e}")


def _required(request, key):
    value = request.get(key)
    if value in (None, ""):
        raise InputError(f"{request.get('op')}: {key!r} is required")
    return value


def _pod_name(request):
    pod = _required(request, "pod")
    if not isinstance(pod, str) or "/" in pod or "\0" in pod or pod in (".", ".."):
        raise InputError(f"pod: {pod!r} is not a pod name")
    return pod


def _bridge(request):
    bridge = _required(request, "bridge")
    if not isinstance(bridge, str) or not 0 < len(bridge) <= 15 or "/" in bridge \
            or not bridge.isprintable() or " " in bridge:
        raise InputError(f"bridge: {bridge!r} is not a link name")
    return bridge


def _positive_int(request, key):
    value = request.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InputError(f"{request.get('op')}: {key!r} must be a positive integer")
    return value


def _take_lock(path, fd=None):
    """The root's netd lock: the fd handed over by netclient, or taken here; None if held."""
    if fd is None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
    else:
        os.set_inheritable(fd, False)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # ours already: a no-op check
    from nsPod.state import process_start_time
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {process_start_time(os.getpid())}\n".encode(), 0)
    return fd


def _listen(path):
    """Bind beside the final path and rename over it: clients never see a half-made socket,
    and a stale socket of a dead netd is replaced in one step."""
    tmp = f"{path}.{os.getpid()}"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        with unix_address(tmp) as address:
            sock.bind(address)
    finally:
        os.umask(old)
    sock.listen(128)
    os.rename(tmp, path)
    return sock, os.stat(path).st_ino


def _unlink_if_ours(path, inode):
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def _parse_args(argv):
    root, ready_fd, lock_fd = None, None, None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--ready-fd":
            ready_fd = int(args.pop(0))
        elif arg == "--lock-fd":
            lock_fd = int(args.pop(0))
        elif root is None:
            root = arg
        else:
            raise SystemExit("usage: python -m nsPod.netd ROOT [--ready-fd N] [--lock-fd N]")
    if root is None or not os.path.isabs(root):
        raise SystemExit("usage: python -m nsPod.netd ROOT (an absolute path)")
    return os.path.normpath(root), ready_fd, lock_fd


def main(argv):
    root, ready_fd, lock_fd = _parse_args(argv)
    os.chdir("/")
    os.umask(0o077)
    netd = Netd(root)
    os.makedirs(netd.dir, mode=0o700, exist_ok=True)
    lock_fd = _take_lock(os.path.join(netd.dir, LOCK_FILE), lock_fd)
    if lock_fd is None:
        return 0          # another netd serves this root
    _trim_log(os.path.join(netd.dir, LOG_FILE))

    # Whoever started us (a monitor) may have blocked signals: the mask survives exec.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_w)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signo, frame: None)

    from nsPod import network    # pyroute2 comes in here, once
    netd.network = network
    try:
        network._host_ipr()
    except NetworkError as e:
        _log(f"cannot start: {e}")
        return 1
    listener, inode = _listen(netd.socket_path)
    idle = idle_seconds()
    if ready_fd is not None:
        try:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
        except OSError:
            pass

    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listen")
    selector.register(wakeup_r, selectors.EVENT_READ, "signal")
    last = time.monotonic()
    try:
        while not netd.stop:
            remaining = idle - (time.monotonic() - last)
            if remaining <= 0:
                break
            for key, _ in selector.select(remaining):
                if key.data == "signal":
                    try:
                        while os.read(wakeup_r, 64):
                            pass
                    except BlockingIOError:
                        pass
                    netd.stop = True
                elif not netd.stop:
                    conn, _ = listener.accept()
                    netd.serve(conn)
                    last = time.monotonic()
    finally:
        # New clients now find no socket and wait for the lock, which goes with us; those
        # already queued on the listener are served rather than dropped.
        _unlink_if_ours(netd.socket_path, inode)
        listener.setblocking(False)
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, OSError):
                break
            conn.setblocking(True)
            netd.serve(conn)
        listener.close()
        netd.cleanup_on_exit()
        network.close()
    return 0


def _trim_log(path):
    try:
        if os.path.getsize(path) > LOG_LIMIT:
            os.truncate(path, 0)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

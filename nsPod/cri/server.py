"""`nspod cri`: the CRI server's process. It listens on a unix socket only root can reach
(0600), answers from a thread pool, logs to stderr, and ends on SIGTERM/SIGINT (pods stay:
they belong to their monitors, as containers outlive a restarted containerd)."""
import dataclasses
import ipaddress
import os
import signal
import stat
import threading

from nsPod.errors import InputError, NspodError
from nsPod.cri import protocol
from nsPod.cri.protocol import Code, CriError, log

DEFAULT_LISTEN = "unix:///run/nspod/cri.sock"


def socket_path(listen):
    if not listen.startswith("unix://"):
        raise InputError(f"--listen: {listen!r}: only unix:///absolute/path is supported")
    path = listen[len("unix://"):]
    if not path.startswith("/") or os.path.normpath(path) != path:
        raise InputError(f"--listen: {listen!r}: the socket path must be absolute and "
                         "normalised")
    if len(path.encode()) > 107:
        raise InputError(f"--listen: {path} is longer than a unix socket path may be (107)")
    return path


def check_stream_address(address):
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise InputError(f"--stream-address: {address!r} is not an IP address") from None


class Server:
    def __init__(self, config, listen=DEFAULT_LISTEN, stream_address="127.0.0.1"):
        self.config = config
        self.path = socket_path(listen)
        self.stream_address = check_stream_address(stream_address)
        self._streaming = None
        self._streaming_lock = threading.Lock()
        self.grpc = None
        self.hostports = None
        self._monitors = {}         # pid -> start time of the monitors this server started
        self._children_lock = threading.Lock()

    def set_pod_cidr(self, cidr):
        """UpdateRuntimeConfig: the pod CIDR new sandboxes get their IP from. The bridge
        serves one subnet: a change is refused while a bridged pod of this root runs."""
        from nsPod import config as config_module
        from nsPod.cri import store
        try:
            subnet = config_module.load(root=self.config.root, subnet=cidr).subnet
        except InputError as e:
            raise InputError(f"runtime_config.network_config.pod_cidr: {e}") from None
        if subnet == self.config.subnet:
            return
        running = [p.name for p in store.all_pods(self.config.root)
                   if p.ready() and p.plan.get("network", {}).get("mode") == "bridge"]
        if running:
            raise CriError(f"runtime_config.network_config.pod_cidr: {cidr}: pods on the "
                           f"current subnet {self.config.subnet} run ({', '.join(running)})",
                           Code.FAILED_PRECONDITION)
        self.config = dataclasses.replace(self.config, subnet=subnet)
        log.info("pod CIDR is now %s", subnet)

    def streaming(self):
        """The stream helper's server, started on first use."""
        with self._streaming_lock:
            if self._streaming is None:
                try:
                    from nsPod.cri.streaming import StreamingServer
                except ImportError:
                    raise CriError("streaming (exec, attach, port-forward) is not built in",
                                   Code.UNIMPLEMENTED) from None
                s = StreamingServer(self.config.root, host=self.stream_address, port=0)
                s.start()
                self._streaming = s
            return self._streaming

    def run_nspod(self, args, timeout):
        from nsPod.cri.runtime import run_nspod
        return run_nspod(self.config, args, timeout)

    def track_monitor(self, pod):
        """The monitor of a sandbox this server made is its child: remembered (pid and start
        time) to be reaped once it ends."""
        monitor = pod.state.get("monitor")
        if monitor is not None and monitor.get("pid"):
            with self._children_lock:
                self._monitors[monitor.pid] = monitor.get("startTime")

    def reap_monitors(self):
        """Every few seconds: host ports of sandboxes that are gone are closed, and the
        monitors this server started that ended are reaped (or they would stay zombies).
        Only those: any other child (ExecSync's, the streaming server's) has its waiter."""
        from nsPod.cri import store
        from nsPod.store import state
        # Host ports of sandboxes stopped or removed behind CRI's back (`nspod stop/rm`);
        # the published ones are taken before the pods are read: a sandbox published in
        # between is not mistaken for a gone one.
        published = list(self.hostports.forwarders)
        ready = {p.id for p in store.all_pods(self.config.root) if p.ready()}
        for sandbox_id in [i for i in published if i not in ready]:
            self.hostports.unpublish(sandbox_id)
        with self._children_lock:
            for pid, start_time in list(self._monitors.items()):
                if state.process_start_time(pid) != start_time:
                    del self._monitors[pid]     # reaped already, or never ours
                    continue
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    del self._monitors[pid]

    def start(self):
        from nsPod.cri.runtime import Images, Runtime
        from nsPod.kernel import paths
        paths.check_root(self.config.root, create=True)
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise NspodError(f"--listen: {self.path} exists and is not a socket")
            os.unlink(self.path)   # a socket left by a server that was killed
        # Created 0600: only root reaches the runtime (umask covers the bind's moment).
        from nsPod.cri import sandboxes
        from nsPod.cri.hostports import HostPorts
        self.hostports = HostPorts()
        sandboxes.republish(self.config, self.hostports)
        old = os.umask(0o177)
        try:
            self.grpc = protocol.serve(Runtime(self), Images(self), f"unix://{self.path}")
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        log.info("listening on unix://%s (root %s)", self.path, self.config.root)

    def stop(self):
        if self.grpc is not None:
            self.grpc.stop(grace=2).wait()
        if self._streaming is not None:
            self._streaming.stop()
        if self.hostports is not None:
            self.hostports.stop()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def serve_forever(config, listen=DEFAULT_LISTEN, stream_address="127.0.0.1", verbose=False):
    """Run until SIGTERM or SIGINT."""
    protocol.log_to_stderr(verbose)
    server = Server(config, listen, stream_address)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signo, frame: done.set())
    server.start()
    try:
        while not done.wait(5):
            try:
                server.reap_monitors()
            except Exception as e:  # never the server's end: said, and tried again later
                log.warning("reaping monitors: %s", e)
    finally:
        log.info("stopping")
        server.stop()

"""The per-pod monitor: one detached process per pod that owns the pod's lifetime.

It makes the pod (volumes, pause, containers), is the parent or subreaper of every process in
it, records each exit, turns container output into CRI logs, answers the control socket, and
tears the pod down when pause dies, when every container has ended, or when told to stop.
It sleeps in the kernel: one selector over the signal wakeup fd (SIGCHLD, SIGTERM), the
control socket and the log pipes. It imports no click, yaml or pyroute2 (memory per pod).

Started by the CLI as `python -m nsPod.monitor POD_DIR READY_FD LOCK_FD`: it reports
{"ok": true, "warnings": [...]} or {"error": "..."} on READY_FD, then lives on alone.
"""
import errno
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time

from nsPod import container, logs, namespaces, sandbox, security, state, volumes
from nsPod.cgroups import Limits
from nsPod.cgroups import parents as cgroup_parents
from nsPod.errors import NspodError, describe
from nsPod.plan import PAUSE_CGROUP, PodPlan, container_from_json
from nsPod.process import ChildFailed
from nsPod.state import ProcessRef, now_rfc3339

CONTROL_TIMEOUT = 2.0


class Aborted(NspodError):
    pass


def exit_status(status):
    """(exitCode, signal) as Kubernetes reports them: 128+n for a signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    return os.WEXITSTATUS(status), None


class Monitor:
    def __init__(self, pod_path):
        root = os.path.dirname(os.path.dirname(pod_path))
        self.dir = state.PodDir(root, os.path.basename(pod_path))
        doc = self.dir.read_pod()
        self.plan = PodPlan.from_json(doc["plan"])
        self.state = {
            "phase": "Pending",
            "startTime": now_rfc3339(),
            "monitor": ProcessRef.of(os.getpid()).to_json(),
            "pause": None,
            "namespaces": {},
            "mounts": [],
            "containers": {},
            "cgroup": None,
        }
        self.cgroups = None
        self.forwarders = []
        self.selector = selectors.DefaultSelector()
        self.children = {}         # pid -> container name, or "" for pause
        self.streams = {}          # read fd -> (container name, StreamWriter)
        self.log_fds = {}          # container name -> log file fd
        self.stop_deadline = None  # set once stopping: SIGKILL after it
        self.stop_waiters = []     # control connections to answer when the pod is down
        self.setup_done = False
        self.final_reason = None

    # --- state -------------------------------------------------------------------------

    def save(self):
        self.dir.write_state(self.state)

    def container_state(self, name):
        return self.state["containers"][name]

    # --- setup: a straight line, each step recorded before it is taken ------------------

    def setup(self):
        os.makedirs(self.dir.file("logs"), exist_ok=True)
        os.makedirs(self.dir.file("containers"), exist_ok=True)
        for c in self.plan.init_containers + self.plan.containers:
            self.state["containers"][c.name] = waiting_state(c, "ContainerCreating")
        self.save()
        self.open_control_socket()
        self.make_pod_cgroup()
        self.make_volumes()
        self.write_etc_files()
        self.start_pause()
        self.connect_network()
        self.publish_host_ports()
        warnings = []
        for c in self.plan.containers:
            warning = self.start_container(c)
            if warning:
                warnings.append(warning)
        self.state["phase"] = "Running"
        self.save()
        self.setup_done = True
        if self.all_containers_ended():
            self.begin_stop(0)
        return warnings

    def open_control_socket(self):
        path = self.dir.file(state.CONTROL_SOCKET)
        with _suppress_missing():
            os.unlink(path)
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)  # root-only from the moment it exists
        try:
            self.control.bind(path)
        finally:
            os.umask(old)
        self.control.listen(8)
        self.selector.register(self.control, selectors.EVENT_READ, "control")

    def cgroup_rel(self, name=None):
        return self.plan.name if name is None else f"{self.plan.name}/{name}"

    def make_pod_cgroup(self):
        # Recorded before it is made: a crash in between leaves gc something to find.
        self.state["cgroup"] = f"{self.plan.cgroup_parent}/{self.plan.name}"
        self.save()
        self.cgroups = cgroup_parents.create(self.dir.root, self.plan.cgroup_parent,
                                             self.cgroup_rel(), Limits(**self.plan.pod_limits))
        self.cgroups.create(self.cgroup_rel(PAUSE_CGROUP), Limits())

    def attach_to(self, name):
        """spawn's prepare step: the process enters its cgroup before it runs anything."""
        rel = self.cgroup_rel(name)
        return lambda pid: self.cgroups.attach(rel, pid)

    def make_volumes(self):
        pod_volumes = list(self.plan.volumes)
        for v in pod_volumes:
            if v.kind == "tmpfs":
                self.record_mount(v.path)
            volumes.create(v)
        if self.plan.shm_path:
            os.makedirs(self.plan.shm_path, exist_ok=True)
            self.record_mount(self.plan.shm_path)
            from nsPod.mounts import mount_tmpfs
            from nsPod.syscalls import MountFlag
            mount_tmpfs(self.plan.shm_path, "mode=1777,size=65536k",
                        MountFlag.MS_NOSUID | MountFlag.MS_NODEV | MountFlag.MS_NOEXEC)

    def write_etc_files(self):
        """The pod's hosts, hostname and resolv.conf: one copy, bind-mounted into each container."""
        etc = self.dir.file("etc")
        os.makedirs(etc, exist_ok=True)
        for name, content in self.plan.etc_files.items():
            state.write_text(os.path.join(etc, name), content)

    def connect_network(self):
        network = self.plan.network
        if network["mode"] != "bridge":
            return
        from nsPod import netclient
        # Recorded first: whatever part of it exists, teardown and gc know to undo it.
        self.state["network"] = {"bridge": network["bridge"], "subnet": network["subnet"]}
        self.state["podIP"] = network["ip"]
        self.save()
        reply = netclient.attach(self.dir.root, self.plan.name, self.state["pause"]["pid"],
                                 network["bridge"], network["subnet"], preferred=network["ip"])
        reply.pop("ok", None)
        self.state["network"] = reply
        self.state["network"]["subnet"] = network["subnet"]
        self.state["podIP"] = reply["ip"]
        self.save()

    def publish_host_ports(self):
        if not self.plan.host_ports:
            return
        from nsPod import ports
        for host_port, container_port, _ in self.plan.host_ports:
            listener = ports.bind(host_port)
            self.forwarders.append(
                ports.Forwarder(self.selector, listener, self.state["podIP"], container_port))
        self.state["hostPorts"] = self.plan.host_ports
        self.save()

    def record_mount(self, path):
        self.state["mounts"].append(path)
        self.save()

    def start_pause(self):
        pid = sandbox.spawn(self.plan, set_pdeathsig=_die_with_monitor,
                            prepare=self.attach_to(PAUSE_CGROUP))
        self.children[pid] = ""
        self.state["pause"] = ProcessRef.of(pid).to_json()
        self.state["namespaces"] = namespaces.ns_ids(pid, ("net", "ipc", "uts", "pid"))
        self.save()

    def start_container(self, plan):
        """Start one container; a failure is its status (StartError), not the pod's end."""
        name = plan.name
        cstate = self.container_state(name)
        run = cstate["restartCount"]
        log_dir = self.dir.file("logs", name)
        os.makedirs(log_dir, exist_ok=True)
        log_path = os.path.join(log_dir, f"{run}.log")
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        container_dir = self.dir.file("containers", name)
        os.makedirs(container_dir, exist_ok=True)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        cstate["log"] = os.path.relpath(log_path, self.dir.path)
        cstate["cgroup"] = f"{self.plan.cgroup_parent}/{self.cgroup_rel(name)}"
        self.cgroups.create(self.cgroup_rel(name), Limits(**plan.limits))
        cstate["oomKills"] = self.cgroups.oom_kills(self.cgroup_rel(name))
        started_at = now_rfc3339()
        try:
            pid = container.spawn(self.plan, plan, self.state["pause"]["pid"], container_dir,
                                  out_w, err_w, set_pdeathsig=_die_with_monitor,
                                  prepare=self.attach_to(name))
        except ChildFailed as e:
            for fd in (out_r, err_r, log_fd):
                os.close(fd)
            finished = now_rfc3339()
            cstate["state"] = {"terminated": {
                "exitCode": 128, "reason": "StartError", "message": e.message,
                "startedAt": started_at, "finishedAt": finished}}
            cstate.pop("pid", None)
            self.save()
            return f"container {name}: StartError: {e.message}"
        finally:
            # Only the container may hold the write ends, so its exit is our EOF.
            os.close(out_w)
            os.close(err_w)
        self.children[pid] = name
        self.log_fds[name] = log_fd
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            self.streams[fd] = (name, logs.StreamWriter(log_fd, stream))
            self.selector.register(fd, selectors.EVENT_READ, "log")
        ref = ProcessRef.of(pid)
        cstate.update({
            "pid": ref.pid, "pidStartTime": ref.start_time,
            "state": {"running": {"startedAt": started_at}},
            "started": True, "ready": True,
            "namespaces": namespaces.ns_ids(pid),
        })
        self.save()
        return None

    # --- the loop ------------------------------------------------------------------------

    def loop(self):
        while True:
            timeout = None
            if self.stop_deadline is not None:
                timeout = max(0.0, self.stop_deadline - time.monotonic())
            for key, _ in self.selector.select(timeout):
                if key.data == "signal":
                    self.on_signal()
                elif key.data == "control":
                    self.on_control()
                elif key.data == "log":
                    self.on_log(key.fd)
                else:
                    key.data.on_ready(key.fileobj)
            if self.stop_deadline is not None and time.monotonic() >= self.stop_deadline:
                self.kill_everything(signal.SIGKILL)
                self.stop_deadline = time.monotonic() + 3600
            if self.finished():
                return

    def on_signal(self):
        try:
            while os.read(self.wakeup_r, 512):
                pass
        except BlockingIOError:
            pass
        self.reap()
        if self.term_requested and self.stop_deadline is None:
            self.begin_stop(self.plan.grace_seconds)

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            name = self.children.pop(pid, None)
            if name == "":
                self.on_pause_exit(status)
            elif name is not None:
                self.on_container_exit(name, status)
            # anything else: an orphan re-parented to us; reaping it is all it needs

    def on_pause_exit(self, status):
        if self.stop_deadline is None:
            code, sig = exit_status(status)
            how = f"signal {sig}" if sig else f"exit code {code}"
            self.final_reason = ("SandboxDied", f"the pod's pause process ended ({how})")
            self.begin_stop(0)

    def on_container_exit(self, name, status):
        code, sig = exit_status(status)
        cstate = self.container_state(name)
        running = cstate["state"].get("running", {})
        # The kernel counts OOM kills per cgroup: a rise since the start names this container
        # as the victim, whether its own limit or the pod's was hit.
        oom_kills = self.cgroups.oom_kills(self.cgroup_rel(name))
        oom = oom_kills > cstate.get("oomKills", 0)
        cstate["oomKills"] = oom_kills
        terminated = {
            "exitCode": code,
            "reason": "OOMKilled" if oom else "Completed" if code == 0 else "Error",
            "startedAt": running.get("startedAt"),
            "finishedAt": now_rfc3339(),
        }
        if sig:
            terminated["signal"] = sig
        cstate["state"] = {"terminated": terminated}
        cstate["ready"] = False
        cstate["started"] = False
        cstate.pop("pid", None)
        cstate.pop("pidStartTime", None)
        self.save()
        if self.stop_deadline is None and self.all_containers_ended():
            # restartPolicy Never: once every container has ended the pod is done.
            self.begin_stop(0)

    def all_containers_ended(self):
        names = [c.name for c in self.plan.containers]
        return bool(names) and all(
            "terminated" in self.container_state(n)["state"] for n in names)

    def on_log(self, fd):
        name, writer = self.streams[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if data:
            writer.feed(data)
            return
        writer.close()
        self.selector.unregister(fd)
        os.close(fd)
        del self.streams[fd]

    # --- control socket ------------------------------------------------------------------

    def on_control(self):
        conn, _ = self.control.accept()
        conn.settimeout(CONTROL_TIMEOUT)
        try:
            uid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
            if uid != 0:
                raise NspodError("only root may control a pod")
            request = json.loads(_read_line(conn))
            op = request.get("op")
            if op == "stop":
                self.stop_waiters.append(conn)
                timeout = request.get("timeout")
                self.begin_stop(self.plan.grace_seconds if timeout is None else timeout)
                return
            if op == "add":
                reply = self.add_container(request)
            elif op == "ping":
                reply = {"ok": True}
            else:
                raise NspodError(f"unknown request {op!r}")
        except (OSError, ValueError, NspodError) as e:
            reply = {"error": describe(e)}
        _send(conn, reply)
        conn.close()

    def add_container(self, request):
        if self.stop_deadline is not None:
            raise NspodError(f"pod {self.plan.name} is stopping")
        plan = container_from_json(request["container"])
        if self.plan.container(plan.name):
            raise NspodError(f"pod {self.plan.name} already has a container {plan.name!r}")
        self.plan.containers.append(plan)
        doc = self.dir.read_pod()
        doc["plan"] = self.plan.to_json()
        doc["manifest"] = request["manifest"]
        self.dir.write_pod(doc)
        self.state["containers"][plan.name] = waiting_state(plan, "ContainerCreating")
        warning = self.start_container(plan)
        return {"ok": True, "warnings": [warning] if warning else []}

    # --- stopping ------------------------------------------------------------------------

    def begin_stop(self, grace_seconds):
        """SIGTERM now, SIGKILL at the deadline; teardown once everything has been reaped."""
        if self.stop_deadline is not None:
            self.stop_deadline = min(self.stop_deadline, time.monotonic() + grace_seconds)
            return
        self.stop_deadline = time.monotonic() + grace_seconds
        self.kill_containers(signal.SIGTERM if grace_seconds > 0 else signal.SIGKILL)
        if not self.container_pids():
            self.kill_pause()

    def container_pids(self):
        return [pid for pid, name in self.children.items() if name]

    def kill_containers(self, sig):
        for pid in self.container_pids():
            _kill(pid, sig)

    def kill_pause(self):
        for pid, name in self.children.items():
            if name == "":
                # pause exits 0 on SIGTERM; as PID 1 of a shared pid namespace its exit
                # takes every remaining process of the namespace with it.
                _kill(pid, signal.SIGTERM)

    def kill_everything(self, sig):
        self.kill_containers(sig)
        for pid, name in self.children.items():
            if name == "":
                _kill(pid, signal.SIGKILL)

    def finished(self):
        if self.stop_deadline is None:
            return False
        if self.container_pids():
            return False
        if "" in self.children.values():
            self.kill_pause()
            return False
        return True

    # --- teardown: every step idempotent --------------------------------------------------

    def teardown(self):
        for forwarder in self.forwarders:
            forwarder.close()
        self.forwarders = []
        self.drain_logs()
        # Each undo step runs even when an earlier one failed; what fails stays recorded in
        # the state for `nspod gc` to retry.
        for what, undo in (
                ("unmount volumes", lambda: unmount_recorded(self.state)),
                ("remove cgroups", lambda: remove_cgroups(self.dir.root, self.state)),
                ("detach network", lambda: detach_network(self.dir.root, self.plan.name,
                                                          self.state))):
            try:
                undo()
            except (NspodError, OSError) as e:
                print(f"nspod monitor: {what}: {describe(e)}", file=sys.stderr)
        self.state["phase"] = final_phase(self.state, self.plan)
        if self.final_reason:
            self.state["reason"], self.state["message"] = self.final_reason
        self.state["pause"] = None
        self.save()

    def drain_logs(self):
        for fd in list(self.streams):
            # What the containers wrote before they ended.
            name, writer = self.streams.pop(fd)
            with _suppress_os():
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    writer.feed(data)
            writer.close()
            os.close(fd)
        for fd in self.log_fds.values():
            os.close(fd)
        self.log_fds.clear()


def waiting_state(plan, reason):
    return {"state": {"waiting": {"reason": reason}}, "restartCount": 0, "ready": False,
            "started": False, "init": plan.init}


def final_phase(pod_state, plan):
    """Succeeded when every app container ended with 0 under restartPolicy Never."""
    codes = []
    for c in plan.containers:
        terminated = pod_state["containers"][c.name]["state"].get("terminated")
        codes.append(terminated["exitCode"] if terminated else 137)
    return "Succeeded" if codes and all(code == 0 for code in codes) else "Failed"


def unmount_recorded(pod_state):
    """Unmount what the state says was mounted; 'not mounted' is success."""
    from nsPod.mounts import detach
    for path in reversed(pod_state.get("mounts", [])):
        detach(path)
    pod_state["mounts"] = []


def remove_cgroups(root, pod_state):
    """Kill what is left in the pod's cgroup and remove it; 'already gone' is success."""
    path = pod_state.get("cgroup")
    if not path:
        return
    parent, _, name = path.rpartition("/")
    cgroup_parents.remove(root, parent, name)
    pod_state["cgroup"] = None


def detach_network(root, pod_name, pod_state):
    """veth, netns name, lease; the bridge too when no pod uses it any more."""
    network = pod_state.get("network")
    if not network:
        return
    from nsPod import netclient
    netclient.detach(root, pod_name, network["bridge"], network.get("subnet"), wait=False,
                     remove_bridge=True)
    pod_state["network"] = None


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _die_with_monitor():
    security.set_parent_death_signal(signal.SIGKILL)


def _read_line(conn):
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def _send(conn, reply):
    with _suppress_os():
        conn.sendall(json.dumps(reply).encode() + b"\n")


class _suppress_os:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, OSError)


class _suppress_missing(_suppress_os):
    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, OSError) and exc.errno == errno.ENOENT


def main(argv):
    pod_path, ready_fd, lock_fd, parent_pid = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    # The lock stays ours for life; no child may carry it past its exec.
    os.set_inheritable(lock_fd, False)
    os.set_inheritable(ready_fd, False)
    monitor = Monitor(pod_path)
    monitor.term_requested = False

    def on_term(signo, frame):
        if not monitor.setup_done:
            raise Aborted(f"interrupted by signal {signo} while making the pod")
        monitor.term_requested = True

    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_r, False)
    os.set_blocking(wakeup_w, False)
    monitor.wakeup_r = wakeup_r
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda signo, frame: None)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    monitor.selector.register(wakeup_r, selectors.EVENT_READ, "signal")

    reply = {"ok": True}
    try:
        security.become_subreaper()
        # While the CLI waits for us, its death (Ctrl-C, kill) must undo the half-made pod.
        security.set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != parent_pid:
            raise Aborted("the nspod command that started the monitor is gone")
        reply["warnings"] = monitor.setup()
        security.clear_parent_death_signal()
    except BaseException as e:
        reply = {"error": describe(e)}
        if not isinstance(e, (NspodError, OSError, ChildFailed)):
            import traceback
            traceback.print_exc()
        monitor.setup_done = True  # a second signal must not interrupt the undoing
        monitor.begin_stop(0)
    _send_ready(ready_fd, reply)
    # From here on the CLI is gone: our stderr is the pod's monitor.log.
    log_fd = os.open(monitor.dir.file("monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    try:
        monitor.loop()
    finally:
        monitor.teardown()
        for conn in monitor.stop_waiters:
            _send(conn, {"ok": True, "phase": monitor.state["phase"]})
            conn.close()
        with _suppress_os():
            os.unlink(monitor.dir.file(state.CONTROL_SOCKET))
    return 0 if "error" not in reply else 1


def _send_ready(fd, reply):
    with _suppress_os():
        os.write(fd, json.dumps(reply).encode())
    with _suppress_os():
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The per-pod monitor: one detached process per pod that owns the pod's lifetime.

It makes the pod's sandbox (cgroups, volumes, pause, network), runs its containers as the
kubelet would (init containers in order, native sidecars, restart policies with crash-loop
backoff, probes, hooks, deadlines), is the parent or subreaper of every process in it,
records each exit, turns container output into CRI logs, answers the control socket, and
tears the pod down when it has ended or is told to stop.

It sleeps in the kernel: one selector over the signal wakeup fd (SIGCHLD, SIGTERM), the
control socket, the log pipes and hostPort sockets, with the nearest timer (backoff, probe,
grace period, deadline) as its timeout. It imports no click, yaml or pyroute2 (its memory is
paid once per pod); probes, hooks, hostPorts and the network client load only when a pod
uses them.

Started by the CLI as `python -P .../nsPod/monitor/__main__.py POD_DIR READY_FD LOCK_FD CLI_PID`: it
reports {"ok": true, "warnings": [...]} or {"error": "..."} on READY_FD, then lives alone.
"""
import errno
import heapq
import itertools
import json
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import time

from nsPod.kernel import container, namespaces, sandbox, security, volumes
from nsPod import jsonline
from nsPod.plan import lifecycle
from nsPod.store import logs, state
from nsPod.kernel.cgroups import CgroupExists, Limits, container_cgroup_name, pod_cgroup_name
from nsPod.kernel.cgroups import parents as cgroup_parents
from nsPod.kernel.cgroups.devices import allowlist as device_allowlist
from nsPod.errors import NspodError, describe
from nsPod.plan.lifecycle import APP, INIT, SIDECAR
from nsPod.plan.make import PAUSE_CGROUP, SHM_SIZE, PodPlan, container_from_json, termination_log
from nsPod.kernel.process import ChildFailed
from nsPod.monitor.teardown import detach_network, remove_cgroups, unmount_recorded
from nsPod.store.state import ProcessRef, now_rfc3339

CONTROL_TIMEOUT = 2.0
MAX_REQUESTS = 16            # control connections whose request is still coming
MAX_WAIT = 86400.0           # longest single sleep of the loop
MAX_DELAY = 100 * 365 * 86400.0   # a timer further away than this is as good as never

# For tests/integration/test_kill_points.py only: NSPOD_TEST_PAUSE_AT=<step>[,<step>...] makes
# the monitor stop itself (SIGSTOP) at those named steps, for the test to SIGKILL it there.
# Unset (always, outside those tests), _test_point does nothing.
_STOP_AT = frozenset(filter(None, os.environ.get("NSPOD_TEST_PAUSE_AT", "").split(",")))


def _test_point(step):
    if step in _STOP_AT:
        os.kill(os.getpid(), signal.SIGSTOP)


def clamp_delay(delay):
    """A timer's delay as the loop can keep it: manifests allow any integer (a 30-day
    activeDeadlineSeconds, a 10**30 s grace period); NaN and negatives mean now."""
    try:
        delay = float(delay)
    except (TypeError, ValueError, OverflowError):
        return MAX_DELAY if isinstance(delay, int) else 0.0
    if delay != delay or delay <= 0:
        return 0.0
    return min(delay, MAX_DELAY)


class Aborted(BaseException):
    """SIGTERM/SIGINT while the pod is being made: raised once, from the signal handler.

    A BaseException, like KeyboardInterrupt: the handlers that turn a container's failure
    into its StartError must not take it for one.
    """


def exit_status(status):
    """(exitCode, signal) as Kubernetes reports them: 128+n for a signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    return os.WEXITSTATUS(status), None


class Run:
    """What the monitor knows of one container besides its status in state.json."""

    def __init__(self, plan, backoff):
        self.plan = plan
        self.name = plan.name
        self.kind = lifecycle.kind_of(plan)
        self.backoff = backoff
        self.pid = None
        self.serial = 0            # bumped at each start: results of older checks are ignored
        self.started_mono = None
        self.launched = False      # started at least once in the current sandbox
        self.completed = False     # an init container that succeeded in the current sandbox
        self.done = False          # ended and will not be started again
        self.pending = None        # timer of a restart to come
        self.manual_restart = False
        self.adhoc = False         # added by `nspod add --init`: its failure is its own
        self.log_file = None
        self.stream_fds = ()
        self.probes = {}           # probe kind -> {"successes", "failures", "pid", "timer"}
        self.hook_pid = None
        self.post_start_done = True
        self.deferred = False      # a start held back while another container's postStart runs
        self.kill_reason = None    # why the monitor killed this run (FailedPostStartHook)


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
            "conditions": {},
        }
        self.backoff_base, self.backoff_max = doc.get("backoff", [10.0, 300.0])
        self.runs = {}
        for plan in self.plan.init_containers + self.plan.containers:
            self.add_run(plan)
        self.log_limits = logs.limits_from_env()
        self.cgroups = None
        self.pod_cgroup = None     # pod<uid>, named in make_pod_cgroup
        self.forwarders = []
        self.requests = {}         # control connection -> [bytes so far, timeout timer]
        self.selector = selectors.DefaultSelector()
        self.children = {}         # pid -> ("pause",) | ("container", run) | ("check", ...)
        self.streams = {}          # read fd -> StreamWriter
        self.timers = []           # heap of (monotonic time, sequence, callback)
        self.cancelled = set()
        self.sequence = itertools.count()
        self.stopping = False
        self.sidecars_stopping = False
        self.pause_signalled = False
        self.warnings = None
        self.stop_deadline = None
        self.stop_waiters = []     # control connections to answer when the pod is down
        self.init_waiters = {}     # container name -> connections waiting for it to end
        self.setup_done = False
        self.aborting = False      # setup was interrupted: its undoing must not be
        self.term_requested = False
        self.sandbox_down = False  # pause died; a new sandbox comes once everything is reaped
        self.init_failed = None
        self.final_reason = None
        self.deferred = []         # runs whose start waits for a postStart hook to return

    def add_run(self, plan):
        run = Run(plan, lifecycle.Backoff(self.backoff_base, self.backoff_max))
        self.runs[plan.name] = run
        reason = lifecycle.initial_waiting_reason(bool(self.plan.init_containers))
        self.state["containers"][plan.name] = {
            "state": {"waiting": {"reason": reason}}, "restartCount": 0, "ready": False,
            "started": False, "init": plan.init, "lastState": {}}
        return run

    def ordered(self, kinds):
        return [r for r in self.runs.values() if r.kind in kinds]

    # --- state ---------------------------------------------------------------------------

    def save(self):
        self.dir.write_state(self.state)

    def cstate(self, run):
        return self.state["containers"][run.name]

    # --- timers --------------------------------------------------------------------------

    def at(self, delay, callback):
        token = next(self.sequence)
        heapq.heappush(self.timers, (time.monotonic() + clamp_delay(delay), token, callback))
        return token

    def cancel(self, token):
        if token is not None:
            self.cancelled.add(token)

    def run_timers(self):
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, token, callback = heapq.heappop(self.timers)
            if token in self.cancelled:
                self.cancelled.discard(token)
                continue
            try:
                callback()
            except Exception as e:  # a bug in one timer's work must not end the pod
                print(f"nspod monitor: timer: {type(e).__name__}: {describe(e)}",
                      file=sys.stderr)

    def next_timeout(self):
        while self.timers and self.timers[0][1] in self.cancelled:
            self.cancelled.discard(heapq.heappop(self.timers)[1])
        if not self.timers:
            return None
        # The kernel takes no longer wait than ~24.8 days (epoll's int milliseconds): a far
        # timer is reached by waking up now and then, not by one overlong sleep.
        return min(MAX_WAIT, max(0.0, self.timers[0][0] - time.monotonic()))

    # --- setup: a straight line, each step recorded before it is taken --------------------

    def setup(self):
        os.makedirs(self.dir.file("logs"), exist_ok=True)
        os.makedirs(self.dir.file("containers"), exist_ok=True)
        os.makedirs(self.dir.file("termination"), exist_ok=True)
        self.save()
        self.open_control_socket()
        self.make_pod_cgroup()
        self.make_volumes()
        _test_point("volumes")
        self.write_etc_files()
        self.make_sandbox()
        self.publish_host_ports()
        if self.plan.active_deadline_seconds:
            self.at(self.plan.active_deadline_seconds, self.on_deadline)
        warnings = []
        self.warnings = warnings
        self.advance()
        self.warnings = None
        self.update_phase()
        self.setup_done = True
        return warnings

    def open_control_socket(self):
        path = self.dir.file(state.CONTROL_SOCKET)
        with _suppress_missing():
            os.unlink(path)
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)  # root-only from the moment it exists
        try:
            # Through /proc/self/fd/<the pod directory>: its path may be longer than the 108
            # bytes of sun_path (a 253-character pod name is valid).
            with self.dir.socket_address(state.CONTROL_SOCKET) as address:
                self.control.bind(address)
        finally:
            os.umask(old)
        self.control.listen(8)
        self.control.setblocking(False)   # a client gone between readiness and accept: EAGAIN
        self.selector.register(self.control, selectors.EVENT_READ, "control")

    def cgroup_rel(self, name=None):
        """Relative to the cgroup parent: the pod's (pod<uid>), pause's or a container's."""
        if name is None:
            return self.pod_cgroup
        leaf = name if name == PAUSE_CGROUP else container_cgroup_name(name)
        return f"{self.pod_cgroup}/{leaf}"

    def make_pod_cgroup(self):
        # Recorded before it is made: a crash in between leaves gc a name that does not
        # exist, which it takes as removed. The mkdir is exclusive: a directory already
        # there is someone else's and is never adopted; then the record goes, so neither
        # teardown nor gc touches it.
        self.pod_cgroup = pod_cgroup_name(self.plan.uid)
        self.state["cgroup"] = f"{self.plan.cgroup_parent}/{self.cgroup_rel()}"
        self.save()
        _test_point("cgroup-recorded")
        try:
            self.cgroups = cgroup_parents.create(
                self.dir.root, self.plan.cgroup_parent, self.cgroup_rel(),
                Limits(**self.plan.pod_limits), exclusive=True)
        except CgroupExists:
            self.state["cgroup"] = None
            self.save()
            raise
        _test_point("cgroup")
        self.cgroups.create(self.cgroup_rel(PAUSE_CGROUP), Limits())

    def make_container_cgroup(self, run):
        """The container's leaf cgroup with its limits (made once, reused by its restarts)."""
        rel = self.cgroup_rel(run.name)
        self.cgroups.create(rel, Limits(**run.plan.limits))
        return rel

    def kill_leftovers(self, run):
        """Kill what is left in a container's cgroup once its main process has ended.

        The kubelet's runtimes (runc/crun via containerd and CRI-O) kill the container's
        whole cgroup when its init process exits, so background children (which survive
        with shareProcessNamespace or hostPID) never outlive it into its restart.
        """
        try:
            self.cgroups.kill(self.cgroup_rel(run.name))
        except NspodError as e:
            print(f"nspod monitor: container {run.name}: {describe(e)}", file=sys.stderr)

    def attach_to(self, name):
        """spawn's prepare step: the process enters its cgroup before it runs anything."""
        rel = self.cgroup_rel(name)
        return lambda pid: self.cgroups.attach(rel, pid)

    def make_volumes(self):
        for v in self.plan.volumes:
            if v.kind == "tmpfs":
                self.record_mount(v.path)
            volumes.create(v)
        if self.plan.shm_path:
            os.makedirs(self.plan.shm_path, exist_ok=True)
            self.record_mount(self.plan.shm_path)
            from nsPod.kernel.mounts import mount_tmpfs
            from nsPod.kernel.syscalls import MountFlag
            mount_tmpfs(self.plan.shm_path, f"mode=1777,size={SHM_SIZE}",
                        MountFlag.MS_NOSUID | MountFlag.MS_NODEV | MountFlag.MS_NOEXEC)

    def record_mount(self, path):
        self.state["mounts"].append(path)
        self.save()

    def write_etc_files(self):
        """The pod's hosts, hostname and resolv.conf: one copy, bind-mounted into each container."""
        etc = self.dir.file("etc")
        os.makedirs(etc, exist_ok=True)
        for name, content in self.plan.etc_files.items():
            state.write_text(os.path.join(etc, name), content)

    def make_sandbox(self):
        """pause in the pod's new namespaces, then its network (the same IP every time)."""
        pid = sandbox.spawn(self.plan, set_pdeathsig=_die_with_monitor,
                            prepare=self.attach_to(PAUSE_CGROUP))
        self.children[pid] = ("pause",)
        self.state["pause"] = ProcessRef.of(pid).to_json()
        self.state["namespaces"] = namespaces.ns_ids(pid, ("net", "ipc", "uts", "pid"))
        self.save()
        _test_point("sandbox")
        self.connect_network()

    def connect_network(self):
        network = self.plan.network
        if network["mode"] != "bridge":
            return
        from nsPod.net import client as netclient
        root, name, pid = self.dir.root, self.plan.name, self.state["pause"]["pid"]
        # Recorded first, with the names and the netns netd is about to bind: whatever part
        # of it exists, teardown and gc know to undo it, and that it is this pod's. A netns
        # name an earlier sandbox of the pod left is recorded as stale: netd may replace it.
        previous = self.state.get("network") or {}
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        stale = previous.get("netnsInode") if previous.get("netnsInode") != inode else \
            previous.get("staleNetnsInode")
        self.state["network"] = {
            "bridge": network["bridge"], "subnet": network["subnet"],
            "hostVeth": netclient.host_veth_name(root, name, network["bridge"]),
            "netns": netclient.netns_path(root, name), "netnsInode": inode}
        if stale:
            self.state["network"]["staleNetnsInode"] = stale
        self.state["podIP"] = network["ip"]
        self.save()
        _test_point("network-recorded")
        reply = netclient.attach(root, name, pid, network["bridge"], network["subnet"],
                                 preferred=network["ip"], netns_inode=inode,
                                 stale_netns_inode=stale)
        reply.pop("ok", None)
        self.state["network"] = reply
        self.state["network"]["subnet"] = network["subnet"]
        self.state["podIP"] = reply["ip"]
        self.save()
        _test_point("network")

    def publish_host_ports(self):
        if not self.plan.host_ports:
            return
        from nsPod.monitor import ports
        for host_port, container_port, _ in self.plan.host_ports:
            listener = ports.bind(host_port)
            self.forwarders.append(
                ports.Forwarder(self.selector, listener, self.state["podIP"], container_port))
        self.state["hostPorts"] = self.plan.host_ports
        self.save()

    # --- what runs when: the kubelet's order ----------------------------------------------

    def advance(self):
        """Start whatever may start now: the next init container, sidecars, app containers.

        One at a time, as the kubelet's SyncPod: a container with a postStart hook holds
        every later start until its hook has returned (startContainer runs the hook before
        it returns)."""
        if self.stopping or self.sandbox_down or self.init_failed:
            return
        self.start_deferred()
        if self.hook_running():
            return
        for run in self.ordered((INIT, SIDECAR)):
            if run.kind == INIT:
                if run.completed:
                    continue
                if run.pid is None and run.pending is None and not run.done:
                    self.start(run)
                if not run.completed:
                    return  # one at a time, each to completion
            else:
                if not run.launched and run.pid is None and run.pending is None:
                    self.start(run)
                # A sidecar gates the next init container until it has started (its
                # startup probe, when it has one, succeeded).
                if not self.cstate(run).get("started"):
                    return
        self.state["initialized"] = True
        for run in self.ordered((APP,)):
            if self.stopping or self.hook_running():
                return  # a start that failed may have ended the pod; a postStart runs
            if not run.launched and run.pid is None and run.pending is None and not run.done:
                self.start(run)

    def hook_running(self):
        """A container's postStart hook has not returned yet (or it failed and the container
        is still being killed): the kubelet starts nothing else meanwhile."""
        return any(r.pid is not None and not r.post_start_done for r in self.runs.values())

    def start_deferred(self):
        """Restarts held back by a postStart hook, in the order they were due."""
        while self.deferred and not self.hook_running() and not self.stopping \
                and not self.sandbox_down:
            run = self.deferred.pop(0)
            run.deferred = False
            if run.pid is None and run.pending is None and not run.done:
                self.start(run)

    def start_allowed(self, run):
        """The kubelet's order (lifecycle.start_allowed) for this run now."""
        if run.adhoc:
            return True  # `nspod add --init` runs beside whatever runs
        earlier = []
        for other in self.ordered((INIT, SIDECAR)):
            if other is run:
                break
            earlier.append((other.kind, other.completed, bool(self.cstate(other).get("started"))))
        return lifecycle.start_allowed(run.kind, bool(self.state.get("initialized")), earlier)

    def ready_when_started(self, run):
        # A running init container is never ready (only one that exited 0 is); others are
        # ready once started unless a readiness probe says otherwise.
        return run.kind != INIT and run.plan.lifecycle.get("readinessProbe") is None

    def start(self, run):
        """Start one container run; a failure to start is that run's end (StartError)."""
        cstate = self.cstate(run)
        if cstate.get("everStarted"):
            # Every start after the first is a restart: counted, its predecessor kept as
            # lastState (logs --previous reads that run's file).
            cstate["restartCount"] += 1
            if "terminated" in cstate["state"]:
                cstate["lastState"] = {"terminated": cstate["state"]["terminated"]}
        run.launched = True
        run.pending = None
        run.serial += 1
        run.kill_reason = None
        run.post_start_done = run.plan.lifecycle.get("postStart") is None
        started_at = now_rfc3339()
        log_file = None
        out_r = err_r = None
        try:
            log_dir = self.dir.file("logs", run.name)
            os.makedirs(log_dir, exist_ok=True)
            log_path = os.path.join(log_dir, f"{cstate['restartCount']}.log")
            log_file = logs.LogFile(log_path, *self.log_limits)
            cstate["log"] = os.path.relpath(log_path, self.dir.path)
            cstate["cgroup"] = f"{self.plan.cgroup_parent}/{self.cgroup_rel(run.name)}"
            rel = self.make_container_cgroup(run)
            # Before the container's process joins the cgroup: it never runs with every device.
            self.cgroups.restrict_devices(rel, device_allowlist(
                container.security_settings(run.plan)["privileged"]))
            cstate["oomKills"] = self.cgroups.oom_kills(rel)
            _world_writable_empty(termination_log(self.dir.path, run.name))
            container_dir = self.dir.file("containers", run.name)
            os.makedirs(container_dir, exist_ok=True)
            out_r, out_w = os.pipe()
            try:
                err_r, err_w = os.pipe()
            except OSError:
                os.close(out_w)
                raise
            started_at = now_rfc3339()
            try:
                pid = container.spawn(self.plan, run.plan, self.state["pause"]["pid"],
                                      container_dir, out_w, err_w,
                                      set_pdeathsig=_die_with_monitor,
                                      prepare=self.attach_to(run.name))
            finally:
                # Only the container may hold the write ends, so its exit is our EOF.
                os.close(out_w)
                os.close(err_w)
        except Exception as e:
            # Whatever failed (the child's step, the cgroup, the disk, a bug), it is this
            # container's StartError: the pod and its other containers go on.
            for fd in (out_r, err_r):
                if fd is not None:
                    os.close(fd)
            if log_file is not None:
                log_file.release()
            message = e.message if isinstance(e, ChildFailed) else describe(e)
            if not isinstance(e, (ChildFailed, NspodError, OSError)):
                print(f"nspod monitor: container {run.name}: start: {type(e).__name__}: "
                      f"{message}", file=sys.stderr)
            self.start_failed(run, message, started_at)
            return
        run.pid = pid
        run.started_mono = time.monotonic()
        run.log_file = log_file
        self.children[pid] = ("container", run)
        run.stream_fds = (out_r, err_r)
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            self.streams[fd] = logs.StreamWriter(log_file, stream)
            self.selector.register(fd, selectors.EVENT_READ, "log")
        ref = ProcessRef.of(pid)
        lc = run.plan.lifecycle
        started = lc.get("startupProbe") is None and run.post_start_done
        cstate.update({
            "pid": ref.pid, "pidStartTime": ref.start_time, "everStarted": True,
            "state": {"running": {"startedAt": started_at}},
            "started": started,
            "ready": started and self.ready_when_started(run),
            "namespaces": namespaces.ns_ids(pid),
        })
        self.save()
        _test_point("container")
        if not run.post_start_done:
            self.run_hook(run, "postStart")
        else:
            self.begin_probes(run)

    def start_failed(self, run, message, started_at):
        cstate = self.cstate(run)
        cstate["everStarted"] = True
        terminated = {"exitCode": 128, "reason": "StartError", "message": message,
                      "startedAt": started_at, "finishedAt": now_rfc3339()}
        if self.warnings is not None:
            self.warnings.append(f"container {run.name}: StartError: {message}")
        self.ended(run, terminated, ran_for=0.0)

    # --- exits ---------------------------------------------------------------------------

    def on_term(self, signo):
        """SIGTERM/SIGINT (the Python-level handler)."""
        self.term_requested = True
        # While the pod is being made, the first signal interrupts that, once: a second one
        # (the CLI's death and a user's kill, Ctrl-C twice) must not interrupt the undoing of
        # the first, nor leave the half-made pod to nobody. After setup the loop sees
        # term_requested (the wakeup fd woke it).
        if not self.setup_done and not self.aborting:
            self.aborting = True
            raise Aborted(f"interrupted by signal {signo} while making the pod")

    def on_signal(self):
        try:
            while os.read(self.wakeup_r, 512):
                pass
        except BlockingIOError:
            pass
        self.reap()
        if self.term_requested and not self.stopping:
            self.begin_stop(self.plan.grace_seconds)

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            what = self.children.pop(pid, None)
            if what is None:
                continue  # an orphan re-parented to us: reaping it is all it needs
            if what[0] == "pause":
                self.on_pause_exit(status)
            elif what[0] == "container":
                self.on_container_exit(what[1], status)
            else:
                self.on_check_exit(what, status)

    def on_container_exit(self, run, status):
        code, sig = exit_status(status)
        cstate = self.cstate(run)
        # The kernel counts OOM kills per cgroup: a rise since the start names this container
        # as the victim, whether its own limit or the pod's was hit.
        oom_kills = self.cgroups.oom_kills(self.cgroup_rel(run.name))
        oom = oom_kills > cstate.get("oomKills", 0)
        cstate["oomKills"] = oom_kills
        # Before the logs are drained: a background child holding the pipes open would
        # otherwise keep them from reaching EOF.
        self.kill_leftovers(run)
        terminated = {
            "exitCode": code,
            "reason": "OOMKilled" if oom else "Completed" if code == 0 else "Error",
            "startedAt": cstate["state"].get("running", {}).get("startedAt"),
            "finishedAt": now_rfc3339(),
        }
        if sig:
            terminated["signal"] = sig
        # What it wrote last may still sit in its pipes: the log must hold it before the
        # run is judged (FallbackToLogsOnError reads it).
        for fd in run.stream_fds:
            while fd in self.streams and self.on_log(fd):
                pass
        message = self.termination_message(run, code)
        if message:
            terminated["message"] = message
        run.pid = None
        self.stop_checks(run)
        self.ended(run, terminated, time.monotonic() - (run.started_mono or time.monotonic()))

    def termination_message(self, run, code):
        lc = run.plan.lifecycle
        text = read_bounded(termination_log(self.dir.path, run.name), 4096)
        tail = ""
        if lc.get("terminationMessagePolicy") == "FallbackToLogsOnError" and code != 0 \
                and not text.strip():
            tail = logs.tail_text(self.dir.file(self.cstate(run)["log"]))
        return lifecycle.termination_message(lc.get("terminationMessagePolicy"), code, text, tail)

    def ended(self, run, terminated, ran_for):
        """A run is over: record it, then restart it, move on, or end the pod, by policy."""
        cstate = self.cstate(run)
        cstate.pop("pid", None)
        cstate.pop("pidStartTime", None)
        code = terminated["exitCode"]
        if run.kill_reason and not terminated.get("message"):
            terminated["message"] = run.kill_reason
        cstate["state"] = {"terminated": terminated}
        cstate["ready"] = lifecycle.init_container_ready(run.kind, code)
        cstate["started"] = False
        for conn in self.init_waiters.pop(run.name, []):
            _send(conn, {"ok": code == 0, "exitCode": code, "reason": terminated["reason"]})
            conn.close()
        if self.stopping or self.sandbox_down:
            if self.stopping:
                # The phase follows the stopping containers: a pod whose app containers
                # are done is Succeeded only once its sidecars have terminated too.
                self.update_phase()
            self.save()
            self.rebuild_when_reaped()
            return
        if run.manual_restart:
            run.manual_restart = False
            run.backoff.reset()
            self.schedule_restart(run, 0.0)
        elif run.adhoc:
            run.done = True
            run.completed = code == 0
        elif run.kind == INIT and code == 0:
            run.completed = True
        elif lifecycle.should_restart(run.kind, self.plan.restart_policy, code):
            self.schedule_restart(run, run.backoff.next_delay(ran_for))
        else:
            run.done = True
            if run.kind == INIT:
                self.init_failed = run.name
                self.final_reason = None
        self.save()
        self.advance()
        self.update_phase()
        if self.state["phase"] in state.TERMINAL_PHASES or \
                lifecycle.apps_finished(self.app_states()):
            # No app container will run again: the sidecars are stopped, then the pod ends
            # (its phase stays Running until they have).
            self.begin_stop(self.plan.grace_seconds)

    def schedule_restart(self, run, delay):
        cstate = self.cstate(run)
        if delay > 0:
            cstate["lastState"] = {"terminated": cstate["state"]["terminated"]}
            cstate["state"] = {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:g}s restarting failed container={run.name} "
                           f"pod={self.plan.name}"}}
            cstate["nextStart"] = time.time() + delay
        run.pending = self.at(delay, lambda: self.restart_now(run))

    def restart_now(self, run):
        run.pending = None
        self.cstate(run).pop("nextStart", None)
        if self.stopping or self.sandbox_down:
            return
        if run.kind == INIT and run.completed:
            pass
        elif not self.start_allowed(run):
            # Not its turn (an app container changed by `apply` while init containers run):
            # advance() starts it when the containers before it are done.
            run.launched = False
        elif self.hook_running():
            if not run.deferred:
                run.deferred = True
                self.deferred.append(run)
        else:
            self.start(run)
        self.advance()  # whatever waited for this one (an init container behind a sidecar)
        self.update_phase()

    def on_pause_exit(self, status):
        if self.stopping:
            return
        code, sig = exit_status(status)
        how = f"signal {sig}" if sig else f"exit code {code}"
        self.drop_deferred()
        if self.plan.restart_policy == "Never":
            self.final_reason = ("SandboxDied", f"the pod's pause process ended ({how})")
            self.begin_stop(0)
            return
        # A new sandbox: everything of the old one goes first, then pause, network, init
        # containers in order and the app containers again, each restart counted.
        self.sandbox_down = True
        self.state["pause"] = None
        print(f"nspod monitor: pause ended ({how}); making a new sandbox", file=sys.stderr)
        for run in self.runs.values():
            self.cancel(run.pending)
            run.pending = None
            self.stop_checks(run)
            if run.pid:
                _kill(run.pid, signal.SIGKILL)
        self.save()
        self.rebuild_when_reaped()

    def rebuild_when_reaped(self):
        """The new sandbox comes once the old one's last container has been reaped."""
        if self.sandbox_down and not any(r.pid for r in self.runs.values()):
            self.rebuild_sandbox()

    def drop_deferred(self):
        for run in self.deferred:
            run.deferred = False
        self.deferred = []

    def rebuild_sandbox(self):
        if self.stopping:
            return  # told to stop while the old sandbox went down: no new one
        apps = []
        for run in self.ordered((APP,)):
            terminated = self.cstate(run)["state"].get("terminated") or {}
            apps.append((run.name, terminated.get("exitCode")))
        make, skip = lifecycle.after_sandbox_death(self.plan.restart_policy, apps)
        if not make:
            # Every app container has succeeded: nothing to run in a new sandbox.
            self.update_phase()
            self.begin_stop(0)
            return
        for run in self.runs.values():
            if run.name in skip:
                continue  # OnFailure: it succeeded, the kubelet does not run it again
            run.launched = False
            run.completed = False
            run.done = False
        self.state["initialized"] = False
        try:
            self.make_sandbox()
        except (NspodError, OSError) as e:
            self.final_reason = ("SandboxCreationFailed", describe(e))
            self.begin_stop(0)
            return
        self.sandbox_down = False
        if self.forwarders:
            for forwarder in self.forwarders:
                forwarder.target = (self.state["podIP"], forwarder.target[1])
        self.advance()
        self.update_phase()

    def on_deadline(self):
        if self.stopping:
            return
        self.final_reason = ("DeadlineExceeded",
                             "Pod was active on the node longer than the specified deadline")
        self.begin_stop(self.plan.grace_seconds)

    # --- probes and hooks ----------------------------------------------------------------

    def begin_probes(self, run):
        lc = run.plan.lifecycle
        if lc.get("startupProbe"):
            self.schedule_probe(run, "startupProbe", first=True)
            return
        for kind in ("livenessProbe", "readinessProbe"):
            if lc.get(kind):
                self.schedule_probe(run, kind, first=True)

    def schedule_probe(self, run, kind, first=False):
        spec = run.plan.lifecycle[kind]
        probe = run.probes.setdefault(kind, {"successes": 0, "failures": 0, "pid": None,
                                             "timer": None})
        delay = spec["initialDelaySeconds"] if first else spec["periodSeconds"]
        serial = run.serial
        probe["timer"] = self.at(delay, lambda: self.run_probe(run, kind, serial))

    def run_probe(self, run, kind, serial):
        if run.pid is None or run.serial != serial or self.stopping:
            return
        spec = run.plan.lifecycle[kind]
        pid = self.spawn_check(run, spec["handler"])
        probe = run.probes[kind]
        if pid is None:
            self.probe_result(run, kind, serial, False)
            return
        probe["pid"] = pid
        self.children[pid] = ("check", run, kind, serial)
        probe["timer"] = self.at(spec["timeoutSeconds"], lambda: _kill(pid, signal.SIGKILL))

    def spawn_check(self, run, handler):
        from nsPod.monitor import checks as probes
        try:
            cstate = self.cstate(run)
            target = ProcessRef(cstate["pid"], cstate["pidStartTime"])
            return probes.spawn(handler, self.state["pause"]["pid"], self.state.get("podIP"),
                                target, run.plan, self.attach_to(run.name))
        except Exception as e:  # a check that cannot start has failed; the pod goes on
            if not isinstance(e, (ChildFailed, OSError, NspodError)):
                print(f"nspod monitor: container {run.name}: check: {type(e).__name__}: "
                      f"{describe(e)}", file=sys.stderr)
            return None

    def on_check_exit(self, what, status):
        _, run, kind, serial = what
        ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if kind in ("postStart", "preStop"):
            run.hook_pid = None
            self.hook_done(run, kind, serial, ok)
            return
        probe = run.probes.get(kind)
        if probe:
            self.cancel(probe["timer"])
            probe["pid"] = None
        self.probe_result(run, kind, serial, ok)

    def probe_result(self, run, kind, serial, ok):
        if run.pid is None or run.serial != serial or self.stopping:
            return
        spec = run.plan.lifecycle[kind]
        probe = run.probes[kind]
        if ok:
            probe["successes"] += 1
            probe["failures"] = 0
        else:
            probe["failures"] += 1
            probe["successes"] = 0
        cstate = self.cstate(run)
        if kind == "startupProbe":
            if ok:
                cstate["started"] = True
                cstate["ready"] = run.plan.lifecycle.get("readinessProbe") is None
                self.save()
                for other in ("livenessProbe", "readinessProbe"):
                    if run.plan.lifecycle.get(other):
                        self.schedule_probe(run, other, first=True)
                self.advance()
                self.update_phase()
                return
            if probe["failures"] >= spec["failureThreshold"]:
                self.kill_for_probe(run, spec)
                return
        elif kind == "livenessProbe":
            if probe["failures"] >= spec["failureThreshold"]:
                self.kill_for_probe(run, spec)
                return
        elif kind == "readinessProbe":
            ready = cstate["ready"]
            if ok and probe["successes"] >= spec["successThreshold"]:
                ready = True
            elif not ok and probe["failures"] >= spec["failureThreshold"]:
                ready = False
            if ready != cstate["ready"]:
                cstate["ready"] = ready
                self.save()
                self.update_phase()
        self.schedule_probe(run, kind)

    def kill_for_probe(self, run, spec):
        """A failed liveness or startup probe: the container is killed, then restarted by
        the pod's policy (as the kubelet does; with Never it just ends)."""
        grace = spec.get("terminationGracePeriodSeconds")
        self.terminate(run, self.plan.grace_seconds if grace is None else grace)

    def run_hook(self, run, kind):
        handler = run.plan.lifecycle[kind]
        serial = run.serial
        if handler["kind"] == "sleep":
            self.at(handler["seconds"], lambda: self.hook_done(run, kind, serial, True))
            return
        pid = self.spawn_check(run, handler)
        if pid is None:
            self.hook_done(run, kind, serial, False)
            return
        run.hook_pid = pid
        self.children[pid] = ("check", run, kind, serial)

    def hook_done(self, run, kind, serial, ok):
        if run.serial != serial or run.pid is None:
            return
        if kind == "postStart":
            if not ok:
                # kuberuntime_container.go startContainer: a failed postStart hook kills the
                # container (FailedPostStartHook: preStop, SIGTERM, grace period); its
                # restart follows the pod's policy. post_start_done stays False, so nothing
                # else starts until it is gone (killContainer returns once it is).
                print(f"nspod monitor: container {run.name}: FailedPostStartHook",
                      file=sys.stderr)
                run.kill_reason = ("FailedPostStartHook: the postStart hook failed; "
                                   "the container was killed")
                self.terminate(run, self.plan.grace_seconds)
                return
            run.post_start_done = True
            cstate = self.cstate(run)
            lc = run.plan.lifecycle
            if lc.get("startupProbe") is None:
                cstate["started"] = True
                cstate["ready"] = self.ready_when_started(run)
            self.save()
            self.begin_probes(run)
            self.advance()  # the next container's turn
            self.update_phase()
        else:
            _kill(run.pid, signal.SIGTERM)

    def stop_checks(self, run):
        for probe in run.probes.values():
            self.cancel(probe.get("timer"))
            if probe.get("pid"):
                _kill(probe["pid"], signal.SIGKILL)
        run.probes = {}
        if run.hook_pid:
            _kill(run.hook_pid, signal.SIGKILL)
            run.hook_pid = None

    # --- stopping ------------------------------------------------------------------------

    def terminate(self, run, grace):
        """preStop, then SIGTERM, then SIGKILL after the grace period."""
        if run.pid is None:
            return
        pid, serial = run.pid, run.serial
        grace = clamp_delay(grace)
        if grace <= 0:
            _kill(pid, signal.SIGKILL)
            return
        if run.plan.lifecycle.get("preStop") and run.hook_pid is None:
            self.run_hook(run, "preStop")
        else:
            _kill(pid, signal.SIGTERM)
        self.at(grace, lambda: run.serial == serial and run.pid and _kill(run.pid, signal.SIGKILL))

    def begin_stop(self, grace_seconds):
        """App containers first (preStop, SIGTERM), then sidecars in reverse order, then pause;
        SIGKILL for whatever is left at the end of the grace period."""
        grace_seconds = clamp_delay(grace_seconds)
        if self.stopping:
            if grace_seconds == 0:
                self.kill_everything()
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + grace_seconds
        self.at(grace_seconds, self.kill_everything)
        for run in self.runs.values():
            self.cancel(run.pending)
            run.pending = None
            for probe in run.probes.values():
                self.cancel(probe.get("timer"))
        for run in self.ordered((APP, INIT)):
            self.terminate(run, grace_seconds)
        self.stop_sidecars_when_apps_gone()

    def stop_sidecars_when_apps_gone(self):
        if not self.stopping or self.sidecars_stopping:
            return
        if any(r.pid for r in self.ordered((APP, INIT))):
            return
        self.sidecars_stopping = True
        left = max(0.0, self.stop_deadline - time.monotonic())
        for run in reversed(self.ordered((SIDECAR,))):
            self.terminate(run, left)

    def kill_everything(self):
        for run in self.runs.values():
            if run.pid:
                _kill(run.pid, signal.SIGKILL)
        for pid, what in list(self.children.items()):
            if what[0] == "check":
                _kill(pid, signal.SIGKILL)
        self.kill_pause(signal.SIGKILL)

    def kill_pause(self, sig=signal.SIGTERM):
        for pid, what in self.children.items():
            if what[0] == "pause":
                # pause exits 0 on SIGTERM; as PID 1 of a shared pid namespace its exit
                # takes every remaining process of the namespace with it.
                _kill(pid, sig)

    def finished(self):
        if not self.stopping:
            return False
        self.stop_sidecars_when_apps_gone()
        if any(r.pid for r in self.runs.values()):
            return False
        if any(what[0] == "pause" for what in self.children.values()):
            if not self.pause_signalled:
                self.pause_signalled = True
                self.kill_pause()
            return False
        # Probes and hooks still running have nothing left to check: they go before we do.
        checks = [pid for pid, what in self.children.items() if what[0] == "check"]
        for pid in checks:
            _kill(pid, signal.SIGKILL)
        return not checks

    # --- phase and conditions ------------------------------------------------------------

    def app_states(self):
        states = []
        for run in self.ordered((APP,)):
            cstate = self.cstate(run)
            if run.pid:
                states.append("running")
            elif (run.pending is not None or run.manual_restart or run.deferred) \
                    and not self.stopping:
                states.append("restarting")
            elif "terminated" in cstate["state"]:
                code = cstate["state"]["terminated"]["exitCode"]
                states.append("succeeded" if code == 0 else "failed")
            else:
                states.append("waiting")
        return states

    def update_phase(self):
        init_done = bool(self.state.get("initialized"))
        sidecars_running = any(r.pid for r in self.ordered((SIDECAR,)))
        phase = lifecycle.pod_phase(self.plan.restart_policy, bool(self.init_failed), init_done,
                                    self.app_states(), sidecars_running)
        if self.final_reason:
            phase = "Failed"
        phase = lifecycle.next_phase(self.state["phase"], phase)
        unready = [r.name for r in self.ordered((APP, SIDECAR))
                   if not self.cstate(r).get("ready")]
        waiting_for = next((r.name for r in self.ordered((INIT, SIDECAR))
                            if not r.completed and r.kind == INIT
                            or r.kind == SIDECAR and not self.cstate(r).get("started")), "")
        reasons = lifecycle.condition_reasons(phase, init_done, waiting_for, unready)
        changed = phase != self.state["phase"]
        self.state["phase"] = phase
        for kind, (ok, reason, message) in reasons.items():
            old = self.state["conditions"].get(kind)
            if old is None or old["status"] != ok:
                self.state["conditions"][kind] = {
                    "status": ok, "reason": reason, "message": message,
                    "lastTransitionTime": now_rfc3339()}
                changed = True
            else:
                old.update(reason=reason, message=message)
        if changed:
            self.save()

    # --- the loop ------------------------------------------------------------------------

    def loop(self):
        while not self.finished():
            for key, _ in self.selector.select(self.next_timeout()):
                if key.data == "signal":
                    self.on_signal()
                elif key.data == "control":
                    self.on_control()
                elif key.data == "request":
                    self.on_request(key.fileobj)
                elif key.data == "log":
                    self.on_log(key.fd)
                else:
                    key.data.on_ready(key.fileobj)
            self.run_timers()

    def on_log(self, fd):
        """Move what is in one pipe into the log; True while there may be more."""
        writer = self.streams.get(fd)
        if writer is None:
            return False  # drained and closed earlier in this round of events
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        if data:
            writer.feed(data)
            return True
        writer.close()
        self.selector.unregister(fd)
        os.close(fd)
        del self.streams[fd]
        return False

    # --- control socket ------------------------------------------------------------------

    def on_control(self):
        """Accept a control connection. Its request is read as it arrives (on_request): a
        client that connects and then sends nothing, or slowly, never holds up the loop."""
        try:
            conn, _ = self.control.accept()
        except OSError:
            return   # gone before we took it
        try:
            uid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
        except OSError:
            conn.close()
            return
        problem = "only root may control a pod" if uid != 0 else \
            "too many requests at once; try again" if len(self.requests) >= MAX_REQUESTS \
            else None
        if problem:
            conn.settimeout(CONTROL_TIMEOUT)
            _send(conn, {"error": problem})
            conn.close()
            return
        conn.setblocking(False)
        timer = self.at(CONTROL_TIMEOUT, lambda: self.drop_request(conn))
        self.requests[conn] = [b"", timer]
        self.selector.register(conn, selectors.EVENT_READ, "request")

    def on_request(self, conn):
        pending = self.requests.get(conn)
        if pending is None:
            return
        try:
            chunk = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        pending[0] += chunk
        data = pending[0]
        if chunk and b"\n" not in chunk and len(data) <= jsonline.MAX_LINE:
            return   # more to come
        self.forget_request(conn)
        # The reply is small; it goes out with a bounded wait, as do the later answers to
        # stop and add --init.
        conn.settimeout(CONTROL_TIMEOUT)
        self.handle_request(conn, data.split(b"\n", 1)[0])

    def forget_request(self, conn):
        _, timer = self.requests.pop(conn)
        self.cancel(timer)
        with _suppress_missing_key():
            self.selector.unregister(conn)

    def drop_request(self, conn):
        """A client that did not send its request within CONTROL_TIMEOUT."""
        if conn in self.requests:
            self.forget_request(conn)
            conn.close()

    def handle_request(self, conn, line):
        try:
            if len(line) > jsonline.MAX_LINE:
                raise NspodError("request too long")
            request = json.loads(line)
            if not isinstance(request, dict):
                raise NspodError("a request is a JSON object")
            op = request.get("op")
            if op == "stop":
                timeout = request.get("timeout")
                if timeout is not None and (isinstance(timeout, bool)
                                            or not isinstance(timeout, (int, float))):
                    raise NspodError(f"stop: timeout {timeout!r} is not a number of seconds")
                self.stop_waiters.append(conn)
                self.begin_stop(self.plan.grace_seconds if timeout is None else timeout)
                return
            if op == "add":
                reply = self.add_container(request, conn)
                if reply is None:
                    return  # an init container: answered when it has ended
            elif op == "restart":
                reply = self.restart_container(request["container"])
            elif op == "apply":
                reply = self.apply(request)
            elif op == "ping":
                reply = {"ok": True}
            else:
                raise NspodError(f"unknown request {op!r}")
        except Exception as e:  # a bad request is its sender's error, never the pod's end
            reply = {"error": describe(e)}
        _send(conn, reply)
        conn.close()

    def check_running(self):
        if self.stopping:
            raise NspodError(f"pod {self.plan.name} is stopping")
        if self.sandbox_down:
            raise NspodError(f"pod {self.plan.name} is making a new sandbox; try again")

    def add_container(self, request, conn):
        self.check_running()
        plan = container_from_json(request["container"])
        if plan.name in self.runs:
            raise NspodError(f"pod {self.plan.name} already has a container {plan.name!r}")
        (self.plan.init_containers if plan.init else self.plan.containers).append(plan)
        self.write_plan(request["manifest"])
        run = self.add_run(plan)
        self.warnings = []
        if run.kind == INIT:
            # `nspod add --init`: runs now, to completion, beside whatever else runs; the
            # answer comes when it has ended.
            run.adhoc = True
            self.init_waiters.setdefault(plan.name, []).append(conn)
            self.start(run)
            self.warnings = None
            return None if plan.name in self.init_waiters else {"ok": True}
        self.start(run)
        warnings, self.warnings = self.warnings, None
        self.update_phase()
        return {"ok": True, "warnings": warnings}

    def write_plan(self, manifest):
        doc = self.dir.read_pod()
        doc["plan"] = self.plan.to_json()
        doc["manifest"] = manifest
        self.dir.write_pod(doc)

    def restart_container(self, name):
        """`nspod restart`: this container only, now, counted; nothing else changes."""
        self.check_running()
        run = self.runs.get(name)
        if run is None:
            raise NspodError(f"pod {self.plan.name} has no container {name!r}")
        run.done = False
        if run.pid:
            run.manual_restart = True
            self.terminate(run, self.plan.grace_seconds)
        else:
            self.cancel(run.pending)
            run.backoff.reset()
            self.restart_now(run)
        return {"ok": True}

    def apply(self, request):
        """Replace the plans of changed containers and restart exactly those, in place."""
        self.check_running()
        changed = [container_from_json(c) for c in request["containers"]]
        for plan in changed:
            if plan.name not in self.runs:
                raise NspodError(f"pod {self.plan.name} has no container {plan.name!r}")
        self.set_limits_all_or_nothing(changed)
        for plan in changed:
            lists = self.plan.init_containers if plan.init else self.plan.containers
            lists[[c.name for c in lists].index(plan.name)] = plan
            self.runs[plan.name].plan = plan
        self.write_plan(request["manifest"])
        for plan in changed:
            self.restart_container(plan.name)
        return {"ok": True}

    def set_limits_all_or_nothing(self, plans):
        """Every changed container's new limits, or (when the kernel refuses one) none.

        Each cgroup's current values are saved before it is written; a refusal puts back
        those already written, in reverse, and the apply fails with nothing changed. A
        container whose cgroup is not made yet gets its new limits when it starts.
        """
        done = []
        try:
            for plan in plans:
                rel = self.cgroup_rel(plan.name)
                if not os.path.isdir(self.cgroups.path(rel)):
                    continue
                # saved first: a set_limits refused half-way is put back too
                done.append((rel, self.cgroups.save_limits(rel)))
                self.cgroups.set_limits(rel, Limits(**plan.limits))
        except NspodError:
            for rel, saved in reversed(done):
                try:
                    self.cgroups.restore_limits(rel, saved)
                except NspodError as e:
                    print(f"nspod monitor: apply: putting back the limits of {rel}: "
                          f"{describe(e)}", file=sys.stderr)
            raise

    # --- teardown: every step idempotent ---------------------------------------------------

    def teardown(self):
        _test_point("teardown")
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
            _test_point(f"teardown-{what.split()[0]}")
        self.state["phase"] = self.final_phase()
        if self.final_reason:
            self.state["reason"], self.state["message"] = self.final_reason
        self.state["pause"] = None
        for run in self.runs.values():
            terminated = self.cstate(run)["state"].get("terminated") or {}
            # An init container that completed stays ready (prober_manager.go).
            self.cstate(run)["ready"] = lifecycle.init_container_ready(
                run.kind, terminated.get("exitCode"))
            self.cstate(run).pop("nextStart", None)
        self.update_conditions_at_end()
        self.save()

    def final_phase(self):
        if self.final_reason or self.init_failed:
            return "Failed"
        codes = []
        for run in self.ordered((APP,)):
            terminated = self.cstate(run)["state"].get("terminated")
            codes.append(terminated["exitCode"] if terminated else 137)
        return "Succeeded" if codes and all(code == 0 for code in codes) else "Failed"

    def update_conditions_at_end(self):
        for kind in ("ContainersReady", "Ready"):
            cond = self.state["conditions"].get(kind)
            if cond and cond["status"]:
                cond.update(status=False, reason="PodCompleted", message=None,
                            lastTransitionTime=now_rfc3339())

    def drain_logs(self):
        for fd in list(self.streams):
            # What the containers wrote before they ended.
            writer = self.streams.pop(fd)
            with _suppress_os():
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    writer.feed(data)
            writer.close()
            with _suppress_os():
                self.selector.unregister(fd)
            os.close(fd)


def read_bounded(path, limit):
    """At most `limit` bytes of a file a container can write, as text; "" for anything but a
    regular file. Non-blocking and not through a symlink: whatever the container made of it
    (a FIFO, a link to a device, a sparse giant), the monitor's loop never waits on it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY
                     | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, limit).decode("utf-8", errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    return True


def _world_writable_empty(path):
    """A fresh, empty termination message file any user of the container can write: the
    kubelet chmods it 0666 (kuberuntime_container.go makeMounts), whatever the umask. A new
    inode each run (temp + rename): what a previous run left running cannot write into it."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with _suppress_missing():
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o666)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _die_with_monitor():
    security.set_parent_death_signal(signal.SIGKILL)


def _send(conn, reply):
    with _suppress_os():
        jsonline.send(conn, reply)


class _suppress_os:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, OSError)


class _suppress_missing_key:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, (KeyError, ValueError))


class _suppress_missing(_suppress_os):
    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, OSError) and exc.errno == errno.ENOENT


def main(argv):
    pod_path, ready_fd, lock_fd, parent_pid = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    # The lock stays ours for life; no child may carry it past its exec.
    os.set_inheritable(lock_fd, False)
    os.set_inheritable(ready_fd, False)
    monitor = Monitor(pod_path)

    def on_term(signo, frame):
        monitor.on_term(signo)

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
            monitor.aborting = True
            raise Aborted("the nspod command that started the monitor is gone")
        reply["warnings"] = monitor.setup()
        security.clear_parent_death_signal()
    except BaseException as e:
        reply = {"error": describe(e)}
        if not isinstance(e, (NspodError, OSError, ChildFailed, Aborted)):
            import traceback
            traceback.print_exc()
        monitor.setup_done = True  # a second signal must not interrupt the undoing
        monitor.warnings = None
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
        for conn in list(monitor.requests):
            conn.close()   # requests still coming: the pod they were for is gone
        with _suppress_os():
            os.unlink(monitor.dir.file(state.CONTROL_SOCKET))
    return 0 if "error" not in reply else 1


def _send_ready(fd, reply):
    with _suppress_os():
        os.write(fd, json.dumps(reply).encode())
    with _suppress_os():
        os.close(fd)


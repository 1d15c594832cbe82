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

This module is the loop and the shared context; each job is a part holding a reference to
it (the Monitor):
  timers.py     the timer heap the loop sleeps toward (clock injected)
  sandbox.py    setup, rebuild and teardown of the sandbox, by teardown.py's table of steps
  scheduler.py  the kubelet's start order, restarts with backoff, sidecar gating
  checks.py     probes and hooks (their state machine, and the children that run them);
                loaded by the first container that has one
  stopping.py   stop sequencing: apps, then sidecars, then pause; grace, then SIGKILL
  phase.py      the pod's phase and conditions
  control.py    the control socket's requests
  launcher.py   every process, pipe and leaf cgroup: the one part tests replace by a fake

Started by the CLI as `python -P .../nsPod/monitor/__main__.py POD_DIR READY_FD LOCK_FD CLI_PID`: it
reports {"ok": true, "warnings": [...]} or {"error": "..."} on READY_FD, then lives alone.
"""
import contextlib
import json
import os
import selectors
import signal

from nsPod.errors import NspodError, describe
from nsPod.kernel import security
from nsPod.kernel.cgroups import container_cgroup_name
from nsPod.kernel.process import ChildFailed
from nsPod.monitor import phase
from nsPod.monitor.control import Control
from nsPod.monitor.launcher import Launcher, read_bounded  # noqa: F401 (read_bounded: tests)
from nsPod.monitor.sandbox import Sandbox
from nsPod.monitor.scheduler import Scheduler
from nsPod.monitor.stopping import Stopper
from nsPod.monitor.timers import MAX_DELAY, MAX_WAIT, Timers, clamp_delay  # noqa: F401
from nsPod.plan import lifecycle
from nsPod.plan.make import PAUSE_CGROUP, PodPlan
from nsPod.store import state
from nsPod.store.podstate import ContainerState, ContainerStatus, PodState, Proc
from nsPod.store.state import ProcessRef, now_rfc3339

# For tests/integration/test_kill_points.py only: NSPOD_TEST_PAUSE_AT=<step>[,<step>...] makes
# the monitor stop itself (SIGSTOP) at those named steps, for the test to SIGKILL it there.
# Unset (always, outside those tests), test_point does nothing. Read when asked: a monitor
# forked from podd has the environment of the command that made it, not podd's.
def _stop_at():
    return os.environ.get("NSPOD_TEST_PAUSE_AT", "").split(",")


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
        self.cri = False           # added by `nspod cri`: never restarted, not the pod's end
        self.log_file = None
        self.stream_fds = ()
        self.probes = {}           # probe kind -> {"successes", "failures", "pid", "timer"}
        self.hook_pid = None
        self.post_start_done = True
        self.deferred = False      # a start held back while another container's postStart runs
        self.kill_reason = None    # why the monitor killed this run (FailedPostStartHook)


class Monitor:
    """The pod's shared context: its plan, state (store/podstate.py's PodState, saved as
    state.json) and runs, and the parts that act on them.

    `launcher` (processes) and `cgroups` (the cgroup driver, made by the sandbox's first
    step) are the seams tests replace; `clock` drives the timers."""

    def __init__(self, pod_dir, plan, backoff=(10.0, 300.0), launcher=None, clock=None):
        self.dir = pod_dir
        self.plan = plan
        self.state = PodState(
            phase="Pending",
            startTime=now_rfc3339(),
            monitor=Proc.from_json(ProcessRef.of(os.getpid()).to_json()),
            pause=None,
            namespaces={},
            mounts=[],
            containers={},
            cgroup=None,
            conditions={},
        )
        self.backoff_base, self.backoff_max = backoff
        self.selector = selectors.DefaultSelector()
        self.timers = Timers() if clock is None else Timers(clock)
        self.children = {}         # pid -> ("pause",) | ("container", run) | ("check", ...)
        self.cgroups = None
        self.pod_cgroup = None     # pod<uid>, named by the sandbox's first step
        self.stopping = False
        self.setup_done = False
        self.aborting = False      # setup was interrupted: its undoing must not be
        self.term_requested = False
        self.sandbox_down = False  # pause died; a new sandbox comes once everything is reaped
        self.init_failed = None
        self.final_reason = None
        self.wakeup_r = None
        self.launcher = Launcher(self) if launcher is None else launcher
        self.sandbox = Sandbox(self)
        self.scheduler = Scheduler(self)
        self._checks = None        # loaded by the first probe or hook (checks)
        self.stopper = Stopper(self)
        self.control = Control(self)
        self.runs = {}
        for cplan in plan.init_containers + plan.containers:
            self.add_run(cplan)

    @property
    def checks(self):
        """The probe and hook machine, imported when a container first has one: a pod
        without them never loads it (nor http.client, ssl)."""
        if self._checks is None:
            from nsPod.monitor.checks import Checks
            self._checks = Checks(self)
        return self._checks

    def stop_checks(self, run):
        """The run ended or is killed: its probes and hook have nothing left to check."""
        if run.probes or run.hook_pid:
            self.checks.stop_checks(run)

    @classmethod
    def open(cls, pod_path):
        """The monitor of the pod directory the CLI prepared (pod.json)."""
        root = os.path.dirname(os.path.dirname(pod_path))
        pod_dir = state.PodDir(root, os.path.basename(pod_path))
        doc = pod_dir.read_pod()
        return cls(pod_dir, PodPlan.from_json(doc["plan"]), doc.get("backoff", [10.0, 300.0]))

    def add_run(self, plan):
        run = Run(plan, lifecycle.Backoff(self.backoff_base, self.backoff_max))
        self.runs[plan.name] = run
        reason = lifecycle.initial_waiting_reason(bool(self.plan.init_containers))
        self.state.containers[plan.name] = ContainerStatus(
            state=ContainerState(waiting={"reason": reason}), restartCount=0, ready=False,
            started=False, init=plan.init, lastState=ContainerState())
        return run

    def ordered(self, kinds):
        return [r for r in self.runs.values() if r.kind in kinds]

    def save(self):
        self.dir.write_state(self.state.to_json())

    def cstate(self, run):
        return self.state.containers[run.name]

    def cgroup_rel(self, name=None):
        """Relative to the cgroup parent: the pod's (pod<uid>), pause's or a container's."""
        if name is None:
            return self.pod_cgroup
        leaf = name if name == PAUSE_CGROUP else container_cgroup_name(name)
        return f"{self.pod_cgroup}/{leaf}"

    def test_point(self, step):
        if step and step in _stop_at():
            os.kill(os.getpid(), signal.SIGSTOP)

    # --- setup: a straight line, each step recorded before it is taken --------------------

    def setup(self):
        """Make the pod and start what may start; returns the StartError warnings."""
        os.makedirs(self.dir.file("logs"), exist_ok=True)
        os.makedirs(self.dir.file("containers"), exist_ok=True)
        os.makedirs(self.dir.file("termination"), exist_ok=True)
        self.save()
        self.control.open()
        self.sandbox.make()
        if self.plan.active_deadline_seconds:
            self.timers.at(self.plan.active_deadline_seconds, self.scheduler.on_deadline)
        warnings = self.scheduler.advance()
        phase.update(self)
        self.setup_done = True
        return warnings

    # --- the loop ------------------------------------------------------------------------

    def loop(self):
        while not self.stopper.finished():
            for key, _ in self.selector.select(self.timers.next_timeout()):
                if key.data == "signal":
                    self.on_signal()
                elif key.data == "control":
                    self.control.on_control()
                elif key.data == "request":
                    self.control.on_request(key.fileobj)
                elif key.data == "log":
                    self.launcher.on_log(key.fd)
                else:
                    key.data.on_ready(key.fileobj)
            self.timers.run()

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
            self.stopper.begin_stop(self.plan.grace_seconds)

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.on_exit(pid, status)

    def on_exit(self, pid, status):
        """A child ended: pause, a container or a check (orphans need only the reaping)."""
        what = self.children.pop(pid, None)
        if what is None:
            return
        if what[0] == "pause":
            self.sandbox.on_pause_exit(*exit_status(status))
        elif what[0] == "container":
            self.scheduler.on_container_exit(what[1], *exit_status(status))
        else:
            self.checks.on_check_exit(what, status)

    def teardown(self):
        self.sandbox.teardown()
        self.control.pod_down()


def main(argv):
    pod_path, ready_fd, lock_fd, parent_pid = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    # The lock stays ours for life; no child may carry it past its exec.
    os.set_inheritable(lock_fd, False)
    os.set_inheritable(ready_fd, False)
    monitor = Monitor.open(pod_path)

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
        monitor.stopper.begin_stop(0)
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
    return 0 if "error" not in reply else 1


def _send_ready(fd, reply):
    with contextlib.suppress(OSError):
        os.write(fd, json.dumps(reply).encode())
    with contextlib.suppress(OSError):
        os.close(fd)

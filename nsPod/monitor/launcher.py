"""The monitor's hands: every process it starts or signals, with the pipes, logs and leaf
cgroups that go with them.

The policies (scheduler, checks, stopper, sandbox) decide; they act only through a Launcher
and the cgroup driver, so tests/unit/test_monitor_policies.py replaces both with fakes and
runs the kubelet's rules without root, processes or a clock. Like youki's syscall trait.
"""
import contextlib
import os
import selectors
import signal
import stat
import sys

from nsPod.kernel import container, namespaces, sandbox, security, tracing
from nsPod.kernel.cgroups import Limits
from nsPod.kernel.cgroups.devices import allowlist as device_allowlist
from nsPod.kernel.process import ChildFailed
from nsPod.monitor.attach import Attachments, StdioFds
from nsPod.errors import NspodError, describe
from nsPod.plan import lifecycle
from nsPod.plan.make import PAUSE_CGROUP, termination_log
from nsPod.store import logs
from nsPod.store.state import ProcessRef, now_rfc3339


class Launcher:
    def __init__(self, monitor):
        self.m = monitor
        self.streams = {}          # read fd -> logs.StreamWriter
        self.log_limits = logs.limits_from_env()
        self.attachments = Attachments(monitor)   # `nspod attach` clients, kept stdio ends

    # --- processes -------------------------------------------------------------------------

    def kill(self, pid, sig):
        kill(pid, sig)

    def attach_to(self, name):
        """spawn's prepare step: the process enters its cgroup before it runs anything."""
        rel = self.m.cgroup_rel(name)
        return lambda pid: self.m.cgroups.attach(rel, pid)

    def spawn_pause(self):
        """pause in the pod's new namespaces, in its cgroup; returns its pid."""
        return sandbox.spawn(self.m.plan, set_pdeathsig=_die_with_monitor,
                             prepare=self.attach_to(PAUSE_CGROUP))

    def identify(self, pid, kinds=None):
        """(ProcessRef as JSON, namespace ids) of a process just started, for state.json."""
        ids = namespaces.ns_ids(pid) if kinds is None else namespaces.ns_ids(pid, kinds)
        return ProcessRef.of(pid).to_json(), ids

    def spawn_check(self, run, cstate, handler):
        """A probe or hook child (monitor/checks.py); its pid, or None when it cannot start."""
        from nsPod.monitor import checks
        try:
            target = ProcessRef(cstate.pid, cstate.pidStartTime)
            return checks.spawn(handler, self.m.state.pause.pid, self.m.state.get("podIP"),
                                target, run.plan, self.attach_to(run.name))
        except Exception as e:  # a check that cannot start has failed; the pod goes on
            if not isinstance(e, (ChildFailed, OSError, NspodError)):
                print(f"nspod monitor: container {run.name}: check: {type(e).__name__}: "
                      f"{describe(e)}", file=sys.stderr)
            return None

    # --- a container's run -----------------------------------------------------------------

    def start_container(self, run, cstate):
        """Log file, leaf cgroup, termination file, pipes, then the container's process.

        Returns (pid, startedAt); raises whatever failed, with nothing of it left open."""
        m = self.m
        log_file = None
        stdio = None
        try:
            log_dir = m.dir.file("logs", run.name)
            os.makedirs(log_dir, exist_ok=True)
            log_path = os.path.join(log_dir, f"{cstate.restartCount}.log")
            log_file = logs.LogFile(log_path, *self.log_limits)
            cstate.log = os.path.relpath(log_path, m.dir.path)
            cstate.cgroup = f"{m.plan.cgroup_parent}/{m.cgroup_rel(run.name)}"
            rel = m.cgroup_rel(run.name)
            # Made once, reused by its restarts; limits changed by apply are set again here.
            m.cgroups.create(rel, Limits(**run.plan.limits))
            # Before the container's process joins the cgroup: it never runs with every device.
            m.cgroups.restrict_devices(rel, device_allowlist(
                container.security_settings(run.plan)["privileged"]))
            cstate.oomKills = m.cgroups.oom_kills(rel)
            _world_writable_empty(termination_log(m.dir.path, run.name))
            container_dir = m.dir.file("containers", run.name)
            os.makedirs(container_dir, exist_ok=True)
            # Pipes, or a pty with tty: true; with stdin: true the monitor keeps a way in
            # for `nspod attach` (monitor/attach.py).
            stdio = StdioFds(run.plan)
            started_at = now_rfc3339()
            try:
                pid = container.spawn(m.plan, run.plan, m.state.pause.pid,
                                      container_dir, stdio.child_out, stdio.child_err,
                                      set_pdeathsig=_die_with_monitor,
                                      prepare=self.attach_to(run.name),
                                      stdin_fd=stdio.child_stdin)
            finally:
                # Only the container may hold its ends, so its exit is our EOF.
                stdio.close_child_ends()
        except BaseException:
            if stdio is not None:
                stdio.close_all()
            if log_file is not None:
                log_file.release()
            raise
        run.log_file = log_file
        read_fds = stdio.take_read_fds()
        run.stream_fds = tuple(fd for fd, _ in read_fds)
        self.attachments.started(run, stdio, read_fds)
        for fd, stream in read_fds:
            os.set_blocking(fd, False)
            self.streams[fd] = logs.StreamWriter(log_file, stream)
            m.selector.register(fd, selectors.EVENT_READ, "log")
        return pid, started_at

    def container_exited(self, run, cstate):
        """Whether the run was OOM-killed; then whatever it left in its cgroup is killed.

        The kernel counts OOM kills per cgroup: a rise since the start names this container
        as the victim, whether its own limit or the pod's was hit. The kubelet's runtimes
        (runc/crun via containerd and CRI-O) kill the container's whole cgroup when its init
        process exits, so background children (which survive with shareProcessNamespace or
        hostPID) never outlive it into its restart; before the logs are drained, as such a
        child holding the pipes open would keep them from reaching EOF."""
        rel = self.m.cgroup_rel(run.name)
        oom_kills = self.m.cgroups.oom_kills(rel)
        oom = oom_kills > cstate.get("oomKills", 0)
        cstate.oomKills = oom_kills
        try:
            self.m.cgroups.kill(rel)
        except NspodError as e:
            print(f"nspod monitor: container {run.name}: {describe(e)}", file=sys.stderr)
        return oom

    def drain(self, run):
        """What the run wrote last may still sit in its pipes: the log must hold it before
        the run is judged (FallbackToLogsOnError reads it)."""
        for fd in run.stream_fds:
            while fd in self.streams and self.on_log(fd):
                pass
        self.attachments.run_ended(run)

    def termination_message(self, run, cstate, code):
        lc = run.plan.lifecycle
        text = read_bounded(termination_log(self.m.dir.path, run.name), 4096)
        tail = ""
        if lc.get("terminationMessagePolicy") == "FallbackToLogsOnError" and code != 0 \
                and not text.strip():
            tail = logs.tail_text(self.m.dir.file(cstate.log))
        return lifecycle.termination_message(lc.get("terminationMessagePolicy"), code, text, tail)

    # --- logs ------------------------------------------------------------------------------

    def on_log(self, fd):
        """Move what is in one pipe into the log; True while there may be more."""
        writer = self.streams.get(fd)
        if writer is None:
            return False  # drained and closed earlier in this round of events
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""   # EIO: a pty whose slave every process has closed
        if data:
            writer.feed(data)
            self.attachments.output(fd, data)
            return True
        writer.close()
        self.m.selector.unregister(fd)
        os.close(fd)
        self.attachments.pty_closed(fd)
        del self.streams[fd]
        return False

    def drain_logs(self):
        """At teardown: what the containers wrote before they ended."""
        for fd in list(self.streams):
            writer = self.streams.pop(fd)
            with contextlib.suppress(OSError):
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    writer.feed(data)
            writer.close()
            with contextlib.suppress(OSError):
                self.m.selector.unregister(fd)
            os.close(fd)
            self.attachments.pty_closed(fd)
        self.attachments.close_all()


def kill(pid, sig):
    try:
        with tracing.traced("kill", [pid, signal.Signals(sig).name]):
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    return True


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


def _world_writable_empty(path):
    """A fresh, empty termination message file any user of the container can write: the
    kubelet chmods it 0666 (kuberuntime_container.go makeMounts), whatever the umask. A new
    inode each run (temp + rename): what a previous run left running cannot write into it."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
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

"""The library API's way into a running pod: exec and debug (a process that setns into the
container's namespaces and cgroup). Raises NspodError subclasses, prints nothing.
"""
import errno
import os
import signal
import uuid

from nsPod.errors import ExitCode, NspodError, StateError
from nsPod.api.pods import _believed_cgroup, _in_cgroup, _is_pause, _process_ref
from nsPod.api.query import _enter, host_facts, load, pick_container


def exec_in(config, pod_name, container_name, argv, interactive=False):
    """Run argv inside a running container; returns its exit code (126/127 if it cannot run)."""
    from nsPod.kernel import container, process, security
    from nsPod.kernel.cgroups import open_driver, rel_in_parent
    from nsPod.plan.make import container_from_json
    _enter(config, [pod_name], [container_name])
    pod_dir, doc, pod_state = load(config, pod_name)
    cplan = container_from_json(pick_container(doc, pod_name, container_name))
    cstate = pod_state.container(cplan.name)
    if not cstate.has("pid"):
        raise StateError(f"container {cplan.name} of pod {pod_name} is not running")
    target = _process_ref(cstate.pid, cstate.get("pidStartTime"))
    # Joined only when it is the pod's: a state.json naming another process (pid 1...) must
    # not make exec enter that process's namespaces.
    if target is None or not target.alive() or \
            not _in_cgroup(target.pid, _believed_cgroup(pod_state.get("cgroup"))):
        raise StateError(f"container {cplan.name} of pod {pod_name} is not running")
    driver = open_driver(doc["plan"]["cgroup_parent"])
    rel = rel_in_parent(cstate.cgroup, doc["plan"]["cgroup_parent"])
    security.become_subreaper()  # the process comes from a second fork: it is ours to reap
    forwarder = _Forwarder()
    try:
        # In the container's cgroup before it runs: its memory is the container's.
        pid = container.spawn_joined(target, cplan, argv, attach=lambda p: driver.attach(rel, p),
                                     stdin=interactive)
    except process.ChildFailed as e:
        raise ExecFailed(e.message, ExitCode.NOT_FOUND if e.errno == errno.ENOENT
                             else ExitCode.CANNOT_EXECUTE) from None
    return forwarder.wait(pid)


def debug(config, pod_name, target_name, argv, interactive=False):
    """An ephemeral debug container: the pod's net/ipc/uts, the target container's pid
    namespace (or the pod's, or its own), its own mount namespace on the host's root, in the
    pod's cgroup. Runs attached to this terminal; returns its exit code. Gone when it ends."""
    import shutil
    from nsPod.kernel import container, process, security
    from nsPod.manifest import spec
    from nsPod.kernel.cgroups import Limits, container_cgroup_name, open_driver, rel_in_parent
    from nsPod.kernel.cgroups.devices import allowlist
    from nsPod.plan.make import PodPlan, container_plan
    _enter(config, [pod_name], [target_name])
    pod_dir, doc, pod_state = load(config, pod_name)
    pause = pod_state.pause.ref() if pod_state.pause else None
    if pause is None or not pause.alive() or not _is_pause(pause.pid):
        raise StateError(f"pod {pod_name} is not running")
    pid_from = None
    if target_name is not None:
        target = pick_container(doc, pod_name, target_name)["name"]
        cstate = pod_state.container(target)
        ref = _process_ref(cstate.get("pid"), cstate.get("pidStartTime"))
        if ref is None or not ref.alive() or \
                not _in_cgroup(ref.pid, _believed_cgroup(pod_state.get("cgroup"))):
            raise StateError(f"container {target} of pod {pod_name} is not running")
        pid_from = ref.pid
    plan = PodPlan.from_json(doc["plan"])
    name = f"debugger-{uuid.uuid4().hex[:5]}"
    pod, _ = spec.pod_from_dict(doc["manifest"], allow_no_containers=True)
    debugger, _ = spec.container_from_dict({"name": name, "command": list(argv)},
                                           "debug", init=False, pod=pod)
    facts = host_facts(config, pod_dir, plan.uid, plan.network.get("ip", ""))
    cplan = container_plan(debugger, pod, plan.volumes, facts, plan.etc_files)
    cplan.mounts = [m for m in cplan.mounts if m.volume != "termination-log"]
    driver = open_driver(plan.cgroup_parent)
    rel = f"{rel_in_parent(pod_state.cgroup, plan.cgroup_parent)}/{container_cgroup_name(name)}"
    container_dir = pod_dir.file("containers", name)
    os.makedirs(container_dir)
    driver.create(rel, Limits(), exclusive=True)  # never a container's own cgroup
    security.become_subreaper()
    forwarder = _Forwarder()
    try:
        driver.restrict_devices(rel, allowlist(container.security_settings(cplan)["privileged"]))
        try:
            pid = container.spawn(
                plan, cplan, pause.pid, container_dir, 1, 2,
                set_pdeathsig=lambda: security.set_parent_death_signal(signal.SIGKILL),
                prepare=lambda p: driver.attach(rel, p), pid_from=pid_from,
                stdin_fd=0 if interactive else None)
        except process.ChildFailed as e:
            raise ExecFailed(e.message, ExitCode.NOT_FOUND if e.errno == errno.ENOENT
                             else ExitCode.CANNOT_EXECUTE) from None
        return forwarder.wait(pid)
    finally:
        driver.kill(rel)
        driver.remove(rel)
        shutil.rmtree(container_dir, ignore_errors=True)


class ExecFailed(NspodError):
    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


class _Forwarder:
    """SIGTERM, SIGHUP, SIGINT (and SIGWINCH: through podd the process is in no terminal's
    foreground group) passed on to the process; caught from before it exists, so that one
    that comes while it is being made is passed on once it is, not lost."""

    def __init__(self):
        self.pid = None
        self.pending = []
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGWINCH):
            signal.signal(sig, self.forward)

    def forward(self, signo, frame):
        if self.pid is None:
            self.pending.append(signo)
            return
        try:
            os.kill(self.pid, signo)
        except ProcessLookupError:
            pass

    def wait(self, pid):
        self.pid = pid
        for signo in self.pending:
            self.forward(signo, None)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
            else 128 + os.WTERMSIG(status)

"""The library API's life of a pod: run (and create), stop, rm, gc.

Every function raises NspodError subclasses and prints nothing (changes to a running pod are
in api/change.py, queries in api/query.py, exec and debug in api/enter.py). Making a pod is the CLI's
part (claim the name, write what was asked for, start the monitor, wait for its word) plus the
monitor's part (everything else, see monitor/supervisor.py).
"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

from nsPod.store import podstate, state
from nsPod.errors import NspodError, PodNotFound, SetupError, StateError, describe
from nsPod.plan.make import make_plan
from nsPod.store.state import PodDir, ProcessRef, now_rfc3339
from nsPod.api.query import _enter, _existing, host_facts
from nsPod.store.locks import admission_lock
from nsPod.api import admission, control
from nsPod.warm import forking


def run(config, pod):
    """Make and start one pod; returns the monitor's warnings (one line each)."""
    from nsPod.plan.make import network_mode
    _enter(config, [pod.name], create=True)
    pod_dir = PodDir(config.root, pod.name)
    bridged = network_mode(pod) == "bridge"
    if bridged:
        from nsPod.net import client as netclient
        # pyroute2 loads in the network helper while the rest of the pod is made.
        netclient.prewarm(config.root)
    leases = None
    lock_fd = None
    with admission_lock(config):
        pod_dir.create()
        try:
            lock_fd = pod_dir.lock_monitor()
            pod_ip = ""
            if bridged:
                from nsPod.net import ipam
                leases = ipam.Leases(config.root, config.subnet)
                pod_ip = leases.allocate(pod.name)
            plan = make_plan(pod, host_facts(config, pod_dir, str(uuid.uuid4()), pod_ip))
            admission.admit_pod(config, pod, plan)
            pod_dir.write_pod({"manifest": pod.manifest, "plan": plan.to_json(),
                               "created": now_rfc3339(),
                               "backoff": [config.backoff_base, config.backoff_max]})
        except BaseException:
            # The monitor.lock fd too: a library caller lives on after a failed run.
            if lock_fd is not None:
                os.close(lock_fd)
            if leases is not None:
                leases.release(pod.name)
            _remove_dir(pod_dir)
            raise
    try:
        return _start_monitor(config, pod_dir, lock_fd)
    except BaseException as e:
        if getattr(e, "state_kept", False):
            raise
        if leases is not None:
            leases.release(pod.name)
        _remove_dir(pod_dir)
        raise


def _start_monitor(config, pod_dir, lock_fd):
    ready_r, ready_w = os.pipe()
    env = dict(os.environ, NSPOD_TRACE="1" if config.trace else "0")
    # While the pod is being made, --trace narration goes to the user; otherwise and
    # afterwards, the monitor writes to the pod's monitor.log.
    stderr = None if config.trace else open(pod_dir.file("monitor.log"), "ab")
    try:
        if forking.is_warm():   # a command forked from podd: podd forks the monitor
            monitor = forking.start_monitor(config.root, pod_dir.path, ready_w, lock_fd,
                                            2 if stderr is None else stderr.fileno(),
                                            config.trace)
        else:
            monitor = subprocess.Popen(
                # The file, not -m: runpy costs ~8 ms; -P keeps its directory off sys.path.
                [sys.executable, "-P", os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                                    "monitor", "__main__.py"),
                 pod_dir.path, str(ready_w),
                 str(lock_fd), str(os.getpid())],
                pass_fds=(ready_w, lock_fd), start_new_session=True, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            )
    finally:
        os.close(ready_w)
        os.close(lock_fd)
        if stderr is not None:
            stderr.close()
    with os.fdopen(ready_r, "rb") as ready:
        data = ready.read()
    try:
        reply = json.loads(data) if data else None
    except ValueError:
        reply = None
    if reply is None or "error" in reply:
        # The monitor undoes what it made before it exits; wait for that, then the rest.
        monitor.wait()
        # A monitor killed while making the pod (or whose undoing failed) left its record
        # in the state: undo from it now, before the caller removes the state directory.
        try:
            clean_up_after_monitor(pod_dir)
        except NspodError as e:
            error = SetupError(f"pod {pod_dir.name}: the monitor ended while making the pod "
                               f"and undoing what it made failed: {describe(e)}; "
                               f"`nspod gc` retries it")
            error.state_kept = True  # the record gc needs: run must not remove it
            raise error from e
        if reply is None:
            raise SetupError(f"pod {pod_dir.name}: the monitor died while making the pod "
                             f"(exit status {monitor.returncode}); see its log above")
        raise SetupError(f"pod {pod_dir.name}: {reply['error']}")
    # The monitor lives on detached; dropping the Popen object must not wait for it.
    monitor.returncode = 0
    if forking.is_warm():
        monitor.close()     # podd's watcher of the monitor ends with this
    return reply.get("warnings", [])


def stop(config, name, timeout=None):
    _enter(config, [name])
    pod_dir = _existing(config, name)
    if pod_dir.monitor_alive():
        grace = timeout
        if grace is None:
            grace = pod_dir.read_pod()["plan"]["grace_seconds"]
        try:
            # A manifest's grace period may be any integer; a socket timeout must fit in
            # Python's int64 nanoseconds (~292 years).
            control.request(pod_dir, {"op": "stop", "timeout": grace}, timeout=min(grace, 2**31) + 60)
        except StateError as e:
            # A pod whose containers have all ended goes down on its own: its monitor then
            # closes the requests it has not read (a reset here) and exits. Its exit is the
            # answer this stop wanted; a monitor that stays is the error.
            try:
                _wait_monitor_exit(pod_dir)
            except StateError:
                raise e from None
        _wait_monitor_exit(pod_dir)
    clean_up_after_monitor(pod_dir)


def _wait_monitor_exit(pod_dir, timeout=10.0):
    """The monitor answers once the pod is down, then exits: its lock goes with it."""
    deadline = time.monotonic() + timeout
    while pod_dir.monitor_alive():
        if time.monotonic() > deadline:
            raise StateError(f"pod {pod_dir.name}: its monitor did not exit after stopping")
        time.sleep(0.002)


def remove(config, names, force=False, timeout=None):
    """Remove pods; returns (removed names, errors). Unknown names are errors unless force.

    Every name is checked before any pod is touched: `rm -f good ../x` removes nothing."""
    _enter(config, names)
    removed, errors = [], []
    for name in names:
        pod_dir = PodDir(config.root, name)
        try:
            if not pod_dir.exists():
                if not force:
                    raise PodNotFound(name)
                continue
            if pod_dir.monitor_alive():
                if not force:
                    raise StateError(f"pod {name} is running: stop it first, or use rm -f")
                stop(config, name, timeout)
            clean_up_after_monitor(pod_dir)
            _remove_dir(pod_dir)
            removed.append(name)
        except NspodError as e:
            errors.append(e)
    return removed, errors


def _remove_dir(pod_dir):
    from nsPod.kernel.mounts import detach, mounts_under
    if not pod_dir.exists():
        return
    for mount_point in mounts_under(pod_dir.path):
        detach(mount_point)
    pod_dir.remove()


def clean_up_after_monitor(pod_dir):
    """What a dead monitor did not undo: kill its processes, unmount its mounts, detach its
    network, release a lease `run` took that no record of the state names.

    Returns a list of what was removed, for `gc`. Runs only holding monitor.lock, so never
    beside a live monitor.
    """
    from nsPod.monitor import teardown
    lock_fd = pod_dir.lock_monitor()
    if lock_fd is None:
        return []
    try:
        pod_state = podstate.read(pod_dir)
        if pod_state is None or not teardown.anything_left(pod_state) and \
                pod_state.phase in state.TERMINAL_PHASES:
            return _release_unrecorded_lease(pod_dir)
        removed = []
        victims = []
        cgroup = _believed_cgroup(pod_state.get("cgroup"))
        for name, cstate in pod_state.get("containers", {}).items():
            ref = _process_ref(cstate.get("pid"), cstate.get("pidStartTime"))
            if ref and _in_cgroup(ref.pid, cgroup) and ref.kill(signal.SIGKILL):
                victims.append(ref)
                removed.append(f"process {ref.pid} (container {name})")
            cstate.drop("pid")
        pause = pod_state.pause
        pause = _process_ref(pause.get("pid"), pause.get("startTime")) if pause else None
        if pause and (_is_pause(pause.pid) or _in_cgroup(pause.pid, cgroup)) \
                and pause.kill(signal.SIGKILL):
            victims.append(pause)
            removed.append(f"process {pause.pid} (pause)")
        _wait_gone(victims)
        # Only mounts in the pod's own directory: a state.json naming /proc or a host path
        # must not make rm detach it.
        pod_state.mounts = [m for m in pod_state.get("mounts", []) if _own_mount(pod_dir, m)]
        mounted = _mount_set()
        removed += [f"mount {path}" for path in pod_state.mounts if path in mounted]
        if pod_state.cgroup:
            removed.append(f"cgroup {pod_state.cgroup}")
        if pod_state.network:
            removed.append(f"network {pod_state.network.get('hostVeth', '')} "
                           f"{pod_state.get('podIP', '')}".rstrip())
        # The monitor's own undo steps: each runs even when one before it failed (the
        # network goes even when the cgroups could not: its record says what is the pod's);
        # the first failure is raised once all have run, the state kept for gc to retry.
        failures = []
        teardown.undo(pod_dir.root, pod_dir.name, pod_state,
                      lambda step, error: failures.append(error))
        if not pod_state.network:
            try:
                removed += _release_unrecorded_lease(pod_dir)
            except NspodError as e:
                failures.append(e)
        if failures:
            raise failures[0]
        if pod_state.phase not in state.TERMINAL_PHASES:
            for cstate in pod_state.get("containers", {}).values():
                if cstate.state and cstate.state.has("running"):
                    cstate.state = podstate.ContainerState(terminated={
                        "exitCode": 137, "signal": 9, "reason": "Error",
                        "message": "killed after its pod's monitor died",
                        "startedAt": cstate.state.running.get("startedAt"),
                        "finishedAt": now_rfc3339()})
                cstate.ready = False
            pod_state.phase = "Failed"
            pod_state.reason = "MonitorGone"
            pod_state.message = "the pod's monitor ended without tearing the pod down"
        pod_state.pause = None
        pod_dir.write_state(pod_state.to_json())
        return removed
    finally:
        os.close(lock_fd)


def _release_unrecorded_lease(pod_dir):
    """The lease `run` took for the pod, when no network record of its state names it (run
    or monitor died before the monitor recorded the network): released by the pod's name,
    under its monitor.lock (the caller's)."""
    from nsPod.net import ipam
    ip = ipam.release_by_name(pod_dir.root, pod_dir.name)
    return [f"lease {ip}"] if ip else []


def _process_ref(pid, start_time):
    """A ProcessRef from state.json values, or None when they are not a pid and start time."""
    if type(pid) is not int or pid <= 1 or type(start_time) is not int:
        return None
    return ProcessRef(pid, start_time)


def _believed_cgroup(cgroup):
    """The pod's cgroup path as recorded, when it is one ('parent/.../name')."""
    if not isinstance(cgroup, str):
        return None
    parts = cgroup.strip("/").split("/")
    if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        return None
    return "/".join(parts)


def _in_cgroup(pid, cgroup):
    """Whether pid is in the pod's cgroup (or below it) in some hierarchy: a pid in state.json
    is believed only with its start time and this, so a planted or stale state.json cannot
    make nspod SIGKILL a process that is not the pod's."""
    if cgroup is None:
        return False
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    for line in lines:
        path = line.split(":", 2)[-1].strip("/")
        if path == cgroup or path.startswith(cgroup + "/"):
            return True
    return False


def _is_pause(pid):
    """Whether pid runs nspod's pause binary."""
    from nsPod.kernel.sandbox import pause_binary
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return exe == os.path.realpath(pause_binary())


def _own_mount(pod_dir, path):
    if not isinstance(path, str) or os.path.normpath(path) != path:
        return False
    return any(path == base or path.startswith(base + "/")
               for base in {pod_dir.path, os.path.realpath(pod_dir.path)})


def _mount_set():
    from nsPod.kernel.mounts import mount_points
    return set(mount_points())


def _wait_gone(refs, timeout=10.0):
    deadline = time.monotonic() + timeout
    while any(r.alive() for r in refs):
        if time.monotonic() > deadline:
            alive = [r.pid for r in refs if r.alive()]
            raise StateError(f"processes {alive} did not end after SIGKILL")
        time.sleep(0.01)


def gc(config):
    """Remove what crashed monitors left: processes, mounts, half-made pod directories."""
    _enter(config)
    report = []
    for pod_dir in state.list_pods(config.root):
        if pod_dir.monitor_alive():
            continue
        if not os.path.exists(pod_dir.file(state.STATE_FILE)):
            # A `run` that died between claiming the name and starting its monitor; a run
            # in progress holds monitor.lock from its first instant, so this one is dead.
            if time.time() - os.stat(pod_dir.path).st_mtime > 5:
                _remove_dir(pod_dir)
                report.append(f"pod {pod_dir.name}: removed its half-made state directory")
            continue
        for item in clean_up_after_monitor(pod_dir):
            report.append(f"pod {pod_dir.name}: {item}")
    report += _gc_network(config)
    from nsPod.store import images
    report += images.gc(config.root)
    return report


def _gc_network(config):
    """Leases, veths and netns names of pods that are gone; the bridge once unused, and only
    when it carries nspod's marker for this root (never docker0 or any bridge without it)."""
    from nsPod.net import client as netclient
    live, records = [], {}
    for pod_dir in state.list_pods(config.root):
        if pod_dir.monitor_alive():
            live.append(pod_dir.name)
            continue
        try:
            pod_state = podstate.read(pod_dir)
            record = pod_state.network if pod_state is not None else None
        except (NspodError, OSError, ValueError):
            record = None
        if isinstance(record, podstate.Network):
            records[pod_dir.name] = record.to_json()
    removed = netclient.gc(config.root, config.bridge, config.subnet, keep=live,
                           records=records)
    return [f"network: {item}" for item in removed]

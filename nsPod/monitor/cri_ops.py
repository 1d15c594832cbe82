"""The control requests only `nspod cri` sends (CRI StopContainer, RemoveContainer,
ReopenContainerLog): one container of the pod at a time, never restarted afterwards."""
import contextlib

from nsPod.errors import NspodError


def stop_container(control, request):
    """CRI StopContainer: this container only, preStop/SIGTERM then SIGKILL after the
    timeout; not restarted (CRI containers never are)."""
    run = control.m.runs.get(request.get("container"))
    timeout = request.get("timeout")
    if run is None:
        raise NspodError(f"pod {control.m.plan.name} has no container {request.get('container')!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise NspodError(f"stop-container: timeout {timeout!r} is not a number of seconds")
    control.m.stopper.terminate(run, timeout)
    return {"ok": True}


def remove_container(control, request):
    """CRI RemoveContainer: forget an ended CRI container (plan, status, its cgroup)."""
    m = control.m
    name = request.get("container")
    run = m.runs.get(name)
    if run is None or not getattr(run, "cri", False):
        raise NspodError(f"pod {m.plan.name} has no CRI container {name!r}")
    if run.pid:
        raise NspodError(f"container {name} is running: stop it first")
    m.timers.cancel(run.pending)
    del m.runs[name]
    m.plan.containers = [c for c in m.plan.containers if c.name != name]
    m.state.containers.pop(name, None)
    with contextlib.suppress(NspodError, OSError):
        m.cgroups.remove(m.cgroup_rel(name))
    doc = m.dir.read_pod()
    manifest = doc["manifest"]
    spec = manifest.get("spec", {})
    spec["containers"] = [c for c in spec.get("containers", []) if c.get("name") != name]
    control.write_plan(manifest)
    m.save()
    return {"ok": True}


def rotate_log(control, request):
    """CRI ReopenContainerLog: the running container's log starts a new file (the old
    one becomes <n>.log.1, as a rotation by size does)."""
    run = control.m.runs.get(request.get("container"))
    if run is None or run.log_file is None or run.log_file.fd is None:
        raise NspodError(f"container {request.get('container')!r} is not running")
    run.log_file.rotate()
    return {"ok": True}

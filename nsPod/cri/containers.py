"""Containers: CreateContainer records a CRI container (cri.json) without starting it: the
CREATED state, which nspod's monitor has no word for, lives here until StartContainer asks
the monitor to add and start it (op "add" with "cri": never restarted by the monitor, and its
end does not end the pod: the kubelet decides). Stop and remove go to the monitor too
(ops "stop-container", "remove-container")."""
import os

from nsPod.errors import InputError, SpecError, StateError
from nsPod.cri import checks, images, sandboxes, security, store
from nsPod.cri.protocol import CriError, Code, pb

ARGV_MAX = 4096
PROPAGATION = {0: "private", 1: "rslave", 2: "rshared"}


def _strings(values, field, limit=128 * 1024):
    if len(values) > ARGV_MAX:
        raise InputError(f"{field}: more than {ARGV_MAX} items")
    return [checks.text(v, f"{field}[{i}]", limit) for i, v in enumerate(values)]


def record_of(pod, config):
    """(nspod container name, the CRI record) of a ContainerConfig, every field checked."""
    md = config.metadata
    cri_name = checks.name(md.name, "config.metadata.name")
    checks.number(md.attempt, "config.metadata.attempt", 0, 2**32 - 1)
    name = checks.nspod_name(cri_name, md.attempt)
    image_ref = images.resolve(pod.dir.root, config.image.image, "config.image.image")
    doc = {"name": name, "imagePullPolicy": "Never"}
    if image_ref:
        doc["image"] = image_ref
    if config.command:
        doc["command"] = _strings(config.command, "config.command")
    if config.args:
        doc["args"] = _strings(config.args, "config.args")
    if config.working_dir:
        doc["workingDir"] = checks.absolute_path(config.working_dir, "config.working_dir")
    env = []
    for i, kv in enumerate(config.envs):
        key = checks.text(kv.key, f"config.envs[{i}].key", 4096, allow_empty=False)
        if "=" in key:
            raise InputError(f"config.envs[{i}].key: {key!r} holds '='")
        env.append({"name": key, "value": checks.text(kv.value, f"config.envs[{i}].value",
                                                      128 * 1024)})
    if env:
        doc["env"] = env
    # The container spec's own fields, so its plan (stdin_open, stdin_once, tty) has them:
    # the monitor keeps its stdin pipe or pty for CRI Attach (monitor/attach.py).
    for field, value in (("stdin", config.stdin), ("stdinOnce", config.stdin_once),
                         ("tty", config.tty)):
        if value:
            doc[field] = True
    mounts = []
    for i, m in enumerate(config.mounts):
        field = f"config.mounts[{i}]"
        target = checks.absolute_path(m.container_path, f"{field}.container_path")
        source = checks.absolute_path(m.host_path, f"{field}.host_path")
        if not os.path.exists(source):
            raise InputError(f"{field}.host_path: {source} does not exist")
        if m.propagation not in PROPAGATION:
            raise InputError(f"{field}.propagation: {m.propagation} is not a propagation mode")
        if m.propagation == 2:
            # Bidirectional would need the container's mount namespace shared with the
            # host's: its own mounts (the root, /proc) would appear on the host.
            raise CriError(f"{field}.propagation: rshared mounts are not supported",
                           Code.UNIMPLEMENTED)
        mounts.append({"container_path": target, "host_path": source,
                       "readonly": m.readonly, "propagation": m.propagation})
    if config.devices:
        raise CriError("config.devices: devices are not supported yet", Code.UNIMPLEMENTED)
    log_path = ""
    if config.log_path:
        rel = checks.relative_path(config.log_path, "config.log_path")
        directory = sandboxes.log_directory(pod)
        if not directory:
            raise InputError("config.log_path: the sandbox has no log_directory")
        log_path = os.path.join(directory, rel)
    linux = config.linux
    limits = security.resources_of(linux.resources, "config.linux.resources")
    sec = security.security_of(linux.security_context, "config.linux.security_context")
    return name, {
        "metadata": {"name": cri_name, "attempt": md.attempt},
        "image": config.image.image, "image_ref": image_ref or "",
        "labels": checks.labels(config.labels, "config.labels"),
        "annotations": checks.labels(config.annotations, "config.annotations"),
        "log_path": log_path, "created_ns": sandboxes.now_ns(), "doc": doc,
        "mounts": mounts, "limits": limits, "security": sec,
        "tty": config.tty, "stdin": config.stdin, "stdin_once": config.stdin_once}


def create(cfg, pod, config):
    """CreateContainer: checked, recorded (CREATED), its log link made; returns its id."""
    from nsPod.manifest import spec
    if not pod.ready():
        raise CriError(f"pod sandbox {pod.id} is not ready", Code.FAILED_PRECONDITION)
    name, record = record_of(pod, config)
    manifest_pod, _ = spec.pod_from_dict(pod.doc["manifest"], allow_no_containers=True)
    try:
        spec.container_from_dict(record["doc"], "config", init=False, pod=manifest_pod)
    except SpecError as e:
        raise InputError("; ".join(e.problems)) from None
    with store.mutation_lock:
        pod = store.load_pod(cfg.root, pod.name)
        if name in pod.record.get("containers", {}) or \
                any(n == name for _, n, _, _ in pod.containers()):
            raise CriError(f"config.metadata: container {config.metadata.name!r} attempt "
                           f"{config.metadata.attempt} already exists in this sandbox",
                           Code.ALREADY_EXISTS)
        if record["log_path"]:
            link_log(record["log_path"], pod.dir.file("logs", name, "0.log"))
        pod.record.setdefault("containers", {})[name] = record
        try:
            pod.save_record()
        except BaseException:
            store.unlink_log(record)
            raise
    return checks.id_of(pod.plan["uid"], name)


def link_log(path, target):
    """The kubelet's log path, a symlink to the run's log nspod's monitor writes. Its
    directory is made if missing; nothing there is replaced, and no symlink on the way is
    followed (the path must be what it says)."""
    from nsPod.kernel.syscalls import ResolveFlag, openat2
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    # The link is made relative to the directory opened without following any symlink, so a
    # symlink swapped in after makedirs cannot send it elsewhere.
    root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dir_fd = openat2(root_fd, directory.lstrip("/") or ".",
                         os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                         ResolveFlag.RESOLVE_NO_SYMLINKS | ResolveFlag.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        raise InputError(f"config.log_path: {directory}: holds a symlink or is not a "
                         f"directory ({e.strerror})") from None
    finally:
        os.close(root_fd)
    try:
        os.symlink(target, os.path.basename(path), dir_fd=dir_fd)
    except FileExistsError:
        raise InputError(f"config.log_path: {path} already exists") from None
    finally:
        os.close(dir_fd)


def reopen_log(pod, name, record, cstate):
    """ReopenContainerLog, after the kubelet renamed the log (its rotation): nspod's log
    starts a new file; the renamed link is pointed at the old one (its content no longer
    grows) and a new link is made at the kubelet's path."""
    from nsPod.api import control
    path = record.get("log_path")
    if not path or os.path.lexists(path):
        return      # not renamed: the log goes on where it is
    target = pod.dir.file(cstate.log)
    reply = control.request(pod.dir, {"op": "rotate-log", "container": name}, timeout=30.0)
    if "error" in reply:
        raise StateError(reply["error"])
    directory = os.path.dirname(path)
    for entry in os.scandir(directory):
        if entry.is_symlink() and os.readlink(entry.path) == target:
            temporary = os.path.join(directory, f".{entry.name}.nspod-{os.getpid()}")
            os.symlink(f"{target}.1", temporary)
            os.replace(temporary, entry.path)
    link_log(path, target)


def start(cfg, pod, name, record, cstate):
    """StartContainer: the monitor adds the recorded container and starts it."""
    from nsPod.api import control
    from nsPod.api.query import host_facts
    from nsPod.manifest import spec
    from nsPod.plan.make import PodPlan, container_plan
    from nsPod.plan.model import MountPlan
    if cstate is not None or record.get("started"):
        raise CriError(f"container {name} was started already", Code.FAILED_PRECONDITION)
    if not pod.ready():
        raise CriError(f"pod sandbox {pod.id} is not ready", Code.FAILED_PRECONDITION)
    with store.mutation_lock:
        pod = store.load_pod(cfg.root, pod.name)
        doc = pod.doc
        manifest = dict(doc["manifest"])
        manifest["spec"] = dict(manifest.get("spec", {}))
        manifest["spec"]["containers"] = list(manifest["spec"].get("containers", [])) + \
            [record["doc"]]
        mpod, _ = spec.pod_from_dict(manifest, allow_no_containers=True)
        container = next(c for c in mpod.containers if c.name == name)
        plan = PodPlan.from_json(doc["plan"])
        facts = host_facts(cfg, pod.dir, plan.uid, plan.network.get("ip", ""))
        cplan = container_plan(container, mpod, plan.volumes, facts, plan.etc_files)
        cplan.limits = dict(record["limits"])
        for i, m in enumerate(record["mounts"]):
            cplan.mounts.append(MountPlan(volume=f"cri-mount-{i}", source=m["host_path"],
                                          target=m["container_path"], read_only=m["readonly"]))
        security.apply_security(cplan, record["security"])
        if any(m.get("propagation") == 1 for m in record["mounts"]):
            cplan.security = {**cplan.security, "rootPropagation": "rslave"}
        reply = control.request(pod.dir, {"op": "add", "container": cplan.to_json(),
                                          "manifest": manifest, "cri": True}, timeout=30.0)
        if "error" in reply:
            raise StateError(reply["error"])
        pod.record["containers"][name]["started"] = True
        pod.save_record()
    warnings = reply.get("warnings", [])
    failed = [w for w in warnings if w.startswith(f"container {name}: StartError")]
    if failed:
        # As containerd answers a start that failed: an error; the status says EXITED with
        # reason StartError and the message.
        raise StateError(failed[0])
    return warnings


def stop(cfg, pod, name, cstate, timeout):
    """StopContainer: SIGTERM, SIGKILL after `timeout` s; returns once it has ended."""
    import time
    from nsPod.api import control
    checks.number(timeout, "timeout", 0, 86400 * 365)
    if not running(cstate) or not pod.dir.monitor_alive():
        return
    if cstate.has("pid"):
        control.request(pod.dir, {"op": "stop-container", "container": name,
                                  "timeout": timeout}, timeout=30.0)
    deadline = time.monotonic() + timeout + 30
    while time.monotonic() < deadline:
        # Ended once the monitor has recorded it (exit code, log drained), or is gone.
        if not running(store.load_pod(cfg.root, pod.name).state.get("containers", {})
                       .get(name)) or not pod.dir.monitor_alive():
            return
        time.sleep(0.05)
    raise StateError(f"container {name} did not stop within {timeout + 30} s")


def running(cstate):
    """Whether the monitor has the container as running (its end not recorded yet)."""
    return cstate is not None and bool(cstate.state.get("running"))


def remove(cfg, pod, name, record, cstate):
    """RemoveContainer: stopped first (at once), then forgotten by the monitor; its logs go
    (the kubelet's log link is the kubelet's to remove, as crictl rm does)."""
    from nsPod.api import control
    with store.mutation_lock:
        if cstate is not None and pod.dir.monitor_alive():
            if running(cstate):
                stop(cfg, pod, name, cstate, 0)
            reply = control.request(pod.dir, {"op": "remove-container", "container": name},
                                    timeout=30.0)
            if "error" in reply:
                raise StateError(reply["error"])
        pod = store.load_pod(cfg.root, pod.name)
        # The kubelet's log link stays: the kubelet (and crictl rm) removes container logs.
        pod.record.get("containers", {}).pop(name, None)
        if pod.cri_made:
            pod.save_record()
        for part in ("logs", "containers"):
            path = pod.dir.file(part, name)
            if os.path.isdir(path):
                from nsPod.store.state import remove_tree
                remove_tree(path, ignore_errors=True)


def state_of(record, cstate, monitor_alive):
    """(CRI state, started ns, finished ns, exit code, reason, message)."""
    if cstate is None:
        return pb.CONTAINER_CREATED, 0, 0, 0, "", ""
    st = cstate.state
    if st.get("running") and monitor_alive:
        # Until the monitor records the end (its log drained, its exit code read), a
        # process already gone is still running: EXITED comes with the whole log.
        return (pb.CONTAINER_RUNNING, sandboxes.rfc3339_ns(st.running.get("startedAt")),
                0, 0, "", "")
    t = st.get("terminated")
    if t:
        return (pb.CONTAINER_EXITED, sandboxes.rfc3339_ns(t.get("startedAt")),
                sandboxes.rfc3339_ns(t.get("finishedAt")), int(t.get("exitCode", 0)),
                t.get("reason", ""), t.get("message", ""))
    if st.get("running"):
        return (pb.CONTAINER_EXITED, sandboxes.rfc3339_ns(st.running.get("startedAt")), 0,
                255, "Unknown", "the pod's monitor is gone")
    if not record:
        return pb.CONTAINER_UNKNOWN, 0, 0, 0, "", ""
    return pb.CONTAINER_CREATED if not monitor_alive else pb.CONTAINER_CREATED, 0, 0, 0, "", ""


def metadata_of(name, record):
    m = record.get("metadata") or {"name": name, "attempt": 0}
    return pb.ContainerMetadata(name=m["name"], attempt=m["attempt"])


def image_of(pod, name, record):
    if record:
        return record.get("image", ""), record.get("image_ref", "")
    c = next((c for c in pod.plan["init_containers"] + pod.plan["containers"]
              if c["name"] == name), {})
    return c.get("image", ""), c.get("image", "")


def container_message(pod, cid, name, record, cstate, alive):
    state = state_of(record, cstate, alive)[0]
    image, ref = image_of(pod, name, record)
    return pb.Container(id=cid, pod_sandbox_id=pod.id, metadata=metadata_of(name, record),
                        image=pb.ImageSpec(image=image), image_ref=ref, state=state,
                        created_at=record.get("created_ns") or sandboxes.created_ns(pod),
                        labels=record.get("labels", {}),
                        annotations=record.get("annotations", {}))


def status_message(pod, cid, name, record, cstate, verbose=False):
    alive = pod.dir.monitor_alive()
    state, started, finished, code, reason, message = state_of(record, cstate, alive)
    image, ref = image_of(pod, name, record)
    mounts = [pb.Mount(container_path=m["container_path"], host_path=m["host_path"],
                       readonly=m["readonly"], propagation=m.get("propagation", 0))
              for m in record.get("mounts", [])]
    status = pb.ContainerStatus(
        id=cid, metadata=metadata_of(name, record), state=state,
        created_at=record.get("created_ns") or sandboxes.created_ns(pod),
        started_at=started, finished_at=finished, exit_code=code,
        image=pb.ImageSpec(image=image), image_ref=ref, image_id=ref, reason=reason,
        message=message, labels=record.get("labels", {}),
        annotations=record.get("annotations", {}), mounts=mounts,
        log_path=record.get("log_path") or (pod.dir.file(cstate.log)
                                            if cstate is not None and cstate.get("log") else ""))
    info = {}
    if verbose:
        import json
        info["info"] = json.dumps({"pod": pod.name, "container": name,
                                   "pid": cstate.get("pid") if cstate else None,
                                   "cgroup": cstate.get("cgroup") if cstate else None,
                                   "sandboxID": pod.id})
    return status, info


def matches(pod, cid, name, record, cstate, flt, alive):
    if flt is None:
        return True
    if flt.id and not cid.startswith(flt.id):
        return False
    if flt.pod_sandbox_id and not pod.id.startswith(flt.pod_sandbox_id):
        return False
    if flt.HasField("state") and flt.state.state != state_of(record, cstate, alive)[0]:
        return False
    labels = record.get("labels", {})
    return all(labels.get(k) == v for k, v in flt.label_selector.items())


def cgroup_rel(pod, cstate):
    """(driver, rel) of a running container's cgroup, as the monitor recorded it."""
    from nsPod.kernel.cgroups import open_driver, rel_in_parent
    if cstate is None or not cstate.get("cgroup"):
        raise CriError("the container has no cgroup (not started)", Code.FAILED_PRECONDITION)
    parent = pod.plan["cgroup_parent"]
    return open_driver(parent), rel_in_parent(cstate.cgroup, parent)


def update_resources(pod, cstate, resources):
    from nsPod.kernel.cgroups import Limits
    limits = security.resources_of(resources, "linux")
    driver, rel = cgroup_rel(pod, cstate)
    driver.set_limits(rel, Limits(**limits))


"""The library API the CLI calls: run, create, add, stop, rm, exec, logs, ps, inspect, ns, gc.

Every function raises NspodError subclasses and prints nothing. Making a pod is the CLI's
part (claim the name, write what was asked for, start the monitor, wait for its word) plus the
monitor's part (everything else, see monitor.py).
"""
import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

from nsPod import jsonline, state, status
from nsPod.errors import (InputError, NspodError, PodNotFound, SetupError, StateError,
                          describe)
from nsPod.plan import Facts, make_plan
from nsPod.state import PodDir, ProcessRef, now_rfc3339


def require_root():
    if os.geteuid() != 0:
        raise NspodError("nspod must run as root (it creates namespaces, mounts and cgroups)")


# --- making pods ----------------------------------------------------------------------------

def host_facts(config, pod_dir, uid, pod_ip=""):
    return Facts(
        uid=uid,
        pod_dir=pod_dir.path,
        state_root=config.root,
        node_name=socket.gethostname(),
        host_ip=host_ip(),
        pod_ip=pod_ip,
        node_memory=mem_total(),
        node_cpus=os.cpu_count() or 1,
        node_ephemeral_storage=_disk_size(config.root),
        cgroup_parent=config.cgroup_parent,
        bridge=config.bridge,
        subnet=config.subnet,
        host_hosts=_read_text("/etc/hosts"),
        host_resolv_conf=_read_text("/etc/resolv.conf"),
        host_name=socket.gethostname(),
        images=_image_configs(config.root),
    )


def _image_configs(root):
    """What each stored image gives its containers; no store, no import of images.py
    (it costs ~18 ms, for the tarball and OCI machinery no pod start needs)."""
    if not os.path.isdir(os.path.join(root, "images")):
        return {}
    from nsPod import images
    return images.configs(root)


def _read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def host_ip():
    """The host's first non-loopback IPv4 address, from the kernel's routing tables."""
    try:
        with open("/proc/net/fib_trie") as f:
            lines = f.read().splitlines()
    except OSError:
        return "127.0.0.1"
    for i, line in enumerate(lines):
        if "/32 host LOCAL" in line and i > 0:
            address = lines[i - 1].split()[-1]
            if not address.startswith("127."):
                return address
    return "127.0.0.1"


def mem_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _disk_size(path):
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def admit(config, pod, plan):
    """Checks against the host that must pass before anything is created.

    Memory: the pod's need must fit in MemAvailable less what the pods nspod already runs
    under this root may use (their limits) less a reserve (NSPOD_MEMORY_RESERVE, default
    256Mi). Callers hold the admission lock until the pod's pod.json is written, so two
    concurrent runs cannot both take the last of it.
    """
    from nsPod import admission, volumes
    for i, v in enumerate(plan.volumes):
        if v.kind == "host":
            volumes.check_host_path(v, f"spec.volumes[{i}].hostPath.path")
    check_host_ports(pod, plan)
    if plan.memory_need:
        admission.admit(plan.memory_need, admission.read_mem_available(),
                        committed_memory(config), memory_reserve(),
                        plan.memory_asks, pod_name=pod.name)


def check_host_ports(pod, plan):
    from nsPod import ports
    for section, containers in (("initContainers", pod.init_containers),
                                ("containers", pod.containers)):
        for ci, c in enumerate(containers):
            for pi, p in enumerate(c.ports):
                where = f"spec.{section}[{ci}].ports[{pi}]"
                if p.host_port and p.protocol != "TCP":
                    raise InputError(f"{where}.protocol: {p.protocol} hostPorts are not "
                                     "supported yet (TCP only)")
                if p.host_port and plan.network["mode"] == "none":
                    raise InputError(f"{where}.hostPort: needs the pod network (this pod has "
                                     "nspod.io/network: none, so no IP to forward to)")
    ports.check_free([host for host, _, _ in plan.host_ports])


def memory_reserve():
    from nsPod.quantity import parse_bytes
    text = os.environ.get("NSPOD_MEMORY_RESERVE") or "256Mi"
    try:
        return parse_bytes(text)
    except ValueError as e:
        raise InputError(f"NSPOD_MEMORY_RESERVE: {e}") from None


def committed_memory(config):
    """What the live pods under this root may use: the sum of their admitted needs."""
    total = 0
    for pod_dir in state.list_pods(config.root):
        try:
            pod_state = pod_dir.read_state()
            if pod_state is not None and pod_state["phase"] in state.TERMINAL_PHASES:
                continue
            total += pod_dir.read_pod()["plan"].get("memory_need", 0)
        except NspodError:
            continue
    return total


@contextlib.contextmanager
def admission_lock(config):
    os.makedirs(config.root, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(config.root, "admission.lock"),
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def run(config, pod):
    """Make and start one pod; returns the monitor's warnings (one line each)."""
    from nsPod.plan import network_mode
    require_root()
    pod_dir = PodDir(config.root, pod.name)
    bridged = network_mode(pod) == "bridge"
    if bridged:
        from nsPod import netclient
        # pyroute2 loads in the network helper while the rest of the pod is made.
        netclient.prewarm(config.root)
    leases = None
    with admission_lock(config):
        pod_dir.create()
        try:
            lock_fd = pod_dir.lock_monitor()
            pod_ip = ""
            if bridged:
                from nsPod import ipam
                leases = ipam.Leases(config.root, config.subnet)
                pod_ip = leases.allocate(pod.name)
            plan = make_plan(pod, host_facts(config, pod_dir, str(uuid.uuid4()), pod_ip))
            admit(config, pod, plan)
            pod_dir.write_pod({"manifest": pod.manifest, "plan": plan.to_json(),
                               "created": now_rfc3339(),
                               "backoff": [config.backoff_base, config.backoff_max]})
        except BaseException:
            if leases is not None:
                leases.release(pod.name)
            _remove_dir(pod_dir)
            raise
    try:
        return _start_monitor(config, pod_dir, lock_fd)
    except BaseException:
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
        monitor = subprocess.Popen(
            # The file, not -m: runpy costs ~8 ms; -P keeps its directory off sys.path.
            [sys.executable, "-P", os.path.join(os.path.dirname(__file__), "monitor.py"),
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
        if reply is None:
            raise SetupError(f"pod {pod_dir.name}: the monitor died while making the pod "
                             f"(exit status {monitor.returncode}); see its log above")
        raise SetupError(f"pod {pod_dir.name}: {reply['error']}")
    # The monitor lives on detached; dropping the Popen object must not wait for it.
    monitor.returncode = 0
    return reply.get("warnings", [])


def add(config, pod_name, container_dict, init=False):
    """Add a container to a running pod and start it; returns warnings."""
    from nsPod import spec
    from nsPod.plan import container_plan
    require_root()
    pod_dir = _existing(config, pod_name)
    doc = pod_dir.read_pod()
    pod, _ = spec.pod_from_dict(doc["manifest"], allow_no_containers=True)
    index = len(pod.init_containers if init else pod.containers)
    section = "initContainers" if init else "containers"
    path = f"spec.{section}[{index}]"
    container, warnings = spec.container_from_dict(container_dict, path, init=init, pod=pod)
    manifest = json.loads(json.dumps(doc["manifest"]))
    manifest.setdefault("spec", {}).setdefault(section, []).append(container_dict)
    pod, _ = spec.pod_from_dict(manifest, allow_no_containers=True)
    from nsPod.plan import PodPlan
    plan = PodPlan.from_json(doc["plan"])
    facts = host_facts(config, pod_dir, plan.uid, plan.network.get("ip", ""))
    cplan = container_plan(container, pod, plan.volumes, facts, plan.etc_files)
    # An init container's answer comes when it has run to completion: no timeout for that.
    reply = _request(pod_dir, {"op": "add", "container": _asdict(cplan), "manifest": manifest},
                     timeout=None if init else 30.0)
    if init and not reply.get("ok"):
        raise NspodError(f"init container {container.name} of pod {pod_name} failed: "
                         f"{reply.get('reason')} (exit code {reply.get('exitCode')})")
    return warnings + reply.get("warnings", [])


def _asdict(obj):
    return obj.to_json()


# --- talking to the monitor -------------------------------------------------------------------

def _request(pod_dir, request, timeout=30.0):
    if not pod_dir.monitor_alive():
        raise StateError(f"pod {pod_dir.name} is not running")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(pod_dir.file(state.CONTROL_SOCKET))
        jsonline.send(sock, request)
        data = jsonline.read_line(sock)
    except OSError as e:
        raise StateError(f"pod {pod_dir.name}: no answer from its monitor: {describe(e)}") from e
    finally:
        sock.close()
    if not data:
        raise StateError(f"pod {pod_dir.name}: its monitor closed the connection")
    reply = json.loads(data)
    if "error" in reply:
        raise NspodError(f"pod {pod_dir.name}: {reply['error']}")
    return reply


def _existing(config, name):
    pod_dir = PodDir(config.root, name)
    if not pod_dir.exists():
        raise PodNotFound(name)
    return pod_dir


def restart(config, pod_name, container_name):
    """Restart one container in place; the pod's other containers, IP and volumes stay."""
    require_root()
    pod_dir, doc, _ = load(config, pod_name)
    name = pick_container(doc, pod_name, container_name)["name"]
    _request(pod_dir, {"op": "restart", "container": name})
    return name


# Pod fields a running pod may change (Kubernetes lets little else change in place).
MUTABLE_POD_FIELDS = {"containers", "manifest", "labels", "annotations"}


def apply(config, pod):
    """Make a running pod match `pod`: restart exactly the containers whose spec changed.

    Returns [(container, [changed fields])]. Changes Kubernetes forbids on a live pod
    (volumes, other pod fields, adding or removing containers, init containers) are refused.
    """
    import dataclasses
    from nsPod import spec
    from nsPod.plan import PodPlan, container_plan
    require_root()
    pod_dir = _existing(config, pod.name)
    doc = pod_dir.read_pod()
    old, _ = spec.pod_from_dict(doc["manifest"], allow_no_containers=True)
    for f in dataclasses.fields(old):
        if f.name in MUTABLE_POD_FIELDS:
            continue
        if getattr(old, f.name) != getattr(pod, f.name):
            field_name = {"init_containers": "initContainers"}.get(f.name, _camel(f.name))
            raise InputError(f"spec.{field_name}: may not be changed on a running pod "
                             "(Kubernetes forbids it; delete and run the pod again)")
    old_names = [c.name for c in old.containers]
    new_names = [c.name for c in pod.containers]
    if old_names != new_names:
        raise InputError(f"spec.containers: may not add, remove or reorder containers of a "
                         f"running pod (it has {', '.join(old_names) or 'none'}; the file has "
                         f"{', '.join(new_names) or 'none'})")
    plan = PodPlan.from_json(doc["plan"])
    facts = host_facts(config, pod_dir, plan.uid, plan.network.get("ip", ""))
    changes, plans = [], []
    for before, after in zip(old.containers, pod.containers):
        fields = [_camel(f.name) for f in dataclasses.fields(after)
                  if getattr(before, f.name) != getattr(after, f.name)]
        if fields:
            changes.append((after.name, fields))
            plans.append(_asdict(container_plan(after, pod, plan.volumes, facts, plan.etc_files)))
    if plans or pod.manifest != doc["manifest"]:
        _request(pod_dir, {"op": "apply", "containers": plans, "manifest": pod.manifest})
    return changes


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


# --- stopping and removing ------------------------------------------------------------------

def stop(config, name, timeout=None):
    require_root()
    pod_dir = _existing(config, name)
    if pod_dir.monitor_alive():
        grace = timeout
        if grace is None:
            grace = pod_dir.read_pod()["plan"]["grace_seconds"]
        try:
            # A manifest's grace period may be any integer; a socket timeout must fit in
            # Python's int64 nanoseconds (~292 years).
            _request(pod_dir, {"op": "stop", "timeout": grace}, timeout=min(grace, 2**31) + 60)
        except StateError:
            if pod_dir.monitor_alive():
                raise
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
    """Remove pods; returns (removed names, errors). Unknown names are errors unless force."""
    require_root()
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
    from nsPod.mounts import detach, mounts_under
    for mount_point in mounts_under(pod_dir.path):
        detach(mount_point)
    pod_dir.remove()


def clean_up_after_monitor(pod_dir):
    """What a dead monitor did not undo: kill its processes, unmount its mounts.

    Returns a list of what was removed, for `gc`. Runs only holding monitor.lock, so never
    beside a live monitor.
    """
    from nsPod.undo import anything_left, detach_network, remove_cgroups, unmount_recorded
    lock_fd = pod_dir.lock_monitor()
    if lock_fd is None:
        return []
    try:
        pod_state = pod_dir.read_state()
        if pod_state is None or not anything_left(pod_state) and \
                pod_state["phase"] in state.TERMINAL_PHASES:
            return []
        removed = []
        victims = []
        for name, cstate in pod_state.get("containers", {}).items():
            ref = ProcessRef(cstate.get("pid"), cstate.get("pidStartTime"))
            if ref.pid and ref.kill(signal.SIGKILL):
                victims.append(ref)
                removed.append(f"process {ref.pid} (container {name})")
            cstate.pop("pid", None)
        pause = ProcessRef.from_json(pod_state.get("pause"))
        if pause and pause.kill(signal.SIGKILL):
            victims.append(pause)
            removed.append(f"process {pause.pid} (pause)")
        _wait_gone(victims)
        for path in pod_state.get("mounts", []):
            if path in _mount_set():
                removed.append(f"mount {path}")
        unmount_recorded(pod_state)
        if pod_state.get("cgroup"):
            removed.append(f"cgroup {pod_state['cgroup']}")
            remove_cgroups(pod_dir.root, pod_state)
        if pod_state.get("network"):
            removed.append(f"network {pod_state['network'].get('hostVeth', '')} "
                           f"{pod_state.get('podIP', '')}".rstrip())
            detach_network(pod_dir.root, pod_dir.name, pod_state)
        if pod_state["phase"] not in state.TERMINAL_PHASES:
            for cstate in pod_state.get("containers", {}).values():
                if "running" in cstate.get("state", {}):
                    cstate["state"] = {"terminated": {
                        "exitCode": 137, "signal": 9, "reason": "Error",
                        "message": "killed after its pod's monitor died",
                        "startedAt": cstate["state"]["running"].get("startedAt"),
                        "finishedAt": now_rfc3339()}}
                cstate["ready"] = False
            pod_state["phase"] = "Failed"
            pod_state["reason"] = "MonitorGone"
            pod_state["message"] = "the pod's monitor ended without tearing the pod down"
        pod_state["pause"] = None
        pod_dir.write_state(pod_state)
        return removed
    finally:
        os.close(lock_fd)


def _mount_set():
    from nsPod.mounts import mount_points
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
    require_root()
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
    from nsPod import images
    report += images.gc(config.root)
    return report


def _gc_network(config):
    """Leases, veths and netns names of pods that are gone; the bridge once unused."""
    from nsPod import netclient
    live = [p.name for p in state.list_pods(config.root) if p.monitor_alive()]
    removed = netclient.gc(config.root, config.bridge, config.subnet, keep=live)
    return [f"network: {item}" for item in removed]


# --- looking at pods ------------------------------------------------------------------------

def load(config, name):
    """(PodDir, pod.json, refreshed state) of an existing pod."""
    pod_dir = _existing(config, name)
    doc = pod_dir.read_pod()
    pod_state = status.refresh(pod_dir, pod_dir.read_state())
    return pod_dir, doc, pod_state


def inspect(config, name):
    pod_dir, doc, pod_state = load(config, name)
    return status.pod_object(pod_dir, doc, pod_state, host_ip=host_ip())


def list_pods(config, include_all=False):
    pods = []
    ip = host_ip()
    for pod_dir in state.list_pods(config.root):
        try:
            _, doc, pod_state = load(config, pod_dir.name)
        except (PodNotFound, StateError):
            continue
        if not include_all and pod_state["phase"] in state.TERMINAL_PHASES:
            continue
        pods.append(status.pod_object(pod_dir, doc, pod_state, host_ip=ip))
    return pods


def pick_container(doc, pod_name, name):
    """The named container, or the pod's default one as kubectl picks it: the first."""
    plan = doc["plan"]
    everything = plan["init_containers"] + plan["containers"]
    if name is None:
        if not plan["containers"]:
            raise StateError(f"pod {pod_name} has no containers")
        return plan["containers"][0]
    for c in everything:
        if c["name"] == name:
            return c
    names = ", ".join(c["name"] for c in everything) or "none"
    raise InputError(f"container {name!r} is not in pod {pod_name} (containers: {names})")


def namespace_table(config, name):
    """[(who, pid, {kind: 'net:[id]'})]: pause, then each container that is running."""
    from nsPod import namespaces
    pod_dir, doc, pod_state = load(config, name)
    rows = []
    pause = ProcessRef.from_json(pod_state.get("pause"))
    if pause and pause.alive():
        rows.append(("pause", pause.pid, namespaces.ns_ids(pause.pid)))
    for c in doc["plan"]["init_containers"] + doc["plan"]["containers"]:
        cstate = pod_state["containers"].get(c["name"], {})
        if "pid" in cstate:
            rows.append((c["name"], cstate["pid"], namespaces.ns_ids(cstate["pid"])))
    return rows


# --- exec -----------------------------------------------------------------------------------

def exec_in(config, pod_name, container_name, argv, interactive=False):
    """Run argv inside a running container; returns its exit code (126/127 if it cannot run)."""
    from nsPod import container, process, security
    from nsPod.cgroups import open_driver
    from nsPod.plan import container_from_json
    require_root()
    pod_dir, doc, pod_state = load(config, pod_name)
    cplan = container_from_json(pick_container(doc, pod_name, container_name))
    cstate = pod_state["containers"].get(cplan.name, {})
    if "pid" not in cstate:
        raise StateError(f"container {cplan.name} of pod {pod_name} is not running")
    target = ProcessRef(cstate["pid"], cstate["pidStartTime"])
    driver = open_driver(doc["plan"]["cgroup_parent"])
    rel = f"{pod_name}/{cplan.name}"
    security.become_subreaper()  # the process comes from a second fork: it is ours to reap
    try:
        # In the container's cgroup before it runs: its memory is the container's.
        pid = container.spawn_joined(target, cplan, argv, attach=lambda p: driver.attach(rel, p),
                                     stdin=interactive)
    except process.ChildFailed as e:
        raise ExecFailed(e.message, 127 if e.errno == errno.ENOENT else 126) from None
    return _wait_forwarding_signals(pid)


def debug(config, pod_name, target_name, argv, interactive=False):
    """An ephemeral debug container: the pod's net/ipc/uts, the target container's pid
    namespace (or the pod's, or its own), its own mount namespace on the host's root, in the
    pod's cgroup. Runs attached to this terminal; returns its exit code. Gone when it ends."""
    import shutil
    from nsPod import container, process, security, spec
    from nsPod.cgroups import Limits, open_driver
    from nsPod.plan import PodPlan, container_plan
    require_root()
    pod_dir, doc, pod_state = load(config, pod_name)
    pause = ProcessRef.from_json(pod_state.get("pause"))
    if pause is None or not pause.alive():
        raise StateError(f"pod {pod_name} is not running")
    pid_from = None
    if target_name is not None:
        target = pick_container(doc, pod_name, target_name)["name"]
        cstate = pod_state["containers"].get(target, {})
        if "pid" not in cstate:
            raise StateError(f"container {target} of pod {pod_name} is not running")
        pid_from = cstate["pid"]
    plan = PodPlan.from_json(doc["plan"])
    name = f"debugger-{uuid.uuid4().hex[:5]}"
    pod, _ = spec.pod_from_dict(doc["manifest"], allow_no_containers=True)
    debugger, _ = spec.container_from_dict({"name": name, "command": list(argv)},
                                           "debug", init=False, pod=pod)
    facts = host_facts(config, pod_dir, plan.uid, plan.network.get("ip", ""))
    cplan = container_plan(debugger, pod, plan.volumes, facts, plan.etc_files)
    cplan.mounts = [m for m in cplan.mounts if m.volume != "termination-log"]
    driver = open_driver(plan.cgroup_parent)
    rel = f"{pod_name}/{name}"
    container_dir = pod_dir.file("containers", name)
    os.makedirs(container_dir)
    driver.create(rel, Limits())
    security.become_subreaper()
    try:
        try:
            pid = container.spawn(
                plan, cplan, pause.pid, container_dir, 1, 2,
                set_pdeathsig=lambda: security.set_parent_death_signal(signal.SIGKILL),
                prepare=lambda p: driver.attach(rel, p), pid_from=pid_from,
                stdin_fd=0 if interactive else None)
        except process.ChildFailed as e:
            raise ExecFailed(e.message, 127 if e.errno == errno.ENOENT else 126) from None
        return _wait_forwarding_signals(pid)
    finally:
        driver.kill(rel)
        driver.remove(rel)
        shutil.rmtree(container_dir, ignore_errors=True)


class ExecFailed(NspodError):
    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


def _wait_forwarding_signals(pid):
    def forward(signo, frame):
        try:
            os.kill(pid, signo)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, forward)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


# --- logs -----------------------------------------------------------------------------------

def log_path(config, pod_name, container_name, previous=False):
    pod_dir, doc, pod_state = load(config, pod_name)
    cplan = pick_container(doc, pod_name, container_name)
    cstate = pod_state["containers"].get(cplan["name"], {})
    run_number = cstate.get("restartCount", 0) - (1 if previous else 0)
    if previous and not cstate.get("lastState"):
        raise StateError(f"previous terminated container {cplan['name']!r} in pod "
                         f"{pod_name!r} not found")
    return pod_dir, cplan["name"], os.path.join(pod_dir.file("logs", cplan["name"]),
                                                f"{run_number}.log")


def container_running(config, pod_name, container_name):
    try:
        _, _, pod_state = load(config, pod_name)
    except NspodError:
        return False
    return "pid" in pod_state["containers"].get(container_name, {})


# --- resource use ---------------------------------------------------------------------------

def _pod_cgroups(config, name):
    """(driver, [(who, rel)]) for a pod whose cgroups exist: the pod, then each container."""
    from nsPod.cgroups import open_driver
    pod_dir, doc, pod_state = load(config, name)
    if not pod_state.get("cgroup"):
        raise StateError(f"pod {name} is not running (its cgroups are gone)")
    driver = open_driver(doc["plan"]["cgroup_parent"])
    plan = doc["plan"]
    rows = [(c["name"], f"{name}/{c['name']}") for c in plan["init_containers"] + plan["containers"]
            if pod_state["containers"].get(c["name"], {}).get("cgroup")]
    return driver, [("(pod)", name)] + rows


def stats(config, name):
    """[(who, stats dict)]: memory use against limits, peak and OOM kills, per container."""
    driver, rows = _pod_cgroups(config, name)
    return [(who, driver.stats(rel)) for who, rel in rows]


def top(config, name):
    """[(container, pid, user, command)] for every process in each container's cgroup."""
    import pwd
    driver, rows = _pod_cgroups(config, name)
    processes = []
    for who, rel in rows[1:]:
        for pid in driver.procs(rel):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                uid = os.stat(f"/proc/{pid}").st_uid
            except OSError:
                continue
            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:
                user = str(uid)
            processes.append((who, pid, user, cmd))
    return processes

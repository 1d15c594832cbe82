"""The library API's queries: load, inspect, list, ns, log paths, stats, top; and the host
facts and root check the other api modules share. Raises NspodError subclasses, prints nothing.
"""
import os
import socket

from nsPod.kernel import paths
from nsPod.store import listing, podstate, state, status
from nsPod.errors import InputError, NspodError, PodNotFound, StateError
from nsPod.plan.make import Facts
from nsPod.store.state import PodDir


def require_root():
    if os.geteuid() != 0:
        raise NspodError("nspod must run as root (it creates namespaces, mounts and cgroups)")


def _enter(config, pods=(), containers=(), create=False):
    """The entry of every call that takes names: root, then each name checked (InputError,
    exit 2) and the state root checked (paths.open_root), before any path is formed."""
    require_root()
    for name in pods:
        paths.check_pod_name(name)
    for name in containers:
        if name is not None:
            paths.check_container_name(name)
    paths.check_root(config.root, create=create)


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
    """What each stored image gives its containers; no store, no import of store/images.py
    (it costs ~18 ms, for the tarball and OCI machinery no pod start needs)."""
    if not os.path.isdir(os.path.join(root, "images")):
        return {}
    from nsPod.store import images
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


def _existing(config, name):
    pod_dir = PodDir(config.root, name)
    if not pod_dir.exists():
        raise PodNotFound(name)
    return pod_dir


def load(config, name):
    """(PodDir, pod.json, refreshed PodState) of an existing pod."""
    paths.check_pod_name(name)
    paths.check_root(config.root)
    pod_dir = _existing(config, name)
    doc = pod_dir.read_pod()
    pod_state = status.refresh(pod_dir, podstate.read(pod_dir))
    return pod_dir, doc, pod_state


def inspect(config, name):
    _enter(config, [name])
    pod_dir, doc, pod_state = load(config, name)
    return status.pod_object(pod_dir, doc, pod_state, host_ip=host_ip())


def list_pods(config, include_all=False, rows_only=False):
    """Every pod as `inspect` shows it; rows_only: only the fields `ps`'s table shows
    (status.pod_row), which at a thousand pods is a third of the time."""
    paths.check_root(config.root)
    pods = []
    ip = host_ip()
    for pod_dir, doc, data, alive in listing.scan_pods(config.root):
        row = status.pod_row(doc, data, alive) if rows_only else None
        if row is not None:
            if include_all or row["status"]["phase"] not in state.TERMINAL_PHASES:
                pods.append(row)
            continue
        try:
            pod_state = podstate.PodState.from_json(data) if data is not None else None
            pod_state = status.refresh(pod_dir, pod_state, monitor_alive=alive)
        except StateError:
            continue
        if not include_all and pod_state.phase in state.TERMINAL_PHASES:
            continue
        pods.append(status.pod_object(pod_dir, doc, pod_state, host_ip=ip))
    return pods


def manifest_yaml(config, name):
    """`nspod generate`: the pod's manifest as YAML that `kubectl apply` accepts."""
    from nsPod.manifest import spec
    _, doc, _ = load(config, name)
    return spec.dump_yaml(spec.clean_manifest(doc["manifest"]))


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
    from nsPod.kernel import namespaces
    _enter(config, [name])
    pod_dir, doc, pod_state = load(config, name)
    rows = []
    pause = pod_state.pause.ref() if pod_state.pause else None
    if pause and pause.alive():
        rows.append(("pause", pause.pid, namespaces.ns_ids(pause.pid)))
    for c in doc["plan"]["init_containers"] + doc["plan"]["containers"]:
        cstate = pod_state.container(c["name"])
        if cstate.has("pid"):
            rows.append((c["name"], cstate.pid, namespaces.ns_ids(cstate.pid)))
    return rows


def log_path(config, pod_name, container_name, previous=False):
    _enter(config, [pod_name], [container_name])
    pod_dir, doc, pod_state = load(config, pod_name)
    cplan = pick_container(doc, pod_name, container_name)
    cstate = pod_state.container(cplan["name"])
    run_number = cstate.get("restartCount", 0) - (1 if previous else 0)
    if previous and not cstate.get("lastState"):
        raise StateError(f"previous terminated container {cplan['name']!r} in pod "
                         f"{pod_name!r} not found")
    return pod_dir, cplan["name"], os.path.join(pod_dir.file("logs", cplan["name"]),
                                                f"{run_number}.log")


def log_text(config, pod_name, container_name, previous, tail, timestamps):
    """`nspod logs`: (container name, log path, the text so far: the last `tail` lines if
    tail >= 0, with their RFC 3339 stamps if asked)."""
    from nsPod.store import logs as logfiles
    if tail < -1:
        raise InputError(f"--tail: {tail} is negative")
    _, name, path = log_path(config, pod_name, container_name, previous)
    records = logfiles.read_records(path)
    if tail >= 0:
        records = records[len(records) - tail:] if tail else []
    text = "".join(f"{stamp} {line}\n" if timestamps else f"{line}\n"
                   for stamp, _, line in records)
    return name, path, text


def container_running(config, pod_name, container_name):
    try:
        _, _, pod_state = load(config, pod_name)
    except NspodError:
        return False
    return pod_state.container(container_name).has("pid")


def wait_started(config, name):
    """`run --wait`: return once every container runs or the pod succeeded; NspodError
    with the reason if it failed (polled every 50 ms)."""
    import time
    from nsPod.api import render
    while True:
        obj = inspect(config, name)
        st = obj["status"]
        if st["phase"] == "Failed":
            reason = st.get("message") or render.failed_containers(st)
            raise NspodError(f"pod {name} failed: {reason}")
        if st["phase"] == "Succeeded":
            return
        if all("running" in c.get("state", {}) for c in st["containerStatuses"]):
            return
        time.sleep(0.05)


def follow_log(config, pod_name, container_name, path, timestamps):
    """`logs -f`: the text a container writes from now on, one piece per read of the log,
    until the container has stopped and its log has nothing more (polled every 0.1 s)."""
    import time
    from nsPod.store import logs as logfiles
    offset = os.path.getsize(path) if os.path.exists(path) else 0
    buffered = ""
    while True:
        running = container_running(config, pod_name, container_name)
        try:
            with open(path, errors="replace") as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
        except FileNotFoundError:
            chunk = ""
        buffered += chunk
        *lines, buffered = buffered.split("\n")
        out = []
        for line in lines:
            rec = logfiles.parse_line(line)
            if rec:
                end = "" if rec[2] == "P" else "\n"
                out.append(f"{rec[0]} {rec[3]}{end}" if timestamps else f"{rec[3]}{end}")
        yield "".join(out)
        if not running and not chunk:
            return
        time.sleep(0.1)


def _pod_cgroups(config, name):
    """(driver, [(who, rel)]) for a pod whose cgroups exist: the pod, then each container.

    The paths are the ones the monitor recorded (pod<uid>/ctr-<name>), never formed from
    names: what is read is what nspod made.
    """
    from nsPod.kernel.cgroups import open_driver, rel_in_parent
    _enter(config, [name])
    pod_dir, doc, pod_state = load(config, name)
    if not pod_state.cgroup:
        raise StateError(f"pod {name} is not running (its cgroups are gone)")
    parent = doc["plan"]["cgroup_parent"]
    driver = open_driver(parent)
    plan = doc["plan"]
    rows = []
    for c in plan["init_containers"] + plan["containers"]:
        recorded = pod_state.container(c["name"]).cgroup
        if recorded:
            rows.append((c["name"], rel_in_parent(recorded, parent)))
    return driver, [("(pod)", rel_in_parent(pod_state.cgroup, parent))] + rows


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

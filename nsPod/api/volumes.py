"""`nspod volume ls/rm`: the named local volumes persistentVolumeClaims map to, under
<root>/volumes/<claimName> (as `podman kube play` maps claims to named volumes). They
outlive their pods; `rm` of a pod never removes one, `volume rm` refuses one a pod uses."""
import os
import stat

from nsPod.api.query import require_root
from nsPod.errors import InputError, PodNotFound, StateError
from nsPod.kernel import paths
from nsPod.manifest.dns import dns_subdomain_problem
from nsPod.plan.make import CLAIMS_DIR
from nsPod.store import state


def _claims_dir(config):
    return os.path.join(config.root, CLAIMS_DIR)


def users(config):
    """claim name -> [pods whose plan mounts it], over every pod under the root (a pod that
    has ended still holds its claim until it is removed, as Podman's containers do)."""
    out = {}
    prefix = _claims_dir(config) + "/"
    for pod_dir in state.list_pods(config.root):
        try:
            plan = pod_dir.read_pod()["plan"]
        except (PodNotFound, StateError, KeyError, TypeError):
            continue
        for v in plan.get("volumes", []):
            if v.get("kind") == "claim" and v.get("path", "").startswith(prefix):
                out.setdefault(v["path"][len(prefix):], []).append(pod_dir.name)
    return out


def list_volumes(config):
    """[{name, size, pods}] of every claim volume."""
    require_root()
    if not paths.check_root(config.root):
        return []
    base = _claims_dir(config)
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    used = users(config)
    return [{"name": n, "size": _size(os.path.join(base, n)), "pods": sorted(used.get(n, []))}
            for n in names if not dns_subdomain_problem(n)]


def remove_volume(config, name):
    require_root()
    problem = dns_subdomain_problem(name)
    if problem:
        raise InputError(f"NAME: {name!r}: {problem}")
    paths.check_root(config.root)
    path = os.path.join(_claims_dir(config), name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise InputError(f"NAME: no volume {name!r}") from None
    using = users(config).get(name)
    if using:
        raise InputError(f"NAME: volume {name!r} is used by pod(s) {', '.join(sorted(using))}; "
                         "remove them first")
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"NAME: {path} is not a directory")
    # A container filled it: any depth, symlinks never followed (state.remove_tree).
    state.remove_tree(path)


def _size(path):
    """Bytes used under path, without following symlinks or crossing a mount; iterative, as
    a container may nest directories thousands deep."""
    total = 0
    try:
        dev = os.lstat(path).st_dev
    except OSError:
        return 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != dev:
                continue
            total += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
    return total


def refresh_files(config, pod):
    """A running pod's configMap/secret/downwardAPI/projected volumes brought to what
    `pod.sources` now holds (`nspod apply` of a changed ConfigMap or Secret), each by the
    kubelet's `..data` swap, so a container reading them sees the old set or the new one.
    Returns the names of the volumes changed. Containers are not restarted, and env taken
    from a ConfigMap keeps its old value, as in Kubernetes."""
    from nsPod.api.query import host_facts, load
    from nsPod.kernel.volumes import FILE_KINDS, write_layout
    from nsPod.plan.make import volume_plan
    from nsPod.store.state import TERMINAL_PHASES
    pod_dir, doc, pod_state = load(config, pod.name)
    if pod_state.get("phase") in TERMINAL_PHASES:
        return []
    plan = doc["plan"]
    facts = host_facts(config, pod_dir, plan["uid"], plan.get("network", {}).get("ip", ""))
    specs = {v.name: v for v in pod.volumes}
    changed = []
    for v in plan["volumes"]:
        spec = specs.get(v["name"])
        if v.get("kind") not in FILE_KINDS or spec is None:
            continue
        files = volume_plan(spec, facts, pod).files
        if files == v.get("files"):
            continue
        if v["kind"] == "secret" and not _is_mount(v["path"]):
            continue   # its tmpfs is gone with the pod's sandbox: never write a Secret to disk
        write_layout(v["path"], files, group=v.get("group"))
        v["files"] = files
        changed.append(v["name"])
    if changed:
        # The plan remembers the new files for a new sandbox (pod.json stays 0600).
        pod_dir.write_pod(doc)
    return changed


def _is_mount(path):
    try:
        return os.lstat(path).st_dev != os.lstat(os.path.dirname(path)).st_dev
    except OSError:
        return False

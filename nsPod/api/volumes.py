"""`nspod volume ls/rm`: the named local volumes persistentVolumeClaims map to, under
<root>/volumes/<claimName> for the default namespace and <root>/volumes/_ns/<namespace>/
<claimName> for others (plan/make.py's claim_rel; as `podman kube play` maps claims to named
volumes). A volume's name is `claimName`, or `namespace/claimName` outside the default
namespace. They outlive their pods; `rm` of a pod never removes one, `volume rm` refuses one
a pod uses."""
import os
import stat

from nsPod.api.query import require_root
from nsPod.errors import InputError, PodNotFound, StateError
from nsPod.kernel import paths
from nsPod.manifest.dns import dns_label_problem, dns_subdomain_problem
from nsPod.plan.make import CLAIMS_DIR, NAMESPACED_CLAIMS, claim_rel
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
                out.setdefault(_display(v["path"][len(prefix):]), []).append(pod_dir.name)
    return out


def _display(rel):
    """volumes/<rel> -> the volume's name: claim, or namespace/claim."""
    return rel[len(NAMESPACED_CLAIMS) + 1:] if rel.startswith(NAMESPACED_CLAIMS + "/") else rel


def _names(base):
    """The volume names under base: claims of the default namespace, then the others'."""
    names = [n for n in _listdir(base) if not dns_subdomain_problem(n)]
    spaces = os.path.join(base, NAMESPACED_CLAIMS)
    if os.path.isdir(spaces) and not os.path.islink(spaces):
        for ns in _listdir(spaces):
            if dns_label_problem(ns) or os.path.islink(os.path.join(spaces, ns)):
                continue
            names += [f"{ns}/{n}" for n in _listdir(os.path.join(spaces, ns))
                      if not dns_subdomain_problem(n)]
    return sorted(names)


def _listdir(path):
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _parse(name):
    """NAME (claim, or namespace/claim) -> its directory relative to the claims' dir."""
    namespace, slash, claim = name.rpartition("/")
    if slash:
        problem = dns_label_problem(namespace)
        if problem:
            raise InputError(f"NAME: {name!r}: namespace {namespace!r} {problem}")
    problem = dns_subdomain_problem(claim)
    if problem:
        raise InputError(f"NAME: {name!r}: {problem}")
    return claim_rel(namespace, claim)


def list_volumes(config):
    """[{name, size, pods}] of every claim volume."""
    require_root()
    if not paths.check_root(config.root):
        return []
    base = _claims_dir(config)
    used = users(config)
    return [{"name": n, "size": _size(os.path.join(base, _parse(n))),
             "pods": sorted(used.get(n, []))} for n in _names(base)]


def remove_volume(config, name):
    require_root()
    rel = _parse(name)
    name = _display(rel)          # default/x is x
    paths.check_root(config.root)
    path = os.path.join(_claims_dir(config), rel)
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
    if "/" in rel:
        try:
            os.rmdir(os.path.dirname(path))     # its namespace's directory, once empty
        except OSError:
            pass


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

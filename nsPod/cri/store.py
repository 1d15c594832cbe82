"""What the CRI server knows beyond nspod's own pod state: `cri.json` in a pod's directory
(the sandbox's CRI metadata, labels and log directory; each container's CRI record, made by
CreateContainer before the container exists for the monitor). It goes with the pod (`nspod
rm` removes the directory). A pod without it was made by `nspod run`/`create`: CRI lists it
too, labelled, with metadata from its manifest.

Ids are sha256 of the pod's uid (sandbox) or of uid/container (container): stable, 64 hex,
and never formed from a client's text.
"""
import os
import threading

from nsPod.errors import PodNotFound, StateError
from nsPod.kernel import paths
from nsPod.store import podstate, state, status
from nsPod.cri import checks
from nsPod.cri.protocol import NotFound

CRI_FILE = "cri.json"
MADE_BY_LABEL = "nspod.io/made-by"
# Mutations (run, create, start, stop, remove, the cri.json they write) take this lock; reads
# and ExecSync do not.
mutation_lock = threading.RLock()


class Pod:
    """One nspod pod as CRI sees it: its directory, pod.json, refreshed state, cri.json."""

    def __init__(self, pod_dir, doc, pod_state, record):
        self.dir = pod_dir
        self.doc = doc
        self.state = pod_state
        self.record = record            # {} for a pod nspod run made
        self.plan = doc["plan"]
        self.id = checks.id_of(self.plan["uid"])

    @property
    def name(self):
        return self.dir.name

    @property
    def cri_made(self):
        return bool(self.record.get("sandbox"))

    def ready(self):
        return self.dir.monitor_alive() and not self.record.get("sandbox", {}).get("stopped")

    def containers(self):
        """[(id, nspod name, CRI record or {}, ContainerStatus or None)]: created ones too."""
        out = []
        records = self.record.get("containers", {})
        names = [c["name"] for c in self.plan["init_containers"] + self.plan["containers"]]
        names += [n for n in records if n not in names]
        for n in names:
            out.append((checks.id_of(self.plan["uid"], n), n, records.get(n, {}),
                        self.state.get("containers", {}).get(n)))
        return out

    def save_record(self):
        with paths.fd_of(self.dir.open()) as fd:
            paths.write_json(CRI_FILE, self.record, dir_fd=fd)


def load_pod(root, name):
    pod_dir = state.PodDir(root, name)
    doc = pod_dir.read_pod()
    pod_state = status.refresh(pod_dir, podstate.read(pod_dir))
    try:
        with paths.fd_of(pod_dir.open()) as fd:
            record = state.read_json(CRI_FILE, dir_fd=fd)
    except FileNotFoundError:
        record = {}
    except (ValueError, OSError) as e:
        raise StateError(f"pod {name}: cannot read {CRI_FILE}: {e}") from e
    if not isinstance(record, dict):
        raise StateError(f"pod {name}: {CRI_FILE} is not an object")
    return Pod(pod_dir, doc, pod_state, record)


def all_pods(root):
    """Every readable pod of the root (one being made or removed meanwhile is skipped)."""
    if not os.path.isdir(os.path.join(root, "pods")):
        return []
    pods = []
    for pod_dir in state.list_pods(root):
        try:
            pods.append(load_pod(root, pod_dir.name))
        except (PodNotFound, StateError, KeyError, TypeError):
            continue
    return pods


def find_pod(root, sandbox_id, field="pod_sandbox_id"):
    """The pod whose id is, or starts with, sandbox_id (unique), or NotFound."""
    checks.object_id(sandbox_id, field)
    found = [p for p in all_pods(root) if p.id.startswith(sandbox_id)]
    if len(found) != 1:
        raise NotFound(f"{field}: no pod sandbox {sandbox_id!r}" if not found else
                       f"{field}: {sandbox_id!r} names {len(found)} pod sandboxes")
    return found[0]


def find_container(root, container_id, field="container_id"):
    """(pod, (id, name, record, status)) of the container id (or unique prefix)."""
    checks.object_id(container_id, field)
    found = [(p, c) for p in all_pods(root) for c in p.containers()
             if c[0].startswith(container_id)]
    if len(found) != 1:
        raise NotFound(f"{field}: no container {container_id!r}" if not found else
                       f"{field}: {container_id!r} names {len(found)} containers")
    return found[0]


def unlink_log(record):
    """The kubelet's log link of a container record, if it is still our symlink."""
    path = record.get("log_path")
    if path and os.path.islink(path):
        try:
            os.unlink(path)
        except OSError:
            pass

"""The plan's records: what the monitor and the container children execute, as plain data
(plan/records.py makes them JSON round-trip into pod.json and back)."""
from nsPod.plan.records import Factory, record

# The pause process's own leaf cgroup under the pod's (cgroup v2 allows processes only in
# leaves). Not a DNS-1123 label, so no container can be called that.
PAUSE_CGROUP = "_pause"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHM_SIZE = 64 * 1024 * 1024  # Docker's and the kubelet's default /dev/shm size


@record
class VolumePlan:
    name: str
    # "dir" (emptyDir on disk), "tmpfs" (emptyDir Memory), "host", "files" (configMap,
    # downwardAPI, projected: on disk), "secret" (any with a Secret: a tmpfs), "claim"
    kind: str
    path: str             # where it lives on the host
    size: int | None = None
    host_type: str = ""   # hostPath.type
    files: list = Factory(list)   # "files", "secret": [[path, base64 content, mode]]
    read_only: bool = False       # a claim's readOnly
    # "files", "secret": the pod's fsGroup, which the files are group-owned by (the kubelet's
    # SetVolumeOwnership, read-only: group r on files, r-x and setgid on directories).
    group: int | None = None


@record
class MountPlan:
    volume: str
    source: str           # host path of the volume
    target: str           # absolute path inside the container
    sub_path: str = ""
    read_only: bool = False


@record
class ContainerPlan:
    name: str
    argv: list
    env: list             # [[name, value], ...] in order
    cwd: str
    mounts: list          # [MountPlan]
    init: bool = False
    image: str = ""
    env_error: str = ""   # a subPathExpr/env problem only detectable now: the start fails with it
    limits: dict = Factory(dict)   # cgroups.Limits fields
    # restartPolicy (sidecars), probes, hooks, terminationMessage*: see lifecycle_plan()
    lifecycle: dict = Factory(dict)
    rootfs: str = ""      # the overlay's lower layer: an image's root filesystem; "" is the host's /
    # who the process is and what it may do: see security_plan()
    security: dict = Factory(dict)
    # stdin: true: the process's stdin is a pipe whose write end the monitor keeps for
    # `nspod attach -i` (monitor/attach.py); stdin_once: closed when the first -i detaches;
    # tty: a pty is its stdin, stdout and stderr, the monitor keeps its master
    stdin_open: bool = False
    stdin_once: bool = False
    tty: bool = False

    def env_dict(self):
        return dict(self.env)


@record
class PodPlan:
    name: str
    namespace: str
    uid: str
    hostname: str
    # kind -> "pod" (pause's, new), "host", or "container" (each container its own: pid)
    namespaces: dict
    volumes: list
    containers: list
    init_containers: list = Factory(list)
    restart_policy: str = "Never"
    grace_seconds: int = 30
    shm_path: str = ""
    state_root: str = ""
    cgroup_parent: str = "nspod"
    pod_limits: dict = Factory(dict)   # cgroups.Limits fields
    qos_class: str = "BestEffort"
    memory_need: int = 0       # bytes admission must find free (0: no limit, nothing reserved)
    memory_asks: list = Factory(list)  # [[container, bytes]] behind memory_need
    # {"mode": "bridge"|"none"|"host", "bridge", "subnet", "ip"}
    network: dict = Factory(lambda: {"mode": "none"})
    etc_files: dict = Factory(dict)    # name -> content: hosts, hostname, resolv.conf
    sysctls: list = Factory(list)      # [[name, value]]: set in pause's namespaces
    host_ports: list = Factory(list)   # [[hostPort, containerPort, container]]
    active_deadline_seconds: int | None = None

    @classmethod
    def from_json(cls, data):
        data = dict(data)
        data["volumes"] = [VolumePlan(**v) for v in data["volumes"]]
        data["containers"] = [container_from_json(c) for c in data["containers"]]
        data["init_containers"] = [container_from_json(c) for c in data["init_containers"]]
        return cls(**data)

    def container(self, name):
        for c in self.init_containers + self.containers:
            if c.name == name:
                return c
        return None


def container_from_json(data):
    data = dict(data)
    data["mounts"] = [MountPlan(**m) for m in data["mounts"]]
    return ContainerPlan(**data)


@record
class Facts:
    """What plan needs to know about the host and this pod's run; gathered by api/query.py."""
    uid: str
    pod_dir: str
    state_root: str
    node_name: str = "localhost"
    host_ip: str = "127.0.0.1"
    pod_ip: str = ""
    node_memory: int = 0          # bytes: the 'allocatable' of resourceFieldRef without limits
    node_cpus: int = 1
    node_ephemeral_storage: int = 0
    cgroup_parent: str = "nspod"
    bridge: str = "nspod0"
    subnet: str = ""
    host_hosts: str = ""          # the host's /etc/hosts, for hostNetwork pods
    host_resolv_conf: str = ""    # the host's /etc/resolv.conf
    host_name: str = "localhost"
    images: dict = Factory(dict)   # "name:tag" -> the image store's config of it


# Where the pod's etc files are bound in each container (unless it mounts its own there).
ETC_FILES = {"hosts": "/etc/hosts", "hostname": "/etc/hostname", "resolv.conf": "/etc/resolv.conf"}

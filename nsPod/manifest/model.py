"""A validated Pod as frozen dataclasses: what plan/, store/ and the monitor read."""
from dataclasses import dataclass, field

from nsPod.manifest.sources import Sources


DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None            # plain value (None when valueFrom is used)
    field_path: str | None = None       # valueFrom.fieldRef.fieldPath
    resource: str | None = None         # valueFrom.resourceFieldRef.resource
    resource_container: str | None = None   # resourceFieldRef.containerName (None: this container)
    divisor: str = "1"                  # resourceFieldRef.divisor as given (a valid quantity)
    source_kind: str = ""               # "configMap" | "secret": valueFrom.<kind>KeyRef
    source_name: str = ""
    key: str = ""
    optional: bool = False


@dataclass(frozen=True)
class EnvFrom:
    kind: str                           # "configMap" | "secret"
    name: str
    prefix: str = ""
    optional: bool = False


@dataclass(frozen=True)
class KeyToPath:
    """One file of a configMap/secret/downwardAPI volume. For downwardAPI, key is the fieldRef
    path, or "" with resource set (resourceFieldRef)."""
    path: str
    key: str = ""
    mode: int | None = None
    resource: str = ""
    resource_container: str = ""
    divisor: str = "1"


@dataclass(frozen=True)
class Projection:
    kind: str                           # "configMap" | "secret" | "downwardAPI"
    name: str = ""                      # the ConfigMap's or Secret's
    items: tuple = ()                   # tuple[KeyToPath]; () = every key
    optional: bool = False


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str = ""
    sub_path_expr: str = ""


@dataclass(frozen=True)
class Resources:
    limits: dict     # {"memory": int bytes, "cpu": int millicores}; only the keys given
    requests: dict


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    host_port: int = 0                  # 0: none; with hostNetwork it defaults to container_port
    protocol: str = "TCP"               # TCP, UDP or SCTP
    name: str = ""


@dataclass(frozen=True)
class Handler:
    """One action of a probe or a lifecycle hook."""
    kind: str                           # "exec" | "httpGet" | "tcpSocket" | "sleep"
    command: tuple = ()                 # exec
    port: int | str = 0                 # httpGet, tcpSocket: a number or a container port's name
    host: str = ""                      # httpGet, tcpSocket ("": the pod's IP)
    path: str = ""                      # httpGet
    scheme: str = "HTTP"                # httpGet: HTTP or HTTPS
    headers: tuple = ()                 # httpGet: ((name, value), ...)
    seconds: int = 0                    # sleep


@dataclass(frozen=True)
class Probe:
    handler: Handler
    initial_delay_seconds: int = 0
    timeout_seconds: int = 1
    period_seconds: int = 10
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_period_seconds: int | None = None


@dataclass(frozen=True)
class SecurityContext:
    """Pod- or container-level; None and () are "not set": the other level or the default rules."""
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    supplemental_groups: tuple = ()      # pod level
    fs_group: int | None = None          # pod level
    privileged: bool | None = None       # container level
    allow_privilege_escalation: bool | None = None
    read_only_root_filesystem: bool | None = None
    capabilities_add: tuple = ()         # names without CAP_, upper case; "ALL" allowed
    capabilities_drop: tuple = ()
    seccomp_profile: str = ""            # "", RuntimeDefault, Unconfined, Localhost
    seccomp_localhost_profile: str = ""
    sysctls: tuple = ()                  # pod level: ((name with dots, value), ...)


@dataclass(frozen=True)
class Container:
    name: str
    image: str = ""
    command: tuple = ()
    args: tuple = ()
    env: tuple = ()                      # tuple[EnvVar]
    working_dir: str = ""
    volume_mounts: tuple = ()            # tuple[VolumeMount]
    env_from: tuple = ()                 # tuple[EnvFrom]
    resources: Resources = field(default_factory=lambda: Resources({}, {}))
    restart_policy: str = ""             # init containers only ("Always" = native sidecar)
    init: bool = False
    ports: tuple = ()                    # tuple[ContainerPort]
    security_context: SecurityContext = field(default_factory=SecurityContext)
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    post_start: Handler | None = None
    pre_stop: Handler | None = None
    termination_message_path: str = DEFAULT_TERMINATION_MESSAGE_PATH
    termination_message_policy: str = "File"   # or FallbackToLogsOnError
    stdin: bool = False                  # stdin: true, a pipe nspod attach -i writes into
    stdin_once: bool = False             # stdin closed when the first attach -i detaches
    tty: bool = False                    # a pty: stdin, stdout and stderr, controlling tty


@dataclass(frozen=True)
class Volume:
    name: str
    # "emptyDir" | "hostPath" | "configMap" | "secret" | "downwardAPI" | "projected" |
    # "persistentVolumeClaim"
    kind: str
    medium: str = ""                     # emptyDir: "" or "Memory"
    size_limit: int | None = None        # bytes
    host_path: str = ""
    # "", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice
    host_path_type: str = ""
    projections: tuple = ()              # tuple[Projection]: configMap/secret/downwardAPI/projected
    default_mode: int = 0o644
    claim_name: str = ""                 # persistentVolumeClaim
    read_only: bool = False              # persistentVolumeClaim.readOnly


@dataclass(frozen=True)
class HostAlias:
    ip: str
    hostnames: tuple


@dataclass(frozen=True)
class DNSConfig:
    nameservers: tuple = ()
    searches: tuple = ()
    options: tuple = ()                  # ((name, value or None), ...)


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str = "default"
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    hostname: str = ""                   # as given; see effective_hostname
    subdomain: str = ""
    set_hostname_as_fqdn: bool = False
    share_process_namespace: bool = False
    host_network: bool = False
    host_ipc: bool = False
    host_pid: bool = False
    restart_policy: str = "Always"       # Kubernetes' default
    termination_grace_period_seconds: int = 30
    volumes: tuple = ()
    init_containers: tuple = ()
    containers: tuple = ()
    manifest: dict = field(default_factory=dict)   # the document as given (but --name)
    network: str = "bridge"              # "bridge" or "none", from the annotation nspod.io/network
    active_deadline_seconds: int | None = None
    resources: Resources = field(default_factory=lambda: Resources({}, {}))  # pod-level
    host_aliases: tuple = ()             # tuple[HostAlias]
    dns_policy: str = "ClusterFirst"
    dns_config: DNSConfig | None = None
    security_context: SecurityContext = field(default_factory=SecurityContext)
    # The ConfigMaps/Secrets/claims given beside the pod (manifest/sources.py)
    sources: Sources = field(default_factory=Sources, compare=False)

    def container(self, name):
        """The init or app container called `name`, or None."""
        return next((c for c in self.init_containers + self.containers if c.name == name), None)


NETWORK_ANNOTATION = "nspod.io/network"

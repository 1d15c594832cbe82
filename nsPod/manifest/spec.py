"""Kubernetes v1 Pod manifests -> frozen dataclasses, validated, every problem with its field path.

The only importer of yaml, and lazily (load_pods): plan, state and the monitor import these
dataclasses and must not pay for a YAML parser. Pure: no syscalls, no files; it reads only the
text or dicts it is handed and prints nothing.

Fields sort into five kinds: handled (validated here), gated (in the contract, refused with
"not supported yet" until FEATURES says so), cluster-only (accepted with one warning), known to
Kubernetes but unsupported (refused), and unknown (refused, with a suggestion when one is close).
"""
import posixpath
import re
from dataclasses import dataclass, field

from nsPod.manifest import quantity, sysctl_policy
from nsPod.errors import InputError, SpecError

# The contract's fields (interface.md, "The manifest") as they are delivered. A False entry is
# refused with "<path>: not supported yet" whenever its value is not empty (null, "", [] or {}:
# `resources: {}` as kubectl writes it asks for nothing). Keys are "<object>.<field>"; the
# sub-keys of securityContext and the handler kinds of probes and lifecycle hooks are checked
# on top of their parent, so an issue flips the parent and the parts it brings. Contents of
# gated fields are validated all the same: flipping an entry is all it takes to deliver one.
FEATURES = {
    "spec.hostname": True,
    "spec.subdomain": True,
    "spec.setHostnameAsFQDN": True,
    "spec.shareProcessNamespace": True,
    "spec.hostNetwork": True,
    "spec.hostIPC": True,
    "spec.hostPID": True,
    "spec.restartPolicy": True,
    "spec.restartPolicy=Never": True,
    "spec.restartPolicy=OnFailure": True,
    "spec.restartPolicy=Always": True,
    "spec.terminationGracePeriodSeconds": True,
    "spec.activeDeadlineSeconds": True,
    "spec.volumes": True,
    "spec.initContainers": True,
    "spec.containers": True,
    "spec.resources": True,
    "spec.hostAliases": True,
    "spec.dnsPolicy": True,
    "spec.dnsConfig": True,
    "spec.securityContext": True,
    "volume.emptyDir": True,
    "volume.hostPath": True,
    "container.image": True,
    "container.command": True,
    "container.args": True,
    "container.env": True,
    "container.workingDir": True,
    "container.volumeMounts": True,
    "container.resources": True,
    "container.securityContext": True,
    "container.ports": True,
    "container.livenessProbe": True,
    "container.readinessProbe": True,
    "container.startupProbe": True,
    "container.lifecycle": True,
    "container.terminationMessagePath": True,
    "container.terminationMessagePolicy": True,
    "container.restartPolicy": True,
    "env.fieldRef": True,
    "env.resourceFieldRef": True,
    "volumeMount.readOnly": True,
    "volumeMount.subPath": True,
    "volumeMount.subPathExpr": True,
    "securityContext.runAsUser": True,
    "securityContext.runAsGroup": True,
    "securityContext.runAsNonRoot": True,
    "securityContext.supplementalGroups": True,
    "securityContext.fsGroup": True,
    "securityContext.privileged": True,
    "securityContext.allowPrivilegeEscalation": True,
    "securityContext.readOnlyRootFilesystem": True,
    "securityContext.capabilities": True,
    "securityContext.seccompProfile": True,
    "securityContext.sysctls": True,
    "handler.exec": True,
    "handler.httpGet": True,
    "handler.tcpSocket": True,
    "handler.sleep": True,
}

_NOT_YET_MESSAGES = {}

CLUSTER_DOMAIN = "cluster.local"
HOSTNAME_MAX = 63
FQDN_MAX = 64  # the kubelet's limit for setHostnameAsFQDN: Linux's HOST_NAME_MAX
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None            # plain value (None when valueFrom is used)
    field_path: str | None = None       # valueFrom.fieldRef.fieldPath
    resource: str | None = None         # valueFrom.resourceFieldRef.resource
    resource_container: str | None = None   # resourceFieldRef.containerName (None: this container)
    divisor: str = "1"                  # resourceFieldRef.divisor as given (a valid quantity)


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


@dataclass(frozen=True)
class Volume:
    name: str
    kind: str                            # "emptyDir" | "hostPath"
    medium: str = ""                     # emptyDir: "" or "Memory"
    size_limit: int | None = None        # bytes
    host_path: str = ""
    # "", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice
    host_path_type: str = ""


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

    def container(self, name):
        """The init or app container called `name`, or None."""
        return next((c for c in self.init_containers + self.containers if c.name == name), None)


NETWORK_ANNOTATION = "nspod.io/network"

# Schemas: field -> None when handled, or (level, message) for what is not. A field absent
# from its schema is unknown.
_IGNORED_HERE = ("warn", "ignored on a single host")
_SERVER_SET = ("warn", "ignored (set by the API server)")
_UNSUPPORTED = ("error", "not supported")
_VOLUME_TYPE = ("error", "volume type not supported (supported: emptyDir, hostPath)")

_DOCUMENT = {"apiVersion": None, "kind": None, "metadata": None, "spec": None,
             "status": ("warn", "ignored")}
_METADATA = {
    "name": None, "namespace": None, "labels": None, "annotations": None,
    "generateName": ("warn", "ignored: nspod needs metadata.name"),
    "uid": _SERVER_SET, "resourceVersion": _SERVER_SET, "generation": _SERVER_SET,
    "creationTimestamp": _SERVER_SET, "deletionTimestamp": _SERVER_SET,
    "deletionGracePeriodSeconds": _SERVER_SET, "selfLink": _SERVER_SET,
    "managedFields": _SERVER_SET,
    "ownerReferences": _IGNORED_HERE, "finalizers": _IGNORED_HERE,
}
_SPEC = {
    **dict.fromkeys((
        "hostname", "subdomain", "setHostnameAsFQDN", "shareProcessNamespace", "hostNetwork",
        "hostIPC", "hostPID", "restartPolicy", "terminationGracePeriodSeconds",
        "activeDeadlineSeconds", "volumes", "initContainers", "containers", "resources",
        "hostAliases", "dnsPolicy", "dnsConfig", "securityContext")),
    **dict.fromkeys((
        "nodeSelector", "nodeName", "affinity", "tolerations", "schedulerName",
        "priorityClassName", "priority", "preemptionPolicy", "serviceAccountName",
        "serviceAccount", "automountServiceAccountToken", "imagePullSecrets",
        "enableServiceLinks", "topologySpreadConstraints", "readinessGates", "schedulingGates",
        "overhead"), _IGNORED_HERE),
    **dict.fromkeys((
        "ephemeralContainers", "os", "hostUsers", "runtimeClassName", "resourceClaims",
        "hostnameOverride"), _UNSUPPORTED),
}
_CONTAINER = {
    **dict.fromkeys((
        "name", "image", "command", "args", "env", "workingDir", "volumeMounts", "resources",
        "securityContext", "ports", "livenessProbe", "readinessProbe", "startupProbe",
        "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "restartPolicy")),
    "imagePullPolicy": None,        # honoured by `run` (nsPod/registry/pull.py ensure)
    **dict.fromkeys((
        "envFrom", "volumeDevices", "resizePolicy", "restartPolicyRules", "stdin", "stdinOnce",
        "tty"), _UNSUPPORTED),
}
_APP_CONTAINER = {
    **_CONTAINER,
    "restartPolicy": ("error", "only init containers may set restartPolicy (native sidecars)"),
}
_VOLUME = {
    "name": None, "emptyDir": None, "hostPath": None,
    **dict.fromkeys((
        "configMap", "secret", "persistentVolumeClaim", "projected", "downwardAPI", "ephemeral",
        "csi", "image", "nfs", "iscsi", "glusterfs", "rbd", "flexVolume", "cinder", "cephfs",
        "flocker", "fc", "azureFile", "azureDisk", "vsphereVolume", "quobyte",
        "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos", "gcePersistentDisk",
        "awsElasticBlockStore", "gitRepo"), _VOLUME_TYPE),
}
_EMPTY_DIR = {"medium": None, "sizeLimit": None}
_HOST_PATH = {"path": None, "type": None}
_MOUNT = {"name": None, "mountPath": None, "readOnly": None, "subPath": None,
          "subPathExpr": None, "mountPropagation": _UNSUPPORTED,
          "recursiveReadOnly": _UNSUPPORTED}
_ENV = {"name": None, "value": None, "valueFrom": None}
_ENV_SOURCE = {"fieldRef": None, "resourceFieldRef": None,
               "configMapKeyRef": ("error", "not supported yet"),
               "secretKeyRef": ("error", "not supported yet"),
               "fileKeyRef": _UNSUPPORTED}
_FIELD_REF = {"apiVersion": None, "fieldPath": None}
_RESOURCE_REF = {"containerName": None, "resource": None, "divisor": None}
_RESOURCES = {"limits": None, "requests": None, "claims": _UNSUPPORTED}
_SECURITY_COMMON = dict.fromkeys(("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile"))
_POD_SECURITY = {
    **_SECURITY_COMMON,
    **dict.fromkeys(("supplementalGroups", "fsGroup", "sysctls")),
    **dict.fromkeys((
        "seLinuxOptions", "windowsOptions", "appArmorProfile", "fsGroupChangePolicy",
        "supplementalGroupsPolicy", "seLinuxChangePolicy"), _UNSUPPORTED),
}
_CONTAINER_SECURITY = {
    **_SECURITY_COMMON,
    **dict.fromkeys((
        "privileged", "allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities")),
    **dict.fromkeys((
        "seLinuxOptions", "windowsOptions", "appArmorProfile", "procMount"), _UNSUPPORTED),
}
_CAPABILITIES = {"add": None, "drop": None}
_SECCOMP = {"type": None, "localhostProfile": None}
_SYSCTL = {"name": None, "value": None}
_PORT = {"name": None, "containerPort": None, "hostPort": None, "protocol": None,
         "hostIP": _UNSUPPORTED}
_PROBE = {
    **dict.fromkeys((
        "exec", "httpGet", "tcpSocket", "initialDelaySeconds", "timeoutSeconds",
        "periodSeconds", "successThreshold", "failureThreshold",
        "terminationGracePeriodSeconds")),
    "grpc": _UNSUPPORTED,
}
_LIFECYCLE = {"postStart": None, "preStop": None, "stopSignal": _UNSUPPORTED}
_LIFECYCLE_HANDLER = {"exec": None, "httpGet": None, "sleep": None,
                      "tcpSocket": ("error", "not supported (deprecated in lifecycle hooks)")}
_EXEC = {"command": None}
_HTTP_GET = {"path": None, "port": None, "host": None, "scheme": None, "httpHeaders": None}
_TCP_SOCKET = {"port": None, "host": None}
_SLEEP = {"seconds": None}
_HEADER = {"name": None, "value": None}
_HOST_ALIAS = {"ip": None, "hostnames": None}
_DNS_CONFIG = {"nameservers": None, "searches": None, "options": None}
_DNS_OPTION = {"name": None, "value": None}

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
_HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                    "CharDevice", "BlockDevice")
_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                "status.podIPs")
_ENV_RESOURCES = ("limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu",
                  "requests.memory", "requests.ephemeral-storage")
# Kubernetes compares the divisor's canonical form with these lists.
_CPU_DIVISORS = ("1m", "1")
_SIZE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E",
                  "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
_CAPABILITY_NAMES = frozenset((
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"))
# Sysctls the kernel keeps per namespace; any other would change the whole host.
_IPC_SYSCTLS = frozenset((
    "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem"))
_ID_MAX = 2**31 - 1
# The API's integer types: a field without a tighter bound is an int64, a probe's an int32.
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1
_ANNOTATIONS_MAX_BYTES = 256 * 1024

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_PORT_NAME = re.compile(r"[-a-z0-9]+")
_HTTP_TOKEN = re.compile(r"[-A-Za-z0-9!#$%&'*+.^_`|~]+")
_SYSCTL_NAME = re.compile(r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-_a-z0-9]*[a-z0-9])?")
_SUBSCRIPTED_FIELD = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]", re.DOTALL)


def load_pods(text, source="<stdin>", name_override=None, allowed_unsafe_sysctls=()):
    """Every Pod in a YAML stream, and the warnings; SpecError listing every problem.

    Empty documents are skipped. With more than one document each line starts with
    "document N: " (N counts the non-empty documents). A sysctl outside the kubelet's safe set
    is refused unless allowed_unsafe_sysctls (sysctl_policy.parse_allowlist) allows it; None
    leaves that check out (a pod admitted before, as `apply` reads it).
    """
    documents, problems = _load_yaml(text, source)
    if not documents and not problems:
        raise SpecError([f"{source}: no Pod in it (the manifest is empty)"])
    if name_override is not None and len(documents) > 1:
        raise InputError(f"--name needs a manifest with one Pod; "
                         f"{source} has {len(documents)} documents")
    pods, warnings, first_of = [], [], {}
    multiple = len(documents) > 1
    for number, document in enumerate(documents, 1):
        check = _Check(f"document {number}: " if multiple else "")
        check.allowed_sysctls = allowed_unsafe_sysctls
        pod = check.pod(document, name_override, require_kind=True, need_containers=True)
        if pod is not None:
            if pod.name in first_of:
                check.error("metadata.name",
                            f"{_q(pod.name)} is also the name of document {first_of[pod.name]}")
            first_of.setdefault(pod.name, number)
            pods.append(pod)
        for line in check.problems:
            _add(problems, line, "", "problems")
        for line in check.warnings:
            _add(warnings, line, "", "warnings")
    if problems:
        raise SpecError(problems)
    return pods, warnings


def pod_from_dict(d, path_prefix="", name_override=None, allow_no_containers=False):
    """One Pod from a dict, validated as load_pods validates a document: (Pod, warnings).

    apiVersion and kind may be left out here (the CLI builds pods from flags); when given they
    must be v1 and Pod. allow_no_containers is for `nspod create`: a pod of only its pause,
    which `nspod add` fills.
    """
    check = _Check(path_prefix)
    pod = check.pod(d, name_override, require_kind=False, need_containers=not allow_no_containers)
    if check.problems:
        raise SpecError(check.problems)
    return pod, check.warnings


def container_from_dict(d, path, init, pod):
    """One container (for `nspod add`): (Container, warnings) or SpecError.

    With `pod`, the container joins it: its name must be new there, its volumeMounts must name
    the pod's volumes, its hostPorts must be free and its limits within the pod's.
    """
    check = _Check()
    if pod is not None:
        existing = pod.init_containers + pod.containers
        check.volume_names = {v.name for v in pod.volumes}
        check.seen_names = {c.name: f"a container of pod {_q(pod.name)}" for c in existing}
        check.container_names = {c.name for c in existing}
        check.grace = pod.termination_grace_period_seconds
        check.host_network = pod.host_network
        check.host_ports = {(p.host_port, p.protocol): f"container {_q(c.name)}"
                            for c in existing for p in c.ports if p.host_port}
    if isinstance(d, dict) and isinstance(d.get("name"), str):
        check.container_names.add(d["name"])
    if init and not FEATURES["spec.initContainers"]:
        check.error(path, "init containers are not supported yet")
    container = check.container(d, path, init)
    if container is not None and pod is not None:
        check.within_pod_limits([(path, container)], pod.resources)
    if check.problems:
        raise SpecError(check.problems)
    return container, check.warnings


def clean_manifest(manifest):
    """A stored manifest as `kubectl apply` takes it (for `nspod generate`): apiVersion and kind
    first, no status, and none of the metadata nspod ignores (uid, ownerReferences...)."""
    ignored = {key for key, rule in _METADATA.items() if rule is not None}
    metadata = {k: v for k, v in (manifest.get("metadata") or {}).items() if k not in ignored}
    rest = {k: v for k, v in manifest.items()
            if k not in ("apiVersion", "kind", "metadata", "status")}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, **rest}


def dump_yaml(data):
    """YAML text for plain data (dicts, lists, strings, numbers), keys in their given order."""
    import yaml
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True)


def effective_hostname(pod):
    """The pod's hostname as the kubelet sets it (GeneratePodHostNameAndDomain)."""
    hostname = _truncate_hostname(pod.hostname or pod.name)
    domain = host_domain(pod)
    if pod.set_hostname_as_fqdn and domain:
        return f"{hostname}.{domain}"
    return hostname


def host_domain(pod):
    """<subdomain>.<namespace>.svc.cluster.local, or "" without a subdomain (for /etc/hosts)."""
    if not pod.subdomain:
        return ""
    return f"{pod.subdomain}.{pod.namespace}.svc.{CLUSTER_DOMAIN}"


def validate_name(name, what="pod"):
    """InputError unless `name` is valid: a DNS-1123 subdomain for a pod, a label otherwise."""
    problem = _name_problem(name, _dns_subdomain_problem if what == "pod" else _dns_label_problem)
    if problem:
        raise InputError(f"invalid {what} name {_q(name)}: {problem}")


# An image is a reference as Kubernetes reads it (nsPod/manifest/image_reference.py): nginx:1.25 is
# docker.io/library/nginx:1.25. The store names it by its short (familiar) spelling.
DEFAULT_IMAGE_TAG = "latest"
IMAGE_PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def image_is_path(image):
    """A container's `image` names a directory (an unpacked root filesystem) when absolute."""
    return image.startswith("/")


def image_name_problem(name):
    """None when `name` is a valid image reference, else why not."""
    from nsPod.manifest import image_reference as reference
    return reference.problem(name)


def image_problem(image):
    """None when `image` is an absolute directory path or a valid store name, else why not."""
    if image_is_path(image):
        return _absolute_path_problem(image)
    problem = image_name_problem(image)
    return problem and f"{problem} nor an absolute path to a root filesystem"


def image_reference(image):
    """The store's name for an image: its familiar spelling, the tag defaulting to latest as
    registries do (busybox:latest, 127.0.0.1:5000/busybox:1, quay.io/a/b@sha256:...)."""
    from nsPod.manifest import image_reference as reference
    return reference.store_name(image)


def _truncate_hostname(hostname):
    if len(hostname) <= HOSTNAME_MAX:
        return hostname
    # The kubelet's truncatePodHostnameIfNeeded: a hostname must not end with '-' or '.'.
    return hostname[:HOSTNAME_MAX].rstrip("-.")


# The YAML a manifest may use: JSON's values and nothing else, in budgets no manifest comes
# near. The API server reads YAML as JSON (sigs.k8s.io/yaml): a tag beyond JSON's types
# (!!binary, !!set, !!timestamp, !!python/...) cannot reach it, and an alias is copied
# wherever it is used, so a few lines of anchors can stand for gigabytes ("billion laughs").
MANIFEST_MAX_BYTES = 4 * 1024 * 1024   # the API server refuses requests over 3 MiB
_ALIAS_BUDGET = 10_000                 # nodes copied by aliases, over a whole document
_DEPTH_MAX = 100                       # a Pod is about 10 levels deep
_INT_DIGITS_MAX = 100                  # an int64 has 19 digits
_YAML = "tag:yaml.org,2002:"
_JSON_TAGS = frozenset(_YAML + t for t in ("str", "int", "float", "bool", "null", "seq",
                                             "map", "merge"))
# YAML 1.1's implicit types as PyYAML and kubectl's go-yaml read them (yes/no/on/off are
# booleans there too), but no timestamps (text to the API server), no sexagesimal numbers
# (12:30 is text to go-yaml) and no '=' value type; every pattern matches only what converts.
_RESOLVERS = (
    ("bool", r"yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF",
     "yYnNtTfFoO"),
    ("int", r"[-+]?0b_*[01][01_]*|[-+]?0_*[0-7][0-7_]*|[-+]?(?:0|[1-9][0-9_]*)"
            r"|[-+]?0x_*[0-9a-fA-F][0-9a-fA-F_]*", "-+0123456789"),
    ("float", r"[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.(?=_*[0-9])[0-9_]+"
              r"(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", "-+.0123456789"),
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("merge", r"<<", "<"),
)


def _load_yaml(text, source):
    """(the non-empty documents, duplicate-key problems); SpecError for a syntax error and for
    anything beyond JSON: other tags, alias bombs, deep nesting, numbers no API takes."""
    import yaml
    from yaml.constructor import ConstructorError

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        # A repeated key is silently "last wins" in PyYAML; the API server refuses it, and it
        # is usually a pasted block (two `command:`), so it is reported.
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable: super() reports it
                if duplicate:
                    mark = key_node.start_mark
                    self.duplicates.append(f"{source}: line {mark.line + 1}, column "
                                           f"{mark.column + 1}: duplicate key {_q(key)}")
            return super().construct_mapping(node, deep)

        def construct_object(self, node, deep=False):
            # An explicit !!int/!!bool/!!float on text that is none ("!!bool maybe") makes
            # PyYAML's constructors raise whatever Python raises: one line naming the place.
            try:
                return super().construct_object(node, deep)
            except yaml.YAMLError:
                raise
            except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
                raise ConstructorError(None, None, f"{_q(node.value)} is not a valid "
                                       f"{_tag_name(node.tag)}", node.start_mark) from None

    def construct_int(loader, node):
        digits = node.value.replace("_", "")
        if len(digits) > _INT_DIGITS_MAX:
            raise ConstructorError(None, None, f"a number of {len(digits)} digits is too large "
                                   "(no field takes more than 19)", node.start_mark)
        return yaml.SafeLoader.construct_yaml_int(loader, node)

    def construct_float(loader, node):
        value = yaml.SafeLoader.construct_yaml_float(loader, node)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConstructorError(None, None, f"{_q(node.value)} is not a number JSON can "
                                   "hold (no infinities, no NaN)", node.start_mark)
        return value

    Loader.add_constructor(_YAML + "int", construct_int)
    Loader.add_constructor(_YAML + "float", construct_float)
    Loader.yaml_implicit_resolvers = {}
    for tag, pattern, firsts in _RESOLVERS:
        Loader.add_implicit_resolver(_YAML + tag, re.compile(f"^(?:{pattern})$"), list(firsts))
    loader = Loader(text)
    loader.duplicates = []
    documents = []
    number = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            # numbered as load_pods numbers them: empty documents do not count
            number += not (isinstance(node, yaml.ScalarNode) and node.tag == _YAML + "null")
            _check_nodes(node, yaml, loader, lambda mark: (
                f"{source}: {'' if number == 1 else f'document {number}, '}"
                f"line {mark.line + 1}, column {mark.column + 1}: "))
            document = loader.construct_document(node)
            if document is not None:
                documents.append(document)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = e.problem or e.context or "not valid YAML"
        raise SpecError([f"{source}: {where}{problem}"]) from None
    except yaml.YAMLError as e:
        raise SpecError([f"{source}: " + " ".join(str(e).split())]) from None
    except RecursionError:
        raise SpecError([f"{source}: nested too deeply"]) from None
    finally:
        loader.dispose()
    return documents, loader.duplicates


def _tag_name(tag):
    return "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag


def _check_nodes(root, yaml, loader, where):
    """SpecError (naming the line and field) for a tag beyond JSON, a tag on the wrong kind of
    node, a scalar its tag cannot read (!!int x), a NUL character, nesting beyond _DEPTH_MAX,
    a recursive alias, or aliases that copy more than _ALIAS_BUDGET nodes. Walks each distinct
    node once, without recursion: the sizes of an alias bomb are computed, never built."""
    scalar_node, sequence_node = yaml.ScalarNode, yaml.SequenceNode
    str_tag, seq_tag, map_tag = _YAML + "str", _YAML + "seq", _YAML + "map"
    plain_tags = _JSON_TAGS - {seq_tag, map_tag}

    def fail(node, trail, problem):
        # trail: (key or index, parent trail) links, made into a field path only here
        parts = []
        while trail is not None:
            part, trail = trail
            parts.append(part)
        field = ""
        for part in reversed(parts):
            field = f"{field}[{part}]" if isinstance(part, int) else _join(field, part)
        if len(field) > 100:
            field = field[:97] + "..."
        mark = node.start_mark
        raise SpecError([f"{where(mark)}{field}: {problem}" if field else
                         f"{where(mark)}{problem}"])

    def check_scalar(node, trail):
        if node.tag not in plain_tags:
            fail(node, trail, _tag_problem(node.tag, "a scalar"))
        if "\x00" in node.value:
            fail(node, trail, "contains a NUL character")
        if node.tag != str_tag and node.tag != _YAML + "merge":
            try:
                loader.construct_object(node)   # cached: construct_document reuses it
            except yaml.MarkedYAMLError as e:
                fail(node, trail, e.problem)

    size, height, text = {}, {}, {}
    active = set()
    copied = copied_text = 0
    stack = [(root, None, 1, False)]
    while stack:
        node, trail, depth, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _children(node, sequence_node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max(height[id(c)] for c in children) if children else 1
            text[key] = sum(text[id(c)] for c in children)
            continue
        if key in size:
            copied += size[key]
            copied_text += text[key]
            if copied > _ALIAS_BUDGET:
                fail(node, trail, f"aliases copy more than {_ALIAS_BUDGET} nodes into the "
                                  "document (an alias bomb?)")
            if copied_text > MANIFEST_MAX_BYTES:
                fail(node, trail, f"aliases copy more than {MANIFEST_MAX_BYTES >> 20} MiB of "
                                  "text into the document (an alias bomb?)")
            if depth - 1 + height[key] > _DEPTH_MAX:
                fail(node, trail, f"nested more than {_DEPTH_MAX} levels deep")
            continue
        if depth > _DEPTH_MAX:
            fail(node, trail, f"nested more than {_DEPTH_MAX} levels deep")
        if type(node) is scalar_node:
            check_scalar(node, trail)
            size[key] = height[key] = 1
            text[key] = len(node.value)
            continue
        if key in active:
            fail(node, trail, "an alias inside the node it refers to (a recursive alias)")
        if type(node) is sequence_node:
            if node.tag != seq_tag:
                fail(node, trail, _tag_problem(node.tag, "a list"))
            pushed = [(child, (i, trail), depth + 1, False) for i, child in enumerate(node.value)]
        else:
            if node.tag != map_tag:
                fail(node, trail, _tag_problem(node.tag, "a mapping"))
            pushed = []
            for k, v in node.value:
                name = k.value if type(k) is scalar_node else "<key>"
                pushed.append((k, trail, depth + 1, False))
                pushed.append((v, (name, trail), depth + 1, False))
        active.add(key)
        stack.append((node, trail, depth, True))
        pushed.reverse()
        stack.extend(pushed)


def _children(node, sequence_node):
    if type(node) is sequence_node:
        return node.value
    return [n for pair in node.value for n in pair]


def _tag_problem(tag, kind):
    if tag not in _JSON_TAGS:
        return (f"tag {_tag_name(tag)} is not allowed: a manifest holds only JSON values "
                "(text, numbers, true/false, null, lists, mappings)")
    return f"tag {_tag_name(tag)} does not fit {kind}"


# A manifest of 300,000 unknown fields is not 300,000 useful lines (nor worth as many
# suggestions): the first hundred are listed, then one line says there are more.
_PROBLEMS_MAX = 100


def _add(lines, line, prefix, what):
    if len(lines) < _PROBLEMS_MAX:
        lines.append(line)
    elif len(lines) == _PROBLEMS_MAX:
        lines.append(f"{prefix}... more {what}; only the first {_PROBLEMS_MAX} are listed")


class _Check:
    """Validates one pod (or container), collecting every problem and warning."""

    def __init__(self, prefix=""):
        self.prefix = prefix
        self.problems = []
        self.warnings = []
        # What containers are checked against; pod() and container_from_dict fill these in.
        self.volume_names = None         # None: not known, mounts are not checked
        self.container_names = set()     # every container name of the pod
        self.seen_names = {}             # name -> where it was first used
        self.grace = 30
        self.host_network = False
        self.host_ipc = False
        self.host_ports = {}             # (port, protocol) -> who uses it
        self.allowed_sysctls = None      # unsafe sysctls the node allows; None: not checked

    def error(self, path, message):
        _add(self.problems, self._line(path, message), self.prefix, "problems")

    def warn(self, path, message):
        _add(self.warnings, self._line(path, message), self.prefix, "warnings")

    @property
    def full(self):
        """No more problems are listed: skip working out what they would say."""
        return len(self.problems) >= _PROBLEMS_MAX

    def _line(self, path, message):
        return f"{self.prefix}{path}: {message}" if path else f"{self.prefix}{message}"

    # --- shapes -------------------------------------------------------------------------

    def fields(self, value, path, schema, feature=None):
        """The mapping at path with its keys checked against schema; {} when absent, None
        (reported) when it is not a mapping."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, _expected("a mapping", value))
            return None
        for key, item in value.items():
            if not isinstance(key, str):
                self.error(path, f"unexpected key {_q(key)} (field names are strings)")
                continue
            where = _join(path, key)
            if key not in schema:
                self.error(where, "unknown field" + ("" if self.full else _suggestion(key, schema)))
                continue
            rule = schema[key]
            if rule is None:
                gate = f"{feature}.{key}"
                if not FEATURES.get(gate, True) and not _empty(item):
                    template = _NOT_YET_MESSAGES.get(gate, "not supported yet")
                    self.error(where, template.format(value=_q(item)))
            elif rule[0] == "warn":
                if not _empty(item):
                    self.warn(where, rule[1])
            elif item is not None:
                self.error(where, rule[1])
        return value

    def mapping(self, value, path):
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        self.error(path, _expected("a mapping", value))
        return {}

    def items(self, value, path):
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.error(path, _expected("a list", value))
        return []

    def string(self, value, path, required=False):
        """The string, or None: absent (reported when required) or not a string (reported)."""
        if value is None or (required and value == ""):
            if required:
                self.error(path, "required")
            return None
        if isinstance(value, str):
            return value
        self.error(path, _expected("a string", value))
        return None

    def strings(self, value, path):
        """A list of strings as a tuple; () when absent, None when wrong (reported)."""
        if value is None:
            return ()
        if isinstance(value, str):
            self.error(path, f"must be a list of strings, got a string (write {_q(value.split())})")
            return None
        if not isinstance(value, list):
            self.error(path, _expected("a list of strings", value))
            return None
        good = True
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error(f"{path}[{i}]", _expected("a string", item))
                good = False
        return tuple(value) if good else None

    def boolean(self, value, path):
        if value is None or isinstance(value, bool):
            return value
        self.error(path, _expected("a boolean", value))
        return None

    def integer(self, value, path, minimum=None, maximum=None, required=False):
        if value is None:
            if required:
                self.error(path, "required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, _expected("an integer", value))
            return None
        if minimum is not None and value < minimum:
            self.error(path, f"{value} must be at least {minimum}")
            return None
        if maximum is None:
            maximum = _INT64_MAX
        if value > maximum:
            self.error(path, f"{value} must be at most {maximum}")
            return None
        if value < -_INT64_MAX - 1:
            self.error(path, f"{value} must be at least {-_INT64_MAX - 1}")
            return None
        return value

    def choice(self, value, path, options, required=False):
        text = self.string(value, path, required)
        if text is not None and text not in options:
            shown = ", ".join(o or '""' for o in options)
            self.error(path, f"{_q(text)} is not one of: {shown}")
            return None
        return text

    def name(self, value, path, check):
        """A required name: the string, or None (reported)."""
        text = self.string(value, path, required=True)
        if text is not None:
            problem = check(text)
            if problem:
                self.error(path, f"{_q(text)}: {problem}")
                return None
        return text

    def quantity(self, value, path, resource):
        """memory (bytes) or cpu (millicores); None when invalid (reported)."""
        # The API server trims quantities it decodes from JSON/YAML.
        text = value.strip() if isinstance(value, str) else value
        try:
            if resource == "cpu":
                return quantity.parse_cpu_millis(text)
            amount = quantity.parse_bytes(text)
            if quantity.parse_quantity(text).denominator != 1:
                self.warn(path, f"{_q(value)} is not a whole number of bytes; "
                                f"rounded up to {amount}")
            return amount
        except ValueError as e:
            self.error(path, str(e))
            return None

    # --- the pod --------------------------------------------------------------------------

    def pod(self, doc, name_override, require_kind, need_containers):
        if not isinstance(doc, dict):
            self.error("", f"a Pod manifest must be a mapping, got {_kind(doc)}")
            return None
        if not self.kind(doc, require_kind):
            return None
        self.fields(doc, "", _DOCUMENT)
        meta = self.fields(doc.get("metadata"), "metadata", _METADATA)
        manifest = doc
        if meta is not None and name_override is not None:
            meta = {**meta, "name": name_override}
            manifest = {**doc, "metadata": meta}
        # metadata that is not a mapping was reported: its name is not also "required"
        name = None if meta is None else self.pod_name(meta, name_override is not None)
        meta = meta or {}
        namespace = meta.get("namespace")
        if namespace is None or namespace == "":
            namespace = "default"
        namespace = self.name(namespace, "metadata.namespace", _dns_label_problem)
        labels = self.string_map(meta.get("labels"), "metadata.labels", _label_value_problem)
        annotations = self.string_map(meta.get("annotations"), "metadata.annotations")
        if sum(len(k) + len(v) for k, v in annotations.items()) > _ANNOTATIONS_MAX_BYTES:
            self.error("metadata.annotations",
                       f"must be at most {_ANNOTATIONS_MAX_BYTES} bytes in all")
        if "spec" not in doc or doc["spec"] is None:
            self.error("spec", "required")
            return None
        spec = self.fields(doc["spec"], "spec", _SPEC, "spec")
        if spec is None:
            return None

        hostname = self.label(spec.get("hostname"), "spec.hostname")
        subdomain = self.label(spec.get("subdomain"), "spec.subdomain")
        flags = {key: self.boolean(spec.get(key), f"spec.{key}") or False
                 for key in ("setHostnameAsFQDN", "shareProcessNamespace", "hostNetwork",
                             "hostIPC", "hostPID")}
        self.host_network, self.host_ipc = flags["hostNetwork"], flags["hostIPC"]
        if flags["shareProcessNamespace"] and flags["hostPID"]:
            self.error("spec.shareProcessNamespace", "cannot be combined with hostPID")
        if self.host_network:
            for key in ("hostname", "subdomain"):
                if spec.get(key):
                    self.warn(f"spec.{key}",
                              "ignored with hostNetwork (the pod has the host's name)")
        network = self.network(annotations)
        restart_policy = self.restart_policy(spec.get("restartPolicy"))
        grace = self.integer(spec.get("terminationGracePeriodSeconds"),
                             "spec.terminationGracePeriodSeconds", minimum=0)
        self.grace = 30 if grace is None else grace
        deadline = self.integer(spec.get("activeDeadlineSeconds"), "spec.activeDeadlineSeconds",
                                minimum=1)
        dns_policy = self.choice(spec.get("dnsPolicy"), "spec.dnsPolicy", _DNS_POLICIES)
        dns_config = self.dns_config(spec.get("dnsConfig"), "spec.dnsConfig")
        if dns_policy == "None" and not (dns_config and dns_config.nameservers):
            self.error("spec.dnsConfig",
                       "dnsPolicy None needs dnsConfig with at least one nameserver")
        host_aliases = self.host_aliases(spec.get("hostAliases"), "spec.hostAliases")
        security = self.security_context(spec.get("securityContext"), "spec.securityContext",
                                         pod_level=True)

        raw_volumes = spec.get("volumes")
        self.volume_names = {v.get("name") for v in
                             (raw_volumes if isinstance(raw_volumes, list) else ())
                             if isinstance(v, dict) and isinstance(v.get("name"), str)}
        volumes = self.volumes(raw_volumes, "spec.volumes")
        for key in ("initContainers", "containers"):
            listed = spec.get(key) if isinstance(spec.get(key), list) else []
            self.container_names |= {c["name"] for c in listed
                                     if isinstance(c, dict) and isinstance(c.get("name"), str)}
        init_containers = self.containers(spec.get("initContainers"), "spec.initContainers", True)
        if need_containers and spec.get("containers") in (None, []):
            self.error("spec.containers", "required: at least one container")
        containers = self.containers(spec.get("containers"), "spec.containers", False)
        resources = self.resources(spec.get("resources"), "spec.resources")
        self.pod_resources(resources, init_containers, containers)

        if name is None or namespace is None:
            return None
        pod = Pod(
            name=name, namespace=namespace, labels=labels, annotations=annotations,
            hostname=hostname, subdomain=subdomain,
            set_hostname_as_fqdn=flags["setHostnameAsFQDN"],
            share_process_namespace=flags["shareProcessNamespace"],
            host_network=flags["hostNetwork"], host_ipc=flags["hostIPC"],
            host_pid=flags["hostPID"], restart_policy=restart_policy,
            termination_grace_period_seconds=self.grace, volumes=volumes,
            init_containers=init_containers, containers=containers, manifest=manifest,
            network=network, active_deadline_seconds=deadline, resources=resources,
            host_aliases=host_aliases, dns_policy=dns_policy or "ClusterFirst",
            dns_config=dns_config, security_context=security)
        fqdn = effective_hostname(pod)
        if pod.set_hostname_as_fqdn and len(fqdn) > FQDN_MAX:
            self.error("spec.setHostnameAsFQDN",
                       f"the FQDN {_q(fqdn)} is {len(fqdn)} characters; "
                       f"at most {FQDN_MAX} are allowed")
        return pod

    def kind(self, doc, required):
        """False (reported) when the document is not a v1 Pod: checking it further would only
        list the other kind's fields as unknown."""
        good = True
        for key, want in (("apiVersion", "v1"), ("kind", "Pod")):
            value = doc.get(key)
            if value is None and not required:
                continue
            if value is None:
                self.error(key, f"required ({want})")
                good = False
            elif value != want:
                self.error(key, f"{_q(value)} is not supported (only {want})")
                good = False
        return good

    def pod_name(self, meta, overridden):
        name = meta.get("name")
        if name is None:
            self.error("metadata.name", "required")
            return None
        text = self.string(name, "metadata.name", required=True)
        if text is None:
            return None
        problem = _dns_subdomain_problem(text)
        if problem:
            origin = " (from --name)" if overridden else ""
            self.error("metadata.name", f"{_q(text)}{origin}: {problem}")
            return None
        return text

    def label(self, value, path):
        """An optional DNS-1123 label ("" when absent or invalid)."""
        text = self.string(value, path)
        if text:
            problem = _dns_label_problem(text)
            if problem:
                self.error(path, f"{_q(text)}: {problem}")
                return ""
        return text or ""

    def string_map(self, value, path, value_problem=None):
        """labels or annotations: qualified-name keys to string values."""
        out = {}
        for key, item in self.mapping(value, path).items():
            where = f"{path}[{_key(key)}]"
            if not isinstance(key, str):
                self.error(path, f"key {_q(key)} must be a string (quote it)")
                continue
            problem = _qualified_name_problem(key)
            if problem:
                self.error(where, f"key {_q(key)}: {problem}")
                continue
            text = "" if item is None else self.string(item, where)
            if text is None:
                continue
            problem = value_problem and value_problem(text)
            if problem:
                self.error(where, f"{_q(text)}: {problem}")
                continue
            out[key] = text
        return out

    def network(self, annotations):
        value = annotations.get(NETWORK_ANNOTATION)
        if value is None:
            return "bridge"
        path = f"metadata.annotations[{NETWORK_ANNOTATION}]"
        if value not in ("bridge", "none"):
            self.error(path, f"{_q(value)} is not one of: bridge, none")
            return "bridge"
        if self.host_network:
            self.error(path, "cannot be combined with hostNetwork")
        return value

    def restart_policy(self, value):
        path = "spec.restartPolicy"
        allowed = [p for p in _RESTART_POLICIES if FEATURES[f"spec.restartPolicy={p}"]]
        advice = f"set restartPolicy: {allowed[-1]}"
        if value is None:
            if "Always" not in allowed:
                self.error(path, "not set, and its Kubernetes default Always is not supported "
                                 f"yet; {advice}")
            return "Always"
        policy = self.choice(value, path, _RESTART_POLICIES)
        if policy is not None and policy not in allowed:
            self.error(path, f"{policy} is not supported yet (only {', '.join(allowed)}); {advice}")
        return policy or "Always"

    def pod_resources(self, resources, init_containers, containers):
        """Pod-level resources hold the containers', as Kubernetes requires."""
        if not (resources.limits or resources.requests):
            return
        running = [c for c in containers + init_containers if not c.init or c.restart_policy]
        for key in ("memory", "cpu"):
            want = resources.requests.get(key)
            total = sum(c.resources.requests.get(key, 0) for c in running)
            if want is not None and want < total:
                self.error(f"spec.resources.requests.{key}",
                           "must be at least the containers' requests together "
                           f"({_amount(key, total)})")
        paths = [(f"spec.initContainers[{i}]", c) for i, c in enumerate(init_containers)]
        paths += [(f"spec.containers[{i}]", c) for i, c in enumerate(containers)]
        self.within_pod_limits(paths, resources)

    def within_pod_limits(self, containers, resources):
        for path, c in containers:
            for key, limit in c.resources.limits.items():
                pod_limit = resources.limits.get(key)
                if pod_limit is not None and limit > pod_limit:
                    self.error(f"{path}.resources.limits.{key}",
                               f"must not exceed the pod's limit ({_amount(key, pod_limit)})")

    # --- volumes ------------------------------------------------------------------------------

    def volumes(self, value, path):
        out, first = [], {}
        for i, raw in enumerate(self.items(value, path)):
            where = f"{path}[{i}]"
            v = self.fields(raw, where, _VOLUME, "volume")
            if v is None:
                continue
            name = self.name(v.get("name"), f"{where}.name", _dns_label_problem)
            if name is not None:
                if name in first:
                    self.error(f"{where}.name", f"{_q(name)} is already the name of {first[name]}")
                first.setdefault(name, where)
            if "emptyDir" in v and v["emptyDir"] is None:
                self.error(f"{where}.emptyDir",
                           "is null; write emptyDir: {} for a default emptyDir")
                continue
            sources = [k for k in _VOLUME if k != "name" and v.get(k) is not None]
            if len(sources) > 1:
                self.error(where, f"exactly one volume source is allowed, got {', '.join(sources)}")
                continue
            if not sources:
                self.error(where, "exactly one volume source is needed (emptyDir or hostPath)")
                continue
            if sources[0] == "emptyDir":
                volume = self.empty_dir(v["emptyDir"], f"{where}.emptyDir", name)
            elif sources[0] == "hostPath":
                volume = self.host_path(v["hostPath"], f"{where}.hostPath", name)
            else:
                continue  # an unsupported type: fields() reported it
            if volume is not None and name is not None:
                out.append(volume)
        return tuple(out)

    def empty_dir(self, value, path, name):
        e = self.fields(value, path, _EMPTY_DIR)
        if e is None:
            return None
        medium = self.string(e.get("medium"), f"{path}.medium") or ""
        if medium.startswith("HugePages"):
            self.error(f"{path}.medium", f"{_q(medium)} is not supported (use \"\" or Memory)")
            return None
        if medium not in ("", "Memory"):
            self.error(f"{path}.medium",
                       f'{_q(medium)} is not a medium (use "" for disk or Memory for tmpfs)')
            return None
        size = None
        if e.get("sizeLimit") is not None:
            size = self.quantity(e["sizeLimit"], f"{path}.sizeLimit", "memory")
            if size is None:
                return None
            if size == 0:
                # tmpfs reads size=0 as "no limit": the opposite of what was asked.
                self.error(f"{path}.sizeLimit", "must be greater than 0")
                return None
        return Volume(name, "emptyDir", medium=medium, size_limit=size)

    def host_path(self, value, path, name):
        h = self.fields(value, path, _HOST_PATH)
        if h is None:
            return None
        where = self.string(h.get("path"), f"{path}.path", required=True)
        if where is not None:
            problem = _absolute_path_problem(where)
            if problem:
                self.error(f"{path}.path", f"{_q(where)}: {problem}")
                where = None
        kind = self.choice(h.get("type"), f"{path}.type", _HOST_PATH_TYPES)
        if where is None or (kind is None and h.get("type") is not None):
            return None
        return Volume(name, "hostPath", host_path=where, host_path_type=kind or "")

    # --- containers ---------------------------------------------------------------------------

    def containers(self, value, path, init):
        out = []
        for i, raw in enumerate(self.items(value, path)):
            container = self.container(raw, f"{path}[{i}]", init)
            if container is not None:
                out.append(container)
        return tuple(out)

    def container(self, raw, path, init):
        c = self.fields(raw, path, _CONTAINER if init else _APP_CONTAINER, "container")
        if c is None:
            return None
        name = self.name(c.get("name"), f"{path}.name", _dns_label_problem)
        if name is not None:
            if name in self.seen_names:
                self.error(f"{path}.name",
                           f"{_q(name)} is already the name of {self.seen_names[name]}")
            self.seen_names.setdefault(name, path)
        image = self.string(c.get("image"), f"{path}.image") or ""
        if image != image.strip():
            self.error(f"{path}.image", f"{_q(image)}: must not start or end with whitespace")
        elif image:
            problem = image_problem(image)
            if problem:
                self.error(f"{path}.image", f"{_q(image)}: {problem}")
        self.choice(c.get("imagePullPolicy"), f"{path}.imagePullPolicy", IMAGE_PULL_POLICIES)
        command = self.strings(c.get("command"), f"{path}.command")
        args = self.strings(c.get("args"), f"{path}.args")
        if command == () and not image:
            if args:
                self.error(f"{path}.args", "args without command needs an image with an "
                                           "entrypoint; with no image, set command")
            elif args == ():
                self.error(f"{path}.command",
                           "required: with no image there is nothing else to run")
        env = self.env(c.get("env"), f"{path}.env")
        working_dir = self.string(c.get("workingDir"), f"{path}.workingDir") or ""
        if working_dir:
            problem = _absolute_path_problem(working_dir)
            if problem:
                self.error(f"{path}.workingDir", f"{_q(working_dir)}: {problem}")
        mounts = self.volume_mounts(c.get("volumeMounts"), f"{path}.volumeMounts")
        resources = self.resources(c.get("resources"), f"{path}.resources")
        restart = ""
        if init and c.get("restartPolicy") is not None:
            restart = self.string(c["restartPolicy"], f"{path}.restartPolicy") or ""
            if restart and restart != "Always":
                self.error(f"{path}.restartPolicy",
                           f"{_q(restart)} is not supported "
                           "(only Always, which makes a native sidecar)")
        ports = self.ports(c.get("ports"), f"{path}.ports")
        port_names = {p.name for p in ports if p.name}
        security = self.security_context(c.get("securityContext"), f"{path}.securityContext",
                                         pod_level=False)
        runs_alongside = not init or restart == "Always"
        probes = {}
        for key in ("livenessProbe", "readinessProbe", "startupProbe"):
            if not runs_alongside and not _empty(c.get(key)):
                self.error(f"{path}.{key}", "init containers may not have probes unless "
                                            "restartPolicy is Always (a sidecar)")
            probes[key] = self.probe(c.get(key), f"{path}.{key}", key, port_names)
        if not runs_alongside and not _empty(c.get("lifecycle")):
            self.error(f"{path}.lifecycle", "init containers may not have lifecycle hooks unless "
                                            "restartPolicy is Always (a sidecar)")
        post_start, pre_stop = self.lifecycle(c.get("lifecycle"), f"{path}.lifecycle", port_names)
        message_path = (self.string(c.get("terminationMessagePath"),
                                    f"{path}.terminationMessagePath")
                        or DEFAULT_TERMINATION_MESSAGE_PATH)
        problem = _absolute_path_problem(message_path)
        if problem:
            self.error(f"{path}.terminationMessagePath", f"{_q(message_path)}: {problem}")
        message_policy = self.choice(c.get("terminationMessagePolicy"),
                                     f"{path}.terminationMessagePolicy",
                                     ("File", "FallbackToLogsOnError")) or "File"
        if name is None:
            return None
        return Container(
            name=name, image=image, command=command or (), args=args or (), env=env,
            working_dir=working_dir, volume_mounts=mounts, resources=resources,
            restart_policy=restart, init=init, ports=ports, security_context=security,
            liveness_probe=probes["livenessProbe"], readiness_probe=probes["readinessProbe"],
            startup_probe=probes["startupProbe"], post_start=post_start, pre_stop=pre_stop,
            termination_message_path=message_path, termination_message_policy=message_policy)

    def env(self, value, path):
        out, first = [], {}
        for i, raw in enumerate(self.items(value, path)):
            where = f"{path}[{i}]"
            e = self.fields(raw, where, _ENV)
            if e is None:
                continue
            name = self.string(e.get("name"), f"{where}.name", required=True)
            if name is not None:
                problem = _env_name_problem(name)
                if problem:
                    self.error(f"{where}.name", f"{_q(name)}: {problem}")
                    name = None
                elif name in first:
                    self.warn(f"{where}.name",
                              f"{_q(name)} hides {first[name]} (the last one wins)")
                else:
                    first[name] = where
            text = self.string(e.get("value"), f"{where}.value")
            if e.get("valueFrom") is None:
                if name is not None:
                    out.append(EnvVar(name, value=text or ""))
                continue
            if text:
                self.error(f"{where}.value", "cannot be set together with valueFrom")
            var = self.env_source(e["valueFrom"], f"{where}.valueFrom", name)
            if var is not None and name is not None:
                out.append(var)
        return tuple(out)

    def env_source(self, value, path, name):
        source = self.fields(value, path, _ENV_SOURCE, "env")
        if source is None:
            return None
        given = [k for k in _ENV_SOURCE if source.get(k) is not None]
        if len(given) != 1:
            got = f", got {', '.join(given)}" if given else ""
            self.error(path, f"exactly one source is needed (fieldRef or resourceFieldRef){got}")
            return None
        if given[0] == "fieldRef":
            return self.field_ref(source["fieldRef"], f"{path}.fieldRef", name)
        if given[0] == "resourceFieldRef":
            return self.resource_ref(source["resourceFieldRef"], f"{path}.resourceFieldRef", name)
        return None  # a source fields() refused

    def field_ref(self, value, path, name):
        ref = self.fields(value, path, _FIELD_REF)
        if ref is None:
            return None
        api = ref.get("apiVersion")
        if api not in (None, "", "v1"):
            self.error(f"{path}.apiVersion", f"{_q(api)} is not supported (only v1)")
        field_path = self.string(ref.get("fieldPath"), f"{path}.fieldPath", required=True)
        if field_path is None:
            return None
        problem = _field_path_problem(field_path)
        if problem:
            self.error(f"{path}.fieldPath", problem)
            return None
        return EnvVar(name, field_path=field_path)

    def resource_ref(self, value, path, name):
        ref = self.fields(value, path, _RESOURCE_REF)
        if ref is None:
            return None
        target = self.string(ref.get("containerName"), f"{path}.containerName") or None
        if target is not None and target not in self.container_names:
            self.error(f"{path}.containerName", f"{_q(target)} is not a container of this pod")
        resource = self.choice(ref.get("resource"), f"{path}.resource", _ENV_RESOURCES,
                               required=True)
        divisor = ref.get("divisor")
        if divisor is None:
            return EnvVar(name, resource=resource, resource_container=target) if resource else None
        text = divisor.strip() if isinstance(divisor, str) else divisor
        try:
            form = quantity.canonical(text)
        except ValueError as e:
            self.error(f"{path}.divisor", str(e))
            return None
        if resource is None:
            return None
        allowed = _CPU_DIVISORS if resource.endswith(".cpu") else _SIZE_DIVISORS
        if form not in allowed:
            self.error(f"{path}.divisor",
                       f"{_q(divisor)} is not supported with {resource} "
                       f"(use one of: {', '.join(allowed)})")
            return None
        return EnvVar(name, resource=resource, resource_container=target,
                      divisor=text if isinstance(text, str) else repr(text))

    def volume_mounts(self, value, path):
        out, targets = [], {}
        for i, raw in enumerate(self.items(value, path)):
            where = f"{path}[{i}]"
            m = self.fields(raw, where, _MOUNT, "volumeMount")
            if m is None:
                continue
            name = self.string(m.get("name"), f"{where}.name", required=True)
            if name is not None and self.volume_names is not None and name not in self.volume_names:
                self.error(f"{where}.name", f"{_q(name)} is not a volume of this pod "
                                            "(declare it in spec.volumes)")
            target = self.string(m.get("mountPath"), f"{where}.mountPath", required=True)
            if target is not None:
                key = posixpath.normpath(target)
                problem = _absolute_path_problem(target) or (
                    "cannot mount over the container's root" if key == "/" else None)
                if problem:
                    self.error(f"{where}.mountPath", f"{_q(target)}: {problem}")
                    target = None
                elif key in targets:
                    self.error(f"{where}.mountPath",
                               f"{_q(target)} is already mounted by {targets[key]}")
                else:
                    targets[key] = where
            read_only = self.boolean(m.get("readOnly"), f"{where}.readOnly")
            sub_path = self.string(m.get("subPath"), f"{where}.subPath") or ""
            sub_path_expr = self.string(m.get("subPathExpr"), f"{where}.subPathExpr") or ""
            if sub_path and sub_path_expr:
                self.error(f"{where}.subPathExpr", "cannot be set together with subPath")
            for key, text in (("subPath", sub_path), ("subPathExpr", sub_path_expr)):
                problem = text and _relative_path_problem(text)
                if problem:
                    self.error(f"{where}.{key}", f"{_q(text)}: {problem}")
            if name is not None and target is not None:
                out.append(VolumeMount(name, target, bool(read_only), sub_path, sub_path_expr))
        return tuple(out)

    def resources(self, value, path):
        r = self.fields(value, path, _RESOURCES) or {}
        limits = self.resource_list(r.get("limits"), f"{path}.limits")
        requests = self.resource_list(r.get("requests"), f"{path}.requests")
        for key, amount in requests.items():
            if key in limits and amount > limits[key]:
                given = r["limits"][key]
                self.error(f"{path}.requests.{key}",
                           f"{_q(r['requests'][key])} must be less than or equal to the {key} "
                           f"limit ({_q(given)})")
        return Resources(limits, requests)

    def resource_list(self, value, path):
        out = {}
        for key, amount in self.mapping(value, path).items():
            where = _join(path, key)
            if key in ("memory", "cpu"):
                parsed = self.quantity(amount, where, key)
                if parsed is not None:
                    out[key] = parsed
            elif isinstance(key, str) and (key == "ephemeral-storage" or "/" in key
                                           or key.startswith("hugepages-")):
                self.error(where, "not supported (only memory and cpu)")
            else:
                self.error(where, "unknown resource" + _suggestion(str(key), ("memory", "cpu")))
        return out

    def ports(self, value, path):
        out, names = [], set()
        for i, raw in enumerate(self.items(value, path)):
            where = f"{path}[{i}]"
            p = self.fields(raw, where, _PORT)
            if p is None:
                continue
            port = self.integer(p.get("containerPort"), f"{where}.containerPort", 1, 65535,
                                required=True)
            host = self.integer(p.get("hostPort"), f"{where}.hostPort", 0, 65535) or 0
            protocol = self.choice(p.get("protocol"), f"{where}.protocol",
                                   ("TCP", "UDP", "SCTP")) or "TCP"
            name = self.string(p.get("name"), f"{where}.name") or ""
            if name:
                problem = _port_name_problem(name)
                if problem:
                    self.error(f"{where}.name", f"{_q(name)}: {problem}")
                elif name in names:
                    self.error(f"{where}.name", f"{_q(name)} names another port of this container")
                names.add(name)
            if port is None:
                continue
            if self.host_network:
                if host and host != port:
                    self.error(f"{where}.hostPort",
                               f"must equal containerPort ({port}) with hostNetwork")
                host = port
            if host:
                if (host, protocol) in self.host_ports:
                    self.error(f"{where}.hostPort",
                               f"{host}/{protocol} is already used by "
                               f"{self.host_ports[host, protocol]}")
                self.host_ports.setdefault((host, protocol), where)
            out.append(ContainerPort(port, host, protocol, name))
        return tuple(out)

    def probe(self, value, path, kind, port_names):
        if value is None:
            return None
        p = self.fields(value, path, _PROBE, "handler")
        if p is None:
            return None
        handler = self.handler(p, path, ("exec", "httpGet", "tcpSocket"), port_names)
        numbers = {key: self.integer(p.get(key), f"{path}.{key}", 0, _INT32_MAX)
                   for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds",
                               "successThreshold", "failureThreshold")}
        if kind != "readinessProbe" and numbers["successThreshold"] not in (None, 0, 1):
            self.error(f"{path}.successThreshold", f"must be 1 for a {kind}")
        grace = p.get("terminationGracePeriodSeconds")
        if grace is not None and kind == "readinessProbe":
            self.error(f"{path}.terminationGracePeriodSeconds",
                       "is not allowed in a readinessProbe")
        grace = self.integer(grace, f"{path}.terminationGracePeriodSeconds", minimum=1)
        if handler is None:
            return None
        # 0 is Kubernetes' "unset": the API server writes the defaults in its place.
        return Probe(handler,
                     initial_delay_seconds=numbers["initialDelaySeconds"] or 0,
                     timeout_seconds=numbers["timeoutSeconds"] or 1,
                     period_seconds=numbers["periodSeconds"] or 10,
                     success_threshold=numbers["successThreshold"] or 1,
                     failure_threshold=numbers["failureThreshold"] or 3,
                     termination_grace_period_seconds=grace)

    def lifecycle(self, value, path, port_names):
        hooks = self.fields(value, path, _LIFECYCLE) or {}
        found = []
        for key in ("postStart", "preStop"):
            handler = None
            if hooks.get(key) is not None:
                h = self.fields(hooks[key], f"{path}.{key}", _LIFECYCLE_HANDLER, "handler")
                if h is not None:
                    handler = self.handler(h, f"{path}.{key}", ("exec", "httpGet", "sleep"),
                                           port_names)
            found.append(handler)
        return tuple(found)

    def handler(self, h, path, kinds, port_names):
        given = [k for k in kinds if h.get(k) is not None]
        if len(given) != 1:
            got = f", got {', '.join(given)}" if given else ""
            self.error(path, f"exactly one handler is needed ({', '.join(kinds)}){got}")
            return None
        kind = given[0]
        where = f"{path}.{kind}"
        action = self.fields(h[kind], where, {"exec": _EXEC, "sleep": _SLEEP, "httpGet": _HTTP_GET,
                                              "tcpSocket": _TCP_SOCKET}[kind])
        if action is None:
            return None
        if kind == "exec":
            command = self.strings(action.get("command"), f"{where}.command")
            if command == ():
                self.error(f"{where}.command", "required")
            return Handler("exec", command=command) if command else None
        if kind == "sleep":
            seconds = self.integer(action.get("seconds"), f"{where}.seconds", 0, required=True)
            if seconds is not None and seconds > self.grace:
                self.error(f"{where}.seconds",
                           f"{seconds} must be at most terminationGracePeriodSeconds "
                           f"({self.grace})")
                return None
            return None if seconds is None else Handler("sleep", seconds=seconds)
        port = self.handler_port(action.get("port"), f"{where}.port", port_names)
        host = self.string(action.get("host"), f"{where}.host") or ""
        if kind == "tcpSocket":
            return None if port is None else Handler("tcpSocket", port=port, host=host)
        url_path = self.string(action.get("path"), f"{where}.path") or ""
        scheme = self.choice(action.get("scheme"), f"{where}.scheme", ("HTTP", "HTTPS")) or "HTTP"
        headers = []
        for i, raw in enumerate(self.items(action.get("httpHeaders"), f"{where}.httpHeaders")):
            at = f"{where}.httpHeaders[{i}]"
            header = self.fields(raw, at, _HEADER)
            if header is None:
                continue
            name = self.string(header.get("name"), f"{at}.name", required=True)
            if name is not None and not _HTTP_TOKEN.fullmatch(name):
                self.error(f"{at}.name", f"{_q(name)} is not a valid HTTP header name")
                name = None
            text = self.string(header.get("value"), f"{at}.value") or ""
            if name is not None:
                headers.append((name, text))
        if port is None:
            return None
        return Handler("httpGet", port=port, host=host, path=url_path, scheme=scheme,
                       headers=tuple(headers))

    def handler_port(self, value, path, port_names):
        if isinstance(value, str):
            problem = _port_name_problem(value)
            if problem:
                self.error(path, f"{_q(value)}: {problem}")
                return None
            if value not in port_names:
                self.error(path, f"{_q(value)} is not the name of one of this container's ports")
                return None
            return value
        return self.integer(value, path, 1, 65535, required=True)

    def security_context(self, value, path, pod_level):
        schema = _POD_SECURITY if pod_level else _CONTAINER_SECURITY
        s = self.fields(value, path, schema, "securityContext")
        if not s:
            return SecurityContext()
        ids = {key: self.integer(s.get(key), f"{path}.{key}", 0, _ID_MAX)
               for key in ("runAsUser", "runAsGroup", "fsGroup")}
        flags = {key: self.boolean(s.get(key), f"{path}.{key}")
                 for key in ("runAsNonRoot", "privileged", "allowPrivilegeEscalation",
                             "readOnlyRootFilesystem")}
        groups = []
        where = f"{path}.supplementalGroups"
        for i, group in enumerate(self.items(s.get("supplementalGroups"), where)):
            group = self.integer(group, f"{where}[{i}]", 0, _ID_MAX, required=True)
            if group is not None:
                groups.append(group)
        caps = self.fields(s.get("capabilities"), f"{path}.capabilities", _CAPABILITIES) or {}
        add = self.capabilities(caps.get("add"), f"{path}.capabilities.add")
        drop = self.capabilities(caps.get("drop"), f"{path}.capabilities.drop")
        if flags["allowPrivilegeEscalation"] is False:
            if flags["privileged"]:
                self.error(f"{path}.allowPrivilegeEscalation",
                           "cannot be false with privileged: true")
            if "SYS_ADMIN" in add:
                self.error(f"{path}.allowPrivilegeEscalation",
                           "cannot be false with the SYS_ADMIN capability added")
        profile, localhost = self.seccomp(s.get("seccompProfile"), f"{path}.seccompProfile")
        return SecurityContext(
            run_as_user=ids["runAsUser"], run_as_group=ids["runAsGroup"],
            run_as_non_root=flags["runAsNonRoot"], supplemental_groups=tuple(groups),
            fs_group=ids["fsGroup"], privileged=flags["privileged"],
            allow_privilege_escalation=flags["allowPrivilegeEscalation"],
            read_only_root_filesystem=flags["readOnlyRootFilesystem"],
            capabilities_add=add, capabilities_drop=drop, seccomp_profile=profile,
            seccomp_localhost_profile=localhost,
            sysctls=self.sysctls(s.get("sysctls"), f"{path}.sysctls"))

    def capabilities(self, value, path):
        names = self.strings(value, path) or ()
        out = []
        for i, raw in enumerate(names):
            name = raw.upper()
            name = name[len("CAP_"):] if name.startswith("CAP_") else name
            if name != "ALL" and name not in _CAPABILITY_NAMES:
                self.error(f"{path}[{i}]", f"{_q(raw)} is not a Linux capability"
                                           + _suggestion(name, _CAPABILITY_NAMES))
                continue
            out.append(name)
        return tuple(out)

    def seccomp(self, value, path):
        s = self.fields(value, path, _SECCOMP)
        if not s:
            return "", ""
        kind = self.choice(s.get("type"), f"{path}.type",
                           ("RuntimeDefault", "Unconfined", "Localhost"), required=True)
        localhost = self.string(s.get("localhostProfile"), f"{path}.localhostProfile") or ""
        if kind == "Localhost":
            problem = (_relative_path_problem(localhost) if localhost
                       else "required with type Localhost")
            if problem:
                self.error(f"{path}.localhostProfile", problem)
            else:
                self.error(f"{path}.type", "Localhost is not supported yet "
                                           "(use RuntimeDefault or Unconfined)")
        elif localhost:
            self.error(f"{path}.localhostProfile", "only allowed with type Localhost")
        return kind or "", localhost

    def sysctls(self, value, path):
        out, first = [], {}
        for i, raw in enumerate(self.items(value, path)):
            where = f"{path}[{i}]"
            s = self.fields(raw, where, _SYSCTL)
            if s is None:
                continue
            name = self.string(s.get("name"), f"{where}.name", required=True)
            text = self.string(s.get("value"), f"{where}.value")
            if text is None and s.get("value") is None:
                self.error(f"{where}.value", "required")
            if name is None:
                continue
            name = _sysctl_dots(name)
            problem = _sysctl_problem(name)
            if problem is None:
                namespace = _sysctl_namespace(name)
                if namespace is None:
                    problem = "is not namespaced: setting it would change the whole host"
                elif namespace == "net" and self.host_network:
                    problem = "cannot be set with hostNetwork: it would change the host's"
                elif namespace == "ipc" and self.host_ipc:
                    problem = "cannot be set with hostIPC: it would change the host's"
                elif name in first:
                    problem = f"is already set by {first[name]}"
            if problem is None and self.allowed_sysctls is not None:
                problem = sysctl_policy.problem(name, self.allowed_sysctls)
            if problem:
                self.error(f"{where}.name", f"{_q(name)} {problem}")
                continue
            first[name] = where
            if text is not None:
                out.append((name, text))
        return tuple(out)

    def host_aliases(self, value, path):
        out = []
        for i, raw in enumerate(self.items(value, path)):
            where = f"{path}[{i}]"
            a = self.fields(raw, where, _HOST_ALIAS)
            if a is None:
                continue
            ip = self.ip(a.get("ip"), f"{where}.ip")
            names = self.strings(a.get("hostnames"), f"{where}.hostnames") or ()
            good = True
            for j, name in enumerate(names):
                problem = _dns_subdomain_problem(name)
                if problem:
                    self.error(f"{where}.hostnames[{j}]", f"{_q(name)}: {problem}")
                    good = False
            if ip is not None and good:
                out.append(HostAlias(ip, names))
        return tuple(out)

    def dns_config(self, value, path):
        d = self.fields(value, path, _DNS_CONFIG)
        if not d:
            return None
        servers = [self.ip(s, f"{path}.nameservers[{i}]")
                   for i, s in enumerate(self.items(d.get("nameservers"), f"{path}.nameservers"))]
        if len(servers) > 3:
            self.error(f"{path}.nameservers", f"at most 3 are allowed, got {len(servers)}")
        searches = self.strings(d.get("searches"), f"{path}.searches") or ()
        if len(searches) > 32:
            self.error(f"{path}.searches", f"at most 32 are allowed, got {len(searches)}")
        if sum(len(s) for s in searches) + len(searches) - 1 > 2048:
            self.error(f"{path}.searches", "must be at most 2048 characters together")
        for i, search in enumerate(searches):
            problem = _dns_subdomain_problem(search[:-1] if search.endswith(".") else search)
            if problem:
                self.error(f"{path}.searches[{i}]", f"{_q(search)}: {problem}")
        options = []
        for i, raw in enumerate(self.items(d.get("options"), f"{path}.options")):
            o = self.fields(raw, f"{path}.options[{i}]", _DNS_OPTION)
            if o is None:
                continue
            name = self.string(o.get("name"), f"{path}.options[{i}].name", required=True)
            text = self.string(o.get("value"), f"{path}.options[{i}].value")
            if name is not None:
                options.append((name, text))
        return DNSConfig(tuple(s for s in servers if s), tuple(searches), tuple(options))

    def ip(self, value, path):
        import ipaddress  # only gated fields need it
        text = self.string(value, path, required=True)
        if text is None:
            return None
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            self.error(path, f"{_q(text)} is not an IP address")
            return None


def _empty(value):
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def _join(path, key):
    key = _key(key)
    return f"{path}.{key}" if path else key


def _key(key):
    """A mapping key as part of a field path: quoted when it would break the line."""
    return key if isinstance(key, str) and key.isprintable() else _q(key)


def _suggestion(key, candidates):
    import difflib  # only on the error path
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(key.lower(), lowered, n=1)
    return f' (did you mean "{lowered[close[0]]}"?)' if close else ""


def _kind(value):
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"),
                       (str, "a string"), (list, "a list"), (dict, "a mapping")):
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"


def _expected(what, value):
    message = f"must be {what}, got {_kind(value)}"
    if what == "a string" and isinstance(value, (bool, int, float)):
        # YAML made a number or a boolean of it: Kubernetes wants text.
        return f"{message} {_q(value)} (quote it if it is meant as text)"
    if what == "a boolean" and isinstance(value, str):
        return f"{message} {_q(value)} (write true or false, without quotes)"
    if what == "a list" and isinstance(value, dict):
        return f"{message} (start each item with '- ')"
    if isinstance(value, (bool, int, float, str)):
        return f"{message} {_q(value)}"
    return message


def _q(value):
    """A value as it appears in a message: strings quoted, YAML spelling for the rest."""
    if isinstance(value, str):
        import json  # only on the error path
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(_q(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    return _kind(value)


def _amount(resource, value):
    return quantity.format_bytes(value) if resource == "memory" else f"{value}m"


def _name_problem(name, check):
    if not isinstance(name, str):
        return f"must be a string, got {_kind(name)}"
    if not name:
        return "must not be empty"
    return check(name)


def _dns_label_problem(value):
    if len(value) > 63:
        return f"must be at most 63 characters (it has {len(value)})"
    if not _DNS_LABEL.fullmatch(value):
        return ("must be lowercase letters, digits and '-', starting and ending with a letter or "
                "digit (a DNS-1123 label)")
    return None


def _dns_subdomain_problem(value):
    if len(value) > 253:
        return f"must be at most 253 characters (it has {len(value)})"
    if not _DNS_SUBDOMAIN.fullmatch(value):
        return ("must be lowercase letters, digits, '-' and '.', starting and ending with a "
                "letter or digit (a DNS-1123 subdomain)")
    return None


def _qualified_name_problem(key):
    """Label and annotation keys: [prefix/]name, the prefix a DNS subdomain."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or "/" in prefix):
        return ("must be a name with an optional DNS subdomain prefix and '/', "
                "as in example.com/name")
    if slash:
        problem = _dns_subdomain_problem(prefix)
        if problem:
            return f"prefix {_q(prefix)} {problem}"
    if not name:
        return "the name part must not be empty"
    if len(name) > 63:
        return f"the name part must be at most 63 characters (it has {len(name)})"
    if not _QUALIFIED_NAME.fullmatch(name):
        return ("the name part must be letters, digits, '-', '_' and '.', starting and ending "
                "with a letter or digit")
    return None


def _label_value_problem(value):
    if len(value) > 63:
        return f"must be at most 63 characters (it has {len(value)})"
    if value and not _QUALIFIED_NAME.fullmatch(value):
        return ("must be letters, digits, '-', '_' and '.', starting and ending with a letter "
                "or digit")
    return None


def _env_name_problem(name):
    # Kubernetes' relaxed rule (RelaxedEnvironmentVariableValidation, on by default since 1.32).
    if any(not " " <= ch <= "~" or ch == "=" for ch in name):
        return "must be printable ASCII characters other than '='"
    return None


def _port_name_problem(name):
    if len(name) > 15:
        return f"must be at most 15 characters (it has {len(name)})"
    if not _PORT_NAME.fullmatch(name):
        return "must be lowercase letters, digits and '-'"
    if not re.search(r"[a-z]", name):
        return "must contain at least one letter"
    if name.startswith("-") or name.endswith("-") or "--" in name:
        return "must not start or end with '-' or have two in a row"
    return None


def _field_path_problem(field_path):
    if field_path in _FIELD_PATHS:
        return None
    subscripted = _SUBSCRIPTED_FIELD.fullmatch(field_path)
    if subscripted:
        problem = _qualified_name_problem(subscripted.group(2))
        return f"{_q(field_path)}: key {problem}" if problem else None
    if field_path in ("metadata.labels", "metadata.annotations"):
        return f"{_q(field_path)} needs a key in an environment variable, as in {field_path}['app']"
    return (f"{_q(field_path)} is not supported (supported: {', '.join(_FIELD_PATHS)}, "
            "metadata.labels['KEY'], metadata.annotations['KEY'])")


def _absolute_path_problem(path):
    if "\0" in path:
        return "must not contain a NUL character"
    if not path.startswith("/"):
        return "must be an absolute path"
    if ".." in path.split("/"):
        return "must not contain '..'"
    return None


def _relative_path_problem(path):
    if "\0" in path:
        return "must not contain a NUL character"
    if path.startswith("/"):
        return "must be a relative path"
    if ".." in path.split("/"):
        return "must not contain '..' (it would leave the volume)"
    return None


def _sysctl_dots(name):
    """net/ipv4/ip_forward -> net.ipv4.ip_forward, as Kubernetes converts a '/'-separated name
    (where a '.' is part of a component, such as an interface name)."""
    separator = re.search(r"[./]", name)
    if separator and separator.group() == "/":
        return name.translate(str.maketrans("./", "/."))
    return name


def _sysctl_problem(name):
    if len(name) > 253:
        return f"must be at most 253 characters (it has {len(name)})"
    if not _SYSCTL_NAME.fullmatch(name.replace("/", ".")):
        return "is not a sysctl name"
    return None


def _sysctl_namespace(name):
    if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
        return "ipc"
    if name.startswith("net."):
        return "net"
    return None

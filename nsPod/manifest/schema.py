"""The fields a Pod manifest may hold, and how each is treated.

Fields sort into five kinds: handled (validated by the rules_* modules), gated (in the contract,
refused with "not supported yet" until FEATURES says so), cluster-only (accepted with one
warning), known to Kubernetes but unsupported (refused), and unknown (refused, with a suggestion
when one is close). Data only: the tables every rule and `nspod generate` read.
"""


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
    "volume.configMap": True,
    "volume.secret": True,
    "volume.downwardAPI": True,
    "volume.projected": True,
    "volume.persistentVolumeClaim": True,
    "container.envFrom": True,
    "env.configMapKeyRef": True,
    "env.secretKeyRef": True,
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

NOT_YET_MESSAGES = {}

# Schemas: field -> None when handled, or (level, message) for what is not. A field absent
# from its schema is unknown.
IGNORED_HERE = ("warn", "ignored on a single host")
SERVER_SET = ("warn", "ignored (set by the API server)")
UNSUPPORTED = ("error", "not supported")
VOLUME_TYPE = ("error", "volume type not supported (supported: emptyDir, hostPath, configMap, "
                       "secret, downwardAPI, projected, persistentVolumeClaim)")


def default(*values, otherwise=UNSUPPORTED):
    """A field accepted silently at one of its API default values (stdin: false), checked by
    the other rule at any other (kubectl get -o yaml and helm charts write the defaults)."""
    return ("default", values, otherwise)


DOCUMENT = {"apiVersion": None, "kind": None, "metadata": None, "spec": None,
             "status": ("warn", "ignored")}
METADATA = {
    "name": None, "namespace": None, "labels": None, "annotations": None,
    "generateName": ("warn", "ignored: nspod needs metadata.name"),
    "uid": SERVER_SET, "resourceVersion": SERVER_SET, "generation": SERVER_SET,
    "creationTimestamp": SERVER_SET, "deletionTimestamp": SERVER_SET,
    "deletionGracePeriodSeconds": SERVER_SET, "selfLink": SERVER_SET,
    "managedFields": SERVER_SET,
    "ownerReferences": IGNORED_HERE, "finalizers": IGNORED_HERE,
}
SPEC = {
    **dict.fromkeys((
        "hostname", "subdomain", "setHostnameAsFQDN", "shareProcessNamespace", "hostNetwork",
        "hostIPC", "hostPID", "restartPolicy", "terminationGracePeriodSeconds",
        "activeDeadlineSeconds", "volumes", "initContainers", "containers", "resources",
        "hostAliases", "dnsPolicy", "dnsConfig", "securityContext")),
    **dict.fromkeys((
        "nodeSelector", "nodeName", "affinity", "tolerations",
        "priorityClassName", "imagePullSecrets",
        "topologySpreadConstraints", "readinessGates", "schedulingGates",
        "overhead"), IGNORED_HERE),
    "schedulerName": default("default-scheduler", otherwise=IGNORED_HERE),
    # the values the API server's admission fills in (kubectl get -o yaml shows them)
    "serviceAccountName": default("default", otherwise=IGNORED_HERE),
    "serviceAccount": default("default", otherwise=IGNORED_HERE),
    "priority": default(0, otherwise=IGNORED_HERE),
    "preemptionPolicy": default("PreemptLowerPriority", otherwise=IGNORED_HERE),
    "automountServiceAccountToken": default(False, otherwise=(
        "warn", "ignored: there is no API server, so no service account token")),
    # service links are environment variables for Services; a single host has none
    "enableServiceLinks": default(True, False),
    "hostUsers": default(True),
    "os": default({"name": "linux"}, otherwise=("error", "not supported (only os.name linux)")),
    **dict.fromkeys((
        "ephemeralContainers", "runtimeClassName", "resourceClaims",
        "hostnameOverride", "workloadRef"), UNSUPPORTED),
}
CONTAINER = {
    **dict.fromkeys((
        "name", "image", "command", "args", "env", "envFrom", "workingDir", "volumeMounts",
        "resources", "securityContext", "ports", "livenessProbe", "readinessProbe", "startupProbe",
        "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "restartPolicy")),
    "imagePullPolicy": None,        # honoured by `run` (nsPod/registry/pull.py ensure)
    **dict.fromkeys((
        "volumeDevices", "resizePolicy", "restartPolicyRules"), UNSUPPORTED),
    # `nspod attach` (docs/interface.md) writes into the stdin that stdin true keeps open,
    # and shows the pty that tty true allocates; stdinOnce closes it after the first attach.
    "stdin": None,
    "stdinOnce": None,
    "tty": None,
}
APP_CONTAINER = {
    **CONTAINER,
    "restartPolicy": ("error", "only init containers may set restartPolicy (native sidecars)"),
}
VOLUME = {
    "name": None, "emptyDir": None, "hostPath": None, "configMap": None, "secret": None,
    "persistentVolumeClaim": None, "projected": None, "downwardAPI": None,
    **dict.fromkeys((
        "ephemeral",
        "csi", "image", "nfs", "iscsi", "glusterfs", "rbd", "flexVolume", "cinder", "cephfs",
        "flocker", "fc", "azureFile", "azureDisk", "vsphereVolume", "quobyte",
        "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos", "gcePersistentDisk",
        "awsElasticBlockStore", "gitRepo"), VOLUME_TYPE),
}
EMPTY_DIR = {"medium": None, "sizeLimit": None}
HOST_PATH = {"path": None, "type": None}
MOUNT = {"name": None, "mountPath": None, "readOnly": None, "subPath": None,
          "subPathExpr": None, "mountPropagation": default("None"),
          "recursiveReadOnly": UNSUPPORTED}
ENV = {"name": None, "value": None, "valueFrom": None}
ENV_SOURCE = {"fieldRef": None, "resourceFieldRef": None, "configMapKeyRef": None,
               "secretKeyRef": None, "fileKeyRef": UNSUPPORTED}
KEY_REF = {"name": None, "key": None, "optional": None}
ENV_FROM = {"configMapRef": None, "secretRef": None, "prefix": None}
ENV_FROM_REF = {"name": None, "optional": None}
CONFIG_MAP_VOLUME = {"name": None, "items": None, "defaultMode": None, "optional": None}
SECRET_VOLUME = {"secretName": None, "items": None, "defaultMode": None, "optional": None}
DOWNWARD_VOLUME = {"items": None, "defaultMode": None}
PROJECTED_VOLUME = {"sources": None, "defaultMode": None}
PROJECTION = {"configMap": None, "secret": None, "downwardAPI": None,
               "serviceAccountToken": None,
               "clusterTrustBundle": UNSUPPORTED, "podCertificate": UNSUPPORTED}
PROJECTED_REF = {"name": None, "items": None, "optional": None}
PROJECTED_DOWNWARD = {"items": None}
KEY_TO_PATH = {"key": None, "path": None, "mode": None}
DOWNWARD_FILE = {"path": None, "fieldRef": None, "resourceFieldRef": None, "mode": None}
CLAIM_VOLUME = {"claimName": None, "readOnly": None}
FIELD_REF = {"apiVersion": None, "fieldPath": None}
RESOURCE_REF = {"containerName": None, "resource": None, "divisor": None}
RESOURCES = {"limits": None, "requests": None, "claims": UNSUPPORTED}
SECURITY_COMMON = dict.fromkeys(("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile"))
POD_SECURITY = {
    **SECURITY_COMMON,
    **dict.fromkeys(("supplementalGroups", "fsGroup", "sysctls")),
    **dict.fromkeys((
        "seLinuxOptions", "windowsOptions", "appArmorProfile", "fsGroupChangePolicy",
        "supplementalGroupsPolicy", "seLinuxChangePolicy"), UNSUPPORTED),
}
CONTAINER_SECURITY = {
    **SECURITY_COMMON,
    **dict.fromkeys((
        "privileged", "allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities")),
    **dict.fromkeys((
        "seLinuxOptions", "windowsOptions", "appArmorProfile", "procMount"), UNSUPPORTED),
}
CAPABILITIES = {"add": None, "drop": None}
SECCOMP = {"type": None, "localhostProfile": None}
SYSCTL = {"name": None, "value": None}
PORT = {"name": None, "containerPort": None, "hostPort": None, "protocol": None,
         "hostIP": default("0.0.0.0", "")}
PROBE = {
    **dict.fromkeys((
        "exec", "httpGet", "tcpSocket", "initialDelaySeconds", "timeoutSeconds",
        "periodSeconds", "successThreshold", "failureThreshold",
        "terminationGracePeriodSeconds")),
    "grpc": UNSUPPORTED,
}
LIFECYCLE = {"postStart": None, "preStop": None, "stopSignal": UNSUPPORTED}
LIFECYCLE_HANDLER = {"exec": None, "httpGet": None, "sleep": None,
                      "tcpSocket": ("error", "not supported (deprecated in lifecycle hooks)")}
EXEC = {"command": None}
HTTP_GET = {"path": None, "port": None, "host": None, "scheme": None, "httpHeaders": None}
TCP_SOCKET = {"port": None, "host": None}
SLEEP = {"seconds": None}
HEADER = {"name": None, "value": None}
HOST_ALIAS = {"ip": None, "hostnames": None}
DNS_CONFIG = {"nameservers": None, "searches": None, "options": None}
DNS_OPTION = {"name": None, "value": None}

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                    "CharDevice", "BlockDevice")
FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                "status.podIPs")
ENV_RESOURCES = ("limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu",
                  "requests.memory", "requests.ephemeral-storage")
# Kubernetes compares the divisor's canonical form with these lists.
CPU_DIVISORS = ("1m", "1")
SIZE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E",
                  "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
CAPABILITY_NAMES = frozenset((
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"))
# Sysctls the kernel keeps per namespace; any other would change the whole host.
IPC_SYSCTLS = frozenset((
    "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem"))
ID_MAX = 2**31 - 1
# The API's integer types: a field without a tighter bound is an int64, a probe's an int32.
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
ANNOTATIONS_MAX_BYTES = 256 * 1024

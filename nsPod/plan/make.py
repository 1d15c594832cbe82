"""Pod spec + config + facts about the host -> PodPlan: plain data the monitor executes.

Pure: no syscalls, no files. Everything the monitor and the container children need is
decided here, so it can be unit-tested without root.
"""
import math
import os

from nsPod.plan.records import Factory, record

# The pause process's own leaf cgroup under the pod's (cgroup v2 allows processes only in
# leaves). Not a DNS-1123 label, so no container can be called that.
PAUSE_CGROUP = "_pause"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHM_SIZE = 64 * 1024 * 1024  # Docker's and the kubelet's default /dev/shm size


@record
class VolumePlan:
    name: str
    kind: str             # "dir" (emptyDir on disk), "tmpfs" (emptyDir Memory), "host"
    path: str             # where it lives on the host
    size: int | None = None
    host_type: str = ""   # hostPath.type


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


def make_plan(pod, facts):
    namespaces = {
        "net": "host" if pod.host_network else "pod",
        # hostNetwork pods use the host's UTS namespace too, as the kubelet does.
        "uts": "host" if pod.host_network else "pod",
        "ipc": "host" if pod.host_ipc else "pod",
        "pid": "host" if pod.host_pid else "pod" if pod.share_process_namespace else "container",
    }
    volumes = [volume_plan(v, facts) for v in pod.volumes]
    etc = etc_files(pod, facts)
    need, asks = memory_need(pod)
    return PodPlan(
        name=pod.name,
        namespace=pod.namespace,
        uid=facts.uid,
        hostname=hostname_of(pod),
        namespaces=namespaces,
        volumes=volumes,
        init_containers=[container_plan(c, pod, volumes, facts, etc) for c in pod.init_containers],
        containers=[container_plan(c, pod, volumes, facts, etc) for c in pod.containers],
        restart_policy=pod.restart_policy,
        grace_seconds=pod.termination_grace_period_seconds,
        shm_path=os.path.join(facts.pod_dir, "shm") if namespaces["ipc"] == "pod" else "",
        state_root=facts.state_root,
        cgroup_parent=facts.cgroup_parent,
        pod_limits=pod_limits(pod),
        qos_class=qos_class(pod),
        memory_need=need,
        memory_asks=asks,
        network=network_plan(pod, facts),
        etc_files=etc,
        sysctls=[list(kv) for kv in pod.security_context.sysctls],
        host_ports=host_ports(pod),
        active_deadline_seconds=pod.active_deadline_seconds,
    )


def host_ports(pod):
    """Ports the monitor publishes on the host. hostNetwork pods listen on the host already."""
    if pod.host_network:
        return []
    return [[p.host_port, p.container_port, c.name]
            for c in pod.init_containers + pod.containers for p in c.ports if p.host_port]


def network_mode(pod):
    if pod.host_network:
        return "host"
    return "none" if pod.network == "none" else "bridge"


def network_plan(pod, facts):
    mode = network_mode(pod)
    if mode != "bridge":
        return {"mode": mode}
    return {"mode": mode, "bridge": facts.bridge, "subnet": facts.subnet, "ip": facts.pod_ip}


ETC_FILES = {"hosts": "/etc/hosts", "hostname": "/etc/hostname", "resolv.conf": "/etc/resolv.conf"}


def etc_files(pod, facts):
    """The pod's /etc/hosts, /etc/hostname and /etc/resolv.conf, as the kubelet writes them."""
    hostname = hostname_of(pod)
    if pod.host_network:
        hosts = facts.host_hosts.rstrip("\n") + "\n"
        hostname = facts.host_name
    else:
        hosts = ("# Kubernetes-managed hosts file.\n"
                 "127.0.0.1\tlocalhost\n"
                 "::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\n"
                 "fe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
        if facts.pod_ip:
            from nsPod.manifest.spec import host_domain
            domain = host_domain(pod)
            short = hostname.split(".")[0]
            names = "\t".join([f"{short}.{domain}", short] if domain else [short])
            hosts += f"{facts.pod_ip}\t{names}\n"
    if pod.host_aliases:
        hosts += "\n# Entries added by HostAliases.\n"
        for alias in pod.host_aliases:
            names = "\t".join(alias.hostnames)
            hosts += f"{alias.ip}\t{names}\n"
    return {"hosts": hosts, "hostname": hostname + "\n",
            "resolv.conf": resolv_conf(pod, facts.host_resolv_conf)}


def resolv_conf(pod, host_text):
    """dnsPolicy None: dnsConfig alone; any other: the host's (a single host has no cluster
    DNS, as with a kubelet without clusterDNS), merged with dnsConfig as the kubelet merges."""
    nameservers, searches, options = [], [], {}
    if pod.dns_policy != "None":
        for line in host_text.splitlines():
            words = line.split()
            if not words or words[0].startswith(("#", ";")):
                continue
            if words[0] == "nameserver" and len(words) > 1:
                nameservers.append(words[1])
            elif words[0] in ("search", "domain"):
                searches = words[1:]
            elif words[0] == "options":
                for opt in words[1:]:
                    name, _, value = opt.partition(":")
                    options[name] = value or None
    config = pod.dns_config
    if config:
        nameservers += [n for n in config.nameservers if n not in nameservers]
        searches += [s for s in config.searches if s not in searches]
        for name, value in config.options:
            options[name] = value
    lines = [f"nameserver {n}" for n in nameservers[:3]]
    if searches:
        lines.append("search " + " ".join(searches[:32]))
    if options:
        lines.append("options " + " ".join(n if v is None else f"{n}:{v}"
                                           for n, v in options.items()))
    return "\n".join(lines) + "\n"


def _total(containers, kind, key):
    """Sum over app containers, at least the largest init container (they run alone);
    None when any container is unbounded, as an unlimited container makes the pod so."""
    values = [getattr(c.resources, kind).get(key) for c in containers]
    if not values or any(v is None for v in values):
        return None
    return sum(values)


def pod_limits(pod):
    """The pod cgroup's limits: spec.resources when given, else what its containers add up to."""
    limits = {}
    for key, field_name in (("memory", "memory"), ("cpu", "cpu_millis")):
        value = pod.resources.limits.get(key)
        if value is None:
            value = _total(pod.containers, "limits", key)
            inits = [c.resources.limits.get(key) for c in pod.init_containers]
            if value is not None and inits:
                value = None if None in inits else max([value] + inits)
        if value is not None:
            limits[field_name] = value
    requested = pod.resources.requests.get("cpu")
    if requested is None:
        requested = sum(container_requests(c).get("cpu", 0) for c in pod.containers) or None
    if requested is not None:
        limits["cpu_request_millis"] = requested
    return limits


def container_requests(container):
    """Requests default to limits, as the API server's defaulting does."""
    return {**container.resources.limits, **container.resources.requests}


def container_limits(container):
    limits = {"oom_group": True}  # the kubelet's choice on cgroup v2: an OOM kill takes all
    if "memory" in container.resources.limits:
        limits["memory"] = container.resources.limits["memory"]
    if "cpu" in container.resources.limits:
        limits["cpu_millis"] = container.resources.limits["cpu"]
    if "cpu" in container_requests(container):
        limits["cpu_request_millis"] = container_requests(container)["cpu"]
    return limits


def memory_need(pod):
    """(bytes, [[container, bytes]]): what admission must find free for this pod."""
    if "memory" in pod.resources.limits:
        return pod.resources.limits["memory"], []
    asks = [[c.name, c.resources.limits["memory"]] for c in pod.containers
            if "memory" in c.resources.limits]
    limit = pod_limits(pod).get("memory")
    if limit is None:
        # Some container is unbounded: reserve what the bounded ones ask for.
        return sum(size for _, size in asks), asks
    return limit, asks


def qos_class(pod):
    from nsPod.manifest.qos import qos_class as compute
    return compute([(c.resources.limits, c.resources.requests)
                    for c in pod.init_containers + pod.containers])


def hostname_of(pod):
    from nsPod.manifest.spec import effective_hostname
    return effective_hostname(pod)


def volume_plan(volume, facts):
    if volume.kind == "hostPath":
        return VolumePlan(volume.name, "host", volume.host_path, host_type=volume.host_path_type)
    path = os.path.join(facts.pod_dir, "volumes", volume.name)
    kind = "tmpfs" if volume.medium == "Memory" else "dir"
    return VolumePlan(volume.name, kind, path, size=volume.size_limit)


def container_plan(container, pod, volumes, facts, etc=None):
    image = image_config(container, pod, facts)
    env = container_env(container, pod, facts)
    values = dict(env)
    argv = command_line(container, pod, values, image)
    sources = {v.name: v.path for v in volumes}
    mounts = []
    env_error = ""
    for i, m in enumerate(container.volume_mounts):
        sub_path = m.sub_path
        if m.sub_path_expr:
            sub_path = expand(m.sub_path_expr, values,
                              f"{container_path(container, pod)}.volumeMounts[{i}].subPathExpr")
            if "$(" in sub_path or sub_path.startswith("/") or ".." in sub_path.split("/"):
                env_error = (f"volumeMount {m.name} at {m.mount_path}: subPathExpr "
                             f"{m.sub_path_expr!r} expands to {sub_path!r}, not a relative path "
                             "inside the volume")
        mounts.append(MountPlan(m.name, sources[m.name], m.mount_path, sub_path, m.read_only))
    if container.termination_message_path:
        mounts.append(MountPlan("termination-log", termination_log(facts.pod_dir, container.name),
                                container.termination_message_path))
    # The pod's hosts files, unless the container mounts its own there (kept verbatim).
    targets = {m.target for m in mounts}
    for name, target in ETC_FILES.items():
        if etc is not None and target not in targets:
            mounts.append(MountPlan(f"etc-{name}", os.path.join(facts.pod_dir, "etc", name), target))
    return ContainerPlan(
        name=container.name,
        argv=argv,
        env=[list(kv) for kv in env],
        cwd=container.working_dir or image.get("workingDir") or "/",
        mounts=mounts,
        init=container.init,
        image=container.image,
        env_error=env_error,
        limits=container_limits(container),
        lifecycle=lifecycle_plan(container, facts),
        rootfs=image.get("rootfs", ""),
        security=security_plan(container, pod, image),
    )


# --- the root filesystem and the security context (store/images.py, kernel/container.py) ---

# What containerd's CRI and Docker give a container that asks for nothing (OCI defaults).
DEFAULT_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")


def container_path(container, pod):
    """The container's field path in the manifest, for errors found only now."""
    for key, group in (("initContainers", pod.init_containers), ("containers", pod.containers)):
        for i, c in enumerate(group):
            if c.name == container.name:
                return f"spec.{key}[{i}]"
    return f"container {container.name}"


def image_config(container, pod, facts):
    """What the container's image gives: {rootfs, entrypoint, cmd, env, workingDir, user}.

    {} for the host's root; a directory path is a root filesystem with nothing else; a name
    must be in the image store (facts.images), or the pod is refused before anything is made.
    """
    from nsPod.manifest.spec import image_is_path, image_reference
    image = container.image
    if not image:
        return {}
    if image_is_path(image):
        return {"rootfs": image}
    config = facts.images.get(image_reference(image))
    if config is None:
        from nsPod.errors import InputError
        raise InputError(f"{container_path(container, pod)}.image: {image!r} is not in nspod's "
                         f"image store (add it with: nspod image import {image} FILE|DIR)")
    problem = image_config_problem(config)
    if problem:
        from nsPod.errors import InputError
        raise InputError(f"{container_path(container, pod)}.image: {image!r}: the image's "
                         f"config is not usable: {problem}")
    return config


def image_config_problem(config):
    """None when an image's config has the shapes plan relies on, else what is wrong. The
    config comes from an image someone else built: it is input like a manifest."""
    if not isinstance(config, dict):
        return "is not a mapping"
    for key, kind in (("entrypoint", list), ("cmd", list), ("env", list),
                      ("workingDir", str), ("user", str)):
        name = key[0].upper() + key[1:]   # as the OCI config spells it
        value = config.get(key)
        if value is None:
            continue
        items = value if kind is list and isinstance(value, list) else [value]
        if not isinstance(value, kind) or not all(isinstance(v, str) for v in items):
            return f"{name} is not {'a list of strings' if kind is list else 'a string'}"
        if any("\0" in v for v in items):
            return f"{name} holds a NUL character"
        if sum(len(v.encode("utf-8", "surrogatepass")) + 1 for v in items) > ARGS_TOTAL_MAX:
            return f"{name} is longer than {ARGS_TOTAL_MAX >> 20} MiB"
    return None


def image_env(container, pod, facts):
    """The image's Env as a dict (KEY=VALUE strings; a bare KEY means an empty value)."""
    env = {}
    for item in image_config(container, pod, facts).get("env") or ():
        key, _, value = item.partition("=")
        if key:
            env[key] = value
    return env


def command_line(container, pod, values, image):
    """argv as Kubernetes makes it: command replaces the image's Entrypoint and args its Cmd;
    only the spec's own words are $(VAR)-expanded (the kubelet never sees the image's)."""
    path = container_path(container, pod)
    budget = [ARGS_TOTAL_MAX - sum(len(k) + len(v) + 2 for k, v in values.items())]
    command = [expand(a, values, f"{path}.command[{i}]", budget)
               for i, a in enumerate(container.command)]
    args = [expand(a, values, f"{path}.args[{i}]", budget) for i, a in enumerate(container.args)]
    if command:
        return command + args
    entrypoint = list(image.get("entrypoint") or ())
    cmd = [] if args else list(image.get("cmd") or ())
    argv = entrypoint + (args or cmd)
    if sum(len(a.encode("utf-8", "surrogatepass")) + 1 for a in entrypoint + cmd) > budget[0]:
        _too_long(f"{path}.image",
                  "the container's command, args and env expand to more than "
                  f"{ARGS_TOTAL_MAX >> 20} MiB, Linux's limit for a program's arguments and "
                  "environment together")
    if not argv:
        from nsPod.errors import InputError
        raise InputError(f"{container_path(container, pod)}.command: required: image "
                         f"{container.image!r} has no Entrypoint or Cmd to run")
    return argv


def capabilities(security_context):
    """The capability set as containerd's CRI computes it: the defaults; add ALL, then drop
    ALL, then the single adds, then the single drops (so add ALL + drop X is all but X)."""
    from nsPod.manifest.spec import _CAPABILITY_NAMES
    add, drop = security_context.capabilities_add, security_context.capabilities_drop
    caps = set(DEFAULT_CAPABILITIES)
    if "ALL" in add:
        caps = set(_CAPABILITY_NAMES)
    if "ALL" in drop:
        caps = set()
    caps |= {c for c in add if c != "ALL"}
    caps -= set(drop)
    return sorted(caps)


def security_plan(container, pod, image):
    """The container's security settings: its own securityContext over the pod's, over the
    image's USER. Read by container.apply_security (the container and `exec` alike)."""
    from nsPod.manifest.spec import _CAPABILITY_NAMES
    mine, pods = container.security_context, pod.security_context

    def pick(name):
        value = getattr(mine, name)
        return value if value is not None else getattr(pods, name)

    run_as_user, run_as_group = pick("run_as_user"), pick("run_as_group")
    image_user, _, image_group = (image.get("user") or "").partition(":")
    privileged = bool(mine.privileged)
    return {
        # Names (from an image's USER) are looked up in the container's own /etc/passwd.
        "user": image_user if run_as_user is None else str(run_as_user),
        "group": (str(run_as_group) if run_as_group is not None
                  else image_group if run_as_user is None else ""),
        "supplementalGroups": list(pods.supplemental_groups),
        "fsGroup": pods.fs_group,
        "runAsNonRoot": bool(pick("run_as_non_root")),
        "privileged": privileged,
        # Kubernetes: no_new_privs only when allowPrivilegeEscalation is explicitly false.
        "noNewPrivs": mine.allow_privilege_escalation is False,
        "readOnlyRootFilesystem": bool(mine.read_only_root_filesystem),
        "capabilities": sorted(_CAPABILITY_NAMES) if privileged else capabilities(mine),
        # Privileged containers run unconfined, as containerd runs them; unset is Unconfined.
        "seccomp": ("Unconfined" if privileged
                    else mine.seccomp_profile or pods.seccomp_profile or "Unconfined"),
    }


def termination_log(pod_dir, name):
    """The host file bound at the container's terminationMessagePath (its root is a tmpfs
    that is gone once the container has ended; this file stays for the monitor to read)."""
    return os.path.join(pod_dir, "termination", name)


def lifecycle_plan(container, facts):
    ports = {p.name: p.container_port for p in container.ports if p.name}

    def handler(h):
        if h is None:
            return None
        data = {"kind": h.kind, "command": list(h.command), "host": h.host, "path": h.path,
                "scheme": h.scheme, "headers": [list(x) for x in h.headers], "seconds": h.seconds}
        data["port"] = ports.get(h.port, h.port) if isinstance(h.port, str) else h.port
        return data

    def probe(p):
        if p is None:
            return None
        return {"handler": handler(p.handler), "initialDelaySeconds": p.initial_delay_seconds,
                "timeoutSeconds": p.timeout_seconds, "periodSeconds": p.period_seconds,
                "successThreshold": p.success_threshold, "failureThreshold": p.failure_threshold,
                "terminationGracePeriodSeconds": p.termination_grace_period_seconds}

    return {
        "restartPolicy": container.restart_policy,
        "startupProbe": probe(container.startup_probe),
        "livenessProbe": probe(container.liveness_probe),
        "readinessProbe": probe(container.readiness_probe),
        "postStart": handler(container.post_start),
        "preStop": handler(container.pre_stop),
        "terminationMessagePath": container.termination_message_path,
        "terminationMessagePolicy": container.termination_message_policy,
    }


def container_env(container, pod, facts):
    """The container's environment in order, as the kubelet makes it.

    Defaults first (what an image or the runtime would give), then the spec's variables in
    order; each value may refer to the ones defined before it with $(NAME).
    """
    # The image's Env is the base (its PATH first of all), as containerd makes it.
    env = {"PATH": DEFAULT_PATH, **image_env(container, pod, facts),
           "HOSTNAME": hostname_of(pod)}
    env.setdefault("HOME", "/root")
    path = container_path(container, pod)
    budget = [ARGS_TOTAL_MAX]
    for i, var in enumerate(container.env):
        if var.value is not None:
            env[var.name] = expand(var.value, env, f"{path}.env[{i}].value", budget)
        elif var.field_path:
            env[var.name] = field_value(var.field_path, pod, facts)
        elif var.resource:
            target = container
            if var.resource_container:
                target = next(c for c in pod.containers + pod.init_containers
                              if c.name == var.resource_container)
            env[var.name] = resource_value(var.resource, var.divisor, target, facts)
        else:
            env[var.name] = ""
    return list(env.items())


def field_value(path, pod, facts):
    if path.startswith("metadata.labels['") and path.endswith("']"):
        return pod.labels.get(path[len("metadata.labels['"):-2], "")
    if path.startswith("metadata.annotations['") and path.endswith("']"):
        return pod.annotations.get(path[len("metadata.annotations['"):-2], "")
    return {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": facts.uid,
        "spec.nodeName": facts.node_name,
        "spec.serviceAccountName": "",
        "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
        "status.podIP": facts.host_ip if pod.host_network else facts.pod_ip,
        "status.podIPs": facts.host_ip if pod.host_network else facts.pod_ip,
    }.get(path, "")


def resource_value(resource, divisor, container, facts):
    """resourceFieldRef as the kubelet computes it: limits default to the node's allocatable."""
    from nsPod.manifest.quantity import parse_quantity
    kind, _, name = resource.partition(".")
    values = container.resources.limits if kind == "limits" else container.resources.requests
    divisor_q = parse_quantity(divisor or "1")
    if name == "cpu":
        millis = values.get("cpu")
        if millis is None:
            millis = facts.node_cpus * 1000 if kind == "limits" else 0
        return str(math.ceil(millis / (divisor_q * 1000)))
    defaults = {"memory": facts.node_memory, "ephemeral-storage": facts.node_ephemeral_storage}
    amount = values.get(name)
    if amount is None:
        amount = defaults.get(name, 0) if kind == "limits" else 0
    return str(math.ceil(amount / divisor_q))


# What execve(2) takes, the bounds of $(VAR) expansion: one argument or environment string
# is at most MAX_ARG_STRLEN (32 pages, with its NUL), and all of them together at most 3/4 of
# _STK_LIM (6 MiB) whatever the stack limit. Expansion is single-pass as Kubernetes' is, but
# each value may use the ones before it, so 8 KB of doubling variables would ask for 2**40.
ARG_STRLEN_MAX = 32 * 4096 - 1
ARGS_TOTAL_MAX = 6 * 1024 * 1024


def expand(text, values, where="", budget=None):
    """Kubernetes' $(VAR) expansion: $$ is a literal $, unknown $(VAR) stays as written; the
    result is never expanded again. InputError naming `where` when the result is longer than
    one argv/env string may be, or than `budget` (a one-item list: what the container's
    argv and env may still use, decreased here)."""
    out = []
    size = 0
    i = 0
    unclosed = False
    while i < len(text):
        ch = text[i]
        piece, step = ch, 1
        if ch == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                piece, step = "$", 2
            elif nxt == "(" and not unclosed:
                end = text.find(")", i + 2)
                unclosed = end == -1    # then no later "$(" is closed either: stop looking
                if end != -1:
                    name = text[i + 2:end]
                    piece = values[name] if name in values else f"$({name})"
                    step = end + 1 - i
        out.append(piece)
        size += len(piece)
        if size > ARG_STRLEN_MAX:
            _too_long(where, f"expands to more than {ARG_STRLEN_MAX + 1 >> 10} KiB, Linux's "
                             "limit for one argument or environment string")
        i += step
    result = "".join(out)
    encoded = len(result.encode("utf-8", "surrogatepass"))
    if encoded > ARG_STRLEN_MAX:
        _too_long(where, f"expands to more than {ARG_STRLEN_MAX + 1 >> 10} KiB, Linux's "
                         "limit for one argument or environment string")
    if budget is not None:
        budget[0] -= encoded + 1
        if budget[0] < 0:
            _too_long(where, "the container's command, args and env expand to more than "
                             f"{ARGS_TOTAL_MAX >> 20} MiB, Linux's limit for a program's "
                             "arguments and environment together")
    return result


def _too_long(where, problem):
    from nsPod.errors import InputError
    raise InputError(f"{where}: {problem}" if where else problem)

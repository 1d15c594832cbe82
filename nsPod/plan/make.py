"""Pod spec + config + facts about the host -> PodPlan: plain data the monitor executes.

Pure: no syscalls, no files. Everything the monitor and the container children need is
decided here, so it can be unit-tested without root.
"""
import os

from nsPod.plan.containers import (  # noqa: F401 (re-exported: callers import them from here)
    DEFAULT_CAPABILITIES, capabilities, container_plan, container_requests, hostname_of,
    lifecycle_plan, security_plan, termination_log)
from nsPod.plan.expand import ARG_STRLEN_MAX, ARGS_TOTAL_MAX, expand  # noqa: F401
from nsPod.plan.model import (  # noqa: F401 (re-exported)
    DEFAULT_PATH, ETC_FILES, PAUSE_CGROUP, SHM_SIZE, ContainerPlan, Facts, MountPlan, PodPlan,
    VolumePlan, container_from_json)


def make_plan(pod, facts):
    namespaces = {
        "net": "host" if pod.host_network else "pod",
        # hostNetwork pods use the host's UTS namespace too, as the kubelet does.
        "uts": "host" if pod.host_network else "pod",
        "ipc": "host" if pod.host_ipc else "pod",
        "pid": "host" if pod.host_pid else "pod" if pod.share_process_namespace else "container",
    }
    volumes = [volume_plan(v, facts, pod) for v in pod.volumes]
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
            from nsPod.manifest.naming import host_domain
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


# Where a persistentVolumeClaim's volume lives: under the state root, outliving its pods.
# A claim is namespaced, as in Kubernetes: the default namespace's claim NAME is
# volumes/NAME (as before namespaces counted: nothing to migrate), another namespace's is
# volumes/_ns/NAMESPACE/NAME. `_ns` can be no claim's name ('_' is outside DNS-1123).
CLAIMS_DIR = "volumes"
NAMESPACED_CLAIMS = "_ns"


def claim_rel(namespace, claim):
    """The claim's directory relative to CLAIMS_DIR."""
    if namespace in ("", "default"):
        return claim
    return f"{NAMESPACED_CLAIMS}/{namespace}/{claim}"


def volume_plan(volume, facts, pod=None):
    if volume.kind == "hostPath":
        return VolumePlan(volume.name, "host", volume.host_path, host_type=volume.host_path_type)
    if volume.kind == "persistentVolumeClaim":
        return VolumePlan(volume.name, "claim",
                          os.path.join(facts.state_root, CLAIMS_DIR, claim_rel(
                              pod.namespace if pod is not None else "", volume.claim_name)),
                          read_only=volume.read_only)
    if volume.projections or volume.kind in ("configMap", "secret", "downwardAPI", "projected"):
        from nsPod.plan.files import volume_files
        # A Secret's data is never written to disk: its volume is a tmpfs.
        secret = any(p.kind == "secret" for p in volume.projections)
        return VolumePlan(volume.name, "secret" if secret else "files",
                          os.path.join(facts.pod_dir, "volumes", volume.name),
                          files=volume_files(volume, pod, facts),
                          group=pod.security_context.fs_group if pod is not None else None)
    path = os.path.join(facts.pod_dir, "volumes", volume.name)
    kind = "tmpfs" if volume.medium == "Memory" else "dir"
    return VolumePlan(volume.name, kind, path, size=volume.size_limit)

"""Pod sandboxes: a CRI PodSandboxConfig becomes an nspod pod with only its pause process
(as `nspod create` makes), restartPolicy Never (the kubelet decides restarts), and its CRI
record in cri.json; nspod's pods become PodSandbox messages (those `nspod run` made too,
labelled nspod.io/made-by=nspod)."""
import calendar
import dataclasses
import os
import time

from nsPod.errors import InputError, NspodError, SpecError
from nsPod.cri import checks, store
from nsPod.cri.protocol import log, pb

NODE, POD, CONTAINER, TARGET = 2, 0, 1, 3   # runtime.v1 NamespaceMode
NAMESPACED_SYSCTLS = ("kernel.shm*", "kernel.msg*", "kernel.sem", "fs.mqueue.*", "net.*")


def now_ns():
    return time.time_ns()


def rfc3339_ns(text):
    """nspod's RFC 3339 times (seconds, 'Z') as CRI's nanoseconds; 0 when absent."""
    if not text:
        return 0
    try:
        base = text.rstrip("Z").split(".")[0]
        return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) * 10**9
    except ValueError:
        return 0


def manifest_of(config):
    """(nspod pod name, the Pod document, the CRI record) for a PodSandboxConfig, every
    field checked (InputError names it)."""
    md = config.metadata
    name = checks.name(md.name, "config.metadata.name")
    namespace = checks.namespace(md.namespace, "config.metadata.namespace")
    uid = checks.text(md.uid, "config.metadata.uid", 128)
    checks.number(md.attempt, "config.metadata.attempt", 0, 2**32 - 1)
    pod_name = checks.nspod_name(f"{name}", namespace, uid, md.attempt, limit=253)
    labels = checks.labels(config.labels, "config.labels")
    annotations = checks.labels(config.annotations, "config.annotations")
    log_directory = checks.absolute_path(config.log_directory, "config.log_directory",
                                         allow_empty=True)
    spec = {"restartPolicy": "Never", "containers": [], "terminationGracePeriodSeconds": 30}
    if config.hostname:
        spec["hostname"] = checks.text(config.hostname, "config.hostname", 63)
    elif checks.LABEL_RE.fullmatch(name) and len(name) <= 63:
        spec["hostname"] = name     # as Kubernetes names a pod's host: its name
    linux = config.linux
    sc = linux.security_context
    ns = sc.namespace_options
    for field, mode in (("network", ns.network), ("pid", ns.pid), ("ipc", ns.ipc)):
        if mode not in (NODE, POD, CONTAINER):
            raise InputError(f"config.linux.security_context.namespace_options.{field}: "
                             f"mode {mode} is not NODE, POD or CONTAINER")
    if ns.network == NODE:
        spec["hostNetwork"] = True
    if ns.pid == NODE:
        spec["hostPID"] = True
    elif ns.pid == POD:
        spec["shareProcessNamespace"] = True
    if ns.ipc == NODE:
        spec["hostIPC"] = True
    if ns.HasField("userns_options") and ns.userns_options.mode not in (NODE,):
        raise InputError("config.linux.security_context.namespace_options.userns_options: "
                         "user namespaces are not supported (nspod runs without them)")
    security = {}
    if linux.sysctls:
        security["sysctls"] = [{"name": checks.text(k, "config.linux.sysctls key", 253, False),
                                "value": checks.text(v, f"config.linux.sysctls[{k!r}]", 4096)}
                               for k, v in sorted(linux.sysctls.items())]
    if sc.supplemental_groups:
        security["supplementalGroups"] = [
            checks.number(g, "config.linux.security_context.supplemental_groups", 0, 2**31 - 1)
            for g in sc.supplemental_groups]
    if security:
        spec["securityContext"] = security
    dns = config.dns_config
    if dns.servers or dns.searches or dns.options:
        spec["dnsPolicy"] = "None"
        spec["dnsConfig"] = {
            "nameservers": [checks.text(s, "config.dns_config.servers", 64) for s in dns.servers],
            "searches": [checks.text(s, "config.dns_config.searches", 253) for s in dns.searches],
            "options": [_dns_option(o) for o in dns.options]}
    port_mappings = []
    for i, p in enumerate(config.port_mappings):
        at = f"config.port_mappings[{i}]"
        checks.number(p.container_port, f"{at}.container_port", 0, 65535)
        checks.number(p.host_port, f"{at}.host_port", 0, 65535)
        if p.host_ip:
            import ipaddress
            try:
                ipaddress.IPv4Address(p.host_ip)
            except ValueError:
                raise InputError(f"{at}.host_ip: {p.host_ip!r} is not an IPv4 address") from None
        if p.protocol not in (0, 1, 2):
            raise InputError(f"{at}.protocol: {p.protocol} is not TCP, UDP or SCTP")
        port_mappings.append({"container_port": p.container_port, "host_port": p.host_port,
                              "host_ip": p.host_ip, "protocol": p.protocol})
    if linux.cgroup_parent:
        checks.text(linux.cgroup_parent, "config.linux.cgroup_parent", 4096)
    manifest = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": namespace,
                             "annotations": {"nspod.io/network":
                                             "bridge" if ns.network != NODE else "none"}},
                "spec": spec}
    if ns.network == NODE:
        del manifest["metadata"]["annotations"]
    record = {"sandbox": {"metadata": {"name": name, "namespace": md.namespace, "uid": uid,
                                       "attempt": md.attempt},
                          "labels": labels, "annotations": annotations,
                          "log_directory": log_directory, "created_ns": now_ns(),
                          "runtime_handler": "", "port_mappings": port_mappings,
                          "namespace_options": {"network": ns.network, "pid": ns.pid,
                                                "ipc": ns.ipc}},
              "containers": {}}
    return pod_name, manifest, record


def _dns_option(option):
    checks.text(option, "config.dns_config.options", 253, allow_empty=False)
    key, _, value = option.partition(":")
    return {"name": key, "value": value} if value else {"name": key}


def run(cfg, config, hostports):
    """RunPodSandbox: the pod made and started, its host ports published; returns it."""
    from nsPod.api import pods
    from nsPod.manifest import spec
    pod_name, manifest, record = manifest_of(config)
    try:
        pod, _ = spec.pod_from_dict(manifest, allow_no_containers=True)
    except SpecError as e:
        raise InputError("config: " + "; ".join(e.problems)) from None
    wanted = hostports.wanted(record["sandbox"]["port_mappings"])
    if wanted and manifest["spec"].get("hostNetwork"):
        wanted = []     # host network: the container's port is the host's already
    listeners = hostports.bind(wanted)   # a taken port refuses the sandbox: nothing made
    # The kubelet is the sysctl policy (its --allowed-unsafe-sysctls): every namespaced one.
    cfg = dataclasses.replace(cfg, allowed_unsafe_sysctls=NAMESPACED_SYSCTLS)
    try:
        with store.mutation_lock:
            pods.run(cfg, pod)
            made = store.load_pod(cfg.root, pod_name)
            made.record = record
            try:
                made.save_record()
            except (OSError, NspodError):
                pods.remove(cfg, [pod_name], force=True, timeout=0)
                raise
    except BaseException:
        for s in listeners:
            s.close()
        raise
    if listeners:
        hostports.publish(made.id, listeners, wanted, made.state.get("podIP") or
                          made.plan.get("network", {}).get("ip", ""))
    return made


def republish(cfg, hostports):
    """At the server's start: the host ports of its ready sandboxes (a port taken meanwhile
    is logged; that sandbox goes without it)."""
    for pod in store.all_pods(cfg.root):
        mappings = pod.record.get("sandbox", {}).get("port_mappings") or []
        if not mappings or not pod.ready():
            continue
        try:
            wanted = hostports.wanted(mappings)
            listeners = hostports.bind(wanted)
        except NspodError as e:
            log.warning("sandbox %s: its host ports: %s", pod.id, e)
            continue
        hostports.publish(pod.id, listeners, wanted, pod.state.get("podIP") or "")


def stop(cfg, pod, hostports):
    from nsPod.api import pods
    hostports.unpublish(pod.id)
    with store.mutation_lock:
        if pod.dir.monitor_alive():
            pods.stop(cfg, pod.name, timeout=None)
        if pod.cri_made:
            pod.record["sandbox"]["stopped"] = True
            pod.save_record()


def remove(cfg, pod, hostports):
    from nsPod.api import pods
    hostports.unpublish(pod.id)
    with store.mutation_lock:
        for _, name, record, _ in pod.containers():
            store.unlink_log(record)
        _, errors = pods.remove(cfg, [pod.name], force=True, timeout=0)
        if errors:
            raise errors[0]


def metadata_of(pod):
    s = pod.record.get("sandbox")
    if s:
        m = s["metadata"]
        return pb.PodSandboxMetadata(name=m["name"], namespace=m["namespace"], uid=m["uid"],
                                     attempt=m["attempt"])
    return pb.PodSandboxMetadata(name=pod.name, namespace=pod.plan["namespace"],
                                 uid=pod.plan["uid"], attempt=0)


def labels_of(pod):
    s = pod.record.get("sandbox")
    if s:
        return dict(s["labels"])
    labels = {k: str(v) for k, v in
              ((pod.doc["manifest"].get("metadata") or {}).get("labels") or {}).items()}
    labels[store.MADE_BY_LABEL] = "nspod"
    return labels


def annotations_of(pod):
    s = pod.record.get("sandbox")
    if s:
        return dict(s["annotations"])
    return {k: str(v) for k, v in
            ((pod.doc["manifest"].get("metadata") or {}).get("annotations") or {}).items()}


def created_ns(pod):
    s = pod.record.get("sandbox")
    return s["created_ns"] if s else rfc3339_ns(pod.doc.get("created"))


def sandbox_message(pod):
    return pb.PodSandbox(
        id=pod.id, metadata=metadata_of(pod),
        state=pb.SANDBOX_READY if pod.ready() else pb.SANDBOX_NOTREADY,
        created_at=created_ns(pod), labels=labels_of(pod), annotations=annotations_of(pod))


def status_message(pod, verbose=False):
    ip = pod.state.get("podIP") or pod.plan.get("network", {}).get("ip", "")
    namespaces = pod.plan.get("namespaces", {})
    mode = {"pod": POD, "host": NODE, "container": CONTAINER}
    options = pb.NamespaceOption(network=mode.get(namespaces.get("net"), POD),
                                 pid=mode.get(namespaces.get("pid"), CONTAINER),
                                 ipc=mode.get(namespaces.get("ipc"), POD))
    status = pb.PodSandboxStatus(
        id=pod.id, metadata=metadata_of(pod),
        state=pb.SANDBOX_READY if pod.ready() else pb.SANDBOX_NOTREADY,
        created_at=created_ns(pod),
        network=pb.PodSandboxNetworkStatus(ip=ip if pod.ready() else ""),
        linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=options)),
        labels=labels_of(pod), annotations=annotations_of(pod))
    info = {}
    if verbose:
        import json
        runtime = {"name": pod.name, "stateDir": pod.dir.path,
                   "pausePid": (pod.state.get("pause").pid if pod.state.get("pause") else None),
                   "cgroup": pod.state.get("cgroup"), "phase": pod.state.get("phase")}
        info["info"] = json.dumps(runtime)
    return status, info


def matches(pod, flt):
    """ListPodSandbox's filter: id (prefix), state, label selector (all must equal)."""
    if flt is None:
        return True
    if flt.id and not pod.id.startswith(flt.id):
        return False
    ready = pod.ready()
    if flt.HasField("state") and flt.state.state != (pb.SANDBOX_READY if ready
                                                     else pb.SANDBOX_NOTREADY):
        return False
    labels = labels_of(pod)
    return all(labels.get(k) == v for k, v in flt.label_selector.items())


def log_directory(pod):
    return pod.record.get("sandbox", {}).get("log_directory", "")


def exists_path(path):
    return os.path.lexists(path)

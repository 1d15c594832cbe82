"""Rules for the pod as a whole: metadata, the pod-level fields, DNS, and the ties between
containers (pod resources). validate_pod builds the Context once its facts are read.
"""
from nsPod.manifest.check import Context, amount_text, key_text
from nsPod.manifest.model import DNSConfig, HostAlias, NETWORK_ANNOTATION, Pod
from nsPod.manifest.naming import FQDN_MAX, effective_hostname
from nsPod.manifest.schema import (
    ANNOTATIONS_MAX_BYTES, DNS_CONFIG, DNS_OPTION, DNS_POLICIES, DOCUMENT, FEATURES, HOST_ALIAS,
    METADATA, RESTART_POLICIES, SPEC)
from nsPod.manifest.syntax import (
    dns_label_problem, dns_subdomain_problem, kind_of, label_value_problem, q,
    qualified_name_problem)
from nsPod.manifest.rules_containers import validate_containers, validate_resources
from nsPod.manifest.rules_security import validate_security_context
from nsPod.manifest.rules_volumes import validate_volumes


def validate_pod(doc, report, name_override, require_kind, need_containers,
                 allowed_sysctls=None):
    """The Pod in doc, or None; every problem noted in report, in the order of the fields. The
    pod-level facts are read first; the Context is built from them once, and volumes and
    containers are checked against it."""
    note = report
    if not isinstance(doc, dict):
        note.error("", f"a Pod manifest must be a mapping, got {kind_of(doc)}")
        return None
    if not validate_kind(doc, require_kind, note):
        return None
    note.fields(doc, "", DOCUMENT)
    meta = note.fields(doc.get("metadata"), "metadata", METADATA)
    manifest = doc
    if meta is not None and name_override is not None:
        meta = {**meta, "name": name_override}
        manifest = {**doc, "metadata": meta}
    # metadata that is not a mapping was reported: its name is not also "required"
    name = None if meta is None else validate_pod_name(meta, name_override is not None, note)
    meta = meta or {}
    namespace = meta.get("namespace")
    if namespace is None or namespace == "":
        namespace = "default"
    namespace = note.name(namespace, "metadata.namespace", dns_label_problem)
    labels = validate_string_map(meta.get("labels"), "metadata.labels", note,
                                 label_value_problem)
    annotations = validate_string_map(meta.get("annotations"), "metadata.annotations", note)
    if sum(len(k) + len(v) for k, v in annotations.items()) > ANNOTATIONS_MAX_BYTES:
        note.error("metadata.annotations",
                   f"must be at most {ANNOTATIONS_MAX_BYTES} bytes in all")
    if "spec" not in doc or doc["spec"] is None:
        note.error("spec", "required")
        return None
    spec = note.fields(doc["spec"], "spec", SPEC, "spec")
    if spec is None:
        return None

    hostname = validate_label(spec.get("hostname"), "spec.hostname", note)
    subdomain = validate_label(spec.get("subdomain"), "spec.subdomain", note)
    flags = {key: note.boolean(spec.get(key), f"spec.{key}") or False
             for key in ("setHostnameAsFQDN", "shareProcessNamespace", "hostNetwork",
                         "hostIPC", "hostPID")}
    if flags["shareProcessNamespace"] and flags["hostPID"]:
        note.error("spec.shareProcessNamespace", "cannot be combined with hostPID")
    if flags["hostNetwork"]:
        for key in ("hostname", "subdomain"):
            if spec.get(key):
                note.warn(f"spec.{key}",
                          "ignored with hostNetwork (the pod has the host's name)")
    network = validate_network(annotations, flags["hostNetwork"], note)
    restart_policy = validate_restart_policy(spec.get("restartPolicy"), note)
    grace = note.integer(spec.get("terminationGracePeriodSeconds"),
                         "spec.terminationGracePeriodSeconds", minimum=0)
    ctx = Context(
        report=report, grace=30 if grace is None else grace,
        host_network=flags["hostNetwork"], host_ipc=flags["hostIPC"],
        volume_names=frozenset(_names(spec.get("volumes"))),
        container_names=frozenset(_names(spec.get("initContainers"))
                                  | _names(spec.get("containers"))),
        allowed_sysctls=allowed_sysctls, names={}, host_ports={})

    deadline = note.integer(spec.get("activeDeadlineSeconds"), "spec.activeDeadlineSeconds",
                            minimum=1)
    dns_policy = note.choice(spec.get("dnsPolicy"), "spec.dnsPolicy", DNS_POLICIES)
    dns_config = validate_dns_config(spec.get("dnsConfig"), "spec.dnsConfig", ctx)
    if dns_policy == "None" and not (dns_config and dns_config.nameservers):
        note.error("spec.dnsConfig",
                   "dnsPolicy None needs dnsConfig with at least one nameserver")
    host_aliases = validate_host_aliases(spec.get("hostAliases"), "spec.hostAliases", ctx)
    security = validate_security_context(spec.get("securityContext"), "spec.securityContext",
                                         pod_level=True, ctx=ctx)
    volumes = validate_volumes(spec.get("volumes"), "spec.volumes", ctx)
    init_containers = validate_containers(spec.get("initContainers"), "spec.initContainers",
                                          True, ctx)
    if need_containers and spec.get("containers") in (None, []):
        note.error("spec.containers", "required: at least one container")
    containers = validate_containers(spec.get("containers"), "spec.containers", False, ctx)
    resources = validate_resources(spec.get("resources"), "spec.resources", ctx)
    validate_pod_resources(resources, init_containers, containers, ctx)

    if name is None or namespace is None:
        return None
    pod = Pod(
        name=name, namespace=namespace, labels=labels, annotations=annotations,
        hostname=hostname, subdomain=subdomain,
        set_hostname_as_fqdn=flags["setHostnameAsFQDN"],
        share_process_namespace=flags["shareProcessNamespace"],
        host_network=flags["hostNetwork"], host_ipc=flags["hostIPC"],
        host_pid=flags["hostPID"], restart_policy=restart_policy,
        termination_grace_period_seconds=ctx.grace, volumes=volumes,
        init_containers=init_containers, containers=containers, manifest=manifest,
        network=network, active_deadline_seconds=deadline, resources=resources,
        host_aliases=host_aliases, dns_policy=dns_policy or "ClusterFirst",
        dns_config=dns_config, security_context=security)
    fqdn = effective_hostname(pod)
    if pod.set_hostname_as_fqdn and len(fqdn) > FQDN_MAX:
        note.error("spec.setHostnameAsFQDN",
                   f"the FQDN {q(fqdn)} is {len(fqdn)} characters; "
                   f"at most {FQDN_MAX} are allowed")
    return pod


def _names(listed):
    """The string names in a raw list of objects (volumes, containers), before they are
    checked: what the other fields may refer to."""
    return {item["name"] for item in (listed if isinstance(listed, list) else ())
            if isinstance(item, dict) and isinstance(item.get("name"), str)}


def validate_kind(doc, required, note):
    """False (reported) when the document is not a v1 Pod: checking it further would only
    list the other kind's fields as unknown."""
    good = True
    for key, want in (("apiVersion", "v1"), ("kind", "Pod")):
        value = doc.get(key)
        if value is None and not required:
            continue
        if value is None:
            note.error(key, f"required ({want})")
            good = False
        elif value != want:
            note.error(key, f"{q(value)} is not supported (only {want})")
            good = False
    return good


def validate_pod_name(meta, overridden, note):
    name = meta.get("name")
    if name is None:
        note.error("metadata.name", "required")
        return None
    text = note.string(name, "metadata.name", required=True)
    if text is None:
        return None
    problem = dns_subdomain_problem(text)
    if problem:
        origin = " (from --name)" if overridden else ""
        note.error("metadata.name", f"{q(text)}{origin}: {problem}")
        return None
    return text


def validate_label(value, path, note):
    """An optional DNS-1123 label ("" when absent or invalid)."""
    text = note.string(value, path)
    if text:
        problem = dns_label_problem(text)
        if problem:
            note.error(path, f"{q(text)}: {problem}")
            return ""
    return text or ""


def validate_string_map(value, path, note, value_problem=None):
    """labels or annotations: qualified-name keys to string values."""
    out = {}
    for key, item in note.mapping(value, path).items():
        where = f"{path}[{key_text(key)}]"
        if not isinstance(key, str):
            note.error(path, f"key {q(key)} must be a string (quote it)")
            continue
        problem = qualified_name_problem(key)
        if problem:
            note.error(where, f"key {q(key)}: {problem}")
            continue
        text = "" if item is None else note.string(item, where)
        if text is None:
            continue
        problem = value_problem and value_problem(text)
        if problem:
            note.error(where, f"{q(text)}: {problem}")
            continue
        out[key] = text
    return out


def validate_network(annotations, host_network, note):
    value = annotations.get(NETWORK_ANNOTATION)
    if value is None:
        return "bridge"
    path = f"metadata.annotations[{NETWORK_ANNOTATION}]"
    if value not in ("bridge", "none"):
        note.error(path, f"{q(value)} is not one of: bridge, none")
        return "bridge"
    if host_network:
        note.error(path, "cannot be combined with hostNetwork")
    return value


def validate_restart_policy(value, note):
    path = "spec.restartPolicy"
    allowed = [p for p in RESTART_POLICIES if FEATURES[f"spec.restartPolicy={p}"]]
    advice = f"set restartPolicy: {allowed[-1]}"
    if value is None:
        if "Always" not in allowed:
            note.error(path, "not set, and its Kubernetes default Always is not supported "
                             f"yet; {advice}")
        return "Always"
    policy = note.choice(value, path, RESTART_POLICIES)
    if policy is not None and policy not in allowed:
        note.error(path, f"{policy} is not supported yet (only {', '.join(allowed)}); {advice}")
    return policy or "Always"


def validate_pod_resources(resources, init_containers, containers, ctx):
    """Pod-level resources hold the containers', as Kubernetes requires."""
    note = ctx.report
    if not (resources.limits or resources.requests):
        return
    running = [c for c in containers + init_containers if not c.init or c.restart_policy]
    for key in ("memory", "cpu"):
        want = resources.requests.get(key)
        total = sum(c.resources.requests.get(key, 0) for c in running)
        if want is not None and want < total:
            note.error(f"spec.resources.requests.{key}",
                       "must be at least the containers' requests together "
                       f"({amount_text(key, total)})")
    paths = [(f"spec.initContainers[{i}]", c) for i, c in enumerate(init_containers)]
    paths += [(f"spec.containers[{i}]", c) for i, c in enumerate(containers)]
    validate_within_pod_limits(paths, resources, ctx)


def validate_within_pod_limits(containers, resources, ctx):
    note = ctx.report
    for path, c in containers:
        for key, limit in c.resources.limits.items():
            pod_limit = resources.limits.get(key)
            if pod_limit is not None and limit > pod_limit:
                note.error(f"{path}.resources.limits.{key}",
                           f"must not exceed the pod's limit ({amount_text(key, pod_limit)})")


def validate_host_aliases(value, path, ctx):
    note = ctx.report
    out = []
    for i, raw in enumerate(note.items(value, path)):
        where = f"{path}[{i}]"
        a = note.fields(raw, where, HOST_ALIAS)
        if a is None:
            continue
        ip = validate_ip(a.get("ip"), f"{where}.ip", ctx)
        names = note.strings(a.get("hostnames"), f"{where}.hostnames") or ()
        good = True
        for j, name in enumerate(names):
            problem = dns_subdomain_problem(name)
            if problem:
                note.error(f"{where}.hostnames[{j}]", f"{q(name)}: {problem}")
                good = False
        if ip is not None and good:
            out.append(HostAlias(ip, names))
    return tuple(out)


def validate_dns_config(value, path, ctx):
    note = ctx.report
    d = note.fields(value, path, DNS_CONFIG)
    if not d:
        return None
    servers = [validate_ip(s, f"{path}.nameservers[{i}]", ctx)
               for i, s in enumerate(note.items(d.get("nameservers"), f"{path}.nameservers"))]
    if len(servers) > 3:
        note.error(f"{path}.nameservers", f"at most 3 are allowed, got {len(servers)}")
    searches = note.strings(d.get("searches"), f"{path}.searches") or ()
    if len(searches) > 32:
        note.error(f"{path}.searches", f"at most 32 are allowed, got {len(searches)}")
    if sum(len(s) for s in searches) + len(searches) - 1 > 2048:
        note.error(f"{path}.searches", "must be at most 2048 characters together")
    for i, search in enumerate(searches):
        problem = dns_subdomain_problem(search[:-1] if search.endswith(".") else search)
        if problem:
            note.error(f"{path}.searches[{i}]", f"{q(search)}: {problem}")
    options = []
    for i, raw in enumerate(note.items(d.get("options"), f"{path}.options")):
        o = note.fields(raw, f"{path}.options[{i}]", DNS_OPTION)
        if o is None:
            continue
        name = note.string(o.get("name"), f"{path}.options[{i}].name", required=True)
        text = note.string(o.get("value"), f"{path}.options[{i}].value")
        if name is not None:
            options.append((name, text))
    return DNSConfig(tuple(s for s in servers if s), tuple(searches), tuple(options))


def validate_ip(value, path, ctx):
    note = ctx.report
    import ipaddress  # only gated fields need it
    text = note.string(value, path, required=True)
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        note.error(path, f"{q(text)} is not an IP address")
        return None

"""Rules for one container: name, image, command, env, mounts, resources, ports, and the
parts that rules_handlers and rules_security check.
"""
import posixpath

from nsPod.manifest import quantity
from nsPod.manifest.check import empty, join_path, suggestion
from nsPod.manifest.model import (
    Container, ContainerPort, DEFAULT_TERMINATION_MESSAGE_PATH, EnvFrom, EnvVar, Resources,
    VolumeMount)
from nsPod.manifest.naming import IMAGE_PULL_POLICIES, image_problem
from nsPod.manifest.rules_handlers import validate_lifecycle, validate_probe
from nsPod.manifest.rules_security import validate_security_context
from nsPod.manifest.schema import (
    APP_CONTAINER, CONTAINER, CPU_DIVISORS, ENV, ENV_FROM, ENV_FROM_REF, ENV_RESOURCES,
    ENV_SOURCE, FIELD_REF, KEY_REF, MOUNT, PORT, RESOURCES, RESOURCE_REF, SIZE_DIVISORS)
from nsPod.manifest.sources import key_problem
from nsPod.manifest.syntax import (
    absolute_path_problem, dns_label_problem, dns_subdomain_problem, env_name_problem,
    field_path_problem,
    port_name_problem, q, relative_path_problem)


def validate_containers(value, path, init, ctx):
    note = ctx.report
    out = []
    for i, raw in enumerate(note.items(value, path)):
        container = validate_container(raw, f"{path}[{i}]", init, ctx)
        if container is not None:
            out.append(container)
    return tuple(out)


def validate_container(raw, path, init, ctx):
    note = ctx.report
    c = note.fields(raw, path, CONTAINER if init else APP_CONTAINER, "container")
    if c is None:
        return None
    name = note.name(c.get("name"), f"{path}.name", dns_label_problem)
    if name is not None:
        if name in ctx.names:
            note.error(f"{path}.name",
                       f"{q(name)} is already the name of {ctx.names[name]}")
        ctx.names.setdefault(name, path)
    image = note.string(c.get("image"), f"{path}.image") or ""
    if image != image.strip():
        note.error(f"{path}.image", f"{q(image)}: must not start or end with whitespace")
    elif image:
        problem = image_problem(image)
        if problem:
            note.error(f"{path}.image", f"{q(image)}: {problem}")
    note.choice(c.get("imagePullPolicy"), f"{path}.imagePullPolicy", IMAGE_PULL_POLICIES)
    command = note.strings(c.get("command"), f"{path}.command")
    args = note.strings(c.get("args"), f"{path}.args")
    if command == () and not image:
        if args:
            note.error(f"{path}.args", "args without command needs an image with an "
                                       "entrypoint; with no image, set command")
        elif args == ():
            note.error(f"{path}.command",
                       "required: with no image there is nothing else to run")
    env = validate_env(c.get("env"), f"{path}.env", ctx)
    working_dir = note.string(c.get("workingDir"), f"{path}.workingDir") or ""
    if working_dir:
        problem = absolute_path_problem(working_dir)
        if problem:
            note.error(f"{path}.workingDir", f"{q(working_dir)}: {problem}")
    mounts = validate_volume_mounts(c.get("volumeMounts"), f"{path}.volumeMounts", ctx)
    env_from = validate_env_from(c.get("envFrom"), f"{path}.envFrom", ctx)
    resources = validate_resources(c.get("resources"), f"{path}.resources", ctx)
    restart = ""
    if init and c.get("restartPolicy") is not None:
        restart = note.string(c["restartPolicy"], f"{path}.restartPolicy") or ""
        if restart and restart != "Always":
            note.error(f"{path}.restartPolicy",
                       f"{q(restart)} is not supported "
                       "(only Always, which makes a native sidecar)")
    ports = validate_ports(c.get("ports"), f"{path}.ports", ctx)
    port_names = {p.name for p in ports if p.name}
    security = validate_security_context(c.get("securityContext"), f"{path}.securityContext", ctx,
                                     pod_level=False)
    runs_alongside = not init or restart == "Always"
    probes = {}
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        if not runs_alongside and not empty(c.get(key)):
            note.error(f"{path}.{key}", "init containers may not have probes unless "
                                        "restartPolicy is Always (a sidecar)")
        probes[key] = validate_probe(c.get(key), f"{path}.{key}", key, port_names, ctx)
    if not runs_alongside and not empty(c.get("lifecycle")):
        note.error(f"{path}.lifecycle", "init containers may not have lifecycle hooks unless "
                                        "restartPolicy is Always (a sidecar)")
    post_start, pre_stop = validate_lifecycle(c.get("lifecycle"), f"{path}.lifecycle",
                                              port_names, ctx)
    message_path = (note.string(c.get("terminationMessagePath"),
                                f"{path}.terminationMessagePath")
                    or DEFAULT_TERMINATION_MESSAGE_PATH)
    problem = absolute_path_problem(message_path)
    if problem:
        note.error(f"{path}.terminationMessagePath", f"{q(message_path)}: {problem}")
    message_policy = note.choice(c.get("terminationMessagePolicy"),
                                 f"{path}.terminationMessagePolicy",
                                 ("File", "FallbackToLogsOnError")) or "File"
    for flag in ("stdin", "stdinOnce", "tty"):
        note.boolean(c.get(flag), f"{path}.{flag}")
    if name is None:
        return None
    return Container(
        name=name, image=image, command=command or (), args=args or (), env=env,
        working_dir=working_dir, volume_mounts=mounts, env_from=env_from, resources=resources,
        restart_policy=restart, init=init, ports=ports, security_context=security,
        liveness_probe=probes["livenessProbe"], readiness_probe=probes["readinessProbe"],
        startup_probe=probes["startupProbe"], post_start=post_start, pre_stop=pre_stop,
        termination_message_path=message_path, termination_message_policy=message_policy,
        stdin=c.get("stdin") is True, stdin_once=c.get("stdinOnce") is True,
        tty=c.get("tty") is True)


def validate_env(value, path, ctx):
    note = ctx.report
    out, first = [], {}
    for i, raw in enumerate(note.items(value, path)):
        where = f"{path}[{i}]"
        e = note.fields(raw, where, ENV)
        if e is None:
            continue
        name = note.string(e.get("name"), f"{where}.name", required=True)
        if name is not None:
            problem = env_name_problem(name)
            if problem:
                note.error(f"{where}.name", f"{q(name)}: {problem}")
                name = None
            elif name in first:
                note.warn(f"{where}.name",
                          f"{q(name)} hides {first[name]} (the last one wins)")
            else:
                first[name] = where
        text = note.string(e.get("value"), f"{where}.value")
        if e.get("valueFrom") is None:
            if name is not None:
                out.append(EnvVar(name, value=text or ""))
            continue
        if text:
            note.error(f"{where}.value", "cannot be set together with valueFrom")
        var = validate_env_source(e["valueFrom"], f"{where}.valueFrom", name, ctx)
        if var is not None and name is not None:
            out.append(var)
    return tuple(out)


def validate_env_source(value, path, name, ctx):
    note = ctx.report
    source = note.fields(value, path, ENV_SOURCE, "env")
    if source is None:
        return None
    given = [k for k in ENV_SOURCE if source.get(k) is not None]
    if len(given) != 1:
        got = f", got {', '.join(given)}" if given else ""
        note.error(path, "exactly one source is needed (fieldRef, resourceFieldRef, "
                         f"configMapKeyRef or secretKeyRef){got}")
        return None
    if given[0] in ("configMapKeyRef", "secretKeyRef"):
        kind = given[0][:-len("KeyRef")]
        where = f"{path}.{given[0]}"
        ref = note.fields(source[given[0]], where, KEY_REF)
        if ref is None:
            return None
        source_name = note.name(ref.get("name"), f"{where}.name", dns_subdomain_problem)
        key = note.string(ref.get("key"), f"{where}.key", required=True)
        if key is not None and key_problem(key):
            note.error(f"{where}.key", f"{q(key)}: {key_problem(key)}")
            key = None
        optional = bool(note.boolean(ref.get("optional"), f"{where}.optional"))
        if source_name is None or key is None:
            return None
        return EnvVar(name, source_kind=kind, source_name=source_name, key=key,
                      optional=optional)
    if given[0] == "fieldRef":
        return validate_field_ref(source["fieldRef"], f"{path}.fieldRef", name, ctx)
    if given[0] == "resourceFieldRef":
        return validate_resource_ref(source["resourceFieldRef"], f"{path}.resourceFieldRef",
                                     name, ctx)
    return None  # a source fields() refused


def validate_field_ref(value, path, name, ctx):
    note = ctx.report
    ref = note.fields(value, path, FIELD_REF)
    if ref is None:
        return None
    api = ref.get("apiVersion")
    if api not in (None, "", "v1"):
        note.error(f"{path}.apiVersion", f"{q(api)} is not supported (only v1)")
    field_path = note.string(ref.get("fieldPath"), f"{path}.fieldPath", required=True)
    if field_path is None:
        return None
    problem = field_path_problem(field_path)
    if problem:
        note.error(f"{path}.fieldPath", problem)
        return None
    return EnvVar(name, field_path=field_path)


def validate_resource_ref(value, path, name, ctx):
    note = ctx.report
    ref = note.fields(value, path, RESOURCE_REF)
    if ref is None:
        return None
    target = note.string(ref.get("containerName"), f"{path}.containerName") or None
    if target is not None and target not in ctx.container_names:
        note.error(f"{path}.containerName", f"{q(target)} is not a container of this pod")
    resource = note.choice(ref.get("resource"), f"{path}.resource", ENV_RESOURCES,
                           required=True)
    divisor = ref.get("divisor")
    if divisor is None:
        return EnvVar(name, resource=resource, resource_container=target) if resource else None
    text = divisor.strip() if isinstance(divisor, str) else divisor
    try:
        form = quantity.canonical(text)
    except ValueError as e:
        note.error(f"{path}.divisor", str(e))
        return None
    if resource is None:
        return None
    allowed = CPU_DIVISORS if resource.endswith(".cpu") else SIZE_DIVISORS
    if form not in allowed:
        note.error(f"{path}.divisor",
                   f"{q(divisor)} is not supported with {resource} "
                   f"(use one of: {', '.join(allowed)})")
        return None
    return EnvVar(name, resource=resource, resource_container=target,
                  divisor=text if isinstance(text, str) else repr(text))


def validate_env_from(value, path, ctx):
    """envFrom: [{configMapRef|secretRef: {name, optional}, prefix}] (Kubernetes' rules: the
    prefix must itself be a valid start of a variable name)."""
    note = ctx.report
    out = []
    for i, raw in enumerate(note.items(value, path)):
        where = f"{path}[{i}]"
        e = note.fields(raw, where, ENV_FROM)
        if e is None:
            continue
        given = [k for k in ("configMapRef", "secretRef") if e.get(k) is not None]
        if len(given) != 1:
            note.error(where, "exactly one of configMapRef or secretRef is needed" +
                       (f", got {', '.join(given)}" if given else ""))
            continue
        prefix = note.string(e.get("prefix"), f"{where}.prefix") or ""
        if prefix and env_name_problem(prefix):
            note.error(f"{where}.prefix", f"{q(prefix)}: {env_name_problem(prefix)}")
            prefix = None
        ref = note.fields(e[given[0]], f"{where}.{given[0]}", ENV_FROM_REF)
        if ref is None:
            continue
        source_name = note.name(ref.get("name"), f"{where}.{given[0]}.name",
                                dns_subdomain_problem)
        optional = bool(note.boolean(ref.get("optional"), f"{where}.{given[0]}.optional"))
        if source_name is None or prefix is None:
            continue
        out.append(EnvFrom(given[0][:-len("Ref")], source_name, prefix, optional))
    return tuple(out)


def validate_volume_mounts(value, path, ctx):
    note = ctx.report
    out, targets = [], {}
    for i, raw in enumerate(note.items(value, path)):
        where = f"{path}[{i}]"
        m = note.fields(raw, where, MOUNT, "volumeMount")
        if m is None:
            continue
        name = note.string(m.get("name"), f"{where}.name", required=True)
        if name is not None and ctx.volume_names is not None and name not in ctx.volume_names:
            note.error(f"{where}.name", f"{q(name)} is not a volume of this pod "
                                        "(declare it in spec.volumes)")
        target = note.string(m.get("mountPath"), f"{where}.mountPath", required=True)
        if target is not None:
            key = posixpath.normpath(target)
            problem = absolute_path_problem(target) or (
                "cannot mount over the container's root" if key == "/" else None)
            if problem:
                note.error(f"{where}.mountPath", f"{q(target)}: {problem}")
                target = None
            elif key in targets:
                note.error(f"{where}.mountPath",
                           f"{q(target)} is already mounted by {targets[key]}")
            else:
                targets[key] = where
        read_only = note.boolean(m.get("readOnly"), f"{where}.readOnly")
        sub_path = note.string(m.get("subPath"), f"{where}.subPath") or ""
        sub_path_expr = note.string(m.get("subPathExpr"), f"{where}.subPathExpr") or ""
        if sub_path and sub_path_expr:
            note.error(f"{where}.subPathExpr", "cannot be set together with subPath")
        for key, text in (("subPath", sub_path), ("subPathExpr", sub_path_expr)):
            problem = text and relative_path_problem(text)
            if problem:
                note.error(f"{where}.{key}", f"{q(text)}: {problem}")
        if name is not None and target is not None:
            out.append(VolumeMount(name, target, bool(read_only), sub_path, sub_path_expr))
    return tuple(out)


def validate_resources(value, path, ctx):
    note = ctx.report
    r = note.fields(value, path, RESOURCES) or {}
    limits = validate_resource_list(r.get("limits"), f"{path}.limits", ctx)
    requests = validate_resource_list(r.get("requests"), f"{path}.requests", ctx)
    for key, amount in requests.items():
        if key in limits and amount > limits[key]:
            given = r["limits"][key]
            note.error(f"{path}.requests.{key}",
                       f"{q(r['requests'][key])} must be less than or equal to the {key} "
                       f"limit ({q(given)})")
    return Resources(limits, requests)


def validate_resource_list(value, path, ctx):
    note = ctx.report
    out = {}
    for key, amount in note.mapping(value, path).items():
        where = join_path(path, key)
        if key in ("memory", "cpu"):
            parsed = note.quantity(amount, where, key)
            if parsed is not None:
                out[key] = parsed
        elif isinstance(key, str) and (key == "ephemeral-storage" or "/" in key
                                       or key.startswith("hugepages-")):
            # the scheduler's business (extended resources, hugepages) or the kubelet's
            # eviction's: a single host has neither, and the pod runs the same without them
            note.warn(where, "ignored (nspod limits only memory and cpu)")
        else:
            note.error(where, "unknown resource" + suggestion(str(key), ("memory", "cpu")))
    return out


def validate_ports(value, path, ctx):
    note = ctx.report
    out, names = [], set()
    for i, raw in enumerate(note.items(value, path)):
        where = f"{path}[{i}]"
        p = note.fields(raw, where, PORT)
        if p is None:
            continue
        port = note.integer(p.get("containerPort"), f"{where}.containerPort", 1, 65535,
                            required=True)
        host = note.integer(p.get("hostPort"), f"{where}.hostPort", 0, 65535) or 0
        protocol = note.choice(p.get("protocol"), f"{where}.protocol",
                               ("TCP", "UDP", "SCTP")) or "TCP"
        name = note.string(p.get("name"), f"{where}.name") or ""
        if name:
            problem = port_name_problem(name)
            if problem:
                note.error(f"{where}.name", f"{q(name)}: {problem}")
            elif name in names:
                note.error(f"{where}.name", f"{q(name)} names another port of this container")
            names.add(name)
        if port is None:
            continue
        if ctx.host_network:
            if host and host != port:
                note.error(f"{where}.hostPort",
                           f"must equal containerPort ({port}) with hostNetwork")
            host = port
        if host:
            if (host, protocol) in ctx.host_ports:
                note.error(f"{where}.hostPort",
                           f"{host}/{protocol} is already used by "
                           f"{ctx.host_ports[host, protocol]}")
            ctx.host_ports.setdefault((host, protocol), where)
        out.append(ContainerPort(port, host, protocol, name))
    return tuple(out)

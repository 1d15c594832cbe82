"""One container's plan: its argv and env (image config, $(VAR) expansion), mounts, limits,
lifecycle (probes, hooks) and security. Pure, as make.py is: errors found only now (an image
not in the store, an expansion too long) are InputErrors naming the field."""
import math
import os

from nsPod.plan.expand import ARGS_TOTAL_MAX, expand, too_long
from nsPod.plan.model import DEFAULT_PATH, ETC_FILES, ContainerPlan, MountPlan


def container_plan(container, pod, volumes, facts, etc=None):
    image = image_config(container, pod, facts)
    env = container_env(container, pod, facts)
    values = dict(env)
    argv = command_line(container, pod, values, image)
    sources = {v.name: v.path for v in volumes}
    read_only_volumes = {v.name for v in volumes if v.kind in ("files", "secret") or v.read_only}
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
        # configMap, secret, downwardAPI and projected volumes are read-only, as the kubelet
        # mounts them; a claim as its readOnly says.
        read_only = m.read_only or m.name in read_only_volumes
        mounts.append(MountPlan(m.name, sources[m.name], m.mount_path, sub_path, read_only))
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
        stdin_open=container.stdin,
        stdin_once=container.stdin_once,
        tty=container.tty,
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
    from nsPod.manifest.naming import image_is_path, image_reference
    image = container.image
    if not image:
        return {}
    if image_is_path(image):
        return {"rootfs": image}
    config = facts.images.get(image_reference(image))
    if config is None:
        from nsPod.errors import InputError
        raise InputError(f"{container_path(container, pod)}.image: {image!r} is not in nspod's "
                         f"image store (pull it: nspod image pull {image}, or import it: "
                         f"nspod image import {image} FILE|DIR)")
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
        too_long(f"{path}.image",
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
    from nsPod.manifest.schema import CAPABILITY_NAMES
    add, drop = security_context.capabilities_add, security_context.capabilities_drop
    caps = set(DEFAULT_CAPABILITIES)
    if "ALL" in add:
        caps = set(CAPABILITY_NAMES)
    if "ALL" in drop:
        caps = set()
    caps |= {c for c in add if c != "ALL"}
    caps -= set(drop)
    return sorted(caps)


def security_plan(container, pod, image):
    """The container's security settings: its own securityContext over the pod's, over the
    image's USER. Read by container.apply_security (the container and `exec` alike)."""
    from nsPod.manifest.schema import CAPABILITY_NAMES
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
        "capabilities": sorted(CAPABILITY_NAMES) if privileged else capabilities(mine),
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
    if container.env_from:
        from nsPod.plan.env_sources import env_from_sources
        env.update(env_from_sources(container, pod, path)[0])
    for i, var in enumerate(container.env):
        if var.source_kind:
            from nsPod.plan.env_sources import key_ref_value
            value = key_ref_value(var, pod, f"{path}.env[{i}]")
            if value is not None:
                env[var.name] = value
        elif var.value is not None:
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


def hostname_of(pod):
    from nsPod.manifest.naming import effective_hostname
    return effective_hostname(pod)

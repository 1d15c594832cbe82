"""A CRI container's linux.resources and linux.security_context: checked (InputError naming
the field; CriError UNIMPLEMENTED for what nspod does not do) and put onto its plan."""
from nsPod.errors import InputError
from nsPod.cri import checks
from nsPod.cri.protocol import Code, CriError

TARGET = 3   # runtime.v1 NamespaceMode TARGET


def resources_of(r, field):
    """LinuxContainerResources -> cgroups.Limits fields (hugepages: refused if asked)."""
    limits = {"oom_group": True}
    checks.number(r.memory_limit_in_bytes, f"{field}.memory_limit_in_bytes")
    checks.number(r.cpu_quota, f"{field}.cpu_quota", -1)
    checks.number(r.cpu_period, f"{field}.cpu_period", 0, 1_000_000)
    checks.number(r.cpu_shares, f"{field}.cpu_shares", 0, 262144)
    checks.number(r.oom_score_adj, f"{field}.oom_score_adj", -1000, 1000)
    checks.text(r.cpuset_cpus, f"{field}.cpuset_cpus", 256)
    checks.text(r.cpuset_mems, f"{field}.cpuset_mems", 256)
    if r.memory_limit_in_bytes:
        limits["memory"] = r.memory_limit_in_bytes
    if r.cpu_quota > 0 and r.cpu_period > 0:
        limits["cpu_millis"] = max(1, r.cpu_quota * 1000 // r.cpu_period)
    if r.cpu_shares:
        limits["cpu_request_millis"] = max(1, r.cpu_shares * 1000 // 1024)
    if any(h.limit for h in r.hugepage_limits):
        raise CriError(f"{field}.hugepage_limits: hugepages are not supported",
                       Code.UNIMPLEMENTED)
    return limits


def security_of(sc, field):
    """LinuxContainerSecurityContext -> the plan's security overrides (plan/containers.py
    security_plan's keys) and the namespace options."""
    from nsPod.manifest.schema import CAPABILITY_NAMES
    caps = {}
    for kind in ("add_capabilities", "drop_capabilities", "add_ambient_capabilities"):
        values = []
        for c in getattr(sc.capabilities, kind):
            c = checks.text(c, f"{field}.capabilities.{kind}", 64).upper()
            c = c[4:] if c.startswith("CAP_") else c
            if c != "ALL" and c not in CAPABILITY_NAMES:
                raise InputError(f"{field}.capabilities.{kind}: {c!r} is not a capability")
            values.append(c)
        caps[kind] = values
    if caps["add_ambient_capabilities"]:
        raise CriError(f"{field}.capabilities.add_ambient_capabilities: not supported",
                       Code.UNIMPLEMENTED)
    seccomp = sc.seccomp
    profile = {0: "RuntimeDefault", 1: "Unconfined", 2: "Localhost"}.get(seccomp.profile_type)
    if profile is None:
        raise InputError(f"{field}.seccomp.profile_type: {seccomp.profile_type} is unknown")
    if not sc.HasField("seccomp") and not sc.seccomp_profile_path:
        profile = "Unconfined"
    if sc.seccomp_profile_path and not sc.HasField("seccomp"):
        # The deprecated field, read only when the new one is not given.
        path = sc.seccomp_profile_path
        profile = {"runtime/default": "RuntimeDefault", "docker/default": "RuntimeDefault",
                   "unconfined": "Unconfined"}.get(path)
        if profile is None:
            checks.absolute_path(path.removeprefix("localhost/"), f"{field}.seccomp_profile_path")
            profile = "Localhost"
    localhost = None
    if profile == "Localhost":
        from nsPod.cri import seccomp_profiles
        if sc.seccomp_profile_path and not sc.HasField("seccomp"):
            localhost = seccomp_profiles.read(sc.seccomp_profile_path.removeprefix("localhost/"),
                                              f"{field}.seccomp_profile_path")
        else:
            localhost = seccomp_profiles.read(seccomp.localhost_ref,
                                              f"{field}.seccomp.localhost_ref")
    for i, p in enumerate(sc.masked_paths):
        checks.absolute_path(p, f"{field}.masked_paths[{i}]")
    for i, p in enumerate(sc.readonly_paths):
        checks.absolute_path(p, f"{field}.readonly_paths[{i}]")
    user = str(checks.number(sc.run_as_user.value, f"{field}.run_as_user", 0, 2**31 - 1)) \
        if sc.HasField("run_as_user") else ""
    if sc.run_as_username:
        user = checks.text(sc.run_as_username, f"{field}.run_as_username", 256)
    group = str(checks.number(sc.run_as_group.value, f"{field}.run_as_group", 0, 2**31 - 1)) \
        if sc.HasField("run_as_group") else ""
    if group and not user:
        # As containerd: a group alone would run as the image's user with another group.
        raise InputError(f"{field}.run_as_group: set without run_as_user or run_as_username")
    ns = sc.namespace_options
    for kind in ("network", "pid", "ipc"):
        mode = getattr(ns, kind)
        if mode not in (0, 1, 2, 3):
            raise InputError(f"{field}.namespace_options.{kind}: mode {mode} is unknown")
    if ns.pid == TARGET:
        checks.object_id(ns.target_id, f"{field}.namespace_options.target_id")
    return {"privileged": sc.privileged, "add": caps["add_capabilities"],
            "drop": caps["drop_capabilities"], "seccomp": profile,
            "localhost": localhost, "user": user, "group": group,
            "masked": list(sc.masked_paths), "readonly": list(sc.readonly_paths),
            "supplementalGroups": [checks.number(g, f"{field}.supplemental_groups", 0,
                                                 2**31 - 1) for g in sc.supplemental_groups],
            "readOnlyRootFilesystem": sc.readonly_rootfs, "noNewPrivs": sc.no_new_privs,
            "pid": ns.pid, "target_id": ns.target_id}


def apply_security(cplan, sec):
    from nsPod.manifest.schema import CAPABILITY_NAMES
    from nsPod.plan.containers import DEFAULT_CAPABILITIES
    s = dict(cplan.security)
    caps = set(DEFAULT_CAPABILITIES)
    if "ALL" in sec["add"]:
        caps = set(CAPABILITY_NAMES)
    if "ALL" in sec["drop"]:
        caps = set()
    caps |= {c for c in sec["add"] if c != "ALL"}
    caps -= set(sec["drop"])
    s["privileged"] = sec["privileged"]
    s["capabilities"] = sorted(CAPABILITY_NAMES) if sec["privileged"] else sorted(caps)
    s["seccomp"] = "Unconfined" if sec["privileged"] else sec["seccomp"]
    if s["seccomp"] == "Localhost":
        s["seccompProfile"] = sec["localhost"]
    # The kubelet sends containerd's lists; none given keeps nspod's (the same ones).
    s["maskedPaths"] = sec.get("masked") or None
    s["readonlyPaths"] = sec.get("readonly") or None
    if sec["user"]:
        s["user"] = sec["user"]
        s["group"] = sec["group"]
    elif sec["group"]:
        s["group"] = sec["group"]
    if sec["supplementalGroups"]:
        s["supplementalGroups"] = list(sec["supplementalGroups"])
    s["readOnlyRootFilesystem"] = sec["readOnlyRootFilesystem"]
    s["noNewPrivs"] = sec["noNewPrivs"]
    cplan.security = s

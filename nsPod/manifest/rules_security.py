"""Rules for securityContext: ids, capabilities, seccomp, sysctls."""
from nsPod.manifest import sysctl_policy
from nsPod.manifest.check import suggestion
from nsPod.manifest.model import SecurityContext
from nsPod.manifest.schema import (
    CAPABILITIES, CAPABILITY_NAMES, CONTAINER_SECURITY, ID_MAX, POD_SECURITY, SECCOMP, SYSCTL)
from nsPod.manifest.syntax import (
    q, relative_path_problem, sysctl_dots, sysctl_namespace, sysctl_problem)


def validate_security_context(value, path, ctx, pod_level):
    note = ctx.report
    schema = POD_SECURITY if pod_level else CONTAINER_SECURITY
    s = note.fields(value, path, schema, "securityContext")
    if not s:
        return SecurityContext()
    ids = {key: note.integer(s.get(key), f"{path}.{key}", 0, ID_MAX)
           for key in ("runAsUser", "runAsGroup", "fsGroup")}
    flags = {key: note.boolean(s.get(key), f"{path}.{key}")
             for key in ("runAsNonRoot", "privileged", "allowPrivilegeEscalation",
                         "readOnlyRootFilesystem")}
    groups = []
    where = f"{path}.supplementalGroups"
    for i, group in enumerate(note.items(s.get("supplementalGroups"), where)):
        group = note.integer(group, f"{where}[{i}]", 0, ID_MAX, required=True)
        if group is not None:
            groups.append(group)
    caps = note.fields(s.get("capabilities"), f"{path}.capabilities", CAPABILITIES) or {}
    add = validate_capabilities(caps.get("add"), f"{path}.capabilities.add", ctx)
    drop = validate_capabilities(caps.get("drop"), f"{path}.capabilities.drop", ctx)
    if flags["allowPrivilegeEscalation"] is False:
        if flags["privileged"]:
            note.error(f"{path}.allowPrivilegeEscalation",
                       "cannot be false with privileged: true")
        if "SYS_ADMIN" in add:
            note.error(f"{path}.allowPrivilegeEscalation",
                       "cannot be false with the SYS_ADMIN capability added")
    profile, localhost = validate_seccomp(s.get("seccompProfile"), f"{path}.seccompProfile", ctx)
    return SecurityContext(
        run_as_user=ids["runAsUser"], run_as_group=ids["runAsGroup"],
        run_as_non_root=flags["runAsNonRoot"], supplemental_groups=tuple(groups),
        fs_group=ids["fsGroup"], privileged=flags["privileged"],
        allow_privilege_escalation=flags["allowPrivilegeEscalation"],
        read_only_root_filesystem=flags["readOnlyRootFilesystem"],
        capabilities_add=add, capabilities_drop=drop, seccomp_profile=profile,
        seccomp_localhost_profile=localhost,
        sysctls=validate_sysctls(s.get("sysctls"), f"{path}.sysctls", ctx))


def validate_capabilities(value, path, ctx):
    note = ctx.report
    names = note.strings(value, path) or ()
    out = []
    for i, raw in enumerate(names):
        name = raw.upper()
        name = name[len("CAP_"):] if name.startswith("CAP_") else name
        if name != "ALL" and name not in CAPABILITY_NAMES:
            note.error(f"{path}[{i}]", f"{q(raw)} is not a Linux capability"
                                       + suggestion(name, CAPABILITY_NAMES))
            continue
        out.append(name)
    return tuple(out)


def validate_seccomp(value, path, ctx):
    note = ctx.report
    s = note.fields(value, path, SECCOMP)
    if not s:
        return "", ""
    kind = note.choice(s.get("type"), f"{path}.type",
                       ("RuntimeDefault", "Unconfined", "Localhost"), required=True)
    localhost = note.string(s.get("localhostProfile"), f"{path}.localhostProfile") or ""
    if kind == "Localhost":
        problem = (relative_path_problem(localhost) if localhost
                   else "required with type Localhost")
        if problem:
            note.error(f"{path}.localhostProfile", problem)
        else:
            note.error(f"{path}.type", "Localhost is not supported yet "
                                       "(use RuntimeDefault or Unconfined)")
    elif localhost:
        note.error(f"{path}.localhostProfile", "only allowed with type Localhost")
    return kind or "", localhost


def validate_sysctls(value, path, ctx):
    note = ctx.report
    out, first = [], {}
    for i, raw in enumerate(note.items(value, path)):
        where = f"{path}[{i}]"
        s = note.fields(raw, where, SYSCTL)
        if s is None:
            continue
        name = note.string(s.get("name"), f"{where}.name", required=True)
        text = note.string(s.get("value"), f"{where}.value")
        if text is None and s.get("value") is None:
            note.error(f"{where}.value", "required")
        if name is None:
            continue
        name = sysctl_dots(name)
        problem = sysctl_problem(name)
        if problem is None:
            namespace = sysctl_namespace(name)
            if namespace is None:
                problem = "is not namespaced: setting it would change the whole host"
            elif namespace == "net" and ctx.host_network:
                problem = "cannot be set with hostNetwork: it would change the host's"
            elif namespace == "ipc" and ctx.host_ipc:
                problem = "cannot be set with hostIPC: it would change the host's"
            elif name in first:
                problem = f"is already set by {first[name]}"
        if problem is None and ctx.allowed_sysctls is not None:
            problem = sysctl_policy.problem(name, ctx.allowed_sysctls)
        if problem:
            note.error(f"{where}.name", f"{q(name)} {problem}")
            continue
        first[name] = where
        if text is not None:
            out.append((name, text))
    return tuple(out)

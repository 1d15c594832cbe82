"""Admission: a pod starts only if the host can take it (admit_pod, called by `run`).

Its memory must fit what the host has left; admit() is that arithmetic, pure, spelled out in
the refusal so a user can check it:
    left = MemAvailable - memory held by other pods - reserve
The rest needs host facts: the sysctl allowlist, hostPath sources, free hostPorts.
"""
import os

from nsPod.errors import InputError, NspodError
from nsPod.store import listing, state
from nsPod.manifest.quantity import format_bytes


def human_bytes(n):
    """512Mi, 1.25Gi, ~23.25Gi, 300 (bytes): the readable form of nspod's one byte formatter."""
    return format_bytes(n, readable=True)


def admit(need_bytes, mem_available, committed_bytes, reserve_bytes, per_container,
          pod_name=None):
    """Raise NspodError (one line) unless need_bytes fits in what is left.

    per_container: [(name, bytes)] for the containers whose limits make up need_bytes;
    empty when the need comes from the pod's own spec.resources.
    """
    left = mem_available - committed_bytes - reserve_bytes
    if need_bytes <= left:
        return
    who = f"pod {pod_name}" if pod_name else "the pod"
    parts = ", ".join(f"{name} {human_bytes(size)}" for name, size in per_container)
    asks = f" ({parts})" if parts else ""
    room = f"only {human_bytes(left)} is left" if left > 0 else "nothing is left"
    raise NspodError(
        f"{who} needs {human_bytes(need_bytes)}{asks} but {room} "
        f"(MemAvailable {human_bytes(mem_available)} - {human_bytes(committed_bytes)} "
        f"held by other pods - {human_bytes(reserve_bytes)} reserve)")


def read_mem_available(path="/proc/meminfo"):
    """MemAvailable in bytes: the kernel's estimate of what can be allocated without swapping."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise NspodError(f"read {path}: {e.strerror}") from e
    for line in lines:
        key, _, rest = line.partition(":")
        if key == "MemAvailable":
            return int(rest.split()[0]) * 1024  # the kernel prints it in kB
    raise NspodError(f"{path} has no MemAvailable line (Linux 3.14 or later needed)")


def admit_pod(config, pod, plan):
    """Checks against the host that must pass before anything is created.

    Memory: the pod's need must fit in MemAvailable less what the pods nspod already runs
    under this root may use (their limits) less a reserve (NSPOD_MEMORY_RESERVE, default
    256Mi). Callers hold the admission lock until the pod's pod.json is written, so two
    concurrent runs cannot both take the last of it.
    """
    from nsPod.manifest import sysctl_policy
    from nsPod.kernel import volumes
    from nsPod.errors import SpecError
    # The kubelet's sysctl admission (SysctlForbidden), also for pods not read by load_pods.
    forbidden = sysctl_policy.forbidden(pod.security_context.sysctls,
                                        config.allowed_unsafe_sysctls)
    if forbidden:
        raise SpecError(forbidden)
    for i, v in enumerate(plan.volumes):
        if v.kind == "host":
            volumes.check_host_path(v, f"spec.volumes[{i}].hostPath.path", config.root)
    check_host_ports(pod, plan)
    if plan.memory_need:
        admit(plan.memory_need, read_mem_available(),
              committed_memory(config), memory_reserve(), plan.memory_asks,
              pod_name=pod.name)


def check_host_ports(pod, plan):
    from nsPod.monitor import ports
    for section, containers in (("initContainers", pod.init_containers),
                                ("containers", pod.containers)):
        for ci, c in enumerate(containers):
            for pi, p in enumerate(c.ports):
                where = f"spec.{section}[{ci}].ports[{pi}]"
                if p.host_port and p.protocol != "TCP":
                    raise InputError(f"{where}.protocol: {p.protocol} hostPorts are not "
                                     "supported yet (TCP only)")
                if p.host_port and plan.network["mode"] == "none":
                    raise InputError(f"{where}.hostPort: needs the pod network (this pod has "
                                     "nspod.io/network: none, so no IP to forward to)")
    ports.check_free([host for host, _, _ in plan.host_ports])


def memory_reserve():
    from nsPod.manifest.quantity import parse_bytes
    text = os.environ.get("NSPOD_MEMORY_RESERVE") or "256Mi"
    try:
        return parse_bytes(text)
    except ValueError as e:
        raise InputError(f"NSPOD_MEMORY_RESERVE: {e}") from None


def committed_memory(config):
    """What the live pods under this root may use: the sum of their admitted needs."""
    total = 0
    # One fd per pod (listing.scan_pods): this runs on every start of a pod with limits.
    for _, doc, data, _ in listing.scan_pods(config.root):
        if isinstance(data, dict) and data.get("phase") in state.TERMINAL_PHASES:
            continue
        need = doc.get("plan", {}).get("memory_need", 0) if isinstance(doc, dict) else 0
        total += need if isinstance(need, int) else 0
    return total

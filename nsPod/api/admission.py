"""Admission: a pod starts only if its memory fits what the host has left.

Pure except read_mem_available(). What "left" means is the caller's arithmetic, spelled
out in the refusal so a user can check it:
    left = MemAvailable - memory held by other pods - reserve
"""
from nsPod.errors import NspodError
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

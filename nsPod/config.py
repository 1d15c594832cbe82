"""Runtime configuration: defaults, overridden by the environment, overridden by flags."""
import ipaddress
import os
import re
from dataclasses import dataclass

from nsPod import paths
from nsPod.errors import InputError

DEFAULT_ROOT = "/run/nspod"
DEFAULT_CGROUP_PARENT = "nspod"
# Neither Podman's 10.88.0.0/16 nor Docker's 172.17.0.0/16.
DEFAULT_BRIDGE = "nspod0"
DEFAULT_SUBNET = "10.89.0.0/16"
DEFAULT_BACKOFF = "10s:300s"


@dataclass(frozen=True)
class Config:
    root: str = DEFAULT_ROOT
    cgroup_parent: str = DEFAULT_CGROUP_PARENT
    bridge: str = DEFAULT_BRIDGE
    subnet: str = DEFAULT_SUBNET
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    trace: bool = False


def load(root=None, cgroup_parent=None, bridge=None, subnet=None, restart_backoff=None,
         trace=None, environ=None):
    """Flags win over NSPOD_* variables, which win over the defaults."""
    env = os.environ if environ is None else environ

    def pick(flag, name, default):
        if flag is not None:
            return flag
        return env.get(name) or default

    # Absolute, normalized and not '/': the checks of the directory itself (owner, mode,
    # symlinks) are paths.open_root's, made when a command first uses it.
    root = paths.check_root_path(pick(root, "NSPOD_ROOT", DEFAULT_ROOT))
    parent = pick(cgroup_parent, "NSPOD_CGROUP_PARENT", DEFAULT_CGROUP_PARENT)
    parent = parent.strip("/")
    if not parent or any(p in ("", ".", "..") for p in parent.split("/")):
        raise InputError(f"--cgroup-parent: {cgroup_parent or parent!r} is not a cgroup path")
    bridge = pick(bridge, "NSPOD_BRIDGE", DEFAULT_BRIDGE)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", bridge):
        raise InputError(f"--bridge: {bridge!r} is not a link name (1-15 letters, digits, _ . -)")
    net = parse_subnet(pick(subnet, "NSPOD_SUBNET", DEFAULT_SUBNET))
    base, maximum = parse_backoff(pick(restart_backoff, "NSPOD_RESTART_BACKOFF", DEFAULT_BACKOFF))
    if trace is None:
        trace = env.get("NSPOD_TRACE") == "1"
    return Config(root, parent, bridge, str(net), base, maximum, bool(trace))


def parse_subnet(subnet):
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError as e:
        raise InputError(f"--subnet: {subnet!r} is not an IPv4 network in CIDR form: {e}") from None
    if net.prefixlen > 30:
        raise InputError(f"--subnet: {subnet!r} has room for no pods (use /30 or wider)")
    return net


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}


def parse_duration(text, what):
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise InputError(f"{what}: {text!r} is not a duration (examples: 10s, 500ms, 5m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_backoff(text):
    base_text, _, max_text = text.partition(":")
    base = parse_duration(base_text, "--restart-backoff")
    maximum = parse_duration(max_text, "--restart-backoff") if max_text else max(base, 300.0)
    if maximum < base:
        raise InputError(f"--restart-backoff: {text!r}: MAX is smaller than BASE")
    return base, maximum

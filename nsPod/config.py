"""Runtime configuration: defaults, overridden by the environment, overridden by flags."""
import ipaddress
import os
import re
from dataclasses import dataclass

from nsPod.kernel import paths
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
    trace: str = ""                      # "" (off), "text" or "json" (--trace=json)
    allowed_unsafe_sysctls: tuple = ()   # names and patterns ('*' last) beyond the safe set


def load(root=None, cgroup_parent=None, bridge=None, subnet=None, restart_backoff=None,
         trace=None, allowed_unsafe_sysctls=None, environ=None):
    """Flags win over NSPOD_* variables, which win over the defaults."""
    env = os.environ if environ is None else environ

    def pick(flag, name, default):
        if flag is not None:
            return flag
        return env.get(name) or default

    # Absolute, normalized and not '/': the checks of the directory itself (owner, mode,
    # symlinks) are paths.open_root's, made when a command first uses it.
    root = paths.check_root_path(pick(root, "NSPOD_ROOT", DEFAULT_ROOT))
    given = pick(cgroup_parent, "NSPOD_CGROUP_PARENT", DEFAULT_CGROUP_PARENT)
    parent = given.strip("/")
    # Each level a plain directory name: no '.', '..' or empty levels, nothing a shell or
    # the kernel reads specially (NUL, newline), and within NAME_MAX and PATH_MAX.
    if (not parent or len(parent) > 1024
            or any(p in ("", ".", "..") or len(p.encode()) > 255 for p in parent.split("/"))
            or not all(c.isprintable() for c in parent)):
        raise InputError(f"--cgroup-parent: {_show(given)} is not a cgroup path "
                         "(directory names separated by '/', no '.' or '..')")
    bridge = pick(bridge, "NSPOD_BRIDGE", DEFAULT_BRIDGE)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", bridge, re.ASCII) or bridge in (".", ".."):
        raise InputError(f"--bridge: {_show(bridge)} is not a link name "
                         "(1-15 letters, digits, _ . -)")
    net = parse_subnet(pick(subnet, "NSPOD_SUBNET", DEFAULT_SUBNET))
    base, maximum = parse_backoff(pick(restart_backoff, "NSPOD_RESTART_BACKOFF", DEFAULT_BACKOFF))
    return Config(root, parent, bridge, str(net), base, maximum, trace_mode(trace, env),
                  unsafe_sysctls(allowed_unsafe_sysctls, env))


def trace_mode(flag, environ):
    """--trace (True), --trace=text|json, or NSPOD_TRACE (1 or json; anything else is off, as
    it always was): "", "text" or "json"."""
    if flag is None:
        value = environ.get("NSPOD_TRACE", "")
        if value == "json" or (value == "1" and environ.get("NSPOD_TRACE_FORMAT") == "json"):
            return "json"
        return "text" if value in ("1", "text") else ""
    if flag is True or flag == "text":
        return "text"
    if flag is False or flag == "":
        return ""
    if flag == "json":
        return "json"
    raise InputError(f"--trace: {_show(flag)} is not a trace format (--trace or --trace=json)")


def unsafe_sysctls(flag=None, environ=None):
    """--allowed-unsafe-sysctls (or NSPOD_ALLOWED_UNSAFE_SYSCTLS): the kubelet's option of
    the same name, a comma list of sysctls and patterns such as kernel.msg*."""
    from nsPod.manifest import sysctl_policy
    env = os.environ if environ is None else environ
    text = flag if flag is not None else env.get("NSPOD_ALLOWED_UNSAFE_SYSCTLS", "")
    return sysctl_policy.parse_allowlist(text)


def parse_subnet(subnet):
    """The pod subnet: a private-use kind of IPv4 network, /8 to /30 (a /30 holds the gateway
    and one pod). Loopback, link-local, multicast, the unspecified network and reserved space
    are refused: a bridge given such an address would break the host's own traffic."""
    text = subnet if isinstance(subnet, str) else str(subnet)
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as e:
        why = str(e) if len(str(e)) <= 80 else "not an address/prefix"
        raise InputError(f"--subnet: {_show(text)} is not an IPv4 network in CIDR form: {why}") \
            from None
    if "/" not in text:
        raise InputError(f"--subnet: {_show(text)} needs a prefix length (as in 10.89.0.0/16)")
    for test, what in ((net.is_unspecified or net.prefixlen == 0 or
                        net.overlaps(ipaddress.IPv4Network("0.0.0.0/8")), "the unspecified network"),
                       (net.is_loopback, "loopback"),
                       (net.is_link_local, "link-local"),
                       (net.is_multicast, "multicast"),
                       (net.overlaps(ipaddress.IPv4Network("240.0.0.0/4")), "reserved (240.0.0.0/4)")):
        if test:
            raise InputError(f"--subnet: {text} is {what} address space; use a private "
                             "network such as 10.89.0.0/16")
    if net.prefixlen < 8:
        raise InputError(f"--subnet: {text} is wider than a /8; use a /8 to /30")
    if net.prefixlen > 30:
        raise InputError(f"--subnet: {text!r} has room for no pods (use /30 or wider)")
    return net


_DURATION = re.compile(r"(\d{1,12}(?:\.\d{1,9})?)(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}
# A crash-loop backoff beyond a day is a typo; the monitor's timers stay far below epoll's
# ~24.8-day limit.
_DURATION_MAX = 24 * 3600


def parse_duration(text, what):
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise InputError(f"{what}: {_show(text)} is not a duration (examples: 10s, 500ms, 5m)")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > _DURATION_MAX:
        raise InputError(f"{what}: {_show(text)} is longer than a day (24h)")
    return seconds


def parse_backoff(text):
    base_text, _, max_text = text.partition(":")
    base = parse_duration(base_text, "--restart-backoff")
    maximum = parse_duration(max_text, "--restart-backoff") if max_text else max(base, 300.0)
    if maximum < base:
        raise InputError(f"--restart-backoff: {_show(text)}: MAX is smaller than BASE")
    return base, maximum


def _show(text):
    """A user's text in a message: quoted, control characters escaped, long text cut."""
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:56] + "...'"

"""What every rule shares: the Report problems are noted in, the frozen per-pod Context, and
the small helpers that spell a field path or a suggestion.
"""
from collections import namedtuple

from nsPod.manifest import quantity
from nsPod.manifest.schema import FEATURES, INT64_MAX, NOT_YET_MESSAGES
from nsPod.manifest.syntax import expected, kind_of, q


def empty(value):
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def join_path(path, key):
    key = key_text(key)
    return f"{path}.{key}" if path else key


def key_text(key):
    """A mapping key as part of a field path: quoted when it would break the line."""
    return key if isinstance(key, str) and key.isprintable() else q(key)


def suggestion(key, candidates):
    import difflib  # only on the error path
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(key.lower(), lowered, n=1)
    return f' (did you mean "{lowered[close[0]]}"?)' if close else ""


def amount_text(resource, value):
    return quantity.format_bytes(value) if resource == "memory" else f"{value}m"


# A manifest of 300,000 unknown fields is not 300,000 useful lines (nor worth as many
# suggestions): the first hundred are listed, then one line says there are more.
PROBLEMS_MAX = 100


def add_line(lines, line, prefix, what):
    if len(lines) < PROBLEMS_MAX:
        lines.append(line)
    elif len(lines) == PROBLEMS_MAX:
        lines.append(f"{prefix}... more {what}; only the first {PROBLEMS_MAX} are listed")


class Report:
    """The problems and warnings of one document (or container), each line prefixed; and the
    readers of shapes (a mapping, a string, an integer...) that note what is wrong as they read."""

    def __init__(self, prefix=""):
        self.prefix = prefix
        self.problems = []
        self.warnings = []

    def error(self, path, message):
        add_line(self.problems, self._line(path, message), self.prefix, "problems")

    def warn(self, path, message):
        add_line(self.warnings, self._line(path, message), self.prefix, "warnings")

    @property
    def full(self):
        """No more problems are listed: skip working out what they would say."""
        return len(self.problems) >= PROBLEMS_MAX

    def _line(self, path, message):
        return f"{self.prefix}{path}: {message}" if path else f"{self.prefix}{message}"

    # --- shapes -------------------------------------------------------------------------

    def fields(self, value, path, schema, feature=None):
        """The mapping at path with its keys checked against schema; {} when absent, None
        (reported) when it is not a mapping."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, expected("a mapping", value))
            return None
        for key, item in value.items():
            if not isinstance(key, str):
                self.error(path, f"unexpected key {q(key)} (field names are strings)")
                continue
            where = join_path(path, key)
            if key not in schema:
                self.error(where, "unknown field" + ("" if self.full else suggestion(key, schema)))
                continue
            rule = schema[key]
            if rule is None:
                gate = f"{feature}.{key}"
                if not FEATURES.get(gate, True) and not empty(item):
                    template = NOT_YET_MESSAGES.get(gate, "not supported yet")
                    self.error(where, template.format(value=q(item)))
            elif rule[0] == "default":
                # ("default", values, (level, message)): a field at its API default is what
                # nspod does anyway, so it is accepted silently; any other value follows rule
                if not any(item == d and type(item) is type(d) for d in rule[1]):
                    if rule[2][0] == "warn":
                        self.warn(where, rule[2][1])
                    else:
                        self.error(where, rule[2][1])
            elif rule[0] == "warn":
                if not empty(item):
                    self.warn(where, rule[1])
            elif item is not None:
                self.error(where, rule[1])
        return value

    def mapping(self, value, path):
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        self.error(path, expected("a mapping", value))
        return {}

    def items(self, value, path):
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.error(path, expected("a list", value))
        return []

    def string(self, value, path, required=False):
        """The string, or None: absent (reported when required) or not a string (reported)."""
        if value is None or (required and value == ""):
            if required:
                self.error(path, "required")
            return None
        if isinstance(value, str):
            return value
        self.error(path, expected("a string", value))
        return None

    def strings(self, value, path):
        """A list of strings as a tuple; () when absent, None when wrong (reported)."""
        if value is None:
            return ()
        if isinstance(value, str):
            self.error(path, f"must be a list of strings, got a string (write {q(value.split())})")
            return None
        if not isinstance(value, list):
            self.error(path, expected("a list of strings", value))
            return None
        good = True
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error(f"{path}[{i}]", expected("a string", item))
                good = False
        return tuple(value) if good else None

    def boolean(self, value, path):
        if value is None or isinstance(value, bool):
            return value
        self.error(path, expected("a boolean", value))
        return None

    def integer(self, value, path, minimum=None, maximum=None, required=False):
        if value is None:
            if required:
                self.error(path, "required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, expected("an integer", value))
            return None
        if minimum is not None and value < minimum:
            self.error(path, f"{value} must be at least {minimum}")
            return None
        if maximum is None:
            maximum = INT64_MAX
        if value > maximum:
            self.error(path, f"{value} must be at most {maximum}")
            return None
        if value < -INT64_MAX - 1:
            self.error(path, f"{value} must be at least {-INT64_MAX - 1}")
            return None
        return value

    def choice(self, value, path, options, required=False):
        text = self.string(value, path, required)
        if text is not None and text not in options:
            shown = ", ".join(o or '""' for o in options)
            self.error(path, f"{q(text)} is not one of: {shown}")
            return None
        return text

    def name(self, value, path, check):
        """A required name: the string, or None (reported)."""
        text = self.string(value, path, required=True)
        if text is not None:
            problem = check(text)
            if problem:
                self.error(path, f"{q(text)}: {problem}")
                return None
        return text

    def quantity(self, value, path, resource):
        """memory (bytes) or cpu (millicores); None when invalid (reported)."""
        # The API server trims quantities it decodes from JSON/YAML.
        text = value.strip() if isinstance(value, str) else value
        try:
            if resource == "cpu":
                return quantity.parse_cpu_millis(text)
            amount = quantity.parse_bytes(text)
            if quantity.parse_quantity(text).denominator != 1:
                self.warn(path, f"{q(value)} is not a whole number of bytes; "
                                f"rounded up to {amount}")
            return amount
        except ValueError as e:
            self.error(path, str(e))
            return None


# The facts about the pod that rules for one field need from the others. Built once per pod
# (validate_pod, from what it has read; pod_context, from a validated Pod for `nspod add`),
# with every field named, so no rule sees a fact its caller forgot to set. A namedtuple: a
# frozen record without the cost of a dataclass at import (every CLI run imports this).
Context = namedtuple("Context", (
    "report",           # the Report every rule notes its problems in
    "grace",            # terminationGracePeriodSeconds (a sleep handler may not exceed it)
    "host_network",     # hostNetwork: ports, net sysctls and the network annotation
    "host_ipc",         # hostIPC: ipc sysctls
    "volume_names",     # the pod's volume names; None: not known, mounts are not checked
    "container_names",  # every container name of the pod (resourceFieldRef.containerName)
    "allowed_sysctls",  # unsafe sysctls the node allows; None: not checked
    # What the containers claim, in the order they are checked: the pod's registries of
    # container names (name -> where) and hostPorts ((port, protocol) -> who). These two
    # dicts are the only state that changes while a pod is checked.
    "names",
    "host_ports",
))


def pod_context(pod, report, new_name=None):
    """The Context of a validated Pod that one more container joins (`nspod add`): the same
    facts validate_pod gathers, read from the Pod."""
    existing = pod.init_containers + pod.containers
    names = {c.name for c in existing}
    if new_name is not None:
        names.add(new_name)
    return Context(
        report=report, grace=pod.termination_grace_period_seconds,
        host_network=pod.host_network, host_ipc=pod.host_ipc,
        volume_names=frozenset(v.name for v in pod.volumes), container_names=frozenset(names),
        allowed_sysctls=None,
        names={c.name: f"a container of pod {q(pod.name)}" for c in existing},
        host_ports={(p.host_port, p.protocol): f"container {q(c.name)}"
                    for c in existing for p in c.ports if p.host_port})


def lone_context(report, new_name=None):
    """The Context of a container checked on its own (no pod yet): its defaults."""
    return Context(
        report=report, grace=30, host_network=False, host_ipc=False, volume_names=None,
        container_names=frozenset(() if new_name is None else (new_name,)),
        allowed_sysctls=None, names={}, host_ports={})

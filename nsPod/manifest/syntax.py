"""The problems of a field's text (names, paths, sysctls), and how a value is spelled in a message.

Pure functions of one string: None when it is good, else why not (a phrase the caller prefixes
with the field path).
"""
import re

from nsPod.manifest.dns import (  # noqa: F401  (re-exported for the rules)
    DNS_LABEL, DNS_SUBDOMAIN, dns_label_problem, dns_subdomain_problem)
from nsPod.manifest.schema import FIELD_PATHS, IPC_SYSCTLS


QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
PORT_NAME = re.compile(r"[-a-z0-9]+")
HTTP_TOKEN = re.compile(r"[-A-Za-z0-9!#$%&'*+.^_`|~]+")
SYSCTL_NAME = re.compile(r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-_a-z0-9]*[a-z0-9])?")
SUBSCRIPTED_FIELD = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]", re.DOTALL)


def kind_of(value):
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"),
                       (str, "a string"), (list, "a list"), (dict, "a mapping")):
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"


def expected(what, value):
    message = f"must be {what}, got {kind_of(value)}"
    if what == "a string" and isinstance(value, (bool, int, float)):
        # YAML made a number or a boolean of it: Kubernetes wants text.
        return f"{message} {q(value)} (quote it if it is meant as text)"
    if what == "a boolean" and isinstance(value, str):
        return f"{message} {q(value)} (write true or false, without quotes)"
    if what == "a list" and isinstance(value, dict):
        return f"{message} (start each item with '- ')"
    if isinstance(value, (bool, int, float, str)):
        return f"{message} {q(value)}"
    return message


def q(value):
    """A value as it appears in a message: strings quoted, YAML spelling for the rest."""
    if isinstance(value, str):
        import json  # only on the error path
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(q(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    return kind_of(value)


def name_problem(name, check):
    if not isinstance(name, str):
        return f"must be a string, got {kind_of(name)}"
    if not name:
        return "must not be empty"
    return check(name)


def qualified_name_problem(key):
    """Label and annotation keys: [prefix/]name, the prefix a DNS subdomain."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or "/" in prefix):
        return ("must be a name with an optional DNS subdomain prefix and '/', "
                "as in example.com/name")
    if slash:
        problem = dns_subdomain_problem(prefix)
        if problem:
            return f"prefix {q(prefix)} {problem}"
    if not name:
        return "the name part must not be empty"
    if len(name) > 63:
        return f"the name part must be at most 63 characters (it has {len(name)})"
    if not QUALIFIED_NAME.fullmatch(name):
        return ("the name part must be letters, digits, '-', '_' and '.', starting and ending "
                "with a letter or digit")
    return None


def label_value_problem(value):
    if len(value) > 63:
        return f"must be at most 63 characters (it has {len(value)})"
    if value and not QUALIFIED_NAME.fullmatch(value):
        return ("must be letters, digits, '-', '_' and '.', starting and ending with a letter "
                "or digit")
    return None


def env_name_problem(name):
    # Kubernetes' relaxed rule (RelaxedEnvironmentVariableValidation, on by default since 1.32).
    if any(not " " <= ch <= "~" or ch == "=" for ch in name):
        return "must be printable ASCII characters other than '='"
    return None


def port_name_problem(name):
    if len(name) > 15:
        return f"must be at most 15 characters (it has {len(name)})"
    if not PORT_NAME.fullmatch(name):
        return "must be lowercase letters, digits and '-'"
    if not re.search(r"[a-z]", name):
        return "must contain at least one letter"
    if name.startswith("-") or name.endswith("-") or "--" in name:
        return "must not start or end with '-' or have two in a row"
    return None


def field_path_problem(field_path):
    if field_path in FIELD_PATHS:
        return None
    subscripted = SUBSCRIPTED_FIELD.fullmatch(field_path)
    if subscripted:
        problem = qualified_name_problem(subscripted.group(2))
        return f"{q(field_path)}: key {problem}" if problem else None
    if field_path in ("metadata.labels", "metadata.annotations"):
        return f"{q(field_path)} needs a key in an environment variable, as in {field_path}['app']"
    return (f"{q(field_path)} is not supported (supported: {', '.join(FIELD_PATHS)}, "
            "metadata.labels['KEY'], metadata.annotations['KEY'])")


def absolute_path_problem(path):
    if "\0" in path:
        return "must not contain a NUL character"
    if not path.startswith("/"):
        return "must be an absolute path"
    if ".." in path.split("/"):
        return "must not contain '..'"
    return None


def relative_path_problem(path):
    if "\0" in path:
        return "must not contain a NUL character"
    if path.startswith("/"):
        return "must be a relative path"
    if ".." in path.split("/"):
        return "must not contain '..' (it would leave the volume)"
    return None


def sysctl_dots(name):
    """net/ipv4/ip_forward -> net.ipv4.ip_forward, as Kubernetes converts a '/'-separated name
    (where a '.' is part of a component, such as an interface name)."""
    separator = re.search(r"[./]", name)
    if separator and separator.group() == "/":
        return name.translate(str.maketrans("./", "/."))
    return name


def sysctl_problem(name):
    if len(name) > 253:
        return f"must be at most 253 characters (it has {len(name)})"
    if not SYSCTL_NAME.fullmatch(name.replace("/", ".")):
        return "is not a sysctl name"
    return None


def sysctl_namespace(name):
    if name in IPC_SYSCTLS or name.startswith("fs.mqueue."):
        return "ipc"
    if name.startswith("net."):
        return "net"
    return None

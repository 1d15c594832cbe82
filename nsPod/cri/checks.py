"""Every CRI request field is hostile: these check names, ids, paths and numbers and raise
InputError naming the field (answered INVALID_ARGUMENT), before anything is read or made."""
import hashlib
import os
import re

from nsPod.errors import InputError

# Ours are 64 hex digits; clients probe with other ids (UUIDs): any such text is NOT_FOUND.
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TEXT_MAX = 4096
# CRI names (metadata.name) are the kubelet's pod and container names, but other clients
# send anything: printable ASCII without '/', as a file name could hold it.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
INT64_MAX = 2**63 - 1


def text(value, field, limit=TEXT_MAX, allow_empty=True):
    if not isinstance(value, str):
        raise InputError(f"{field}: not a string")
    if not value and not allow_empty:
        raise InputError(f"{field}: must not be empty")
    if len(value) > limit:
        raise InputError(f"{field}: longer than {limit} characters")
    if "\0" in value:
        raise InputError(f"{field}: holds a NUL character")
    return value


def name(value, field):
    text(value, field, 253, allow_empty=False)
    if not NAME_RE.fullmatch(value):
        raise InputError(f"{field}: {value!r} must be 1-253 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return value


def namespace(value, field):
    if value == "":
        return "default"
    text(value, field, 63)
    if not LABEL_RE.fullmatch(value):
        raise InputError(f"{field}: {value!r} must be a DNS-1123 label (lowercase letters, "
                         "digits and '-', at most 63)")
    return value


def object_id(value, field):
    """A sandbox or container id, or a prefix of one (ours: 64 lowercase hex digits)."""
    text(value, field, 128, allow_empty=False)
    if not ID_RE.fullmatch(value):
        raise InputError(f"{field}: {value!r} is not an id (letters, digits, '.', '_', '-')")
    return value


def number(value, field, low=0, high=INT64_MAX):
    if not low <= value <= high:
        raise InputError(f"{field}: {value} is out of range [{low}, {high}]")
    return value


def absolute_path(value, field, allow_empty=False):
    """An absolute, normalised path: no '..', '.', '//' or trailing '/' (a client's path is
    taken literally, never resolved against what it may point at)."""
    text(value, field, 4096, allow_empty=allow_empty)
    if not value and allow_empty:
        return value
    if not value.startswith("/") or os.path.normpath(value) != value or value.startswith("//"):
        raise InputError(f"{field}: {value!r} must be an absolute, normalised path "
                         "(no '..', '.' or '//')")
    return value


def relative_path(value, field):
    text(value, field, 4096, allow_empty=False)
    parts = value.split("/")
    if value.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"{field}: {value!r} must be a relative path without '..', '.' or "
                         "empty components")
    return value


def labels(mapping, field):
    """Labels and annotations: keys and values are text of bounded size."""
    if len(mapping) > 1024:
        raise InputError(f"{field}: more than 1024 entries")
    total = 0
    for key, value in mapping.items():
        text(key, f"{field} key", 317, allow_empty=False)
        text(value, f"{field}[{key!r}]", 256 * 1024)
        total += len(key) + len(value)
    if total > 256 * 1024:
        raise InputError(f"{field}: more than 256 KiB together")
    return dict(mapping)


def nspod_name(cri_name, *salt, limit=63):
    """A DNS-1123 name for nspod (pod or container) made from a CRI name: its readable part
    (lowercase, other characters as '-') and 8 hex digits of everything that makes it
    unique, so two CRI names never meet in one nspod name."""
    digest = hashlib.sha256("\0".join([cri_name, *map(str, salt)]).encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9-]+", "-", cri_name.lower()).strip("-")[:limit - 9].strip("-")
    return f"{base}-{digest}" if base else f"c-{digest}"


def id_of(*parts):
    """The 64-hex id CRI clients see: of a pod's uid, or of (its uid, a container name)."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()

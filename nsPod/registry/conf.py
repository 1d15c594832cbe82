"""containers-registries.conf(5), version 2: the file Podman, CRI-O and Skopeo read.

Read from $NSPOD_REGISTRIES_CONF, else /etc/containers/registries.conf (a missing file is an
empty one) and its drop-ins, /etc/containers/registries.conf.d/*.conf. What nspod uses of it:

  [[registry]]            prefix (or location alone), location, insecure, blocked,
                          mirror-by-digest-only
  [[registry.mirror]]     location, insecure, pull-from-mirror (all | digest-only | tag-only)
  unqualified-search-registries
                          a short name (no registry: `busybox`, `team/app`) is tried on each,
                          in order, as Podman does; with none listed it is normalised as
                          Kubernetes does (docker.io/library/...).

The [[registry]] that applies to a reference is the one with the longest matching prefix; a
prefix `*.example.com` matches any subdomain of example.com (not example.com itself), as the
man page says. Its location replaces the matched prefix. Mirrors are tried in order before the
location. Other keys (short-name-mode, [aliases], credential-helpers...) are ignored.
"""
import os
import re
import tomllib

from nsPod.errors import InputError, describe
from nsPod.manifest import image_reference as reference

DEFAULT_PATH = "/etc/containers/registries.conf"
ENV = "NSPOD_REGISTRIES_CONF"
_PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")
_LOCATION = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9._/-]*)?|\[[0-9a-fA-F:]+\](:[0-9]{1,5})?(/[a-z0-9._/-]*)?")


class ConfError(InputError):
    """registries.conf cannot be read or says something invalid."""


class Endpoint:
    """Where to ask for a repository: host[:port], the repository path there, and TLS."""
    __slots__ = ("host", "path", "insecure", "mirror")

    def __init__(self, host, path, insecure, mirror):
        self.host, self.path, self.insecure, self.mirror = host, path, insecure, mirror

    def __repr__(self):
        return (f"Endpoint({self.host}/{self.path}, insecure={self.insecure}, "
                f"mirror={self.mirror})")


class Registry:
    __slots__ = ("prefix", "location", "insecure", "blocked", "digest_only", "mirrors")

    def __init__(self, prefix, location, insecure=False, blocked=False, digest_only=False,
                 mirrors=()):
        self.prefix, self.location, self.insecure = prefix, location, insecure
        self.blocked, self.digest_only, self.mirrors = blocked, digest_only, list(mirrors)


class Conf:
    def __init__(self, registries=(), search=(), path=""):
        self.registries = list(registries)
        self.search = list(search)
        self.path = path

    def match(self, repository):
        """The [[registry]] whose prefix is the longest match for `repository`
        (domain/path, no tag), or None."""
        best, best_len = None, -1
        for registry in self.registries:
            n = _prefix_match(registry.prefix, repository)
            if n > best_len:
                best, best_len = registry, n
        return best

    def candidates(self, ref, short):
        """The references a pull of `ref` tries, in order: each search registry's for a
        short name when the file lists any, else `ref` itself."""
        if not short or not self.search:
            return [ref]
        return [reference.qualify(ref, registry) for registry in self.search]

    def endpoints(self, ref):
        """[Endpoint] to try in order for a Reference: mirrors, then the registry itself.
        ConfError-free; a blocked registry raises BlockedError."""
        repository = ref.repository
        registry = self.match(repository)
        if registry is None:
            return [Endpoint(ref.domain, ref.path, False, False)]
        if registry.blocked:
            raise BlockedError(f"{ref}: registry {registry.prefix} is blocked in {self.path}")
        rest = _rest_after_prefix(registry.prefix, repository)
        found = []
        by_digest = bool(ref.digest)
        for mirror in registry.mirrors:
            policy = mirror["pull-from-mirror"]
            if registry.digest_only and not by_digest:
                continue
            if (policy == "digest-only" and not by_digest) or (policy == "tag-only" and by_digest):
                continue
            found.append(_endpoint(mirror["location"] + rest, mirror["insecure"], True))
        location = registry.location if registry.location else _literal_prefix(registry.prefix)
        found.append(_endpoint(location + rest, registry.insecure, False))
        return found


class BlockedError(InputError):
    pass


def _endpoint(location, insecure, mirror):
    host, _, path = location.partition("/")
    return Endpoint(host, path, insecure, mirror)


def _prefix_match(prefix, repository):
    """How long a match `prefix` is for `repository`, -1 for none. A prefix matches at a
    component boundary (quay.io/a matches quay.io/a and quay.io/a/b, never quay.io/ab)."""
    if prefix.startswith("*."):
        host = repository.split("/", 1)[0].split(":", 1)[0]
        suffix = prefix[1:]               # ".example.com"
        if host.endswith(suffix) and len(host) > len(suffix):
            return len(prefix)
        return -1
    if repository == prefix or repository.startswith(prefix + "/") or prefix.endswith("/") \
            and repository.startswith(prefix):
        return len(prefix)
    return -1


def _rest_after_prefix(prefix, repository):
    if prefix.startswith("*."):
        host, slash, rest = repository.partition("/")
        return "/" + rest if slash else ""
    return repository[len(prefix):]


def _literal_prefix(prefix):
    return prefix


def path():
    return os.environ.get(ENV) or DEFAULT_PATH


def load(file=None, dropins=None):
    """The Conf of registries.conf (at `file`, $NSPOD_REGISTRIES_CONF or the default), with
    the drop-ins of `dropins` (default: /etc/containers/registries.conf.d/*.conf, for the
    default file only, as containers/image reads them when no other file is named) merged in
    name order: a later file's [[registry]] replaces an earlier one's of the same prefix, its
    unqualified-search-registries replace the earlier list."""
    file = file or path()
    if dropins is None and file == DEFAULT_PATH:
        dropins = DEFAULT_PATH + ".d"
    data = _read(file, missing_ok=file == DEFAULT_PATH)
    merged = parse(data, file) if data is not None else Conf(path=file)
    for name in _dropin_names(dropins):
        extra_file = os.path.join(dropins, name)
        extra = _read(extra_file, missing_ok=True)
        if extra is None:
            continue
        more = parse(extra, extra_file)
        by_prefix = {r.prefix: r for r in merged.registries}
        for r in more.registries:
            by_prefix[r.prefix] = r
        merged.registries = list(by_prefix.values())
        if "unqualified-search-registries" in extra:
            merged.search = more.search
    return merged


def _dropin_names(directory):
    if not directory:
        return []
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(".conf"))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ConfError(f"{directory}: cannot list it: {describe(e)}") from None


def _read(file, missing_ok):
    try:
        with open(file, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        if not missing_ok:
            raise ConfError(f"{ENV}: {file}: no such file") from None
        return None
    except tomllib.TOMLDecodeError as e:
        raise ConfError(f"{file}: not TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfError(f"{file}: cannot read it: {describe(e)}") from None


def parse(data, file="registries.conf"):
    if "registries" in data and isinstance(data["registries"], dict):
        raise ConfError(f"{file}: version 1 ([registries.search] ...) is not supported; "
                        "write version 2 ([[registry]], see containers-registries.conf(5))")
    search = data.get("unqualified-search-registries", [])
    if not isinstance(search, list) or not all(isinstance(s, str) for s in search):
        raise ConfError(f"{file}: unqualified-search-registries: must be a list of strings")
    for registry in search:
        _check_location(registry, f"{file}: unqualified-search-registries")
    tables = data.get("registry", [])
    if not isinstance(tables, list):
        raise ConfError(f"{file}: registry: must be an array of tables ([[registry]])")
    registries, seen = [], set()
    for i, table in enumerate(tables):
        where = f"{file}: [[registry]] #{i + 1}"
        if not isinstance(table, dict):
            raise ConfError(f"{where}: must be a table")
        location = _string(table, "location", where)
        prefix = _string(table, "prefix", where) or location
        if not prefix:
            raise ConfError(f"{where}: needs a prefix or a location")
        _check_prefix(prefix, where)
        if location:
            _check_location(location, f"{where}: location")
        elif prefix.startswith("*."):
            raise ConfError(f"{where}: a wildcard prefix {prefix!r} needs a location")
        if prefix in seen:
            raise ConfError(f"{where}: prefix {prefix!r} is defined twice")
        seen.add(prefix)
        mirrors = []
        raw = table.get("mirror", [])
        if not isinstance(raw, list):
            raise ConfError(f"{where}: mirror: must be an array of tables ([[registry.mirror]])")
        for j, m in enumerate(raw):
            mwhere = f"{where} mirror #{j + 1}"
            if not isinstance(m, dict):
                raise ConfError(f"{mwhere}: must be a table")
            mlocation = _string(m, "location", mwhere)
            if not mlocation:
                raise ConfError(f"{mwhere}: location: required")
            _check_location(mlocation, f"{mwhere}: location")
            policy = _string(m, "pull-from-mirror", mwhere) or "all"
            if policy not in _PULL_FROM_MIRROR:
                raise ConfError(f"{mwhere}: pull-from-mirror: {policy!r}: must be one of "
                                f"{', '.join(_PULL_FROM_MIRROR)}")
            mirrors.append({"location": mlocation.rstrip("/"),
                            "insecure": _bool(m, "insecure", mwhere),
                            "pull-from-mirror": policy})
        registries.append(Registry(
            prefix, location.rstrip("/"), insecure=_bool(table, "insecure", where),
            blocked=_bool(table, "blocked", where),
            digest_only=_bool(table, "mirror-by-digest-only", where), mirrors=mirrors))
    return Conf(registries, search, file)


def _string(table, key, where):
    value = table.get(key, "")
    if not isinstance(value, str):
        raise ConfError(f"{where}: {key}: must be a string")
    return value


def _bool(table, key, where):
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ConfError(f"{where}: {key}: must be true or false")
    return value


def _check_prefix(prefix, where):
    if prefix.startswith("*."):
        if "/" in prefix or not _LOCATION.fullmatch(prefix[2:]):
            raise ConfError(f"{where}: prefix {prefix!r}: a wildcard prefix is *.domain only")
        return
    if "*" in prefix:
        raise ConfError(f"{where}: prefix {prefix!r}: '*' only as a leading '*.'")
    _check_location(prefix.rstrip("/"), f"{where}: prefix")


def _check_location(location, where):
    if "://" in location or not _LOCATION.fullmatch(location.rstrip("/")):
        raise ConfError(f"{where}: {location!r}: must be host[:port][/path] (no scheme)")

"""Image references as Kubernetes reads them (the docker/distribution reference grammar).

`nginx:1.25` is `docker.io/library/nginx:1.25`; `hashicorp/vault` is
`docker.io/hashicorp/vault:latest`; a first component with a '.' or a ':' (a port), or
`localhost`, is a registry host; a missing tag is `latest`; `name@sha256:<64 hex>` pins a
manifest by digest (a tag beside a digest is kept for display, the digest decides).

One deviation from the grammar, on the safe side: a host name must be lowercase too (DNS is
case-insensitive, and one spelling per image keeps the store's names unique).
"""
import re

from nsPod.errors import InputError

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_DOMAINS = ("index.docker.io", "registry-1.docker.io")
_OFFICIAL = "library/"
NAME_MAX = 255          # the whole repository name, host included (distribution's limit)

_DOMAIN_COMPONENT = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
_DOMAIN = re.compile(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]{{1,5}})?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGESTS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")

USAGE = ("not an image name (lowercase [registry[:port]/]path[:tag][@sha256:digest], "
         "as in busybox:1.36 or registry.k8s.io/pause:3.9)")


class Reference:
    """A parsed, normalised reference: domain, path, tag, digest."""
    __slots__ = ("domain", "path", "tag", "digest")

    def __init__(self, domain, path, tag, digest):
        self.domain, self.path, self.tag, self.digest = domain, path, tag, digest

    @property
    def repository(self):
        """docker.io/library/nginx"""
        return f"{self.domain}/{self.path}"

    @property
    def selector(self):
        """What the registry is asked for: the digest when there is one, else the tag."""
        return self.digest or self.tag

    def __str__(self):
        """The full normalised reference: docker.io/library/nginx:1.25"""
        return self.repository + self._suffix()

    def familiar(self):
        """The short spelling docker prints: nginx:1.25, hashicorp/vault:latest,
        registry.k8s.io/pause:3.9. nspod's store names images by it."""
        name = self.repository
        if self.domain == DEFAULT_DOMAIN:
            name = self.path[len(_OFFICIAL):] if self.path.startswith(_OFFICIAL) \
                and "/" not in self.path[len(_OFFICIAL):] else self.path
        return name + self._suffix()

    def _suffix(self):
        tag = f":{self.tag}" if self.tag else ""
        return tag + (f"@{self.digest}" if self.digest else "")

    def __eq__(self, other):
        return isinstance(other, Reference) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))

    def __repr__(self):
        return f"Reference({str(self)!r})"


def problem(text):
    """None when `text` is a valid image reference, else why not."""
    try:
        parse(text)
    except InputError as e:
        return str(e)
    return None


def parse(text):
    """The normalised Reference for `text`; InputError (a sentence, no argument name) if it is
    not one."""
    if not isinstance(text, str) or not text:
        raise InputError("must not be empty")
    if text != text.strip() or any(ord(c) < 0x21 or ord(c) > 0x7e for c in text):
        raise InputError(USAGE)
    rest, at, digest = text.partition("@")
    if at:
        _check_digest(digest)
    else:
        digest = ""
    # The tag is after the last ':' that follows the last '/' (a port's ':' comes before it).
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = ""
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise InputError(f"{USAGE}: bad tag {tag!r}")
    domain, path = _split_domain(rest)
    if not _DOMAIN.fullmatch(domain):
        raise InputError(f"{USAGE}: bad registry host {domain!r}")
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise InputError(USAGE)
    if len(f"{domain}/{path}") > NAME_MAX:
        raise InputError(f"{USAGE}: longer than {NAME_MAX} characters")
    if not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def _split_domain(name):
    """docker's splitDockerDomain: the first component is a host if it looks like one."""
    first, slash, remainder = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, remainder
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain in _LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL + path
    return domain, path


def is_short(text):
    """True when `text` names no registry (busybox, team/app:1): a short name, which
    registries.conf's unqualified-search-registries may resolve (registry/conf.py)."""
    name = text.partition("@")[0]
    first, slash, _ = name.partition("/")
    return not (slash and ("." in first or ":" in first or first == "localhost"))


def qualify(ref, registry):
    """The Reference `ref` (parsed from a short name) would be on search registry
    `registry` (host[:port][/namespace]): docker.io adds library/ to one-component names,
    others take the name as written."""
    domain, _, namespace = registry.partition("/")
    path = ref.path[len(_OFFICIAL):] if ref.path.startswith(_OFFICIAL) else ref.path
    if domain in _LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if namespace:
        path = f"{namespace.strip('/')}/{path}"
    elif domain == DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL + path
    return Reference(domain, path, ref.tag, ref.digest)


def _check_digest(digest):
    algorithm, colon, hex_digest = digest.partition(":")
    if not colon or algorithm not in _DIGESTS:
        raise InputError(f"{USAGE}: unsupported digest {digest!r} (sha256:<64 hex digits>)")
    if len(hex_digest) != _DIGESTS[algorithm] or not _HEX.fullmatch(hex_digest):
        raise InputError(f"{USAGE}: bad digest {digest!r} ({algorithm}:<"
                         f"{_DIGESTS[algorithm]} lowercase hex digits>)")


def check_digest(digest):
    """InputError unless `digest` is algorithm:hex as references and descriptors spell it."""
    _check_digest(digest)
    return digest


def store_name(text):
    """The image store's name for a reference: its familiar spelling (busybox:latest,
    127.0.0.1:5000/busybox:1, busybox@sha256:...)."""
    return parse(text).familiar()


def default_pull_policy(text):
    """Kubernetes' default imagePullPolicy: Always for :latest or no tag (and no digest),
    else IfNotPresent."""
    ref = parse(text)
    if ref.digest:
        return "IfNotPresent"
    return "Always" if ref.tag == DEFAULT_TAG else "IfNotPresent"

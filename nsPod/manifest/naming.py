"""Names derived from a Pod (hostname and domain as the kubelet makes them) and image names."""
import re

from nsPod.errors import InputError
from nsPod.manifest.syntax import (
    absolute_path_problem, dns_label_problem, dns_subdomain_problem, name_problem, q)


CLUSTER_DOMAIN = "cluster.local"
HOSTNAME_MAX = 63
FQDN_MAX = 64  # the kubelet's limit for setHostnameAsFQDN: Linux's HOST_NAME_MAX


def effective_hostname(pod):
    """The pod's hostname as the kubelet sets it (GeneratePodHostNameAndDomain)."""
    hostname = _truncate_hostname(pod.hostname or pod.name)
    domain = host_domain(pod)
    if pod.set_hostname_as_fqdn and domain:
        return f"{hostname}.{domain}"
    return hostname


def host_domain(pod):
    """<subdomain>.<namespace>.svc.cluster.local, or "" without a subdomain (for /etc/hosts)."""
    if not pod.subdomain:
        return ""
    return f"{pod.subdomain}.{pod.namespace}.svc.{CLUSTER_DOMAIN}"


def validate_name(name, what="pod"):
    """InputError unless `name` is valid: a DNS-1123 subdomain for a pod, a label otherwise."""
    problem = name_problem(name, dns_subdomain_problem if what == "pod" else dns_label_problem)
    if problem:
        raise InputError(f"invalid {what} name {q(name)}: {problem}")


# An image in nspod's local store: a lowercase name as an image repository's last component
# (letters, digits and . _ - inside) with an optional :tag as registries allow it. No '/':
# there are no registries here, and the name is one directory of the store.
_IMAGE_NAME = re.compile(r"[a-z0-9]([-a-z0-9._]{0,126}[a-z0-9])?")
_IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DEFAULT_IMAGE_TAG = "latest"


def image_is_path(image):
    """A container's `image` names a directory (an unpacked root filesystem) when absolute."""
    return image.startswith("/")


def image_name_problem(name):
    """None when `name` is a valid name for the image store, else why not."""
    base, colon, tag = name.partition(":")
    if not _IMAGE_NAME.fullmatch(base) or (colon and not _IMAGE_TAG.fullmatch(tag)):
        return ("not an image name (lowercase letters, digits, '.', '_' and '-', with an "
                "optional :tag, as in busybox:1.36)")
    return None


def image_problem(image):
    """None when `image` is an absolute directory path or a valid store name, else why not."""
    if image_is_path(image):
        return absolute_path_problem(image)
    problem = image_name_problem(image)
    return problem and f"{problem} nor an absolute path to a root filesystem"


def image_reference(image):
    """The store's name for an image: name:tag, the tag defaulting to latest as registries do."""
    return image if ":" in image else f"{image}:{DEFAULT_IMAGE_TAG}"


def _truncate_hostname(hostname):
    if len(hostname) <= HOSTNAME_MAX:
        return hostname
    # The kubelet's truncatePodHostnameIfNeeded: a hostname must not end with '-' or '.'.
    return hostname[:HOSTNAME_MAX].rstrip("-.")

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


# An image is a reference as Kubernetes reads it (manifest/image_reference.py): nginx:1.25 is
# docker.io/library/nginx:1.25. The store names it by its short (familiar) spelling.
DEFAULT_IMAGE_TAG = "latest"
IMAGE_PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def image_is_path(image):
    """A container's `image` names a directory (an unpacked root filesystem) when absolute."""
    return image.startswith("/")


def image_name_problem(name):
    """None when `name` is a valid image reference, else why not."""
    from nsPod.manifest import image_reference as reference
    return reference.problem(name)


def image_problem(image):
    """None when `image` is an absolute directory path or a valid store name, else why not."""
    if image_is_path(image):
        return absolute_path_problem(image)
    problem = image_name_problem(image)
    return problem and f"{problem} nor an absolute path to a root filesystem"


def image_reference(image):
    """The store's name for an image: its familiar spelling, the tag defaulting to latest as
    registries do (busybox:latest, 127.0.0.1:5000/busybox:1, quay.io/a/b@sha256:...)."""
    from nsPod.manifest import image_reference as reference
    return reference.store_name(image)


def _truncate_hostname(hostname):
    if len(hostname) <= HOSTNAME_MAX:
        return hostname
    # The kubelet's truncatePodHostnameIfNeeded: a hostname must not end with '-' or '.'.
    return hostname[:HOSTNAME_MAX].rstrip("-.")

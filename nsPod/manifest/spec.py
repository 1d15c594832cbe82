"""Kubernetes v1 Pod manifests -> frozen dataclasses, validated, every problem with its field path.

The entry points (load_pods, pod_from_dict, container_from_dict) and, for the callers that
import one module, the names they use from the others. Pure: no syscalls, no files; it reads
only the text or dicts it is handed and prints nothing. The package:

  model.py      the dataclasses a validated Pod is made of
  schema.py     which fields exist and how each is treated (FEATURES gates)
  syntax.py     the problems of one string (names, paths, sysctls)
  check.py      Report (problems and shape readers) and the frozen per-pod Context
  rules_*.py    validate_x(value, path, ctx) for the pod, volumes, containers, handlers,
                securityContext
  naming.py     hostname and domain as the kubelet derives them, image references
  load.py       YAML text <-> plain data (the only yaml importer, lazily)
  output.py     a stored manifest for `nspod generate`
"""
from nsPod.errors import InputError, SpecError
from nsPod.manifest.check import Report, add_line, lone_context, pod_context
from nsPod.manifest.load import MANIFEST_MAX_BYTES, dump_yaml, load_yaml
from nsPod.manifest.model import (  # noqa: F401 (re-exported)
    DEFAULT_TERMINATION_MESSAGE_PATH, NETWORK_ANNOTATION, Container, ContainerPort, DNSConfig,
    EnvVar, Handler, HostAlias, Pod, Probe, Resources, SecurityContext, Volume, VolumeMount)
from nsPod.manifest.naming import (  # noqa: F401 (re-exported)
    CLUSTER_DOMAIN, DEFAULT_IMAGE_TAG, effective_hostname, host_domain, image_is_path,
    image_name_problem, image_problem, image_reference, validate_name)
from nsPod.manifest.output import clean_manifest  # noqa: F401 (re-exported)
from nsPod.manifest.rules_containers import validate_container
from nsPod.manifest.rules_pod import validate_pod, validate_within_pod_limits
from nsPod.manifest.schema import CAPABILITY_NAMES, FEATURES  # noqa: F401 (re-exported)
from nsPod.manifest.syntax import q


def load_pods(text, source="<stdin>", name_override=None, allowed_unsafe_sysctls=()):
    """Every Pod in a YAML stream, and the warnings; SpecError listing every problem.

    Empty documents are skipped. With more than one document each line starts with
    "document N: " (N counts the non-empty documents). A sysctl outside the kubelet's safe set
    is refused unless allowed_unsafe_sysctls (sysctl_policy.parse_allowlist) allows it; None
    leaves that check out (a pod admitted before, as `apply` reads it).
    """
    documents, problems = load_yaml(text, source)
    if not documents and not problems:
        raise SpecError([f"{source}: no Pod in it (the manifest is empty)"])
    if name_override is not None and len(documents) > 1:
        raise InputError(f"--name needs a manifest with one Pod; "
                         f"{source} has {len(documents)} documents")
    pods, warnings, first_of = [], [], {}
    multiple = len(documents) > 1
    for number, document in enumerate(documents, 1):
        report = Report(f"document {number}: " if multiple else "")
        pod = validate_pod(document, report, name_override, require_kind=True,
                           need_containers=True, allowed_sysctls=allowed_unsafe_sysctls)
        if pod is not None:
            if pod.name in first_of:
                report.error("metadata.name",
                             f"{q(pod.name)} is also the name of document {first_of[pod.name]}")
            first_of.setdefault(pod.name, number)
            pods.append(pod)
        for line in report.problems:
            add_line(problems, line, "", "problems")
        for line in report.warnings:
            add_line(warnings, line, "", "warnings")
    if problems:
        raise SpecError(problems)
    return pods, warnings


def pod_from_dict(d, path_prefix="", name_override=None, allow_no_containers=False):
    """One Pod from a dict, validated as load_pods validates a document: (Pod, warnings).

    apiVersion and kind may be left out here (the CLI builds pods from flags); when given they
    must be v1 and Pod. allow_no_containers is for `nspod create`: a pod of only its pause,
    which `nspod add` fills.
    """
    report = Report(path_prefix)
    pod = validate_pod(d, report, name_override, require_kind=False,
                       need_containers=not allow_no_containers)
    if report.problems:
        raise SpecError(report.problems)
    return pod, report.warnings


def container_from_dict(d, path, init, pod):
    """One container (for `nspod add`): (Container, warnings) or SpecError.

    With `pod`, the container joins it: its name must be new there, its volumeMounts must name
    the pod's volumes, its hostPorts must be free and its limits within the pod's. The pod's
    facts come from pod_context, the same record validate_pod builds.
    """
    report = Report()
    new_name = d["name"] if isinstance(d, dict) and isinstance(d.get("name"), str) else None
    ctx = (lone_context(report, new_name) if pod is None
           else pod_context(pod, report, new_name))
    if init and not FEATURES["spec.initContainers"]:
        report.error(path, "init containers are not supported yet")
    container = validate_container(d, path, init, ctx)
    if container is not None and pod is not None:
        validate_within_pod_limits([(path, container)], pod.resources, ctx)
    if report.problems:
        raise SpecError(report.problems)
    return container, report.warnings

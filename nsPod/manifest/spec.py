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
    leaves that check out (a pod admitted before, as `apply` reads it). Workloads
    (Deployment, Job, ...) are their pods and a List its items (manifest/workloads.py).
    """
    docs = load_documents(text, source, name_override, allowed_unsafe_sysctls)
    return docs.pods, docs.warnings


def load_documents(text, source="<stdin>", name_override=None, allowed_unsafe_sysctls=(),
                   rng=None):
    """A workloads.Documents with .pods (validated Pod records) for a YAML stream; the
    ConfigMaps, Secrets and PersistentVolumeClaims beside them are in .configmaps, .secrets
    and .claims, keyed (namespace, name). SpecError lists every problem; the warnings are
    in its .warnings too, so they print even then."""
    from nsPod.manifest.workloads import sort_documents
    documents, problems = load_yaml(text, source)
    if not documents and not problems:
        raise SpecError([f"{source}: no Pod in it (the manifest is empty)"])
    docs = sort_documents(documents, rng)
    problems.extend(docs.problems)
    warnings = list(docs.warnings)
    if name_override is not None and len(docs.pod_docs) > 1:
        raise InputError(f"--name needs a manifest with one Pod; "
                         f"{source} makes {len(docs.pod_docs)} pods")
    if not docs.pod_docs and not docs.problems:
        # one line for one cause: the ignored kinds are named here, not also warned about
        kinds = ", ".join(dict.fromkeys(q(k) for k in docs.ignored))
        problems.append(f"{source}: no Pod in it, nor a workload that makes pods"
                        + (f" (kind {kinds} is not run)" if kinds else ""))
        warnings = [w for w in warnings if "ignored: kind " not in w]
    pods, first_of = [], {}
    for prefix, report, document in docs.pod_docs:
        pod = validate_pod(document, report, name_override, require_kind=True,
                           need_containers=True, allowed_sysctls=allowed_unsafe_sysctls)
        if pod is not None:
            if pod.name in first_of:
                report.error("metadata.name", f"{q(pod.name)} is also the name of "
                             f"{first_of[pod.name] or 'another pod'}")
            first_of.setdefault(pod.name, prefix.rstrip(": "))
            pods.append(pod)
        for line in report.problems:
            if line not in problems:   # a workload's replicas repeat their template's
                add_line(problems, line, "", "problems")
        for line in report.warnings:
            if line not in warnings:
                add_line(warnings, line, "", "warnings")
    if problems:
        error = SpecError(problems)
        error.warnings = warnings
        raise error
    docs.pods, docs.warnings = pods, warnings
    return docs


def load_owners(text, source="<stdin>"):
    """What a file makes, for `nspod delete -f`, read without validating the pods (a file
    that no longer validates can still be cleaned up): (Pod names, {(namespace,
    "<Kind>/<name>")} of its workloads)."""
    from nsPod.manifest.workloads import sort_documents
    documents, _ = load_yaml(text, source)
    docs = sort_documents(documents)
    return docs.pod_names, docs.owners


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

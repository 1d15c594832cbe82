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
import dataclasses

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
from nsPod.manifest.sources import SOURCE_KINDS, Sources, add_source, read_source
from nsPod.manifest.syntax import q


def load_pods(text, source="<stdin>", name_override=None, allowed_unsafe_sysctls=(),
              sources_required=True):
    """Every Pod in a YAML stream, and the warnings; SpecError listing every problem.

    Empty documents are skipped. With more than one document each line starts with
    "document N: " (N counts the non-empty documents). A sysctl outside the kubelet's safe set
    is refused unless allowed_unsafe_sysctls (sysctl_policy.parse_allowlist) allows it; None
    leaves that check out (a pod admitted before, as `apply` reads it). Workloads
    (Deployment, Job, ...) are their pods and a List its items (manifest/workloads.py);
    ConfigMap, Secret and PersistentVolumeClaim documents are the pods' Sources (Pod.sources).
    A ConfigMap, Secret or key a pod needs and no file gives is an error; with
    sources_required=False (`nspod validate`: the manifest alone, as the API server takes a
    pod whose ConfigMap is made later) it is a warning.
    """
    docs = load_all([(text, source)], name_override, allowed_unsafe_sysctls,
                    sources_required=sources_required)
    return docs.pods, docs.warnings


def load_files(texts, name_override=None, allowed_unsafe_sysctls=(), rng=None,
               sources_required=True):
    """load_pods over several files [(text, source)]: the ConfigMaps, Secrets and claims of
    any of them serve the pods of all of them in their namespace (`nspod run a.yaml b.yaml`)."""
    docs = load_all(texts, name_override, allowed_unsafe_sysctls, rng, sources_required)
    return docs.pods, docs.warnings


def load_documents(text, source="<stdin>", name_override=None, allowed_unsafe_sysctls=(),
                   rng=None):
    """A workloads.Documents with .pods (validated Pod records) for a YAML stream; the
    ConfigMaps, Secrets and PersistentVolumeClaims beside them are in .configmaps, .secrets
    and .claims, keyed (namespace, name), and in each pod's .sources. SpecError lists every
    problem; the warnings are in its .warnings too, so they print even then."""
    return load_all([(text, source)], name_override, allowed_unsafe_sysctls, rng)


def load_all(texts, name_override=None, allowed_unsafe_sysctls=(), rng=None,
             sources_required=True):
    """load_documents over several files [(text, source)]: one Documents for all of them,
    every line prefixed with its file's name when there are several."""
    from nsPod.manifest.workloads import Documents, sort_documents
    docs, problems = Documents(), []
    several = len(texts) > 1
    for text, source in texts:
        documents, duplicates = load_yaml(text, source)
        problems += duplicates
        if not documents and not duplicates:
            raise SpecError([f"{source}: no Pod in it (the manifest is empty)"])
        one = sort_documents(documents, rng, f"{source}: " if several else "")
        docs.pod_docs += one.pod_docs
        docs.source_docs += one.source_docs
        for table in ("configmaps", "secrets", "claims"):
            getattr(docs, table).update(getattr(one, table))
        docs.owners |= one.owners
        docs.pod_names |= one.pod_names
        docs.ignored += one.ignored
        docs.problems += one.problems
        docs.warnings += one.warnings
    problems.extend(docs.problems)
    warnings = list(docs.warnings)
    names = ", ".join(source for _, source in texts)
    if name_override is not None and len(docs.pod_docs) > 1:
        raise InputError(f"--name needs a manifest with one Pod; "
                         f"{names} makes {len(docs.pod_docs)} pods")
    if not docs.pod_docs and not docs.problems:
        # one line for one cause: the ignored kinds are named here, not also warned about
        kinds = ", ".join(dict.fromkeys(q(k) for k in docs.ignored))
        only = " (only ConfigMaps, Secrets or PersistentVolumeClaims)" \
            if docs.source_docs and not kinds else ""
        problems.append(f"{names}: no Pod in it, nor a workload that makes pods{only}"
                        + (f" (kind {kinds} is not run)" if kinds else ""))
        warnings = [w for w in warnings if "ignored: kind " not in w]
    sources = take_sources(docs, problems, warnings)
    pods, first_of = [], {}
    for prefix, report, document in docs.pod_docs:
        pod = validate_pod(document, report, name_override, require_kind=True,
                           need_containers=True, allowed_sysctls=allowed_unsafe_sysctls)
        if pod is not None:
            if pod.name in first_of:
                report.error("metadata.name", f"{q(pod.name)} is also the name of "
                             f"{first_of[pod.name] or 'another pod'}")
            first_of.setdefault(pod.name, prefix.rstrip(": "))
            pod = dataclasses.replace(pod, sources=sources.get(pod.namespace, Sources()))
            check_references(pod, pod.sources, report if sources_required else None, report)
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


def is_source(document):
    return isinstance(document, dict) and document.get("kind") in SOURCE_KINDS


def take_sources(docs, problems, warnings):
    """{namespace: Sources} of a workloads.Documents: its ConfigMaps and Secrets read and
    checked (manifest/sources.py), its claims (PersistentVolumeClaim documents and a
    StatefulSet's volumeClaimTemplates) by name; their problems and warnings appended.
    A pod reads only the Sources of its own namespace, as in Kubernetes."""
    by_namespace = {}
    for prefix, namespace, document in docs.source_docs:
        report = Report(prefix)
        if document.get("apiVersion") not in ("v1", None):
            report.error("apiVersion", f"{q(document.get('apiVersion'))} is not v1")
        got = read_source(document, report)
        if got is not None and not report.problems:
            by_namespace[namespace] = add_source(by_namespace.get(namespace, Sources()), *got,
                                                 report)
        for line in report.problems:
            add_line(problems, line, "", "problems")
        for line in report.warnings:
            add_line(warnings, line, "", "warnings")
    for namespace, claim in docs.claims:
        had = by_namespace.get(namespace, Sources())
        by_namespace[namespace] = Sources(had.configmaps, had.secrets, had.claims | {claim})
    return by_namespace


def check_references(pod, sources, report, warn_to=None):
    """Every ConfigMap/Secret/key the pod needs and is not optional exists in `sources`:
    the kubelet's CreateContainerConfigError, found before anything is made (an error in
    `report`, or a warning in `warn_to` when report is None)."""
    from nsPod.manifest.sources import missing_problem
    for where, kind, name, key, optional in references(pod):
        problem = missing_problem(sources, kind, name, key, optional)
        if problem and report is not None:
            report.error(where, problem)
        elif problem:
            warn_to.warn(where, problem + "; `nspod run` refuses the pod without it")


def references(pod):
    """(field, kind, name, key or None, optional) of every ConfigMap/Secret the pod reads."""
    for i, v in enumerate(pod.volumes):
        for j, p in enumerate(v.projections):
            if p.kind == "downwardAPI":
                continue
            where = (f"spec.volumes[{i}].{p.kind}" if v.kind != "projected"
                     else f"spec.volumes[{i}].projected.sources[{j}].{p.kind}")
            if not p.items:
                yield where, p.kind, p.name, None, p.optional
            for k, item in enumerate(p.items):
                yield f"{where}.items[{k}].key", p.kind, p.name, item.key, p.optional
    for key, group in (("initContainers", pod.init_containers), ("containers", pod.containers)):
        for i, c in enumerate(group):
            for j, e in enumerate(c.env):
                if e.source_kind:
                    yield (f"spec.{key}[{i}].env[{j}].valueFrom.{e.source_kind}KeyRef",
                           e.source_kind, e.source_name, e.key, e.optional)
            for j, e in enumerate(c.env_from):
                yield (f"spec.{key}[{i}].envFrom[{j}].{e.kind}Ref", e.kind, e.name, None,
                       e.optional)


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

"""The documents of a file beyond `kind: Pod`: a List is its items; a Deployment, ReplicaSet,
StatefulSet, DaemonSet or Job becomes the pods its controller would make, named as
Kubernetes names them and labelled with their owner; ConfigMaps, Secrets and
PersistentVolumeClaims are kept for the volumes; other API kinds are ignored with a warning.

Pure: no files, no clock; the random suffixes come from the `rng` the caller hands in.
"""
import json
import random
from dataclasses import dataclass, field

from nsPod.manifest.check import Report
from nsPod.manifest.syntax import kind_of, q

# k8s.io/apimachinery/pkg/util/rand: the alphabet of generated names (no vowels, no 0/1/3:
# no words, no look-alikes) and the length of generateName's suffix.
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LENGTH = 5
GENERATED_BASE_MAX = 63 - SUFFIX_LENGTH   # names.SimpleNameGenerator's maxGeneratedNameLength

# The owner of a pod made from a workload, kept where `nspod delete -f` finds it again.
# ownerReferences need the owner's uid (an API server's); a label and an annotation do not.
OWNER_ANNOTATION = "nspod.io/owner"          # "<Kind>/<name>", e.g. "Deployment/web"
OWNER_KIND_LABEL = "nspod.io/owner-kind"     # "Deployment"

WORKLOADS = {  # kind: the apiVersions Kubernetes serves it at
    "Deployment": ("apps/v1",), "ReplicaSet": ("apps/v1",), "StatefulSet": ("apps/v1",),
    "DaemonSet": ("apps/v1",), "Job": ("batch/v1",),
    # legacy, still served (core v1): its pods are named as a ReplicaSet's, <rc>-<5 chars>
    "ReplicationController": ("v1",),
}
KEPT = {"ConfigMap": "v1", "Secret": "v1", "PersistentVolumeClaim": "v1"}
# Kinds a manifest file commonly carries beside its pods; nspod has nothing to make of them.
IGNORED = frozenset((
    "Service", "Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
    "ClusterRoleBinding", "Ingress", "IngressClass", "NetworkPolicy", "PodDisruptionBudget",
    "HorizontalPodAutoscaler", "LimitRange", "ResourceQuota", "PersistentVolume",
    "StorageClass", "Endpoints", "EndpointSlice", "CustomResourceDefinition",
    "PriorityClass", "RuntimeClass", "PodSecurityPolicy", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration", "APIService", "ControllerRevision", "Gateway",
    "HTTPRoute", "VerticalPodAutoscaler", "PodTemplate", "Lease",
))


@dataclass
class Documents:
    """A file's documents sorted by what nspod does with them.

    pod_docs:   [(prefix, report, pod document)]: Pods, and the pods of workloads, to validate
    pods:       the validated Pod records (spec.load_documents)
    configmaps: {(namespace, name): {"data": {...}, "binaryData": {...}}}
    secrets:    {(namespace, name): {"data": {...}, "stringData": {...}, "type": str}}
    claims:     {(namespace, name): the PersistentVolumeClaim's spec (a dict)}
    source_docs: [(prefix, namespace, document)] of the ConfigMaps, Secrets and claims, for
                spec's Sources (manifest/sources.py reads and checks their data)
    owners:     {(namespace, "<Kind>/<name>")} of the workloads (for `delete -f`)
    pod_names:  the metadata.name of each kind: Pod document (for `delete -f`)
    """
    pod_docs: list = field(default_factory=list)
    pods: list = field(default_factory=list)     # filled by spec.load_documents
    configmaps: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)
    claims: dict = field(default_factory=dict)
    source_docs: list = field(default_factory=list)
    owners: set = field(default_factory=set)
    pod_names: set = field(default_factory=set)  # of the kind: Pod documents (delete -f)
    ignored: list = field(default_factory=list)   # the kinds warned about as ignored
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


class _TemplateReport(Report):
    """A Report whose paths are the template's inside the workload: the pod validator's
    `spec.containers[0].image` is the file's `spec.template.spec.containers[0].image`."""

    def _line(self, path, message):
        path = "spec.template." + path if path else "spec.template"
        return super()._line(path, message)


def sort_documents(documents, rng=None, file_prefix=""):
    """Documents for the parsed YAML documents (kind: List flattened into its items); every
    line about them starts with file_prefix (the file's name when several are read)."""
    rng = rng or random.SystemRandom()
    out = Documents()
    flat = []
    for number, doc in enumerate(documents, 1):
        if isinstance(doc, dict) and doc.get("kind") == "List" and "items" in doc:
            items = doc.get("items")
            if not isinstance(items, list):
                out.problems.append(f"{file_prefix}document {number}: items: must be a list, "
                                    f"got {kind_of(items)}")
                continue
            flat.extend((f"{number}.items[{i}]", item) for i, item in enumerate(items)
                        if item is not None)
        else:
            flat.append((str(number), doc))
    multiple = len(flat) > 1
    for label, doc in flat:
        prefix = file_prefix + (f"document {label}: " if multiple or "." in label else "")
        _sort_one(doc, prefix, out, rng)
    out.pod_docs = [(p, r, default_volumes(d)) for p, r, d in out.pod_docs]
    return out


_SOURCELESS = frozenset(("name",))


def default_volumes(doc):
    """The pod document with a volume of only a `name` made an emptyDir, as the API server's
    defaulting does (SetDefaults_Volume); a copy, the input is left as it was."""
    spec = doc.get("spec") if isinstance(doc, dict) else None
    volumes = spec.get("volumes") if isinstance(spec, dict) else None
    if not isinstance(volumes, list) or not any(
            isinstance(v, dict) and set(v) <= _SOURCELESS and "name" in v for v in volumes):
        return doc
    volumes = [{**v, "emptyDir": {}} if isinstance(v, dict) and set(v) <= _SOURCELESS
               and "name" in v else v for v in volumes]
    return {**doc, "spec": {**spec, "volumes": volumes}}


def _sort_one(doc, prefix, out, rng):
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind in (None, "Pod") or not isinstance(kind, str):
        out.pod_docs.append((prefix, Report(prefix), doc))  # the Pod validator says the rest
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            out.pod_names.add(meta["name"])
        return
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name")
    namespace = meta.get("namespace") or "default"
    if kind in KEPT:
        if not isinstance(name, str) or not name:
            out.problems.append(f"{prefix}metadata.name: required")
            return
        key = (namespace, name) if isinstance(namespace, str) else ("default", name)
        out.source_docs.append((prefix, key[0], doc))
        if kind == "ConfigMap":
            out.configmaps[key] = {k: doc.get(k) or {} for k in ("data", "binaryData")}
        elif kind == "Secret":
            out.secrets[key] = {"data": doc.get("data") or {},
                                "stringData": doc.get("stringData") or {},
                                "type": doc.get("type") or "Opaque"}
        else:
            out.claims[key] = doc.get("spec") or {}
        return
    if kind == "CronJob":
        out.problems.append(f"{prefix}kind: CronJob is not supported: run its jobTemplate's "
                            "pod as a Job (kind: Job, spec: the CronJob's "
                            "spec.jobTemplate.spec)")
        return
    if kind in IGNORED:
        out.ignored.append(kind)
        out.warnings.append(f"{prefix}ignored: kind {kind}")
        return
    if kind not in WORKLOADS:
        out.problems.append(f"{prefix}kind: {q(kind)} is not a kind nspod runs (Pod, List, "
                            f"{', '.join(WORKLOADS)}, ConfigMap, Secret, "
                            "PersistentVolumeClaim)")
        return
    _expand(doc, kind, meta, prefix, out, rng)


def _expand(doc, kind, meta, prefix, out, rng):
    """The pods of one workload into out.pod_docs, or its problems into out.problems."""
    problems = []
    version = doc.get("apiVersion")
    if version not in WORKLOADS[kind]:
        problems.append(f"apiVersion: {q(version)} is not served for {kind} "
                        f"(use {WORKLOADS[kind][0]})")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        problems.append("metadata.name: required (a string)")
    namespace = meta.get("namespace") or "default"
    if not isinstance(namespace, str):
        problems.append(f"metadata.namespace: must be a string, got {kind_of(namespace)}")
        namespace = "default"
    if isinstance(name, str) and name:
        # known even when the rest is wrong: `delete -f` cleans up after an edited file
        out.owners.add((namespace, f"{kind}/{name}"))
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        problems.append(f"spec: must be a mapping, got {kind_of(spec)}")
        spec = {}
    template = spec.get("template")
    if not isinstance(template, dict):
        problems.append(f"spec.template: required: a mapping, got {kind_of(template)}")
        template = {}
    tmeta = template.get("metadata")
    if tmeta is None:
        tmeta = {}
    if not isinstance(tmeta, dict):
        problems.append(f"spec.template.metadata: must be a mapping, got {kind_of(tmeta)}")
        tmeta = {}
    for key in ("labels", "annotations"):
        if tmeta.get(key) is not None and not isinstance(tmeta.get(key), dict):
            problems.append(f"spec.template.metadata.{key}: must be a mapping, "
                            f"got {kind_of(tmeta.get(key))}")
    count = _count(kind, spec, problems)
    tspec = template.get("spec")
    if kind == "Job" and isinstance(tspec, dict) and \
            tspec.get("restartPolicy") not in ("OnFailure", "Never"):
        # batch/v1 validation: a Job's pods must end; the template's default (Always) is refused
        problems.append(f"spec.template.spec.restartPolicy: a Job needs OnFailure or Never, "
                        f"got {q(tspec.get('restartPolicy') or 'Always')}")
    if problems:
        out.problems.extend(prefix + p for p in problems)
        return
    labels = tmeta.get("labels") if isinstance(tmeta.get("labels"), dict) else {}
    annotations = (tmeta.get("annotations") if isinstance(tmeta.get("annotations"), dict)
                   else {})
    owner = f"{kind}/{name}"
    labels = {**labels, OWNER_KIND_LABEL: kind}
    annotations = {**annotations, OWNER_ANNOTATION: owner}
    if kind == "Deployment":
        # the Deployment's ReplicaSet is <deployment>-<pod-template-hash>, its pods
        # generateName'd from that
        template_hash = pod_template_hash(template)
        labels["pod-template-hash"] = template_hash
        names = [generate_name(f"{name}-{template_hash}-", rng) for _ in range(count)]
    elif kind == "StatefulSet":
        names = [f"{name}-{i}" for i in range(count)]
    else:
        names = [generate_name(f"{name}-", rng) for _ in range(count)]
    if kind == "Job":
        labels.setdefault("batch.kubernetes.io/job-name", name)
        labels.setdefault("job-name", name)
    for index, pod_name in enumerate(names):
        pod_labels = dict(labels)
        if kind == "StatefulSet":
            pod_labels["statefulset.kubernetes.io/pod-name"] = pod_name
            pod_labels["apps.kubernetes.io/pod-index"] = str(index)
        pod_meta = {**{k: v for k, v in tmeta.items() if k not in ("name", "generateName")},
                    "name": pod_name, "labels": pod_labels, "annotations": annotations}
        if meta.get("namespace") is not None:
            pod_meta["namespace"] = meta["namespace"]
        pod_spec = tspec
        if kind == "StatefulSet":
            pod_spec = _claim_volumes(spec, tspec, pod_name, namespace, out)
        pod_doc = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}
        out.pod_docs.append((prefix, _TemplateReport(prefix), pod_doc))


def _claim_volumes(spec, tspec, pod_name, namespace, out):
    """The pod spec with a persistentVolumeClaim volume per volumeClaimTemplate, named as the
    StatefulSet controller names the claim (<template>-<pod>); each claim into out.claims.
    A template whose name the pod already declares as a volume is not added (the
    controller lets the pod's own volume win)."""
    templates = spec.get("volumeClaimTemplates")
    if not isinstance(templates, list) or not isinstance(tspec, dict):
        return tspec
    volumes = tspec.get("volumes") or []
    if not isinstance(volumes, list):
        return tspec   # the pod validator says what is wrong with it
    volumes = list(volumes)
    have = {v.get("name") for v in volumes if isinstance(v, dict)}
    for t in templates:
        meta = t.get("metadata") if isinstance(t, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or name in have:
            continue
        claim = f"{name}-{pod_name}"
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim}})
        out.claims.setdefault((namespace, claim), t.get("spec") or {})
    return {**tspec, "volumes": volumes}


def _count(kind, spec, problems):
    """How many pods the workload runs at once here."""
    def number(key, default):
        value = spec.get(key)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"spec.{key}: must be a whole number >= 0, got {q(value)}")
            return default
        if value > PODS_MAX:
            problems.append(f"spec.{key}: {value} pods on one host is more than nspod makes "
                            f"from one file (at most {PODS_MAX})")
            return default
        return value
    if kind == "DaemonSet":
        return 1   # one node: this host
    if kind == "Job":
        # the Job controller keeps min(parallelism, completions) pods active
        parallelism = number("parallelism", 1)
        completions = number("completions", None)
        return parallelism if completions is None else min(parallelism, completions)
    return number("replicas", 1)


PODS_MAX = 100


def generate_name(base, rng):
    """generateName as the API server fills it: the base cut to 58 characters, then five
    random characters of ALPHANUMS."""
    return base[:GENERATED_BASE_MAX] + "".join(rng.choice(ALPHANUMS)
                                               for _ in range(SUFFIX_LENGTH))


def _string_keys(value):
    """The template with every mapping key a string, so that it sorts: YAML gives a key
    `null:` or `1:` as None or 1, which the pod validator refuses later, by name."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else f"{type(k).__name__}:{k!r}"): _string_keys(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_string_keys(v) for v in value]
    return value


def pod_template_hash(template):
    """A stable pod-template-hash: the controller's encoding (FNV-1a 32 of the template,
    its decimal digits mapped into ALPHANUMS by rand.SafeEncodeString) over the template's
    canonical JSON. The controller hashes the Go struct as printed by spew, which Python
    cannot reproduce: the value differs from a cluster's, but is as stable and as short."""
    data = json.dumps(_string_keys(template), sort_keys=True, separators=(",", ":"),
                      default=repr).encode()
    h = 0x811c9dc5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xffffffff
    return "".join(ALPHANUMS[b % len(ALPHANUMS)] for b in str(h).encode())

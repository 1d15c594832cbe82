"""manifest/workloads.py: the documents of a file beyond kind: Pod, named and labelled as
Kubernetes' controllers name and label their pods; and fields at their API defaults."""
import random

import pytest

from nsPod.errors import InputError, SpecError
from nsPod.manifest import spec, workloads
from nsPod.manifest.workloads import ALPHANUMS, OWNER_ANNOTATION, OWNER_KIND_LABEL

POD_SPEC = "    spec:\n      restartPolicy: {policy}\n      containers:\n" \
           "      - {{name: c, command: [sleep, '1']}}\n"


def workload(kind, name, api="apps/v1", extra="", policy="Always", labels="{app: x}"):
    return (f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n{extra}"
            f"  template:\n    metadata: {{labels: {labels}}}\n"
            + POD_SPEC.format(policy=policy))


def load(text, **kwargs):
    return spec.load_documents(text, "f.yaml", rng=random.Random(1), **kwargs)


def problems(text):
    with pytest.raises(SpecError) as info:
        load(text)
    return info.value.problems


def test_deployment_pods_are_named_deployment_hash_suffix():
    """The Deployment controller names its ReplicaSet <deployment>-<pod-template-hash> and the
    ReplicaSet's pods are generateName'd from it: five characters of apimachinery's rand
    alphabet; each pod carries the template's labels plus pod-template-hash."""
    docs = load(workload("Deployment", "web", extra="  replicas: 3\n"))
    assert len(docs.pods) == 3
    names = [p.name for p in docs.pods]
    assert len(set(names)) == 3
    template_hash = docs.pods[0].labels["pod-template-hash"]
    assert template_hash and set(template_hash) <= set(ALPHANUMS)
    for pod in docs.pods:
        prefix, suffix = pod.name.rsplit("-", 1)
        assert prefix == f"web-{template_hash}"
        assert len(suffix) == 5 and set(suffix) <= set(ALPHANUMS)
        assert pod.labels["app"] == "x"
        assert pod.labels[OWNER_KIND_LABEL] == "Deployment"
        assert pod.annotations[OWNER_ANNOTATION] == "Deployment/web"
        assert pod.restart_policy == "Always"
    assert docs.owners == {("default", "Deployment/web")}


def test_pod_template_hash_is_stable_and_follows_the_template():
    one = workloads.pod_template_hash({"spec": {"containers": [{"name": "a"}]}})
    assert one == workloads.pod_template_hash({"spec": {"containers": [{"name": "a"}]}})
    assert one != workloads.pod_template_hash({"spec": {"containers": [{"name": "b"}]}})


def test_replicas_default_to_one_and_zero_makes_none():
    assert len(load(workload("Deployment", "web")).pods) == 1
    both = workload("Deployment", "web", extra="  replicas: 0\n") + "---\n" + \
        workload("ReplicaSet", "rs")
    assert [p.name.rsplit("-", 1)[0] for p in load(both).pods] == ["rs"]


def test_statefulset_pods_are_ordinals():
    """StatefulSet pods are <statefulset>-<ordinal>, 0..replicas-1, with the pod-name and
    pod-index labels the StatefulSet controller sets."""
    docs = load(workload("StatefulSet", "db", extra="  replicas: 2\n  serviceName: db\n"))
    assert [p.name for p in docs.pods] == ["db-0", "db-1"]
    assert docs.pods[1].labels["statefulset.kubernetes.io/pod-name"] == "db-1"
    assert docs.pods[1].labels["apps.kubernetes.io/pod-index"] == "1"


def test_daemonset_is_one_pod_on_this_host():
    docs = load(workload("DaemonSet", "agent"))
    assert len(docs.pods) == 1 and docs.pods[0].name.startswith("agent-")
    assert len(docs.pods[0].name) == len("agent-") + 5


def test_job_runs_parallelism_pods_bounded_by_completions():
    """The Job controller keeps min(parallelism, completions) pods active; its pods carry
    job-name labels; the template's restartPolicy is the pods'."""
    docs = load(workload("Job", "once", api="batch/v1", policy="Never",
                         extra="  parallelism: 3\n  completions: 2\n"))
    assert len(docs.pods) == 2
    assert all(p.restart_policy == "Never" and p.labels["job-name"] == "once"
               and p.labels["batch.kubernetes.io/job-name"] == "once" for p in docs.pods)
    assert len(load(workload("Job", "j", api="batch/v1", policy="OnFailure")).pods) == 1


def test_job_needs_a_restart_policy_that_ends():
    """batch/v1 validation refuses a Job template whose restartPolicy is Always (the default)."""
    assert problems(workload("Job", "j", api="batch/v1")) == [
        'spec.template.spec.restartPolicy: a Job needs OnFailure or Never, got "Always"']


def test_template_problems_name_the_template_path_once():
    """Three replicas of a bad template: one line, at the path in the file."""
    text = workload("Deployment", "web", extra="  replicas: 3\n").replace(
        "command: [sleep, '1']", "command: [sleep, '1'], bogus: 1")
    assert problems(text) == ["spec.template.spec.containers[0].bogus: unknown field"]


def test_list_is_its_items():
    text = ("apiVersion: v1\nkind: List\nitems:\n"
            "- {apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: "
            "[{name: c, command: [sleep, '1']}]}}\n"
            "- {apiVersion: v1, kind: ConfigMap, metadata: {name: cfg}, data: {k: v}}\n")
    docs = load(text)
    assert [p.name for p in docs.pods] == ["a"]
    assert docs.configmaps == {("default", "cfg"): {"data": {"k": "v"}, "binaryData": {}}}


def test_configmap_secret_claim_are_kept_for_the_volumes():
    text = workload("Deployment", "web") + """---
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: prod}
stringData: {password: x}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {accessModes: [ReadWriteOnce]}
"""
    docs = load(text)
    assert docs.secrets == {("prod", "s"): {"data": {}, "stringData": {"password": "x"},
                                            "type": "Opaque"}}
    assert docs.claims == {("default", "data"): {"accessModes": ["ReadWriteOnce"]}}
    assert docs.warnings == []


def test_other_api_kinds_warn_once_each_and_unknown_kinds_fail_once():
    text = workload("Deployment", "web") + \
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n" \
        "---\napiVersion: example.com/v1\nkind: Frobnicator\nmetadata: {name: f}\n"
    with pytest.raises(SpecError) as info:
        load(text)
    assert info.value.problems == [
        'document 3: kind: "Frobnicator" is not a kind nspod runs (Pod, List, Deployment, '
        'ReplicaSet, StatefulSet, DaemonSet, Job, ReplicationController, ConfigMap, Secret, '
        'PersistentVolumeClaim)']
    assert info.value.warnings == ["document 2: ignored: kind Service"]


def test_cronjob_says_run_its_job_template_as_a_job():
    assert problems("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\n") == [
        "kind: CronJob is not supported: run its jobTemplate's pod as a Job (kind: Job, "
        "spec: the CronJob's spec.jobTemplate.spec)"]


def test_namespace_is_carried_to_the_pods():
    text = workload("Deployment", "web").replace("{name: web}", "{name: web, namespace: prod}")
    docs = load(text)
    assert docs.pods[0].namespace == "prod"
    assert docs.owners == {("prod", "Deployment/web")}


def test_name_override_needs_one_pod():
    with pytest.raises(InputError, match="makes 2 pods"):
        load(workload("Deployment", "web", extra="  replicas: 2\n"), name_override="x")


def test_load_owners_reads_what_a_file_made_without_validating():
    text = workload("Job", "j", api="batch/v1") + \
        "---\n{apiVersion: v1, kind: Pod, metadata: {name: p}}\n"
    names, owners = spec.load_owners(text, "f.yaml")
    assert names == {"p"} and owners == {("default", "Job/j")}


def test_fields_at_their_defaults_are_accepted_silently():
    """kubectl get -o yaml writes every default: stdin/tty false, hostUsers true,
    mountPropagation None, hostIP 0.0.0.0, os linux, schedulerName default-scheduler..."""
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "hostUsers": True, "os": {"name": "linux"}, "enableServiceLinks": True,
        "automountServiceAccountToken": False, "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler", "serviceAccountName": "default",
        "serviceAccount": "default", "priority": 0, "preemptionPolicy": "PreemptLowerPriority",
        "volumes": [{"name": "v"}],
        "containers": [{"name": "c", "command": ["sleep", "1"], "stdin": False, "tty": False,
                        "stdinOnce": False, "terminationMessagePolicy": "File",
                        "ports": [{"containerPort": 80, "hostIP": "0.0.0.0"},
                                  {"containerPort": 81, "hostIP": ""}],
                        "volumeMounts": [{"name": "v", "mountPath": "/v",
                                          "mountPropagation": "None"}]}]}}
    import json
    docs = load(json.dumps(doc))
    assert docs.warnings == []
    assert docs.pods[0].volumes[0].name == "v"   # a volume of only a name is an emptyDir
    assert docs.pods[0].manifest["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]


def test_fields_off_their_defaults_are_still_refused_or_warned():
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "hostUsers": False, "automountServiceAccountToken": True,
        "containers": [{"name": "c", "command": ["sleep", "1"], "tty": True, "stdin": True,
                        "stdinOnce": True, "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}
    import json
    with pytest.raises(SpecError) as info:
        load(json.dumps(doc))
    assert info.value.problems == ["spec.hostUsers: not supported"]
    assert info.value.warnings == [
        "spec.automountServiceAccountToken: ignored: there is no API server, so no service "
        "account token",
        "spec.containers[0].resources.limits.nvidia.com/gpu: ignored (nspod limits only memory "
        "and cpu)"]


def test_statefulset_claim_templates_are_claims_per_pod():
    """The StatefulSet controller gives each pod a persistentVolumeClaim per
    volumeClaimTemplate, named <template>-<pod> (www-web-0)."""
    text = workload("StatefulSet", "web", extra="  replicas: 2\n") + \
        "  volumeClaimTemplates:\n  - metadata: {name: www}\n    spec: {accessModes: [RWO]}\n"
    docs = workloads.sort_documents(spec.load_yaml(text, "f")[0], random.Random(1))
    volumes = [d["spec"]["volumes"] for _, _, d in docs.pod_docs]
    assert volumes == [[{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}}],
                       [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-1"}}]]
    assert set(docs.claims) == {("default", "www-web-0"), ("default", "www-web-1")}


def test_an_unsupported_probe_handler_is_one_line():
    import json
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "command": ["x"], "livenessProbe": {"grpc": {"port": 1}}}]}}
    assert problems(json.dumps(doc)) == ["spec.containers[0].livenessProbe.grpc: not supported"]


@pytest.mark.parametrize("doc", [
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "namespace": [1]},
     "spec": {"template": {"spec": {}}}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": ["x"]}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
     "spec": {"replicas": True, "template": {"metadata": {"labels": ["a"]}, "spec": {}}}},
    {"apiVersion": "apps/v1", "kind": ["Deployment"]},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": [1]}},
    {"apiVersion": "v1", "kind": "List", "items": {"a": 1}},
    {"apiVersion": "v1", "kind": "List", "items": [7, None, {"kind": {}}]},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 3}},
    {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
     "spec": {"volumeClaimTemplates": [1, {"metadata": []}], "template": {"spec": {}}}},
])
def test_hostile_workload_shapes_are_clean_errors(doc):
    import json
    lines = problems(json.dumps(doc))
    assert lines and all(isinstance(line, str) and line for line in lines)


def test_validate_prints_warnings_even_with_errors(tmp_path):
    """`nspod validate` (no root needed): the warning for an ignored kind prints beside the
    error, once each, exit 2."""
    import subprocess
    import sys
    path = tmp_path / "f.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n"
                    "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\n")
    result = subprocess.run([sys.executable, "-P", "-m", "nsPod", "validate", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "warning: document 1: ignored: kind Service",
        "error: document 2: kind: CronJob is not supported: run its jobTemplate's pod as a Job "
        "(kind: Job, spec: the CronJob's spec.jobTemplate.spec)"]


def test_a_file_of_only_ignored_kinds_is_one_error_naming_them():
    with pytest.raises(SpecError) as info:
        load("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
    assert info.value.problems == [
        'f.yaml: no Pod in it, nor a workload that makes pods (kind "Service" is not run)']
    assert info.value.warnings == []


def test_apply_refuses_a_workload_file(tmp_path):
    """A controller replaces its pods on a template change, it never edits one in place:
    `apply` of a workload says so before touching anything (no root needed to refuse)."""
    import subprocess
    import sys
    path = tmp_path / "d.yaml"
    path.write_text(workload("Deployment", "web"))
    result = subprocess.run([sys.executable, "-P", "-m", "nsPod", "--root",
                             str(tmp_path / "root"), "apply", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "makes pods of Deployment/web" in result.stderr
    assert not (tmp_path / "root").exists()


def test_a_replication_controller_is_a_replicaset_by_another_name():
    """core v1 ReplicationController (kubernetes/examples' guestbook legacy files): its
    `replicas` pods <rc>-<5 chars>, owned by it."""
    text = """\
apiVersion: v1
kind: ReplicationController
metadata: {name: redis-master}
spec:
  replicas: 2
  selector: {app: redis}
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers: [{name: m, image: redis}]
"""
    docs = workloads.sort_documents(spec.load_yaml(text, "f")[0], random.Random(1))
    names = [d["metadata"]["name"] for _, _, d in docs.pod_docs]
    assert len(names) == 2 and all(n.startswith("redis-master-") and len(n) == 18
                                   for n in names)
    assert docs.owners == {("default", "ReplicationController/redis-master")}
    assert docs.pod_docs[0][2]["metadata"]["annotations"][workloads.OWNER_ANNOTATION] == \
        "ReplicationController/redis-master"


def test_a_template_with_non_string_keys_is_an_input_error_not_a_crash():
    """Its pod-template-hash is computed before the pod validator runs: a YAML key `null:`
    or `1:` (None, 1) must not break the canonical JSON's key sort (a fuzz mutant did)."""
    text = workload("Deployment", "web") .replace(
        "      containers:", "      volumes: [{configMap: {name: c}, null: v, 1: x}]\n"
        "      containers:")
    with pytest.raises(SpecError):
        load(text)

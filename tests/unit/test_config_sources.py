"""ConfigMaps, Secrets and claims beside a pod: the documents, the volume and env rules
(Kubernetes' validation), the files and env the plan makes of them, and the kubelet's
AtomicWriter layout (..data swap), without root."""
import base64
import os

import pytest

from nsPod.errors import InputError, SpecError
from nsPod.kernel.volumes import write_layout
from nsPod.manifest.rules_volumes import file_path_problem
from nsPod.manifest.sources import key_problem
from nsPod.manifest.spec import load_files, load_pods, pod_from_dict
from nsPod.plan import make as plan

FACTS = plan.Facts(uid="u-1", pod_dir="/pods/p", state_root="/run/nspod", node_name="node",
                   node_memory=2 << 30)

SOURCES = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {color: blue, a.conf: "x=1"}
binaryData: {bin: AAEC}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
data: {password: czNjcjN0, user: bm9ib2R5}
stringData: {user: admin}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
"""


def pod_text(spec_yaml, container_yaml=""):
    return ("---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: web}}\nspec:\n"
            "  restartPolicy: Never\n  containers:\n  - name: app\n    command: [sleep, '1']\n"
            + container_yaml + spec_yaml)


def load(spec_yaml="", container_yaml="", sources=SOURCES):
    pods, warnings = load_pods(sources + pod_text(spec_yaml, container_yaml), "f.yaml")
    return pods[0], warnings


def problems(spec_yaml="", container_yaml="", sources=SOURCES):
    with pytest.raises(SpecError) as info:
        load(spec_yaml, container_yaml, sources)
    return info.value.problems


def files_of(pod, name):
    v = next(v for v in plan.make_plan(pod, FACTS).volumes if v.name == name)
    return v.kind, {p: (base64.b64decode(c), m) for p, c, m in v.files}


def test_sources_read_data_binary_data_and_string_data():
    pod, _ = load()
    assert pod.sources.configmaps["cfg"] == {"color": b"blue", "a.conf": b"x=1", "bin": b"\0\1\2"}
    # stringData wins over data, as the API server merges them
    assert pod.sources.secrets["sec"] == {"password": b"s3cr3t", "user": b"admin"}
    assert pod.sources.claims == {"data"}


@pytest.mark.parametrize("doc,expected", [
    ("kind: Secret\nmetadata: {name: s}\ndata: {k: '%%%'}", "document 1: data[k]: is not valid base64"),
    ("kind: ConfigMap\nmetadata: {name: c}\ndata: {'a/b': x}",
     "document 1: data[a/b]: key \"a/b\": must consist of alphanumerics, '-', '_' or '.'"),
    ("kind: ConfigMap\nmetadata: {name: c}\ndata: {'..x': x}",
     "document 1: data[..x]: key \"..x\": must not be '.' or '..' nor start with '..'"),
    ("kind: ConfigMap\nmetadata: {name: c}\ndata: {k: 3}", "document 1: data[k]: must be text"),
])
def test_bad_source_documents(doc, expected):
    with pytest.raises(SpecError) as info:
        load_pods("apiVersion: v1\n" + doc + "\n" + pod_text(""), "f.yaml")
    assert expected in info.value.problems, info.value.problems


def test_configmap_volume_every_key_with_default_mode():
    pod, _ = load("  volumes:\n  - name: c\n    configMap: {name: cfg, defaultMode: 0440}\n")
    kind, files = files_of(pod, "c")
    assert kind == "files"
    assert files == {"a.conf": (b"x=1", 0o440), "bin": (b"\0\1\2", 0o440),
                     "color": (b"blue", 0o440)}


def test_secret_volume_items_modes_and_tmpfs_kind():
    pod, _ = load("  volumes:\n  - name: s\n    secret:\n      secretName: sec\n"
                  "      items: [{key: password, path: d/pw, mode: 0400}, {key: user, path: u}]\n")
    kind, files = files_of(pod, "s")
    assert kind == "secret"   # a tmpfs: never on disk
    assert files == {"d/pw": (b"s3cr3t", 0o400), "u": (b"admin", 0o644)}


def test_downward_api_and_projected():
    pod, warnings = load(
        "  volumes:\n  - name: d\n    downwardAPI:\n      items:\n"
        "      - {path: name, fieldRef: {fieldPath: metadata.name}}\n"
        "      - {path: labels, fieldRef: {fieldPath: metadata.labels}}\n"
        "      - {path: mem, resourceFieldRef: {containerName: app, resource: limits.memory,"
        " divisor: 1Mi}}\n"
        "  - name: p\n    projected:\n      defaultMode: 0400\n      sources:\n"
        "      - configMap: {name: cfg, items: [{key: color, path: c}]}\n"
        "      - secret: {name: missing, optional: true}\n"
        "      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}\n"
        "      - serviceAccountToken: {path: token}\n")
    _, files = files_of(pod, "d")
    assert files["name"][0] == b"p" and files["labels"][0] == b'app="web"'
    assert files["mem"][0] == b"2048"   # the node's memory without a limit, in Mi
    kind, files = files_of(pod, "p")
    assert kind == "secret"   # it holds a Secret source (even a missing optional one)
    assert files == {"c": (b"blue", 0o400), "ns": (b"default", 0o400)}
    assert any("serviceAccountToken: skipped" in w for w in warnings), warnings


@pytest.mark.parametrize("path,problem", [
    ("/abs", "must be a relative path"), ("a/../b", "must not contain '..'"),
    ("..data", "must not start with '..'"), ("", "must not be empty"),
    ("a//b", "must not hold empty or '.' parts"), ("./a", "must not hold empty or '.' parts"),
    ("a/" * 64 + "b", "must be at most 64 directories deep"),
])
def test_item_paths_follow_kubernetes_rules(path, problem):
    assert file_path_problem(path) == problem
    if not path:
        problem = "required"
    lines = problems(f"  volumes:\n  - name: c\n    configMap:\n      name: cfg\n"
                     f"      items: [{{key: color, path: '{path}'}}]\n")
    assert any(problem in line and "items[0].path" in line for line in lines), lines


def test_keys_modes_and_duplicate_paths():
    assert key_problem("a.b_c-1") == "" and key_problem("a/b") and key_problem("..x")
    lines = problems("  volumes:\n  - name: c\n    configMap:\n      name: cfg\n"
                     "      defaultMode: 01000\n"
                     "      items: [{key: color, path: x, mode: -1}, {key: a.conf, path: x}]\n")
    assert "document 4: spec.volumes[0].configMap.defaultMode: 512 must be at most 511" in lines
    assert "document 4: spec.volumes[0].configMap.items[0].mode: -1 must be at least 0" in lines
    lines = problems("  volumes:\n  - name: c\n    configMap:\n      name: cfg\n"
                     "      items: [{key: color, path: x}, {key: a.conf, path: x}]\n")
    assert any('path "x" is given twice' in line for line in lines), lines
    lines = problems("  volumes:\n  - name: c\n    configMap:\n      name: cfg\n"
                     "      items: [{key: color, path: x}, {key: a.conf, path: x/y}]\n")
    assert any('path "x" is a file and the directory of "x/y"' in line for line in lines), lines


def test_missing_not_optional_is_an_error_naming_the_field():
    assert problems("  volumes:\n  - name: c\n    configMap: {name: nope}\n") == [
        'document 4: spec.volumes[0].configMap: ConfigMap "nope" is not in the file(s) '
        "(give it beside the pod, or set optional: true)"]
    assert problems("  volumes:\n  - name: c\n    secret:\n      secretName: sec\n"
                    "      items: [{key: nokey, path: x}]\n") == [
        'document 4: spec.volumes[0].secret.items[0].key: Secret "sec" has no key "nokey"']
    assert problems("", "    env:\n    - name: A\n      valueFrom:\n"
                        "        configMapKeyRef: {name: cfg, key: nokey}\n") == [
        'document 4: spec.containers[0].env[0].valueFrom.configMapKeyRef: ConfigMap "cfg" '
        'has no key "nokey"']
    assert problems("", "    envFrom:\n    - secretRef: {name: nope}\n") == [
        'document 4: spec.containers[0].envFrom[0].secretRef: Secret "nope" is not in the '
        "file(s) (give it beside the pod, or set optional: true)"]


def test_optional_missing_is_empty():
    pod, _ = load("  volumes:\n  - name: c\n    configMap: {name: nope, optional: true}\n",
                  "    env:\n    - name: A\n      valueFrom:\n"
                  "        secretKeyRef: {name: sec, key: nokey, optional: true}\n"
                  "    envFrom:\n    - configMapRef: {name: nope, optional: true}\n")
    assert files_of(pod, "c") == ("files", {})
    assert "A" not in plan.make_plan(pod, FACTS).containers[0].env_dict()


def test_env_from_prefix_order_and_key_refs():
    """The kubelet: envFrom first (later sources win), then env (which wins over envFrom);
    keys that are not variable names are skipped."""
    pod, _ = load("", "    envFrom:\n    - configMapRef: {name: cfg}\n      prefix: C_\n"
                      "    - secretRef: {name: sec}\n"
                      "    env:\n    - {name: user, value: plain}\n"
                      "    - name: PW\n      valueFrom: {secretKeyRef: {name: sec, key: password}}\n"
                      "    - {name: X, value: '$(C_color)'}\n")
    env = plan.make_plan(pod, FACTS).containers[0].env_dict()
    assert env["C_color"] == "blue" and env["C_a.conf"] == "x=1"
    assert env["password"] == "s3cr3t" and env["PW"] == "s3cr3t"
    assert env["user"] == "plain" and env["X"] == "blue"


@pytest.mark.parametrize("entry,expected", [
    ("{configMapRef: {name: cfg}, secretRef: {name: sec}}",
     "envFrom[0]: exactly one of configMapRef or secretRef is needed, got configMapRef, secretRef"),
    ("{prefix: 'A=', configMapRef: {name: cfg}}", 'envFrom[0].prefix: "A=": '),
    ("{configMapRef: {name: Cfg}}", 'envFrom[0].configMapRef.name: "Cfg": must be lowercase'),
])
def test_env_from_rules(entry, expected):
    lines = problems("", f"    envFrom:\n    - {entry}\n")
    assert any(expected in line for line in lines), lines


def test_a_pod_built_from_a_dict_fails_its_missing_source_at_plan_time():
    pod, _ = pod_from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                            "spec": {"containers": [{"name": "a", "command": ["true"],
                                     "envFrom": [{"configMapRef": {"name": "x"}}]}]}})
    with pytest.raises(InputError, match=r"spec.containers\[0\].envFrom\[0\].configMapRef: "
                                         "ConfigMap 'x' is not in the file"):
        plan.make_plan(pod, FACTS)


def test_sources_in_another_file_serve_the_pod():
    pods, _ = load_files([(SOURCES, "a.yaml"),
                          (pod_text("  volumes:\n  - name: c\n    configMap: {name: cfg}\n"),
                           "b.yaml")])
    assert files_of(pods[0], "c")[1]["color"] == (b"blue", 0o644)
    with pytest.raises(SpecError) as info:
        load_files([(SOURCES, "a.yaml"), (SOURCES, "b.yaml"), (pod_text(""), "c.yaml")])
    assert 'b.yaml: document 1: metadata.name: ConfigMap "cfg" is given twice' in \
        info.value.problems


def test_claim_volume_plan_is_under_the_state_root():
    pod, _ = load("  volumes:\n  - name: d\n    persistentVolumeClaim: {claimName: data,"
                  " readOnly: true}\n", "    volumeMounts: [{name: d, mountPath: /d}]\n")
    p = plan.make_plan(pod, FACTS)
    assert (p.volumes[0].kind, p.volumes[0].path) == ("claim", "/run/nspod/volumes/data")
    assert p.containers[0].mounts[0].read_only


def _files(d):
    out = {}
    for top, dirs, names in os.walk(d):
        for n in dirs + names:
            full = os.path.join(top, n)
            out[os.path.relpath(full, d)] = os.readlink(full) if os.path.islink(full) else None
    return out


def enc(text):
    return base64.b64encode(text.encode()).decode()


def test_layout_and_data_swap(tmp_path):
    """The kubelet's AtomicWriter: ..data -> ..<timestamp>, each top-level name a symlink
    through ..data; an update makes a new directory, swaps ..data by rename(2), drops the
    names no longer given and the old directory."""
    write_layout(str(tmp_path), [["a", enc("1"), 0o644], ["d/b", enc("2"), 0o400]], stamp="t1")
    assert _files(tmp_path) == {"..data": "..t1", "..t1": None, "..t1/a": None, "..t1/d": None,
                                "..t1/d/b": None, "a": "..data/a", "d": "..data/d"}
    assert (tmp_path / "d" / "b").read_text() == "2"
    assert (tmp_path / "..t1" / "d" / "b").stat().st_mode & 0o777 == 0o400
    write_layout(str(tmp_path), [["a", enc("new"), 0o644], ["c", enc("3"), 0o644]], stamp="t2")
    assert _files(tmp_path) == {"..data": "..t2", "..t2": None, "..t2/a": None, "..t2/c": None,
                                "a": "..data/a", "c": "..data/c"}
    assert (tmp_path / "a").read_text() == "new"


def test_layout_never_follows_a_planted_symlink(tmp_path):
    """A name already there as a symlink elsewhere is left alone, never written through."""
    outside = tmp_path / "outside"
    outside.mkdir()
    vol = tmp_path / "vol"
    vol.mkdir()
    os.symlink(str(outside), str(vol / "..t1"))
    write_layout(str(vol), [["a", enc("1"), 0o644]], stamp="t1")
    assert list(outside.iterdir()) == []
    assert os.readlink(vol / "..data") != "..t1"


# --- the sources and the workloads' loader together (one loader: spec.load_all) -----------

DEPLOYMENT = """\
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        command: [sleep, '1']
        envFrom: [{configMapRef: {name: cfg}}]
        volumeMounts: [{name: s, mountPath: /s}]
      volumes:
      - name: s
        secret: {secretName: sec}
"""


def test_a_workloads_pods_read_the_configmaps_and_secrets_beside_them():
    pods, _ = load_files([(SOURCES, "a.yaml"), (DEPLOYMENT, "b.yaml")])
    assert len(pods) == 2
    for pod in pods:
        assert files_of(pod, "s")[1]["user"] == (b"admin", 0o644)
        assert plan.make_plan(pod, FACTS).containers[0].env_dict()["color"] == "blue"


def test_a_list_carries_its_configmap_to_its_pods():
    text = ("apiVersion: v1\nkind: List\nitems:\n"
            "- {apiVersion: v1, kind: ConfigMap, metadata: {name: cfg}, data: {k: v}}\n"
            "- apiVersion: v1\n  kind: Pod\n  metadata: {name: p}\n  spec:\n"
            "    containers:\n    - name: a\n      command: ['true']\n"
            "      env: [{name: K, valueFrom: {configMapKeyRef: {name: cfg, key: k}}}]\n")
    [pod], _ = load_pods(text, "l.yaml")
    assert plan.make_plan(pod, FACTS).containers[0].env_dict()["K"] == "v"


def test_a_pod_reads_only_the_configmaps_of_its_namespace():
    """Kubernetes resolves a pod's configMap references in the pod's own namespace."""
    other = SOURCES.replace("metadata: {name: cfg}", "metadata: {name: cfg, namespace: other}")
    lines = problems("  volumes:\n  - name: c\n    configMap: {name: cfg}\n", sources=other)
    assert any('ConfigMap "cfg" is not in the file(s)' in line for line in lines), lines
    text = other + pod_text("  volumes:\n  - name: c\n    configMap: {name: cfg}\n").replace(
        "metadata: {name: p,", "metadata: {name: p, namespace: other,")
    [pod], _ = load_pods(text, "f.yaml")
    assert files_of(pod, "c")[1]["color"] == (b"blue", 0o644)


def test_statefulset_claim_templates_are_the_pods_claims():
    text = ("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n"
            "  replicas: 2\n  selector: {matchLabels: {app: db}}\n"
            "  template:\n    metadata: {labels: {app: db}}\n    spec:\n      containers:\n"
            "      - name: a\n        command: ['true']\n"
            "        volumeMounts: [{name: data, mountPath: /data}]\n"
            "  volumeClaimTemplates:\n  - metadata: {name: data}\n")
    pods, _ = load_pods(text, "s.yaml")
    for i, pod in enumerate(pods):
        assert pod.sources.claims == {"data-db-0", "data-db-1"}
        v = plan.make_plan(pod, FACTS).volumes[0]
        assert (v.kind, v.path) == ("claim", f"/run/nspod/volumes/data-db-{i}")


def test_validate_warns_of_a_missing_configmap_run_refuses_it():
    text = pod_text("  volumes:\n  - name: c\n    configMap: {name: nope}\n")
    with pytest.raises(SpecError):
        load_pods(text, "f.yaml")
    [_], warnings = load_pods(text, "f.yaml", sources_required=False)
    assert warnings == ['spec.volumes[0].configMap: ConfigMap "nope" is not in the file(s) '
                        "(give it beside the pod, or set optional: true); `nspod run` refuses "
                        "the pod without it"]

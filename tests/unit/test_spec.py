"""nsPod.manifest.spec: manifests to dataclasses, and every way a manifest can be wrong."""
import os
import subprocess
import sys

import pytest

from nsPod.manifest import schema, spec
from nsPod.errors import InputError, SpecError
from nsPod.manifest.spec import (
    Container, EnvVar, Resources, Volume, VolumeMount, container_from_dict, effective_hostname,
    host_domain, load_pods, pod_from_dict, validate_name,
)

MANIFESTS = os.path.join(os.path.dirname(__file__), "manifests")


def manifest(name):
    with open(os.path.join(MANIFESTS, name)) as f:
        return f.read()


def base(**spec_fields):
    """The smallest valid pod, with spec fields added or replaced."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "app", "command": ["sleep", "1"]}], **spec_fields},
    }


def with_container(**fields):
    doc = base()
    doc["spec"]["containers"][0].update(fields)
    return doc


def problems_of(doc, **kwargs):
    with pytest.raises(SpecError) as info:
        pod_from_dict(doc, **kwargs)
    return info.value.problems


def yaml_problems(text, **kwargs):
    with pytest.raises(SpecError) as info:
        load_pods(text, "pod.yaml", **kwargs)
    return info.value.problems


@pytest.fixture
def disable(monkeypatch):
    """Gate features off again, to test the gating itself whatever has been delivered."""
    def off(*keys):
        for key in keys:
            assert key in spec.FEATURES
            monkeypatch.setitem(spec.FEATURES, key, False)
    return off


@pytest.fixture
def enable(monkeypatch):
    """Turn on gated features, as the issue that delivers them will."""
    def on(*keys):
        for key in keys:
            assert key in spec.FEATURES
            monkeypatch.setitem(spec.FEATURES, key, True)
    return on


# --- a good pod ------------------------------------------------------------------------------

def test_good_pod_round_trips():
    pods, warnings = load_pods(manifest("good.yaml"), "good.yaml")
    assert warnings == []
    [pod] = pods
    assert (pod.name, pod.namespace) == ("web", "lab")
    assert pod.labels == {"app": "web", "app.kubernetes.io/part-of": "demo"}
    assert pod.annotations["note"] == "any text: even this"
    assert pod.network == "none"
    assert (pod.hostname, pod.subdomain, pod.set_hostname_as_fqdn) == ("frontend", "backend", True)
    assert pod.share_process_namespace and not (pod.host_network or pod.host_ipc or pod.host_pid)
    assert pod.restart_policy == "Never"
    assert pod.termination_grace_period_seconds == 5
    assert pod.volumes == (
        Volume("scratch", "emptyDir"),
        Volume("shm", "emptyDir", medium="Memory", size_limit=64 * 2**20),
        Volume("logs", "hostPath", host_path="/var/log", host_path_type="Directory"),
    )
    app, helper = pod.containers
    assert app == Container(
        name="app", command=("/bin/sh", "-c"),
        args=("echo $(GREETING) from $(POD_NAME); sleep 3600",), working_dir="/work",
        env=(
            EnvVar("GREETING", value="hello"),
            EnvVar("EMPTY", value=""),
            EnvVar("POD_NAME", field_path="metadata.name"),
            EnvVar("APP_LABEL", field_path="metadata.labels['app']"),
            EnvVar("MEMORY_MI", resource="limits.memory", resource_container="helper",
                   divisor="1Mi"),
        ),
        volume_mounts=(
            VolumeMount("scratch", "/work"),
            VolumeMount("logs", "/host/log", read_only=True, sub_path="nginx"),
        ),
    )
    assert app.resources == Resources({}, {}) and not app.init and app.image == ""
    assert helper.volume_mounts[1] == VolumeMount("scratch", "/per-pod", sub_path_expr="$(POD_NAME)")
    assert pod.init_containers == ()
    assert pod.manifest["metadata"]["name"] == "web"
    assert pod.manifest["spec"]["containers"][0]["name"] == "app"
    assert effective_hostname(pod) == "frontend.backend.lab.svc.cluster.local"


def test_defaults():
    pod, warnings = pod_from_dict(base())
    assert warnings == []
    assert pod.namespace == "default"
    assert pod.termination_grace_period_seconds == 30
    assert pod.network == "bridge"
    assert pod.containers[0].env == () and pod.volumes == ()


def test_dataclasses_are_frozen():
    pod, _ = pod_from_dict(base())
    with pytest.raises(AttributeError):
        pod.name = "other"


def test_apiversion_and_kind_may_be_left_out_of_a_dict_but_not_a_file():
    doc = base()
    del doc["apiVersion"], doc["kind"]
    assert pod_from_dict(doc)[0].name == "web"
    import yaml
    assert yaml_problems(yaml.safe_dump(doc)) == ["apiVersion: required (v1)", "kind: required (Pod)"]


def test_importing_spec_does_not_import_yaml():
    code = "import sys, nsPod.manifest.spec; sys.exit('yaml' in sys.modules)"
    assert subprocess.run([sys.executable, "-P", "-c", code]).returncode == 0


# --- malformed manifests: one line per problem, each naming its field path ----------------------

_DELETE = object()


def _mutate(doc, path, value):
    """Set doc[path] where path is like 'spec.containers.0.command'."""
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


C0 = "spec.containers.0"

MALFORMED = [
    # (where to change the minimal pod, the new value, expected lines: each a prefix of one line)
    (f"{C0}.comand", ["x"], ['spec.containers[0].comand: unknown field (did you mean "command"?)']),
    ("spec.restartPolcy", "Never", ['spec.restartPolcy: unknown field (did you mean "restartPolicy"?)']),
    ("metadata.lables", {}, ['metadata.lables: unknown field (did you mean "labels"?)']),
    ("spec.frobnicate", 1, ["spec.frobnicate: unknown field"]),
    ("metadata.name", "Web_1", ['metadata.name: "Web_1": must be lowercase letters']),
    ("metadata.name", "a" * 254, ["metadata.name: ", "must be at most 253 characters (it has 254)"]),
    ("metadata.name", _DELETE, ["metadata.name: required"]),
    ("metadata.name", 42, ["metadata.name: must be a string, got an integer 42 (quote it"]),
    ("metadata.namespace", "Prod", ['metadata.namespace: "Prod": must be lowercase']),
    ("metadata.labels", {"app": "a b"}, ['metadata.labels[app]: "a b": must be letters, digits']),
    ("metadata.labels", {"bad key!": "x"}, ['metadata.labels[bad key!]: key "bad key!": the name part']),
    ("metadata.labels", {"version": 2}, ["metadata.labels[version]: must be a string, got an integer 2"]),
    ("metadata.annotations", ["a"], ["metadata.annotations: must be a mapping, got a list"]),
    ("metadata", "web", ["metadata: must be a mapping, got a string"]),
    ("spec", _DELETE, ["spec: required"]),
    ("spec.containers", _DELETE, ["spec.containers: required: at least one container"]),
    ("spec.containers", [], ["spec.containers: required: at least one container"]),
    ("spec.containers", {"name": "app"}, ["spec.containers: must be a list, got a mapping (start each item with '- ')"]),
    (f"{C0}.name", "App", ['spec.containers[0].name: "App": must be lowercase letters, digits and']),
    (f"{C0}.name", _DELETE, ["spec.containers[0].name: required"]),
    (f"{C0}.command", "sleep 10", ['spec.containers[0].command: must be a list of strings, got a string (write ["sleep", "10"])']),
    (f"{C0}.command", ["sleep", 10], ["spec.containers[0].command[1]: must be a string, got an integer 10 (quote it"]),
    (f"{C0}.command", _DELETE, ["spec.containers[0].command: required: with no image there is nothing else to run"]),
    (f"{C0}.workingDir", "work", ['spec.containers[0].workingDir: "work": must be an absolute path']),
    (f"{C0}.env", [{"name": "A", "value": 3}], ["spec.containers[0].env[0].value: must be a string, got an integer 3"]),
    (f"{C0}.env", [{"name": "A=B"}], ['spec.containers[0].env[0].name: "A=B": must be printable ASCII']),
    (f"{C0}.env", [{"value": "x"}], ["spec.containers[0].env[0].name: required"]),
    (f"{C0}.env", [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
     ["spec.containers[0].env[0].value: cannot be set together with valueFrom"]),
    (f"{C0}.env", [{"name": "A", "valueFrom": {}}],
     ["spec.containers[0].env[0].valueFrom: exactly one source is needed (fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef)"]),
    (f"{C0}.env", [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"},
                                               "resourceFieldRef": {"resource": "limits.cpu"}}}],
     ["spec.containers[0].env[0].valueFrom: exactly one source is needed (fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef), got fieldRef, resourceFieldRef"]),
    (f"{C0}.env", [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}}],
     ['spec.containers[0].env[0].valueFrom.secretKeyRef.key: "a/b": must consist of alphanumerics']),
    (f"{C0}.env", [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.foo"}}}],
     ['spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: "spec.foo" is not supported (supported: metadata.name']),
    (f"{C0}.env", [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}],
     ['spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: "metadata.labels" needs a key']),
    (f"{C0}.env", [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v2"}}}],
     ['spec.containers[0].env[0].valueFrom.fieldRef.apiVersion: "v2" is not supported (only v1)']),
    (f"{C0}.env", [{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}],
     ['spec.containers[0].env[0].valueFrom.resourceFieldRef.resource: "limits.gpu" is not one of: limits.cpu']),
    (f"{C0}.env", [{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "containerName": "db"}}}],
     ['spec.containers[0].env[0].valueFrom.resourceFieldRef.containerName: "db" is not a container of this pod']),
    (f"{C0}.env", [{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1XB"}}}],
     ['spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: "1XB" is not a quantity (examples: 512Mi, 1Gi)']),
    (f"{C0}.env", [{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1Mi"}}}],
     ['spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: "1Mi" is not supported with limits.cpu (use one of: 1m, 1)']),
    (f"{C0}.envFrom", [{"configMapRef": {"name": "x"}, "prefix": "A=B"}],
     ['spec.containers[0].envFrom[0].prefix: "A=B": must be printable ASCII']),
    (f"{C0}.stdin", "yes", ['spec.containers[0].stdin: must be a boolean, got a string "yes"']),
    (f"{C0}.volumeMounts", [{"name": "data", "mountPath": "/data"}],
     ['spec.containers[0].volumeMounts[0].name: "data" is not a volume of this pod (declare it in spec.volumes)']),
    ("spec.ephemeralContainers", [{"name": "debug"}], ["spec.ephemeralContainers: not supported"]),
    ("spec.hostUsers", False, ["spec.hostUsers: not supported"]),
    ("spec.hostNetwork", "yes", ['spec.hostNetwork: must be a boolean, got a string "yes" (write true or false, without quotes)']),
    ("spec.terminationGracePeriodSeconds", -1, ["spec.terminationGracePeriodSeconds: -1 must be at least 0"]),
    ("spec.terminationGracePeriodSeconds", "30", ['spec.terminationGracePeriodSeconds: must be an integer, got a string "30"']),
    ("spec.terminationGracePeriodSeconds", 1.5, ["spec.terminationGracePeriodSeconds: must be an integer, got a number 1.5"]),
    ("spec.hostname", "web_1", ['spec.hostname: "web_1": must be lowercase letters, digits and']),
    ("spec.subdomain", "a" * 64, ["spec.subdomain: ", "must be at most 63 characters (it has 64)"]),
    ("spec.restartPolicy", "Sometimes", ['spec.restartPolicy: "Sometimes" is not one of: Always, OnFailure, Never']),
    ("spec.volumes", [{"name": "data"}], ["spec.volumes[0]: exactly one volume source is needed (emptyDir or hostPath)"]),
    ("spec.volumes", [{"name": "data", "emptyDir": {}, "hostPath": {"path": "/x"}}],
     ["spec.volumes[0]: exactly one volume source is allowed, got emptyDir, hostPath"]),
    ("spec.volumes", [{"name": "data", "emptyDir": None}],
     ["spec.volumes[0].emptyDir: is null; write emptyDir: {} for a default emptyDir"]),
    ("spec.volumes", [{"name": "Data", "emptyDir": {}}], ['spec.volumes[0].name: "Data": must be lowercase']),
    ("spec.volumes", [{"emptyDir": {}}], ["spec.volumes[0].name: required"]),
    ("spec.volumes", [{"name": "d", "emptyDir": {}}, {"name": "d", "emptyDir": {}}],
     ['spec.volumes[1].name: "d" is already the name of spec.volumes[0]']),
    ("spec.volumes", [{"name": "d", "emptyDir": {"medium": "Disk"}}],
     ['spec.volumes[0].emptyDir.medium: "Disk" is not a medium (use "" for disk or Memory for tmpfs)']),
    ("spec.volumes", [{"name": "d", "emptyDir": {"medium": "HugePages"}}],
     ['spec.volumes[0].emptyDir.medium: "HugePages" is not supported']),
    ("spec.volumes", [{"name": "d", "emptyDir": {"sizeLimit": "1 GB"}}],
     ['spec.volumes[0].emptyDir.sizeLimit: "1 GB" is not a quantity (examples: 512Mi, 1Gi)']),
    ("spec.volumes", [{"name": "d", "emptyDir": {"sizeLimit": 0}}],
     ["spec.volumes[0].emptyDir.sizeLimit: must be greater than 0"]),
    ("spec.volumes", [{"name": "d", "emptyDir": {"sizeLimit": "-1Gi"}}],
     ['spec.volumes[0].emptyDir.sizeLimit: "-1Gi" must not be negative']),
    ("spec.volumes", [{"name": "d", "emptyDir": {"size": "1Gi"}}],
     ['spec.volumes[0].emptyDir.size: unknown field (did you mean "sizeLimit"?)']),
    ("spec.volumes", [{"name": "d", "hostPath": {"path": "var/log"}}],
     ['spec.volumes[0].hostPath.path: "var/log": must be an absolute path']),
    ("spec.volumes", [{"name": "d", "hostPath": {}}], ["spec.volumes[0].hostPath.path: required"]),
    ("spec.volumes", [{"name": "d", "hostPath": {"path": "/x", "type": "Dir"}}],
     ['spec.volumes[0].hostPath.type: "Dir" is not one of: "", DirectoryOrCreate, Directory']),
    ("spec.volumes", [{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}},
                      {"name": "c", "configMap": {"name": "x", "items": [{"key": "k", "path": "../x"}]}}],
     ["spec.volumes[2].configMap.items[0].path: \"../x\": must not contain '..'"]),
    ("spec.volumes", [{"name": "c", "persistentVolumeClaim": {"claimName": "X_Y"}}],
     ['spec.volumes[0].persistentVolumeClaim.claimName: "X_Y": must be lowercase']),
    ("spec.volumes", [{"name": "c", "gitRepo": {"repository": "x"}}],
     ["spec.volumes[0].gitRepo: volume type not supported (supported: emptyDir, hostPath, configMap"]),
    ("kind", "Deployment", ['kind: "Deployment" is not supported (only Pod)']),
    ("apiVersion", "apps/v1", ['apiVersion: "apps/v1" is not supported (only v1)']),
]


@pytest.mark.parametrize("path,value,expected", MALFORMED,
                         ids=[f"{p}={str(v)[:20]}" for p, v, _ in MALFORMED])
def test_malformed(path, value, expected):
    lines = problems_of(_mutate(base(), path, value))
    assert len(lines) == 1, lines
    for part in expected:
        assert part in lines[0], lines


def test_every_problem_is_reported_one_line_each():
    doc = base(volumes=[{"name": "data", "emptyDir": {}}])
    doc["metadata"]["name"] = "Bad"
    doc["spec"]["hostNetwork"] = "no"
    doc["spec"]["containers"] = [
        {"name": "a", "comand": ["x"], "command": ["true"]},
        {"name": "a", "command": "true", "volumeMounts": [
            {"name": "data", "mountPath": "rel"},
            {"name": "data", "mountPath": "/d", "subPath": "/abs"},
            {"name": "data", "mountPath": "/e", "subPath": "../up"},
            {"name": "data", "mountPath": "/f/../g"},
            {"name": "data", "mountPath": "/h", "subPath": "a", "subPathExpr": "b"},
            {"name": "data", "mountPath": "/"},
            {"name": "data", "mountPath": "/h/", "readOnly": "yes"},
        ]},
    ]
    lines = problems_of(doc)
    assert lines == [
        'metadata.name: "Bad": must be lowercase letters, digits, \'-\' and \'.\', starting and '
        'ending with a letter or digit (a DNS-1123 subdomain)',
        'spec.hostNetwork: must be a boolean, got a string "no" (write true or false, without quotes)',
        'spec.containers[0].comand: unknown field (did you mean "command"?)',
        'spec.containers[1].name: "a" is already the name of spec.containers[0]',
        'spec.containers[1].command: must be a list of strings, got a string (write ["true"])',
        'spec.containers[1].volumeMounts[0].mountPath: "rel": must be an absolute path',
        'spec.containers[1].volumeMounts[1].subPath: "/abs": must be a relative path',
        'spec.containers[1].volumeMounts[2].subPath: "../up": must not contain \'..\' (it would leave the volume)',
        'spec.containers[1].volumeMounts[3].mountPath: "/f/../g": must not contain \'..\'',
        'spec.containers[1].volumeMounts[4].subPathExpr: cannot be set together with subPath',
        'spec.containers[1].volumeMounts[5].mountPath: "/": cannot mount over the container\'s root',
        'spec.containers[1].volumeMounts[6].mountPath: "/h/" is already mounted by spec.containers[1].volumeMounts[4]',
        'spec.containers[1].volumeMounts[6].readOnly: must be a boolean, got a string "yes" (write true or false, without quotes)',
    ]


def test_args_without_command_needs_an_image():
    doc = with_container(args=["-c", "true"])
    del doc["spec"]["containers"][0]["command"]
    assert problems_of(doc) == [
        "spec.containers[0].args: args without command needs an image with an entrypoint; "
        "with no image, set command"]


def test_share_process_namespace_with_host_pid():
    assert problems_of(base(shareProcessNamespace=True, hostPID=True)) == [
        "spec.shareProcessNamespace: cannot be combined with hostPID"]


def test_fqdn_longer_than_64_is_an_error():
    doc = base(hostname="h" * 30, subdomain="s" * 20, setHostnameAsFQDN=True)
    [line] = problems_of(doc)
    assert line.startswith('spec.setHostnameAsFQDN: the FQDN "hhhh')
    assert line.endswith("is 77 characters; at most 64 are allowed")


def test_network_annotation():
    doc = base()
    doc["metadata"]["annotations"] = {"nspod.io/network": "host"}
    assert problems_of(doc) == ['metadata.annotations[nspod.io/network]: "host" is not one of: bridge, none']
    doc["metadata"]["annotations"]["nspod.io/network"] = "none"
    doc["spec"]["hostNetwork"] = True
    assert problems_of(doc) == ["metadata.annotations[nspod.io/network]: cannot be combined with hostNetwork"]


def test_non_string_keys_are_reported():
    doc = base()
    doc["spec"][True] = "x"   # YAML's `on: x` without quotes
    assert problems_of(doc) == ["spec: unexpected key true (field names are strings)"]


# --- restartPolicy and other gated features ----------------------------------------------------

def test_restart_policy_gating(disable):
    disable("spec.restartPolicy=Always", "spec.restartPolicy=OnFailure")
    assert problems_of(base(restartPolicy="Always")) == [
        "spec.restartPolicy: Always is not supported yet (only Never); set restartPolicy: Never"]
    assert problems_of(base(restartPolicy="OnFailure")) == [
        "spec.restartPolicy: OnFailure is not supported yet (only Never); set restartPolicy: Never"]
    doc = base()
    del doc["spec"]["restartPolicy"]
    assert problems_of(doc) == [
        "spec.restartPolicy: not set, and its Kubernetes default Always is not supported yet; "
        "set restartPolicy: Never"]


def test_restart_policy_once_delivered(enable):
    enable("spec.restartPolicy=Always", "spec.restartPolicy=OnFailure")
    doc = base()
    del doc["spec"]["restartPolicy"]
    assert pod_from_dict(doc)[0].restart_policy == "Always"
    assert pod_from_dict(base(restartPolicy="OnFailure"))[0].restart_policy == "OnFailure"


def test_image_is_gated(disable):
    disable("container.image")
    assert problems_of(with_container(image="busybox")) == [
        "spec.containers[0].image: not supported yet"]
    assert pod_from_dict(with_container(image=""))[0].containers[0].image == ""


def test_image_once_delivered(enable):
    enable("container.image")
    doc = with_container(image="/srv/rootfs", args=["x"])
    del doc["spec"]["containers"][0]["command"]
    container = pod_from_dict(doc)[0].containers[0]
    assert (container.image, container.command, container.args) == ("/srv/rootfs", (), ("x",))
    assert problems_of(with_container(image=" busybox")) == [
        'spec.containers[0].image: " busybox": must not start or end with whitespace']


GATED = [
    ("spec.activeDeadlineSeconds", 10),
    ("spec.resources", {"limits": {"memory": "1Gi"}}),
    ("spec.hostAliases", [{"ip": "10.0.0.1", "hostnames": ["db"]}]),
    (f"{C0}.resources", {"limits": {"memory": "1Gi"}}),
    (f"{C0}.ports", [{"containerPort": 80}]),
    ("spec.initContainers", [{"name": "setup", "command": ["true"]}]),
    (f"{C0}.securityContext", {"privileged": True}),
    (f"{C0}.livenessProbe", {"exec": {"command": ["true"]}}),
    (f"{C0}.readinessProbe", {"tcpSocket": {"port": 80}}),
    (f"{C0}.startupProbe", {"httpGet": {"port": 80}}),
    (f"{C0}.lifecycle", {"preStop": {"sleep": {"seconds": 1}}}),
    (f"{C0}.terminationMessagePath", "/dev/termination-log"),
    (f"{C0}.terminationMessagePolicy", "File"),
]


def _feature(path):
    return path.replace(f"{C0}.", "container.")


@pytest.mark.parametrize("path,value", GATED, ids=[p for p, _ in GATED])
def test_gated_fields_are_refused_not_ignored(path, value, disable):
    disable(_feature(path))
    lines = problems_of(_mutate(base(), path, value))
    shown = path.replace(".containers.0", ".containers[0]")
    assert lines[0] == f"{shown}: not supported yet"


@pytest.mark.parametrize("path", [
    "spec.initContainers", "spec.hostAliases", "spec.securityContext", f"{C0}.resources",
    f"{C0}.ports", f"{C0}.securityContext"])
def test_gated_fields_may_be_empty(path):
    empty = [] if path.endswith(("Containers", "Aliases", "ports")) else {}
    assert pod_from_dict(_mutate(base(), path, empty))[0].name == "web"


def test_gated_fields_are_validated_all_the_same(disable):
    disable("container.terminationMessagePolicy")
    doc = with_container(terminationMessagePolicy="Bogus")
    assert problems_of(doc) == [
        "spec.containers[0].terminationMessagePolicy: not supported yet",
        'spec.containers[0].terminationMessagePolicy: "Bogus" is not one of: File, '
        'FallbackToLogsOnError']


def test_app_containers_may_not_set_restart_policy():
    assert problems_of(with_container(restartPolicy="Always")) == [
        "spec.containers[0].restartPolicy: only init containers may set restartPolicy (native sidecars)"]


# --- resources (gated: enabled here) ----------------------------------------------------------

def test_resources(enable):
    enable("container.resources")
    doc = with_container(resources={"limits": {"memory": "512Mi", "cpu": "0.5"},
                                    "requests": {"memory": 1000, "cpu": 0.25}})
    container = pod_from_dict(doc)[0].containers[0]
    assert container.resources == Resources({"memory": 512 * 2**20, "cpu": 500},
                                            {"memory": 1000, "cpu": 250})


def test_resource_errors(enable):
    enable("container.resources")
    doc = base()
    doc["spec"]["containers"].append({"name": "b", "command": ["true"], "resources": {
        "limits": {"memory": "12XB", "cpu": "1", "nvidia.com/gpu": 1, "memroy": "1Gi"},
        "requests": {"cpu": "2", "ephemeral-storage": "1Gi"},
        "claims": [{"name": "x"}]}})
    assert problems_of(doc) == [
        "spec.containers[1].resources.claims: not supported",
        'spec.containers[1].resources.limits.memory: "12XB" is not a quantity (examples: 512Mi, 1Gi)',
        'spec.containers[1].resources.limits.memroy: unknown resource (did you mean "memory"?)',
        'spec.containers[1].resources.requests.cpu: "2" must be less than or equal to the cpu limit ("1")',
    ]


def test_requests_above_limits(enable):
    enable("container.resources")
    doc = with_container(resources={"limits": {"memory": "1Gi"}, "requests": {"memory": "2Gi"}})
    assert problems_of(doc) == [
        'spec.containers[0].resources.requests.memory: "2Gi" must be less than or equal to the '
        'memory limit ("1Gi")']


def test_cpu_quantity_examples_are_cpu_examples(enable):
    enable("container.resources")
    assert problems_of(with_container(resources={"limits": {"cpu": "two"}})) == [
        'spec.containers[0].resources.limits.cpu: "two" is not a quantity (examples: 500m, 2)']


def test_fractional_bytes_warn(enable):
    enable("container.resources")
    pod, warnings = pod_from_dict(with_container(resources={"limits": {"memory": "1.5"}}))
    assert pod.containers[0].resources.limits == {"memory": 2}
    assert warnings == ['spec.containers[0].resources.limits.memory: "1.5" is not a whole number '
                        "of bytes; rounded up to 2"]


def test_pod_level_resources(enable):
    enable("spec.resources", "container.resources")
    doc = base(resources={"limits": {"memory": "1Gi"}, "requests": {"memory": "100Mi"}})
    doc["spec"]["containers"][0]["resources"] = {"limits": {"memory": "2Gi"},
                                                 "requests": {"memory": "200Mi"}}
    assert problems_of(doc) == [
        "spec.resources.requests.memory: must be at least the containers' requests together (200Mi)",
        "spec.containers[0].resources.limits.memory: must not exceed the pod's limit (1Gi)",
    ]


# --- init containers and sidecars (gated: enabled here) ------------------------------------------

def test_init_containers(enable):
    enable("spec.initContainers", "container.restartPolicy")
    doc = base(initContainers=[{"name": "setup", "command": ["true"]},
                               {"name": "proxy", "command": ["sleep", "inf"], "restartPolicy": "Always"}])
    pod = pod_from_dict(doc)[0]
    setup, proxy = pod.init_containers
    assert setup.init and setup.restart_policy == ""
    assert proxy.init and proxy.restart_policy == "Always"


def test_container_names_are_unique_across_init_and_app(enable):
    enable("spec.initContainers", "container.restartPolicy")
    doc = base(initContainers=[{"name": "app", "command": ["true"], "restartPolicy": "OnFailure"}])
    assert problems_of(doc) == [
        'spec.initContainers[0].restartPolicy: "OnFailure" is not supported (only Always, which makes a native sidecar)',
        'spec.containers[0].name: "app" is already the name of spec.initContainers[0]',
    ]


def test_init_containers_without_restart_always_have_no_probes(enable):
    enable("spec.initContainers", "container.livenessProbe", "handler.exec")
    doc = base(initContainers=[{"name": "setup", "command": ["true"],
                                "livenessProbe": {"exec": {"command": ["true"]}}}])
    assert problems_of(doc) == [
        "spec.initContainers[0].livenessProbe: init containers may not have probes unless "
        "restartPolicy is Always (a sidecar)"]


# --- the other gated parts, validated once enabled ---------------------------------------------

def test_ports(enable):
    enable("container.ports")
    doc = base(hostNetwork=True)
    doc["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "name": "http"},
                                             {"containerPort": 53, "protocol": "UDP"}]
    doc["spec"]["containers"].append({"name": "b", "command": ["true"], "ports": [
        {"containerPort": 80}, {"containerPort": 0}, {"containerPort": 81, "hostPort": 82},
        {"containerPort": 90, "protocol": "ICMP"}, {"containerPort": 91, "name": "HTTP"},
        {"containerPort": 92, "hostIP": "127.0.0.1"}]})
    assert problems_of(doc) == [
        "spec.containers[1].ports[0].hostPort: 80/TCP is already used by spec.containers[0].ports[0]",
        "spec.containers[1].ports[1].containerPort: 0 must be at least 1",
        "spec.containers[1].ports[2].hostPort: must equal containerPort (81) with hostNetwork",
        'spec.containers[1].ports[3].protocol: "ICMP" is not one of: TCP, UDP, SCTP',
        'spec.containers[1].ports[4].name: "HTTP": must be lowercase letters, digits and \'-\'',
        "spec.containers[1].ports[5].hostIP: not supported",
    ]


def test_probes_and_lifecycle(enable):
    enable("container.ports", "container.livenessProbe", "container.readinessProbe",
           "container.lifecycle", "handler.exec", "handler.httpGet", "handler.tcpSocket",
           "handler.sleep")
    doc = with_container(
        ports=[{"containerPort": 8080, "name": "http"}],
        livenessProbe={"httpGet": {"path": "/healthz", "port": "http",
                                   "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                       "periodSeconds": 5},
        readinessProbe={"tcpSocket": {"port": 8080}},
        lifecycle={"postStart": {"exec": {"command": ["touch", "/ready"]}},
                   "preStop": {"sleep": {"seconds": 2}}})
    c = pod_from_dict(doc)[0].containers[0]
    assert c.liveness_probe == spec.Probe(
        spec.Handler("httpGet", port="http", path="/healthz", headers=(("X-Probe", "1"),)),
        period_seconds=5)
    assert c.readiness_probe.handler == spec.Handler("tcpSocket", port=8080)
    assert c.post_start == spec.Handler("exec", command=("touch", "/ready"))
    assert c.pre_stop == spec.Handler("sleep", seconds=2)

    bad = with_container(
        livenessProbe={"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}, "successThreshold": 2},
        readinessProbe={"httpGet": {"port": "web"}, "terminationGracePeriodSeconds": 5},
        lifecycle={"preStop": {"sleep": {"seconds": 60}}, "postStart": {"tcpSocket": {"port": 1}}})
    assert problems_of(bad) == [
        "spec.containers[0].livenessProbe: exactly one handler is needed (exec, httpGet, tcpSocket), got exec, tcpSocket",
        "spec.containers[0].livenessProbe.successThreshold: must be 1 for a livenessProbe",
        'spec.containers[0].readinessProbe.httpGet.port: "web" is not the name of one of this container\'s ports',
        "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: is not allowed in a readinessProbe",
        "spec.containers[0].lifecycle.postStart.tcpSocket: not supported (deprecated in lifecycle hooks)",
        "spec.containers[0].lifecycle.preStop.sleep.seconds: 60 must be at most terminationGracePeriodSeconds (30)",
    ]


def test_probe_handler_kinds_are_gated_on_their_own(disable):
    disable("handler.exec")
    assert problems_of(with_container(livenessProbe={"exec": {"command": ["true"]}})) == [
        "spec.containers[0].livenessProbe.exec: not supported yet"]


SECURITY_FEATURES = [k for k in spec.FEATURES if k.startswith("securityContext.")]


def test_security_context(enable):
    enable("spec.securityContext", "container.securityContext", *SECURITY_FEATURES)
    doc = base(securityContext={"runAsUser": 1000, "supplementalGroups": [5, 6],
                                "sysctls": [{"name": "net/ipv4/ip_local_port_range", "value": "1024 65000"},
                                            {"name": "kernel.shmmax", "value": "65536"}]})
    doc["spec"]["containers"][0]["securityContext"] = {
        "capabilities": {"add": ["NET_ADMIN", "cap_sys_time"], "drop": ["ALL"]},
        "readOnlyRootFilesystem": True, "seccompProfile": {"type": "RuntimeDefault"}}
    pod = pod_from_dict(doc)[0]
    assert pod.security_context.run_as_user == 1000
    assert pod.security_context.supplemental_groups == (5, 6)
    assert pod.security_context.sysctls == (("net.ipv4.ip_local_port_range", "1024 65000"),
                                            ("kernel.shmmax", "65536"))
    sc = pod.containers[0].security_context
    assert sc.capabilities_add == ("NET_ADMIN", "SYS_TIME") and sc.capabilities_drop == ("ALL",)
    assert sc.read_only_root_filesystem and sc.seccomp_profile == "RuntimeDefault"
    assert sc.run_as_user is None


def test_security_context_errors(enable):
    enable("spec.securityContext", "container.securityContext", *SECURITY_FEATURES)
    doc = base(hostNetwork=True, securityContext={
        "runAsUser": -1, "fsGroupChangePolicy": "Always",
        "sysctls": [{"name": "vm.swappiness", "value": "10"}, {"name": "net.core.somaxconn", "value": "1"}]})
    doc["spec"]["containers"][0]["securityContext"] = {
        "privileged": True, "allowPrivilegeEscalation": False, "fsGroup": 1,
        "capabilities": {"add": ["NET_ADMN"]},
        "seccompProfile": {"type": "Localhost"}}
    assert problems_of(doc) == [
        "spec.securityContext.fsGroupChangePolicy: not supported",
        "spec.securityContext.runAsUser: -1 must be at least 0",
        'spec.securityContext.sysctls[0].name: "vm.swappiness" is not namespaced: setting it would change the whole host',
        'spec.securityContext.sysctls[1].name: "net.core.somaxconn" cannot be set with hostNetwork: it would change the host\'s',
        'spec.containers[0].securityContext.fsGroup: unknown field (did you mean "runAsGroup"?)',
        'spec.containers[0].securityContext.capabilities.add[0]: "NET_ADMN" is not a Linux capability (did you mean "NET_ADMIN"?)',
        "spec.containers[0].securityContext.allowPrivilegeEscalation: cannot be false with privileged: true",
        "spec.containers[0].securityContext.seccompProfile.localhostProfile: required with type Localhost",
    ]


def test_dns_and_host_aliases(enable):
    enable("spec.dnsPolicy", "spec.dnsConfig", "spec.hostAliases", "spec.activeDeadlineSeconds")
    doc = base(dnsPolicy="None", activeDeadlineSeconds=60,
               dnsConfig={"nameservers": ["1.1.1.1"], "searches": ["lab.local."],
                          "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]},
               hostAliases=[{"ip": "10.0.0.1", "hostnames": ["db", "db.lab"]}])
    pod = pod_from_dict(doc)[0]
    assert pod.dns_policy == "None" and pod.active_deadline_seconds == 60
    assert pod.dns_config == spec.DNSConfig(("1.1.1.1",), ("lab.local.",), (("ndots", "2"), ("edns0", None)))
    assert pod.host_aliases == (spec.HostAlias("10.0.0.1", ("db", "db.lab")),)
    bad = base(dnsPolicy="None", activeDeadlineSeconds=0,
               hostAliases=[{"ip": "10.0.0.300", "hostnames": ["DB"]}])
    assert problems_of(bad) == [
        "spec.activeDeadlineSeconds: 0 must be at least 1",
        "spec.dnsConfig: dnsPolicy None needs dnsConfig with at least one nameserver",
        'spec.hostAliases[0].ip: "10.0.0.300" is not an IP address',
        'spec.hostAliases[0].hostnames[0]: "DB": must be lowercase letters, digits, \'-\' and \'.\', '
        "starting and ending with a letter or digit (a DNS-1123 subdomain)",
    ]


# --- warnings ----------------------------------------------------------------------------------

def test_cluster_only_fields_warn_once_each():
    doc = base(nodeSelector={"disk": "ssd"}, tolerations=[{"operator": "Exists"}],
               serviceAccountName="robot", priority=5, enableServiceLinks=False,
               schedulerName="default-scheduler", automountServiceAccountToken=False)
    doc["metadata"]["uid"] = "1234"
    doc["metadata"]["generateName"] = "web-"
    doc["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    doc["status"] = {"phase": "Running"}
    pod, warnings = pod_from_dict(doc)
    assert sorted(warnings) == sorted([
        "status: ignored",
        "metadata.generateName: ignored: nspod needs metadata.name",
        "metadata.uid: ignored (set by the API server)",
        "spec.nodeSelector: ignored on a single host",
        "spec.tolerations: ignored on a single host",
        "spec.serviceAccountName: ignored on a single host",
        "spec.priority: ignored on a single host",
    ])  # imagePullPolicy is honoured (issue 10): `run` pulls as it says
    assert pod.manifest["status"] == {"phase": "Running"}


def test_image_pull_policy_is_checked():
    doc = base()
    doc["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    assert problems_of(doc) == ['spec.containers[0].imagePullPolicy: "Sometimes" is not one of: '
                                'Always, IfNotPresent, Never']


def test_empty_cluster_only_fields_do_not_warn():
    doc = base(tolerations=[], nodeSelector={})
    doc["metadata"]["creationTimestamp"] = None
    doc["status"] = {}
    assert pod_from_dict(doc)[1] == []


def test_generate_name_without_name():
    doc = base()
    doc["metadata"] = {"generateName": "web-"}
    assert problems_of(doc) == ["metadata.name: required"]


def test_duplicate_env_names_warn():
    doc = with_container(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])
    pod, warnings = pod_from_dict(doc)
    assert [v.value for v in pod.containers[0].env] == ["1", "2"]
    assert warnings == ['spec.containers[0].env[1].name: "A" hides spec.containers[0].env[0] (the last one wins)']


def test_hostname_with_host_network_warns():
    pod, warnings = pod_from_dict(base(hostNetwork=True, hostname="h"))
    assert warnings == ["spec.hostname: ignored with hostNetwork (the pod has the host's name)"]


def test_kubectl_get_output():
    pods, warnings = load_pods(manifest("kubectl-get.yaml"), "pod.yaml")
    assert pods[0].restart_policy == "Always"
    assert any(w.startswith("status: ") for w in warnings)


# --- YAML, documents, names ----------------------------------------------------------------------

def test_yaml_syntax_error_is_one_line_with_its_position():
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [web\nspec: {}\n"
    [line] = yaml_problems(text)
    assert line == "pod.yaml: line 5, column 5: did not find expected ',' or ']'"
    assert "\n" not in line


def test_tabs_are_a_syntax_error():
    [line] = yaml_problems("metadata:\n\tname: web\n")
    assert line.startswith("pod.yaml: line 2, column 1: ")


def test_duplicate_keys_are_reported_with_the_other_problems():
    text = ("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  restartPolicy: Never\n"
            "  containers:\n  - name: app\n    command: [a]\n    command: [b]\n    comand: [c]\n")
    assert yaml_problems(text) == [
        'pod.yaml: line 9, column 5: duplicate key "command"',
        'spec.containers[0].comand: unknown field (did you mean "command"?)',
    ]


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "a list"), ("just text\n", "a string"),
                                       ("42\n", "an integer")])
def test_documents_that_are_not_mappings(text, kind):
    assert yaml_problems(text) == [f"a Pod manifest must be a mapping, got {kind}"]


@pytest.mark.parametrize("text", ["", "\n", "---\n", "# only a comment\n", "---\n---\n"])
def test_empty_manifest(text):
    assert yaml_problems(text) == ["pod.yaml: no Pod in it (the manifest is empty)"]


def test_timestamps_stay_strings():
    text = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n"
            "  creationTimestamp: 2024-05-01T10:00:00Z\n  annotations: {date: 2024-05-01}\n"
            "spec:\n  restartPolicy: Never\n  containers: [{name: app, command: [x]}]\n")
    [pod], _ = load_pods(text)
    assert pod.annotations == {"date": "2024-05-01"}
    assert pod.manifest["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"


def test_multi_document():
    pods, warnings = load_pods(manifest("multi.yaml"), "multi.yaml")
    assert [p.name for p in pods] == ["one", "two"]
    assert [p.containers[0].command for p in pods] == [("sleep", "1"), ("sleep", "2")]
    assert warnings == []


def test_multi_document_problems_name_their_document():
    text = manifest("multi.yaml").replace("name: two", "name: Two").replace("  - name: c\n    command: [sleep, \"1\"]", "  - name: c")
    assert yaml_problems(text) == [
        "document 1: spec.containers[0].command: required: with no image there is nothing else to run",
        'document 2: metadata.name: "Two": must be lowercase letters, digits, \'-\' and \'.\', '
        "starting and ending with a letter or digit (a DNS-1123 subdomain)",
    ]


def test_multi_document_with_a_list_document():
    text = manifest("multi.yaml") + "---\n- not a pod\n"
    assert yaml_problems(text) == ["document 3: a Pod manifest must be a mapping, got a list"]


def test_multi_document_duplicate_names():
    text = manifest("multi.yaml").replace("name: two", "name: one")
    assert yaml_problems(text) == ['document 2: metadata.name: "one" is also the name of document 1']


def test_multi_document_warnings_name_their_document():
    text = manifest("multi.yaml").replace("restartPolicy: Never\n  containers:\n  - name: c\n    command: [sleep, \"2\"]",
                                          "restartPolicy: Never\n  nodeName: n1\n  containers:\n  - name: c\n    command: [sleep, \"2\"]")
    assert load_pods(text)[1] == ["document 2: spec.nodeName: ignored on a single host"]


def test_name_override():
    pods, _ = load_pods(manifest("good.yaml"), name_override="other")
    assert pods[0].name == "other"
    assert pods[0].manifest["metadata"]["name"] == "other"
    assert pods[0].manifest["metadata"]["labels"]["app"] == "web"
    doc = base()
    del doc["metadata"]["name"]
    assert pod_from_dict(doc, name_override="given")[0].name == "given"
    assert "name" not in doc["metadata"]   # the caller's dict is left alone


def test_name_override_is_validated():
    assert yaml_problems(manifest("good.yaml"), name_override="Bad_Name") == [
        'metadata.name: "Bad_Name" (from --name): must be lowercase letters, digits, \'-\' and '
        "'.', starting and ending with a letter or digit (a DNS-1123 subdomain)"]


def test_name_override_with_several_documents():
    with pytest.raises(InputError) as info:
        load_pods(manifest("multi.yaml"), "multi.yaml", name_override="x")
    assert not isinstance(info.value, SpecError)
    assert str(info.value) == "--name needs a manifest with one Pod; multi.yaml makes 2 pods"


def test_path_prefix():
    doc = with_container(comand=["x"])
    assert problems_of(doc, path_prefix="pod web: ") == [
        'pod web: spec.containers[0].comand: unknown field (did you mean "command"?)']


@pytest.mark.parametrize("name,what", [("web", "pod"), ("web.v1", "pod"), ("a" * 253, "pod"),
                                       ("app", "container"), ("data-1", "volume")])
def test_validate_name_accepts(name, what):
    validate_name(name, what)


@pytest.mark.parametrize("name,what,message", [
    ("Web", "pod", 'invalid pod name "Web": must be lowercase letters, digits, \'-\' and \'.\''),
    ("", "pod", 'invalid pod name "": must not be empty'),
    ("a" * 254, "pod", "must be at most 253 characters (it has 254)"),
    ("-web", "pod", "starting and ending with a letter or digit"),
    ("web.v1", "container", 'invalid container name "web.v1": must be lowercase letters, digits and \'-\''),
    ("a" * 64, "volume", "must be at most 63 characters (it has 64)"),
    (5, "pod", "invalid pod name 5: must be a string, got an integer"),
])
def test_validate_name_refuses(name, what, message):
    with pytest.raises(InputError) as info:
        validate_name(name, what)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# --- hostnames ---------------------------------------------------------------------------------

def _pod(**fields):
    return spec.Pod(**{"name": "web", **fields})


@pytest.mark.parametrize("fields,expected", [
    ({}, "web"),
    ({"hostname": "front"}, "front"),
    ({"name": "a" * 70}, "a" * 63),
    ({"name": "a" * 62 + "-b" + "c" * 10}, "a" * 62),          # the cut ends in '-': stripped
    ({"name": "a" * 61 + "..bc"}, "a" * 61),                    # every trailing '.' and '-' goes
    ({"name": "a" * 63}, "a" * 63),
    ({"name": "web.v1"}, "web.v1"),
    ({"subdomain": "svc"}, "web"),
    ({"set_hostname_as_fqdn": True}, "web"),                    # no subdomain: unchanged
    ({"set_hostname_as_fqdn": True, "subdomain": "svc", "namespace": "lab"},
     "web.svc.lab.svc.cluster.local"),
    ({"set_hostname_as_fqdn": True, "subdomain": "svc", "hostname": "h"},
     "h.svc.default.svc.cluster.local"),
])
def test_effective_hostname(fields, expected):
    assert effective_hostname(_pod(**fields)) == expected


def test_host_domain():
    assert host_domain(_pod()) == ""
    assert host_domain(_pod(subdomain="svc", namespace="lab")) == "svc.lab.svc.cluster.local"


# --- container_from_dict (nspod add) ---------------------------------------------------------

def test_container_from_dict():
    pod = pod_from_dict(base(volumes=[{"name": "data", "emptyDir": {}}]))[0]
    container, warnings = container_from_dict(
        {"name": "sidecar", "command": ["sleep", "9"], "volumeMounts": [{"name": "data", "mountPath": "/d"}],
         "env": [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "containerName": "app"}}}]},
        "container", init=False, pod=pod)
    assert warnings == []
    assert container.volume_mounts == (VolumeMount("data", "/d"),)
    assert container.env[0].resource_container == "app"


def test_container_from_dict_errors():
    pod = pod_from_dict(base())[0]
    with pytest.raises(SpecError) as info:
        container_from_dict({"name": "app", "command": ["x"],
                             "volumeMounts": [{"name": "data", "mountPath": "/d"}]},
                            "container", init=False, pod=pod)
    assert info.value.problems == [
        'container.name: "app" is already the name of a container of pod "web"',
        'container.volumeMounts[0].name: "data" is not a volume of this pod (declare it in spec.volumes)',
    ]


def test_container_from_dict_init_is_gated(disable):
    disable("spec.initContainers")
    with pytest.raises(SpecError) as info:
        container_from_dict({"name": "setup", "command": ["true"]}, "container", init=True, pod=None)
    assert info.value.problems == ["container: init containers are not supported yet"]


def test_container_from_dict_checks_against_the_context_validate_pod_builds(monkeypatch):
    """`nspod add` checks the new container against the same facts the pod's own containers
    were checked against: one Context record, built by validate_pod for the pod and by
    pod_context for the container that joins it. (Before, container_from_dict copied the facts
    by hand and left out hostIPC, so it checked against hostIPC: false.)"""
    from nsPod.manifest import rules_containers, rules_pod
    seen = []

    def spy(raw, path, init, ctx):
        seen.append(ctx)
        return real(raw, path, init, ctx)

    real = rules_containers.validate_container
    monkeypatch.setattr(rules_containers, "validate_container", spy)
    monkeypatch.setattr(spec, "validate_container", spy)
    pod, _ = pod_from_dict(base(hostIPC=True, hostNetwork=True, terminationGracePeriodSeconds=7,
                                volumes=[{"name": "data", "emptyDir": {}}]))
    container_from_dict({"name": "sidecar", "command": ["true"]}, "container", init=False,
                        pod=pod)
    of_pod, of_added = seen
    facts = ("grace", "host_network", "host_ipc", "volume_names")
    assert [getattr(of_added, f) for f in facts] == [getattr(of_pod, f) for f in facts]
    assert of_added.host_ipc is True and of_added.grace == 7
    assert of_added.container_names == of_pod.container_names | {"sidecar"}
    assert rules_pod.Context is type(of_added)
    with pytest.raises(AttributeError):
        of_added.host_ipc = False  # frozen: no rule can change a fact for the next one


def test_container_from_dict_without_a_pod():
    container, _ = container_from_dict({"name": "c", "command": ["true"],
                                        "volumeMounts": [{"name": "any", "mountPath": "/x"}]},
                                       "container", init=False, pod=None)
    assert container.volume_mounts[0].name == "any"


def test_every_feature_names_a_field():
    schemas = {"spec": schema.SPEC, "container": schema.CONTAINER, "volume": schema.VOLUME,
               "env": schema.ENV_SOURCE, "volumeMount": schema.MOUNT,
               "securityContext": {**schema.POD_SECURITY, **schema.CONTAINER_SECURITY},
               "handler": {**schema.LIFECYCLE_HANDLER, **schema.PROBE}}
    for key, enabled in spec.FEATURES.items():
        kind, _, name = key.partition(".")
        assert schemas[kind].get(name.split("=")[0], "missing") is None, key
        assert isinstance(enabled, bool)


# --- helpers for the CLI ---------------------------------------------------------------------

def test_allow_no_containers():
    doc = base(containers=[])
    assert problems_of(doc) == ["spec.containers: required: at least one container"]
    pod, _ = pod_from_dict(doc, allow_no_containers=True)
    assert pod.containers == ()


def test_pod_container_lookup(enable):
    enable("spec.initContainers")
    pod, _ = pod_from_dict(base(initContainers=[{"name": "setup", "command": ["true"]}]))
    assert pod.container("setup").init
    assert pod.container("app").command == ("sleep", "1")
    assert pod.container("nope") is None


def test_generate_round_trips():
    [pod], _ = load_pods(manifest("good.yaml"))
    text = spec.dump_yaml(spec.clean_manifest(pod.manifest))
    assert text.startswith("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n")
    [again], warnings = load_pods(text)
    assert again == pod and warnings == []


def test_clean_manifest_drops_what_the_cluster_owns():
    doc = base()
    doc["metadata"].update(uid="1", resourceVersion="2", ownerReferences=[{"kind": "ReplicaSet"}],
                           labels={"a": "b"})
    doc["status"] = {"phase": "Running"}
    doc["spec"]["nodeName"] = "n1"
    cleaned = spec.clean_manifest(doc)
    assert cleaned["metadata"] == {"name": "web", "labels": {"a": "b"}}
    assert "status" not in cleaned and cleaned["spec"]["nodeName"] == "n1"
    assert doc["metadata"]["uid"] == "1"   # the stored manifest is left alone


def test_dump_yaml_quotes_what_yaml_would_misread():
    text = spec.dump_yaml({"a": "yes", "b": "1.0", "c": "2024-01-01", "d": "ü", "e": [1, "x"]})
    assert text == "a: 'yes'\nb: '1.0'\nc: '2024-01-01'\nd: ü\ne:\n- 1\n- x\n"


# --- hostile YAML: only JSON values, within budgets ---------------------------------------------
# The API server reads YAML as JSON (sigs.k8s.io/yaml): nothing but text, numbers, booleans,
# null, lists and mappings reaches it. Each refusal names the line and the field.

POD_YAML = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  restartPolicy: Never\n"
            "  containers: [{name: app, command: [x]}]\n")


@pytest.mark.parametrize("value, tag", [
    ("!!binary aGVsbG8=", "!!binary"),
    ("!!timestamp 2001-02-03", "!!timestamp"),
    ("!!set {a, b}", "!!set"),
    ("!!omap [{a: 1}]", "!!omap"),
    ("!!pairs [{a: 1}]", "!!pairs"),
    ("!!python/object/apply:os.system [true]", "!!python/object/apply:os.system"),
    ("!!python/name:os.system", "!!python/name:os.system"),
    ("!local x", "!local"),
    ("!<tag:example.com,2024:x> y", "tag:example.com,2024:x"),
])
def test_tags_beyond_json_are_refused(value, tag):
    assert yaml_problems(POD_YAML + f"  nodeName: {value}\n") == [
        f"pod.yaml: line 8, column 13: spec.nodeName: tag {tag} is not allowed: a manifest "
        "holds only JSON values (text, numbers, true/false, null, lists, mappings)"]


def test_json_tags_are_allowed():
    [pod], _ = load_pods(POD_YAML.replace("name: web", "name: !!str web\n  annotations: "
                                          "{a: !!str 1, b: ! x}") +
                         "  terminationGracePeriodSeconds: !!int 5\n  hostNetwork: !!bool true\n")
    assert pod.name == "web" and pod.annotations == {"a": "1", "b": "x"}
    assert pod.termination_grace_period_seconds == 5 and pod.host_network


@pytest.mark.parametrize("value, problem", [
    ("!!bool maybe", '"maybe" is not a valid !!bool'),
    ("!!int x", '"x" is not a valid !!int'),
    ("!!int 0b", '"0b" is not a valid !!int'),
    ("!!float x", '"x" is not a valid !!float'),
    (".inf", '".inf" is not a number JSON can hold (no infinities, no NaN)'),
    ("-.inf", '"-.inf" is not a number JSON can hold (no infinities, no NaN)'),
    (".nan", '".nan" is not a number JSON can hold (no infinities, no NaN)'),
    ("1.0e+999", '"1.0e+999" is not a number JSON can hold (no infinities, no NaN)'),
    ("9" * 5000, "a number of 5000 digits is too large (no field takes more than 19)"),
    ('"a\\0b"', "contains a NUL character"),
])
def test_scalars_no_api_takes_name_line_and_field(value, problem):
    """PyYAML's own constructors raised ValueError/KeyError on these (an internal error)."""
    assert yaml_problems(POD_YAML + f"  terminationGracePeriodSeconds: {value}\n") == [
        f"pod.yaml: line 8, column 34: spec.terminationGracePeriodSeconds: {problem}"]


def test_odd_plain_scalars_are_text_as_go_yaml_reads_them():
    """`0b`, `0x_`, `._`, sexagesimal 12:30, `=` and impossible dates are text to kubectl's
    go-yaml; PyYAML's YAML 1.1 resolvers made ints of some and failed on others."""
    text = POD_YAML.replace("name: web", "name: web\n  annotations: {a: 0b_, b: 0x_, c: ._, "
                            "d: '12:30', e: 12:30, f: =, g: 2001-02-30, h: 0o7, i: 1e3}")
    [pod], _ = load_pods(text)
    assert pod.annotations == {"a": "0b_", "b": "0x_", "c": "._", "d": "12:30", "e": "12:30",
                               "f": "=", "g": "2001-02-30", "h": "0o7", "i": "1e3"}


def test_yaml_numbers_and_booleans_still_resolve():
    """As kubectl reads them: sigs.k8s.io/yaml's YAMLToJSON uses go-yaml v2 (YAML 1.1), whose
    doc says unquoted yes/no become true/false; hex and underscores are numbers too."""
    text = POD_YAML + ("  terminationGracePeriodSeconds: 0x1e\n  activeDeadlineSeconds: 1_000\n"
                       "  hostNetwork: yes\n  hostIPC: off\n  hostname: ~\n")
    [pod], _ = load_pods(text)
    assert (pod.termination_grace_period_seconds, pod.active_deadline_seconds) == (30, 1000)
    assert pod.host_network is True and pod.host_ipc is False and pod.hostname == ""


def test_billion_laughs_is_refused_before_it_is_built():
    """Aliases in an ignored field passed `validate` and made `run` grow to gigabytes."""
    lines = ["lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        lines.append(f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    text = POD_YAML.replace("name: web", "name: web\n  labels:\n    " + "\n    ".join(lines))
    [problem] = yaml_problems(text)
    assert problem.startswith("pod.yaml: line 8, column 11: metadata.labels.lol3[7]: ")
    assert problem.endswith("aliases copy more than 10000 nodes into the document "
                            "(an alias bomb?)")


def test_merge_key_bomb_is_refused():
    lines = ["m0: &m0 {a: 1, b: 2, c: 3}"]
    for i in range(1, 8):
        lines.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 10) + "]}")
    text = "\n".join(lines) + "\n" + POD_YAML
    [problem] = yaml_problems(text)
    assert "aliases copy more than 10000 nodes" in problem


def test_modest_anchors_are_fine():
    text = POD_YAML.replace("containers: [{name: app, command: [x]}]",
                            "containers: [{name: a, command: &cmd [sleep, '1']}, "
                            "{name: b, command: *cmd}]")
    [pod], _ = load_pods(text)
    assert [c.command for c in pod.containers] == [("sleep", "1"), ("sleep", "1")]


def test_recursive_alias_is_refused():
    assert yaml_problems(POD_YAML + "  nodeSelector: &a {x: *a}\n") == [
        "pod.yaml: line 8, column 17: spec.nodeSelector.x: an alias inside the node it refers "
        "to (a recursive alias)"]


def test_deep_nesting_is_refused():
    text = POD_YAML + "  nodeSelector: " + "[" * 150 + "]" * 150 + "\n"
    [problem] = yaml_problems(text)
    assert problem.startswith("pod.yaml: line 8, column 115: spec.nodeSelector[0][0]")
    assert problem.endswith(": nested more than 100 levels deep")


def test_nesting_beyond_the_parser_is_one_line():
    """libyaml stops at 1000 levels (a line and column); PyYAML's pure-Python parser, used
    when libyaml is missing, recurses until RecursionError ("nested too deeply")."""
    [problem] = yaml_problems("- " * 5000 + "x\n")
    assert (problem.startswith("pod.yaml: line 1, column ")
            or problem == "pod.yaml: nested too deeply"), problem


def test_second_document_is_named():
    text = POD_YAML + "---\n" + POD_YAML.replace("web", "two") + "  x: !!set {}\n"
    assert yaml_problems(text) == [
        "pod.yaml: document 2, line 16, column 6: spec.x: tag !!set is not allowed: a manifest "
        "holds only JSON values (text, numbers, true/false, null, lists, mappings)"]


@pytest.mark.parametrize("field, value, problem", [
    ("terminationGracePeriodSeconds", 2**63, f"{2**63} must be at most {2**63 - 1}"),
    ("activeDeadlineSeconds", 10**30, f"{10**30} must be at most {2**63 - 1}"),
])
def test_pod_numbers_are_int64(field, value, problem):
    assert problems_of(base(**{field: value})) == [f"spec.{field}: {problem}"]


@pytest.mark.parametrize("key", ["periodSeconds", "timeoutSeconds", "initialDelaySeconds",
                                 "failureThreshold"])
def test_probe_numbers_are_int32(key):
    probe = {"exec": {"command": ["true"]}, key: 2**31}
    assert problems_of(with_container(livenessProbe=probe)) == [
        f"spec.containers[0].livenessProbe.{key}: {2**31} must be at most {2**31 - 1}"]


def test_huge_quantity_names_the_field():
    """A 5,000-digit quantity printed Python's int-conversion text."""
    doc = with_container(resources={"limits": {"memory": "1" + "0" * 5000}})
    assert problems_of(doc) == ['spec.containers[0].resources.limits.memory: '
                                '"10000000000000000000000000000000000..." has more than 100 digits']


@pytest.mark.parametrize("value, problem", [
    ("!!int [1]", "tag !!int does not fit a list"),
    ("!!str {a: 1}", "tag !!str does not fit a mapping"),
    ("!!seq x", "tag !!seq does not fit a scalar"),
    ("!!map [1]", "tag !!map does not fit a list"),
])
def test_tag_on_the_wrong_kind_of_node(value, problem):
    """Found by the fuzz test: `!!int [1]` was an internal AttributeError."""
    assert yaml_problems(POD_YAML + f"  nodeName: {value}\n") == [
        f"pod.yaml: line 8, column 13: spec.nodeName: {problem}"]


def test_volumes_that_are_not_a_list():
    """Found by the fuzz test: `volumes: 5` was an internal TypeError."""
    assert problems_of(base(volumes=5)) == ["spec.volumes: must be a list, got an integer 5"]


def test_problems_are_capped():
    """300,000 unknown fields were 300,000 lines, each with a difflib suggestion (minutes)."""
    text = POD_YAML + "".join(f"  zz{i}: 1\n" for i in range(5000))
    problems = yaml_problems(text)
    assert len(problems) == 101
    assert problems[0] == "spec.zz0: unknown field"
    assert problems[-1] == "... more problems; only the first 100 are listed"


def test_problems_of_many_documents_are_capped():
    docs = [POD_YAML.replace("web", f"w{i}") + "  zz: 1\n" for i in range(300)]
    problems = yaml_problems("---\n".join(docs))
    assert len(problems) == 101 and problems[0] == "document 1: spec.zz: unknown field"
    assert problems[-1] == "... more problems; only the first 100 are listed"


def test_alias_bomb_of_long_text_is_refused():
    """Few nodes but much text: a 64 KiB string copied by 100 aliases is 6.4 MiB."""
    text = ("x: &big '" + "x" * 65536 + "'\n" + POD_YAML +
            "  nodeSelector: {" + ", ".join(f"k{i}: *big" for i in range(100)) + "}\n")
    [problem] = yaml_problems(text)
    assert problem.startswith("pod.yaml: line 1, column 4: spec.nodeSelector.k64: ")  # the anchor's line
    assert problem.endswith(": aliases copy more than 4 MiB of text into the document "
                            "(an alias bomb?)")


def test_merge_keys_still_work():
    """go-yaml (kubectl) and PyYAML both read `<<:` merge keys; they stay allowed."""
    text = POD_YAML.replace("containers: [{name: app, command: [x]}]",
                            "containers: [&base {name: a, command: [sleep, '1']}, "
                            "{<<: *base, name: b}]")
    [pod], _ = load_pods(text)
    assert [(c.name, c.command) for c in pod.containers] == [("a", ("sleep", "1")),
                                                             ("b", ("sleep", "1"))]


def test_a_rule_is_a_function_of_its_value_path_and_context():
    """Each rule reads the pod's facts from the Context it is given, nothing else: a sysctl
    rule can be checked without a pod around it."""
    from nsPod.manifest.check import Report, lone_context
    from nsPod.manifest.rules_security import validate_sysctls
    sysctls = [{"name": "kernel.shmmax", "value": "1"}, {"name": "net.core.somaxconn", "value": "9"}]
    report = Report()
    assert validate_sysctls(sysctls, "s", lone_context(report)._replace(host_ipc=True)) == (
        ("net.core.somaxconn", "9"),)
    assert report.problems == [
        "s[0].name: \"kernel.shmmax\" cannot be set with hostIPC: it would change the host's"]
    report = Report()
    assert len(validate_sysctls(sysctls, "s", lone_context(report))) == 2
    assert report.problems == []

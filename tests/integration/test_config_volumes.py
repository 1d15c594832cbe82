"""configMap, secret, downwardAPI, projected and persistentVolumeClaim volumes, and env from
ConfigMaps and Secrets, for real: what a container reads, where a Secret lives (a tmpfs), the
`..data` swap seen by a running container, and a claim outliving its pods."""
import os

from helpers import wait_for

FILE = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data:
  app.conf: "hello=1\\n"
  color: blue
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
data:
  password: czNjcjN0
stringData:
  user: admin
---
apiVersion: v1
kind: Pod
metadata:
  name: NAME
  labels: {app: web}
  annotations: {nspod.io/network: none}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    command: [sh, -c, 'echo "PASS=$PASS C_color=$C_color"; sleep 1000']
    env:
    - name: PASS
      valueFrom: {secretKeyRef: {name: sec, key: password}}
    - name: GONE
      valueFrom: {configMapKeyRef: {name: nothere, key: k, optional: true}}
    envFrom:
    - configMapRef: {name: cfg}
      prefix: C_
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec}
    - {name: down, mountPath: /down}
    - {name: proj, mountPath: /proj}
  volumes:
  - name: cfg
    configMap: {name: cfg}
  - name: sec
    secret: {secretName: sec, defaultMode: 0400}
  - name: down
    downwardAPI:
      items:
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
  - name: proj
    projected:
      sources:
      - configMap: {name: cfg, items: [{key: color, path: c/color}]}
      - secret: {name: sec, items: [{key: user, path: user, mode: 0600}]}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
      - serviceAccountToken: {path: token}
"""


def sh(nspod, pod, script):
    return nspod("exec", pod, "--", "sh", "-c", script).stdout


def test_configmap_secret_downward_projected_from_one_file(nspod):
    """The kubelet's layout (pkg/volume/util/atomic_writer.go): each key a symlink into
    `..data`, itself a symlink to a timestamped directory; Secret volumes on a tmpfs
    (pkg/volume/secret: a memory-backed emptyDir); env from secretKeyRef and envFrom with a
    prefix; an optional missing ConfigMap is no error."""
    path = nspod.manifest(FILE.replace("NAME", "cv1"))
    assert nspod("run", path).stdout.split() == ["cv1"]
    wait_for(lambda: "PASS=" in nspod("logs", "cv1").stdout, what="the container's output")
    assert "PASS=s3cr3t C_color=blue" in nspod("logs", "cv1").stdout
    assert sh(nspod, "cv1", "cat /cfg/app.conf /cfg/color") == "hello=1\nblue"
    assert sh(nspod, "cv1", "readlink /cfg/color /cfg/..data").split()[0] == "..data/color"
    assert sh(nspod, "cv1", "readlink /cfg/..data").startswith("..20")
    assert sh(nspod, "cv1", "cat /sec/password; stat -L -c %a /sec/password") == "s3cr3t400\n"
    assert sh(nspod, "cv1", "cat /down/name; echo; cat /down/labels") == 'cv1\napp="web"'
    assert sh(nspod, "cv1", "cat /proj/c/color /proj/user /proj/ns") == "blueadmindefault"
    assert sh(nspod, "cv1", "stat -L -c %a /proj/user") == "600\n"
    assert sh(nspod, "cv1", "test -e /proj/token || echo none") == "none\n"
    # read-only for the container, as the kubelet mounts them
    assert nspod("exec", "cv1", "--", "sh", "-c", "echo x > /cfg/new", check=False).returncode
    mountinfo = sh(nspod, "cv1", "cat /proc/self/mountinfo")
    by_target = {line.split()[4]: line for line in mountinfo.splitlines()}
    assert " - tmpfs " in by_target["/sec"], by_target["/sec"]
    assert " - tmpfs " in by_target["/proj"], by_target["/proj"]
    assert " - tmpfs " not in by_target["/cfg"], by_target["/cfg"]
    for target in ("/sec", "/cfg", "/down", "/proj"):
        assert "ro" in by_target[target].split()[5].split(","), by_target[target]
    # Secret data never in inspect
    assert "s3cr3t" not in nspod("inspect", "cv1").stdout
    assert "czNjcjN0" not in nspod("inspect", "cv1").stdout


def test_missing_configmap_is_one_clear_line_and_nothing_made(nspod):
    path = nspod.manifest(FILE.replace("NAME", "cv2").replace("configMap: {name: cfg}",
                                                               "configMap: {name: other}"))
    result = nspod("run", path, check=False)
    assert result.returncode == 2, result
    # the file's warnings (its serviceAccountToken projection) print beside the error
    errors = [l for l in result.stderr.strip().splitlines() if not l.startswith("warning: ")]
    assert errors == [
        "error: document 3: spec.volumes[0].configMap: ConfigMap \"other\" is not in the "
        "file(s) (give it beside the pod, or set optional: true)"], result.stderr
    assert nspod.pods() == []
    # `validate` checks the manifest alone: the same line is a warning there, exit 0
    result = nspod("validate", path)
    assert ("warning: document 3: spec.volumes[0].configMap: ConfigMap \"other\" is not in "
            "the file(s) (give it beside the pod, or set optional: true); `nspod run` refuses "
            "the pod without it") in result.stderr.splitlines(), result.stderr


def test_configmap_and_pod_in_two_files(nspod):
    """`nspod run a.yaml b.yaml`: a ConfigMap in one file serves the pod of the other."""
    cm, _, rest = FILE.partition("---\n")
    a = nspod.manifest(cm, "a.yaml")
    b = nspod.manifest(FILE.replace("NAME", "cv3").split("---\n", 1)[1], "b.yaml")
    assert nspod("run", a, b).stdout.split() == ["cv3"]
    assert sh(nspod, "cv3", "cat /cfg/color") == "blue"
    # a directory: its manifests, sorted
    directory = os.path.join(nspod.workdir, "dir")
    os.mkdir(directory)
    os.rename(a, os.path.join(directory, "1-config.yaml"))
    with open(os.path.join(directory, "2-pod.yml"), "w") as f:
        f.write(FILE.replace("NAME", "cv6").split("---\n", 1)[1])
    assert nspod("run", directory).stdout.split() == ["cv6"]
    assert sh(nspod, "cv6", "cat /cfg/app.conf") == "hello=1\n"


def test_data_swap_seen_by_a_running_container(nspod):
    """nspod apply of a changed ConfigMap: the kubelet updates a running pod's configMap
    volume in place by the AtomicWriter's ..data swap, without restarting the container."""
    path = nspod.manifest(FILE.replace("NAME", "cv4"))
    nspod("run", path)
    before = sh(nspod, "cv4", "readlink /cfg/..data")
    assert sh(nspod, "cv4", "cat /cfg/color") == "blue"
    nspod.manifest(FILE.replace("NAME", "cv4").replace("color: blue", "color: red\n  new: x"),
                   os.path.basename(path))
    out = nspod("apply", path).stdout
    assert "pod cv4: volume cfg updated" in out and "restarted" not in out, out
    assert sh(nspod, "cv4", "cat /cfg/color /cfg/new") == "redx"
    after = sh(nspod, "cv4", "readlink /cfg/..data").strip()
    assert after != before.strip()
    # the old timestamped directory is gone; the new key has its symlink
    assert sorted(sh(nspod, "cv4", "ls -a /cfg").split()) == sorted(
        [".", "..", "..data", after, "app.conf", "color", "new"])
    assert sh(nspod, "cv4", "readlink /cfg/new") == "..data/new\n"


CLAIM = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
---
apiVersion: v1
kind: Pod
metadata:
  name: NAME
  annotations: {nspod.io/network: none}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    command: [sh, -c, 'SCRIPT']
    volumeMounts: [{name: d, mountPath: /data}]
  volumes:
  - name: d
    persistentVolumeClaim: {claimName: data}
"""


def test_claim_outlives_its_pod_and_volume_ls_rm(nspod):
    """A claim is a named local volume under the state root, as `podman kube play` maps
    claims: it survives `rm`, a new pod mounts it again; `volume rm` is refused while used."""
    nspod("run", nspod.manifest(CLAIM.replace("NAME", "pv1").replace(
        "SCRIPT", "echo kept > /data/f; sleep 1000")))
    wait_for(lambda: sh(nspod, "pv1", "cat /data/f 2>/dev/null") == "kept\n", what="the write")
    listing = nspod("volume", "ls").stdout
    assert "data" in listing and "pv1" in listing, listing
    refused = nspod("volume", "rm", "data", check=False)
    assert refused.returncode == 2 and "pv1" in refused.stderr, refused
    nspod("rm", "-f", "--timeout", "0", "pv1")
    assert os.path.exists(os.path.join(nspod.root, "volumes", "data", "f"))
    nspod("run", nspod.manifest(CLAIM.replace("NAME", "pv2").replace("SCRIPT", "sleep 1000")))
    assert sh(nspod, "pv2", "cat /data/f") == "kept\n"
    nspod("rm", "-f", "--timeout", "0", "pv2")
    nspod("volume", "rm", "data")
    assert not os.path.exists(os.path.join(nspod.root, "volumes", "data"))
    assert nspod("volume", "rm", "data", check=False).returncode == 2


def test_secret_values_never_in_trace_inspect_or_generate(nspod):
    """Secret data stays out of what nspod prints (`--trace` narrates syscalls, not data) and
    the pod's stored plan holding it is root-only."""
    path = nspod.manifest(FILE.replace("NAME", "cv5").replace(
        "sleep 1000", "sleep 1000").replace('echo "PASS=$PASS C_color=$C_color"; ', ""))
    result = nspod("--trace", "run", path)
    for shown in (result.stdout + result.stderr, nspod("inspect", "cv5").stdout,
                  nspod("generate", "cv5").stdout, nspod("logs", "cv5").stdout):
        assert "s3cr3t" not in shown and "czNjcjN0" not in shown
    pod_json = os.path.join(nspod.root, "pods", "cv5", "pod.json")
    assert os.stat(pod_json).st_mode & 0o077 == 0
    assert sh(nspod, "cv5", "cat /sec/password") == "s3cr3t"


STATEFULSET = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: greeting}
data: {hello: world}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sts}
spec:
  replicas: 2
  serviceName: sts
  selector: {matchLabels: {app: sts}}
  template:
    metadata:
      labels: {app: sts}
      annotations: {nspod.io/network: none}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: app
        command: [sh, -c, 'hostname > /data/who; sleep 1000']
        volumeMounts:
        - {name: data, mountPath: /data}
        - {name: cfg, mountPath: /cfg}
      volumes:
      - name: cfg
        configMap: {name: greeting}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"""


def test_statefulset_pods_get_their_claims_and_the_configmap_beside_them(nspod):
    """The StatefulSet controller names each pod's claim <template>-<pod>
    (pkg/controller/statefulset/stateful_set_utils.go getPersistentVolumeClaimName): each
    pod mounts its own claim volume; the workload's pods read the ConfigMap of the file."""
    path = nspod.manifest(STATEFULSET, "sts.yaml")
    assert nspod("run", path).stdout.split() == ["sts-0", "sts-1"]
    for pod in ("sts-0", "sts-1"):
        assert sh(nspod, pod, "cat /cfg/hello") == "world"
        wait_for(lambda: sh(nspod, pod, "cat /data/who 2>/dev/null") == f"{pod}\n",
                 what=f"{pod}'s write to its claim")
    listing = nspod("volume", "ls").stdout
    assert "data-sts-0" in listing and "data-sts-1" in listing, listing
    nspod("delete", "-f", path, "--timeout", "0")
    for pod in ("sts-0", "sts-1"):
        with open(os.path.join(nspod.root, "volumes", f"data-{pod}", "who")) as f:
            assert f.read() == f"{pod}\n", "a claim outlives its pod"
    nspod("volume", "rm", "data-sts-0", "data-sts-1")
    assert not os.listdir(os.path.join(nspod.root, "volumes"))

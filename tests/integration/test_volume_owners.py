"""Who owns what a pod's config volumes hold: fsGroup on configMap, secret, downwardAPI and
projected files (the kubelet's SetVolumeOwnership for read-only volumes), seen with stat from
inside the container."""
import os

from helpers import wait_for

FSGROUP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {color: blue, nested: x}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {password: s3cr3t}
---
apiVersion: v1
kind: Pod
metadata:
  name: NAME
  annotations: {nspod.io/network: none}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000}
  containers:
  - name: app
    command: [sh, -c, 'sleep 1000']
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec}
    - {name: down, mountPath: /down}
    - {name: proj, mountPath: /proj}
  volumes:
  - name: cfg
    configMap: {name: cfg, items: [{key: color, path: color}, {key: nested, path: d/nested}]}
  - name: sec
    secret: {secretName: sec, defaultMode: 0400}
  - name: down
    downwardAPI:
      defaultMode: 0600
      items: [{path: name, fieldRef: {fieldPath: metadata.name}}]
  - name: proj
    projected:
      defaultMode: 0640
      sources:
      - configMap: {name: cfg, items: [{key: color, path: color, mode: 0604}]}
      - secret: {name: sec}
"""


def sh(nspod, pod, script):
    return nspod("exec", pod, "--", "sh", "-c", script).stdout


def test_fsgroup_owns_config_volume_files_with_group_read(nspod):
    """kubelet pkg/volume/volume_linux.go: lchown(-1, fsGroup) on everything, files
    mode|0440 (read-only volumes' mask), directories mode|0550|setgid; defaultMode and an
    item's mode kept otherwise. User 1000 reads a 0400 Secret through the group."""
    nspod("run", nspod.manifest(FSGROUP.replace("NAME", "fg1")))
    wait_for(lambda: sh(nspod, "fg1", "id -u") == "1000\n", what="the container")
    stat = lambda path: sh(nspod, "fg1", f"stat -L -c '%g %a' {path}").strip()  # noqa: E731
    assert stat("/cfg/color") == "2000 644"
    assert stat("/cfg/d/nested") == "2000 644"
    assert stat("/sec/password") == "2000 440", "0400 plus group read"
    assert stat("/down/name") == "2000 640", "0600 plus group read"
    assert stat("/proj/color") == "2000 644", "an item's mode 0604 plus group read"
    assert stat("/proj/password") == "2000 640"
    for directory in ("/cfg", "/cfg/..data", "/cfg/d", "/sec/..data"):
        gid, mode = stat(directory).split()
        assert gid == "2000" and int(mode, 8) & 0o2550 == 0o2550, (directory, gid, mode)
    assert sh(nspod, "fg1", "stat -c %g /cfg/color /cfg/..data").split() == ["2000", "2000"], \
        "the symlinks too"
    assert sh(nspod, "fg1", "cat /sec/password") == "s3cr3t", "read through group 2000"
    # an update (apply of a changed ConfigMap) keeps the ownership
    path = os.path.join(nspod.workdir, "pod.yaml")
    with open(path, "w") as f:
        f.write(FSGROUP.replace("NAME", "fg1").replace("color: blue", "color: red"))
    assert "volume cfg updated" in nspod("apply", path).stdout
    assert sh(nspod, "fg1", "cat /cfg/color") == "red"
    assert stat("/cfg/color") == "2000 644" and stat("/cfg/..data").startswith("2000 ")


def test_without_fsgroup_files_stay_root_owned(nspod):
    nspod("run", nspod.manifest(FSGROUP.replace("NAME", "fg2").replace(
        "runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000", "runAsUser: 0")))
    assert sh(nspod, "fg2", "stat -L -c '%g %a' /sec/password /cfg/color").split() == \
        ["0", "400", "0", "644"]


CLAIMS = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: NS}
---
apiVersion: v1
kind: Pod
metadata:
  name: NAME
  namespace: NS
  annotations: {nspod.io/network: none}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    command: [sh, -c, 'echo NS >> /data/who; sleep 1000']
    volumeMounts: [{name: d, mountPath: /data}]
  volumes:
  - name: d
    persistentVolumeClaim: {claimName: data}
"""


def test_claims_of_one_name_in_two_namespaces_are_two_volumes(nspod):
    """A claim is namespaced as in Kubernetes: `data` of team-a is not `data` of default.
    The default namespace's claim keeps <root>/volumes/data (no migration); another's is
    <root>/volumes/_ns/<namespace>/data, listed and removed as namespace/data."""
    for pod, ns in (("pa", "default"), ("pb", "team-a"), ("pc", "team-b")):
        nspod("run", nspod.manifest(CLAIMS.replace("NAME", pod).replace("NS", ns),
                                    f"{pod}.yaml"))
    for pod, ns in (("pa", "default"), ("pb", "team-a"), ("pc", "team-b")):
        wait_for(lambda: sh(nspod, pod, "cat /data/who 2>/dev/null") == f"{ns}\n",
                 what=f"{pod}'s write")
    base = os.path.join(nspod.root, "volumes")
    assert open(os.path.join(base, "data", "who")).read() == "default\n"
    assert open(os.path.join(base, "_ns", "team-a", "data", "who")).read() == "team-a\n"
    listing = {line.split()[0]: line.split()[-1]
               for line in nspod("volume", "ls").stdout.splitlines()[1:]}
    assert listing == {"data": "pa", "team-a/data": "pb", "team-b/data": "pc"}, listing
    refused = nspod("volume", "rm", "team-a/data", check=False)
    assert refused.returncode == 2 and "pb" in refused.stderr and "pa" not in refused.stderr
    nspod("rm", "-f", "--timeout", "0", "pb")
    assert nspod("volume", "rm", "team-a/data").stdout.split() == ["team-a/data"]
    assert not os.path.exists(os.path.join(base, "_ns", "team-a"))
    assert open(os.path.join(base, "_ns", "team-b", "data", "who")).read() == "team-b\n"
    assert os.path.exists(os.path.join(base, "data", "who"))
    for bad in ("Team/data", "a/b/c", "team-a/", "_ns"):
        result = nspod("volume", "rm", bad, check=False)
        assert result.returncode == 2 and result.stderr.startswith("error: NAME:"), result
    nspod("rm", "-f", "--timeout", "0", "pa", "pc")
    nspod("volume", "rm", "default/data")      # the default namespace by its full name
    nspod("volume", "rm", "team-b/data")
    assert os.listdir(base) in ([], ["_ns"]) and not os.listdir(os.path.join(base, "_ns"))

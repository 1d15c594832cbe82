"""A file of workloads runs as pods named as Kubernetes names them; `delete -f` removes
every pod the file made, and only those."""
import json
import re

from helpers import container, pod_yaml, wait_phase

WORKLOADS = """\
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
      - {name: c, command: [sleep, "1000"], stdin: false, tty: false}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: c, command: ["true"]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      volumes: [{name: scratch}]
      containers:
      - name: c
        command: [sleep, "1000"]
        volumeMounts: [{name: scratch, mountPath: /scratch}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
"""
SUFFIX = "[bcdfghjklmnpqrstvwxz2456789]{5}"


def test_deployment_job_statefulset_run_and_delete_f_removes_them(nspod):
    """Deployment pods are <deployment>-<pod-template-hash>-<5 chars>, StatefulSet pods
    <sts>-<ordinal>, Job pods <job>-<5 chars> with the template's restartPolicy; each is
    labelled with its owner; `delete -f` removes them and leaves a pod the file did not make."""
    path = nspod.manifest(WORKLOADS, "workloads.yaml")
    other = nspod.run_yaml(pod_yaml("other", container("a")))
    result = nspod("run", path)
    assert "ignored: kind Service" in result.stderr
    names = result.stdout.split()
    assert len(names) == 5, names
    web = [n for n in names if n.startswith("web-")]
    assert len(web) == 2 and all(re.fullmatch(f"web-[{SUFFIX[1:28]}]+-{SUFFIX}", n) for n in web)
    assert [n for n in names if n.startswith("db-")] == ["db-0", "db-1"]
    job = [n for n in names if n.startswith("once-")]
    assert len(job) == 1 and re.fullmatch(f"once-{SUFFIX}", job[0])

    listed = {p["metadata"]["name"]: p["metadata"]
              for p in json.loads(nspod("ps", "-a", "-o", "json").stdout)["items"]}
    assert set(names) | {other} == set(listed)
    for n in web:
        assert listed[n]["labels"]["app"] == "web"
        assert listed[n]["labels"]["pod-template-hash"] == n.split("-")[1]
        assert listed[n]["annotations"]["nspod.io/owner"] == "Deployment/web"
    assert listed["db-1"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-1"
    assert listed[job[0]]["labels"]["job-name"] == "once"
    done = wait_phase(nspod, job[0], ("Succeeded",))
    assert done["spec"]["restartPolicy"] == "Never"
    assert nspod.inspect("db-0")["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}}]

    removed = nspod("delete", "-f", path, "--timeout", "0").stdout.split()
    assert sorted(removed) == sorted(names)
    assert nspod.pods() == [other]
    again = nspod("delete", "-f", path, check=False)
    assert again.returncode == 1 and "no pod made from" in again.stderr


def test_a_pod_that_cannot_be_made_stops_run_and_delete_f_cleans_up(nspod):
    """Pods are made in file order: when one fails (its name is taken) the error names it,
    the ones made before stay and are listed, and `delete -f` removes them, not the pod
    that held the name."""
    taken = nspod.run_yaml(pod_yaml("db-1", container("a")))
    path = nspod.manifest(WORKLOADS.split("---\n")[2], "sts.yaml")
    result = nspod("run", path, check=False)
    assert result.returncode != 0
    assert result.stdout.split() == ["db-0"]
    assert "db-1" in result.stderr
    assert nspod("delete", "-f", path, "--timeout", "0").stdout.split() == ["db-0"]
    assert nspod.pods() == [taken]

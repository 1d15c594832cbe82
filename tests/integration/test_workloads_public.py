"""Real public manifests, run unchanged end to end against a local registry.

The Kubernetes documentation's examples (tests/corpus, CC-BY-4.0, sources in
tests/corpus/SOURCES.md) name images on registry.k8s.io and Docker Hub. They are not edited:
registries.conf sends those prefixes to a local Debian docker-registry (`[[registry]]`
prefix/location, as an air-gapped site mirrors them), where stand-ins built from
busybox-static are pushed under the names the manifests use. Each runs with `nspod run`, its
pods do what the docs say they do, and `nspod delete -f` removes every pod it made."""
import json
import os
import shutil
import tempfile

import pytest

from busybox import require_busybox
from helpers import wait_for, wait_phase
from test_registry import (REGISTRY, SKOPEO, Registry, _base_entries, conf, images,
                           write_layout)

CORPUS = os.path.join(os.path.dirname(__file__), "..", "corpus")
EXTRA_APPLETS = ("date", "httpd", "wget", "[", "[[", "ls", "sleep")


def _stand_in(base, name, files=(), cmd=("sh",)):
    """A busybox-static image: busybox, its applets, and `files` [(path, text, mode)]."""
    entries = _base_entries() + [(f"bin/{a}", "symlink", "busybox", 0o777)
                                 for a in EXTRA_APPLETS]
    have = {e[0] for e in entries}
    extra = []
    for path, text, mode in files:
        parts = path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in have:
                extra.append((d, "dir", None, 0o755))
                have.add(d)
        extra.append((path, "file", text.encode(), mode))
    return write_layout(os.path.join(base, name), [entries, extra], cmd=cmd)


@pytest.fixture(scope="module")
def mirror():
    missing = [p for p in (REGISTRY, SKOPEO) if not os.path.exists(p)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: install docker-registry and skopeo "
                    "(sh tests/run.sh does)")
    require_busybox()
    base = tempfile.mkdtemp(prefix="nspod-public-")
    registry = Registry(base, "mirror")
    try:
        busybox = _stand_in(base, "busybox")
        registry.push(busybox, "k8s/busybox:1.27.2")
        registry.push(busybox, "hub/library/alpine:3")
        registry.push(_stand_in(base, "nginx", [
            ("usr/share/nginx/html/index.html", "Welcome to nginx (a busybox stand-in)\n",
             0o644)], cmd=("exec httpd -f -p 80 -h /usr/share/nginx/html",)),
            "hub/library/nginx:1.14.2")
        registry.push(_stand_in(base, "perl", [
            ("bin/perl", "#!/bin/sh\necho 3.14159265358979323846\n", 0o755)]),
            "hub/library/perl:5.34.0")
        # How the manifests' references reach it: registries.conf only, never the YAML.
        registry.conf = (
            f'[[registry]]\nprefix = "registry.k8s.io"\nlocation = "{registry.host}/k8s"\n'
            "insecure = true\n"
            f'[[registry]]\nprefix = "docker.io"\nlocation = "{registry.host}/hub"\n'
            "insecure = true\n")
        yield registry
    finally:
        registry.stop()
        shutil.rmtree(base, ignore_errors=True)


def corpus(*names):
    return [os.path.join(CORPUS, n) for n in names]


def pods(nspod):
    return {p["metadata"]["name"]: p
            for p in json.loads(nspod("ps", "-a", "-o", "json").stdout)["items"]}


def logs(nspod, pod):
    return nspod("logs", pod).stdout


def delete(nspod, path):
    nspod("delete", "-f", path, "--timeout", "0")


def test_a_deployment_and_its_configmap(nspod, mirror):
    """deployments/deployment-with-configmap-as-volume.yaml with the ConfigMap the docs make
    (`kubectl create configmap sport --from-literal=sport=football`): three replicas of
    alpine:3, pulled through the mirror, each printing the sport from its configMap volume."""
    env = conf(nspod, mirror.conf)
    cm, deploy = corpus("configmaps/sport.yaml", "deployment-with-configmap-as-volume.yaml")
    names = nspod("run", cm, deploy, env=env).stdout.split()
    assert len(names) == 3 and all(n.startswith("configmap-volume-") for n in names), names
    assert images(nspod)["alpine:3"]["reference"] == "docker.io/library/alpine:3"
    for name in names:
        wait_for(lambda: "My preferred sport is football" in logs(nspod, name),
                 what=f"{name}'s output")
    listed = pods(nspod)
    assert {listed[n]["status"]["phase"] for n in names} == {"Running"}
    assert {listed[n]["metadata"]["labels"]["app.kubernetes.io/name"] for n in names} == \
        {"configmap-volume"}
    delete(nspod, deploy)
    assert pods(nspod) == {}


def test_nginx_deployment_serves(nspod, mirror):
    """controllers/nginx-deployment.yaml: three nginx:1.14.2 pods on the pod network, each
    answering HTTP on port 80 (the stand-in is busybox httpd)."""
    env = conf(nspod, mirror.conf)
    path, = corpus("nginx-deployment.yaml")
    names = nspod("run", path, "--wait", env=env).stdout.split()
    assert len(names) == 3
    for name in names:
        page = nspod("exec", name, "--", "wget", "-qO-", "http://127.0.0.1/").stdout
        assert page == "Welcome to nginx (a busybox stand-in)\n"
    ips = {p["status"].get("podIP") for p in pods(nspod).values()}
    assert len(ips) == 3 and None not in ips
    delete(nspod, path)
    assert pods(nspod) == {}


def test_pods_reading_configmaps_from_another_file(nspod, mirror):
    """pods/pod-configmap-env-var-valueFrom.yaml with configmap/configmap-multikeys.yaml, and
    pods/pod-configmap-volume.yaml with configmap/configmaps.yaml: `nspod run CM POD`."""
    env = conf(nspod, mirror.conf)
    cm, pod = corpus("configmaps/configmap-multikeys.yaml",
                     "pod-configmap-env-var-valueFrom.yaml")
    assert nspod("run", cm, pod, env=env).stdout.split() == ["dapi-test-pod"]
    wait_phase(nspod, "dapi-test-pod", ("Succeeded",))
    assert logs(nspod, "dapi-test-pod") == "very charm\n"
    delete(nspod, pod)
    cm, pod = corpus("configmaps/configmaps.yaml", "pod-configmap-volume.yaml")
    nspod("run", cm, pod, env=env)
    wait_phase(nspod, "dapi-test-pod", ("Succeeded",))
    assert logs(nspod, "dapi-test-pod") == "special.how\n"
    delete(nspod, pod)
    assert pods(nspod) == {}


def test_downward_api_volume_and_a_job(nspod, mirror):
    """pods/inject/dapi-volume.yaml prints its labels and annotations from the downward API
    volume; controllers/job.yaml's pi Job runs its pod to completion (perl a stand-in)."""
    env = conf(nspod, mirror.conf)
    dapi, job = corpus("dapi-volume.yaml", "job.yaml")
    nspod("run", dapi, env=env)
    pod = "kubernetes-downwardapi-volume-example"
    wait_for(lambda: 'builder="john-doe"' in logs(nspod, pod), what="the annotations")
    assert 'rack="rack-22"' in logs(nspod, pod)
    names = nspod("run", job, env=env).stdout.split()
    assert len(names) == 1 and names[0].startswith("pi-")
    wait_phase(nspod, names[0], ("Succeeded",))
    assert logs(nspod, names[0]).startswith("3.14159")
    delete(nspod, job)
    assert set(pods(nspod)) == {pod}, "delete -f removes only what its file made"
    delete(nspod, dapi)
    assert pods(nspod) == {}


def test_the_readme_example(nspod, mirror):
    """examples/deployment-configmap.yaml, as README.md runs it: one file, a ConfigMap and a
    Deployment; `nspod run` pulls alpine:3 (here through registries.conf to the local
    registry), three pods print the ConfigMap's value, `delete -f` removes them."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                        "deployment-configmap.yaml")
    env = conf(nspod, mirror.conf)
    names = nspod("run", path, env=env).stdout.split()
    assert len(names) == 3 and all(n.startswith("configmap-volume-") for n in names)
    for name in names:
        wait_for(lambda: "My preferred sport is football" in logs(nspod, name),
                 what=f"{name}'s output")
    assert images(nspod)["alpine:3"]["reference"] == "docker.io/library/alpine:3"
    delete(nspod, path)
    assert pods(nspod) == {}

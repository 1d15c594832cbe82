"""Images without root: names, unpacking (never outside the image), OCI layers and whiteouts,
and what plan makes of an image's config (argv, env, working directory)."""
import gzip
import hashlib
import io
import json
import os
import tarfile
from types import SimpleNamespace

import pytest

from nsPod import images, plan, spec
from nsPod.errors import InputError
from nsPod.spec import image_problem, image_reference, pod_from_dict


# --- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["busybox", "busybox:1.36", "my-app.v2:Latest_1", "a", "a:b",
                                  "/srv/rootfs", "/srv/name:with-colon",
                                  "docker.io/library/busybox", "x" * 129])
def test_good_images(name):
    assert image_problem(name) is None


@pytest.mark.parametrize("name", ["BusyBox", "-x", "x-", "Docker.io/x", "bb:",
                                  "bb:-tag", "bb:a:b", "a b", "/srv/../etc", "x" * 256])
def test_bad_images(name):
    assert image_problem(name)


def test_reference_defaults_the_tag_as_registries_do():
    assert image_reference("bb") == "bb:latest"
    assert image_reference("bb:1") == "bb:1"
    assert images.reference("bb") == "bb:latest"
    with pytest.raises(InputError, match=r"^NAME: '/x': must be an image name, not a path$"):
        images.reference("/x")
    with pytest.raises(InputError, match=r"^NAME: 'Bad': not an image name"):
        images.reference("Bad")


def test_manifest_image_names_are_validated():
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "a", "image": "Docker.io/x", "command": ["x"]}]}}
    with pytest.raises(spec.SpecError) as info:
        pod_from_dict(doc)
    assert info.value.problems[0].startswith('spec.containers[0].image: "Docker.io/x": not an '
                                             "image name")


# --- unpacking --------------------------------------------------------------------------------

def tar_of(entries, compress=False):
    """[(name, kind, payload)] -> tar bytes; kind file|dir|symlink|hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = payload
                tar.addfile(info)
            else:
                data = payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    return gzip.compress(data) if compress else data


def extract(data, dest, layer=False):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        if layer:
            images._apply_whiteouts(tar, str(dest))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        images._extract(tar, str(dest), layer=layer)


def test_an_archive_cannot_write_outside_the_image(tmp_path):
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "passwd").write_text("the host's\n")
    dest = tmp_path / "rootfs"
    dest.mkdir()
    extract(tar_of([
        ("etc", "symlink", str(outside)),              # absolute: inside the image it is /host…
        ("etc/passwd", "file", "through a symlink\n"),
        ("../escape", "file", "dot-dot\n"),
        ("/abs", "file", "absolute name\n"),
        ("link", "hardlink", str(outside / "passwd")),  # a hard link to a host file
    ]), dest)
    assert (outside / "passwd").read_text() == "the host's\n"
    assert not (tmp_path / "escape").exists()
    # …so what is written through it lands inside the image, where the container will see it.
    assert (dest / outside.relative_to("/") / "passwd").read_text() == "through a symlink\n"
    assert (dest / "escape").read_text() == "dot-dot\n"
    assert (dest / "abs").read_text() == "absolute name\n"
    assert os.lstat(dest / "link").st_ino != os.stat(outside / "passwd").st_ino


def test_a_later_member_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    outside = tmp_path / "target"
    outside.write_text("keep\n")
    dest = tmp_path / "rootfs"
    dest.mkdir()
    extract(tar_of([("f", "symlink", str(outside)), ("f", "file", "replaced\n")]), dest)
    assert outside.read_text() == "keep\n"
    assert not os.path.islink(dest / "f") and (dest / "f").read_text() == "replaced\n"


def test_layers_whiteouts_and_opaque_directories(tmp_path):
    dest = tmp_path / "rootfs"
    dest.mkdir()
    extract(tar_of([("etc", "dir", None), ("etc/motd", "file", "1"), ("etc/keep", "file", "1"),
                    ("d", "dir", None), ("d/a", "file", "1"), ("d/sub", "dir", None),
                    ("d/sub/b", "file", "1"), ("gone-dir", "dir", None),
                    ("gone-dir/x", "file", "1")], compress=True), dest, layer=True)
    extract(tar_of([("d/c", "file", "2"),               # before the marker: order is free
                    ("etc/.wh.motd", "file", ""), ("d/.wh..wh..opq", "file", ""),
                    (".wh.gone-dir", "file", ""), ("etc/new", "file", "2")], compress=True),
            dest, layer=True)
    assert sorted(os.listdir(dest)) == ["d", "etc"]
    assert sorted(os.listdir(dest / "etc")) == ["keep", "new"]
    assert sorted(os.listdir(dest / "d")) == ["c"]


def _blob(layout, data, media_type, **extra):
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data), **extra}


def oci_layout(path, platforms):
    (path / "blobs" / "sha256").mkdir(parents=True)
    manifests = []
    for arch in platforms:
        layer = _blob(path, tar_of([("arch", "file", arch)], compress=True),
                      "application/vnd.oci.image.layer.v1.tar+gzip")
        config = _blob(path, json.dumps({"config": {"Entrypoint": ["/bin/" + arch],
                                                    "Env": ["A=1"], "User": "app:staff"}})
                       .encode(), "application/vnd.oci.image.config.v1+json")
        manifest = _blob(path, json.dumps({"schemaVersion": 2, "config": config,
                                           "layers": [layer]}).encode(),
                         "application/vnd.oci.image.manifest.v1+json",
                         platform={"os": "linux", "architecture": arch})
        manifests.append(manifest)
    index = _blob(path, json.dumps({"schemaVersion": 2, "manifests": manifests}).encode(),
                  "application/vnd.oci.image.index.v1+json")
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [index]}))
    return path


def test_oci_picks_this_machines_platform_through_a_nested_index(tmp_path, monkeypatch):
    monkeypatch.setattr(images.platform, "machine", lambda: "aarch64")
    layout = oci_layout(tmp_path / "oci", ["amd64", "arm64"])
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    config = images._import_oci(str(layout), str(rootfs))
    assert (rootfs / "arch").read_text() == "arm64"
    assert config == {"entrypoint": ["/bin/arm64"], "cmd": None, "env": ["A=1"],
                      "workingDir": None, "user": "app:staff"}
    monkeypatch.setattr(images.platform, "machine", lambda: "s390x")
    with pytest.raises(images.ImageError, match="no image for linux/s390x"):
        images._import_oci(str(layout), str(tmp_path / "rootfs"))


# --- what plan makes of an image -------------------------------------------------------------

STORE = {"bb:latest": {"rootfs": "/store/bb:latest/rootfs", "entrypoint": ["/entry"],
                       "cmd": ["default", "args"], "env": ["PATH=/bin", "A=image", "EMPTY"],
                       "workingDir": "/app", "user": "app:staff"}}


def plan_of(container, pod_security=None, images_=STORE):
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "a", **container}]}}
    if pod_security:
        doc["spec"]["securityContext"] = pod_security
    pod = pod_from_dict(doc)[0]
    facts = plan.Facts(uid="u", pod_dir="/pods/p", state_root="/run/nspod", images=images_)
    return plan.make_plan(pod, facts).containers[0]


def test_entrypoint_cmd_env_and_working_dir_from_the_image():
    c = plan_of({"image": "bb"})
    assert c.argv == ["/entry", "default", "args"] and c.cwd == "/app"
    assert c.rootfs == "/store/bb:latest/rootfs"
    env = c.env_dict()
    assert (env["PATH"], env["A"], env["EMPTY"], env["HOSTNAME"], env["HOME"]) == \
        ("/bin", "image", "", "p", "/root")
    assert [k for k, _ in c.env][:3] == ["PATH", "A", "EMPTY"]


def test_command_replaces_entrypoint_and_args_replace_cmd():
    assert plan_of({"image": "bb", "args": ["x", "$(A)"]}).argv == ["/entry", "x", "image"]
    c = plan_of({"image": "bb", "command": ["run"], "workingDir": "/w",
                 "env": [{"name": "A", "value": "spec"}]})
    assert c.argv == ["run"] and c.cwd == "/w" and c.env_dict()["A"] == "spec"


def test_directory_images_have_no_config():
    c = plan_of({"image": "/srv/rootfs", "args": ["sh"]})
    assert (c.rootfs, c.argv, c.cwd) == ("/srv/rootfs", ["sh"], "/")
    with pytest.raises(InputError, match=r"^spec.containers\[0\].command: required: image "
                                         r"'/srv/rootfs' has no Entrypoint or Cmd to run$"):
        plan_of({"image": "/srv/rootfs"})


def test_an_image_not_in_the_store_is_refused_with_its_field():
    with pytest.raises(InputError, match=r"^spec.containers\[0\].image: 'nope' is not in "):
        plan_of({"image": "nope", "command": ["x"]})


def test_host_root_containers_keep_their_defaults():
    c = plan_of({"command": ["sleep", "1"]})
    assert c.rootfs == "" and c.cwd == "/"
    assert [k for k, _ in c.env] == ["PATH", "HOSTNAME", "HOME"]


def test_security_plan_merges_container_over_pod_over_image():
    s = plan_of({"image": "bb"}).security
    assert (s["user"], s["group"]) == ("app", "staff")
    assert s["capabilities"] == sorted(plan.DEFAULT_CAPABILITIES)
    assert (s["seccomp"], s["noNewPrivs"], s["privileged"]) == ("Unconfined", False, False)
    s = plan_of({"image": "bb", "securityContext": {"runAsUser": 7}},
                {"runAsUser": 5, "runAsGroup": 6, "supplementalGroups": [8], "fsGroup": 9,
                 "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}).security
    assert (s["user"], s["group"], s["supplementalGroups"], s["fsGroup"]) == ("7", "6", [8], 9)
    assert s["runAsNonRoot"] and s["seccomp"] == "RuntimeDefault"
    # runAsUser without runAsGroup: the image's group no longer applies (the uid's own does).
    assert plan_of({"image": "bb", "securityContext": {"runAsUser": 7}}).security["group"] == ""
    s = plan_of({"image": "bb", "securityContext": {
        "privileged": True, "seccompProfile": {"type": "RuntimeDefault"}}}).security
    assert s["privileged"] and s["seccomp"] == "Unconfined" and "SYS_ADMIN" in s["capabilities"]
    assert plan_of({"image": "bb", "securityContext": {"allowPrivilegeEscalation": False}}) \
        .security["noNewPrivs"]


@pytest.mark.parametrize("add,drop,expected", [
    ((), (), set(plan.DEFAULT_CAPABILITIES)),
    (("NET_ADMIN",), ("CHOWN", "KILL"),
     set(plan.DEFAULT_CAPABILITIES) - {"CHOWN", "KILL"} | {"NET_ADMIN"}),
    (("NET_BIND_SERVICE",), ("ALL",), {"NET_BIND_SERVICE"}),
    (("ALL",), ("SYS_ADMIN",), set(spec._CAPABILITY_NAMES) - {"SYS_ADMIN"}),
    (("ALL",), ("ALL",), set()),
])
def test_capabilities_as_containerd_computes_them(add, drop, expected):
    context = SimpleNamespace(capabilities_add=add, capabilities_drop=drop)
    assert set(plan.capabilities(context)) == expected

"""Images without root: names, unpacking (never outside the image), OCI layers and whiteouts,
and what plan makes of an image's config (argv, env, working directory)."""
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from types import SimpleNamespace

import pytest

from nsPod.store import images, oci, unpack
from nsPod.plan import make as plan
from nsPod.manifest import spec
from nsPod.errors import InputError
from nsPod.manifest.spec import image_problem, image_reference, pod_from_dict


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
            unpack._apply_whiteouts(tar, str(dest))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        unpack._extract(tar, str(dest), layer=layer)


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
    monkeypatch.setattr(oci.platform, "machine", lambda: "aarch64")
    layout = oci_layout(tmp_path / "oci", ["amd64", "arm64"])
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    config = oci._import_oci(str(layout), str(rootfs))
    assert (rootfs / "arch").read_text() == "arm64"
    assert config == {"entrypoint": ["/bin/arm64"], "cmd": None, "env": ["A=1"],
                      "workingDir": None, "user": "app:staff"}
    monkeypatch.setattr(oci.platform, "machine", lambda: "s390x")
    with pytest.raises(images.ImageError, match="no image for linux/s390x"):
        oci._import_oci(str(layout), str(tmp_path / "rootfs"))


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
    (("ALL",), ("SYS_ADMIN",), set(spec.CAPABILITY_NAMES) - {"SYS_ADMIN"}),
    (("ALL",), ("ALL",), set()),
])
def test_capabilities_as_containerd_computes_them(add, drop, expected):
    context = SimpleNamespace(capabilities_add=add, capabilities_drop=drop)
    assert set(plan.capabilities(context)) == expected


# --- hostile sources and layouts ----------------------------------------------------------------

def test_a_hard_link_to_a_member_the_archive_lacks_is_a_clear_error(tmp_path):
    """tarfile looks a missing link target up among the members and raises a bare KeyError."""
    dest = tmp_path / "rootfs"
    dest.mkdir()
    with pytest.raises(images.ImageError, match=r"^unpack link: a hard link to nowhere, which "
                                                r"the archive does not hold before it$"):
        extract(tar_of([("link", "hardlink", "nowhere")]), dest)


def test_a_truncated_archive_is_an_image_error(tmp_path):
    data = tar_of([("f", "file", "x" * 100000)], compress=True)
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(data[:len(data) // 2])
    dest = tmp_path / "rootfs"
    dest.mkdir()
    with open(broken, "rb") as f, pytest.raises(images.ImageError, match="^unpack f: Compressed"):
        with unpack._open_tar(f) as tar:
            unpack._extract(tar, str(dest))


@pytest.mark.parametrize("make, kind", [(os.mkfifo, "a FIFO"),
                                        (lambda p: os.symlink("/dev/zero", p),
                                         "a character device")])
def test_import_refuses_a_source_that_is_no_file_or_directory(tmp_path, make, kind):
    """A FIFO would block the import forever (tarfile.is_tarfile opened it), a device would
    never end: one line naming the argument, exit 2 (InputError)."""
    source = tmp_path / "source"
    make(str(source))
    config = SimpleNamespace(root=str(tmp_path / "root"))
    with pytest.raises(InputError, match=f"^FILE\\|DIR: '{source}' is {kind}, not a tar "
                                         "archive or a directory$"):
        images.import_image(config, "bb", str(source))
    assert not (tmp_path / "root").exists()


def fan_out_layout(path, width=50, depth=4):
    """An index whose entries all name one nested index, which names another... width**depth
    references to walk, in a few KB."""
    (path / "blobs" / "sha256").mkdir(parents=True)
    leaf = _blob(path, json.dumps({"schemaVersion": 2, "manifests": []}).encode(),
                 "application/vnd.oci.image.index.v1+json")
    for _ in range(depth):
        leaf = _blob(path, json.dumps({"schemaVersion": 2, "manifests": [leaf] * width}).encode(),
                     "application/vnd.oci.image.index.v1+json")
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [leaf] * width}))
    return path


def test_a_fanned_out_oci_layout_is_refused_quickly(tmp_path):
    layout = fan_out_layout(tmp_path / "oci")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with pytest.raises(images.ImageError, match=f"more than {oci.MAX_DESCRIPTORS} "
                                                "descriptors"):
        oci._import_oci(str(layout), str(rootfs))


def test_an_oci_layout_blob_that_is_a_symlink_or_too_big_is_refused(tmp_path):
    layout = oci_layout(tmp_path / "oci", ["amd64"])
    blobs = layout / "blobs" / "sha256"
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    index = json.loads((layout / "index.json").read_text())["manifests"][0]
    digest = index["digest"].split(":")[1]
    # A link to /dev/zero would be hashed forever; any symlink is refused.
    os.rename(blobs / digest, tmp_path / "moved")
    os.symlink("/dev/zero", blobs / digest)
    with pytest.raises(images.ImageError, match=f"blobs/sha256/{digest}: a symlink"):
        oci._import_oci(str(layout), str(rootfs))
    os.unlink(blobs / digest)
    os.rename(tmp_path / "moved", blobs / digest)
    # index.json larger than any real one: refused before it is parsed.
    (layout / "index.json").write_text(" " * (oci.MAX_JSON_BLOB + 1) + "{}")
    with pytest.raises(images.ImageError, match="index.json is larger than 4 MiB"):
        oci._import_oci(str(layout), str(rootfs))


@pytest.mark.parametrize("index, message", [
    ({"manifests": "x"}, "manifests are not a list"),
    ({"manifests": [5]}, "not a descriptor"),
    ({"manifests": [{"digest": "sha256:../../x"}]}, "unsupported digest"),
    ({"manifests": [{"digest": "sha256:ab", "size": "1"}]}, "size is not a number"),
    ([], "index.json is not a JSON object"),
    ("[" * 100000, "index.json"),
])
def test_odd_oci_json_is_an_image_error(tmp_path, index, message):
    layout = tmp_path / "oci"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "index.json").write_text(index if isinstance(index, str) else json.dumps(index))
    with pytest.raises(images.ImageError, match=message):
        oci._import_oci(str(layout), str(tmp_path))


def test_an_image_config_with_odd_types_is_an_image_error():
    with pytest.raises(images.ImageError, match="Entrypoint is not a list of strings"):
        oci._container_config({"config": {"Entrypoint": "sh"}})
    with pytest.raises(images.ImageError, match="User is not a string"):
        oci._container_config({"config": {"User": 0}})
    with pytest.raises(images.ImageError, match="config is not an object"):
        oci._container_config({"config": "x"})


def test_leftovers_of_a_dead_importer_are_removed_and_a_live_ones_kept(tmp_path):
    store = tmp_path / "images"
    store.mkdir()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    start = images.state.process_start_time(pid)
    os.waitpid(pid, 0)   # dead now, as after a SIGKILL: no chance to clean up
    dead = f".import-{pid}.{start}-0123abcd"
    live = f".import-{images._owner_tag()}-89abcdef"
    removing = f".remove-{pid}.{start}-bb:latest"
    for name in (dead, live, removing, "bb:latest"):
        (store / name / "rootfs").mkdir(parents=True)
    assert sorted(images.gc(str(tmp_path))) == sorted(
        [f"images: removed {dead}, left by a killed nspod",
         f"images: removed {removing}, left by a killed nspod"])
    assert sorted(os.listdir(store)) == sorted([live, "bb:latest"])


def deep_dirs(root, depth):
    os.makedirs(root)
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            new = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("deep")
    finally:
        os.close(fd)


def test_trees_deeper_than_pythons_recursion_are_sized_and_removed(tmp_path):
    """An image (or a container, in an emptyDir) can nest directories thousands deep:
    shutil.rmtree and os.walk recurse and failed (RecursionError, EMFILE)."""
    tree = tmp_path / "tree"
    try:
        deep_dirs(str(tree), 3000)
        assert unpack._tree_size(str(tree)) >= 4   # past PATH_MAX du counts it, dirs too
        images.state.remove_tree(str(tree))
        assert not tree.exists()
        images.state.remove_tree(str(tree))   # already gone: nothing to do
        deep_dirs(str(tree), 3000)
        images.state.remove_tree(str(tree), ignore_errors=True)   # cleanup after a failure
        assert not tree.exists()
    finally:
        # Whatever happened: pytest's own cleanup of old temporary directories recurses too.
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(tree)])


def test_an_image_tarball_nested_too_deep_is_refused_and_leaves_nothing(tmp_path):
    """Each member is resolved inside the image, at a cost of its depth squared: a small
    archive of a few thousand nested directories took minutes, then died in RecursionError."""
    def tarball(depth):
        names = ["/".join(["d"] * n) for n in range(1, depth + 1)]
        path = tmp_path / f"deep{depth}.tar.gz"
        path.write_bytes(tar_of([(n, "dir", None) for n in names]
                                + [(names[-1] + "/f", "file", "deep")], compress=True))
        return str(path)
    config = SimpleNamespace(root=str(tmp_path / "root"))
    stored = images.import_image(config, "ok", tarball(unpack.MAX_MEMBER_DEPTH))
    assert stored["size"] == 4
    with pytest.raises(images.ImageError, match="more than 256 directories deep"):
        images.import_image(config, "deep", tarball(3000))
    assert os.listdir(tmp_path / "root" / "images") == ["ok:latest"]

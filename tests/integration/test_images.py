"""The image store and image root filesystems: import (tarball, directory, OCI layout), ls,
rm, and containers on an image, proven from inside the container."""
import json
import os

from busybox import make_oci_layout, make_rootfs, make_tarball, tree
from helpers import container_status, pod_yaml, wait_for, wait_terminated


def image_container(name, image, command="sleep 1000", extra=""):
    text = f"    - name: {name}\n      image: {json.dumps(image)}\n"
    if command is not None:
        text += f'      command: ["sh", "-c", {json.dumps(command)}]\n'
    return text + extra


def store(nspod):
    return os.path.join(nspod.root, "images")


def test_tarball_import_and_a_container_that_sees_only_its_rootfs(nspod):
    rootfs = make_rootfs(os.path.join(nspod.workdir, "rootfs"))
    tarball = make_tarball(rootfs, os.path.join(nspod.workdir, "bb.tar.gz"))
    assert nspod("image", "import", "bb", tarball).stdout.strip() == "bb:latest"
    listed = nspod("image", "ls").stdout.splitlines()
    assert listed[0].split()[:4] == ["NAME", "DIGEST", "FORMAT", "SIZE"]
    assert listed[1].split()[:3] == ["bb:latest", "-", "tar"], "an import has no digest"
    [item] = json.loads(nspod("image", "ls", "-o", "json").stdout)
    assert item["name"] == "bb:latest" and item["size"] > 500_000
    # Stored whole, and nothing of the import's work is left.
    assert sorted(os.listdir(store(nspod))) == ["bb:latest"]
    assert sorted(os.listdir(os.path.join(store(nspod), "bb:latest"))) == ["config.json", "rootfs"]

    nspod.run_yaml(pod_yaml("p", image_container("a", "bb")))
    out = nspod("exec", "p", "--", "ls", "/").stdout.split()
    # The image's directories and the mount points the container needs: no host files.
    assert set(out) == {"bin", "dev", "etc", "mnt", "proc", "sys", "tmp"}
    # PID 1 is the container's command (busybox sh execs its last command).
    assert nspod("exec", "p", "--", "cat", "/proc/1/cmdline").stdout.split("\0")[:2] == \
        ["sleep", "1000"]
    assert nspod("exec", "p", "--", "cat", "/etc/passwd").stdout.startswith("root:x:0:0:")


def test_directory_image_path_and_directory_import(nspod):
    rootfs = make_rootfs(os.path.join(nspod.workdir, "rootfs"))
    with open(os.path.join(rootfs, "etc", "marker"), "w") as f:
        f.write("from the directory\n")
    before = tree(rootfs)
    nspod.run_yaml(pod_yaml("byp", image_container(
        "a", rootfs, "cat /etc/marker; echo changed > /etc/marker; cat /etc/marker")))
    wait_terminated(nspod, "byp", "a")
    assert nspod("logs", "byp").stdout == "from the directory\nchanged\n"
    assert tree(rootfs) == before, "a container must never write into its image"
    assert nspod("image", "import", "copy:v1", rootfs).stdout.strip() == "copy:v1"
    copied = os.path.join(store(nspod), "copy:v1", "rootfs")
    assert tree(copied) == before
    assert os.readlink(os.path.join(copied, "bin", "sh")) == "busybox"


def test_oci_layout_layers_whiteouts_and_config(nspod):
    layout = make_oci_layout(os.path.join(nspod.workdir, "oci"),
                             cmd=('echo "$GREETING in $(pwd)"; ls /etc /opaque /data',))
    assert nspod("image", "import", "ocibb:1.0", layout).stdout.strip() == "ocibb:1.0"
    [item] = json.loads(nspod("image", "ls", "-o", "json").stdout)
    assert item["format"] == "oci" and item["entrypoint"] == ["/bin/sh", "-c"]
    # No command, no args: Entrypoint + Cmd, the image's Env and WorkingDir.
    nspod.run_yaml(pod_yaml("oci", image_container("a", "ocibb:1.0", command=None)))
    wait_terminated(nspod, "oci", "a")
    lines = nspod("logs", "oci").stdout.split()
    assert " ".join(lines[:6]) == "hello from the image in /data"
    listing = lines[6:]
    assert "motd" not in listing, "the second layer's whiteout removes /etc/motd"
    assert "passwd" in listing
    assert "c" in listing and "a" not in listing and "b" not in listing, \
        "an opaque directory hides what lower layers put there"
    assert "old" in listing and "new" in listing


def test_command_overrides_entrypoint_args_override_cmd(nspod):
    layout = make_oci_layout(os.path.join(nspod.workdir, "oci"))
    nspod("image", "import", "ocibb", layout)
    args_only = image_container("args", "ocibb", command=None,
                                extra='      args: ["echo args $GREETING"]\n')
    command = image_container("cmd", "ocibb", "echo command; pwd",
                              extra="      workingDir: /bin\n"
                                    "      env: [{name: GREETING, value: from-spec}]\n")
    nspod.run_yaml(pod_yaml("over", args_only + command))
    wait_terminated(nspod, "over", "args")
    wait_terminated(nspod, "over", "cmd")
    assert nspod("logs", "over", "args").stdout == "args hello from the image\n"
    assert nspod("logs", "over", "cmd").stdout == "command\n/bin\n"
    # The image's Env is the base, the spec's variables go over it.
    with open(os.path.join(nspod.root, "pods", "over", "pod.json")) as f:
        cmd_env = dict(json.load(f)["plan"]["containers"][1]["env"])
    assert cmd_env["GREETING"] == "from-spec" and cmd_env["PATH"] == "/bin"


def test_two_containers_share_an_image_without_seeing_each_others_writes(nspod):
    rootfs = make_rootfs(os.path.join(nspod.workdir, "rootfs"))
    nspod("image", "import", "bb", rootfs)
    stored = os.path.join(store(nspod), "bb:latest", "rootfs")
    before = tree(stored)
    writer = image_container("writer", "bb", "echo mine > /etc/written; rm /bin/ls; sleep 1000")
    reader = image_container("reader", "bb", "sleep 1000")
    nspod.run_yaml(pod_yaml("share", writer + reader))
    wait_for(lambda: nspod("exec", "share", "-c", "writer", "--", "cat", "/etc/written",
                           check=False).stdout == "mine\n", what="the writer's file")
    seen = nspod("exec", "share", "-c", "reader", "--", "sh", "-c",
                 "test -e /etc/written; echo $?; test -e /bin/ls; echo $?").stdout.split()
    assert seen == ["1", "0"]
    assert tree(stored) == before


def test_image_rm_is_refused_while_a_pod_uses_it(nspod):
    rootfs = make_rootfs(os.path.join(nspod.workdir, "rootfs"))
    nspod("image", "import", "bb:1", rootfs)
    nspod.run_yaml(pod_yaml("user", image_container("a", "bb:1")))
    refused = nspod("image", "rm", "bb:1", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == \
        "error: image bb:1 is used by pod user (remove it first: nspod rm -f POD)"
    assert os.path.isdir(os.path.join(store(nspod), "bb:1"))
    nspod("rm", "-f", "--timeout", "0", "user")
    assert nspod("image", "rm", "bb:1").stdout.strip() == "bb:1"
    assert os.listdir(store(nspod)) == []
    gone = nspod("image", "rm", "bb:1", check=False)
    assert (gone.returncode, gone.stderr.strip()) == (1, "error: image bb:1 not found")


def test_bad_image_inputs_are_one_line_each(nspod, tmp_path):
    rootfs = make_rootfs(os.path.join(nspod.workdir, "rootfs"))
    not_a_tar = tmp_path / "notes.txt"
    not_a_tar.write_text("hello\n")
    for args, code, needle in (
            (["import", "Bad_Name", rootfs], 2, "error: NAME: 'Bad_Name': not an image name"),
            (["import", "/abs/path", rootfs], 2, "error: NAME: '/abs/path': must be an image name, not a path"),
            (["import", "bb", str(tmp_path / "missing.tar")], 2,
             "error: FILE|DIR: '" + str(tmp_path / "missing.tar") + "' does not exist"),
            (["import", "bb", str(not_a_tar)], 2, "is neither a tar archive"),
            (["rm", "bb:"], 2, "error: NAME: 'bb:'"),
            (["rm", "bb"], 1, "error: image bb:latest not found")):
        result = nspod("image", *args, check=False)
        assert result.returncode == code, (args, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], \
            (args, lines)
    nspod("image", "import", "bb", rootfs)
    again = nspod("image", "import", "bb:latest", rootfs, check=False)
    assert again.returncode == 1 and "image bb:latest already exists" in again.stderr
    # A pod naming an image that is not stored, and may not be pulled, is refused before
    # anything is made (imagePullPolicy Never, as the kubelet's ErrImageNeverPull).
    result = nspod("run", nspod.manifest(pod_yaml("x", image_container(
        "a", "nosuch:2", extra="      imagePullPolicy: Never\n"))), check=False)
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: spec.containers[0].image: 'nosuch:2' is not in nspod's image store "
        "(pull it: nspod image pull nosuch:2, or import it: nspod image import nosuch:2 "
        "FILE|DIR)")
    assert nspod.pods() == []
    # An image with nothing to run and no command: refused the same way.
    result = nspod("run", nspod.manifest(pod_yaml("y", image_container("a", "bb", None))),
                   check=False)
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: spec.containers[0].command: required: image 'bb' has no Entrypoint or Cmd "
        "to run")
    assert nspod.pods() == []


def test_a_broken_oci_layout_leaves_nothing_in_the_store(nspod):
    layout = make_oci_layout(os.path.join(nspod.workdir, "oci"))
    blobs = os.path.join(layout, "blobs", "sha256")
    biggest = max(os.listdir(blobs), key=lambda b: os.path.getsize(os.path.join(blobs, b)))
    with open(os.path.join(blobs, biggest), "r+b") as f:
        f.seek(100)
        f.write(b"corrupt")
    result = nspod("image", "import", "broken", layout, check=False)
    assert result.returncode == 1
    assert "does not match its digest" in result.stderr and len(result.stderr.splitlines()) == 1
    assert os.listdir(store(nspod)) == []


def test_a_missing_image_directory_is_a_start_error(nspod):
    nspod.run_yaml(pod_yaml("gone", image_container("a", "/nonexistent/rootfs")))
    state = wait_terminated(nspod, "gone", "a")
    assert state["reason"] == "StartError"
    assert "image /nonexistent/rootfs: the root filesystem is not a directory" in state["message"]
    assert container_status(nspod.inspect("gone"), "a")["state"]["terminated"]["exitCode"] == 128


def test_import_from_a_fifo_is_refused_at_once(nspod, tmp_path):
    """tarfile.is_tarfile opened the FIFO and waited for a writer forever."""
    fifo = tmp_path / "image.tar"
    os.mkfifo(fifo)
    result = nspod("image", "import", "bb", str(fifo), check=False, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"error: FILE|DIR: '{fifo}' is a FIFO, not a tar archive or a " \
                            "directory\n"
    assert not os.path.exists(store(nspod)) or os.listdir(store(nspod)) == []


def test_a_killed_import_leaves_nothing_after_gc(nspod, tmp_path):
    """SIGKILL gives the importer no chance to clean up: its .import-* directory (named with
    its pid and start time) is recognised as a dead one's and removed by `nspod gc`."""
    import signal
    import subprocess
    import sys
    import tarfile
    import time
    big = tmp_path / "big.tar.gz"
    with tarfile.open(big, "w:gz") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 256 << 20          # compresses to ~250 KB, takes a while to write out
        with open("/dev/zero", "rb") as zero:
            tar.addfile(info, zero)
    env = dict(os.environ, **dict([nspod.marker.split("=")]))
    importer = subprocess.Popen([sys.executable, "-P", "-m", "nsPod", *nspod.global_args(),
                                 "image", "import", "big", str(big)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    work = []
    while not work and importer.poll() is None and time.monotonic() < deadline:
        if os.path.isdir(store(nspod)):
            work = [e for e in os.listdir(store(nspod)) if e.startswith(".import-")]
    importer.send_signal(signal.SIGKILL)
    importer.communicate(timeout=60)
    if not work:
        import pytest
        pytest.skip("the import finished before it could be killed: nothing was tested")
    assert any(e.startswith(".import-") for e in os.listdir(store(nspod)))
    report = nspod("gc").stdout
    assert f"images: removed {work[0]}, left by a killed nspod" in report
    assert os.listdir(store(nspod)) == []

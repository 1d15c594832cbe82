"""The images crictl and critest need, built from Debian's busybox-static (as the other test
images are: tests/integration/test_registry.py's layouts) and pushed with skopeo to a local
docker-registry. critest's names (cri-tools v1.34 pkg/validate/consts.go, framework/util.go)
are kept under the registry prefix: critest --registry-prefix=127.0.0.1:PORT.

    python tests/cri/cri_images.py -- critest ARGS...   registry up, images pushed, then
                                                         ARGS run with REGISTRY in them
                                                         replaced by 127.0.0.1:PORT
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from test_registry import Registry, write_layout  # noqa: E402

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "www-data:x:33:33:www-data:/var/www:/bin/sh\n"
          "default-user:x:1000:1000::/home/default-user:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/home:/bin/false\n")
GROUP = ("root:x:0:\nwww-data:x:33:\ndefault-user:x:1000:\n"
         "group-defined-in-image:x:50000:default-user\nnogroup:x:65534:\n")
TOOLS = "k8s-staging-cri-tools"


def busybox_entries():
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    entries = [("bin", "dir", None, 0o755), ("bin/busybox", "file", busybox, 0o755),
               ("etc", "dir", None, 0o755), ("etc/passwd", "file", PASSWD.encode(), 0o644),
               ("etc/group", "file", GROUP.encode(), 0o644), ("tmp", "dir", None, 0o1777),
               ("var", "dir", None, 0o755), ("var/www", "dir", None, 0o755),
               ("home", "dir", None, 0o755), ("root", "dir", None, 0o700)]
    return entries + [(f"bin/{a}", "symlink", "busybox", 0o777) for a in applets
                      if a != "busybox"]


def layout(base, name, extra=(), user=""):
    """An OCI layout of busybox (+ a layer of `extra` files), with USER `user`."""
    path = os.path.join(base, name)
    layers = [busybox_entries()] + ([list(extra)] if extra else [])
    write_layout(path, layers, cmd=("top",))
    if user:
        _set_user(path, user)
    return path


def _set_user(path, user):
    """Rewrite the image's config with USER, and the manifest and index that name it."""
    import hashlib
    import json
    blobs = os.path.join(path, "blobs", "sha256")
    with open(os.path.join(path, "index.json")) as f:
        index = json.load(f)
    top = index["manifests"][0]
    with open(os.path.join(blobs, top["digest"].split(":")[1])) as f:
        manifest = json.load(f)
    with open(os.path.join(blobs, manifest["config"]["digest"].split(":")[1])) as f:
        config = json.load(f)
    config["config"]["User"] = user

    def put(obj):
        data = json.dumps(obj).encode()
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return f"sha256:{digest}", len(data)

    manifest["config"]["digest"], manifest["config"]["size"] = put(config)
    top["digest"], top["size"] = put(manifest)
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump(index, f)


def push_all(registry, base):
    """Every image critest and the crictl tests pull; returns {what: reference}."""
    plain = layout(base, "busybox")
    # critest's PrepareImageName keeps a prefixed image's path and drops its tag: every
    # image is pulled as :latest, so each is pushed under its tags and :latest.
    refs = {"busybox": registry.push(plain, "e2e-test-images/busybox:1.29-2")}
    registry.push(plain, "e2e-test-images/busybox:latest")
    for tag in ("test-image-latest:latest", "test-image-tag:test", "test-image-tag:all",
                "test-image-tag:latest", "test-image-tags:1", "test-image-tags:2",
                "test-image-tags:3", "test-image-tags:latest"):
        refs[tag] = registry.push(plain, f"{TOOLS}/{tag}")
    for n in (1, 2, 3):
        different = layout(base, f"test-image-{n}", [("image", "file", str(n).encode(), 0o644)])
        refs[f"test-image-{n}"] = registry.push(different, f"{TOOLS}/test-image-{n}:latest")
    for name, user in (("test-image-user-uid", "1002"), ("test-image-user-username", "www-data"),
                       ("test-image-user-uid-group", "1003:1003"),
                       ("test-image-user-username-group", "www-data:www-data"),
                       ("test-image-predefined-group", "1000")):
        refs[name] = registry.push(layout(base, name, user=user), f"{TOOLS}/{name}:latest")
    return refs


def main(argv):
    if "--" not in argv:
        sys.exit("usage: cri_images.py -- COMMAND ARGS (REGISTRY in ARGS: the registry)")
    command = argv[argv.index("--") + 1:]
    base = tempfile.mkdtemp(prefix="nspod-cri-images-")
    registry = Registry(base, "registry")
    try:
        push_all(registry, base)
        with open(os.path.join(base, "registries.conf"), "w") as f:
            f.write(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
        with open(os.path.join(base, "test-images.yaml"), "w") as f:
            f.write(f"defaultTestContainerImage: {registry.host}/e2e-test-images/busybox:latest\n"
                    f"webServerTestImage: {registry.host}/e2e-test-images/busybox:latest\n")
        env = dict(os.environ, CRI_TEST_IMAGES_FILE=os.path.join(base, "test-images.yaml"), NSPOD_REGISTRIES_CONF=os.path.join(base, "registries.conf"),
                   CRI_TEST_REGISTRY=registry.host)
        args = [a.replace("REGISTRY", registry.host) for a in command]
        return subprocess.run(args, env=env).returncode
    finally:
        registry.stop()
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

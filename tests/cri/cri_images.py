"""The images crictl and critest need, built from Debian's busybox-static (as the other test
images are: tests/integration/test_registry.py's layouts) and pushed with skopeo to a local
docker-registry. critest's names (cri-tools v1.34 pkg/validate/consts.go, framework/util.go)
keep their upstream names: registries.conf rewrites registry.k8s.io and gcr.io to the local
registry (see registries_conf).

    python tests/cri/cri_images.py -- COMMAND ARGS...   registry up, images pushed, then
                                                         COMMAND run (tests/cri/run_critest.py
                                                         does the same for critest)
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from test_registry import ARCH, Registry, write_layout  # noqa: E402

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "www-data:x:33:33:www-data:/var/www:/bin/sh\n"
          "default-user:x:1000:1000::/home/default-user:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/home:/bin/false\n")
GROUP = ("root:x:0:\nwww-data:x:33:\ndefault-user:x:1000:\n"
         "group-defined-in-image:x:50000:default-user\nnogroup:x:65534:\n")
TOOLS = "k8s-staging-cri-tools"
SHIMS = {"pgrep": '#!/bin/sh\nexec pidof "$@"\n',
         # `ipcs -m`: the IPC namespace's shared memory segments, their ids included.
         "ipcs": "#!/bin/sh\nexec cat /proc/sysvipc/shm\n"}


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
    # ls a copy, not a link: critest masks /bin/ls, and a mask follows a link to busybox.
    entries += [("bin/ls", "file", busybox, 0o755)]
    entries += [(f"bin/{a}", "symlink", "busybox", 0o777) for a in applets
                if a not in ("busybox", "ls")]
    # Debian's busybox-static has no pgrep nor ipcs, which critest's specs run: shims.
    return entries + [(f"bin/{name}", "file", text.encode(), 0o755)
                      for name, text in SHIMS.items() if name not in applets]


# critest's namespace specs look for a long-running process called nginx and its pid file.
# And it serves HTTP on port 80 (busybox httpd), which the port mapping specs fetch.
NGINX = ("#!/bin/sh\necho $$ > /var/run/nginx.pid\ntrap 'exit 0' TERM\n"
         "httpd -f -p 80 -h /www &\nwhile :; do sleep 1 & wait $!; done\n")


def layout(base, name, extra=(), **config):
    """An OCI layout of busybox and a layer naming the image (+ `extra` files): each image
    its own id, as upstream's are. `config`: image config fields (User, Entrypoint, Cmd)."""
    path = os.path.join(base, name)
    layers = [busybox_entries(), [("image-name", "file", name.encode(), 0o644), *extra]]
    write_layout(path, layers, cmd=("top",))
    if config:
        _set_config(path, config)
    return path


def _set_config(path, fields):
    """Rewrite the image's config with `fields`, and the manifest and index that name it."""
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
    config["config"].update(fields)

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
    refs = {"busybox": registry.push(layout(base, "busybox"), "e2e-test-images/busybox:1.29-2")}
    for name, tags in (("test-image-latest", ["latest"]), ("test-image-tag", ["test", "all"]),
                       ("test-image-tags", ["1", "2", "3"]), ("test-image-1", ["latest"]),
                       ("test-image-2", ["latest"]), ("test-image-3", ["latest"])):
        path = layout(base, name)
        for tag in tags:
            refs[f"{name}:{tag}"] = registry.push(path, f"{TOOLS}/{name}:{tag}")
    for name, user in (("test-image-user-uid", "1002"), ("test-image-user-username", "www-data"),
                       ("test-image-user-uid-group", "1003:1003"),
                       ("test-image-user-username-group", "www-data:www-data"),
                       ("test-image-predefined-group", "1000")):
        refs[name] = registry.push(layout(base, name, User=user), f"{TOOLS}/{name}:latest")
    # Its pid 1 is `nginx` (comm) with "master process" in its command line, as critest's
    # pid namespace specs look for.
    nginx = layout(base, "nginx", [("bin", "dir", None, 0o755),
                                   ("bin/nginx", "file", NGINX.encode(), 0o755),
                                   ("var", "dir", None, 0o755), ("var/run", "dir", None, 0o755),
                                   ("www", "dir", None, 0o755),
                                   ("www/index.html", "file", b"Welcome to nginx!\n", 0o644)],
                   Entrypoint=["/bin/nginx"], Cmd=["-g", "master process"])
    refs["nginx"] = registry.push(nginx, "e2e-test-images/nginx:1.14-2")
    # The multi-container specs' httpd: serves port 80 and says so in its log.
    httpd = layout(base, "httpd", [("www", "dir", None, 0o755),
                                   ("www/index.html", "file", b"It works!\n", 0o644)],
                   Entrypoint=["/bin/sh", "-c"],
                   Cmd=["echo httpd serving on port 80; exec httpd -f -p 80 -h /www"])
    refs["httpd"] = registry.push(httpd, "e2e-test-images/httpd:2.4.39-4")
    # The host-network web server of the port-forward spec: port 12003, on loopback only.
    hostnet = layout(base, "hostnet", [("www", "dir", None, 0o755),
                                       ("www/index.html", "file", b"hostnet\n", 0o644)],
                     Entrypoint=["/bin/sh", "-c"], Cmd=["exec httpd -f -p 127.0.0.1:12003 -h /www"])
    refs["hostnet"] = registry.push(hostnet, f"{TOOLS}/hostnet-nginx-{ARCH}:latest")
    nnp = nonewprivs_binary(base)
    if nnp is not None:
        path = layout(base, "nonewprivs", [("usr", "dir", None, 0o755),
                                           ("usr/local", "dir", None, 0o755),
                                           ("usr/local/bin", "dir", None, 0o755),
                                           ("usr/local/bin/nnp", "file", nnp, 0o4755)],
                      Entrypoint=["/usr/local/bin/nnp"], Cmd=[])
        refs["nonewprivs"] = registry.push(path, "e2e-test-images/nonewprivs:1.3")
    return refs


NNP_C = ('#include <stdio.h>\n#include <unistd.h>\nint main(void) '
         '{ printf("Effective uid: %d\\n", (int)geteuid()); return 0; }\n')


def nonewprivs_binary(base):
    """critest's nonewprivs image runs a setuid-root program printing its effective uid:
    built static with musl-gcc (examples/install.sh installs musl-tools), or None."""
    import shutil
    cc = shutil.which("musl-gcc")
    if cc is None:
        print("cri_images: no musl-gcc: no nonewprivs image (critest's two no_new_privs "
              "specs will fail)", file=sys.stderr)
        return None
    src, out = os.path.join(base, "nnp.c"), os.path.join(base, "nnp")
    with open(src, "w") as f:
        f.write(NNP_C)
    subprocess.run([cc, "-static", "-Os", "-o", out, src], check=True, capture_output=True)
    with open(out, "rb") as f:
        return f.read()


def registries_conf(registry):
    """critest's own image names (registry.k8s.io/..., gcr.io/...) served by the local
    registry: containers-registries.conf rewrites their prefixes to it, so names, tags and
    what critest compares stay as upstream has them."""
    return "".join(f'[[registry]]\nprefix = "{p}"\nlocation = "{registry.host}"\n'
                   f'insecure = true\n\n' for p in ("registry.k8s.io", "gcr.io")) + \
        f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'


def main(argv):
    """A registry with the images, up while COMMAND runs (with NSPOD_REGISTRIES_CONF naming
    a registries.conf that sends registry.k8s.io and gcr.io to it, and CRI_TEST_REGISTRY)."""
    if "--" not in argv:
        sys.exit("usage: cri_images.py -- COMMAND ARGS")
    command = argv[argv.index("--") + 1:]
    base = tempfile.mkdtemp(prefix="nspod-cri-images-")
    registry = Registry(base, "registry")
    try:
        push_all(registry, base)
        conf = os.path.join(base, "registries.conf")
        with open(conf, "w") as f:
            f.write(registries_conf(registry))
        env = dict(os.environ, NSPOD_REGISTRIES_CONF=conf, CRI_TEST_REGISTRY=registry.host)
        return subprocess.run(command, env=env).returncode
    finally:
        registry.stop()
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

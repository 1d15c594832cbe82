"""Pulls from a real registry: Debian's docker-registry (the distribution registry) on
127.0.0.1 with its own config and storage, images built here from busybox-static into OCI
layouts and pushed with Debian's skopeo (OCI, Docker schema 2, and an index of two
platforms). tests/run.sh installs both."""
import base64
import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

from busybox import APPLETS, ARCH, BUSYBOX, GROUP, PASSWD, _tar_bytes, require_busybox
from helpers import pod_yaml, wait_phase, wait_terminated

REGISTRY = "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
HTPASSWD = shutil.which("htpasswd") or "/usr/bin/htpasswd"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """One docker-registry process: its own config, storage and port; stopped by pid."""

    def __init__(self, base, name, htpasswd=None, token=None):
        self.dir = os.path.join(base, name)
        self.storage = os.path.join(self.dir, "storage")
        os.makedirs(self.storage)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.creds = None
        config = [
            "version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true",
            "storage:", "  filesystem:", f"    rootdirectory: {self.storage}",
            "  delete:", "    enabled: true",
            "http:", f"  addr: 127.0.0.1:{self.port}"]
        if htpasswd:
            user, password = htpasswd
            path = os.path.join(self.dir, "htpasswd")
            subprocess.run([HTPASSWD, "-Bbc", path, user, password], check=True,
                           capture_output=True)
            config += ["auth:", "  htpasswd:", "    realm: nspod-test", f"    path: {path}"]
            self.creds = f"{user}:{password}"
        if token:
            config += ["auth:", "  token:", f"    realm: {token.realm}",
                       f"    service: {token.service}", f"    issuer: {token.issuer}",
                       f"    rootcertbundle: {token.cert}"]
            self.creds = token.creds
        self.config = os.path.join(self.dir, "config.yml")
        with open(self.config, "w") as f:
            f.write("\n".join(config) + "\n")
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen([REGISTRY, "serve", self.config], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2)
                break
            except urllib.error.HTTPError:
                break           # 401 with auth: it answers
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"docker-registry did not start: "
                                       f"{open(os.path.join(self.dir, 'log')).read()}")
                time.sleep(0.05)

    def push(self, layout, name, *extra):
        args = [SKOPEO, "copy", "-q", "--dest-tls-verify=false", *extra]
        if self.creds:
            args.append(f"--dest-creds={self.creds}")
        subprocess.run(args + [f"oci:{layout}", f"docker://{self.host}/{name}"], check=True,
                       capture_output=True, timeout=300)
        return f"{self.host}/{name}"

    def digest(self, name):
        args = [SKOPEO, "inspect", "--raw", "--tls-verify=false"]
        if self.creds:
            args.append(f"--creds={self.creds}")
        raw = subprocess.run(args + [f"docker://{self.host}/{name}"], check=True,
                             capture_output=True, timeout=60).stdout
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    def blob_file(self, digest):
        hex_digest = digest.split(":")[1]
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256",
                            hex_digest[:2], hex_digest, "data")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


class TokenServer:
    """The distribution token protocol's server side, for a registry with `auth: token`:
    GET /token?service=..&scope=repository:NAME:ACTIONS answers a JWT (RS256, its
    certificate in x5c) granting, with the right Basic credentials, what is asked; without
    them, pull on public/* only."""
    service, issuer = "nspod-test-registry", "nspod-test-issuer"

    def __init__(self, base):
        import http.server
        self.dir = os.path.join(base, "token")
        os.makedirs(self.dir)
        self.key = os.path.join(self.dir, "key.pem")
        self.cert = os.path.join(self.dir, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=nspod-token"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.creds = "tokenuser:t0ken-pw"
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                import urllib.parse
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                given = self.headers.get("Authorization", "")
                authed = given == "Basic " + base64.b64encode(server.creds.encode()).decode()
                server.requests.append((query.get("scope"), bool(given), authed))
                if given and not authed:
                    self.send_response(401)
                    self.end_headers()
                    return
                access = []
                for scope in query.get("scope", []):
                    kind, name, actions = scope.split(":")
                    allowed = actions.split(",") if authed else (
                        ["pull"] if name.startswith("public/") and "pull" in actions else [])
                    access.append({"type": kind, "name": name, "actions": allowed})
                body = json.dumps({"token": server.jwt(access)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def jwt(self, access):
        def b64(data):
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": "test", "aud": self.service, "exp": now + 600,
                  "nbf": now - 60, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                                   input=signing.encode(), check=True,
                                   capture_output=True).stdout
        return f"{signing}.{b64(signature)}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- images built here ------------------------------------------------------------------------

def _base_entries():
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    entries = [("bin", "dir", None, 0o755), ("bin/busybox", "file", busybox, 0o755),
               ("etc", "dir", None, 0o755), ("etc/passwd", "file", PASSWD.encode(), 0o644),
               ("etc/group", "file", GROUP.encode(), 0o644), ("data", "dir", None, 0o755),
               ("data/gone", "file", b"lower\n", 0o644)]
    return entries + [(f"bin/{a}", "symlink", "busybox", 0o777) for a in APPLETS]


def write_layout(path, layer_entries, platforms=None, cmd=("echo pulled",)):
    """An OCI layout: one image of these layers (gzip), or an index with one image per
    platform (a {arch: [layer entries]}) when `platforms` is given."""
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs)

    def blob(data, media_type, **extra):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data),
                **extra}

    def image(arch, layers_entries):
        layers, diff_ids = [], []
        for entries in layers_entries:
            raw = entries if isinstance(entries, bytes) else _tar_bytes(entries)
            diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
            layers.append(blob(gzip.compress(raw, mtime=0, compresslevel=1), OCI_LAYER))
        config = {"architecture": arch, "os": "linux",
                  "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": list(cmd),
                             "Env": ["PATH=/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        config_d = blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_d, "layers": layers}
        return blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json",
                    platform={"architecture": arch, "os": "linux"})

    if platforms:
        entries = [image(arch, layers) for arch, layers in platforms.items()]
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": entries}
        top = [blob(json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json")]
    else:
        top = [image(ARCH, layer_entries)]
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": top}, f)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return path


def _big_layer(size):
    """An incompressible layer: one file of pseudo-random bytes (fast, reproducible)."""
    chunks, seed = [], b"nspod"
    block = hashlib.sha512(seed).digest()
    while len(chunks) * len(block) < size:
        block = hashlib.sha512(block).digest()
        chunks.append(block)
    return [("big", "file", b"".join(chunks)[:size], 0o644)]


class World:
    def __init__(self, base):
        self.base = base
        self.registries = []

    def start(self, *args, **kwargs):
        registry = Registry(self.base, *args, **kwargs)
        self.registries.append(registry)
        return registry

    def build(self):
        base = self.base
        self.plain = self.start("plain")
        self.auth = self.start("auth", htpasswd=("nspod", "s3cret-pw"))
        base_layer = _base_entries()
        extra = [("etc", "dir", None, 0o755), ("etc/second", "file", b"second\n", 0o644)]
        third = [("data", "dir", None, 0o755), ("data/.wh.gone", "file", b"", 0o644),
                 ("data/new", "file", b"third layer\n", 0o644)]
        lay = lambda name, *a, **k: write_layout(os.path.join(base, name), *a, **k)  # noqa: E731
        self.busybox = self.plain.push(lay("busybox", [base_layer]), "busybox:1")
        self.shared = self.plain.push(lay("shared", [base_layer, extra]), "shared:1")
        self.three = self.plain.push(lay("three", [base_layer, extra, third],
                                         cmd=("ls /data /etc",)), "three:1")
        self.schema2 = self.plain.push(os.path.join(base, "shared"), "schema2:1",
                                       "--format", "v2s2")
        other = "arm64" if ARCH != "arm64" else "amd64"
        index = lay("multi", None, platforms={
            ARCH: [base_layer, [("platform", "file", ARCH.encode(), 0o644)]],
            other: [[("platform", "file", other.encode(), 0o644)]]})
        self.index = self.plain.push(index, "multi:1", "--all")
        corrupt = lay("corrupt", [base_layer, [("only-here", "file", b"x" * 4096, 0o644)]])
        self.corrupt_layout = corrupt
        self.corrupt = self.plain.push(corrupt, "corrupt:1")
        self.private = self.auth.push(os.path.join(base, "busybox"), "private:1")
        self.token_server = TokenServer(base)
        self.tokens = self.start("tokens", token=self.token_server)
        self.public_t = self.tokens.push(os.path.join(base, "busybox"), "public/busybox:1")
        self.private_t = self.tokens.push(os.path.join(base, "busybox"), "team/busybox:1")
        self.big_layout = lay("big", [base_layer, _big_layer(48 << 20)])

    def stop(self):
        for registry in self.registries:
            registry.stop()
        if getattr(self, "token_server", None):
            self.token_server.stop()


@pytest.fixture(scope="session")
def world():
    missing = [p for p in (REGISTRY, SKOPEO, HTPASSWD, shutil.which("openssl") or "openssl")
               if not os.path.exists(p)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: install docker-registry, skopeo, "
                    "apache2-utils and openssl (sh tests/run.sh does)")
    require_busybox()
    base = tempfile.mkdtemp(prefix="nspod-registry-")
    w = World(base)
    try:
        w.build()
        yield w
    finally:
        w.stop()
        shutil.rmtree(base, ignore_errors=True)


def conf(nspod, text, name="registries.conf"):
    path = os.path.join(nspod.workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return {"NSPOD_REGISTRIES_CONF": path}


def insecure(nspod, *hosts):
    return conf(nspod, "".join(f'[[registry]]\nlocation = "{h}"\ninsecure = true\n'
                               for h in hosts))


def store(nspod):
    return os.path.join(nspod.root, "images")


def images(nspod):
    return {i["name"]: i for i in json.loads(nspod("image", "ls", "-o", "json").stdout)}


def leftovers(nspod):
    s = store(nspod)
    found = [e for e in os.listdir(s) if e.startswith(".pull-")] if os.path.isdir(s) else []
    return found


def layer_dirs(nspod):
    path = os.path.join(store(nspod), ".layers")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def one_error(result, code, *words):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "Traceback" not in result.stderr


# --- tests --------------------------------------------------------------------------------------

def test_pull_by_tag_then_again_transfers_no_blob(nspod, world):
    env = insecure(nspod, world.plain.host)
    result = nspod("image", "pull", world.three, env=env)
    assert result.stdout.strip() == world.three and result.stderr == "", \
        "non-tty: the name only, no progress"
    image = images(nspod)[world.three]
    assert image["digest"] == world.plain.digest("three:1")
    assert image["reference"] == world.three and len(image["layers"]) == 3
    rootfs = os.path.join(store(nspod), ".roots", image["root"], "rootfs")
    assert sorted(os.listdir(os.path.join(rootfs, "data"))) == ["new"], \
        "the third layer's whiteout removes data/gone"
    assert open(os.path.join(rootfs, "etc", "second")).read() == "second\n"
    # The registry's copy of every layer is broken now: a second pull must not fetch any.
    saved = {}
    for digest in image["layers"]:
        path = world.plain.blob_file(digest)
        saved[path] = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(b"not the layer")
    try:
        again = nspod("image", "pull", world.three, env=env)
        assert again.stdout.strip() == world.three
        assert images(nspod)[world.three]["digest"] == image["digest"]
    finally:
        for path, data in saved.items():
            with open(path, "wb") as f:
                f.write(data)


def test_pull_by_digest(nspod, world):
    env = insecure(nspod, world.plain.host)
    digest = world.plain.digest("busybox:1")
    ref = f"{world.plain.host}/busybox@{digest}"
    assert nspod("image", "pull", "-q", ref, env=env).stdout.strip() == ref
    assert images(nspod)[ref]["digest"] == digest
    # A root removed by hand: the name no longer counts as present, the pull remakes it.
    root = os.path.join(store(nspod), ".roots", images(nspod)[ref]["root"])
    shutil.rmtree(root)
    nspod("image", "pull", "-q", ref, env=env)
    assert os.path.isdir(os.path.join(root, "rootfs"))
    wrong = f"{world.plain.host}/busybox@sha256:{'0' * 64}"
    one_error(nspod("image", "pull", wrong, env=env, check=False), 1, "not found")


def test_plain_http_only_when_registries_conf_says_insecure(nspod, world):
    result = nspod("image", "pull", world.busybox, env=conf(nspod, ""), check=False)
    one_error(result, 1, world.plain.host, "TLS", "insecure")
    assert not os.path.exists(os.path.join(store(nspod), "busybox")) and not layer_dirs(nspod)
    nspod("image", "pull", world.busybox, env=insecure(nspod, world.plain.host))


def test_mirror_and_location_from_registries_conf(nspod, world):
    """The [[registry]] of a host that does not exist has the test registry as its mirror;
    another rewrites a prefix to the test registry's location (containers-registries.conf)."""
    env = conf(nspod, f"""
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "nowhere.invalid"
location = "nowhere.invalid"
[[registry.mirror]]
location = "{world.plain.host}"
insecure = true

[[registry]]
prefix = "*.rewrite.invalid"
location = "{world.plain.host}"
insecure = true
""")
    assert nspod("image", "pull", "nowhere.invalid/busybox:1", env=env).stdout.strip() == \
        "nowhere.invalid/busybox:1"
    assert nspod("image", "pull", "a.rewrite.invalid/shared:1", env=env).stdout.strip() == \
        "a.rewrite.invalid/shared:1"
    # A mirror that does not answer: the registry itself is asked next.
    dead = free_port()
    fallback = conf(nspod, f"""
[[registry]]
location = "{world.plain.host}"
insecure = true
[[registry.mirror]]
location = "127.0.0.1:{dead}"
insecure = true
""", "fallback.conf")
    assert nspod("image", "pull", world.busybox, env=fallback).stdout.strip() == world.busybox
    blocked = conf(nspod, f'[[registry]]\nlocation = "{world.plain.host}"\nblocked = true\n',
                   "blocked.conf")
    one_error(nspod("image", "pull", world.shared, env=blocked, check=False), 2, "blocked")


def test_schema2_oci_and_index(nspod, world):
    env = insecure(nspod, world.plain.host)
    nspod("image", "pull", world.schema2, env=env)
    nspod("image", "pull", world.shared, env=env)
    found = images(nspod)
    assert found[world.schema2]["digest"] != found[world.shared]["digest"], \
        "a v2s2 manifest is another manifest of the same content"
    raw = subprocess.run([SKOPEO, "inspect", "--raw", "--tls-verify=false",
                          f"docker://{world.schema2}"], capture_output=True, check=True).stdout
    assert json.loads(raw)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert set(found[world.schema2]["layers"]) == set(found[world.shared]["layers"]), \
        "the same layers, however the manifest is written"
    nspod("image", "pull", world.index, env=env)
    multi = images(nspod)[world.index]
    assert multi["digest"] == world.plain.digest("multi:1") != multi["manifest"], \
        "the index's digest names the image; the platform's manifest makes its root"
    rootfs = os.path.join(store(nspod), ".roots", multi["root"], "rootfs")
    assert open(os.path.join(rootfs, "platform")).read() == ARCH


def test_corrupt_blob_is_refused_and_nothing_is_stored(nspod, world):
    env = insecure(nspod, world.plain.host)
    with open(os.path.join(world.corrupt_layout, "index.json")) as f:
        manifest_digest = json.load(f)["manifests"][0]["digest"]
    manifest = json.load(open(os.path.join(world.corrupt_layout, "blobs", "sha256",
                                           manifest_digest.split(":")[1])))
    digest = manifest["layers"][1]["digest"]
    path = world.plain.blob_file(digest)
    good = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(bytes([good[0] ^ 0xff]) + good[1:])       # same size, another digest
    try:
        result = nspod("image", "pull", world.corrupt, env=env, check=False)
    finally:
        with open(path, "wb") as f:
            f.write(good)
    one_error(result, 1, "digest mismatch", digest)
    assert world.corrupt not in images(nspod)
    assert "sha256-" + digest.split(":")[1] not in layer_dirs(nspod)
    assert not leftovers(nspod)


def test_credentials_from_an_auth_file(nspod, world):
    env = insecure(nspod, world.auth.host)
    without = nspod("image", "pull", world.private, env=dict(env, REGISTRY_AUTH_FILE="/nonexistent"),
                    check=False)
    one_error(without, 1, world.auth.host, "needs credentials")
    auth_file = os.path.join(nspod.workdir, "auth.json")
    with open(auth_file, "w") as f:
        json.dump({"auths": {world.auth.host: {
            "auth": base64.b64encode(b"nspod:wrong").decode()}}}, f)
    wrong = nspod("image", "pull", world.private, env=dict(env, REGISTRY_AUTH_FILE=auth_file),
                  check=False)
    one_error(wrong, 1, "refused the credentials")
    with open(auth_file, "w") as f:
        json.dump({"auths": {f"https://{world.auth.host}": {
            "auth": base64.b64encode(world.auth.creds.encode()).decode()}}}, f)
    nspod("image", "pull", world.private, env=dict(env, REGISTRY_AUTH_FILE=auth_file))
    assert world.private in images(nspod)


def test_two_images_sharing_a_layer_store_it_once(nspod, world):
    env = insecure(nspod, world.plain.host)
    nspod("image", "pull", world.busybox, env=env)
    nspod("image", "pull", world.shared, env=env)
    found = images(nspod)
    a, b = found[world.busybox], found[world.shared]
    assert a["layers"][0] == b["layers"][0]
    assert len(layer_dirs(nspod)) == 2, "three layer references, two layers on disk"
    roots = os.path.join(store(nspod), ".roots")
    st_a = os.stat(os.path.join(roots, a["root"], "rootfs", "bin", "busybox"))
    st_b = os.stat(os.path.join(roots, b["root"], "rootfs", "bin", "busybox"))
    assert (st_a.st_dev, st_a.st_ino) == (st_b.st_dev, st_b.st_ino), \
        "busybox is one file on disk for both images"
    du = int(subprocess.run(["du", "-sk", store(nspod)], capture_output=True, text=True,
                            check=True).stdout.split()[0])
    assert du * 1024 < 1.5 * st_a.st_size, f"{du} KiB for two images of a {st_a.st_size} B binary"
    # rm leaves the shared layer to the image that still has it; prune removes the rest.
    nspod("image", "rm", world.busybox)
    assert len(layer_dirs(nspod)) == 2
    assert nspod("image", "prune").stdout.split() == [world.shared]
    assert layer_dirs(nspod) == [] and os.listdir(roots) == []


def test_a_pod_runs_from_a_pulled_image(nspod, world):
    """The kubelet's imagePullPolicy: IfNotPresent pulls only what is missing; Never refuses
    a missing image with what to do."""
    env = insecure(nspod, world.plain.host)
    never = pod_yaml("never", f"    - name: a\n      image: {world.busybox}\n"
                              "      imagePullPolicy: Never\n")
    result = nspod("run", nspod.manifest(never), env=env, check=False)
    one_error(result, 2, world.busybox, "not in nspod's image store", "nspod image pull")
    missing = pod_yaml("missing", f"    - name: a\n      image: {world.plain.host}/nosuch:1\n")
    one_error(nspod("run", nspod.manifest(missing), env=env, check=False), 1,
              "spec.containers[0].image", "not found", "nspod image pull")
    assert nspod.pods() == []
    manifest = pod_yaml("pulled", f"    - name: a\n      image: {world.three}\n")
    nspod("run", nspod.manifest(manifest), env=env)
    wait_terminated(nspod, "pulled", "a")
    words = nspod("logs", "pulled").stdout.split()
    assert words[:3] == ["/data:", "new", "/etc:"], "the third layer's whiteout removed gone"
    assert {"group", "passwd", "second"} <= set(words)
    assert world.three in images(nspod)
    one_error(nspod("image", "rm", world.three, check=False), 1, "used by pod")


def _slow_proxy(target_port, rate):
    """A TCP proxy to the registry at `rate` bytes/s: a pull that lasts long enough to be
    interrupted. Returns (port, stop)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def pipe(src, dst, slow):
        try:
            while not stop.is_set():
                data = src.recv(16384 if slow else 65536)
                if not data:
                    break
                dst.sendall(data)
                if slow:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", target_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client, True), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()

    def close():
        stop.set()
        server.close()
    return server.getsockname()[1], close


def _pull_until_streaming(nspod, ref, env):
    key, value = nspod.marker.split("=")
    proc = subprocess.Popen([sys.executable, "-P", "-m", "nsPod"] + nspod.global_args() + ["image", "pull", ref],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **env, **{key: value},
                                     PYTHONFAULTHANDLER="1"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for work in leftovers(nspod):
            for name in os.listdir(os.path.join(store(nspod), work)):
                path = os.path.join(store(nspod), work, name)
                if name.startswith("download-") and os.path.getsize(path) > (8 << 20):
                    return proc
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"the pull did not stream: {proc.communicate()}")


@pytest.mark.parametrize("how", ["registry-dies", "sigterm", "sigint"])
def test_an_interrupted_pull_leaves_nothing(nspod, world, how):
    victim = world.start(f"victim-{how}")
    try:
        ref = victim.push(world.big_layout, "big:1")
        port, close = _slow_proxy(victim.port, 16 << 20)
        try:
            ref = f"127.0.0.1:{port}/big:1"
            env = insecure(nspod, f"127.0.0.1:{port}")
            proc = _pull_until_streaming(nspod, ref, env)
            if how == "registry-dies":
                os.kill(victim.proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)
                raise AssertionError(proc.communicate()[1]) from None
        finally:
            close()
    finally:
        victim.stop()
    if how == "registry-dies":
        lines = err.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, err
        assert ref in lines[0] and "bytes" in lines[0], err
    else:
        assert proc.returncode == 130 and err.strip() in ("interrupted", "aborted"), err
    assert ref not in images(nspod)
    assert not leftovers(nspod), "the work directory is removed"
    assert len(layer_dirs(nspod)) <= 1, "at most the small first layer, complete"


def test_bad_references_are_input_errors(nspod):
    for ref in ("Busybox", "busybox:", "a@sha256:123", "x-"):
        one_error(nspod("image", "pull", ref, check=False), 2, "REF", repr(ref))
    assert not os.path.exists(nspod.root)


def _nspod_argv(nspod, *args):
    return [sys.executable, "-P", "-m", "nsPod"] + nspod.global_args() + list(args)


def test_progress_on_a_terminal_only(nspod, world):
    import pty
    env = insecure(nspod, world.plain.host)
    key, value = nspod.marker.split("=")
    master, slave = pty.openpty()
    proc = subprocess.Popen(_nspod_argv(nspod, "image", "pull", world.shared),
                            stdout=subprocess.PIPE, stderr=slave, text=True,
                            env=dict(os.environ, **env, **{key: value}))
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break           # EIO: the pull closed its end
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0 and proc.stdout.read().strip() == world.shared
    layers = images(nspod)[world.shared]["layers"]
    text = seen.decode()
    for digest in layers:
        assert digest[7:19] in text, text
    assert "Mi" in text and "\r" in text, "bytes per layer, rewritten in place"


def test_gc_removes_the_work_of_a_killed_pull(nspod, world):
    env = insecure(nspod, world.plain.host)
    nspod("image", "pull", "-q", world.busybox, env=env)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = os.path.join(store(nspod), f".pull-{dead.pid}.1-0000abcd")
    os.makedirs(os.path.join(stale, "layer-x"))
    report = nspod("gc").stdout
    assert f".pull-{dead.pid}.1-0000abcd" in report and not os.path.exists(stale)
    assert world.busybox in images(nspod), "a finished image is not work"


def test_bearer_tokens_anonymous_and_with_credentials(nspod, world):
    """The distribution token protocol, as Docker Hub, ghcr.io or quay.io ask for it: the
    registry's 401 names a realm; the token comes from there, anonymous for public images,
    with the auth file's credentials for private ones."""
    env = insecure(nspod, world.tokens.host)
    nobody = dict(env, REGISTRY_AUTH_FILE=os.path.join(nspod.workdir, "none.json"))
    before = len(world.token_server.requests)
    nspod("image", "pull", world.public_t, env=nobody)
    assert world.public_t in images(nspod)
    asked = world.token_server.requests[before:]
    assert asked and all(not given for _, given, _ in asked), "anonymous tokens"
    one_error(nspod("image", "pull", world.private_t, env=nobody, check=False), 1,
              world.tokens.host, "needs credentials")
    auth_file = os.path.join(nspod.workdir, "auth.json")
    with open(auth_file, "w") as f:
        json.dump({"auths": {world.tokens.host: {
            "auth": base64.b64encode(world.tokens.creds.encode()).decode()}}}, f)
    nspod("image", "pull", world.private_t, env=dict(env, REGISTRY_AUTH_FILE=auth_file))
    assert world.private_t in images(nspod)
    assert world.token_server.requests[-1][2], "the token was asked for with the credentials"


def test_an_imported_image_under_a_full_reference_is_used_as_it_is(nspod):
    """No registry has an imported image: under the default Always (no tag) it runs as it
    is, with no network, as Podman uses its localhost/ images."""
    from busybox import make_rootfs
    rootfs = make_rootfs(os.path.join(nspod.workdir, "rootfs"))
    assert nspod("image", "import", "localhost/team/app", rootfs).stdout.strip() == \
        "localhost/team/app:latest"
    assert os.path.isdir(os.path.join(store(nspod), "localhost%team%app:latest"))
    manifest = pod_yaml("local", "    - name: a\n      image: localhost/team/app\n"
                                 "      command: [\"sh\", \"-c\", \"echo local\"]\n")
    env = conf(nspod, '[[registry]]\nlocation = "localhost"\nblocked = true\n')
    nspod("run", nspod.manifest(manifest), env=env)
    wait_terminated(nspod, "local", "a")
    assert nspod("logs", "local").stdout.strip() == "local"
    assert list(images(nspod)) == ["localhost/team/app:latest"]


def test_a_new_digest_under_a_tag_leaves_running_pods_their_root(nspod, world):
    """imagePullPolicy Always finds the tag moved: the name follows it, a running pod keeps
    the root it started on until it is gone (as the kubelet never swaps a running image)."""
    env = insecure(nspod, world.plain.host)
    ref = world.plain.push(os.path.join(world.base, "busybox"), "retag:1")
    manifest = pod_yaml("old", f"    - name: a\n      image: {ref}\n"
                               "      command: [\"sleep\", \"1000\"]\n")
    nspod("run", nspod.manifest(manifest), env=env)
    first = images(nspod)[ref]
    old_root = os.path.join(store(nspod), ".roots", first["root"])
    world.plain.push(os.path.join(world.base, "shared"), "retag:1")
    # IfNotPresent (the default for a tag other than latest): the stored image, no pull.
    again = pod_yaml("again", f"    - name: a\n      image: {ref}\n"
                              "      command: [\"sh\", \"-c\", \"ls /etc\"]\n")
    nspod("run", nspod.manifest(again), env=env)
    wait_terminated(nspod, "again", "a")
    assert "second" not in nspod("logs", "again").stdout.split()
    assert images(nspod)[ref]["digest"] == first["digest"]
    # Always: the registry is asked, and the new digest pulled.
    new = pod_yaml("new", f"    - name: a\n      image: {ref}\n      imagePullPolicy: Always\n"
                          "      command: [\"sh\", \"-c\", \"cat /etc/second\"]\n")
    nspod("run", nspod.manifest(new), env=env)
    wait_terminated(nspod, "new", "a")
    assert nspod("logs", "new").stdout.strip() == "second"
    second = images(nspod)[ref]
    assert second["digest"] != first["digest"] and second["root"] != first["root"]
    wait_phase(nspod, "old", ("Running",))
    nspod("rm", "-f", "--timeout", "0", "new", "again")
    assert nspod("image", "prune").stdout.split() == [ref], "no pod uses the new image"
    assert os.path.isdir(os.path.join(old_root, "rootfs")), "the running pod's root stays"
    nspod("rm", "-f", "--timeout", "0", "old")
    nspod("image", "prune")
    assert not os.path.exists(old_root) and layer_dirs(nspod) == []


def test_concurrent_pulls_of_one_image(nspod, world):
    env = insecure(nspod, world.plain.host)
    key, value = nspod.marker.split("=")
    procs = [subprocess.Popen(_nspod_argv(nspod, "image", "pull", ref), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, **env, **{key: value}))
             for ref in (world.three, world.three, world.shared)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0, 0, 0], results
    found = images(nspod)
    assert set(found) == {world.three, world.shared}
    assert len(layer_dirs(nspod)) == 3, "the shared layers once, whoever unpacked them"
    assert not leftovers(nspod)


def test_redirects_are_followed(nspod, world):
    """Registries serve blobs from elsewhere (S3, a CDN) with a 307: followed, the digest
    still checked."""
    import http.server
    target = world.plain.host

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(307)
            self.send_header("Location", f"http://{target}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{front.server_address[1]}"
        ref = f"{host}/shared:1"
        assert nspod("image", "pull", ref, env=insecure(nspod, host)).stdout.strip() == ref
    finally:
        front.shutdown()
        front.server_close()
    assert images(nspod)[ref]["digest"] == world.plain.digest("shared:1")


def test_a_pull_never_replaces_an_imported_image(nspod, world):
    from busybox import make_rootfs
    rootfs = make_rootfs(os.path.join(nspod.workdir, "rootfs"))
    nspod("image", "import", world.busybox, rootfs)
    env = insecure(nspod, world.plain.host)
    one_error(nspod("image", "pull", world.busybox, env=env, check=False), 1,
              "exists as an imported image", f"nspod image rm {world.busybox}")
    assert images(nspod)[world.busybox]["format"] == "directory"
    # Pulled under the same name after it was removed: the registry's.
    nspod("image", "rm", world.busybox)
    nspod("image", "pull", world.busybox, env=env)
    assert images(nspod)[world.busybox]["format"] == "registry"
    again = nspod("image", "import", world.busybox, rootfs, check=False)
    one_error(again, 1, f"image {world.busybox} already exists")

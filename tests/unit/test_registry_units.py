"""The registry client's pure logic, no root and no network: references normalised as
Kubernetes does, registries.conf v2, credentials and challenges, manifests and platforms."""
import base64
import json
import os

import pytest

from nsPod.errors import InputError
from nsPod.manifest import image_reference as reference
from nsPod.registry import auth, conf, pull


# --- references (k8s.io/kubernetes uses docker/distribution's ParseNormalizedNamed) --------------

@pytest.mark.parametrize("text, full, familiar", [
    ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("nginx:1.25", "docker.io/library/nginx:1.25", "nginx:1.25"),
    ("hashicorp/vault:1.15", "docker.io/hashicorp/vault:1.15", "hashicorp/vault:1.15"),
    ("docker.io/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1", "nginx:1"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ("gcr.io/a/b/c", "gcr.io/a/b/c:latest", "gcr.io/a/b/c:latest"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("127.0.0.1:5000/busybox:1", "127.0.0.1:5000/busybox:1", "127.0.0.1:5000/busybox:1"),
    ("myhost:5000/team/app", "myhost:5000/team/app:latest", "myhost:5000/team/app:latest"),
    ("library/x__y.z-w", "docker.io/library/x__y.z-w:latest", "x__y.z-w:latest"),
    ("nginx@sha256:" + "a" * 64, "docker.io/library/nginx@sha256:" + "a" * 64,
     "nginx@sha256:" + "a" * 64),
    ("nginx:1.25@sha256:" + "b" * 64, "docker.io/library/nginx:1.25@sha256:" + "b" * 64,
     "nginx:1.25@sha256:" + "b" * 64),
])
def test_references_are_normalised_as_kubernetes_does(text, full, familiar):
    ref = reference.parse(text)
    assert str(ref) == full and ref.familiar() == familiar
    assert reference.parse(familiar) == ref, "the store's name parses back to the same image"


def test_digest_wins_over_tag_and_default_policies():
    ref = reference.parse("nginx:1.25@sha256:" + "b" * 64)
    assert ref.selector == "sha256:" + "b" * 64
    assert reference.default_pull_policy("nginx") == "Always"
    assert reference.default_pull_policy("nginx:latest") == "Always"
    assert reference.default_pull_policy("nginx:1.25") == "IfNotPresent"
    assert reference.default_pull_policy("nginx@sha256:" + "c" * 64) == "IfNotPresent"


@pytest.mark.parametrize("text", [
    "", "Nginx", "nginx:", ":tag", "nginx:-x", "nginx:a b", " nginx", "a//b", "a/", "/a",
    "-a", "a-", "a..b", "a_-b", "nginx@sha256:abc", "nginx@md5:" + "a" * 32,
    "nginx@sha256:" + "A" * 64, "Registry.IO/x", "host:port/x", "h:99999999/x",
    "a\x00b", "a\nb", "x" * 256, "http://docker.io/nginx", "a:b:c",
])
def test_bad_references(text):
    with pytest.raises(InputError):
        reference.parse(text)
    assert reference.problem(text)


# --- registries.conf -----------------------------------------------------------------------------

CONF = """
unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]

[[registry]]
prefix = "example.com/foo"
location = "internal.example.com/bar"
insecure = true

[[registry]]
location = "example.com"
[[registry.mirror]]
location = "mirror-1.example.com"
[[registry.mirror]]
location = "mirror-2.example.com:5000/ns"
insecure = true
pull-from-mirror = "digest-only"

[[registry]]
prefix = "*.corp.example"
location = "proxy.example.net/corp"

[[registry]]
location = "evil.example"
blocked = true
"""


def load(tmp_path, text):
    path = tmp_path / "registries.conf"
    path.write_text(text)
    return conf.load(str(path))


def endpoints(c, text):
    return [(e.host, e.path, e.insecure, e.mirror) for e in c.endpoints(reference.parse(text))]


def test_registries_conf_longest_prefix_and_location(tmp_path):
    c = load(tmp_path, CONF)
    assert c.search == ["registry.fedoraproject.org", "docker.io"]
    # Longest prefix: example.com/foo beats example.com; its location replaces the prefix.
    assert endpoints(c, "example.com/foo/app:1") == [
        ("internal.example.com", "bar/app", True, False)]
    # Prefixes match whole components: example.com/foobar is example.com's.
    assert endpoints(c, "example.com/foobar:1") == [
        ("mirror-1.example.com", "foobar", False, True),
        ("example.com", "foobar", False, False)]
    # A digest-only mirror is tried for digests only.
    digest = "sha256:" + "d" * 64
    assert endpoints(c, f"example.com/x@{digest}") == [
        ("mirror-1.example.com", "x", False, True),
        ("mirror-2.example.com:5000", "ns/x", True, True),
        ("example.com", "x", False, False)]


def test_registries_conf_wildcards_as_the_man_page_says(tmp_path):
    c = load(tmp_path, CONF)
    assert endpoints(c, "a.corp.example/team/app") == [
        ("proxy.example.net", "corp/team/app", False, False)]
    assert endpoints(c, "b.a.corp.example/app") == [
        ("proxy.example.net", "corp/app", False, False)]
    # *.corp.example does not match corp.example itself: no [[registry]], the host as is.
    assert endpoints(c, "corp.example/app") == [("corp.example", "app", False, False)]
    assert endpoints(c, "nginx") == [("docker.io", "library/nginx", False, False)]


def test_blocked_registry(tmp_path):
    c = load(tmp_path, CONF)
    with pytest.raises(conf.BlockedError, match="evil.example is blocked"):
        c.endpoints(reference.parse("evil.example/x"))


@pytest.mark.parametrize("text, needle", [
    ("[[registry]\n", "not TOML"),
    ("[registries.search]\nregistries = ['a']\n", "version 1"),
    ("[[registry]]\ninsecure = true\n", "needs a prefix or a location"),
    ("[[registry]]\nlocation = 'https://a.io'\n", "no scheme"),
    ("[[registry]]\nlocation = 'a.io'\ninsecure = 'yes'\n", "insecure: must be true or false"),
    ("[[registry]]\nprefix = '*.a.io/x'\nlocation = 'b.io'\n", "wildcard"),
    ("[[registry]]\nprefix = 'a*.io'\nlocation = 'b.io'\n", "'*' only"),
    ("[[registry]]\nlocation = 'a.io'\n[[registry]]\nlocation = 'a.io'\n", "defined twice"),
    ("[[registry]]\nlocation = 'a.io'\n[[registry.mirror]]\ninsecure = true\n",
     "location: required"),
    ("[[registry]]\nlocation = 'a.io'\n[[registry.mirror]]\nlocation = 'b.io'\n"
     "pull-from-mirror = 'sometimes'\n", "pull-from-mirror"),
    ("unqualified-search-registries = 'docker.io'\n", "must be a list"),
])
def test_bad_registries_conf(tmp_path, text, needle):
    with pytest.raises(conf.ConfError, match=needle) as info:
        load(tmp_path, text)
    assert str(info.value).startswith(str(tmp_path)), "the message names the file"


def test_registries_conf_path(tmp_path, monkeypatch):
    monkeypatch.setenv(conf.ENV, str(tmp_path / "missing.conf"))
    with pytest.raises(conf.ConfError, match="no such file"):
        conf.load()
    monkeypatch.delenv(conf.ENV)
    assert conf.path() == "/etc/containers/registries.conf"


# --- credentials and challenges -------------------------------------------------------------

def test_challenges():
    assert auth.parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"') == ("bearer", {
            "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
            "scope": "repository:library/nginx:pull"})
    assert auth.parse_challenge('Basic realm="nspod-test"') == ("basic", {"realm": "nspod-test"})
    assert auth.parse_challenge('Bearer realm="a\\"b", error="invalid_token"') == \
        ("bearer", {"realm": 'a"b', "error": "invalid_token"})
    assert auth.parse_challenge("bearer realm=https://x/t") == ("bearer", {"realm": "https://x/t"})
    for bad in (None, "", "  ", "=x", "Bearer"):
        result = auth.parse_challenge(bad)
        assert result is None or result == ("bearer", {})


def _auth_file(path, auths):
    path.write_text(json.dumps({"auths": auths}))
    return str(path)


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def test_credentials_most_specific_first(tmp_path):
    f = _auth_file(tmp_path / "auth.json", {
        "quay.io": {"auth": _b64("host:h")},
        "quay.io/team": {"auth": _b64("team:t")},
        "https://index.docker.io/v1/": {"auth": _b64("hub:x:y")},
        "http://127.0.0.1:5000": {"username": "u", "password": "p"},
    })
    assert auth.credentials("quay.io", "team/app", [f]) == ("team", "t")
    assert auth.credentials("quay.io", "other/app", [f]) == ("host", "h")
    assert auth.credentials("docker.io", "library/nginx", [f]) == ("hub", "x:y")
    assert auth.credentials("127.0.0.1:5000", "busybox", [f]) == ("u", "p")
    assert auth.credentials("gcr.io", "x", [f]) is None
    assert auth.credentials("quay.io", "x", [str(tmp_path / "none.json"), f]) == ("host", "h")


def test_credential_files_in_podmans_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert auth.auth_files() == [str(tmp_path / "run/containers/auth.json"),
                                 str(tmp_path / ".config/containers/auth.json"),
                                 str(tmp_path / ".docker/config.json"),
                                 str(tmp_path / ".dockercfg")]
    os.makedirs(tmp_path / ".docker")
    _auth_file(tmp_path / ".docker" / "config.json", {"a.io": {"auth": _b64("d:1")}})
    assert auth.credentials("a.io", "x") == ("d", "1")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "only.json"))
    assert auth.auth_files() == [str(tmp_path / "only.json")]
    assert auth.credentials("a.io", "x") is None


@pytest.mark.parametrize("content, needle", [
    ("{", "credentials file"), ("[]", "not a JSON object"),
    ('{"auths": []}', '"auths" is not an object'),
    ('{"auths": {"a.io": {"auth": "!!"}}}', "base64"),
    ('{"auths": {"a.io": {"auth": "' + _b64("nocolon") + '"}}}', "base64"),
    ('{"auths": {"a.io": {"identitytoken": "t"}}}', "identitytoken"),
])
def test_bad_credential_files(tmp_path, content, needle):
    path = tmp_path / "auth.json"
    path.write_text(content)
    with pytest.raises(auth.AuthError, match=needle):
        auth.credentials("a.io", "x", [str(path)])


# --- manifests and platforms ----------------------------------------------------------------

def _desc(arch, variant=None, os_name="linux", n=1):
    p = {"os": os_name, "architecture": arch}
    if variant:
        p["variant"] = variant
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + str(n) * 64, "size": 10, "platform": p}


def test_platform_selection():
    index = {"manifests": [_desc("unknown", os_name="unknown", n=1), _desc("arm", "v7", n=2),
                           _desc("arm64", "v8", n=3), _desc("amd64", n=4)]}
    assert pull.select_platform(index, ("linux", "amd64", ""))["digest"] == "sha256:" + "4" * 64
    assert pull.select_platform(index, ("linux", "arm64", "v8"))["digest"] == "sha256:" + "3" * 64
    assert pull.select_platform(index, ("linux", "arm", "v7"))["digest"] == "sha256:" + "2" * 64
    with pytest.raises(pull.PullError, match=r"no image for linux/s390x \(it has: "
                                             r"linux/amd64, linux/arm, linux/arm64"):
        pull.select_platform(index, ("linux", "s390x", ""))


def test_manifest_kinds_and_digests():
    oci = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {}, "layers": []}).encode()
    assert pull.parse_manifest(oci, "", "m")[0] == "application/vnd.oci.image.manifest.v1+json"
    assert pull.parse_manifest(b'{"schemaVersion": 2, "manifests": []}', "", "m")[0] == \
        "application/vnd.oci.image.index.v1+json"
    with pytest.raises(pull.PullError, match="schema 1"):
        pull.parse_manifest(b'{"schemaVersion": 1}', "", "m")
    with pytest.raises(pull.PullError, match="unsupported manifest type"):
        pull.parse_manifest(b'{"mediaType": "application/x-helm"}', "", "m")
    with pytest.raises(pull.PullError, match="not JSON"):
        pull.parse_manifest(b"<html>", "", "m")
    digest = pull.sha256(oci)
    assert pull.verify_manifest(oci, digest, "m") == digest
    assert pull.verify_manifest(oci, "", "m") == digest
    with pytest.raises(pull.PullError, match="digest mismatch"):
        pull.verify_manifest(oci + b" ", digest, "m")


# --- roots made of shared layers ------------------------------------------------------------

def test_compose_applies_whiteouts_and_links_files(tmp_path):
    from nsPod.store import layers as store
    lower, upper, rootfs = tmp_path / "l1", tmp_path / "l2", tmp_path / "rootfs"
    for d in ("etc", "data", "opq", "link"):
        os.makedirs(lower / d)
    (lower / "etc" / "motd").write_text("lower")
    (lower / "data" / "keep").write_text("keep")
    (lower / "opq" / "a").write_text("a")
    (lower / "file-then-dir").write_text("x")
    os.symlink("etc", lower / "etc-link")
    os.makedirs(upper / "etc")
    os.makedirs(upper / "opq")
    os.makedirs(upper / "file-then-dir")
    os.makedirs(upper / "data")
    (upper / "etc" / ".wh.motd").write_text("")
    (upper / "opq" / ".wh..wh..opq").write_text("")
    (upper / "opq" / "b").write_text("b")
    (upper / "data" / ".wh..").write_text("")       # hostile: names the directory itself
    (upper / ".wh...").write_text("")               # hostile: names the root's parent
    (upper / "etc-link").write_text("now a file")
    os.mkdir(rootfs)
    store.compose([str(lower), str(upper)], str(rootfs))
    assert not (rootfs / "etc" / "motd").exists()
    assert sorted(os.listdir(rootfs / "opq")) == ["b"], "opaque: only the upper layer's"
    assert (rootfs / "data" / "keep").read_text() == "keep" and (tmp_path / "l1").exists()
    assert (rootfs / "file-then-dir").is_dir()
    assert not (rootfs / "etc-link").is_symlink() and (rootfs / "etc-link").read_text() == \
        "now a file"
    assert os.stat(rootfs / "data" / "keep").st_ino == os.stat(lower / "data" / "keep").st_ino, \
        "a file is a hard link into its layer"
    assert store.tree_size(str(rootfs)) == len("keep") + len("b") + len("now a file")


def test_zstd_layers_without_zstandard_are_refused_clearly(tmp_path, monkeypatch):
    from nsPod.store import zstd_layers
    monkeypatch.setattr(zstd_layers, "_module", lambda: None)
    p = pull.Pull(str(tmp_path), "example.com/app:1", registries=conf.Conf())
    desc = {"digest": "sha256:" + "1" * 64, "size": 1}
    manifest = {"config": dict(desc, mediaType="application/vnd.oci.image.config.v1+json"),
                "layers": [dict(desc, mediaType="application/vnd.oci.image.layer.v1.tar+zstd")]}
    with pytest.raises(pull.PullError, match=r"layer 0 \(sha256:1+\): zstd layers need "
                                             r"python package zstandard \(pip install"):
        p._image(None, manifest, "sha256:" + "2" * 64, [], "sha256:" + "2" * 64)
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    del manifest["layers"][0]["size"]
    with pytest.raises(pull.PullError, match="layer 0: bad or missing size"):
        p._image(None, manifest, "sha256:" + "2" * 64, [], "sha256:" + "2" * 64)
    assert not os.path.exists(tmp_path / "images"), "refused before anything is made"


def test_docker_hub_api_host():
    assert pull.api_host("docker.io") == "registry-1.docker.io"
    assert pull.api_host("quay.io") == "quay.io"
    [e] = conf.Conf().endpoints(reference.parse("nginx"))
    assert (pull.api_host(e.host), e.path) == ("registry-1.docker.io", "library/nginx")


def test_a_stored_image_needs_no_registries_conf(tmp_path, monkeypatch):
    """IfNotPresent with the image stored reads nothing else: a broken registries.conf
    matters only when a registry is asked."""
    bad = tmp_path / "bad.conf"
    bad.write_text("[[registry]\n")
    monkeypatch.setenv(conf.ENV, str(bad))
    image = tmp_path / "images" / "localhost%app:1"
    os.makedirs(image)
    (image / "config.json").write_text('{"name": "localhost/app:1"}')
    stored, transferred = pull.pull(str(tmp_path), "localhost/app:1", policy="IfNotPresent")
    assert stored["name"] == "localhost/app:1" and transferred == 0
    with pytest.raises(conf.ConfError, match="not TOML"):
        pull.pull(str(tmp_path), "localhost/other:1", policy="IfNotPresent")


def test_registries_conf_drop_ins_merge_in_name_order(tmp_path):
    main = tmp_path / "registries.conf"
    main.write_text('unqualified-search-registries = ["a.io"]\n'
                    '[[registry]]\nlocation = "a.io"\n[[registry]]\nlocation = "b.io"\n')
    d = tmp_path / "registries.conf.d"
    d.mkdir()
    (d / "20-late.conf").write_text('[[registry]]\nlocation = "a.io"\ninsecure = true\n')
    (d / "10-early.conf").write_text('unqualified-search-registries = ["c.io"]\n'
                                     '[[registry]]\nlocation = "a.io"\nblocked = true\n')
    (d / "ignored.txt").write_text("not toml [")
    (d / "aliases.conf").write_text('[aliases]\n"x" = "a.io/x"\n')
    c = conf.load(str(main), str(d))
    assert c.search == ["c.io"]
    a = c.match("a.io/x")
    assert a.insecure and not a.blocked, "the later drop-in's [[registry]] replaces"
    assert c.match("b.io/x").location == "b.io"
    (d / "30-bad.conf").write_text("[[registry]]\nlocation = 1\n")
    with pytest.raises(conf.ConfError, match="30-bad.conf"):
        conf.load(str(main), str(d))


def test_unpack_limits_knob_and_budget():
    import tarfile
    from nsPod.errors import ImageError, InputError
    from nsPod.store import unpack_limits as ul
    assert ul.limits({}) == ul.DEFAULTS
    got = ul.limits({"NSPOD_UNPACK_LIMITS": "layer-bytes=2Ki, image-entries=3,layer-links=7"})
    assert (got["layer-bytes"], got["image-entries"], got["layer-links"]) == (2048, 3, 7)
    assert ul.limits({"NSPOD_UNPACK_LIMITS": "image-bytes=1G"})["image-bytes"] == 1 << 30
    for bad in ("layer-bytes", "bytes=1", "layer-entries=1K", "layer-bytes=0", "layer-bytes=x"):
        with pytest.raises(InputError, match="NSPOD_UNPACK_LIMITS"):
            ul.limits({"NSPOD_UNPACK_LIMITS": bad})
    budget = ul.Budget(dict(ul.DEFAULTS, **{"layer-bytes": 10, "image-entries": 3}))
    member = tarfile.TarInfo("f")
    member.size = 6
    budget.layer("layer 0").charge(member)
    with pytest.raises(ImageError, match=r"layer 0 unpacks to more than 10 bytes \(at 'f'\)"):
        budget.charge(member)
    budget.layer("layer 1").charge(tarfile.TarInfo("d"))     # entry 3 of 3
    with pytest.raises(ImageError, match="the image unpacks to more than 3 entries"):
        budget.charge(tarfile.TarInfo("d"))


def test_short_names_and_search_registries():
    from nsPod.manifest import image_reference as r
    assert r.is_short("busybox") and r.is_short("team/app:1") and r.is_short("a@sha256:" + "1" * 64)
    assert not r.is_short("docker.io/busybox") and not r.is_short("localhost/x")
    assert not r.is_short("127.0.0.1:5000/x:1")
    c = conf.parse({"unqualified-search-registries": ["quay.io", "docker.io", "r.example/ns"]})
    got = [str(x) for x in c.candidates(r.parse("busybox:1"), True)]
    assert got == ["quay.io/busybox:1", "docker.io/library/busybox:1", "r.example/ns/busybox:1"]
    assert [str(x) for x in c.candidates(r.parse("team/app"), True)][:2] == [
        "quay.io/team/app:latest", "docker.io/team/app:latest"]
    assert [str(x) for x in c.candidates(r.parse("quay.io/busybox:1"), False)] == \
        ["quay.io/busybox:1"]
    assert [str(x) for x in conf.parse({}).candidates(r.parse("busybox"), True)] == \
        ["docker.io/library/busybox:latest"]
    with pytest.raises(conf.ConfError, match="unqualified-search-registries"):
        conf.parse({"unqualified-search-registries": ["https://quay.io"]})


def test_credential_file_helper_fields_are_checked(tmp_path):
    from nsPod.registry import auth as registry_auth
    path = tmp_path / "auth.json"
    for bad, word in (({"credHelpers": ["x"]}, "credHelpers"),
                      ({"credHelpers": {"h": 5}}, "credHelpers"),
                      ({"credsStore": 5}, "credsStore"),
                      ({"credHelpers": {"example.com": "../evil"}}, "not a credential helper name")):
        path.write_text(json.dumps(bad))
        with pytest.raises(registry_auth.AuthError, match=word):
            registry_auth.credentials("example.com", "app", [str(path)])
    # a helper for another registry is not asked
    path.write_text(json.dumps({"credHelpers": {"other.io": "absent-helper"}}))
    assert registry_auth.credentials("example.com", "app", [str(path)]) is None

"""Credential helpers and short-name search against real registries (Debian's docker-registry,
one with htpasswd), as Podman does them: `credHelpers`/`credsStore` in the auth file run
`docker-credential-<name> get` (a fake helper script here: that is the real interface, a
program in PATH reading the server on stdin and answering JSON), and
`unqualified-search-registries` tried in order for a short name."""
import base64
import json
import os
import shutil
import tempfile

import pytest

from busybox import require_busybox
from test_registry import (HTPASSWD, REGISTRY, SKOPEO, Registry, _base_entries, conf, images,
                           one_error, write_layout)


class Two:
    pass


@pytest.fixture(scope="module")
def two():
    missing = [p for p in (REGISTRY, SKOPEO, HTPASSWD) if not os.path.exists(p)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: install docker-registry, skopeo and "
                    "apache2-utils (sh tests/run.sh does)")
    require_busybox()
    base = tempfile.mkdtemp(prefix="nspod-search-")
    w = Two()
    w.one = Registry(base, "one")
    w.two = Registry(base, "two")
    w.locked = Registry(base, "locked", htpasswd=("helped", "h3lper-pw"))
    try:
        def layout(name, text):
            return write_layout(os.path.join(base, name), [
                _base_entries(), [("which", "file", text.encode(), 0o644)]],
                cmd=("cat /which",))
        w.one.push(layout("both-one", "one\n"), "both:1")
        w.two.push(layout("both-two", "two\n"), "both:1")
        w.two.push(layout("second", "second\n"), "second:1")
        w.two.push(layout("library-both", "hub\n"), "library/both:1")
        w.private = w.locked.push(os.path.join(base, "second"), "private:1")
        yield w
    finally:
        for r in (w.one, w.two, w.locked):
            r.stop()
        shutil.rmtree(base, ignore_errors=True)


def _insecure(*hosts):
    return "".join(f'[[registry]]\nlocation = "{h}"\ninsecure = true\n' for h in hosts)


def _search(nspod, two, *hosts):
    listed = ", ".join(f'"{h}"' for h in hosts)
    return conf(nspod, f"unqualified-search-registries = [{listed}]\n"
                + _insecure(two.one.host, two.two.host))


def _which(nspod, name):
    root = os.path.join(nspod.root, "images", ".roots", images(nspod)[name]["root"])
    with open(os.path.join(root, "rootfs", "which")) as f:
        return f.read()


def test_a_short_name_tries_each_search_registry_in_order(nspod, two):
    env = _search(nspod, two, two.one.host, two.two.host)
    assert nspod("image", "pull", "both:1", env=env).stdout.strip() == "both:1"
    assert images(nspod)["both:1"]["reference"] == f"{two.one.host}/both:1"
    assert _which(nspod, "both:1") == "one\n", "the first search registry that has it"
    nspod("image", "pull", "second:1", env=env)       # not on one: found on two
    assert images(nspod)["second:1"]["reference"] == f"{two.two.host}/second:1"
    result = nspod("image", "pull", "nowhere:1", env=env, check=False)
    one_error(result, 1, f"searched {two.one.host}, {two.two.host}", two.one.host,
              two.two.host, "not found")
    # the order is the file's
    nspod("image", "rm", "both:1")
    nspod("image", "pull", "both:1", env=_search(nspod, two, two.two.host, two.one.host))
    assert _which(nspod, "both:1") == "two\n"
    # a name with a registry is never searched
    nspod("image", "pull", f"{two.one.host}/both:1", env=env)
    assert _which(nspod, f"{two.one.host}/both:1") == "one\n"


def test_without_search_registries_short_names_are_docker_io_library(nspod, two):
    """Kubernetes' normalisation: both:1 is docker.io/library/both:1 (sent here to registry
    two by a [[registry]] docker.io entry, never to the internet)."""
    env = conf(nspod, f'[[registry]]\nprefix = "docker.io"\nlocation = "{two.two.host}"\n'
               "insecure = true\n")
    nspod("image", "pull", "both:1", env=env)
    assert images(nspod)["both:1"]["reference"] == "docker.io/library/both:1"
    assert _which(nspod, "both:1") == "hub\n"


def test_a_pod_with_a_short_image_name_runs_from_a_search_registry(nspod, two):
    env = _search(nspod, two, two.one.host, two.two.host)
    nspod("run", nspod.manifest("""\
apiVersion: v1
kind: Pod
metadata: {name: sr, annotations: {nspod.io/network: none}}
spec:
  restartPolicy: Never
  containers: [{name: c, image: "second:1"}]
"""), env=env)
    from helpers import wait_terminated
    wait_terminated(nspod, "sr", "c")
    assert nspod("logs", "sr").stdout == "second\n"


def _helper(nspod, name, body):
    """docker-credential-<name> in a directory of its own, put first in PATH."""
    directory = os.path.join(nspod.workdir, "helpers")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"docker-credential-{name}")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return {"PATH": f"{directory}:{os.environ['PATH']}"}


def _auth(nspod, two, data):
    path = os.path.join(nspod.workdir, "auth.json")
    with open(path, "w") as f:
        json.dump(data, f)
    return dict(conf(nspod, _insecure(two.locked.host)), REGISTRY_AUTH_FILE=path)


FAKE = """\
[ "$1" = get ] || exit 3
read -r server
echo "$server" >> "$(dirname "$0")/asked"
if [ "$server" = "{host}" ]; then
  printf '{{"ServerURL": "%s", "Username": "helped", "Secret": "h3lper-pw"}}' "$server"
else
  echo "credentials not found in native keychain"; exit 1
fi
"""


def test_cred_helpers_win_over_auths_entries(nspod, two):
    host = two.locked.host
    env = dict(_helper(nspod, "fake", FAKE.format(host=host)), **_auth(nspod, two, {
        "auths": {host: {"auth": base64.b64encode(b"helped:wrong").decode()}},
        "credHelpers": {host: "fake"}}))
    nspod("image", "pull", two.private, env=env)
    assert two.private in images(nspod)
    with open(os.path.join(nspod.workdir, "helpers", "asked")) as f:
        assert f.read() == f"{host}\n", "the registry's host on stdin, once"


def test_creds_store_after_the_files_auths_entries(nspod, two):
    host = two.locked.host
    helper = _helper(nspod, "fake", FAKE.format(host=host))
    env = dict(helper, **_auth(nspod, two, {"credsStore": "fake"}))
    nspod("image", "pull", two.private, env=env)
    nspod("image", "rm", two.private)
    # an auths entry for the registry is used before the store is asked
    env = dict(helper, **_auth(nspod, two, {
        "credsStore": "fake",
        "auths": {host: {"auth": base64.b64encode(b"helped:wrong").decode()}}}))
    one_error(nspod("image", "pull", two.private, env=env, check=False), 1,
              "refused the credentials")
    # a store without credentials for the registry: as if there were none
    env = dict(_helper(nspod, "fake", FAKE.format(host="elsewhere")),
               **_auth(nspod, two, {"credsStore": "fake"}))
    one_error(nspod("image", "pull", two.private, env=env, check=False), 1,
              "needs credentials")


@pytest.mark.parametrize("case", ["missing", "fails", "garbage", "flood", "bad-name", "token"])
def test_a_broken_helper_is_one_clear_line(nspod, two, case):
    host = two.locked.host
    bodies = {"fails": "echo 'keychain locked' >&2; exit 7\n",
              "garbage": "echo not json\n",
              "flood": "head -c 1000000 /dev/zero | tr '\\0' x\n",
              "token": 'printf \'{"Username": "<token>", "Secret": "refresh"}\'\n'}
    name = {"missing": "absent", "bad-name": "../evil"}.get(case, case)
    env = dict(_helper(nspod, case, bodies.get(case, "exit 0\n")),
               **_auth(nspod, two, {"credHelpers": {host: name}}))
    result = nspod("image", "pull", two.private, env=env, check=False)
    expected = {"missing": "docker-credential-absent is not in PATH",
                "fails": "get failed (exit 7): keychain locked",
                "garbage": "answered no JSON", "flood": "more than 65536 bytes",
                "bad-name": "is not a credential helper name",
                "token": "identity token"}[case]
    one_error(result, 1, "credHelpers", expected)
    assert two.private not in images(nspod)

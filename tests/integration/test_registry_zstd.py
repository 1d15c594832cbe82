"""zstd layers (application/vnd.oci.image.layer.v1.tar+zstd) pushed to a real registry with
skopeo's --dest-compress-format zstd, pulled and run; and without the optional `zstandard`
package, one clear line. Also `nspod image import` of an OCI layout with a zstd layer."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from busybox import require_busybox
from helpers import wait_terminated
from test_registry import (REGISTRY, SKOPEO, Registry, _base_entries, images, insecure,
                           layer_dirs, leftovers, one_error, write_layout)

ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


@pytest.fixture(scope="module")
def zstd_image():
    missing = [p for p in (REGISTRY, SKOPEO) if not os.path.exists(p)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: install docker-registry and skopeo "
                    "(sh tests/run.sh does)")
    require_busybox()
    base = tempfile.mkdtemp(prefix="nspod-zstd-")
    registry = Registry(base, "zstd")
    try:
        layout = write_layout(os.path.join(base, "gz"), [
            _base_entries(), [("zstd-was-here", "file", b"yes\n", 0o644)]],
            cmd=("cat /zstd-was-here",))
        ref = registry.push(layout, "zstd:1", "--dest-compress-format", "zstd")
        raw = subprocess.run([SKOPEO, "inspect", "--raw", "--tls-verify=false",
                              f"docker://{ref}"], check=True, capture_output=True).stdout
        kinds = [layer["mediaType"] for layer in json.loads(raw)["layers"]]
        assert kinds == [ZSTD, ZSTD], kinds
        # the same image as an OCI layout on disk, for `image import`
        zlayout = os.path.join(base, "zstd-layout")
        subprocess.run([SKOPEO, "copy", "-q", "--dest-compress-format", "zstd",
                        f"oci:{layout}", f"oci:{zlayout}"], check=True, capture_output=True)
        yield registry, ref, zlayout
    finally:
        registry.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_zstd_image_is_pulled_and_runs(nspod, zstd_image):
    registry, ref, _ = zstd_image
    if subprocess.run([sys.executable, "-c", "import zstandard"]).returncode:
        pytest.skip("python package zstandard is not installed (pip install nspod[zstd])")
    env = insecure(nspod, registry.host)
    nspod("image", "pull", ref, env=env)
    assert ref in images(nspod) and len(layer_dirs(nspod)) == 2
    nspod("run", nspod.manifest(f"""\
apiVersion: v1
kind: Pod
metadata: {{name: zs, annotations: {{nspod.io/network: none}}}}
spec:
  restartPolicy: Never
  containers: [{{name: c, image: "{ref}"}}]
"""), env=env)
    wait_terminated(nspod, "zs", "c")
    assert nspod("logs", "zs").stdout == "yes\n"


def test_without_zstandard_a_zstd_layer_is_one_clear_line(nspod, zstd_image):
    """`zstandard` hidden from nspod's Python (sitecustomize makes its import fail)."""
    registry, ref, zlayout = zstd_image
    shim = os.path.join(nspod.workdir, "shim")
    os.makedirs(shim)
    with open(os.path.join(shim, "sitecustomize.py"), "w") as f:
        f.write("import sys\nsys.modules['zstandard'] = None\n")
    env = dict(insecure(nspod, registry.host), PYTHONPATH=shim)
    result = nspod("image", "pull", ref, env=env, check=False)
    one_error(result, 1, ref, "zstd layers need python package zstandard")
    assert ref not in images(nspod) and layer_dirs(nspod) == [] and not leftovers(nspod)
    result = nspod("image", "import", "zl", zlayout, env=env, check=False)
    one_error(result, 1, "zstd layers need python package zstandard")


def test_an_oci_layout_with_zstd_layers_imports(nspod, zstd_image):
    if subprocess.run([sys.executable, "-c", "import zstandard"]).returncode:
        pytest.skip("python package zstandard is not installed (pip install nspod[zstd])")
    _, _, zlayout = zstd_image
    nspod("image", "import", "zl", zlayout)
    root = os.path.join(nspod.root, "images", "zl:latest", "rootfs")
    assert open(os.path.join(root, "zstd-was-here")).read() == "yes\n"


def test_a_zstd_layer_is_bounded_as_a_gzip_one(nspod, zstd_image):
    registry, ref, _ = zstd_image
    if subprocess.run([sys.executable, "-c", "import zstandard"]).returncode:
        pytest.skip("python package zstandard is not installed (pip install nspod[zstd])")
    env = dict(insecure(nspod, registry.host), NSPOD_UNPACK_LIMITS="layer-bytes=64K")
    result = nspod("image", "pull", ref, env=env, check=False)
    one_error(result, 1, ref, "unpacks to more than 65536 bytes", "layer-bytes=65536")
    assert ref not in images(nspod) and layer_dirs(nspod) == [] and not leftovers(nspod)

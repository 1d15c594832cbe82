"""What the CLI prints and the documents its flags stand for, tested without click or root
(api/render.py, api/manifests.py, errors.ExitCode)."""
import time

import pytest

from nsPod.api import manifests, render
from nsPod.errors import ExitCode, InputError, NspodError, SpecError
from nsPod.manifest.quantity import format_bytes

Mi = 1 << 20


def test_exit_codes_keep_their_numbers():
    """docs/interface.md's exit codes: 0 ok, 1 failure, 2 bad input; 126/127 as a shell."""
    assert [int(c) for c in ExitCode] == [0, 1, 2, 126, 127, 130]
    assert NspodError("x").exit_code is ExitCode.FAILURE == 1
    assert SpecError(["a: b"]).exit_code is ExitCode.INPUT == 2


def test_one_byte_formatter_exact_and_readable():
    assert format_bytes(1536 * Mi) == "1536Mi"                      # a quantity, exact
    assert format_bytes(1536 * Mi, readable=True) == "1.5Gi"        # for a person
    assert format_bytes(2048 * Mi - 1, readable=True) == "~2Gi"
    assert render.size(None) == "-" and render.size(512 * Mi) == "512Mi"


def test_table_pads_columns_and_strips_the_last():
    assert render.table([("NAME", "IP"), ("a-long-name", "-")]) == \
        "NAME          IP\na-long-name   -"


def test_age(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1_000_000_000 + 3 * 86400 + 5)
    assert render.age("2001-09-09T01:46:40Z") == "3d"
    assert render.age(None) == "-" and render.age("yesterday") == "-"


def test_pods_table_counts_ready_and_restarts():
    item = {"metadata": {"name": "web"},
            "status": {"phase": "Running", "podIP": "10.89.0.2",
                       "containerStatuses": [{"ready": True, "restartCount": 2},
                                             {"ready": False, "restartCount": 1}]}}
    lines = render.pods_table([item]).splitlines()
    assert lines[1].split() == ["web", "Running", "1/2", "3", "10.89.0.2", "-"]


def test_failed_containers_names_the_exit_codes():
    st = {"containerStatuses": [
        {"name": "a", "state": {"terminated": {"exitCode": 3, "reason": "Error",
                                               "message": "boom"}}},
        {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
    assert render.failed_containers(st) == "container a Error (exit code 3): boom"
    assert render.failed_containers({}) == "see nspod inspect"


def test_applied_lines():
    assert render.applied("web", []) == "pod web: unchanged"
    assert render.applied("web", [("a", ["image", "env"])]) == \
        "pod web: container a restarted (image, env changed)"


def test_create_manifest_from_flags():
    doc = manifests.create_manifest("web", "512Mi", ["cache:64Mi", "scratch"],
                                    "net,ipc,uts,pid", "h", "none")
    assert doc["metadata"] == {"name": "web", "annotations": {"nspod.io/network": "none"}}
    assert doc["spec"]["shareProcessNamespace"] is True
    assert doc["spec"]["volumes"] == [
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "scratch", "emptyDir": {"medium": "Memory"}}]


@pytest.mark.parametrize("share,message", [
    ("net,ipc,uts,time", "--share: unknown namespace kind(s) time"),
    ("net,ipc", "--share: 'net,ipc': a pod's containers always share net, ipc and uts"),
])
def test_create_manifest_refuses_bad_share(share, message):
    with pytest.raises(InputError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        manifests.create_manifest("web", None, [], share, None, None)


@pytest.mark.parametrize("kwargs,message", [
    ({"env": ["NOEQUALS"]}, "--env: 'NOEQUALS' is not K=V"),
    ({"mounts": ["data"]}, "--mount: 'data' is not V:PATH or V:PATH:ro"),
    ({"mounts": ["data:/d:rx"]}, "--mount: 'data:/d:rx' is not V:PATH or V:PATH:ro"),
])
def test_add_container_doc_names_the_bad_flag(kwargs, message):
    args = {"name": "c", "memory": None, "mounts": [], "env": [], "restart": None,
            "workdir": None, "image": None, "command": ["true"], **kwargs}
    with pytest.raises(InputError) as info:
        manifests.add_container_doc(**args)
    assert str(info.value) == message


def test_container_for_add_refuses_restart_without_init():
    with pytest.raises(InputError, match="^--restart: only init containers"):
        manifests.container_for_add("web", "c", False, None, [], [], "Always", None, None,
                                    ["true"])
    doc = manifests.container_for_add("web", "c", True, "64Mi", ["v:/v:ro"], ["A=1"], "Always",
                                      "/w", "img", ["sh", "-c", "x"])
    assert doc == {"name": "c", "command": ["sh", "-c", "x"], "image": "img",
                   "workingDir": "/w", "restartPolicy": "Always",
                   "resources": {"limits": {"memory": "64Mi"}},
                   "env": [{"name": "A", "value": "1"}],
                   "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": True}]}

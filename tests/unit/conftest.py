"""Unit tests keep to their tmp_path: the host-wide registry of state roots too."""
import pytest

from nsPod.kernel import paths


@pytest.fixture(autouse=True)
def private_root_registry(tmp_path_factory, monkeypatch):
    monkeypatch.setattr(paths, "REGISTRY", str(tmp_path_factory.mktemp("registry") / "roots"))


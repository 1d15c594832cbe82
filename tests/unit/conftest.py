"""Unit tests keep to their tmp_path: the host-wide registry of state roots too."""
import pytest

from nsPod.kernel import root_registry


@pytest.fixture(autouse=True)
def private_root_registry(tmp_path_factory, monkeypatch):
    monkeypatch.setattr(root_registry, "REGISTRY", str(tmp_path_factory.mktemp("registry") / "roots"))


"""qos_class against the cases of Kubernetes' ComputePodQOS (pkg/apis/core/helper/qos)."""
import pytest

from nsPod.manifest.qos import qos_class

Mi = 1 << 20


def both(cpu, memory):
    return {"cpu": cpu, "memory": memory}


@pytest.mark.parametrize("containers,expected", [
    ([], "BestEffort"),
    ([({}, {})], "BestEffort"),
    ([(None, None), ({}, {})], "BestEffort"),
    # zero quantities do not count
    ([({"cpu": 0, "memory": 0}, {"cpu": 0})], "BestEffort"),
    # only other resources do not count either
    ([({"ephemeral-storage": 5}, {})], "BestEffort"),
    ([(both(100, 100 * Mi), both(100, 100 * Mi))], "Guaranteed"),
    # requests default to limits when only limits are given
    ([(both(100, 100 * Mi), {})], "Guaranteed"),
    ([(both(100, 100 * Mi), None), (both(200, 50 * Mi), {"cpu": 200})], "Guaranteed"),
    # an explicit zero request is not replaced by the limit
    ([(both(100, 100 * Mi), {"cpu": 0})], "Burstable"),
    ([(both(100, 100 * Mi), both(50, 100 * Mi))], "Burstable"),
    ([({"memory": 100 * Mi}, {})], "Burstable"),
    ([({}, {"cpu": 10})], "Burstable"),
    # one best-effort container makes a limited pod burstable
    ([(both(100, 100 * Mi), {}), ({}, {})], "Burstable"),
    # init containers count like the others
    ([(both(100, 100 * Mi), {}), ({"memory": Mi}, {})], "Burstable"),
    # Kubernetes compares pod-wide sums, not container by container
    ([(both(100, 100 * Mi), both(50, 100 * Mi)), (both(100, 100 * Mi), both(150, 100 * Mi))],
     "Guaranteed"),
])
def test_qos_class(containers, expected):
    assert qos_class(containers) == expected

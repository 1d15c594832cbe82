"""The cgroups lab (v1 and v2 side by side) in --check mode: on this host whatever its
hierarchy, and again in the cgroup v2 tier's guest (tests/vm/run-tier.sh lists this file)."""
from test_labs import run_checked


def test_cgroups_lab_on_this_kernel(nspod):
    run_checked(nspod, "cgroups")

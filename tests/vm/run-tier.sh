#!/bin/sh
# The cgroup v2 tier: the cgroup, limit and device allowlist tests and the cgroups lab
# again, inside a User-Mode-Linux guest whose kernel has a pure cgroup v2 hierarchy. One
# boot for the whole focused suite (fork-heavy code is 10-40x slower there). run.sh prints
# "SKIP cgroup v2 tier: <reason>" and exits 0 where UML cannot be had.
set -eu
cd "$(dirname "$0")/../.."
echo "== cgroup v2 tier (User-Mode-Linux guest) =="
NSPOD_VM_MEM=${NSPOD_VM_MEM:-3G} exec bash tests/vm/run.sh .venv/bin/python -P -m pytest -p no:cacheprovider -q \
    tests/integration/test_cgroups_real.py tests/integration/test_limits.py \
    tests/integration/test_devices.py tests/integration/test_lab_cgroups.py

#!/bin/sh
# The whole test suite, from a fresh Debian machine: installs what it needs (apt, pip), then
# runs the unit tests, the integration tests (root, real kernel), and the cgroup v2 tier
# inside a User-Mode-Linux guest. Run as root from a checkout: sh tests/run.sh
set -eu
cd "$(dirname "$0")/.."
sh examples/install.sh
if ! command -v linux.uml >/dev/null || ! command -v busybox >/dev/null || ! command -v file >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        user-mode-linux busybox-static file || echo "tests/run.sh: could not install the cgroup v2 tier's packages; it will say why it skips"
fi
# The registry tests (tests/integration/test_registry.py): a real distribution registry, skopeo
# to push to it, htpasswd for its basic auth, openssl to sign its bearer tokens.
if ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null || ! command -v htpasswd >/dev/null || ! command -v openssl >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        docker-registry skopeo apache2-utils openssl || echo "tests/run.sh: could not install docker-registry, skopeo and apache2-utils; the registry tests will say why they skip"
fi
# The CRI tests (tests/integration/test_cri_*.py, tests/cri/run-critest.sh): crictl and critest
# of cri-tools v1.34.0, built with Go from the Go module proxy when Go is there.
NSPOD_GO=${NSPOD_GO:-/var/cache/nspod-go}
if command -v go >/dev/null && [ ! -x "$NSPOD_GO/bin/crictl" ]; then
    GOPATH=$NSPOD_GO/path GOBIN=$NSPOD_GO/bin GOCACHE=$NSPOD_GO/cache \
        go install sigs.k8s.io/cri-tools/cmd/crictl@v1.34.0 || echo "tests/run.sh: could not build crictl; the CRI tests will say why they skip"
fi
[ -x "$NSPOD_GO/bin/crictl" ] && export CRICTL="$NSPOD_GO/bin/crictl"
# -P: test the installed package (the wheel pip built), not the source tree on sys.path.
.venv/bin/python -P -m pytest -p no:cacheprovider "$@" tests/unit tests/integration
# critest against `nspod cri`: its output and pass/fail/skip counts (informative: a runtime
# is judged by the share it passes, listed in docs/design.md, not by critest's exit status).
GOPATH=$NSPOD_GO/path GOBIN=$NSPOD_GO/bin GOCACHE=$NSPOD_GO/cache sh tests/cri/run-critest.sh | tail -n 40 || true
if [ -x tests/vm/run-tier.sh ]; then
    sh tests/vm/run-tier.sh
fi

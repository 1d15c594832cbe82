#!/bin/sh
# critest v1.34.0 against `nspod cri` (tests/cri/run_critest.py does the world: root, cgroup,
# bridge, local registry with busybox-static test images). Builds critest with Go if missing.
# Prints critest's output and a line of pass/fail/skip counts. Run as root from a checkout.
set -eu
cd "$(dirname "$0")/../.."
VERSION=v1.34.0
GOBIN=${GOBIN:-/var/cache/nspod-go/bin}
export GOPATH=${GOPATH:-/var/cache/nspod-go/path} GOCACHE=${GOCACHE:-/var/cache/nspod-go/cache}
CRITEST=${CRITEST:-$GOBIN/critest}
if [ ! -x "$CRITEST" ]; then
    command -v go >/dev/null || { echo "run-critest.sh: no critest and no Go to build it: skipped"; exit 0; }
    mkdir -p "$GOBIN"
    # critest is a Go test binary (cmd/critest has only _test.go files): go test -c builds it.
    go mod download sigs.k8s.io/cri-tools@$VERSION
    (cd "$GOPATH/pkg/mod/sigs.k8s.io/cri-tools@$VERSION" && GOFLAGS=-mod=mod go test -c -o "$CRITEST" ./cmd/critest)
fi
exec .venv/bin/python -P tests/cri/run_critest.py "$CRITEST" "$@"

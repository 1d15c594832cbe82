#!/bin/sh
# Installs nspod (system packages, a virtualenv in .venv, the package itself) and runs the
# demo pod: the app + log collector pair of examples/app-logcollector.yaml. Run as root from
# a checkout: sh examples/demo.sh
set -eu
cd "$(dirname "$0")/.."
sh examples/install.sh
export PATH="$PWD/.venv/bin:$PATH"
set -x
nspod rm -f demo >/dev/null
nspod run --wait examples/app-logcollector.yaml
sleep 2
nspod ps
nspod logs demo logcollector --tail 5
nspod ns demo
nspod exec demo -c logcollector -- ls -l /logs
nspod rm -f demo

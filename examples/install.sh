#!/bin/sh
# Installs what building and running nspod needs on Debian/Ubuntu, then nspod itself into
# .venv (editable, so the checkout is what runs). Safe to run again.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
need=""
command -v cc >/dev/null || need="$need gcc libc6-dev"
command -v musl-gcc >/dev/null || need="$need musl-tools"
[ -e /usr/include/sys/capability.h ] || need="$need libcap-dev"
python3 -c 'import ensurepip, venv' 2>/dev/null || need="$need python3-venv"
python3 -c 'import sysconfig, os; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null || need="$need python3-dev"
command -v unshare >/dev/null || need="$need util-linux"
command -v ip >/dev/null || need="$need iproute2"
# seccomp (RuntimeDefault): pyseccomp drives the system's libseccomp, found through ldconfig.
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2 ' || need="$need libseccomp2"
# The image and security tests build their busybox root filesystems from /bin/busybox.
[ -x /bin/busybox ] || need="$need busybox-static"
if [ -n "$need" ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# A regular install (with build isolation, as a user's `pip install .`): the wheel must carry
# the cffi extension and pause, and pip leaves bytecode compiled. (An editable install would
# add an import-hook finder that every nspod process pays for at start.)
.venv/bin/python -m pip install -q --upgrade ".[test]"

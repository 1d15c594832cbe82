#!/usr/bin/env bash
# tests/vm/run.sh - run a command in a throwaway User-Mode-Linux kernel with a pure
# cgroup v2 hierarchy (cpu, io, memory, pids enabled at the root), for nspod's cgroup v2
# test tier on hosts that are cgroup v1 or hybrid.
#
# usage: tests/vm/run.sh [--mem SIZE] [--timeout SEC] [--rw PATH]... [--keep] [--] CMD [ARG]...
#   --mem SIZE     guest RAM (default: $NSPOD_VM_MEM or 1G)
#   --timeout SEC  kill the guest after SEC seconds (default: $NSPOD_VM_TIMEOUT or 1800)
#   --rw PATH      also make host PATH writable in the guest (repeatable)
#   --keep         keep the job directory (debugging)
# The guest sees the host's / read-only with a tmpfs overlay on top (writes vanish at the
# end), the current directory read-write at the same path, only `lo` as network, and the
# host's environment plus NSPOD_VM=1. CMD runs as root in the root cgroup (0::/).
# NSPOD_VM_MODULES: comma list of kernel modules to load at boot (default ipv6,veth,bridge;
# others load on demand through guest-modprobe.sh).
#
# Exit status: CMD's; 124 on timeout; 125 when the guest reported none (its console log is
# then printed); 2 on bad usage. When User-Mode-Linux cannot be had (not root, no apt-get,
# install failed) it prints "SKIP cgroup v2 tier: <reason>" and exits 0: the caller decides
# whether a skipped tier is acceptable.
# Needs Debian's user-mode-linux and busybox-static; installs them with apt-get if missing.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
MEM=${NSPOD_VM_MEM:-1G}
TIMEOUT=${NSPOD_VM_TIMEOUT:-1800}
RW=()
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --mem) MEM=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --rw) RW+=("$(cd "$2" && pwd -P)"); shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        --) shift; break ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: tests/vm/run.sh [options] [--] CMD [ARG]..." >&2; exit 2; }

skip() { echo "SKIP cgroup v2 tier: $*"; exit 0; }

# The guest reads the host's files with the rights of whoever runs linux.uml, and the
# command must be root inside: only root on the host makes both agree.
[ "$(id -u)" = 0 ] || skip "tests/vm/run.sh needs root"

have_uml() { command -v linux.uml >/dev/null && command -v busybox >/dev/null; }
if ! have_uml; then
    command -v apt-get >/dev/null || skip "linux.uml or busybox missing and no apt-get to install user-mode-linux busybox-static"
    echo "run.sh: installing user-mode-linux busybox-static (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # a fresh machine's package lists may be empty or stale: update, then install
    apt_log=$(mktemp /tmp/nspod-vm-apt.XXXXXX)
    { apt-get update && apt-get install -y --no-install-recommends user-mode-linux busybox-static; } \
        > "$apt_log" 2>&1 || true
    apt_last=$(tail -n1 "$apt_log"); rm -f "$apt_log"
    have_uml || skip "could not install user-mode-linux busybox-static with apt-get ($apt_last)"
fi
KVER=$(linux.uml --version 2>/dev/null | tail -n1 || true)
[ -d "/usr/lib/uml/modules/$KVER" ] || skip "no UML module tree at /usr/lib/uml/modules/$KVER"

if [ "$(pwd -P)" = / ]; then
    echo "run.sh: refusing to run from / (it would be mounted read-write in the guest)" >&2
    exit 2
fi
for p in "$(pwd -P)" "${RW[@]}"; do          # hostfs mount options cannot carry these
    case "$p" in *[[:space:],]*) echo "run.sh: path with a space or comma not supported: $p" >&2; exit 2 ;; esac
done

# A host CPU with AMX: UML 6.1 cannot keep the guest's XSAVE state there (uml-fxsave.py), so
# it runs with the legacy FP regset and the guest's glibc and OpenSSL without AVX.
UML=(linux.uml)
GUEST_ENV=()
if grep -qw amx_tile /proc/cpuinfo; then
    py=$VM_DIR/../../.venv/bin/python
    "$py" -c 'import pyseccomp' 2>/dev/null \
        || skip "the CPU has AMX: UML needs $VM_DIR/uml-fxsave.py, run by a .venv with pyseccomp"
    UML=("$py" "$VM_DIR/uml-fxsave.py" linux.uml)
    export GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX2,-AVX,-AVX_Fast_Unaligned_Load,-FMA,-XSAVE
    export OPENSSL_ia32cap='~0x1000000000000000:0'
    # on the kernel's command line: the guest's init (busybox) needs them too
    GUEST_ENV=("GLIBC_TUNABLES=$GLIBC_TUNABLES" "OPENSSL_ia32cap=$OPENSSL_ia32cap")
fi

JOB=$(mktemp -d /tmp/nspod-vm.XXXXXX)
cleanup() { if [ "$KEEP" = 1 ]; then echo "run.sh: job dir kept: $JOB" >&2; else rm -rf "$JOB"; fi; }
trap cleanup EXIT

q() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }   # single-quote for /bin/sh
pwd -P > "$JOB/cwd"
printf '%s\n' "${RW[@]}" > "$JOB/rw"
{
    while IFS= read -r name; do
        case "$name" in
            PWD|OLDPWD|SHLVL|_|TERM|HOSTNAME|DISPLAY|TMUX|TMUX_PANE|SSH_*|BASH_*|COLUMNS|LINES) continue ;;
        esac
        [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
        printf 'export %s=%s\n' "$name" "$(q "${!name}")"
    done < <(compgen -e)
    echo "export TERM=dumb NSPOD_VM=1"
} > "$JOB/env"
{ for a in "$@"; do q "$a"; printf ' '; done; echo; } > "$JOB/cmd"

# guest stdout/stderr: serial lines ttyS0/ttyS1 -> fds 3/4; kernel console -> console.log.
# setsid + timeout --kill-after: a hung guest is killed as a whole process group.
set +e
timeout --kill-after=10 "$TIMEOUT" setsid "${UML[@]}" \
    mem="$MEM" root=/dev/root rootfstype=hostfs rootflags=/ ro ${GUEST_ENV[@]+"${GUEST_ENV[@]}"} \
    init="$VM_DIR/guest-init.sh" loglevel=4 \
    con=null con0=null,fd:5 ssl=null ssl0=null,fd:3 ssl1=null,fd:4 \
    NSPOD_VM_JOB="$JOB" NSPOD_VM_DIR="$VM_DIR" ${NSPOD_VM_MODULES:+NSPOD_VM_MODULES="$NSPOD_VM_MODULES"} \
    < /dev/null 3>&1 4>&2 5> "$JOB/console.log" 2> "$JOB/uml.log" &
vm_pid=$!
got_sig=0
# TERM/INT/HUP: timeout passes TERM on to linux.uml, which shuts the guest down
trap 'got_sig=1; kill -TERM "$vm_pid" 2>/dev/null' TERM INT HUP
while :; do
    wait "$vm_pid"; vm_rc=$?
    kill -0 "$vm_pid" 2>/dev/null || break   # wait returned for a trapped signal
done
trap - TERM INT HUP
set -e
if [ "$got_sig" = 1 ]; then
    echo "run.sh: interrupted" >&2
    exit 143
fi
if [ -s "$JOB/rc" ]; then
    exit "$(cat "$JOB/rc")"
fi
if [ "$vm_rc" = 124 ] || [ "$vm_rc" = 137 ]; then
    echo "run.sh: timed out after ${TIMEOUT}s" >&2
    exit 124
fi
echo "run.sh: the guest reported no exit status (linux.uml exit $vm_rc); UML log and console:" >&2
cat "$JOB/uml.log" "$JOB/console.log" >&2
exit 125

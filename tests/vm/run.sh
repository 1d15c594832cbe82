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
# then printed); 2 on bad usage. When no User-Mode-Linux kernel can run here (not root, no
# apt-get, install or download failed, no kernel boots on this CPU) it prints
# "SKIP cgroup v2 tier: <reason>" and exits 0: the caller decides whether a skipped tier
# is acceptable.
#
# Which kernel: Debian's user-mode-linux (installed with apt-get if missing, with
# busybox-static) when it boots on this host. Older UML kernels (bookworm's 6.1, trixie's
# 6.12) panic at their first user process on CPUs with AMX ("ptrace set fp regs failed,
# errno = 14": the host's PTRACE_SETREGSET NT_X86_XSTATE wants the whole xstate area, which
# AMX makes larger than they know). So each kernel is first probe-booted once with a tiny
# init, and the verdict cached per kernel binary, host kernel and CPU in
# $NSPOD_UML_CACHE/verdict/ (default /var/cache/nspod-uml). If the installed kernel cannot
# boot, run.sh downloads Debian sid's user-mode-linux and libc6 with a private apt source
# list (the system's apt configuration is not touched), unpacks both into
# $NSPOD_UML_CACHE/<version>/root, points the kernel at that libc with patchelf (installed
# with apt-get if missing; running it through ld.so --library-path makes UML miscompute its
# memory) and uses it, with its own module tree from the cache. The cache entry appears by
# one rename, so a killed download leaves nothing half-made; later runs reuse it offline.
# NSPOD_UML_SID_SOURCE replaces the source line (default: deb http://deb.debian.org/debian
# sid main). Remove the cache directory to drop the kernel and the verdicts.
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
        -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
        --) shift; break ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: tests/vm/run.sh [options] [--] CMD [ARG]..." >&2; exit 2; }

skip() { echo "SKIP cgroup v2 tier: $*"; exit 0; }

if [ "$(pwd -P)" = / ]; then
    echo "run.sh: refusing to run from / (it would be mounted read-write in the guest)" >&2
    exit 2
fi
for p in "$(pwd -P)" "${RW[@]}"; do          # hostfs mount options cannot carry these
    case "$p" in *[[:space:],]*) echo "run.sh: path with a space or comma not supported: $p" >&2; exit 2 ;; esac
done

# The guest reads the host's files with the rights of whoever runs linux.uml, and the
# command must be root inside: only root on the host makes both agree.
[ "$(id -u)" = 0 ] || skip "tests/vm/run.sh needs root"

export DEBIAN_FRONTEND=noninteractive
CACHE=${NSPOD_UML_CACHE:-/var/cache/nspod-uml}
SID_SOURCE=${NSPOD_UML_SID_SOURCE:-deb http://deb.debian.org/debian sid main}
# its paths go on the kernel command line (init=, module tree), which splits at spaces
case "$CACHE" in /*) ;; *) echo "run.sh: NSPOD_UML_CACHE must be an absolute path: $CACHE" >&2; exit 2 ;; esac
case "$CACHE" in *[[:space:],]*) echo "run.sh: NSPOD_UML_CACHE with a space or comma is not supported: $CACHE" >&2; exit 2 ;; esac
TMPS=()                                     # temporary dirs removed at exit
JOB=
cleanup() {
    [ ${#TMPS[@]} = 0 ] || rm -rf "${TMPS[@]}"
    [ -n "$JOB" ] || return 0
    if [ "$KEEP" = 1 ]; then echo "run.sh: job dir kept: $JOB" >&2; else rm -rf "$JOB"; fi
}
trap cleanup EXIT

# apt-get install, updating the package lists first when a plain install fails (a fresh
# machine's lists may be empty or stale). Prints apt's last line on failure.
apt_install() {
    local log rc=0
    log=$(mktemp /tmp/nspod-vm-apt.XXXXXX)
    { apt-get install -y -q --no-install-recommends "$@" ||
      { apt-get update -q && apt-get install -y -q --no-install-recommends "$@"; }; } > "$log" 2>&1 || rc=$?
    [ "$rc" = 0 ] || tail -n1 "$log"
    rm -f "$log"
    return "$rc"
}

if ! command -v linux.uml >/dev/null || ! command -v busybox >/dev/null; then
    command -v apt-get >/dev/null || skip "linux.uml or busybox missing and no apt-get to install user-mode-linux busybox-static"
    echo "run.sh: installing user-mode-linux busybox-static (apt-get)" >&2
    # user-mode-linux may be missing from this release; sid's is tried below without it
    why=$(apt_install user-mode-linux busybox-static) || why=$(apt_install busybox-static) || true
    command -v busybox >/dev/null || skip "could not install busybox-static with apt-get ($why)"
fi

# What decides whether a UML kernel boots: its binary, the host kernel's ptrace, the CPU's
# xstate features. A verdict is cached under a hash of all three.
cpu_id() { uname -r; grep -m1 '^flags' /proc/cpuinfo; grep -m1 '^model name' /proc/cpuinfo; }

# probe BIN: boot BIN once with an init that prints a marker and powers off. Sets PROBE to
# ok, fpregs (the AMX panic) or another one-line reason; ok and fpregs are cached.
probe() {
    local bin=$1 key vfile dir
    key=$( { sha256sum < "$bin"; cpu_id; } | sha256sum | cut -c1-32)
    vfile=$CACHE/verdict/$key
    if [ -s "$vfile" ]; then PROBE=$(cat "$vfile"); return; fi
    # the probe's init lives in the cache: /tmp may be mounted noexec
    mkdir -p "$CACHE"
    dir=$(mktemp -d "$CACHE/.probe.XXXXXX"); TMPS+=("$dir")
    printf '%s\n' '#!/bin/sh' 'echo NSPOD_UML_PROBE_OK' 'mount -t proc proc /proc' \
        'echo o > /proc/sysrq-trigger' 'sleep 10' > "$dir/init"
    chmod 755 "$dir/init"
    # a UML panic aborts the process: no core file
    # (the subshell's stderr: bash's "Aborted" line for such a panic)
    ( ulimit -c 0; timeout --kill-after=5 60 setsid "$bin" mem=64M root=/dev/root rootfstype=hostfs \
        rootflags=/ ro init="$dir/init" con=null con0=null,fd:1 ssl=null < /dev/null > "$dir/out" 2>&1 ) 2>/dev/null || true
    if grep -q '^NSPOD_UML_PROBE_OK' "$dir/out"; then PROBE=ok
    elif grep -q 'ptrace set fp regs failed' "$dir/out"; then PROBE=fpregs
    else PROBE="probe boot failed: $(grep -v '^[[:space:]]*$' "$dir/out" | tail -n1)"; return
    fi
    mkdir -p "$CACHE/verdict"
    echo "$PROBE" > "$vfile.$$" && mv -f "$vfile.$$" "$vfile"
}
why_not() {    # a reason for the SKIP line
    case "$1" in
        fpregs) echo "it panics on this CPU (ptrace set fp regs failed: AMX xstate too large for it)" ;;
        *) echo "$1" ;;
    esac
}

# fetch_sid: download Debian sid's user-mode-linux and libc6 into $CACHE/<version>, made in
# a temporary directory and renamed into place. On error sets FETCH_WHY and fails.
fetch_sid() {
    local t apt ver x interp libc
    command -v apt-get >/dev/null || { FETCH_WHY="no apt-get"; return 1; }
    if ! command -v patchelf >/dev/null; then
        echo "run.sh: installing patchelf (apt-get)" >&2
        FETCH_WHY=$(apt_install patchelf) || { FETCH_WHY="could not install patchelf with apt-get ($FETCH_WHY)"; return 1; }
    fi
    mkdir -p "$CACHE"
    find "$CACHE" -maxdepth 1 -name '.fetch.*' -mmin +120 -exec rm -rf {} + 2>/dev/null || true
    t=$(mktemp -d "$CACHE/.fetch.XXXXXX"); TMPS+=("$t")
    chmod 755 "$t"                          # apt fetches as user _apt where it can
    mkdir -p "$t/lists/partial" "$t/archives/partial" "$t/deb"
    echo "$SID_SOURCE" > "$t/sources.list"
    apt=(apt-get -q -o Dir::Etc::sourcelist="$t/sources.list" -o Dir::Etc::sourceparts=-
         -o Dir::State::Lists="$t/lists" -o Dir::Cache::archives="$t/archives")
    echo "run.sh: downloading Debian sid's user-mode-linux and libc6 into $CACHE" >&2
    # apt-get update may "succeed" having fetched nothing; download would then fall back on
    # the installed versions: insist on sid's lists and on packages from sid
    "${apt[@]}" update > "$t/apt.log" 2>&1 || { FETCH_WHY="apt-get update failed: $(tail -n1 "$t/apt.log")"; return 1; }
    ls "$t/lists/" | grep -q '_Packages' ||
        { FETCH_WHY="apt-get update got no package list from '$SID_SOURCE': $(grep -E -m1 '^(E:|W: Failed)' "$t/apt.log" || tail -n1 "$t/apt.log")"; return 1; }
    (cd "$t/deb" && "${apt[@]}" download user-mode-linux/sid libc6/sid) >> "$t/apt.log" 2>&1 ||
        { FETCH_WHY="apt-get download failed: $(tail -n1 "$t/apt.log")"; return 1; }
    ver=$(dpkg-deb -f "$t"/deb/user-mode-linux_*.deb Version) || { FETCH_WHY="bad user-mode-linux .deb"; return 1; }
    ver=${ver//:/_}                         # an epoch's colon, kept out of paths
    case "$ver" in *[!A-Za-z0-9._+~-]*|''|.*) FETCH_WHY="odd user-mode-linux version '$ver'"; return 1 ;; esac
    x=$t/root
    for d in "$t"/deb/*.deb; do dpkg-deb -x "$d" "$x" || { FETCH_WHY="dpkg-deb -x $d failed"; return 1; }; done
    rm -rf "$x/usr/share"
    # patched to where its libc will be once $t is renamed to $CACHE/$ver
    interp=$(patchelf --print-interpreter "$x/usr/bin/linux.uml") || { FETCH_WHY="patchelf failed"; return 1; }
    if [ -e "$x/usr$interp" ]; then interp=/usr$interp; fi
    [ -e "$x$interp" ] || { FETCH_WHY="no $interp in sid's libc6"; return 1; }
    libc=$(cd "$x" && find usr/lib -name libc.so.6 | head -n1)
    [ -n "$libc" ] || { FETCH_WHY="no libc.so.6 in sid's libc6"; return 1; }
    cp "$x/usr/bin/linux.uml" "$t/linux.uml"
    patchelf --set-interpreter "$CACHE/$ver/root$interp" --set-rpath "$CACHE/$ver/root/$(dirname "$libc")" \
        "$t/linux.uml" || { FETCH_WHY="patchelf on linux.uml failed"; return 1; }
    rm -rf "$t/deb" "$t/lists" "$t/archives" "$t/sources.list"
    # apt.log stays: where this kernel came from
    # another run.sh may have made the same version meanwhile: then keep that one
    mv -T "$t" "$CACHE/$ver" 2>/dev/null || [ -x "$CACHE/$ver/linux.uml" ] ||
        { FETCH_WHY="could not rename $t to $CACHE/$ver"; return 1; }
    FETCHED=$ver
}

# Candidates in order: the installed kernel, then cached sid kernels (newest first), then a
# fresh download. The first whose probe boots wins.
UML= MODS= REASONS=()
reasons() { local r out=; for r in "${REASONS[@]}"; do out+="${out:+; }$r"; done; echo "$out"; }
try() {    # try BIN MODULE_ROOT LABEL
    local bin=$1 kver
    kver=$("$bin" --version 2>/dev/null | tail -n1 || true)
    if [ -z "$kver" ] || [ ! -d "$2/$kver" ]; then REASONS+=("$3: no module tree $2/$kver"); return 1; fi
    probe "$bin"
    if [ "$PROBE" = ok ]; then UML=$bin MODS=$2/$kver KVER=$kver; return 0; fi
    REASONS+=("$3 ($kver): $(why_not "$PROBE")")
    return 1
}
found=0
if command -v linux.uml >/dev/null; then
    try "$(command -v linux.uml)" /usr/lib/uml/modules "installed user-mode-linux" && found=1
fi
if [ "$found" = 0 ] && [ -d "$CACHE" ]; then
    for d in $(cd "$CACHE" && ls -d -- */ 2>/dev/null | sed 's,/$,,' | grep -v '^verdict$' | sort -rV); do
        [ -x "$CACHE/$d/linux.uml" ] || continue
        try "$CACHE/$d/linux.uml" "$CACHE/$d/root/usr/lib/uml/modules" "cached sid user-mode-linux $d" && found=1 && break
    done
fi
if [ "$found" = 0 ]; then
    FETCHED= FETCH_WHY=
    if fetch_sid; then
        try "$CACHE/$FETCHED/linux.uml" "$CACHE/$FETCHED/root/usr/lib/uml/modules" "sid user-mode-linux $FETCHED" && found=1
    else
        REASONS+=("fetching Debian sid's user-mode-linux: $FETCH_WHY")
    fi
fi
if [ "$found" = 0 ]; then
    skip "no User-Mode-Linux kernel boots here: $(reasons)"
fi
[ ${#REASONS[@]} = 0 ] || echo "run.sh: using $UML ($KVER); $(reasons)" >&2

JOB=$(mktemp -d /tmp/nspod-vm.XXXXXX)

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
timeout --kill-after=10 "$TIMEOUT" setsid "$UML" \
    mem="$MEM" root=/dev/root rootfstype=hostfs rootflags=/ ro \
    init="$VM_DIR/guest-init.sh" loglevel=4 \
    con=null con0=null,fd:5 ssl=null ssl0=null,fd:3 ssl1=null,fd:4 \
    NSPOD_VM_JOB="$JOB" NSPOD_VM_DIR="$VM_DIR" NSPOD_VM_MODDIR="$MODS" ${NSPOD_VM_MODULES:+NSPOD_VM_MODULES="$NSPOD_VM_MODULES"} \
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

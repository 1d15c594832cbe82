#!/bin/sh
# PID 1 of the User-Mode-Linux guest started by tests/vm/run.sh. The kernel hands over
# NSPOD_VM_JOB, NSPOD_VM_DIR and NSPOD_VM_MODDIR (this kernel's module tree on the host:
# Debian's /usr/lib/uml/modules/<release>, or one in run.sh's download cache) from its
# command line. The guest's / is the host's / over
# hostfs, read-only; everything below is built inside the guest and vanishes with it.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
J=$NSPOD_VM_JOB
KVER=$(uname -r)
MODS=${NSPOD_VM_MODDIR:-/usr/lib/uml/modules/$KVER}
# no rc file on failure: run.sh then exits 125 and prints the console log
fail() { echo "nspod-vm init: $*" >&2; sync; echo o > /proc/sysrq-trigger; sleep 10; }

mount -t proc proc /proc
mount -t tmpfs -o mode=755 tmpfs /run
# modules on demand (veth, bridge, ...) from the kernel's module tree; the kernel runs
# modprobe with an environment of its own, so the tree's path goes through a file
echo "$MODS" > /run/nspod-vm-moddir
echo "$NSPOD_VM_DIR/guest-modprobe.sh" > /proc/sys/kernel/modprobe
IFS=,; set -- overlay ${NSPOD_VM_MODULES:-ipv6,veth,bridge}; IFS=' '
"$NSPOD_VM_DIR/guest-modprobe.sh" "$@" || echo "nspod-vm init: some of $* did not load" >&2

# a writable root: the read-only host root under a tmpfs upper layer
mkdir -p /run/ovl
mount -t tmpfs tmpfs /run/ovl
mkdir -p /run/ovl/upper /run/ovl/work /run/ovl/root
R=/run/ovl/root
mount -t overlay overlay -o lowerdir=/,upperdir=/run/ovl/upper,workdir=/run/ovl/work "$R" \
    || fail "overlay root failed"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t devtmpfs devtmpfs "$R/dev"
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=755 tmpfs "$R/run"
# pure cgroup v2, mounted as systemd mounts it, every controller handed to the root's children
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 "$R/sys/fs/cgroup" \
    || fail "cgroup2 mount failed"
for c in $(cat "$R/sys/fs/cgroup/cgroup.controllers"); do
    echo "+$c" > "$R/sys/fs/cgroup/cgroup.subtree_control" 2>/dev/null
done
mkdir -p "$R/lib/modules/$KVER" && mount -t hostfs -o "$MODS" hostfs "$R/lib/modules/$KVER"
mkdir -p "$R/run/nspod-vm/job"
mount -t hostfs -o "$J" hostfs "$R/run/nspod-vm/job" || fail "job dir mount failed"
CWD=$(cat "$J/cwd")
for p in "$CWD" $(cat "$J/rw"); do          # the read-write host directories
    mkdir -p "$R$p" && mount -t hostfs -o "$p" hostfs "$R$p" || fail "rw mount $p failed"
done
chroot "$R" ip link set lo up 2>/dev/null || chroot "$R" busybox ip link set lo up
echo nspod-vm > /proc/sys/kernel/hostname

# the command's stdout/stderr are the serial lines ttyS0/ttyS1, i.e. run.sh's own
for t in 0 1; do busybox stty -F "$R/dev/ttyS$t" -opost -echo 2>/dev/null; done
chroot "$R" /bin/sh -c '. /run/nspod-vm/job/env; cd "$1" || exit 125; . /run/nspod-vm/job/cmd' \
    nspod-vm "$CWD" < /dev/null > "$R/dev/ttyS0" 2> "$R/dev/ttyS1"
echo $? > "$R/run/nspod-vm/job/rc"
sync
echo o > /proc/sysrq-trigger
sleep 10

"""The device allowlist of non-privileged containers: the devices cgroup (v1) or a
BPF_PROG_TYPE_CGROUP_DEVICE program (v2), as runc and crun set it for the kubelet.

Why a cgroup and not only nodev mounts: a container given CAP_SYS_ADMIN can mount a tmpfs of
its own without nodev, mknod any device there (CAP_MKNOD is a default capability) and open
it. The kernel checks the devices cgroup / device program on every open and mknod of a
device node whatever the mount and the capabilities, so only the allowlist below opens.

The list is runc's AllowedDevices (libcontainer/specconv, runc 1.1, which containerd and
CRI-O run under the kubelet) plus /dev/console, which Docker's default spec also allows:
mknod of any node (not open), the standard character devices, the pty devices and tun.
Privileged containers get no restriction, as in Kubernetes.

v1: the container's cgroup in the `devices` hierarchy gets `a` written to devices.deny (deny
everything), then each rule to devices.allow. v2: a program like runc's devicefilter: load
the access type, major and minor from the context, compare them with each rule in turn,
return 1 (allow) on the first match and 0 (deny, the open or mknod fails with EPERM) when
none matches. It is attached with BPF_F_ALLOW_MULTI, as runc does, and replaces the program
an earlier run of the container attached to the same cgroup. Removing the cgroup detaches it.
"""
import errno
import os
import struct
import sys

from nsPod.kernel.cgroups import files
from nsPod.errors import CgroupError
from nsPod.plan.records import record

CHAR, BLOCK, ALL = "c", "b", "a"
WILDCARD = None


@record
class Rule:
    """An allow rule: type c/b/a, major and minor (None = any), access from "rwm"."""

    type: str
    major: int | None
    minor: int | None
    access: str

    def v1_line(self):
        """The rule as devices.allow takes it, e.g. "c 1:3 rwm", "c *:* m"."""
        if self.type == ALL:
            return "a"
        major = "*" if self.major is None else self.major
        minor = "*" if self.minor is None else self.minor
        return f"{self.type} {major}:{minor} {self.access}"


# runc's AllowedDevices plus /dev/console (see the module's docstring), in runc's order.
DEFAULT_ALLOWLIST = (
    Rule(CHAR, WILDCARD, WILDCARD, "m"),   # mknod of any node: opening it is another matter
    Rule(BLOCK, WILDCARD, WILDCARD, "m"),
    Rule(CHAR, 1, 3, "rwm"),               # /dev/null
    Rule(CHAR, 1, 8, "rwm"),               # /dev/random
    Rule(CHAR, 1, 7, "rwm"),               # /dev/full
    Rule(CHAR, 5, 0, "rwm"),               # /dev/tty
    Rule(CHAR, 1, 5, "rwm"),               # /dev/zero
    Rule(CHAR, 1, 9, "rwm"),               # /dev/urandom
    Rule(CHAR, 5, 1, "rwm"),               # /dev/console
    Rule(CHAR, 136, WILDCARD, "rwm"),      # /dev/pts/*
    Rule(CHAR, 5, 2, "rwm"),               # /dev/ptmx
    Rule(CHAR, 10, 200, "rwm"),            # /dev/net/tun
)


def allowlist(privileged):
    """The rules for a container: None (no restriction) when it is privileged."""
    return None if privileged else DEFAULT_ALLOWLIST


# --- v1: the devices cgroup -----------------------------------------------------------------

def apply_v1(cgroup_dir, rules):
    """Restrict cgroup_dir (in the devices hierarchy) to `rules`; None lifts the restriction.

    Deny-all first: it also drops whatever an earlier run of the container left there.
    Before the container's process is attached, so it never runs unrestricted.
    """
    if rules is None:
        # Writing "a" to devices.allow fails where the parent is itself restricted (nspod
        # under another runtime's cgroup): only write it when there is something to lift.
        if files.read(os.path.join(cgroup_dir, "devices.list")).split() != ["a", "*:*", "rwm"]:
            files.write(os.path.join(cgroup_dir, "devices.allow"), "a")
        return
    files.write(os.path.join(cgroup_dir, "devices.deny"), "a")
    for rule in rules:
        files.write(os.path.join(cgroup_dir, "devices.allow"), rule.v1_line())


# --- v2: a BPF_PROG_TYPE_CGROUP_DEVICE program ----------------------------------------------

# uapi/linux/bpf.h
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }: access_type is
# (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*
BPF_DEVCG_ACC_MKNOD, BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE = 1, 2, 4
BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR = 1, 2
ACCESS_BITS = {"m": BPF_DEVCG_ACC_MKNOD, "r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE}
TYPE_VALUES = {CHAR: BPF_DEVCG_DEV_CHAR, BLOCK: BPF_DEVCG_DEV_BLOCK}
LICENSE = b"Apache\0"  # nspod's licence; the helpers a device program calls need none
PROG_NAME = b"nspod_devices"
ATTR_SIZE = 128  # >= every field used below; the kernel zero-fills the rest
LOG_SIZE = 1 << 16

# Opcodes (class | op | source): only what the program needs.
LDX_MEM_W = 0x61   # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
ALU_AND_K = 0x54   # BPF_ALU | BPF_AND | BPF_K: dst = (u32)(dst & imm)
ALU_RSH_K = 0x74   # BPF_ALU | BPF_RSH | BPF_K: dst = (u32)(dst >> imm)
ALU_MOV_K = 0xb4   # BPF_ALU | BPF_MOV | BPF_K: dst = (u32)imm
ALU_MOV_X = 0xbc   # BPF_ALU | BPF_MOV | BPF_X: dst = (u32)src
JNE_K = 0x55       # BPF_JMP | BPF_JNE | BPF_K: if dst != imm: pc += off
JNE_X = 0x5d       # BPF_JMP | BPF_JNE | BPF_X: if dst != src: pc += off
EXIT = 0x95        # BPF_JMP | BPF_EXIT: return r0
R0, R1, R2, R3, R4, R5 = range(6)


def insn(code, dst=0, src=0, off=0, imm=0):
    """One struct bpf_insn {u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm} in host order
    (the bitfields' order follows the byte order, as the kernel's header says)."""
    if sys.byteorder == "little":
        return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)
    return struct.pack(">BBhi", code, (dst << 4) | src, off, imm)


def _rule_block(rule):
    """The instructions of one rule: checks that jump past the block on a mismatch, then
    "return 1". Returns (checks, jump-free tail) as lists of insn() arguments."""
    checks = []
    if rule.type != ALL:
        checks.append((JNE_K, R2, 0, TYPE_VALUES[rule.type]))
    wanted = 0
    for letter in rule.access:
        wanted |= ACCESS_BITS[letter]
    if wanted != BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE:
        # allowed only if every requested bit is in the rule: (access & wanted) == access
        checks.append((ALU_MOV_X, R1, R3, 0))
        checks.append((ALU_AND_K, R1, 0, wanted))
        checks.append((JNE_X, R1, R3, 0))
    if rule.major is not None:
        checks.append((JNE_K, R4, 0, rule.major))
    if rule.minor is not None:
        checks.append((JNE_K, R5, 0, rule.minor))
    return checks, [(ALU_MOV_K, R0, 0, 1), (EXIT, 0, 0, 0)]


def program(rules):
    """The eBPF instructions (bytes, 8 per instruction) that allow exactly `rules`."""
    code = [
        insn(LDX_MEM_W, R2, R1, 0),       # r2 = access_type
        insn(ALU_AND_K, R2, 0, 0, 0xffff),  # r2 = device type (BPF_DEVCG_DEV_*)
        insn(LDX_MEM_W, R3, R1, 0),
        insn(ALU_RSH_K, R3, 0, 0, 16),    # r3 = requested access (BPF_DEVCG_ACC_*)
        insn(LDX_MEM_W, R4, R1, 4),       # r4 = major
        insn(LDX_MEM_W, R5, R1, 8),       # r5 = minor
    ]
    for rule in rules:
        _check(rule)
        checks, tail = _rule_block(rule)
        size = len(checks) + len(tail)
        for i, (op, dst, src, imm) in enumerate(checks):
            is_jump = op in (JNE_K, JNE_X)
            # a jump's offset counts from the next instruction: to the next block's start
            code.append(insn(op, dst, src, size - i - 1 if is_jump else 0, imm))
        code += [insn(op, dst, src, 0, imm) for op, dst, src, imm in tail]
        if not checks:
            # A rule that matches everything ends the program: the verifier refuses code
            # that cannot be reached, which the final deny would then be.
            return b"".join(code)
    code += [insn(ALU_MOV_K, R0, 0, 0, 0), insn(EXIT)]  # no rule matched: deny
    return b"".join(code)


def _check(rule):
    if rule.type not in (CHAR, BLOCK, ALL) or not rule.access \
            or set(rule.access) - set(ACCESS_BITS):
        raise CgroupError(f"device rule {rule!r}: type must be c, b or a, access from 'rwm'")
    for number in (rule.major, rule.minor):
        if number is not None and not 0 <= number < 1 << 31:
            raise CgroupError(f"device rule {rule!r}: device numbers are 0 to 2^31-1")


def _address(buf):
    """The address of a bytearray's bytes, for a pointer field of union bpf_attr; valid while
    the bytearray lives and is not resized."""
    import ctypes  # only here: most hosts and commands never need it
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


def attached_programs(cgroup_dir):
    """Ids of the device programs attached to cgroup_dir itself (v2)."""
    cgroup_fd = _open_cgroup(cgroup_dir)
    try:
        return _attached(cgroup_fd, cgroup_dir)
    finally:
        os.close(cgroup_fd)


def _open_cgroup(cgroup_dir):
    try:
        return os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"open {cgroup_dir}: {e.strerror}") from e


def apply_v2(cgroup_dir, rules):
    """Attach a device program allowing `rules` to cgroup_dir; None lifts the restriction.

    The new program is attached before the old ones (an earlier run of the container's) are
    detached, so the cgroup is never unrestricted in between.
    """
    cgroup_fd = _open_cgroup(cgroup_dir)
    try:
        old = _attached(cgroup_fd, cgroup_dir)
        if rules is not None:
            prog_fd = _load(program(rules), cgroup_dir)
            try:
                attr = bytearray(ATTR_SIZE)
                struct.pack_into("=IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE,
                                 BPF_F_ALLOW_MULTI)
                _bpf(BPF_PROG_ATTACH, attr, "BPF_PROG_ATTACH, BPF_CGROUP_DEVICE, "
                                            "BPF_F_ALLOW_MULTI", cgroup_dir)
            finally:
                os.close(prog_fd)  # the attachment holds the program
        for prog_id in old:
            _detach(cgroup_fd, prog_id, cgroup_dir)
    finally:
        os.close(cgroup_fd)


def _bpf(cmd, attr, what, path):
    from nsPod.kernel.syscalls import bpf
    try:
        return bpf(cmd, attr, what)
    except OSError as e:
        raise CgroupError(f"{e.strerror} on {path}") from e


def _attached(cgroup_fd, path):
    """Ids of the device programs attached to the cgroup itself (not inherited ones)."""
    ids = bytearray(4 * 64)  # the kernel allows 64 programs per cgroup and attach type
    attr = bytearray(ATTR_SIZE)
    struct.pack_into("=IIIIQI", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, _address(ids), 64)
    _bpf(BPF_PROG_QUERY, attr, "BPF_PROG_QUERY, BPF_CGROUP_DEVICE", path)
    count = struct.unpack_from("=I", attr, 24)[0]
    return list(struct.unpack_from(f"={count}I", ids))


def _detach(cgroup_fd, prog_id, path):
    attr = bytearray(ATTR_SIZE)
    struct.pack_into("=I", attr, 0, prog_id)
    try:
        prog_fd = _bpf(BPF_PROG_GET_FD_BY_ID, attr, f"BPF_PROG_GET_FD_BY_ID, {prog_id}", path)
    except CgroupError as e:
        if getattr(e.__cause__, "errno", None) == errno.ENOENT:  # gone already
            return
        raise
    try:
        attr = bytearray(ATTR_SIZE)
        struct.pack_into("=III", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE)
        _bpf(BPF_PROG_DETACH, attr, f"BPF_PROG_DETACH, BPF_CGROUP_DEVICE, program {prog_id}",
             path)
    finally:
        os.close(prog_fd)


def _load(code, path):
    """BPF_PROG_LOAD; on failure once more with the verifier's log, for the message."""
    insns = bytearray(code)
    license_ = bytearray(LICENSE)
    log = bytearray(LOG_SIZE)

    def load(log_level):
        attr = bytearray(ATTR_SIZE)
        # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version,
        # prog_flags, prog_name[16]
        struct.pack_into("=IIQQIIQII16s", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE,
                         len(insns) // 8, _address(insns), _address(license_), log_level,
                         LOG_SIZE if log_level else 0, _address(log) if log_level else 0,
                         0, 0, PROG_NAME)
        return _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD, BPF_PROG_TYPE_CGROUP_DEVICE", path)

    try:
        return load(0)
    except CgroupError:
        try:
            return load(1)
        except CgroupError as e:
            verifier = bytes(log).split(b"\0", 1)[0].decode(errors="replace").strip()
            last = " | ".join(verifier.splitlines()[-3:])
            raise CgroupError(f"{e} (verifier: {last})" if last else str(e)) from e.__cause__

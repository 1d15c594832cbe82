"""The device allowlist without a kernel: the rule list, the v1 lines, and the eBPF program,
assembled and then run by a small interpreter of the instructions it uses, against a
reference matcher with the devices cgroup's semantics (the kernel runs it in tests/integration).
"""
import itertools
import struct

import pytest

from nsPod.kernel.cgroups import devices, files
from nsPod.kernel.cgroups.devices import (ALL, BLOCK, CHAR, DEFAULT_ALLOWLIST, WILDCARD, Rule,
                                          allowlist, program)
from nsPod.errors import CgroupError

MKNOD, READ, WRITE = 1, 2, 4
DEV_BLOCK, DEV_CHAR = 1, 2


def decode(code):
    assert len(code) % 8 == 0
    for pc in range(len(code) // 8):
        op, regs, off, imm = struct.unpack_from("<BBhi", code, pc * 8)
        yield pc, op, regs & 0xf, regs >> 4, off, imm


def run(code, dev_type, access, major, minor):
    """Interpret the program as the kernel would for struct bpf_cgroup_dev_ctx."""
    ctx = struct.pack("<III", (access << 16) | dev_type, major, minor)
    insns = list(decode(code))
    regs = {1: "ctx"}
    pc = 0
    for _ in range(len(insns)):  # forward jumps only: at most one pass
        _, op, dst, src, off, imm = insns[pc]
        pc += 1
        if op == devices.LDX_MEM_W:
            assert regs[src] == "ctx" and off in (0, 4, 8)
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif op == devices.ALU_AND_K:
            regs[dst] = regs[dst] & imm & 0xffffffff
        elif op == devices.ALU_RSH_K:
            regs[dst] = (regs[dst] & 0xffffffff) >> imm
        elif op == devices.ALU_MOV_K:
            regs[dst] = imm & 0xffffffff
        elif op == devices.ALU_MOV_X:
            regs[dst] = regs[src] & 0xffffffff
        elif op == devices.JNE_K:
            assert off > 0
            pc += off if regs[dst] != imm else 0
        elif op == devices.JNE_X:
            assert off > 0
            pc += off if regs[dst] != regs[src] else 0
        elif op == devices.EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
    raise AssertionError("ran off the end")


def reference(rules, dev_type, access, major, minor):
    """The devices cgroup's answer: some rule covers the type, numbers and every access bit."""
    letters = {MKNOD: "m", READ: "r", WRITE: "w"}
    wanted = {letters[bit] for bit in (MKNOD, READ, WRITE) if access & bit}
    for r in rules:
        if r.type != ALL and {CHAR: DEV_CHAR, BLOCK: DEV_BLOCK}[r.type] != dev_type:
            continue
        if r.major not in (None, major) or r.minor not in (None, minor):
            continue
        if wanted <= set(r.access):
            return 1
    return 0


def test_the_default_allowlist_is_runcs_plus_console():
    """runc's AllowedDevices (what the kubelet's runtimes give a non-privileged container)
    and Docker's /dev/console; privileged containers get none (every device)."""
    assert [r.v1_line() for r in DEFAULT_ALLOWLIST] == [
        "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm",
        "c 1:9 rwm", "c 5:1 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm"]
    assert allowlist(privileged=False) is DEFAULT_ALLOWLIST
    assert allowlist(privileged=True) is None
    assert Rule(ALL, WILDCARD, WILDCARD, "rwm").v1_line() == "a"


def test_the_default_program_has_the_shape_runc_loads():
    code = program(DEFAULT_ALLOWLIST)
    insns = list(decode(code))
    # 6 loads; c/b *:* m: type + 3 access checks + allow; 9 exact rwm rules: type, major,
    # minor + allow; 136:*: type, major + allow; final deny
    assert len(insns) == 6 + 2 * 6 + 9 * 5 + 4 + 2 == 69
    assert [i[1] for i in insns[:6]] == [devices.LDX_MEM_W, devices.ALU_AND_K, devices.LDX_MEM_W,
                                         devices.ALU_RSH_K, devices.LDX_MEM_W, devices.LDX_MEM_W]
    assert [(i[2], i[3], i[4]) for i in insns[:6] if i[1] == devices.LDX_MEM_W] == \
        [(2, 1, 0), (3, 1, 0), (4, 1, 4), (5, 1, 8)]
    assert insns[-2][1:] == (devices.ALU_MOV_K, 0, 0, 0, 0) and insns[-1][1] == devices.EXIT
    exits = [pc for pc, op, *_ in insns if op == devices.EXIT]
    assert len(exits) == len(DEFAULT_ALLOWLIST) + 1
    # every jump lands on the start of a later block (after an exit) or on the final deny
    block_starts = {pc + 1 for pc in exits}
    for pc, op, dst, src, off, imm in insns:
        if op in (devices.JNE_K, devices.JNE_X):
            assert off > 0 and pc + 1 + off in block_starts, (pc, off)
    # each allow returns 1
    assert all(insns[pc - 1][1:] == (devices.ALU_MOV_K, 0, 0, 0, 1) for pc in exits[:-1])


def test_the_program_decides_as_the_devices_cgroup_does():
    code = program(DEFAULT_ALLOWLIST)
    numbers = [0, 1, 3, 5, 7, 9, 10, 136, 200, 229, 237, 4095]
    accesses = [MKNOD, READ, WRITE, READ | WRITE, MKNOD | READ, MKNOD | READ | WRITE]
    for dev_type, access, major, minor in itertools.product(
            (DEV_CHAR, DEV_BLOCK), accesses, numbers, numbers):
        assert run(code, dev_type, access, major, minor) == \
            reference(DEFAULT_ALLOWLIST, dev_type, access, major, minor), \
            (dev_type, access, major, minor)


def test_known_devices():
    code = program(DEFAULT_ALLOWLIST)
    assert run(code, DEV_CHAR, READ | WRITE, 1, 3) == 1        # /dev/null
    assert run(code, DEV_CHAR, READ, 136, 42) == 1             # a pty
    assert run(code, DEV_CHAR, MKNOD, 10, 237) == 1            # mknod /dev/loop-control
    assert run(code, DEV_CHAR, READ, 10, 237) == 0             # ... but not open it
    assert run(code, DEV_CHAR, READ | WRITE, 10, 229) == 0     # /dev/fuse
    assert run(code, DEV_BLOCK, MKNOD, 7, 0) == 1
    assert run(code, DEV_BLOCK, READ, 7, 0) == 0               # /dev/loop0
    assert run(code, DEV_BLOCK, READ, 1, 3) == 0               # a block device 1:3 is not null
    assert run(code, DEV_CHAR, MKNOD | READ, 10, 237) == 0     # m alone does not cover r


def test_other_rule_sets():
    rules = (Rule(BLOCK, 8, WILDCARD, "r"), Rule(CHAR, WILDCARD, 3, "w"))
    code = program(rules)
    for dev_type, access, major, minor in itertools.product(
            (DEV_CHAR, DEV_BLOCK), (MKNOD, READ, WRITE, READ | WRITE), (1, 8), (0, 3)):
        assert run(code, dev_type, access, major, minor) == \
            reference(rules, dev_type, access, major, minor)
    assert run(program(()), DEV_CHAR, READ, 1, 3) == 0           # no rule: deny all
    # A rule matching everything ends the program: nothing unreachable after it.
    everything = program((Rule(CHAR, 1, 3, "rwm"), Rule(ALL, WILDCARD, WILDCARD, "rwm"),
                          Rule(CHAR, 1, 5, "rwm")))
    assert len(everything) // 8 == 6 + 5 + 2
    assert run(everything, DEV_BLOCK, READ, 8, 0) == 1


def test_instruction_encoding():
    # r4 != 136 ? skip 2: code 0x55, dst 4 in the low nibble (little-endian bitfields)
    assert devices.insn(devices.JNE_K, 4, 0, 2, 136) == bytes.fromhex("5504020088000000")
    assert devices.insn(devices.LDX_MEM_W, 5, 1, 8) == bytes.fromhex("6115080000000000")
    assert devices.insn(devices.EXIT) == bytes.fromhex("9500000000000000")


@pytest.mark.parametrize("rule", [Rule("x", 1, 3, "rwm"), Rule(CHAR, 1, 3, ""),
                                  Rule(CHAR, 1, 3, "rwx"), Rule(CHAR, -1, 3, "r"),
                                  Rule(CHAR, 1, 1 << 31, "r")])
def test_bad_rules_are_refused(rule):
    with pytest.raises(CgroupError, match="device rule"):
        program([rule])


@pytest.fixture
def cgroupfs(monkeypatch):
    """The cgroupfs seam of files.py: reads from a dict, writes recorded in order."""
    fake = {"contents": {}, "writes": []}
    monkeypatch.setattr(files, "_read", lambda path: fake["contents"][path])
    monkeypatch.setattr(files, "_write", lambda path, data: fake["writes"].append((path, data)))
    return fake


def test_v1_denies_everything_then_allows_each_rule(cgroupfs):
    devices.apply_v1("/cg/web/app", DEFAULT_ALLOWLIST)
    assert cgroupfs["writes"][0] == ("/cg/web/app/devices.deny", "a")
    assert cgroupfs["writes"][1:] == [("/cg/web/app/devices.allow", r.v1_line())
                                      for r in DEFAULT_ALLOWLIST]


def test_v1_lifts_a_restriction_only_where_there_is_one(cgroupfs):
    cgroupfs["contents"]["/cg/a/devices.list"] = "a *:* rwm\n"
    devices.apply_v1("/cg/a", None)
    assert cgroupfs["writes"] == []   # a restricted parent would refuse "a" (EPERM)
    cgroupfs["contents"]["/cg/b/devices.list"] = "c 1:3 rwm\n"
    devices.apply_v1("/cg/b", None)
    assert cgroupfs["writes"] == [("/cg/b/devices.allow", "a")]


def test_v1_errors_name_the_file_and_value(monkeypatch):
    def refuse(path, data):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(files, "_write", refuse)
    with pytest.raises(CgroupError, match='write "a" to /cg/x/devices.deny: Operation not'):
        devices.apply_v1("/cg/x", DEFAULT_ALLOWLIST)


def test_drivers_apply_the_rules_to_the_containers_cgroup(tmp_path, monkeypatch):
    """v1: in the devices hierarchy under the same parent; v2: the one cgroup; a v1 host
    without a devices hierarchy is an error naming it, never a container without the list."""
    from nsPod.kernel.cgroups.v1 import V1Driver
    from nsPod.kernel.cgroups.v2 import V2Driver
    calls = []
    monkeypatch.setattr(devices, "apply_v1", lambda d, rules: calls.append(("v1", d, rules)))
    monkeypatch.setattr(devices, "apply_v2", lambda d, rules: calls.append(("v2", d, rules)))
    v1 = tmp_path / "v1"
    for hierarchy in ("memory", "pids", "cpu", "devices"):
        (v1 / hierarchy).mkdir(parents=True)
    V1Driver("nspod", str(v1)).restrict_devices("web/app", DEFAULT_ALLOWLIST)
    v2 = tmp_path / "v2"
    v2.mkdir()
    V2Driver("nspod", str(v2)).restrict_devices("web/app", None)
    assert calls == [("v1", f"{v1}/devices/nspod/web/app", DEFAULT_ALLOWLIST),
                     ("v2", f"{v2}/nspod/web/app", None)]
    (v1 / "devices").rmdir()
    with pytest.raises(CgroupError, match=f"no cgroup devices hierarchy under {v1}"):
        V1Driver("nspod", str(v1)).restrict_devices("web/app", DEFAULT_ALLOWLIST)

"""Every teaching lab (nsPod/labs/) run in --check mode against the real kernel, in the
test's own state root and cgroup parent: every observation holds, and the lab leaves no pod
behind (the fixture's leak check then finds nothing else either). The cgroup lab runs in
test_lab_cgroups.py, which the cgroup v2 tier (tests/vm) runs again in its guest."""
import pytest

from nsPod import labs

NAMES = [lab.name for lab in labs.all_labs() if lab.name != "cgroups"]


def run_checked(nspod, name):
    result = nspod("lab", "run", name, "--check", check=False, timeout=900)
    lines = result.stdout.splitlines()
    lab = labs.find(name)
    assert result.returncode == 0, result.stdout + result.stderr
    # one line per observation, each ok, nothing else on stdout
    assert len(lines) == len(lab.observations), lines
    assert all(line.startswith(f"ok   {name}: ") for line in lines), lines
    # in the order the lab declares them, each once
    assert [line.split(": ", 1)[1] for line in lines] == list(lab.observations.values())
    assert nspod.pods() == [], "the lab left pods behind"
    # Nothing for gc to collect either (and, asked through the network helper, gc returns
    # once that helper has finished what the lab's last `rm` gave it to do).
    assert nspod("gc").stdout.strip() == ""
    return lines


@pytest.mark.parametrize("name", NAMES)
def test_lab_passes_its_checks_and_cleans_up(nspod, name):
    run_checked(nspod, name)


def test_lab_run_shows_commands_and_the_kernel(nspod):
    result = nspod("lab", "run", "process-group", check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "$ nspod create process-group-" in out and "# readlink /proc/" in out
    assert out.count("ok   process-group: ") == len(labs.find("process-group").observations)
    assert nspod.pods() == []
    assert nspod("gc").stdout.strip() == ""


def test_an_unknown_lab_is_bad_input(nspod):
    result = nspod("lab", "run", "../etc", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown lab '../etc'")


def test_lab_ls_and_explain(nspod):
    rows = nspod("lab", "ls").stdout.splitlines()
    assert rows[0].split() == ["#", "NAME", "TITLE"]
    assert [r.split()[1] for r in rows[1:]] == [lab.name for lab in labs.all_labs()]
    lab = labs.find("sidecars")
    out = nspod("lab", "explain", "6").stdout
    assert out.startswith(f"Lab 6: {lab.title}\n") and lab.text.strip() in out
    assert f"Kernel interfaces: {', '.join(lab.interfaces)}\nChecked:\n" in out
    assert out.rstrip("\n").endswith("  - " + list(lab.observations.values())[-1])
    assert nspod.pods() == []


def test_a_failing_lab_exits_1_and_leaves_other_pods_alone(nspod):
    """The memory lab refuses a root whose pods hold memory: every observation FAILs, exit
    1, and the user's own pod is untouched (a lab removes only the pods it made)."""
    nspod("create", "mine", "--memory", "64Mi")
    result = nspod("lab", "run", "memory", "--check", check=False, timeout=300)
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert lines[0].startswith("FAIL memory: pods of this state root hold memory (mine)")
    assert len(lines) == 1 + len(labs.find("memory").observations)
    assert all(line.startswith("FAIL memory: ") and line.endswith("(not reached)")
               for line in lines[1:])
    assert nspod.pods() == ["mine"]
    assert nspod.inspect("mine")["status"]["phase"] == "Running"
    nspod("rm", "-f", "mine")
    assert nspod("gc").stdout.strip() == ""


def test_an_interrupted_lab_still_removes_its_pods(nspod):
    """Ctrl-C in the middle of a lab: exit 130, and the finally removed what it had made."""
    import os
    import signal
    import subprocess
    from conftest import NSPOD
    key, value = nspod.marker.split("=")
    lab = subprocess.Popen(NSPOD + nspod.global_args() + ["lab", "run", "pid1", "--check"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, **{key: value}))
    try:
        first = lab.stdout.readline()         # the first check: its pods exist by now
        assert first.startswith("ok   pid1: "), first + lab.stderr.read()
        assert any(name.startswith("pid1-own-") for name in nspod.pods())
        lab.send_signal(signal.SIGINT)
        assert lab.wait(timeout=120) == 130
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    assert nspod.pods() == []
    assert nspod("gc").stdout.strip() == ""

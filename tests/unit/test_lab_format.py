"""The teaching labs' form: each text fits a page and names the kernel interfaces the lab
shows; every observation is checked by its steps and no step checks an undeclared one; the
runner reports ok/FAIL per observation and cleans up even when a step fails."""
import ast
import inspect

import pytest

from nsPod import labs
from nsPod.errors import InputError
from nsPod.labs import model, runner

LABS = labs.all_labs()


def test_there_are_ten_labs_numbered_in_order_with_unique_names():
    assert [lab.number for lab in LABS] == list(range(1, 11))
    assert len({lab.name for lab in LABS}) == len(LABS)


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_text_fits_a_page_and_names_its_kernel_interfaces(lab):
    assert lab.problems() == []
    assert len(lab.text.strip("\n").splitlines()) <= model.TEXT_LINES_MAX
    assert lab.interfaces and all(i in lab.text for i in lab.interfaces)


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_every_observation_has_a_check(lab):
    tree = ast.parse(inspect.getsource(inspect.getmodule(lab.steps)))
    checked = {node.args[0].value for node in ast.walk(tree)
               if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "check"
               and node.args and isinstance(node.args[0], ast.Constant)}
    assert checked == set(lab.observations)


def test_the_form_check_finds_a_long_text_and_an_unnamed_interface():
    bad = model.Lab(1, "x", "X", "line\n" * 61, ("setns(2)",), {"a": "A"}, lambda s: None)
    problems = bad.problems()
    assert any("61 lines" in p for p in problems)
    assert any("setns(2)" in p for p in problems)


def test_labs_are_found_by_name_or_number_and_nothing_else():
    assert labs.find(str(len(LABS))).name == LABS[-1].name
    for bad in ("0", "11", "../etc", ""):
        with pytest.raises(InputError, match="unknown lab"):
            labs.find(bad)


def test_global_options_are_passed_on():
    args = labs.global_args({"root": "/r", "cgroup_parent": "p", "bridge": None, "trace": True,
                             "restart_backoff": "1s:2s"})
    assert args == ["--root", "/r", "--cgroup-parent", "p", "--restart-backoff", "1s:2s",
                    "--trace"]
    assert labs.global_args({"trace": "json"}) == ["--trace=json"]
    assert labs.global_args({"trace": None, "root": ""}) == []


def fake_lab(steps):
    return model.Lab(99, "fake", "Fake", "text with setns(2)", ("setns(2)",),
                     {"one": "the first", "two": "the second"}, steps)


def test_check_mode_prints_one_line_per_observation():
    lines = []

    def steps(s):
        s.check("one", True)
        s.check("two", False, "it was 3")
    assert runner.run_lab(fake_lab(steps), [], lines.append, check_only=True) is False
    assert lines == ["ok   fake: the first", "FAIL fake: the second (it was 3)"]


def test_a_failed_step_fails_the_unreached_checks_and_still_cleans_up():
    lines, undone = [], []

    def steps(s):
        s.cleanups.append(lambda: undone.append(True))
        s.file("m.yaml", "x")
        s.check("one", True)
        raise runner.StepFailed("step `nspod add` exited 1: boom")
    assert runner.run_lab(fake_lab(steps), [], lines.append, check_only=True) is False
    assert lines == ["ok   fake: the first", "FAIL fake: step `nspod add` exited 1: boom",
                     "FAIL fake: the second (not reached)"]
    assert undone == [True]


def test_an_unexpected_answer_fails_the_lab_and_still_cleans_up():
    lines, undone = [], []

    def steps(s):
        s.cleanups.append(lambda: undone.append(True))
        s.check("one", True)
        return {}["status"]
    assert runner.run_lab(fake_lab(steps), [], lines.append, check_only=True) is False
    assert lines == ["ok   fake: the first", "FAIL fake: unexpected KeyError: 'status'",
                     "FAIL fake: the second (not reached)"]
    assert undone == [True]


def test_a_lab_checking_an_undeclared_observation_is_a_bug():
    with pytest.raises(runner.LabDefinitionError):
        runner.run_lab(fake_lab(lambda s: s.check("three", True)), [], lambda line: None, True)


def test_capabilities_decode_as_capsh_does():
    from nsPod.labs import kernel_view
    default = kernel_view.decode_caps("00000000a80425fb")
    assert default[:3] == ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]
    assert "CAP_NET_BIND_SERVICE" in default and "CAP_SYS_ADMIN" not in default
    assert len(default) == 14
    assert kernel_view.decode_caps("0") == []


def test_proc_reads_of_this_process(tmp_path):
    import os
    from nsPod.labs import kernel_view
    state, ppid, comm = kernel_view.stat(os.getpid())
    assert state in "RS" and ppid == os.getppid() and comm
    assert kernel_view.stat(2**22 + 1) is None           # above pid_max: no such process
    assert set(kernel_view.ns_links(os.getpid())) >= {"net", "mnt", "pid"}
    mine = kernel_view.proc_cgroups(os.getpid())[0][2]
    assert kernel_view.in_cgroup(os.getpid(), mine)
    assert not kernel_view.in_cgroup(os.getpid(), mine.rstrip("/") + "/not-this-one")
    assert kernel_view.unescape("/a\\040b") == "/a b"


def test_a_lab_signals_only_a_process_of_the_named_cgroup():
    import os
    from nsPod.labs import kernel_view
    mine = kernel_view.proc_cgroups(os.getpid())[0][2]
    assert kernel_view.signal_member(os.getpid(), mine.rstrip("/") + "/not-this-one", 0) is False
    assert kernel_view.signal_member(os.getpid(), mine, 0) is True      # signal 0: a probe
    assert kernel_view.signal_member(2**22 + 1, mine, 0) is False

"""The kubelet's node options nspod mirrors: --allowed-unsafe-sysctls (sysctl admission) and
`ps`'s AGE computed from UTC stamps."""
import calendar
import os
import time

import pytest

from nsPod import config
from nsPod.manifest import sysctl_policy
from nsPod.errors import InputError, SpecError
from nsPod.manifest.spec import load_pods

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  securityContext:
    sysctls:
      - {name: net.ipv4.tcp_keepalive_time, value: "60"}
      - {name: kernel.msgmax, value: "65536"}
      - {name: net/core/somaxconn, value: "1024"}
  containers:
    - {name: c, command: [sleep, "1"]}
"""


def test_unsafe_sysctls_are_refused_naming_the_field():
    """pkg/kubelet/sysctl/allowlist.go patternAllowlist.Admit: a sysctl outside the safe set
    (safe_sysctls.go) and the --allowed-unsafe-sysctls list refuses the pod
    (SysctlForbidden)."""
    with pytest.raises(SpecError) as e:
        load_pods(POD)
    lines = str(e.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('spec.securityContext.sysctls[1].name: "kernel.msgmax" is an '
                               'unsafe sysctl (SysctlForbidden')
    assert "--allowed-unsafe-sysctls kernel.msgmax" in lines[0]
    assert lines[1].startswith('spec.securityContext.sysctls[2].name: "net.core.somaxconn"')
    assert e.value.exit_code == 2


@pytest.mark.parametrize("allow", ["kernel.msgmax,net.core.somaxconn", "kernel.msg*, net.*",
                                   "kernel/msg*,net/core/somaxconn"])
def test_allowed_unsafe_sysctls_admit_the_pod(allow):
    """allowlist.go NewAllowlist: names and patterns ending in '*' (prefixes), '/' or '.'
    separated."""
    pods, _ = load_pods(POD, allowed_unsafe_sysctls=sysctl_policy.parse_allowlist(allow))
    assert [n for n, _ in pods[0].security_context.sysctls] == [
        "net.ipv4.tcp_keepalive_time", "kernel.msgmax", "net.core.somaxconn"]


def test_a_pattern_allows_only_its_prefix():
    allow = sysctl_policy.parse_allowlist("kernel.shm*")
    assert sysctl_policy.allowed("kernel.shmmax", allow)
    assert not sysctl_policy.allowed("kernel.msgmax", allow)
    assert sysctl_policy.allowed("net.ipv4.tcp_rmem", ())  # the safe set needs no list
    assert sysctl_policy.forbidden((("kernel.sem", "1"),), allow) == [
        'spec.securityContext.sysctls[0].name: "kernel.sem" is an unsafe sysctl (SysctlForbidden: '
        "not in the kubelet's safe set); allow it with --allowed-unsafe-sysctls kernel.sem"]


@pytest.mark.parametrize("bad,why", [
    ("kernel.*", "not known to be namespaced"),   # the kubelet refuses it too
    ("vm.swappiness", "not known to be namespaced"),
    ("kernel.m*x", "is not a sysctl name or pattern"),
    ("Kernel.msgmax", "is not a sysctl name or pattern"),
    ("net..x", "is not a sysctl name or pattern"),
    ("x" * 300, "is not a sysctl name or pattern"),
])
def test_bad_allowlist_entries_are_input_errors(bad, why):
    with pytest.raises(InputError) as e:
        config.load(allowed_unsafe_sysctls=f"net.ipv4.tcp_rmem,{bad}", environ={})
    assert str(e.value).startswith("--allowed-unsafe-sysctls: ") and why in str(e.value)


def test_allowlist_from_the_environment_and_flag_precedence():
    env = {"NSPOD_ALLOWED_UNSAFE_SYSCTLS": "kernel.msgmax,kernel.sem"}
    assert config.load(environ=env).allowed_unsafe_sysctls == ("kernel.msgmax", "kernel.sem")
    assert config.load(allowed_unsafe_sysctls="fs.mqueue.*", environ=env) \
        .allowed_unsafe_sysctls == ("fs.mqueue.*",)
    assert config.load(environ={}).allowed_unsafe_sysctls == ()


@pytest.fixture
def dst_zone():
    """Central European time, whose summer time is an hour ahead of its standard time."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "CET-1CEST,M3.5.0,M10.5.0/3"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.parametrize("stamp", ["2026-07-01T12:00:00Z", "2026-01-15T12:00:00Z",
                                   "2026-03-29T01:30:00Z", "2026-10-25T00:30:00Z"])
def test_age_is_computed_in_utc_across_dst(dst_zone, monkeypatch, stamp):
    """AGE of a pod started 90 s ago is 1m in summer and winter time alike (the stamp is UTC;
    reading it as local time was an hour off while DST was in effect)."""
    from nsPod.api import render
    now = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) + 90
    monkeypatch.setattr(time, "time", lambda: now)
    assert render.age(stamp) == "1m"
    assert render.age("not a time") == "-"

"""IPAM: the lease file under a state root, no root privileges needed."""
import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from nsPod.errors import InputError, NetworkError
from nsPod.net.ipam import Leases, release_by_name


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "root")


def test_gateway_is_the_first_host_and_pods_get_the_next(root):
    leases = Leases(root, "10.213.5.0/24")
    assert leases.gateway == "10.213.5.1"
    assert leases.gateway_cidr == "10.213.5.1/24"
    assert leases.allocate("a") == "10.213.5.2"
    assert leases.allocate("b") == "10.213.5.3"
    assert leases.allocate("c") == "10.213.5.4"
    assert leases.cidr("10.213.5.4") == "10.213.5.4/24"
    assert leases.all() == {"a": "10.213.5.2", "b": "10.213.5.3", "c": "10.213.5.4"}


def test_same_pod_gets_its_lease_again(root):
    leases = Leases(root, "10.213.5.0/24")
    first = leases.allocate("web")
    leases.allocate("other")
    assert leases.allocate("web") == first
    assert leases.allocate("web", preferred="10.213.5.77") == first
    assert leases.acquire("web") == (first, False)
    assert leases.lease_of("web") == first


def test_preferred_address_is_honoured_when_free(root):
    leases = Leases(root, "10.213.5.0/24")
    assert leases.allocate("a", preferred="10.213.5.50") == "10.213.5.50"
    # taken by a: b gets the next free instead
    assert leases.allocate("b", preferred="10.213.5.50") != "10.213.5.50"
    # outside the subnet, the gateway, the broadcast address, garbage: ignored
    for bad in ("10.213.6.9", "10.213.5.1", "10.213.5.255", "10.213.5.0", "nonsense"):
        got = Leases(root, "10.213.5.0/24").allocate(f"pod-{bad}", preferred=bad)
        assert got not in ("10.213.6.9", "10.213.5.1", "10.213.5.255", "10.213.5.0")


def test_recreated_pod_gets_its_old_address_back(root):
    leases = Leases(root, "10.213.5.0/24")
    old = leases.allocate("web")
    leases.allocate("x")
    assert leases.release("web") == old
    leases.allocate("y")
    assert leases.allocate("web", preferred=old) == old


def test_release_is_idempotent_and_round_robin_skips_a_just_released_address(root):
    leases = Leases(root, "10.213.5.0/24")
    a = leases.allocate("a")
    assert leases.release("a") == a
    assert leases.release("a") is None
    assert leases.lease_of("a") is None
    # not handed out again at once: the next pod gets the address after it
    assert leases.allocate("b") != a


def test_allocation_wraps_around_and_fills_holes(root):
    leases = Leases(root, "10.213.5.0/29")     # hosts .1-.6: gateway .1, pods .2-.6
    names = [f"p{i}" for i in range(5)]
    got = [leases.allocate(n) for n in names]
    assert got == [f"10.213.5.{i}" for i in range(2, 7)]
    leases.release("p1")                        # .3 free again
    assert leases.allocate("late") == "10.213.5.3"


def test_exhaustion_is_a_clear_error(root):
    leases = Leases(root, "10.213.5.0/30")      # one pod address: .2
    assert leases.allocate("only") == "10.213.5.2"
    with pytest.raises(NetworkError) as info:
        leases.allocate("one-too-many")
    assert str(info.value) == "subnet 10.213.5.0/30 has no free address (1 pods hold leases)"
    assert leases.all() == {"only": "10.213.5.2"}


def test_retain_releases_everything_else(root):
    leases = Leases(root, "10.213.5.0/24")
    for name in ("a", "b", "c"):
        leases.allocate(name)
    assert leases.retain(["b"]) == {"a": "10.213.5.2", "c": "10.213.5.4"}
    assert leases.all() == {"b": "10.213.5.3"}


def test_the_lease_file_and_its_permissions(root):
    leases = Leases(root, "10.213.5.0/24")
    leases.allocate("a")
    path = os.path.join(root, "network", "leases.json")
    with open(path) as f:
        data = json.load(f)
    assert data["subnet"] == "10.213.5.0/24" and data["gateway"] == "10.213.5.1"
    assert data["leases"]["a"]["ip"] == "10.213.5.2"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(os.path.join(root, "network")).st_mode & 0o777 == 0o700
    assert not [n for n in os.listdir(os.path.join(root, "network")) if ".tmp." in n]


def test_a_changed_subnet_with_live_leases_is_refused(root):
    Leases(root, "10.213.5.0/24").allocate("a")
    with pytest.raises(NetworkError, match="hold addresses in subnet 10.213.5.0/24"):
        Leases(root, "10.213.7.0/24").allocate("b")
    Leases(root, "10.213.5.0/24").release("a")
    assert Leases(root, "10.213.7.0/24").allocate("b") == "10.213.7.2"


def test_bad_subnets_are_input_errors(root):
    with pytest.raises(InputError):
        Leases(root, "10.213.5.1/24")
    with pytest.raises(InputError):
        Leases(root, "10.213.5.0/31")
    with pytest.raises(InputError):
        Leases(root, "fe80::/64")


def test_reading_needs_no_file(root):
    leases = Leases(root, "10.213.5.0/24")
    assert leases.all() == {}
    assert leases.lease_of("x") is None
    assert not os.path.exists(os.path.join(root, "network"))


def _allocate_in_child(args):
    root, name = args
    return Leases(root, "10.213.5.0/24").allocate(name)


def test_release_by_name_needs_no_subnet_and_takes_only_that_pods_lease(root):
    """rm/gc release a lease `run` took that no network record names: by the pod's name, in
    whatever subnet the lease file is (the caller's --subnet may have changed since)."""
    assert release_by_name(root, "web") is None            # no lease file: nothing to do
    leases = Leases(root, "10.213.5.0/24")
    web, other = leases.allocate("web"), leases.allocate("other")
    assert release_by_name(root, "web") == web
    assert release_by_name(root, "web") is None
    assert leases.all() == {"other": other}
    with open(leases.path, "w") as f:
        json.dump({"subnet": "not a subnet", "leases": {"x": {"ip": "10.0.0.2"}}}, f)
    with pytest.raises(NetworkError, match="names no valid subnet"):
        release_by_name(root, "x")
    assert release_by_name(root, "y") is None             # holds none: the subnet unread


def test_20_concurrent_processes_get_20_distinct_addresses(root):
    names = [f"pod-{i}" for i in range(20)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(20) as pool:
        got = pool.map(_allocate_in_child, [(root, n) for n in names], chunksize=1)
    assert len(set(got)) == 20
    assert Leases(root, "10.213.5.0/24").all() == dict(zip(names, got))


def test_20_concurrent_interpreters_get_20_distinct_addresses(root):
    """Separate interpreters started together, so the allocations really overlap."""
    code = ("import sys; from nsPod.net.ipam import Leases; "
            "print(Leases(sys.argv[1], '10.213.5.0/24').allocate(sys.argv[2]))")
    procs = [subprocess.Popen([sys.executable, "-P", "-c", code, root, f"p{i}"],
                              stdout=subprocess.PIPE, text=True) for i in range(20)]
    got = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(got)) == 20
    assert sorted(Leases(root, "10.213.5.0/24").all().values()) == sorted(got)


def test_ipam_and_netclient_do_not_load_pyroute2():
    code = ("import sys, nsPod.net.ipam, nsPod.net.client, nsPod.net.links; "
            "print([m for m in sys.modules if m.startswith('pyroute2')])")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_held_addresses_are_read_as_ipaddress_reads_them():
    """_address_int (inet_aton, per held lease at each allocation) agrees with ipaddress for
    what nspod writes, and anything else goes to ipaddress, whose error names it."""
    import ipaddress
    from nsPod.net.ipam import _address_int
    for text in ("10.89.0.2", "10.89.7.254", "0.0.0.0", "255.255.255.255"):
        assert _address_int(text) == int(ipaddress.IPv4Address(text))
    for text in ("10.89.0", "10.89.0.256", "10.89.0.2/24", "", "0x0a.1.2.3", "010.1.2.3",
                 "10.89.0.2 "):
        with pytest.raises(ValueError):
            _address_int(text)


def test_acquire_writes_the_notes_with_the_lease_in_one_write(root, monkeypatch):
    leases = Leases(root, "10.89.0.0/24")
    saves = []
    real_save = leases._save
    monkeypatch.setattr(leases, "_save", lambda data: (saves.append(1), real_save(data)))
    seen = []
    ip, created = leases.acquire("web", notes_for=lambda held: (seen.append(held),
                                                                {"netnsInode": 7})[1])
    assert created and len(saves) == 1
    assert seen[0]["ip"] == ip and "netnsInode" not in seen[0]
    assert leases.record_of("web")["netnsInode"] == 7
    # Held already: the callback sees the stored record; unchanged notes are not rewritten.
    ip2, created2 = leases.acquire("web", notes_for=lambda held: (seen.append(held),
                                                                  {"netnsInode": 7})[1])
    assert (ip2, created2) == (ip, False) and seen[1]["netnsInode"] == 7 and len(saves) == 1
    leases.acquire("web", notes_for=lambda held: {"netnsInode": 8, "staleNetnsInode": 7})
    assert len(saves) == 2
    assert leases.record_of("web")["staleNetnsInode"] == 7

"""Pod IP addresses: one lease file per state root, changed only under an exclusive flock.

    <root>/network/leases.json   {"subnet": "10.89.0.0/16", "gateway": "10.89.0.1",
                                  "last": "10.89.0.7",
                                  "leases": {"<pod>": {"ip": "10.89.0.7", "since": "…Z",
                                                       "netnsKey": N, "netnsInode": M}}}
    <root>/network/leases.lock   flock(LOCK_EX) around every read-modify-write

The subnet's first host is the bridge's address (the pods' gateway); pods get the others.
Allocation is round-robin, as CNI's host-local IPAM does: the next free address after the one
handed out last, wrapping around. netd notes in a lease, before it makes them, which network
namespace the pod's veth and bridge live in (netnsKey: the inode of netd's netns) and which
netns the pod's /run/netns name binds (netnsInode): its record of what is the pod's. A released address is therefore not handed out again at
once (a client still talking to a removed pod does not reach its successor), yet every
address is used before the allocator reports exhaustion. A pod asking again gets the lease it
holds; a `preferred` address (a recreated sandbox asking for its old one) is honoured when
free.

No pyroute2 and nothing else heavy here: the CLI, the monitor, netd and the tests import it.
"""
import contextlib
import fcntl
import ipaddress
import json
import os
import socket
import time

from nsPod.config import parse_subnet
from nsPod.errors import InputError, NetworkError

NETWORK_DIR = "network"
LEASES_FILE = "leases.json"
LOCK_FILE = "leases.lock"


def network_dir(root):
    return os.path.join(root, NETWORK_DIR)


def _address_int(text):
    """A dotted IPv4 address as an int: inet_aton, ~10x cheaper than ipaddress's parser
    (taken once per lease held at every allocation). What the file holds was written by
    nspod; an odd value falls back to the strict parser, whose error names it."""
    try:
        packed = socket.inet_aton(text)
        if socket.inet_ntoa(packed) == text:   # canonical only: not 0x0a.1.2.3, 010.1.2.3
            return int.from_bytes(packed, "big")
    except (OSError, TypeError):
        pass
    return int(ipaddress.IPv4Address(text))


class Leases:
    """The leases of one state root in one subnet."""

    def __init__(self, root, subnet):
        self.root = root
        self.network = parse_subnet(subnet)
        self.dir = network_dir(root)
        self.path = os.path.join(self.dir, LEASES_FILE)
        self.lock_path = os.path.join(self.dir, LOCK_FILE)
        first = int(self.network.network_address) + 1
        self._gateway = ipaddress.IPv4Address(first)
        # Pods: every host address but the gateway (no network, no broadcast address).
        self._first = first + 1
        self._last = int(self.network.broadcast_address) - 1

    # --- facts ---------------------------------------------------------------------------

    @property
    def subnet(self):
        return str(self.network)

    @property
    def prefixlen(self):
        return self.network.prefixlen

    @property
    def gateway(self):
        return str(self._gateway)

    @property
    def gateway_cidr(self):
        return f"{self._gateway}/{self.prefixlen}"

    def cidr(self, address):
        return f"{address}/{self.prefixlen}"

    @property
    def capacity(self):
        return self._last - self._first + 1

    # --- operations ----------------------------------------------------------------------

    def allocate(self, pod_name, preferred=None):
        """The pod's address: the one it holds, else `preferred` when free, else the next free."""
        return self.acquire(pod_name, preferred)[0]

    def acquire(self, pod_name, preferred=None, notes_for=None):
        """(address, True when this call made the lease) — what an undo needs to know.

        notes_for(lease as stored) -> {field: value}, when given, adds fields to the lease in
        the same read-modify-write (netd's attach: one parse and one write of the file, which
        at 1,000 leases costs ~2 ms each, instead of three parses and a write)."""
        with self._locked() as data:
            leases = data["leases"]
            held = leases.get(pod_name)
            if held:
                if notes_for is not None:
                    fields = notes_for(dict(held))
                    if any(held.get(k) != v for k, v in fields.items()):
                        held.update(fields)
                        self._save(data)
                return held["ip"], False
            taken = {_address_int(lease["ip"]) for lease in leases.values()}
            address = None
            if preferred:
                wanted = self._as_int(preferred)
                if wanted is not None and wanted not in taken:
                    address = wanted
            if address is None:
                address = self._next_free(taken, data.get("last"))
            if address is None:
                raise NetworkError(
                    f"subnet {self.subnet} has no free address ({len(leases)} pods hold leases)")
            ip = str(ipaddress.IPv4Address(address))
            lease = {"ip": ip, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            if notes_for is not None:
                lease.update(notes_for(dict(lease)))
            leases[pod_name] = lease
            data["last"] = ip
            self._save(data)
            return ip, True

    def release(self, pod_name):
        """Give the pod's address back; returns it, or None when the pod held none."""
        with self._locked() as data:
            lease = data["leases"].pop(pod_name, None)
            if lease is None:
                return None
            self._save(data)
            return lease["ip"]

    def retain(self, pod_names):
        """Release every lease whose pod is not in `pod_names` (gc); returns {pod: ip} released."""
        keep = set(pod_names)
        with self._locked() as data:
            gone = {pod: lease["ip"] for pod, lease in data["leases"].items() if pod not in keep}
            if gone:
                for pod in gone:
                    del data["leases"][pod]
                self._save(data)
            return gone

    def note(self, pod_name, **fields):
        """Add `fields` to the pod's lease (no-op when it holds none); True when it holds one."""
        with self._locked() as data:
            lease = data["leases"].get(pod_name)
            if lease is None:
                return False
            if any(lease.get(k) != v for k, v in fields.items()):
                lease.update(fields)
                self._save(data)
            return True

    def record_of(self, pod_name):
        """The pod's lease as stored ({"ip", "since", ...}), or None."""
        lease = self._read()["leases"].get(pod_name)
        return dict(lease) if isinstance(lease, dict) else None

    def records(self):
        """{pod name: its lease as stored} of every lease."""
        return {pod: dict(lease) for pod, lease in self._read()["leases"].items()}

    def lease_of(self, pod_name):
        lease = self._read()["leases"].get(pod_name)
        return lease["ip"] if lease else None

    def all(self):
        """{pod name: address} of every lease."""
        return {pod: lease["ip"] for pod, lease in self._read()["leases"].items()}

    # --- the file --------------------------------------------------------------------------

    def _as_int(self, address):
        try:
            value = int(ipaddress.IPv4Address(str(address).split("/")[0]))
        except ValueError:
            return None
        return value if self._first <= value <= self._last else None

    def _next_free(self, taken, last):
        start = self._as_int(last) if last else None
        start = self._first if start is None else start + 1
        if start > self._last:
            start = self._first
        if len(taken) >= self.capacity:
            return None
        address = start
        for _ in range(self.capacity):
            if address not in taken:
                return address
            address = address + 1 if address < self._last else self._first
        return None

    def _empty(self):
        return {"subnet": self.subnet, "gateway": self.gateway, "last": None, "leases": {}}

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                text = f.read()
            if not text.strip():
                return self._empty()   # a crash right after a rename, before writeback
            data = json.loads(text)
        except FileNotFoundError:
            return self._empty()
        except (ValueError, OSError) as e:
            raise NetworkError(f"cannot read the lease file {self.path}: {e}") from e
        if not isinstance(data, dict) or not isinstance(data.get("leases"), dict):
            raise NetworkError(f"the lease file {self.path} is not nspod's lease file")
        if data.get("subnet") != self.subnet:
            if data["leases"]:
                pods = ", ".join(sorted(data["leases"])[:5])
                raise NetworkError(
                    f"the pods of {self.root} hold addresses in subnet {data.get('subnet')} "
                    f"({pods}); remove them before using subnet {self.subnet}")
            return self._empty()
        return data

    def _read(self):
        # Readers need no lock: the file is replaced by rename, never changed in place.
        return self._load()

    def _save(self, data):
        """temp + rename under the lock; no fsync (unlike state.write_json).

        Readers see the old file or the new one, never half of one. Durability across a power
        loss buys nothing here: leases do not outlive their pods, and no pod outlives a
        reboot; an fsync would cost 3-10 ms per `run` and per `rm` where the root is on disk
        (/run is ext4 on this machine, not tmpfs).
        """
        tmp = f"{self.path}.tmp.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            # Compact: at a thousand pods the indented, sorted form took ~8 ms to write,
            # and every attach, detach, run and rm rewrites the file.
            view = memoryview(json.dumps(data, separators=(",", ":")).encode())
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _locked(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise NetworkError(f"cannot open the lease lock {self.lock_path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._load()
        finally:
            os.close(fd)


def release_by_name(root, pod_name):
    """Release the pod's lease in whatever subnet the root's lease file is; returns its
    address, or None when the pod holds none (no lock taken then: rm pays one read).

    For a pod with no live monitor whose state records no network: `run` took the lease
    before it started the monitor, which records the network only when it attaches it, so a
    run or monitor that died in between left a lease no record names. Leases are keyed by pod
    name; the caller holds the pod's monitor.lock while its directory claims the name, so no
    other run or monitor of that name can hold a lease meanwhile.
    """
    path = os.path.join(network_dir(root), LEASES_FILE)
    for _ in range(3):
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read() or b"{}")
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as e:
            raise NetworkError(f"cannot read the lease file {path}: {e}") from e
        if not isinstance(data, dict) or not isinstance(data.get("leases"), dict) \
                or pod_name not in data["leases"]:
            return None
        try:
            leases = Leases(root, data.get("subnet"))
        except InputError as e:
            raise NetworkError(f"the lease file {path} names no valid subnet: {e}") from e
        try:
            return leases.release(pod_name)
        except NetworkError as e:
            # Read outside the lock: the file may have changed subnet meanwhile (gc released
            # the lease, a run in another subnet rewrote it); look again.
            problem = e
    raise problem

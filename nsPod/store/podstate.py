"""The pod's state (state.json) as typed records: the one place that lists every field.

The monitor writes state.json; status, inspect, exec, debug, stats, stop and gc read it.
These records are its schema. `from_json(data)` and `to_json()` round-trip the file exactly:
a key absent from the file is ABSENT on the record (falsy, never written), a null stays
None, and a key this version does not know is kept in `extra` and written back, so an older
or newer state.json is neither refused nor changed by a reader that saves it.

Attributes are spelled as the file's keys (camelCase, as Kubernetes spells them), not
snake_case: the record is the file, field for field, with no renaming table to drift.

Built on plan/records.py's @record, not dataclasses: the monitor loads this module, and it
is one process per pod (see records.py for the cost).
"""
from nsPod.errors import StateError
from nsPod.plan.records import record
from nsPod.store.state import ProcessRef


class _Absent:
    """A key the file does not have: falsy, and never written back."""
    __slots__ = ()

    def __bool__(self):
        return False

    def __repr__(self):
        return "ABSENT"


ABSENT = _Absent()


def state_record(nested=None):
    """@record whose fields are state.json's keys, every one ABSENT unless given.

    nested maps a field to (kind, record class): "one" (a record or null), "dict" (name ->
    record). Any other field holds plain JSON data as it is in the file."""
    nested = nested or {}

    def wrap(cls):
        for name in cls.__dict__.get("__annotations__", {}):
            setattr(cls, name, ABSENT)
        cls = record(cls)
        fields = cls.fields

        def from_json(klass, data):
            if not isinstance(data, dict):
                raise StateError(f"state.json: {klass.__name__} is not an object: {data!r:.60}")
            values = {}
            extra = {}
            for key, value in data.items():
                if key not in fields:
                    extra[key] = value
                    continue
                kind, sub = nested.get(key, (None, None))
                if kind == "one" and value is not None:
                    value = sub.from_json(value)
                elif kind == "dict" and value is not None:
                    if not isinstance(value, dict):
                        raise StateError(f"state.json: {key} is not an object: {value!r:.60}")
                    value = {k: sub.from_json(v) for k, v in value.items()}
                values[key] = value
            # Not klass(**values): every field is ABSENT on the class, so setting only the
            # file's keys is the same record, at a fraction of @record's checked __init__
            # (`ps` reads a thousand of these).
            obj = object.__new__(klass)
            obj.__dict__.update(values)
            obj.extra = extra
            return obj

        def to_json(self):
            out = dict(getattr(self, "extra", {}))
            for name in fields:
                value = getattr(self, name)
                if value is ABSENT:
                    continue
                kind, _ = nested.get(name, (None, None))
                if kind == "one" and value is not None:
                    value = value.to_json()
                elif kind == "dict" and value is not None:
                    value = {k: v.to_json() for k, v in value.items()}
                out[name] = value
            return out

        def has(self, name):
            """Whether the file has the key (even as null)."""
            return getattr(self, name) is not ABSENT

        def get(self, name, default=None):
            """The value, or default when the file has no such key (as dict.get)."""
            value = getattr(self, name)
            return default if value is ABSENT else value

        def drop(self, name):
            """Remove the key, as dict.pop(name, None) did."""
            setattr(self, name, ABSENT)

        def __eq__(self, other):
            return type(other) is type(self) and to_json(self) == to_json(other)

        def __bool__(self):
            return bool(to_json(self))  # as the dict was: an empty one ({}) is false

        cls.__eq__ = __eq__
        cls.__bool__ = __bool__
        cls.from_json = classmethod(from_json)
        cls.to_json = to_json
        cls.has = has
        cls.get = get
        cls.drop = drop
        cls.nested = nested
        return cls
    return wrap


@state_record()
class Proc:
    """A process of the pod (pause, the monitor) by pid and start time (store/state.py's
    ProcessRef on disk)."""
    pid: int
    startTime: int

    def ref(self):
        """The ProcessRef to check against the kernel, or None without a pid."""
        if not self.pid:
            return None
        return ProcessRef(self.pid, self.startTime if self.has("startTime") else None)


@state_record()
class ContainerState:
    """Kubernetes' ContainerState: at most one of the three, each a plain dict
    (waiting: reason, message; running: startedAt; terminated: exitCode, signal, reason,
    message, startedAt, finishedAt)."""
    waiting: dict
    running: dict
    terminated: dict


@state_record({"state": ("one", ContainerState), "lastState": ("one", ContainerState)})
class ContainerStatus:
    """One container, init container or sidecar, as the monitor last recorded it."""
    state: ContainerState          # Kubernetes' fields first, as `inspect` shows them
    lastState: ContainerState
    restartCount: int
    ready: bool
    started: bool
    init: bool                     # an init container (sidecars included)
    everStarted: bool              # a later start is a restart (restartCount + 1)
    pid: int                       # only while running, with its start time
    pidStartTime: int
    namespaces: dict               # kind -> "net:[inode]", as /proc/PID/ns shows them
    cgroup: str                    # under the cgroup parent's mount
    log: str                       # relative to the pod's directory
    oomKills: int                  # the leaf cgroup's oom_kill count at the last look
    nextStart: float               # time.time() of the next try, while backing off


@state_record()
class Condition:
    """A pod condition (status a bool) as recorded; status.py renders Kubernetes' form."""
    status: bool
    lastTransitionTime: str
    reason: str
    message: str


@state_record()
class Network:
    """The pod's network: recorded before netd is asked (the names and the netns), then
    netd's reply (ip, mac, gateway, ...) plus the subnet."""
    bridge: str
    subnet: str
    hostVeth: str
    podVeth: str
    netns: str
    netnsInode: int
    staleNetnsInode: int           # a netns an earlier sandbox of the pod left
    ip: str
    mac: str
    gateway: str
    prefixLength: int


@state_record({"monitor": ("one", Proc), "pause": ("one", Proc), "network": ("one", Network),
               "containers": ("dict", ContainerStatus), "conditions": ("dict", Condition)})
class PodState:
    """state.json. Written by the monitor only; null resources are undone or never made."""
    phase: str                     # Pending, Running, Succeeded, Failed (Unknown: status.py)
    reason: str
    message: str
    startTime: str
    monitor: Proc
    pause: Proc                    # None once the pod (or its sandbox) is down
    namespaces: dict               # pause's: kind -> "net:[inode]"
    mounts: list                   # host paths mounted for the pod, undone in reverse
    cgroup: str                    # the pod's cgroup, under the cgroup parent's mount
    network: Network
    podIP: str
    hostPorts: list
    initialized: bool              # every init container done (for this sandbox)
    conditions: dict               # kind -> Condition
    containers: dict               # name -> ContainerStatus

    def container(self, name):
        """The named container's status, or an empty one (nothing recorded yet)."""
        found = (self.containers or {}).get(name)
        return found if found is not None else ContainerStatus()


def read(pod_dir):
    """The pod's PodState, or None before the monitor first wrote one."""
    data = pod_dir.read_state()
    return None if data is None else PodState.from_json(data)

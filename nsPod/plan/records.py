"""@record: plain data classes for what the monitor loads (plans, cgroup limits).

The same annotated-class style as @dataclass, without importing `dataclasses`: that module
pulls in inspect, ast, dis and tokenize, ~17 ms and ~2.7 MB per process, and the monitor is
one process per pod. Generated: __init__ (positional or keyword, defaults, Factory for
mutable ones), __eq__, __repr__ and to_json (nested records, lists and dicts as plain data).
"""

_REQUIRED = object()


class Factory:
    """A default made anew for each instance (a list, a dict)."""

    def __init__(self, make):
        self.make = make


def record(cls):
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = {n: cls.__dict__.get(n, _REQUIRED) for n in names}
    for name, default in defaults.items():
        if isinstance(default, Factory):
            delattr(cls, name)  # no class attribute that every instance would share

    def __init__(self, *args, **kwargs):
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} arguments, got {len(args)}")
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in defaults or key in values:
                raise TypeError(f"{cls.__name__}() got an unexpected or repeated argument {key!r}")
            values[key] = value
        for name in names:
            if name not in values:
                default = defaults[name]
                if default is _REQUIRED:
                    raise TypeError(f"{cls.__name__}() missing argument {name!r}")
                values[name] = default.make() if isinstance(default, Factory) else default
            setattr(self, name, values[name])

    def to_json(self):
        return {n: _plain(getattr(self, n)) for n in names}

    def __eq__(self, other):
        return type(other) is cls and to_json(self) == to_json(other)

    def __repr__(self):
        return f"{cls.__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"

    cls.__init__ = __init__
    cls.__eq__ = __eq__
    cls.__hash__ = None
    cls.__repr__ = __repr__
    cls.fields = names
    if "to_json" not in cls.__dict__:
        cls.to_json = to_json
    return cls


def _plain(value):
    if hasattr(value, "fields") and hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value

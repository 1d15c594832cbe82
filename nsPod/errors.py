"""The one exception tree of nspod's library.

cli.py turns these into one line on stderr and an exit code (ExitCode): `exit_code` 2 is bad
input (usage, manifest, name, quantity), 1 is a run-time failure.
"""
import enum
import os


class ExitCode(enum.IntEnum):
    """nspod's exit codes (docs/interface.md); exec and debug also pass the command's own."""

    OK = 0
    FAILURE = 1            # a run-time failure: a NspodError, an OSError, a bug
    INPUT = 2              # bad input: usage, manifest, name, quantity
    CANNOT_EXECUTE = 126   # exec/debug: the command was found but could not run (the shells')
    NOT_FOUND = 127        # exec/debug: no such command (the shells')
    INTERRUPTED = 130      # SIGINT, as a shell reports 128 + 2


class NspodError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = ExitCode.FAILURE


class InputError(NspodError):
    """Bad input a user typed: a flag, a name, a quantity, a manifest."""

    exit_code = ExitCode.INPUT


class SpecError(InputError):
    """One or more problems in a manifest; each is 'field.path: message'."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class PodNotFound(NspodError):
    def __init__(self, name):
        self.name = name
        super().__init__(f"pod {name!r} not found")


class PodExists(NspodError):
    def __init__(self, name):
        super().__init__(f"pod {name!r} already exists")


class StateError(NspodError):
    """The state on disk or the pod's processes are not what an operation needs."""


class SetupError(NspodError):
    """A step of making a pod or a container failed; the message names the step."""


class ImageError(NspodError):
    """An image cannot be imported, found or removed."""


class CgroupError(NspodError):
    pass


class NetworkError(NspodError):
    pass


def os_error(err, call, path=None, detail=None):
    """OSError for a failed syscall, named for what was called on what.

    Built from the errno so Python picks the subclass (PermissionError, FileNotFoundError...),
    which callers match on; `detail` carries flags and the like.
    """
    message = f"{call}: {os.strerror(err)}"
    if detail:
        message = f"{call}({detail}): {os.strerror(err)}"
    return OSError(err, message, path) if path is not None else OSError(err, message)


def describe(exc):
    """One line for an exception chain: the outermost message, then its causes."""
    parts = []
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.strerror:
            text = exc.strerror
            if exc.filename is not None:
                text = f"{text}: {exc.filename}"
        else:
            text = str(exc) or type(exc).__name__
        if not parts or text not in parts[-1]:
            parts.append(text)
        exc = exc.__cause__
    return ": ".join(parts)


"""Docker credential helpers: `docker-credential-<name> get`, as Docker, Podman and Skopeo run
them. The registry's server address goes on stdin; the helper answers JSON
{"ServerURL": ..., "Username": ..., "Secret": ...} on stdout, or exits non-zero saying
"credentials not found". The helper is the user's own program, found in PATH; nspod still
bounds it: 64 KiB of output, 10 seconds, stdin/stdout/stderr its own pipes, no shell.
"""
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import time

from nsPod.errors import NspodError, describe

PREFIX = "docker-credential-"
TIMEOUT = 10.0
MAX_OUTPUT = 64 << 10
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
NOT_FOUND = "credentials not found"


class HelperError(NspodError):
    """A credential helper is missing, failed, or answered nonsense."""


def get(name, server, where):
    """(user, secret) from helper `name` for `server`, or None when it has none. `where`
    names the file and key that asked for it, for messages."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise HelperError(f"{where}: {name!r} is not a credential helper name "
                          f"({PREFIX}<name>: letters, digits, '.', '_', '-')")
    program = shutil.which(PREFIX + name)
    if program is None:
        raise HelperError(f"{where}: credential helper {PREFIX}{name} is not in PATH")
    try:
        status, out, err = _run([program, "get"], server.encode())
    except HelperError as e:
        raise HelperError(f"{where}: {e}") from None
    text = out.decode(errors="replace").strip()
    if status != 0:
        said = (text or err.decode(errors="replace").strip()).splitlines()
        if said and NOT_FOUND in said[0].lower():
            return None
        raise HelperError(f"{where}: {PREFIX}{name} get failed (exit {status})"
                          + (f": {said[0][:200]}" if said else ""))
    try:
        answer = json.loads(text)
        user, secret = answer["Username"], answer["Secret"]
        if not isinstance(user, str) or not isinstance(secret, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise HelperError(f"{where}: {PREFIX}{name} get answered no JSON "
                          "{\"Username\": ..., \"Secret\": ...}") from None
    if user == "<token>":
        raise HelperError(f"{where}: {PREFIX}{name} gave an identity token (OAuth refresh "
                          "tokens are not supported: store a user and password)")
    if not user and not secret:
        return None
    return user, secret


def _run(argv, data):
    """(exit status, stdout, stderr), each stream capped at MAX_OUTPUT, within TIMEOUT."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
    except OSError as e:
        raise HelperError(f"{argv[0]}: cannot run it: {describe(e)}") from None
    deadline = time.monotonic() + TIMEOUT
    out, err = bytearray(), bytearray()
    try:
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HelperError(f"{argv[0]} get: no answer in {TIMEOUT:.0f} s")
                for key, _ in sel.select(left):
                    chunk = os.read(key.fd, 1 << 14)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    key.data.extend(chunk)
                    if len(key.data) > MAX_OUTPUT:
                        raise HelperError(f"{argv[0]} get: more than {MAX_OUTPUT} bytes of "
                                          "output")
        status = proc.wait(max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        raise HelperError(f"{argv[0]} get: did not exit in {TIMEOUT:.0f} s") from None
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # its own session: it and its children
            except ProcessLookupError:
                pass
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return status, bytes(out), bytes(err)

"""Running a lab: the real `nspod` CLI as a subprocess (this Python, `-P -m nsPod`, with the
caller's global options), the kernel read directly, every observation checked.

Two modes. `run` shows each command and its output, then what the kernel shows, then each
observation with ok/FAIL. `check` shows only one line per observation (ok/FAIL). Either way
the lab's pods (named `<lab>-<6 hex>`, in the caller's state root) are removed in a finally,
with its temporary files, whatever happened; a failed removal is a FAIL line too.
"""
import json
import os
import secrets
import shlex
import signal
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from nsPod.errors import NspodError
from nsPod.labs import kernel_view

NSPOD = [sys.executable, "-P", "-m", "nsPod"]
COMMAND_TIMEOUT = 120
SHOWN_LINES_MAX = 25


class StepFailed(NspodError):
    """A step of a lab did not do what the lab needs to go on (the message names it)."""


class LabDefinitionError(Exception):
    """A lab checks an observation it does not declare: a bug in the lab, not a failure."""


class Session:
    """One run of one lab: its commands, reads, checks and clean-up."""

    def __init__(self, lab, global_args, echo, check_only, pause=None):
        self.lab = lab
        self.global_args = list(global_args)
        self.echo = echo
        self.check_only = check_only
        self.pause = pause
        self.results = {}          # observation key -> (passed, detail)
        self.pods = []
        self.workdir = None
        self.extra_global = {}     # a lab's own global options (e.g. --restart-backoff)
        self.cleanups = []

    # --- what the student sees ------------------------------------------------------------

    def show(self, text=""):
        if not self.check_only:
            self.echo(text)

    def say(self, text):
        """A line of narration: what just happened, or what comes."""
        self.show(f"\n## {text}")
        if self.pause:
            self.pause()

    def note(self, text):
        """Where a command of nspod shows more (explain, --trace)."""
        self.show(f"   (more: {text})")

    def _output(self, text, whole=False):
        lines = text.rstrip("\n").splitlines()
        # Under --trace the whole narration is the point: nothing is cut.
        shown = len(lines) if whole or any(a.startswith("--trace") for a in self.global_args) \
            else SHOWN_LINES_MAX
        for line in lines[:shown]:
            self.show(f"   {line}")
        if len(lines) > shown:
            self.show(f"   ... ({len(lines) - shown} more lines)")

    # --- the steps --------------------------------------------------------------------------

    def pod(self, what=""):
        """A fresh pod name of this lab, removed when the lab ends."""
        name = f"{self.lab.name}-{what + '-' if what else ''}{secrets.token_hex(3)}"
        self.pods.append(name)
        return name

    def file(self, name, text):
        """A file of this lab's own (a manifest), removed when the lab ends."""
        path = os.path.join(self.directory("."), name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def directory(self, name):
        """A directory of this lab's own (a hostPath), removed when the lab ends."""
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix=f"nspod-lab-{self.lab.name}-")
        path = os.path.normpath(os.path.join(self.workdir, name))
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o755)
        return path

    def argv(self, args):
        extra = [a for k, v in self.extra_global.items() for a in (k, v)]
        return NSPOD + self.global_args + extra + [str(a) for a in args]

    def nspod(self, *args, ok=True, env=None, quiet=False, whole=False,
              timeout=COMMAND_TIMEOUT):
        """Run `nspod ARGS`: shown with its output (whole: not cut after 25 lines); ok=True:
        a failure ends the lab."""
        self.show(f"\n$ nspod {shlex.join(str(a) for a in args)}")
        result = self._run(self.argv(args), env, timeout)
        if not quiet:
            self._output(result.stdout + result.stderr, whole)
        if ok and result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise StepFailed(f"step `nspod {' '.join(map(str, args))}` exited "
                             f"{result.returncode}: {last}")
        return result

    def quiet(self, *args):
        """Run `nspod ARGS` unseen (a poll, a look before a step): the CompletedProcess."""
        return self._run(self.argv(args), None, COMMAND_TIMEOUT)

    def host(self, *argv, ok=True, timeout=COMMAND_TIMEOUT):
        """A host command the student can type too (`ip netns exec`, findmnt, lsns)."""
        self.show(f"\n# {shlex.join(argv)}")
        result = self._run(list(argv), None, timeout)
        self._output(result.stdout + result.stderr)
        if ok and result.returncode != 0:
            raise StepFailed(f"step `{' '.join(argv)}` exited {result.returncode}")
        return result

    def _run(self, argv, env, timeout):
        full_env = dict(os.environ, **(env or {}))
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env=full_env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"step `{' '.join(argv)}` did not end within {timeout}s") from None
        except OSError as e:
            raise StepFailed(f"step `{' '.join(argv)}` could not run: {e.strerror}") from None

    def fetch(self, url, quiet=False):
        """An HTTP GET from the host, as `curl -sS URL` shows it: (body or None, error)."""
        if not quiet:
            self.show(f"\n# curl -sS {url}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body, error = response.read().decode(errors="replace"), ""
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            body, error = None, getattr(reason, "strerror", None) or str(reason)
        if not quiet:
            self._output(body if body is not None else f"curl: {error}")
        return body, error

    def inspect(self, pod):
        """`nspod inspect POD` as JSON (not shown: the lab shows what it takes from it)."""
        result = self._run(self.argv(["inspect", pod]), None, COMMAND_TIMEOUT)
        if result.returncode != 0:
            raise StepFailed(f"nspod inspect {pod} exited {result.returncode}: "
                             f"{result.stderr.strip()}")
        return json.loads(result.stdout)

    def read(self, path, shown_as=None, only=None):
        """A kernel file, shown as `cat PATH` (or as the command given; `only`: the lines
        holding one of these strings); None when it cannot be read."""
        self.show(f"\n# {shown_as or 'cat ' + path}")
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            self.show(f"   ({e.strerror})")
            return None
        shown = text if only is None else "\n".join(
            line for line in text.splitlines() if any(o in line for o in only))
        self._output(shown)
        return text

    def readlink(self, path):
        self.show(f"# readlink {path}")
        try:
            target = os.readlink(path)
        except OSError as e:
            self.show(f"   ({e.strerror})")
            return None
        self.show(f"   {target}")
        return target

    def explain_last_pod(self):
        """Where this nspod has `explain POD` (the pod as a picture), show the lab's last
        pod with it; nothing is checked on it."""
        if self.pods and self.quiet("explain", "--help").returncode == 0:
            self.say("The pod as nspod explain draws it")
            self.nspod("explain", self.pods[-1], ok=False, whole=True)

    def kill(self, pid, cgroup, signum):
        """`kill -SIG PID`, to a pod's process only: it must still be in that cgroup."""
        self.show(f"# kill -{signal.Signals(signum).name[3:]} {pid}")
        if not kernel_view.signal_member(pid, cgroup, signum):
            raise StepFailed(f"pid {pid} is no longer a process of cgroup {cgroup}: not "
                             "signalled")

    def wait(self, predicate, what, timeout=60.0):
        """Poll until predicate() is true (returns its value); a timeout ends the lab."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise StepFailed(f"waited {timeout:.0f}s for {what}")
            time.sleep(0.1)

    def check(self, key, passed, detail=""):
        """One observation of the lab: ok or FAIL, one line."""
        if key not in self.lab.observations:
            raise LabDefinitionError(f"lab {self.lab.name} has no observation {key!r}")
        self.results[key] = (bool(passed), detail)
        self._result_line(key, bool(passed), detail)
        return bool(passed)

    def _result_line(self, key, passed, detail):
        what = self.lab.observations.get(key, key)
        tail = f" ({detail})" if detail and not passed else ""
        line = f"{'ok  ' if passed else 'FAIL'} {self.lab.name}: {what}{tail}"
        self.echo(line if self.check_only else f"   {line}")


def run_lab(lab, global_args, echo, check_only=False, pause=None):
    """Run one lab; True when every observation held and the clean-up succeeded."""
    session = Session(lab, global_args, echo, check_only, pause)
    missing = [p for p in lab.needs if shutil.which(p) is None]
    if not check_only:
        echo(f"== Lab {lab.number}: {lab.title} ==\n")
        echo(lab.text.strip("\n"))
    failed_step = None
    try:
        if missing:
            raise StepFailed(f"this lab needs {', '.join(missing)} on the host's PATH")
        lab.steps(session)
        if not check_only:
            session.explain_last_pod()
    except StepFailed as e:
        failed_step = str(e)
        echo(f"FAIL {lab.name}: {failed_step}")
    except (KeyError, IndexError, TypeError, ValueError, OSError) as e:
        # nspod answered in a shape the lab did not expect (or a /proc read failed): the
        # lab fails, says what it tripped on, and still cleans up.
        failed_step = f"unexpected {type(e).__name__}: {e}"
        echo(f"FAIL {lab.name}: {failed_step}")
    finally:
        cleaned = clean_up(session)
    for key, what in lab.observations.items():
        if key not in session.results:
            session.results[key] = (False, "not reached")
            session._result_line(key, False, "not reached")
    if not cleaned:
        echo(f"FAIL {lab.name}: clean-up (see the error above); `nspod rm -f` its pods")
    return failed_step is None and cleaned and all(p for p, _ in session.results.values())


def clean_up(session):
    """Remove the lab's pods and files; True when all went."""
    ok = True
    for undo in reversed(session.cleanups):
        try:
            undo()
        except OSError as e:
            session.echo(f"error: lab clean-up: {e}")
            ok = False
    if session.pods:
        try:
            result = session._run(session.argv(["rm", "-f", "--timeout", "0", *session.pods]),
                                  None, COMMAND_TIMEOUT)
        except StepFailed as e:
            session.echo(f"error: lab clean-up: {e}")
            return False
        if result.returncode != 0:
            session.echo(f"error: lab clean-up: nspod rm -f exited {result.returncode}: "
                         f"{result.stderr.strip()}")
            ok = False
    if session.workdir:
        shutil.rmtree(session.workdir, ignore_errors=True)
    return ok

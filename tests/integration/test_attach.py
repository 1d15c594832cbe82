"""`nspod attach` (kubectl attach): the monitor keeps the write end of a `stdin: true`
container's stdin and the master of a `tty: true` container's pty, and passes them to the
attached client over the control socket; stdinOnce closes the stdin after the first
detach; a client that never reads cannot hold up the monitor."""
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import termios
import time

from helpers import container_status, wait_for, wait_terminated

NSPOD = [sys.executable, "-P", "-m", "nsPod"]   # as conftest runs it
POD = """\
apiVersion: v1
kind: Pod
metadata: {name: NAME, annotations: {nspod.io/network: none}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    command: COMMAND
    stdin: true
EXTRA"""


def pod(nspod, name, command, extra=""):
    text = POD.replace("NAME", name).replace("COMMAND", json.dumps(command)) \
        .replace("EXTRA", extra)
    nspod("run", "--wait", nspod.manifest(text, f"{name}.yaml"))
    return name


def attach(nspod, *args, **popen):
    key, value = nspod.marker.split("=")
    return subprocess.Popen(NSPOD + nspod.global_args() + ["attach", *args],
                            env=dict(os.environ, **{key: value}), **popen)


def read_until(fd, wanted, what, timeout=20.0):
    """What fd gives (non-blocking reads) until `wanted` is in it."""
    os.set_blocking(fd, False)
    got = b""
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while wanted not in got:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; got {got[-2000:]!r}")
        if selector.select(0.2):
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:   # EIO: the pty's other side closed
                chunk = b""
            if not chunk:
                raise AssertionError(f"end of output before {what}; got {got[-2000:]!r}")
            got += chunk
    selector.close()
    return got


def test_attach_i_writes_stdin_and_shows_output_and_detaches_at_eof(nspod):
    pod(nspod, "ai", ["sh", "-c", "while read line; do echo got-$line; "
                                  "echo err-$line >&2; done"])
    for word in ("one", "two"):
        client = attach(nspod, "-i", "ai", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
        client.stdin.write(f"{word}\n".encode())
        client.stdin.flush()
        read_until(client.stdout.fileno(), f"got-{word}\n".encode(), f"got-{word}")
        client.stdin.close()      # end of input: the detach
        assert client.wait(timeout=20) == 0
        stderr = client.stderr.read().decode()
        client.stdout.close()
        client.stderr.close()
        assert "Traceback" not in stderr
    # no stdinOnce: the container's stdin stayed open through both detaches
    status = container_status(nspod.inspect("ai"), "main")
    assert "running" in status["state"], status
    logs = nspod("logs", "ai").stdout
    assert "got-one" in logs and "err-one" in logs and "got-two" in logs


def test_stdin_once_closes_stdin_after_the_first_detach(nspod):
    pod(nspod, "once", ["sh", "-c", "cat; echo saw-eof"], "    stdinOnce: true\n")
    client = attach(nspod, "-i", "once", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    client.stdin.write(b"hello\n")
    client.stdin.flush()
    read_until(client.stdout.fileno(), b"hello\n", "cat's echo")
    client.stdin.close()
    assert client.wait(timeout=20) == 0
    client.stdout.close()
    status = wait_terminated(nspod, "once", "main", timeout=20)
    assert status["exitCode"] == 0, status
    assert "saw-eof" in nspod("logs", "once").stdout


def test_attach_t_is_the_containers_terminal_with_resize(nspod):
    pod(nspod, "tt", ["sh"], "    tty: true\n")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    client = attach(nspod, "-it", "tt", stdin=slave, stdout=slave, stderr=slave,
                    start_new_session=True)
    os.close(slave)
    try:
        os.write(master, b"echo hi-$((40+2))\r")
        read_until(master, b"hi-42", "the shell's answer")
        os.write(master, b"stty size\r")
        read_until(master, b"33 111", "the first window size")
        # A resize of the user's terminal: its foreground process gets SIGWINCH.
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 99, 0, 0))
        client.send_signal(signal.SIGWINCH)
        os.write(master, b"stty size\r")
        read_until(master, b"44 99", "the new window size")
        os.write(master, b"exit\r")
        assert client.wait(timeout=20) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        os.close(master)
    status = wait_terminated(nspod, "tt", "main", timeout=20)
    assert status["exitCode"] == 0, status
    logs = nspod("logs", "tt").stdout
    assert "hi-42" in logs and "44 99" in logs


def test_a_client_that_never_reads_cannot_hold_up_the_monitor(nspod):
    """4 MB of tty output while an attached client reads nothing: the monitor keeps reading
    it into the log (far past what the client's socket and its 256 KiB queue can hold) and
    keeps answering its control socket."""
    pod(nspod, "slow", ["sh", "-c", "read go; head -c 4000000 /dev/zero | tr '\\0' x; "
                                    "echo; echo done-writing; cat"], "    tty: true\n")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.path.join(nspod.root, "pods", "slow", "control.sock"))
    sock.sendall(b'{"op": "attach", "container": "main", "stdin": true}\n')
    data, fds, _, _ = socket.recv_fds(sock, 65536, 1)
    assert json.loads(data.split(b"\n")[0])["tty"] is True and len(fds) == 1
    log = os.path.join(nspod.root, "pods", "slow", "logs", "main", "0.log")
    try:
        os.write(fds[0], b"go\r")    # then never read the socket
        wait_for(lambda: os.path.getsize(log) > 3_000_000, timeout=60,
                 what="the 4 MB of output read into the log")
        ping = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ping.settimeout(10)
        ping.connect(os.path.join(nspod.root, "pods", "slow", "control.sock"))
        ping.sendall(b'{"op": "ping"}\n')
        assert json.loads(ping.recv(4096)) == {"ok": True}
        ping.close()
        assert "slow" in nspod("ps").stdout
        assert nspod("exec", "slow", "--", "echo", "exec-works").stdout == "exec-works\n"
    finally:
        os.close(fds[0])
        sock.close()


def test_bad_input_is_one_line_and_exit_2(nspod):
    pod(nspod, "bad", ["cat"])
    nspod.manifest(POD.replace("NAME", "plain").replace("COMMAND", '["sleep", "1000"]')
                   .replace("    stdin: true\n", "").replace("EXTRA", ""), "plain.yaml")
    nspod("run", "--wait", os.path.join(nspod.workdir, "plain.yaml"))
    unknown = nspod("attach", "nosuchpod", check=False, input="")
    assert unknown.returncode == 1 and unknown.stderr.strip() == \
        "error: pod 'nosuchpod' not found", unknown.stderr    # as inspect/logs/exec say it
    for args, words in ((["-c", "nope", "bad"], "nope"),
                        (["-i", "plain"], "stdin: true"), (["-t", "bad"], "-t"),
                        (["-c", "../x", "bad"], "")):
        result = nspod("attach", *args, check=False, input="")
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, result.stderr)


def test_run_i_runs_the_pod_then_attaches_to_its_stdin_container(nspod):
    text = POD.replace("NAME", "ri").replace("COMMAND", '["sh", "-c", "read a; echo got-$a"]') \
        .replace("EXTRA", "")
    path = nspod.manifest(text, "ri.yaml")
    nspod.pod_names.add("ri")
    key, value = nspod.marker.split("=")
    client = subprocess.Popen(NSPOD + nspod.global_args() + ["run", "-i", path],
                              env=dict(os.environ, **{key: value}), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    read_until(client.stdout.fileno(), b"ri\n", "the pod's name")
    client.stdin.write(b"hey\n")
    client.stdin.flush()
    read_until(client.stdout.fileno(), b"got-hey\n", "the container's answer")
    assert client.wait(timeout=20) == 0   # the container ended: the attach with it
    client.stdin.close()
    client.stdout.close()
    assert "Traceback" not in client.stderr.read().decode()
    client.stderr.close()


def test_run_i_without_a_stdin_container_is_refused_before_anything_is_made(nspod):
    text = POD.replace("NAME", "rn").replace("COMMAND", '["sleep", "100"]') \
        .replace("    stdin: true\n", "").replace("EXTRA", "")
    result = nspod("run", "-i", nspod.manifest(text, "rn.yaml"), check=False)
    assert result.returncode == 2 and "stdin: true" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "rn" not in nspod("ps", "-a").stdout


def test_stdin_once_on_a_tty_ends_its_input_at_the_first_detach(nspod):
    """Attached with -i but no -t (this stdin is a pipe): the pty's output comes through the
    monitor; the detach writes the terminal's EOF character: `cat` reads end of file."""
    pod(nspod, "ttonce", ["sh", "-c", "cat; echo saw-eof"],
        "    stdinOnce: true\n    tty: true\n")
    client = attach(nspod, "-i", "ttonce", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    client.stdin.write(b"hello\n")
    client.stdin.flush()
    read_until(client.stdout.fileno(), b"hello\r\nhello\r\n", "the echo and cat's copy")
    client.stdin.close()
    assert client.wait(timeout=20) == 0
    client.stdout.close()
    status = wait_terminated(nspod, "ttonce", "main", timeout=20)
    assert status["exitCode"] == 0, status
    assert "saw-eof" in nspod("logs", "ttonce").stdout
    refused = nspod("attach", "-i", "ttonce", check=False, input="")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr

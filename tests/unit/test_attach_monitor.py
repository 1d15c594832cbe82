"""The monitor's side of `nspod attach` (monitor/attach.py) over real pipes, a real pty and
socketpairs, without a pod: the fds passed, stdinOnce, the bounded output to a client that
never reads, refusals."""
import json
import os
import selectors
import socket
from types import SimpleNamespace

import pytest

from nsPod.errors import NspodError
from nsPod.monitor import attach


def world(**plan):
    plan = SimpleNamespace(**{"stdin_open": True, "stdin_once": False, "tty": False, **plan})
    run = SimpleNamespace(name="c", plan=plan, pid=123)
    monitor = SimpleNamespace(plan=SimpleNamespace(name="p"), runs={"c": run},
                              selector=selectors.DefaultSelector(),
                              cstate=lambda run: SimpleNamespace(log="logs/c/0.log"))
    attachments = attach.Attachments(monitor)
    fds = attach.StdioFds(plan)
    attachments.started(run, fds)
    return attachments, run, fds


def connect(attachments, stdin=True):
    client, server = socket.socketpair()
    attachments.attach(server, {"container": "c", "stdin": stdin})
    data, fds, _, _ = socket.recv_fds(client, 65536, 1)
    return client, server, json.loads(data.split(b"\n")[0]), fds


def test_stdin_write_end_is_passed_and_stdin_once_closes_it_at_the_detach():
    attachments, run, fds = world(stdin_once=True)
    reader = fds.child_stdin           # what the container would read
    client, server, reply, passed = connect(attachments)
    assert reply == {"ok": True, "tty": False, "stdin": True, "log": "logs/c/0.log",
                     "relay": False}
    os.write(passed[0], b"hello\n")
    assert os.read(reader, 100) == b"hello\n"
    os.close(passed[0])
    client.close()                     # the detach
    for key, _ in attachments.m.selector.select(1):
        key.data.on_ready(key.fileobj)
    assert run.stdin_closed and not attachments.sessions
    assert os.read(reader, 100) == b""  # end of file: no writer is left
    with pytest.raises(NspodError, match="stdinOnce"):
        connect(attachments)
    fds.close_all()


def test_relay_frames_the_pipes_output_for_the_clients_that_asked_only():
    attachments, run, fds = world(stdin_open=False)
    read_fds = fds.take_read_fds()
    attachments.started(run, fds, read_fds)
    (out_fd, _), (err_fd, _) = read_fds
    plain, _, _, _ = connect(attachments, stdin=False)
    relayed, server = socket.socketpair()
    attachments.attach(server, {"container": "c", "relay": True})
    reply = json.loads(relayed.recv(65536).split(b"\n")[0])
    assert reply["relay"] is True
    attachments.output(out_fd, b"hel")          # a partial line: sent as it is
    attachments.output(err_fd, b"oops\n")
    relayed.settimeout(5)
    wanted = b"\x01\x00\x00\x00\x03hel" + b"\x02\x00\x00\x00\x05oops\n"
    got = b""
    while len(got) < len(wanted):
        got += relayed.recv(65536)
    assert got == wanted
    plain.setblocking(False)
    with pytest.raises(BlockingIOError):       # who did not ask gets nothing
        plain.recv(65536)
    attachments.run_ended(run)
    assert relayed.recv(65536) == b""           # the end of the run: end of file
    for fd, _ in read_fds:
        os.close(fd)
    fds.close_all()


def test_without_stdin_once_the_stdin_stays_open_after_the_detach():
    attachments, run, fds = world()
    client, server, reply, passed = connect(attachments)
    os.close(passed[0])
    client.close()
    for key, _ in attachments.m.selector.select(1):
        key.data.on_ready(key.fileobj)
    assert not run.stdin_closed and fds.stdin_write is not None
    attachments.run_ended(run)
    assert fds.stdin_write is None and run.stdio is None
    fds.close_all()


def test_a_client_that_never_reads_gets_at_most_the_buffer_and_blocks_nothing():
    attachments, run, fds = world(tty=True)
    client, server, reply, passed = connect(attachments)
    assert reply["tty"] is True and len(passed) == 1   # the master: input and resize
    for _ in range(100):               # 10 MB of output, never read
        attachments.output(fds.pty_master, b"x" * 100_000)
    (session,) = attachments.sessions
    assert len(session.out) <= attach.SESSION_BUFFER
    attachments.run_ended(run)         # the clients see end of file
    client.setblocking(False)
    received = b""
    while True:
        try:
            chunk = client.recv(1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        received += chunk
    assert chunk == b"" and 0 < len(received) < 10_000_000
    os.close(passed[0])
    fds.close_all()


@pytest.mark.parametrize("request_, message", [
    ({"container": "nope"}, "no container 'nope'"),
    ({"container": ["c"]}, "no container"),
])
def test_refusals_name_what_is_wrong(request_, message):
    attachments, run, fds = world()
    client, server = socket.socketpair()
    with pytest.raises(NspodError, match=message):
        attachments.attach(server, request_)
    run.plan.stdin_open = False
    with pytest.raises(NspodError, match="stdin: true"):
        attachments.attach(server, {"container": "c", "stdin": True})
    run.pid = None
    with pytest.raises(NspodError, match="not running"):
        attachments.attach(server, {"container": "c"})
    client.close()
    server.close()
    fds.close_all()

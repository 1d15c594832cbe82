"""The monitor's timer queue and its reads of container-written files, without a pod."""
import os
import selectors
import socket

import pytest

from nsPod.monitor import control as control_part
from nsPod.monitor import supervisor as monitor
from nsPod.monitor.timers import Timers
from nsPod.net import daemon as netd

DAY = 86400


def bare_monitor():
    m = monitor.Monitor.__new__(monitor.Monitor)
    m.timers = Timers()
    return m


@pytest.mark.parametrize("delay", [30 * DAY, 10**12, 10**400, float("inf"), 2**63])
def test_a_far_timer_sleeps_in_bounded_waits_and_does_not_fire(delay):
    """A 30-day activeDeadlineSeconds (or any integer a manifest holds) is a wait the kernel
    accepts: epoll's limit is ~24.8 days, and select() with more raised OverflowError."""
    m = bare_monitor()
    fired = []
    m.timers.at(delay, lambda: fired.append(1))
    timeout = m.timers.next_timeout()
    assert 0 < timeout <= monitor.MAX_WAIT
    with selectors.DefaultSelector() as selector:
        r, w = os.pipe()
        os.write(w, b"x")   # ready at once: the call returns, with the far timeout accepted
        selector.register(r, selectors.EVENT_READ)
        assert selector.select(timeout)
        os.close(r)
        os.close(w)
    m.timers.run()
    assert not fired


@pytest.mark.parametrize("delay", [0, -5, float("nan"), "ten", None])
def test_a_meaningless_delay_means_now(delay):
    m = bare_monitor()
    fired = []
    m.timers.at(delay, lambda: fired.append(1))
    assert m.timers.next_timeout() == 0
    m.timers.run()
    assert fired == [1]


def test_a_failing_timer_does_not_end_the_loop(capsys):
    m = bare_monitor()
    fired = []
    m.timers.at(0, lambda: 1 / 0)
    m.timers.at(0, lambda: fired.append(1))
    m.timers.run()
    assert fired == [1]
    assert "ZeroDivisionError" in capsys.readouterr().err


@pytest.mark.parametrize("value, expected", [
    ("1e9", netd.MAX_IDLE), ("inf", netd.MAX_IDLE), ("nan", netd.DEFAULT_IDLE),
    ("-1", netd.DEFAULT_IDLE), ("x", netd.DEFAULT_IDLE), ("5", 5.0), ("", netd.DEFAULT_IDLE)])
def test_netd_idle_is_clamped_to_what_a_selector_accepts(value, expected):
    assert netd.idle_seconds({"NSPOD_NETD_IDLE": value}) == expected


def test_the_termination_message_is_read_bounded_and_only_from_a_regular_file(tmp_path):
    msg = tmp_path / "msg"
    msg.write_text("é" * 5000)
    text = monitor.read_bounded(str(msg), 4096)
    assert len(text.encode("utf-8", errors="replace")) <= 4096 + 3
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)                      # no writer: a blocking open would wait forever
    assert monitor.read_bounded(str(fifo), 4096) == ""
    link = tmp_path / "link"
    link.symlink_to(msg)                 # not followed
    assert monitor.read_bounded(str(link), 4096) == ""
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    assert monitor.read_bounded(str(zero), 4096) == ""
    assert monitor.read_bounded(str(tmp_path / "none"), 4096) == ""


def test_only_the_first_signal_during_setup_interrupts_it():
    """A second SIGTERM/SIGINT (the CLI's death and a user's kill) arriving while the first
    one's interruption is being undone must not interrupt the undoing."""
    m = bare_monitor()
    m.setup_done, m.aborting, m.term_requested = False, False, False
    with pytest.raises(monitor.Aborted, match="interrupted by signal 15 while making the pod"):
        m.on_term(15)
    m.on_term(2)          # no exception: the undoing goes on
    m.on_term(15)
    assert m.term_requested
    # After setup, a signal only asks the loop to stop the pod.
    m = bare_monitor()
    m.setup_done, m.aborting, m.term_requested = True, False, False
    m.on_term(15)
    assert m.term_requested


def test_aborted_is_not_an_error_a_start_failure_handler_would_swallow():
    assert not issubclass(monitor.Aborted, Exception)


# --- the control socket: a client that connects and sends nothing holds up nothing ----------

@pytest.fixture
def control(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the monitor answers only root (SO_PEERCRED): run as root")
    pod = bare_monitor()
    pod.selector = selectors.DefaultSelector()
    m = control_part.Control(pod)        # the monitor's control part
    m.selector = pod.selector
    m.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    m.sock.bind(str(tmp_path / "control.sock"))
    m.sock.listen(8)
    m.sock.setblocking(False)
    clients = []

    def connect():
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(5)
        c.connect(str(tmp_path / "control.sock"))
        clients.append(c)
        m.on_control()
        return c
    yield m, connect
    for c in clients:
        c.close()
    m.sock.close()


def test_a_silent_control_client_is_not_waited_for(control):
    m, connect = control
    silent = connect()
    # The old monitor read the request right here, blocking for up to 2 s per client.
    assert len(m.requests) == 1 and len(m.selector.get_map()) == 1
    talker = connect()
    talker.sendall(b'{"op": ')
    for conn in list(m.requests):
        m.on_request(conn)               # half a request; nothing from the silent one
    assert len(m.requests) == 2
    talker.sendall(b'"ping"}\n')
    for conn in list(m.requests):
        m.on_request(conn)
    assert talker.recv(100) == b'{"ok": true}\n'
    assert len(m.requests) == 1          # the silent one still waits, alone
    for conn in list(m.requests):
        m.drop_request(conn)             # its CONTROL_TIMEOUT timer
    assert silent.recv(10) == b"" and not m.requests and not m.selector.get_map()


def test_control_clients_beyond_the_cap_are_told_to_retry(control, monkeypatch):
    monkeypatch.setattr(control_part, "MAX_REQUESTS", 2)
    m, connect = control
    connect()
    connect()
    third = connect()
    assert third.recv(100) == b'{"error": "too many requests at once; try again"}\n'
    assert len(m.requests) == 2


def test_a_bad_request_is_answered_never_raised(control):
    m, connect = control
    for body in (b"[1]\n", b"not json\n", b'{"op": "nope"}\n', b"x" * 70000):
        c = connect()
        c.sendall(body)
        if not body.endswith(b"\n"):
            c.shutdown(socket.SHUT_WR)
        for conn in list(m.requests):
            for _ in range(5):
                m.on_request(conn)
        assert c.recv(200).startswith(b'{"error": ')
    assert not m.requests


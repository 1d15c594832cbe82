"""hostPort relays on loopback: non-blocking, bounded, and still a faithful byte stream."""
import os
import selectors
import socket
import threading

from nsPod.monitor import ports


def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def forwarder_to(target_port):
    selector = selectors.DefaultSelector()
    front = ports.bind(0, "127.0.0.1")
    fwd = ports.Forwarder(selector, front, "127.0.0.1", target_port)
    return selector, fwd, front.getsockname()[1]


def drive(selector, rounds, timeout=0.02):
    """The monitor's loop, a bounded number of rounds: every wakeup returns at once."""
    for _ in range(rounds):
        for key, _ in selector.select(timeout):
            key.data.on_ready(key.fileobj)


def buffered(fwd):
    return sum(len(b) for relay in set(fwd.relays.values()) for b in relay.pending.values())


def test_a_client_that_never_reads_holds_at_most_the_buffers_and_blocks_nothing():
    upstream = listener()
    selector, fwd, port = forwarder_to(upstream.getsockname()[1])
    client = socket.create_connection(("127.0.0.1", port))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    drive(selector, 5)
    server, _ = upstream.accept()
    server.setblocking(False)
    sent = 0
    chunk = b"x" * 65536
    # The pod floods; the client never reads. Every round of the loop must come back (a
    # blocking send in the relay would hang here), and the relay holds at most its buffers.
    for _ in range(200):
        try:
            sent += server.send(chunk)
        except BlockingIOError:
            pass
        drive(selector, 1, timeout=0)
        assert buffered(fwd) <= 2 * ports.BUFFER
    assert sent > 4 * ports.BUFFER  # the kernel's buffers filled and the relay stopped reading
    fwd.close()
    assert not fwd.relays and not selector.get_map()
    for s in (client, server, upstream):
        s.close()


def test_bytes_arrive_in_order_both_ways_and_a_half_close_is_passed_on():
    upstream = listener()
    selector, fwd, port = forwarder_to(upstream.getsockname()[1])
    payload = os.urandom(3 * 1024 * 1024)
    received = []

    def echo_server():
        conn, _ = upstream.accept()
        data = bytearray()
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        conn.sendall(bytes(reversed(data[-16:])))   # answered after the client's FIN
        conn.close()
        received.append(bytes(data))

    def client_side(result):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        answer = bytearray()
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            answer += chunk
        c.close()
        result.append(bytes(answer))

    answer = []
    threads = [threading.Thread(target=echo_server), threading.Thread(target=client_side,
                                                                      args=(answer,))]
    for t in threads:
        t.start()
    for _ in range(2000):
        drive(selector, 1)
        if answer and not fwd.relays:
            break
    for t in threads:
        t.join(10)
    assert received == [payload]
    assert answer == [bytes(reversed(payload[-16:]))]
    assert not fwd.relays  # both sides ended: the connection is gone from the monitor
    fwd.close()
    upstream.close()


def test_nothing_listening_in_the_pod_ends_the_client_connection():
    unused = listener()
    dead_port = unused.getsockname()[1]
    unused.close()
    selector, fwd, port = forwarder_to(dead_port)
    client = socket.create_connection(("127.0.0.1", port))
    client.settimeout(5)
    for _ in range(50):
        drive(selector, 1)
        if not fwd.relays:
            break
    assert client.recv(10) == b""
    assert not fwd.relays
    client.close()
    fwd.close()


def test_connections_beyond_the_cap_are_closed_at_once(monkeypatch):
    monkeypatch.setattr(ports, "MAX_CONNECTIONS", 2)
    upstream = listener()
    selector, fwd, port = forwarder_to(upstream.getsockname()[1])
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    drive(selector, 5)
    assert fwd.connections == 2
    clients[2].settimeout(5)
    assert clients[2].recv(10) == b""
    fwd.close()
    for s in clients + [upstream]:
        s.close()

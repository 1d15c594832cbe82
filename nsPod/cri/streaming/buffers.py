"""The bounded buffer between a connection's reader thread and whoever consumes one of its
streams (a process's stdin, a pod's socket): the reader blocks once `limit` bytes wait, so a
consumer that stops consuming slows its own client down (TCP back-pressure) and nobody else.
"""
import threading
import time


class Closed(Exception):
    """The peer is gone: end of file, or silent for longer than the idle timeout."""


class Pipe:
    def __init__(self, limit=1 << 20):
        self._chunks, self._size, self.limit = [], 0, limit
        self._eof = False
        self._cond = threading.Condition()

    def feed(self, data, timeout=None):
        """Queue data; waits while the buffer is full. False if it was finished meanwhile or
        the wait timed out."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._eof or self._size < self.limit, timeout):
                return False
            if self._eof:
                return False
            self._chunks.append(bytes(data))
            self._size += len(data)
            self._cond.notify_all()
            return True

    def finish(self):
        """End of data: readers get b'' once what is queued is read."""
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def finished(self):
        return self._eof

    def read(self, timeout=None):
        """The next chunk; b'' at the end; None if nothing came within timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._chunks or self._eof, timeout):
                return None
            if not self._chunks:
                return b""
            chunk = self._chunks.pop(0)
            self._size -= len(chunk)
            self._cond.notify_all()
            return chunk


class SocketReader:
    """recv_exact over a socket whose timeout is the write timeout (a send to a client
    that stops reading fails after it): a read waits through those timeouts until nothing
    has come for `idle_timeout` seconds."""

    def __init__(self, sock, buffered=b"", idle_timeout=4 * 3600):
        self.sock, self.idle_timeout = sock, idle_timeout
        self._buffer = bytearray(buffered)

    def recv_exact(self, n):
        last = time.monotonic()
        while len(self._buffer) < n:
            try:
                chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            except TimeoutError:
                if time.monotonic() - last > self.idle_timeout:
                    raise Closed("idle timeout") from None
                continue
            except OSError as e:
                raise Closed(str(e)) from None
            if not chunk:
                raise Closed("end of file")
            last = time.monotonic()
            self._buffer += chunk
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

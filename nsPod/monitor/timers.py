"""The monitor's timers: one heap of (when, sequence, callback) that the loop sleeps toward.

Backoff, probe periods, grace periods, deadlines and control timeouts are all entries here;
the loop's selector waits until the nearest one (next_timeout) and then runs what is due.
The clock is injected, so the policies that set timers are unit-tested on a fake one.
"""
import heapq
import itertools
import sys
import time

from nsPod.errors import describe

MAX_WAIT = 86400.0           # longest single sleep of the loop
MAX_DELAY = 100 * 365 * 86400.0   # a timer further away than this is as good as never


def clamp_delay(delay):
    """A timer's delay as the loop can keep it: manifests allow any integer (a 30-day
    activeDeadlineSeconds, a 10**30 s grace period); NaN and negatives mean now."""
    try:
        delay = float(delay)
    except (TypeError, ValueError, OverflowError):
        return MAX_DELAY if isinstance(delay, int) else 0.0
    if delay != delay or delay <= 0:
        return 0.0
    return min(delay, MAX_DELAY)


class Timers:
    def __init__(self, clock=time.monotonic):
        self.now = clock
        self.heap = []             # (monotonic time, sequence, callback)
        self.cancelled = set()
        self.sequence = itertools.count()

    def at(self, delay, callback):
        """Run callback after delay seconds; returns a token for cancel()."""
        token = next(self.sequence)
        heapq.heappush(self.heap, (self.now() + clamp_delay(delay), token, callback))
        return token

    def cancel(self, token):
        if token is not None:
            self.cancelled.add(token)

    def run(self):
        """Run every timer that is due, in the order they fall due."""
        now = self.now()
        while self.heap and self.heap[0][0] <= now:
            _, token, callback = heapq.heappop(self.heap)
            if token in self.cancelled:
                self.cancelled.discard(token)
                continue
            try:
                callback()
            except Exception as e:  # a bug in one timer's work must not end the pod
                print(f"nspod monitor: timer: {type(e).__name__}: {describe(e)}",
                      file=sys.stderr)

    def next_timeout(self):
        """Seconds until the nearest timer (None: no timer), as the selector takes it."""
        while self.heap and self.heap[0][1] in self.cancelled:
            self.cancelled.discard(heapq.heappop(self.heap)[1])
        if not self.heap:
            return None
        # The kernel takes no longer wait than ~24.8 days (epoll's int milliseconds): a far
        # timer is reached by waking up now and then, not by one overlong sleep.
        return min(MAX_WAIT, max(0.0, self.heap[0][0] - self.now()))


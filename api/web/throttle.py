"""A small limit on failed sign-ins per client address, kept in this process's memory.

Keys are long random strings, so guessing one is not practical; the limit keeps a script from
trying anyway and from filling the log. Each process (uvicorn worker) counts on its own, so with
N workers an address gets up to N times the limit; it forgets everything on restart.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

FAILURES_ALLOWED = 10  # failed sign-ins per address ...
WINDOW_SECONDS = 60.0  # ... within this many seconds
MAX_ADDRESSES = 10_000  # addresses remembered at once; the oldest are forgotten first


class FailedSignIns:
    def __init__(self, allowed: int = FAILURES_ALLOWED, window: float = WINDOW_SECONDS, clock=time.monotonic,
                 max_addresses: int = MAX_ADDRESSES) -> None:
        self.allowed, self.window, self.clock, self.max_addresses = allowed, window, clock, max_addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int | None:
        """Seconds until this address may try again, or None when it may try now."""
        with self._lock:
            return self._wait(address)

    def attempt(self, address: str) -> int | None:
        """Count a sign-in as failed before its key is checked, so requests sent in parallel cannot
        all pass the limit while the first are being checked: None when it may go on (then
        `succeeded` takes the count back if the key was right), else the seconds to wait."""
        with self._lock:
            wait = self._wait(address)
            if wait is None:
                self._record(address)
            return wait

    def succeeded(self, address: str) -> None:
        with self._lock:
            times = self._failures.get(address)
            if times:
                times.pop()
                if not times:
                    del self._failures[address]

    def failed(self, address: str) -> None:
        with self._lock:
            self._record(address)

    def _wait(self, address: str) -> int | None:
        times = self._recent(address)
        if times is None or len(times) < self.allowed:
            return None
        return max(1, math.ceil(times[0] + self.window - self.clock()))

    def _record(self, address: str) -> None:
        times = self._recent(address)
        if times is None:
            if len(self._failures) >= self.max_addresses:
                self._forget_oldest()
            times = self._failures[address] = deque()
        times.append(self.clock())
        while len(times) > self.allowed:
            times.popleft()

    def _recent(self, address: str) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        cutoff = self.clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def _forget_oldest(self) -> None:
        """Drop expired addresses; if all are recent, the one whose last failure is oldest."""
        cutoff = self.clock() - self.window
        for address in [a for a, t in self._failures.items() if not t or t[-1] <= cutoff]:
            del self._failures[address]
        if len(self._failures) >= self.max_addresses:
            del self._failures[min(self._failures, key=lambda a: self._failures[a][-1])]

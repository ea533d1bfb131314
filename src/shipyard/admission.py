"""Admission: how many requests of each model are in, and the refusal of one more.

A request is admitted when it arrives, before its body is read; refusing it then costs a dictionary
lookup, so overload cannot make refusals as dear as answers. Requests still sending their bodies count
apart from those at work (up to READING x the limit), so slow senders cannot take the places of
requests at work. The data plane (dataplane.py) admits, and releases in every case; the transport asks
`refusal()` for a request it has only the URL of (server/transport.py).
"""

from __future__ import annotations

import math
import time

from shipyard.errors import Overloaded

REFUSALS_PER_S = 100
READING = 4  # requests still sending their bodies, per request the in-flight limit admits at work


class Backoff:
    """How long refused clients are told to wait (Retry-After). Last second's refusals times the wait
    each was given is about how many clients are waiting to come back; spreading them over
    `per_second` keeps refusals at about that rate however large the flood, which leaves the CPU to
    the requests that were admitted (over HTTP, a connection that ignores it has its next request read
    only then). One second when refusals are rare."""

    def __init__(self, per_second: int = REFUSALS_PER_S, longest_s: int = 30) -> None:
        self.per_second, self.longest_s = per_second, longest_s
        self._window, self._count, self._current = 0, 0, 1

    def retry_after(self) -> int:
        window = int(time.monotonic())
        if window != self._window:
            waiting = self._count * self._current if window == self._window + 1 else 0
            self._current = min(self.longest_s, max(1, math.ceil(waiting / self.per_second)))
            self._window, self._count = window, 0
        self._count += 1
        return self._current


class Admission:
    """Per model: requests reading their bodies, and requests at work (decoded, queued or running)."""

    def __init__(self) -> None:
        self._reading: dict[str, int] = {}
        self._working: dict[str, int] = {}
        self._backoff = Backoff()

    def refusal(self, name: str, limit: int) -> Overloaded | None:
        """The refusal a request of `name` gets now, or None while the model has room (`limit` at work)."""
        working, reading = self._working.get(name, 0), self._reading.get(name, 0)
        if working < limit and reading < READING * limit:
            return None
        return Overloaded(
            f"{name} is overloaded: {working + reading} requests are in flight; retry later",
            self._backoff.retry_after(),
        )

    def admit(self, name: str, limit: int) -> Overloaded | None:
        """In, reading its body; or the refusal, when `name` has no room (`limit` at work)."""
        reading = self._reading.get(name, 0)
        if self._working.get(name, 0) >= limit or reading >= READING * limit:
            return self.refusal(name, limit)
        self._reading[name] = reading + 1
        return None

    def body_read(self, name: str) -> None:
        """An admitted request's body is in: it is at work now."""
        self._reading[name] -= 1
        self._working[name] = self._working.get(name, 0) + 1

    def release(self, name: str, body_read: bool) -> None:
        if body_read:
            self._working[name] -= 1
        else:
            self._reading[name] -= 1

    def in_flight(self, name: str) -> int:
        return self._working.get(name, 0) + self._reading.get(name, 0)

"""A token bucket: at most `rate` a second on average, bursts of up to `burst`, on a monotonic clock.
What rate-limits a token's requests (server/auth.py), the prediction log's records (monitor/predlog.py)
and the copies of requests a shadow version gets (rollout/shadow.py)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = float(burst)
        self._last = clock()

    def _fill(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        return self._tokens

    def take(self, wanted: int = 1) -> int:
        """How many of `wanted` may go now (all, some or none); those are taken from the bucket."""
        taken = min(wanted, int(self._fill()))
        self._tokens -= taken
        return taken

    def wait(self) -> float:
        """0 when one may go now (and it is taken), else the seconds until one may."""
        if self.take():
            return 0.0
        return (1 - self._tokens) / self.rate

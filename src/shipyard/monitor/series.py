"""Recent traffic of one version as time buckets: requests, errors and a latency histogram in each.

Cheap to feed (a bisect and three increments per request, no allocation) and bounded (the last
`keep` buckets). Quantiles come from log-spaced latency bins: within ~10% of the true value, which
is what a dashboard needs; Prometheus holds the exact histograms.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# 60 bins per 5 decades, from 0.1 ms to 10 s: each bin 21% wider than the one before
EDGES_MS = [0.1 * 10 ** (i / 12) for i in range(61)]
_EDGES_S = np.asarray(EDGES_MS) / 1000


@dataclass
class Bucket:
    index: int
    """Which bucket since the epoch: its start is index * bucket_s."""
    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(EDGES_MS) + 1))


def quantile(counts: list[int], q: float) -> float | None:
    """The `q` quantile of a latency histogram, in ms (the upper edge of its bin)."""
    total = sum(counts)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for i, count in enumerate(counts):
        seen += count
        if seen >= rank and count:
            return EDGES_MS[min(i, len(EDGES_MS) - 1)]
    return EDGES_MS[-1]


class Series:
    def __init__(
        self, bucket_s: float = 1.0, keep: int = 600, clock: Callable[[], float] = time.time
    ) -> None:
        self.bucket_s = bucket_s
        self._clock = clock
        self._buckets: deque[Bucket] = deque(maxlen=keep)
        self.latency_total = np.zeros(len(EDGES_MS) + 1, dtype=np.int64)
        """Every answer's latency since the start, by bin: what a rollout's gates judge (counts only grow)."""

    def add(self, latency_ms: float, ok: bool) -> None:
        bucket = self._now()
        bucket.requests += 1
        if ok:
            i = bisect.bisect_left(EDGES_MS, latency_ms)
            bucket.latency[i] += 1
            self.latency_total[i] += 1
        else:
            bucket.errors += 1

    def add_all(self, seconds: np.ndarray, at: np.ndarray) -> None:
        """Answers noted together: their latencies (seconds), each counted in the bucket of when it was
        answered (`at`, by the series' clock), not of when they were noted: a flush can come a second
        later."""
        indexes = (np.asarray(at) // self.bucket_s).astype(np.int64)
        bins = np.searchsorted(_EDGES_S, seconds, side="left")
        self.latency_total += np.bincount(bins, minlength=len(self.latency_total))
        for index in np.unique(indexes).tolist():
            mine = bins[indexes == index]
            bucket = self._bucket(index)
            bucket.requests += len(mine)
            found = np.bincount(mine, minlength=len(EDGES_MS) + 1)
            latency = bucket.latency
            for i in np.flatnonzero(found).tolist():
                latency[i] += int(found[i])

    def _now(self) -> Bucket:
        """The bucket of now."""
        return self._bucket(int(self._clock() // self.bucket_s))

    def _bucket(self, index: int) -> Bucket:
        """The bucket of second `index`, started if need be; one older than every bucket kept, when no
        room is left, counts in the oldest."""
        buckets = self._buckets
        if not buckets or buckets[-1].index < index:
            buckets.append(Bucket(index))
            return buckets[-1]
        for position in range(len(buckets) - 1, -1, -1):
            found = buckets[position]
            if found.index == index:
                return found
            if found.index < index:  # a second with no bucket yet, between two that have one
                if len(buckets) == buckets.maxlen:
                    buckets.popleft()
                    position -= 1
                buckets.insert(position + 1, Bucket(index))
                return buckets[position + 1]
        if len(buckets) < (buckets.maxlen or 0):  # older than every bucket, with room for it
            buckets.appendleft(Bucket(index))
        return buckets[0]

    def recent(self, seconds: float) -> tuple[int, int, list[int]]:
        """Requests, errors and merged latency counts over the last `seconds`."""
        since = self._clock() - seconds
        requests = errors = 0
        merged = [0] * (len(EDGES_MS) + 1)
        for bucket in self._buckets:
            if (bucket.index + 1) * self.bucket_s > since:
                requests += bucket.requests
                errors += bucket.errors
                merged = [a + b for a, b in zip(merged, bucket.latency, strict=True)]
        return requests, errors, merged

    def table(self) -> dict[str, list[float | None]]:
        """One point per bucket, gaps filled with zero traffic: for the dashboard's charts."""
        out: dict[str, list[float | None]] = {"t": [], "rps": [], "p50_ms": [], "p99_ms": [], "error_pct": []}
        if not self._buckets:
            return out
        by_index = {b.index: b for b in self._buckets}
        now = self._clock()
        last = int(now // self.bucket_s)
        for index in range(max(self._buckets[0].index, last - (self._buckets.maxlen or 1) + 1), last + 1):
            b = by_index.get(index)
            start = index * self.bucket_s
            out["t"].append(start)
            elapsed = min(self.bucket_s, max(now - start, 1e-3))
            out["rps"].append((b.requests / elapsed) if b else 0.0)
            out["p50_ms"].append(quantile(b.latency, 0.5) if b else None)
            out["p99_ms"].append(quantile(b.latency, 0.99) if b else None)
            out["error_pct"].append((100 * b.errors / b.requests) if b and b.requests else 0.0)
        return out

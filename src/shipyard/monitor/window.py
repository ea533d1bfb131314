"""A bounded window of recent live observations: feature rows, predicted classes and confidences.

A numpy ring buffer, so `observe()` costs O(batch) on the server's hot path (a copy into preallocated
arrays, no per-row Python objects) and memory stays fixed at `capacity` rows whatever the traffic.
Rows leave by count (the oldest make room) and, with `max_age_s`, by age: a row older than that is
dropped when the window is next read. Ages use a monotonic clock (time.monotonic unless one is passed
in), never wall-clock time, which can jump. Scores are computed from `snapshot()` on demand.

A window that keeps scores also takes rows without them (a request that asked only for other outputs):
their class is UNSCORED and their confidence NaN, so their features still count while the class and
confidence statistics read only the scored rows.

Safe to share between threads: a short lock guards each observe and snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shipyard.errors import InvalidInput

CAPACITY = 500
UNSCORED = -1
"""The class of a row observed without scores."""


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The window's rows, oldest first, copied out so scoring never races new observations."""

    features: np.ndarray
    classes: np.ndarray | None = None
    confidence: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.features)


class SlidingWindow:
    """The last `capacity` rows of `features` values each, with classes and confidences when `scores`."""

    def __init__(
        self,
        features: int,
        *,
        capacity: int = CAPACITY,
        max_age_s: float | None = None,
        scores: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if features < 1 or capacity < 1:
            raise InvalidInput(f"a window needs at least one feature and one row, got {features}, {capacity}")
        if max_age_s is not None and max_age_s <= 0:
            raise InvalidInput(f"max_age_s must be positive, got {max_age_s}")
        self.capacity = capacity
        self.max_age_s = max_age_s
        self.scores = scores
        self._clock = clock
        self._features = np.empty((capacity, features))
        self._times = np.empty(capacity)
        self._classes = np.empty(capacity, dtype=np.int64) if scores else None
        self._confidence = np.empty(capacity) if scores else None
        self._start = 0  # index of the oldest row
        self._size = 0
        self._last = -np.inf  # latest time seen: keeps stored times sorted even if a caller's clock isn't
        self._lock = threading.Lock()

    def observe(
        self,
        features: np.ndarray,
        classes: np.ndarray | None = None,
        confidence: np.ndarray | None = None,
        *,
        now: float | None = None,
    ) -> None:
        """Add a batch of rows ([n, features]; with `scores`, also [n] classes and confidences, or neither
        for rows whose scores are unknown)."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self._features.shape[1]:
            raise InvalidInput(
                f"window rows have {self._features.shape[1]} features, got shape {list(features.shape)}"
            )
        n = len(features)
        if self.scores:
            if (classes is None) != (confidence is None):
                raise InvalidInput("this window keeps scores: pass classes and confidence together")
            if classes is None or confidence is None:
                classes, confidence = np.full(n, UNSCORED, np.int64), np.full(n, np.nan)
            if not len(classes) == len(confidence) == n:
                raise InvalidInput(
                    f"{n} feature rows but {len(classes)} classes, {len(confidence)} confidences"
                )
        if n == 0:
            return
        keep = slice(max(0, n - self.capacity), n)  # a batch larger than the window keeps its newest rows
        with self._lock:
            stamp = self._last = max(self._last, self._clock() if now is None else now)
            end = (self._start + self._size) % self.capacity
            _put(self._features, end, features[keep])
            _put(self._times, end, np.full(keep.stop - keep.start, stamp))
            if self._classes is not None and self._confidence is not None:
                _put(self._classes, end, np.asarray(classes)[keep])
                _put(self._confidence, end, np.asarray(confidence)[keep])
            overflow = max(0, self._size + (keep.stop - keep.start) - self.capacity)
            self._start = (self._start + overflow) % self.capacity
            self._size += keep.stop - keep.start - overflow

    def snapshot(self, *, now: float | None = None) -> Snapshot:
        """The current rows, oldest first, after dropping those older than `max_age_s`."""
        with self._lock:
            order = _positions(self._start, self._size, self.capacity)
            if self.max_age_s is not None and self._size:
                cutoff = (self._clock() if now is None else now) - self.max_age_s
                expired = int(np.searchsorted(self._times[order], cutoff, side="left"))
                order = order[expired:]
                self._start = (self._start + expired) % self.capacity
                self._size -= expired
            return Snapshot(
                self._features[order],
                None if self._classes is None else self._classes[order],
                None if self._confidence is None else self._confidence[order],
            )

    def clear(self) -> None:
        with self._lock:
            self._start = self._size = 0


def _positions(start: int, count: int, capacity: int) -> np.ndarray:
    return (start + np.arange(count)) % capacity


def _put(buffer: np.ndarray, at: int, rows: np.ndarray) -> None:
    """Write rows into the ring from index `at`, wrapping around the end (at most two slice copies)."""
    first = min(len(rows), len(buffer) - at)
    buffer[at : at + first] = rows[:first]
    buffer[: len(rows) - first] = rows[first:]


__all__ = ["CAPACITY", "UNSCORED", "SlidingWindow", "Snapshot"]

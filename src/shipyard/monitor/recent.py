"""The latest predictions by request id, kept in memory so that feedback can find what was predicted.

Feedback (the true label of a request) often arrives seconds after the answer: sooner than the
prediction log's files become readable, and for requests the log sampled out. So the server fills this
bounded index at answer time and looks requests up here; the oldest entries make room for new ones.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple


class RecentPrediction(NamedTuple):
    model: str
    version: int
    class_: str | None
    """The predicted class, when the model has one (None for raw scores or a failed request)."""


class RecentPredictions:
    """A thread-safe map request id -> (model, version, class) holding the latest `capacity` entries."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        # plain tuples: building the NamedTuple only on lookup keeps add() cheap on the request path
        self._entries: OrderedDict[str, tuple[str, int, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, request_id: str, model: str, version: int, class_: str | None) -> None:
        """Remember a prediction; a repeated id counts as new, so it is the last to be evicted."""
        with self._lock:
            entries = self._entries
            if request_id in entries:
                entries.move_to_end(request_id)
            entries[request_id] = (model, version, class_)
            if len(entries) > self.capacity:
                entries.popitem(last=False)

    def lookup(self, request_id: str) -> RecentPrediction | None:
        """What was predicted for this request, or None when it is unknown or already evicted."""
        with self._lock:
            entry = self._entries.get(request_id)
        return None if entry is None else RecentPrediction._make(entry)

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["RecentPrediction", "RecentPredictions"]

"""The latest predictions by request id, kept in memory so that feedback can find what was predicted.

Feedback (the true label of a request) often arrives seconds after the answer: sooner than the
prediction log's files become readable, and for requests the log sampled out. So the server fills this
bounded index at answer time and looks requests up here; the oldest entries make room for new ones.
Most predictions are never given feedback, so the server stores each one's top class index with a
reader, and the class is named only when feedback looks it up (`add_all`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

ClassReader = Callable[[Any], str | None]
"""Names the predicted class from what `add_all` stored for a prediction (the server: its top index)."""


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
        # plain tuples: building the NamedTuple only on lookup keeps adding cheap on the request path;
        # (model, version, class or what `reader` reads it from, reader or None)
        self._entries: OrderedDict[str, tuple[str, int, Any, ClassReader | None]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, request_id: str, model: str, version: int, class_: str | None) -> None:
        """Remember a prediction; a repeated id counts as new, so it is the last to be evicted."""
        self.add_all([request_id], model, version, [class_])

    def add_all(
        self,
        ids: Sequence[str],
        model: str,
        version: int,
        found: Sequence[Any],
        reader: ClassReader | None = None,
    ) -> None:
        """Remember predictions of one version under one lock. `found[i]` is the class of `ids[i]`, or,
        with a `reader`, what it reads the class from when the prediction is looked up."""
        with self._lock:
            entries, capacity = self._entries, self.capacity
            for request_id, what in zip(ids, found, strict=True):
                if request_id in entries:
                    entries.move_to_end(request_id)
                entries[request_id] = (model, version, what, reader)
            while len(entries) > capacity:
                entries.popitem(last=False)

    def lookup(self, request_id: str) -> RecentPrediction | None:
        """What was predicted for this request, or None when it is unknown or already evicted."""
        with self._lock:
            entry = self._entries.get(request_id)
        if entry is None:
            return None
        model, version, what, reader = entry
        return RecentPrediction(model, version, what if reader is None else reader(what))

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["RecentPrediction", "RecentPredictions"]

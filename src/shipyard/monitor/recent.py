"""The latest predictions by request id, kept in memory so that feedback can find what was predicted.

Feedback (the true label of a request) often arrives seconds after the answer: sooner than the
prediction log's files become readable, and for requests the log sampled out. So the server fills this
bounded index at answer time and looks requests up here; the oldest entries make room for new ones.
Most predictions are never given feedback, so the server stores each one's top class index with a
reader, and the class is named only when feedback looks it up (`add_all`).
"""

from __future__ import annotations

import threading
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
        # A ring of slots, the oldest overwritten first, and a plain dict id -> slot: constant work per
        # prediction, and nothing per entry that the garbage collector has to scan (ints and strings
        # only; one (model, version, reader) tuple per add_all call). An OrderedDict of tuples holding
        # the reader kept 100,000 tracked objects for every full collection to walk.
        self._slots: dict[str, int] = {}
        self._ids: list[str | None] = [None] * capacity
        self._found: list[Any] = [None] * capacity
        """The class, or what the reader reads it from."""
        self._owners: list[tuple[str, int, ClassReader | None] | None] = [None] * capacity
        self._next = 0
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
        if len(ids) != len(found):
            raise ValueError(f"{len(ids)} ids but {len(found)} predictions")
        owner = (model, version, reader)
        with self._lock:
            slots, ring, capacity, slot = self._slots, self._ids, self.capacity, self._next
            for request_id, what in zip(ids, found, strict=True):
                evicted = ring[slot]
                if evicted is not None and slots.get(evicted) == slot:  # not added again since
                    del slots[evicted]
                ring[slot] = request_id
                self._found[slot] = what
                self._owners[slot] = owner
                slots[request_id] = slot
                slot = slot + 1 if slot + 1 < capacity else 0
            self._next = slot

    def lookup(self, request_id: str) -> RecentPrediction | None:
        """What was predicted for this request, or None when it is unknown or already evicted."""
        with self._lock:
            slot = self._slots.get(request_id)
            if slot is None:
                return None
            what, owner = self._found[slot], self._owners[slot]
        assert owner is not None
        model, version, reader = owner
        return RecentPrediction(model, version, what if reader is None else reader(what))

    def __len__(self) -> int:
        return len(self._slots)


__all__ = ["RecentPrediction", "RecentPredictions"]

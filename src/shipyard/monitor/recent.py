"""The latest predictions by request id, kept in memory so that feedback can find what was predicted.

Feedback (the true label of a request) often arrives seconds after the answer: sooner than the
prediction log's files become readable, and for requests the log sampled out. So the server fills this
bounded index at answer time and looks requests up here; the oldest entries make room for new ones.
Most predictions are never given feedback, so the server stores each one's top class index with a
reader, and the class is named only when feedback looks it up (`add_all`). For the same reason the
predictions are kept as they come, a flush at a time, and indexed by id only when feedback first
looks for them: the request path pays for a list, not for a dictionary entry per prediction.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

ClassReader = Callable[[Any], str | None]
"""Names the predicted class from what `add_all` stored for a prediction (the server: its top index)."""


class RecentPrediction(NamedTuple):
    model: str
    version: int
    class_: str | None
    """The predicted class, when the model has one (None for raw scores or a failed request)."""


@dataclass(eq=False)
class _Chunk:
    """Predictions added together: their ids, what each class is read from, and whose they are."""

    start: int
    """The number of its first prediction, counting every prediction ever added."""
    ids: list[str]
    found: list[Any]
    owner: tuple[str, int, ClassReader | None]
    indexed: bool = False
    gone: int = 0
    """How many of its first predictions were evicted."""


class RecentPredictions:
    """A thread-safe map request id -> (model, version, class) holding the latest `capacity` entries."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._chunks: list[_Chunk] = []  # oldest first; the indexed ones come first
        self._starts: list[int] = []  # each chunk's start, for bisect
        self._added = 0
        self._size = 0
        self._index: dict[str, int] = {}  # id -> its number, for the chunks looked up so far
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
        """Remember predictions of one version. `found[i]` is the class of `ids[i]`, or, with a
        `reader`, what it reads the class from when the prediction is looked up."""
        if len(ids) != len(found):
            raise ValueError(f"{len(ids)} ids but {len(found)} predictions")
        if not ids:
            return
        with self._lock:
            chunk = _Chunk(self._added, list(ids), list(found), (model, version, reader))
            self._chunks.append(chunk)
            self._starts.append(chunk.start)
            self._added += len(ids)
            self._size += len(ids)
            excess = self._size - self.capacity
            while excess > 0:
                excess -= self._evict(excess)

    def _evict(self, most: int) -> int:
        """Evict up to `most` of the oldest predictions (one chunk's at most); how many it evicted."""
        oldest = self._chunks[0]
        evicted = min(most, len(oldest.ids) - oldest.gone)
        if oldest.indexed:
            index = self._index
            for number in range(oldest.start + oldest.gone, oldest.start + oldest.gone + evicted):
                request_id = oldest.ids[number - oldest.start]
                if index.get(request_id) == number:  # not added again since
                    del index[request_id]
        oldest.gone += evicted
        self._size -= evicted
        if oldest.gone == len(oldest.ids):
            del self._chunks[0], self._starts[0]
        return evicted

    def lookup(self, request_id: str) -> RecentPrediction | None:
        """What was predicted for this request, or None when it is unknown or already evicted."""
        with self._lock:
            self._index_new()
            number = self._index.get(request_id)
            if number is None:
                return None
            chunk = self._chunks[bisect.bisect_right(self._starts, number) - 1]
            what = chunk.found[number - chunk.start]
        model, version, reader = chunk.owner
        return RecentPrediction(model, version, what if reader is None else reader(what))

    def _index_new(self) -> None:
        """Index the chunks added since the last lookup, oldest first (a repeated id: its newest)."""
        first = len(self._chunks)
        while first and not self._chunks[first - 1].indexed:
            first -= 1
        for chunk in self._chunks[first:]:
            numbers = range(chunk.start + chunk.gone, chunk.start + len(chunk.ids))
            self._index.update(zip(chunk.ids[chunk.gone :], numbers, strict=True))
            chunk.indexed = True

    def __len__(self) -> int:
        return self._size


__all__ = ["RecentPrediction", "RecentPredictions"]

"""The answers a flush reads from one version's runs (monitor/live.py).

A request is known to the monitor by its note: made as it goes to its batcher (`note`), given to the
batcher with its inputs, and marked when the request is answered (`answered`). The batcher tells the
version's monitor of each run with every note in it (runtime/batcher.py `Ran`), so what a prediction
was (its input row, its scores, its top class) is read from the batch it ran in, a batch at a time:
per request the monitor only makes a note and marks it.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from shipyard.monitor.predlog import PredictionRecord
from shipyard.scoring import ClassOf, top_indexes

if TYPE_CHECKING:
    from shipyard.runtime.batcher import Ran

Note = list[Any]
"""[prediction id, protocol, started, answered]: a plain list, as it is made for every request.
`answered` stays 0.0 until the request is settled: answered (its perf_counter time, as its start), or
UNANSWERED (it failed, timed out or its caller left after all)."""
ID, PROTOCOL, STARTED, ANSWERED = range(4)
UNANSWERED = -1.0


class Taken(NamedTuple):
    """A run as a flush takes it (VersionMonitor.take)."""

    run: Ran
    scores: np.ndarray | None
    """Its class scores, a row per sample (None: it has none): all that is kept of its outputs."""
    answered: bool
    """Whether every request in it was answered."""


def prediction_ids(base: str, rows: int) -> list[str]:
    """The ids of a request's predictions: its own id for one row, `<id>-<row>` for more."""
    return [base] if rows == 1 else [f"{base}-{i}" for i in range(rows)]


def settled(run: Ran) -> tuple[bool, bool]:
    """Whether every request of `run` is settled (answered or not), and whether every one was answered
    (a request nobody watched counts as settled, not answered)."""
    answered = True
    for note in run.notes:
        if note is None:
            answered = False
        elif not note[ANSWERED]:  # type: ignore[index]
            return False, False
        elif note[ANSWERED] < 0:  # type: ignore[index]
            answered = False
    return True, answered


class _Segment:
    """The answered requests of one run: the run, its class scores, and where each request's
    predictions are (None: one row each, request i is row i, the usual case)."""

    __slots__ = ("firsts", "notes", "offsets", "run", "scores", "start")

    def __init__(self, run: Ran, scores: np.ndarray | None, start: int) -> None:
        self.run, self.scores, self.start = run, scores, start
        self.notes: list[Note] = []
        self.firsts: list[int] | None = None  # each request's first prediction, from `start`
        self.offsets: list[tuple[int, int]] | None = None  # each request's first row and rows

    def find(self, k: int) -> tuple[Note, int, int, int]:
        """Of the segment's prediction `k` (from `start`): its request's note, first row and rows, and
        which of its rows it is."""
        if self.firsts is None or self.offsets is None:
            return self.notes[k], k, 1, 0
        request = bisect_right(self.firsts, k) - 1
        offset, rows = self.offsets[request]
        return self.notes[request], offset, rows, k - self.firsts[request]


class Answers:
    """The answered requests of some runs of one version and their predictions, in order."""

    def __init__(self, taken: list[Taken], batched: bool) -> None:
        self.notes: list[Note] = []
        self.ids: list[str] = []
        self._segments: list[_Segment] = []
        self._starts: list[int] = []
        self._batched = batched
        for run, scores, answered in taken:
            if scores is not None and len(scores) != (run.rows if batched else 1):
                scores = None  # not a row per prediction: no class can be read from them
            self._read(run, scores, answered)

    def _read(self, run: Ran, scores: np.ndarray | None, answered: bool) -> None:
        segment = _Segment(run, scores, len(self.ids))
        notes = run.notes
        if answered and len(notes) == run.rows and None not in notes:  # one row each: the usual case
            segment.notes = notes  # type: ignore[assignment]
            self.ids += [note[ID] for note in notes]  # type: ignore[index]
        else:
            segment.firsts, segment.offsets = [], []
            offset = 0
            for note, size in zip(notes, run.sizes, strict=True):
                rows = size if self._batched else 1
                if isinstance(note, list) and note[ANSWERED] > 0:
                    segment.notes.append(note)
                    segment.firsts.append(len(self.ids) - segment.start)
                    segment.offsets.append((offset, rows))
                    self.ids += prediction_ids(note[ID], rows)
                offset += rows
        if segment.notes:
            self.notes += segment.notes
            self._segments.append(segment)
            self._starts.append(segment.start)

    def top(self) -> list[int | None]:
        """Each prediction's top class index (None: no class scores, or one that is not finite),
        read for all the runs at once when their scores are alike, as they usually are."""
        blocks: list[tuple[np.ndarray | None, int]] = []  # scores (or None) of so many predictions
        for segment in self._segments:
            scores = segment.scores
            if segment.offsets is None:
                blocks.append((scores, len(segment.notes)))
            else:
                blocks += [(None if scores is None else scores[o : o + n], n) for o, n in segment.offsets]
        arrays = [scores for scores, _ in blocks if scores is not None]
        if arrays and len(arrays) == len(blocks) and len({(a.shape[1:], a.dtype) for a in arrays}) == 1:
            return top_indexes(np.concatenate(arrays))
        found: list[int | None] = []
        for scores, n in blocks:
            found += [None] * n if scores is None else top_indexes(scores)
        return found

    def seconds(self) -> tuple[np.ndarray, np.ndarray]:
        """Each answered request's latency and when it was answered (perf_counter), in seconds."""
        notes = self.notes
        answered = np.array([note[ANSWERED] for note in notes], dtype=np.float64)
        return answered - np.array([note[STARTED] for note in notes], dtype=np.float64), answered

    def records(
        self, chosen: list[int], model: str, version: int, class_of: ClassOf, clock: float
    ) -> list[PredictionRecord]:
        """The log's records of the chosen predictions (indexes into `ids`); `clock` turns a
        perf_counter time into seconds since the epoch."""
        picked = []
        for k in chosen:
            segment = self._segments[bisect_right(self._starts, k) - 1]
            note, offset, rows, i = segment.find(k - segment.start)
            row = slice(offset, offset + 1) if rows == 1 else offset + i
            first = next(iter(segment.run.inputs.values()), None)
            scores = segment.scores
            if first is not None and first.ndim and self._batched:
                first = first[row].copy()  # its own rows: a record waiting for the writer pins no batch
            picked.append((note, first, None if scores is None else scores[row].copy()))
        read = class_of.read_all([scores for _, _, scores in picked])
        return [
            PredictionRecord(
                self.ids[k],
                note[ANSWERED] + clock,
                model,
                version,
                note[PROTOCOL],
                inputs,
                scores,
                class_,
                confidence,
                (note[ANSWERED] - note[STARTED]) * 1000,
                200,
            )
            for k, (note, inputs, scores), (class_, confidence) in zip(chosen, picked, read, strict=True)
        ]

"""What a server watches while it serves: per model version, traffic, latency, confidence, drift from
the reference profile, accuracy from feedback and cost; plus the prediction log.

The request path calls `answered()` / `failed()` (and each batcher calls its version's `batch_done()`):
an answer is noted (its ids made, the rest appended to a list) and counted and offered to the log in
`flush()`: every FLUSH_EVERY answers (once the one that filled the list has gone out), at each tick
(once a second), and first thing on every read of the figures, so that no reader sees them stale.
A flush works per group of answers, not per answer: one count and one histogram update per bucket,
one lock for the recent predictions, the log's sampling and rate limit decided for the group at once;
feedback keeps each prediction's top class index (read for the group as one batch), and the log reads
class and confidence only of the records it keeps. Everything that costs more
(drift scores, quantiles, gauges) runs in `tick()`, once a second, or when a page or `monitor status`
asks. This module holds the versions' monitors (monitor/version.py) and the request taps; feedback is
joined in monitor/join.py and the tick's gauges set in monitor/gauges.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from shipyard.config import MonitorSettings
from shipyard.monitor.drift import DriftReport
from shipyard.monitor.feedback import Label
from shipyard.monitor.gauges import Gauges
from shipyard.monitor.join import FeedbackJoin
from shipyard.monitor.logfiles import ParquetSink
from shipyard.monitor.metrics import Metrics
from shipyard.monitor.predlog import PredictionLog, PredictionRecord, Sink
from shipyard.monitor.recent import RecentPredictions
from shipyard.monitor.version import VersionMonitor
from shipyard.registry import VersionRecord
from shipyard.scoring import ClassOf, top_indexes

log = logging.getLogger(__name__)

RECENT_CAPACITY = 100_000
"""Latest predictions kept in memory for feedback (about 20 MB)."""
FLUSH_EVERY = 256
"""Answers noted before they are counted and logged together (Monitor.flush). A flush costs tens of
microseconds whatever it holds: once per loop turn (a few answers at a time) it was most of what
monitoring cost the digits MLP at 64 connections."""


class Answer(NamedTuple):
    """An answer noted by Monitor.answered, until flush() counts and logs it."""

    record: VersionRecord
    protocol: str
    seconds: float
    at: float
    """When it was answered, by time.perf_counter()."""
    first: np.ndarray | None
    scores: np.ndarray | None
    ids: list[str]


class RequestIds:
    """Prediction ids made by the server: 128 random bits each, so feedback cannot guess another's id.
    The bits are read from the OS 256 ids at a time (one getrandom call per id measured ~5% of the
    event loop's time on the CNN). Called on the event loop only."""

    BATCH = 256

    def __init__(self) -> None:
        self._hex = ""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)  # a forked worker never repeats its parent's

    def _forget(self) -> None:
        self._hex, self._at = "", 0

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._hex):
            self._hex, at = os.urandom(16 * self.BATCH).hex(), 0
        self._at = at + 32
        return self._hex[at : at + 32]


new_request_id = RequestIds()
_new_answer = functools.partial(tuple.__new__, Answer)
"""Answer((...)) without the Python-level __new__ of a NamedTuple: made once per request."""


class Monitor:
    """Every version's monitor, the prediction log and the metrics of one server process."""

    def __init__(
        self,
        settings: MonitorSettings,
        log_to: str | Sink | None = None,
        *,
        recent_capacity: int = RECENT_CAPACITY,
    ) -> None:
        """`log_to`: the prediction log's folder (or any Sink); None keeps no log. `recent_capacity`:
        the latest predictions kept in memory for feedback; older ones are looked up in the log's files
        (when it writes Parquet files)."""
        self.settings = settings
        self.metrics = Metrics()
        self.recent = RecentPredictions(recent_capacity)
        if isinstance(log_to, str):
            log_to = ParquetSink(log_to, keep_inputs=settings.log_inputs)
        self.log = (
            PredictionLog(
                log_to,
                sample_fraction=settings.log_sample,
                max_per_second=settings.log_max_per_second,
                queue_size=settings.log_queue,
            )
            if settings.log and log_to is not None
            else None
        )
        log_root = log_to.root if self.log is not None and isinstance(log_to, ParquetSink) else None
        self._join = FeedbackJoin(self.recent, log_root)
        self._gauges = Gauges(self.metrics)
        self._versions: dict[tuple[str, int], VersionMonitor] = {}
        self._making = threading.Lock()  # feedback may make a version's monitor from a worker thread
        self._pending: deque[Answer] = deque()  # appended on the loop, drained by flush() anywhere
        self._flushing = threading.Lock()

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, up to date."""
        self.flush()
        return self.metrics.exposition()

    def version(self, record: VersionRecord) -> VersionMonitor:
        """The monitor of a version (made on first use, kept across unloads and reloads; a new
        reference profile rebuilds its drift watch, its counters stay), up to date (flush())."""
        self.flush()
        return self._monitor_of(record)

    def _monitor_of(self, record: VersionRecord) -> VersionMonitor:
        found = self._versions.get((record.model, record.number))
        if found is None:
            found = self._make(record)
        elif found.record.reference is not record.reference and found.record.reference != record.reference:
            found.use_reference(record)  # rare: compared only when the records are different objects
        return found

    def _make(self, record: VersionRecord) -> VersionMonitor:
        """A version's monitor, made once even when two threads ask at the same time."""
        key = (record.model, record.number)
        with self._making:
            found = self._versions.get(key)
            if found is None:
                found = self._versions[key] = VersionMonitor(record, self.settings, self.metrics)
            return found

    def known(self, model: str) -> list[VersionMonitor]:
        self.flush()
        return [m for (name, _), m in sorted(list(self._versions.items())) if name == model]

    def start(self) -> None:
        if self.log is not None:
            self.log.start()

    def close(self) -> None:
        self.flush()
        if self.log is not None:
            self.log.close(timeout=10)

    def answered(
        self,
        record: VersionRecord,
        protocol: str,
        started: float,
        inputs: Mapping[str, np.ndarray],
        scores: np.ndarray | None,
        request_id: str | None = None,
    ) -> list[str]:
        """Note an answer; returns each row's prediction id, which feedback refers to: `request_id`
        (new_request_id() when None) for one row, `<id>-<row>` for more. Counting and logging happen in
        flush(), FLUSH_EVERY answers at a time (or sooner, when the figures are read); confidence and
        drift are the batcher's (batch_done). `inputs` and `scores` must not change afterwards."""
        now = time.perf_counter()
        if request_id is None:
            request_id = new_request_id()
        first = next(iter(inputs.values())) if inputs else None
        rows = 1
        if first is not None and first.ndim and len(first) > 1 and self._batched(record):
            rows = len(first)
        ids = [request_id] if rows == 1 else [f"{request_id}-{i}" for i in range(rows)]
        pending = self._pending
        pending.append(_new_answer((record, protocol, now - started, now, first, scores, ids)))
        if len(pending) == FLUSH_EVERY:
            _soon(self.flush)
        elif len(pending) >= 4 * FLUSH_EVERY:
            self.flush()  # no loop has run the flush asked for: a caller without one
        return ids

    def flush(self) -> None:
        """Count and log the answers noted since the last flush: on every read of what they change
        (metrics, statistics, summaries, feedback), at each tick, and every FLUSH_EVERY answers."""
        with self._flushing:  # feedback flushes from a worker thread: a reader waits for a flush under way
            pending, noted = [], self._pending
            while noted:  # popleft, not a swap of lists: an answer noted meanwhile is never lost
                pending.append(noted.popleft())
            if not pending:
                return
            clock = time.time() - time.perf_counter()  # + an answer's `at`: its time for the log
            groups: dict[tuple[int, str], list[Answer]] = {}
            for answer in pending:
                groups.setdefault((id(answer.record), answer.protocol), []).append(answer)
            for answers in groups.values():
                self._count(answers, clock)

    def _count(self, answers: list[Answer], clock: float) -> None:
        """Count answers of one version over one protocol, remember their predictions for feedback and
        offer them to the log."""
        record, protocol = answers[0].record, answers[0].protocol
        monitor = self._monitor_of(record)
        seconds = np.array([a.seconds for a in answers])
        self.metrics.requests_answered(record.model, str(record.number), protocol, seconds)
        ids, scores = _predictions(answers, monitor.batched)
        monitor.answered_all(seconds, np.array([a.at for a in answers]) + clock, len(ids))
        top = top_indexes(scores)  # feedback keeps each prediction's top index, not its scores
        self.recent.add_all(ids, record.model, record.number, top, monitor.class_of.name)
        if self.log is not None:
            chosen = self.log.admit(len(ids))
            if chosen:
                self.log.queue(_records(answers, chosen, ids, scores, monitor.class_of, clock))

    def _batched(self, record: VersionRecord) -> bool:
        return self._monitor_of(record).batched

    def failed(
        self, model: str, version: VersionRecord | None, protocol: str, status: int, started: float
    ) -> None:
        seconds = time.perf_counter() - started
        if version is not None:
            self._monitor_of(version).failed(seconds)
        self.metrics.request(model, str(version.number) if version else "", protocol, str(status), seconds)

    def feedback(
        self,
        model: str,
        items: Iterable[tuple[str, Label]],
        records: Mapping[int, VersionRecord] | None = None,
    ) -> dict[str, Any]:
        """Join labels to the predictions of `model` by prediction id; all or nothing, and it may block
        (monitor/join.py). `records` (version number -> record) lets a version that this process has
        not watched yet be judged; without it such a prediction is a 404."""

        self.flush()

        def monitor_of(number: int) -> VersionMonitor | None:
            monitor = self._versions.get((model, number))
            if monitor is None and records is not None and number in records:
                monitor = self._make(records[number])
            return monitor

        return self._join.join(model, items, monitor_of)

    def drift_reports(self) -> dict[tuple[str, int], DriftReport]:
        """Every watched version's drift scores now: milliseconds each, so callers run it in a thread
        (the windows are thread-safe)."""
        reports = {}
        for key, monitor in list(self._versions.items()):
            report = monitor.watch.drift_scores()
            if report is not None:
                reports[key] = report
        return reports

    def tick(
        self,
        states: Mapping[tuple[str, int], tuple[bool, int, int, int]],
        reports: Mapping[tuple[str, int], DriftReport] | None = None,
    ) -> None:
        """Once a second, on the event loop: the gauges (monitor/gauges.py). `states` maps (model,
        version) -> (resident, memory bytes, queued, in flight) for every version served; `reports`:
        drift_reports()."""
        self.flush()
        self._gauges.states(states)
        self._gauges.quality(dict(self._versions))
        self._gauges.drift(reports or {})
        if self.log is not None:
            self._gauges.log(self.log.counters())


def _soon(flush: Callable[[], None]) -> None:
    """`flush` on the running event loop once the callbacks ready now have run (none: readers flush)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_soon(flush)


def _predictions(answers: list[Answer], batched: bool) -> tuple[list[str], list[np.ndarray | None]]:
    """Each prediction's id and row of scores (None: no scores, or not a row of them per prediction)."""
    if all(len(a.ids) == 1 for a in answers):  # one row each, the usual case
        each = [a.scores for a in answers]
        return [a.ids[0] for a in answers], [
            s if s is None or not batched or len(s) == 1 else None for s in each
        ]
    ids: list[str] = []
    scores: list[np.ndarray | None] = []
    for answer in answers:
        ids += answer.ids
        rows, found = len(answer.ids), answer.scores
        if found is None or (batched and len(found) != rows):
            scores.extend([None] * rows)
        elif rows == 1:
            scores.append(found)
        else:
            scores.extend(found)
    return ids, scores


def _records(
    answers: list[Answer],
    chosen: list[int],
    ids: list[str],
    scores: list[np.ndarray | None],
    class_of: ClassOf,
    clock: float,
) -> list[PredictionRecord]:
    """The log's records of the chosen predictions (indexes into `ids`) of answers of one version."""
    if len(ids) == len(answers):  # one row each, the usual case
        where = [(answers[k], 0) for k in chosen]
    else:
        rows = [(answer, i) for answer in answers for i in range(len(answer.ids))]
        where = [rows[k] for k in chosen]
    records = []
    read = class_of.read_all([scores[k] for k in chosen])
    for k, (answer, i), (class_, confidence) in zip(chosen, where, read, strict=True):
        record, first = answer.record, answer.first
        records.append(
            PredictionRecord(
                ids[k],
                answer.at + clock,
                record.model,
                record.number,
                answer.protocol,
                first if len(answer.ids) == 1 or first is None else first[i],
                scores[k],
                class_,
                confidence,
                answer.seconds * 1000,
                200,
            )
        )
    return records

"""What a server watches while it serves: per model version, traffic, latency, confidence, drift from
the reference profile, accuracy from feedback and cost; plus the prediction log.

The monitor works per batch, not per request (monitor/answers.py). A request is only noted as it
goes to its batcher (`note()`: its prediction id) and marked when answered (`answered()`); each
batcher reports its runs with their notes to the version's monitor (`batch_done`). `flush()` counts
the runs: every FLUSH_EVERY rows, at each tick (once a second), and first thing on every read of the
figures, so that no reader sees them stale. There the latencies are counted and observed as arrays,
the top class of every prediction is read from its batch's scores for feedback, and the log's sampling
and rate limit are decided for all of them at once: the log reads class and confidence only of the
records it keeps. Everything that costs more (drift scores, quantiles, gauges) runs in `tick()`, once
a second, or when a page or `monitor status` asks. This module holds the versions' monitors
(monitor/version.py) and the request taps; feedback is joined in monitor/join.py and the tick's gauges
set in monitor/gauges.py.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from shipyard.config import MonitorSettings
from shipyard.monitor.answers import ANSWERED, PROTOCOL, UNANSWERED, Answers, Note
from shipyard.monitor.drift import DriftReport
from shipyard.monitor.feedback import Label
from shipyard.monitor.gauges import Gauges
from shipyard.monitor.join import FeedbackJoin
from shipyard.monitor.logfiles import ParquetSink
from shipyard.monitor.metrics import Metrics
from shipyard.monitor.predlog import PredictionLog, Sink
from shipyard.monitor.recent import RecentPredictions
from shipyard.monitor.version import VersionMonitor
from shipyard.registry import VersionRecord

log = logging.getLogger(__name__)

RECENT_CAPACITY = 100_000
"""Latest predictions kept in memory for feedback (about 20 MB)."""
FLUSH_EVERY = 256
"""Rows run before they are counted and logged together (Monitor.flush). A flush costs tens of
microseconds whatever it holds: once per loop turn (a few answers at a time) it was most of what
monitoring cost the digits MLP at 64 connections."""
FLUSH_BYTES = 4 << 20
"""Or input bytes run: the runs kept till a flush hold their inputs, so large ones flush sooner."""


class RequestIds:
    """Prediction ids made by the server: 128 random bits each, so feedback cannot guess another's id.
    The bits are read from the OS 256 ids at a time (one getrandom call per id measured ~5% of the
    event loop's time on the CNN). Called on the event loop only."""

    BATCH = 256

    def __init__(self) -> None:
        self._ready: list[str] = []
        os.register_at_fork(after_in_child=self._ready.clear)  # a forked worker never repeats its parent's

    def __call__(self) -> str:
        try:
            return self._ready.pop()
        except IndexError:
            text = os.urandom(16 * self.BATCH).hex()
            self._ready[:] = [text[i : i + 32] for i in range(0, len(text), 32)]
            return self._ready.pop()


new_request_id = RequestIds()


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
        self._rows = self._bytes = 0  # rows and input bytes run since the last flush
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

    def observer(self, record: VersionRecord) -> VersionMonitor:
        """What a batcher of the version reports its runs to (runtime/batcher.py): its monitor."""
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
                found = VersionMonitor(record, self.settings, self.metrics, self._ran)
                self._versions[key] = found
            return found

    def known(self, model: str) -> list[VersionMonitor]:
        self.flush()
        return [m for (name, _), m in sorted(list(self._versions.items())) if name == model]

    def start(self) -> None:
        if self.log is not None:
            self.log.start()

    def close(self) -> None:
        self.flush(everything=True)
        if self.log is not None:
            self.log.close(timeout=10)

    def note(self, protocol: str, started: float) -> Note:
        """A request on its way to its batcher (`started`: its arrival, by time.perf_counter()): its
        prediction id, made by the server (never a client's: feedback must not be able to name
        another's prediction), and what the run it goes in reports of it (monitor/answers.py)."""
        return [new_request_id(), protocol, started, 0.0]

    def answered(self, note: Note) -> None:
        """The request of `note` was answered: it is counted with its run."""
        note[ANSWERED] = time.perf_counter()

    def unanswered(self, note: Note) -> None:
        """The request of `note` failed or was given up: its run need not wait for it (failed() counts
        it)."""
        if not note[ANSWERED]:
            note[ANSWERED] = UNANSWERED

    def _ran(self, rows: int, nbytes: int) -> None:
        """A batcher reported a run (on the event loop, its callers answered): every FLUSH_EVERY rows
        (or FLUSH_BYTES of inputs) the runs are counted."""
        self._rows += rows
        self._bytes += nbytes
        if self._rows >= FLUSH_EVERY or self._bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self, everything: bool = False) -> None:
        """Count and log the runs reported since the last flush: on every read of what they change
        (metrics, statistics, summaries, feedback), at each tick, and every FLUSH_EVERY rows (a run
        waits for its requests to settle; `everything`, on closing: not even that)."""
        with self._flushing:  # feedback flushes from a worker thread: a reader waits for a flush under way
            self._rows = self._bytes = 0
            clock = time.time() - time.perf_counter()  # + a perf_counter time: its time for the log
            for monitor in list(self._versions.values()):
                taken = monitor.take(everything)
                if taken:
                    self._count(monitor, Answers(taken, monitor.batched), clock)

    def _count(self, monitor: VersionMonitor, answers: Answers, clock: float) -> None:
        """Count the answered requests of some runs of a version, remember their predictions for
        feedback and offer them to the log."""
        if not answers.notes:
            return
        record = monitor.record
        model, number = record.model, record.number
        seconds, at = answers.seconds()
        protocols = [note[PROTOCOL] for note in answers.notes]
        for protocol in set(protocols):
            mine = (
                seconds
                if protocols.count(protocol) == len(protocols)
                else seconds[np.array([p == protocol for p in protocols])]
            )
            self.metrics.requests_answered(model, str(number), protocol, mine)
        monitor.answered_all(seconds, at + clock, len(answers.ids))
        self.recent.add_all(answers.ids, model, number, answers.top(), monitor.class_of.name)
        if self.log is not None:
            chosen = self.log.admit(len(answers.ids))
            if chosen:
                self.log.queue(answers.records(chosen, model, number, monitor.class_of, clock))

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

    def windows(self) -> None:
        """Every version's confidence histogram and drift window up to date with the batches gathered
        (watch.py; milliseconds, any thread): what drift_reports() does but the scoring."""
        self.flush()
        for monitor in list(self._versions.values()):
            monitor.watch.flush()

    def drift_reports(self) -> dict[tuple[str, int], DriftReport]:
        """Every watched version's drift scores now: milliseconds each, so callers run it in a thread
        (the windows are thread-safe)."""
        self.flush()
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

"""One model version's live state, fed by its batcher (`batch_done`, counted in `take`), the monitor's
flush (`answered_all`), the data plane (`failed`) and feedback (`label`, from any thread), and read by
the dashboard, `monitor status`, the statistics extension and the monitor's tick. Each part has its
own room:

    stats.py      Triton's statistics (counts and times of successes, failures, queueing, compute)
    series.py     recent traffic and latency, for the dashboard
    watch.py      what its batches show: the confidence histogram and drift from the reference
    accuracy.py   live accuracy from feedback
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.config import MonitorSettings
from shipyard.monitor.accuracy import FeedbackWindow
from shipyard.monitor.answers import Taken, settled
from shipyard.monitor.feedback import class_names
from shipyard.monitor.metrics import CONFIDENCE_BUCKETS, Metrics, observe_all
from shipyard.monitor.series import Series, quantile
from shipyard.monitor.stats import TritonStats
from shipyard.monitor.watch import BatchWatch
from shipyard.registry import VersionRecord
from shipyard.scoring import ClassOf

if TYPE_CHECKING:
    from shipyard.runtime.batcher import Ran

LATE_S = 1.0
"""A run is counted once every request in it is settled, answered or not (their callers are woken
before the batcher reports it, so that is at once), or the run failed, or once it is this old: the
last resort for a caller that never settled its note."""
FEEDBACK = {True: "new", False: "replaced"}
"""The feedback counter's outcome label, by whether the prediction id was labelled for the first time."""


class VersionMonitor:
    """One version's live state; also the BatchObserver of its batcher."""

    def __init__(
        self,
        record: VersionRecord,
        settings: MonitorSettings,
        metrics: Metrics,
        on_run: Callable[[int, int], None] | None = None,
    ) -> None:
        """`on_run(rows, input bytes)` is told of each run the batcher reports (the monitor flushes
        by it)."""
        self.record = record
        self.settings = settings
        self.metrics = metrics
        self.children = metrics.version(record.model, str(record.number))
        self.stats = TritonStats()
        self.series = Series()
        self.watch = BatchWatch(record, settings, self.children.confidence)
        self.feedback = FeedbackWindow(settings.accuracy_window)
        self.classes = class_names(record)
        """What a feedback label may name (feedback.read_label); None: numbers, for a regressor."""
        self.kind, self.batched = self.watch.kind, self.watch.batched
        self.class_of = ClassOf(self.kind or "probabilities", record.labels)
        """Names a prediction's class for feedback, and reads the log's classes (monitor/live.py)."""
        self.compute_s = 0.0
        self.predictions = 0
        self.shadow = {"answered": 0, "agreed": 0, "compared": 0, "failed": 0, "dropped": 0}
        """Copies of requests this version answered as a shadow (rollout/shadow.py): counts that grow."""
        self._runs: deque[tuple[float, Ran, np.ndarray | None]] = deque()  # not yet counted: take()
        self._on_run = on_run

    def use_reference(self, record: VersionRecord) -> None:
        """(Re)build the drift watch from the version's reference profile; counters stay."""
        self.record = record
        self.watch.use_reference(record)

    # -- fed by the batcher, the data plane and feedback -------------------------------------------

    def batch_done(self, ran: Ran, outputs: list[np.ndarray]) -> None:
        """Once per run, on the event loop: kept until the monitor's next flush counts it (take()),
        with only its class scores of its outputs (a model's other outputs can be large)."""
        self._runs.append((time.perf_counter(), ran, self.watch.class_scores(ran.names, outputs)))
        if self._on_run is not None:
            self._on_run(ran.rows, sum(array.nbytes for array in ran.inputs.values()))

    def take(self, everything: bool = False) -> list[Taken]:
        """The runs reported since the last take that are ready (every request settled, the run failed,
        or LATE_S passed; `everything`: all of them), their timings counted and their batches gathered
        for confidence and drift; the others wait for the next take."""
        taken: list[Taken] = []
        waiting, reported = [], self._runs
        now = time.perf_counter()
        while reported:  # popleft, not a swap: a run reported meanwhile is never lost
            at, run, scores = item = reported.popleft()
            ready, answered = settled(run)
            if ready or not run.ok or everything or now - at > LATE_S:  # a failed run has no answers
                taken.append(Taken(run, scores, answered))
            else:
                waiting.append(item)
        reported.extend(waiting)
        if taken:
            self._ran(taken)
        return taken

    def _ran(self, taken: list[Taken]) -> None:
        runs = [t.run for t in taken]
        children, computed = self.children, [run.compute_s for run in runs]
        observe_all(children.queue, [wait for run in runs for wait in run.queued_s])
        observe_all(children.compute, computed)
        observe_all(children.batch, [run.rows for run in runs])
        total = sum(computed)
        children.compute_total.inc(total)
        self.compute_s += total
        for run, scores, _ in taken:
            self.stats.ran(run.rows, run.queued_s, run.compute_s, answered=run.ok)
            if run.ok:
                self.watch.gather(run.rows, run.inputs, scores)

    def answered_all(self, seconds: np.ndarray, at: np.ndarray, rows: int) -> None:
        """Answers noted together (Monitor.flush): their latencies, when each was answered (wall clock),
        and `rows` predictions in all."""
        self.stats.answered_all(seconds)
        self.series.add_all(seconds, at)
        self.predictions += rows

    def failed(self, seconds: float) -> None:
        self.stats.failed(seconds)
        self.series.add(seconds * 1000, ok=False)

    def shadowed(
        self, outcome: str, seconds: float = 0.0, compared: int = 0, agreed: int = 0, count: int = 1
    ) -> None:
        """A copy of a request, as this version's shadow run ended: answered (its latency counts as an
        answer's, `compared` rows of it had a class to compare, `agreed` the production's), failed;
        or `count` copies dropped (the version was busy, or past its rate, so they never ran)."""
        self.shadow[outcome] += count
        self.shadow["compared"] += compared
        self.shadow["agreed"] += agreed
        metrics, model, version = self.metrics, self.record.model, str(self.record.number)
        metrics.shadow.labels(model, version, outcome).inc(count)
        if compared:
            metrics.shadow_rows.labels(model, version, "compared").inc(compared)
            metrics.shadow_rows.labels(model, version, "agreed").inc(agreed)
        if outcome != "dropped":
            self.series.add(seconds * 1000, ok=outcome == "answered")

    def label(self, prediction_id: str, truth: str | float, predicted: str | None) -> None:
        """A prediction's true label (as read_label gives it), replacing any earlier one for that id;
        any thread. A value (regression) or a prediction without a class is counted, not judged."""
        outcome = None if predicted is None or isinstance(truth, float) else predicted == truth
        new = self.feedback.add(prediction_id, outcome)
        self.metrics.feedback.labels(self.record.model, str(self.record.number), FEEDBACK[new]).inc()

    # -- read when asked ---------------------------------------------------------------------------

    def cost_per_1k(self) -> float | None:
        if not self.predictions:
            return None
        return self.settings.price_per_hour / 3600 * self.compute_s / self.predictions * 1000

    def evidence(self) -> dict[str, Any]:
        """What this version has answered so far, as counts that only grow: what a rollout's gates
        judge (rollout/gates.py Figures), reported to the registry by rollout/evidence.py."""
        watch = self.watch
        right, wrong = self.feedback.ever
        shadow = self.shadow
        return {
            "requests": self.stats.success.count + shadow["answered"],
            "errors": self.stats.fail.count + shadow["failed"],
            "compared": shadow["compared"],
            "agreed": shadow["agreed"],
            "latency": self.series.latency_total.tolist(),
            "correct": right,
            "wrong": wrong,
            "confidence_sum": watch.confidence_sum,
            "confidence_n": sum(watch.confidence_counts),
            "drifted": watch.drifted,
        }

    def drift_report(self) -> dict[str, Any]:
        """The drift scores now (milliseconds: off the event loop), as summary() shows them."""
        return self.watch.drift_report()

    def triton_stats(self) -> dict[str, Any]:
        """Triton's statistics extension, for this version (what perf_analyzer reads)."""
        return self.stats.to_dict(self.record.model, self.record.number)

    def summary(
        self, state: str, default: bool, drift: dict[str, Any], window_s: float = 60.0
    ) -> dict[str, Any]:
        """Everything the dashboard and `monitor status` show; `drift` is drift_report(), which
        the caller computes off the event loop (it scores the whole window)."""
        requests, errors, latency = self.series.recent(window_s)
        accuracy = self.feedback.figures()
        return {
            "version": self.record.number,
            "default": default,
            "state": state,
            "requests": self.stats.requests,
            "errors": self.stats.fail.count,
            "error_rate": errors / requests if requests else 0.0,
            "throughput_rps": requests / window_s,
            "latency_ms": {"p50": quantile(latency, 0.5), "p99": quantile(latency, 0.99)},
            "series": self.series.table(),
            "confidence": {"edges": [0.0, *CONFIDENCE_BUCKETS], "counts": list(self.watch.confidence_counts)},
            "drift": drift,
            "accuracy": {
                "value": accuracy.value,
                "labelled": accuracy.labelled,
                "window": accuracy.window,
                "replaced": accuracy.replaced,
            },
            "cost": {
                "compute_seconds": self.compute_s,
                "predictions": self.predictions,
                "price_per_hour": self.settings.price_per_hour,
                "per_1k": self.cost_per_1k(),
            },
        }

"""What a server watches while it serves: per model version, traffic, latency, confidence, drift from
the reference profile, accuracy from feedback and cost; plus the prediction log.

The request path calls `answered()` / `failed()` (and each batcher calls its version's `batch_done()`):
counters, histograms, a ring buffer copy for drift and a non-blocking offer to the log, a few tens of
microseconds in all. Everything that costs more (drift scores, quantiles, gauges) runs in `tick()`,
once a second, or when a page or `monitor status` asks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipyard.config import MonitorSettings
from shipyard.errors import InvalidInput, NotFound
from shipyard.monitor.drift import DriftMonitor, DriftReport, Thresholds
from shipyard.monitor.logfiles import ParquetSink
from shipyard.monitor.metrics import CONFIDENCE_BUCKETS, Metrics
from shipyard.monitor.predlog import PredictionLog, Sink
from shipyard.monitor.profile import Profile, read_scores
from shipyard.monitor.recent import RecentPredictions
from shipyard.monitor.series import Series, quantile
from shipyard.registry import VersionRecord
from shipyard.signature import ScoreKind

log = logging.getLogger(__name__)

NS = 1_000_000_000
PENDING_ROWS = 64


def new_request_id() -> str:
    return uuid.uuid4().hex


def confidences(scores: np.ndarray, kind: ScoreKind | None) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class index, confidence) per row, read as the reference profile reads them."""
    return read_scores(scores.reshape(len(scores), -1), kind or "probabilities")


@dataclass
class Timing:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * NS)

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class VersionMonitor:
    """One version's live state; also the BatchObserver of its batcher."""

    record: VersionRecord
    settings: MonitorSettings
    metrics: Metrics
    drift: DriftMonitor | None = None
    drift_problem: str = ""
    success: Timing = field(default_factory=Timing)
    fail: Timing = field(default_factory=Timing)
    queue: Timing = field(default_factory=Timing)
    compute: Timing = field(default_factory=Timing)
    batches: dict[int, Timing] = field(default_factory=dict)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    compute_s: float = 0.0
    predictions: int = 0
    confidence_counts: list[int] = field(default_factory=lambda: [0] * len(CONFIDENCE_BUCKETS))
    outcomes: deque[bool] = field(default_factory=deque)
    labelled: int = 0
    series: Series = field(default_factory=Series)

    def __post_init__(self) -> None:
        self.children = self.metrics.version(self.record.model, str(self.record.number))
        self.outcomes = deque(maxlen=self.settings.accuracy_window)
        signature = self.record.signature
        self.kind = signature.scores.kind if signature.scores else None
        self.batched = all(spec.batched for spec in signature.inputs)
        self._pending: list[tuple[dict[str, np.ndarray], np.ndarray | None]] = []
        self._pending_rows = 0
        self._flushing = threading.Lock()
        self.use_reference(self.record)

    def use_reference(self, record: VersionRecord) -> None:
        """(Re)build the drift watch from the version's reference profile; counters stay."""
        self.record, self.drift, self.drift_problem = record, None, ""
        if self.record.reference is None:
            return
        try:
            self.drift = DriftMonitor(
                Profile.from_dict(self.record.reference),
                capacity=self.settings.drift_window,
                max_age_s=self.settings.drift_max_age_s,
                thresholds=Thresholds(
                    psi=self.settings.psi_threshold,
                    ks=self.settings.ks_threshold,
                    min_rows=min(self.settings.drift_min_rows, self.settings.drift_window),
                ),
            )
        except InvalidInput as exc:
            self.drift_problem = f"the reference profile cannot be used: {exc.message}"

    # -- fed by the batcher and the data plane ----------------------------------------------------

    def batch_done(
        self,
        rows: int,
        queued_s: list[float],
        compute_s: float,
        inputs: dict[str, np.ndarray],
        names: Sequence[str] | None,
        outputs: list[np.ndarray],
    ) -> None:
        """Once per run: timings, then confidence and drift over the whole batch, vectorised."""
        children = self.children
        for wait in queued_s:
            children.queue.observe(wait)
            self.queue.add(wait)
        children.compute.observe(compute_s)
        children.batch.observe(rows)
        children.compute_total.inc(compute_s)
        self.compute_s += compute_s
        self.compute.add(compute_s)
        self.execution_count += 1
        if not outputs:
            return
        self.inference_count += rows
        self.batches.setdefault(rows, Timing()).add(compute_s)
        scores = self._scores(names, outputs)
        if not self.batched:  # one sample without a batch axis: give it one
            inputs = {k: v[None] for k, v in inputs.items()}
            scores = None if scores is None else scores[None]
        if scores is not None and not _classes(scores):
            scores = None
        if scores is None and self.drift is None:
            return
        # Confidence and drift take tens of microseconds a call, whatever the rows: gathered and
        # done for PENDING_ROWS rows at once (and before any report), they cost ~1 us a request.
        self._pending.append((inputs, scores))
        self._pending_rows += rows
        if self._pending_rows >= PENDING_ROWS:
            self.flush()

    def flush(self) -> None:
        """Confidence histogram and drift window for the batches gathered so far (any thread)."""
        with self._flushing:
            pending, self._pending, self._pending_rows = self._pending, [], 0
            if not pending:
                return
            shapes = {tuple((k, v.shape[1:], v.dtype) for k, v in inputs.items()) for inputs, _ in pending}
            groups = [pending] if len(shapes) == 1 else [[p] for p in pending]
            for group in groups:
                inputs = {k: np.concatenate([p[0][k] for p in group]) for k in group[0][0]}
                parts = [p[1] for p in group if p[1] is not None]
                scores = np.concatenate(parts) if len(parts) == len(group) else None
                self._watch(inputs, scores)

    def _watch(self, inputs: dict[str, np.ndarray], scores: np.ndarray | None) -> None:
        if scores is not None:
            _, confidence = confidences(scores, self.kind)
            confidence = confidence[np.isfinite(confidence)]
            observe = self.children.confidence.observe
            for value in confidence.tolist():
                observe(value)
            bins = np.minimum((confidence * 10).astype(np.int64), 9)
            for i, n in enumerate(np.bincount(bins, minlength=10).tolist()):
                self.confidence_counts[i] += n
        if self.drift is not None:
            try:
                self.drift.observe(inputs, scores if self.drift.profile.score_kind else None)
            except InvalidInput as exc:  # inputs the profile does not describe: say so once, stop
                self.drift, self.drift_problem = None, f"drift stopped: {exc.message}"
                log.warning("%s: %s", self.record.ref, self.drift_problem)

    def _scores(self, names: Sequence[str] | None, outputs: list[np.ndarray]) -> np.ndarray | None:
        scores = self.record.signature.scores
        if scores is None:
            return None
        order = list(names) if names is not None else [spec.name for spec in self.record.signature.outputs]
        if scores.output not in order:
            return None
        found = outputs[order.index(scores.output)]
        return found if found.dtype.kind == "f" else None

    def answered(self, seconds: float, rows: int) -> None:
        self.success.add(seconds)
        self.series.add(seconds * 1000, ok=True)
        self.last_inference_ms = int(time.time() * 1000)
        self.predictions += rows

    def failed(self, seconds: float) -> None:
        self.fail.add(seconds)
        self.series.add(seconds * 1000, ok=False)

    def feedback(self, correct: bool) -> None:
        self.outcomes.append(correct)
        self.labelled += 1

    # -- read when asked ---------------------------------------------------------------------------

    def accuracy(self) -> float | None:
        return sum(self.outcomes) / len(self.outcomes) if self.outcomes else None

    def cost_per_1k(self) -> float | None:
        if not self.predictions:
            return None
        return self.settings.price_per_hour / 3600 * self.compute_s / self.predictions * 1000

    def drift_report(self) -> dict[str, Any]:
        self.flush()
        if self.drift is None:
            status = "no-reference" if not self.drift_problem else "stopped"
            return {"status": status, "problem": self.drift_problem, "features": [], "rows": 0}
        report = self.drift.report().to_dict()
        report["status"] = "judged" if report["judged"] else "warming-up"
        report["threshold"] = self.settings.psi_threshold
        return report

    def summary(
        self, state: str, default: bool, drift: dict[str, Any], window_s: float = 60.0
    ) -> dict[str, Any]:
        """Everything the dashboard and `monitor status` show; `drift` is drift_report(), which
        the caller computes off the event loop (it scores the whole window)."""
        requests, errors, latency = self.series.recent(window_s)
        return {
            "version": self.record.number,
            "default": default,
            "state": state,
            "requests": self.success.count + self.fail.count,
            "errors": self.fail.count,
            "error_rate": errors / requests if requests else 0.0,
            "throughput_rps": requests / window_s,
            "latency_ms": {"p50": quantile(latency, 0.5), "p99": quantile(latency, 0.99)},
            "series": self.series.table(),
            "confidence": {"edges": [0.0, *CONFIDENCE_BUCKETS], "counts": list(self.confidence_counts)},
            "drift": drift,
            "accuracy": {"value": self.accuracy(), "labelled": self.labelled, "window": len(self.outcomes)},
            "cost": {
                "compute_seconds": self.compute_s,
                "predictions": self.predictions,
                "price_per_hour": self.settings.price_per_hour,
                "per_1k": self.cost_per_1k(),
            },
        }

    def triton_stats(self) -> dict[str, Any]:
        """Triton's statistics extension, for this version (what perf_analyzer reads)."""
        zero = Timing().to_dict()
        return {
            "name": self.record.model,
            "version": str(self.record.number),
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.to_dict(),
                "fail": self.fail.to_dict(),
                "queue": self.queue.to_dict(),
                "compute_input": zero,
                "compute_infer": self.compute.to_dict(),
                "compute_output": zero,
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": zero,
                    "compute_infer": t.to_dict(),
                    "compute_output": zero,
                }
                for size, t in sorted(self.batches.items())
            ],
        }


class Monitor:
    """Every version's monitor, the prediction log and the metrics of one server process."""

    def __init__(self, settings: MonitorSettings, log_to: str | Sink | None = None) -> None:
        """`log_to`: the prediction log's folder (or any Sink); None keeps no log."""
        self.settings = settings
        self.metrics = Metrics()
        self.recent = RecentPredictions()
        if isinstance(log_to, str):
            log_to = ParquetSink(log_to, keep_inputs=settings.log_inputs)
        self.log = (
            PredictionLog(
                log_to,
                sample_fraction=settings.log_sample,
                max_per_second=settings.log_max_per_second,
                queue_size=settings.log_queue,
                recent=self.recent,
            )
            if settings.log and log_to is not None
            else None
        )
        self._versions: dict[tuple[str, int], VersionMonitor] = {}
        self._logged: dict[str, int] = {}
        self._ticked: set[tuple[str, int]] = set()

    def version(self, record: VersionRecord) -> VersionMonitor:
        """The monitor of a version (made on first use, kept across unloads and reloads; a new
        reference profile rebuilds its drift watch, its counters stay)."""
        key = (record.model, record.number)
        found = self._versions.get(key)
        if found is None:
            found = self._versions[key] = VersionMonitor(record, self.settings, self.metrics)
        elif found.record.reference is not record.reference and found.record.reference != record.reference:
            found.use_reference(record)  # rare: compared only when the records are different objects
        return found

    def known(self, model: str) -> list[VersionMonitor]:
        return [m for (name, _), m in sorted(self._versions.items()) if name == model]

    def start(self) -> None:
        if self.log is not None:
            self.log.start()

    def close(self) -> None:
        if self.log is not None:
            self.log.close(timeout=10)

    def answered(
        self,
        record: VersionRecord,
        protocol: str,
        started: float,
        inputs: Mapping[str, np.ndarray],
        scores: np.ndarray | None,
        request_id: str,
    ) -> list[str]:
        """Count an answer and log its predictions; returns each row's prediction id (the request's id
        for one row, `<id>-<row>` for more), which feedback refers to. Confidence and drift are the
        batcher's business (batch_done), once per batch."""
        seconds = time.perf_counter() - started
        monitor = self.version(record)
        first = next(iter(inputs.values())) if inputs else None
        rows = len(first) if monitor.batched and first is not None and first.ndim else 1
        monitor.answered(seconds, rows)
        self.metrics.request(record.model, str(record.number), protocol, "200", seconds)
        ids = [request_id] if rows == 1 else [f"{request_id}-{i}" for i in range(rows)]
        if scores is not None and not monitor.batched:
            scores = scores[None]
        predicted = _predicted(scores, rows, monitor.kind, record.labels)
        log = self.log
        for i, prediction_id in enumerate(ids):
            class_, confidence = predicted[i]
            if log is None:
                self.recent.add(prediction_id, record.model, record.number, class_)
                continue
            log.offer(
                prediction_id,
                record.model,
                record.number,
                protocol,
                latency_ms=seconds * 1000,
                inputs=first if rows == 1 or first is None else first[i],
                output=scores if rows == 1 or scores is None else scores[i],
                class_=class_,
                confidence=confidence,
            )
        return ids

    def failed(
        self, model: str, version: VersionRecord | None, protocol: str, status: int, started: float
    ) -> None:
        seconds = time.perf_counter() - started
        if version is not None:
            self.version(version).failed(seconds)
        self.metrics.request(model, str(version.number) if version else "", protocol, str(status), seconds)

    def feedback(self, model: str, items: Iterable[tuple[str, str]]) -> dict[str, Any]:
        """Join labels to logged predictions by request id; every id must be known (404 otherwise)."""
        matched = []
        unknown = []
        for request_id, label in items:
            found = self.recent.lookup(request_id)
            if found is None or found.model != model:
                unknown.append(request_id)
            else:
                matched.append((found, label))
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise NotFound(f"no recent prediction of {model!r} has the id {shown}: nothing was recorded")
        for found, label in matched:
            monitor = self._versions.get((model, found.version))
            if monitor is None:
                continue
            correct = found.class_ == label
            monitor.feedback(correct)
            self.metrics.feedback.labels(model, str(found.version), "correct" if correct else "wrong").inc()
        return {"accepted": len(matched)}

    def drift_reports(self) -> dict[tuple[str, int], DriftReport]:
        """Every watched version's drift scores now: milliseconds each, so callers run it in a thread
        (the windows are thread-safe)."""
        reports = {}
        for key, monitor in list(self._versions.items()):
            monitor.flush()
            if monitor.drift is not None:
                reports[key] = monitor.drift.report()
        return reports

    def tick(
        self,
        states: Mapping[tuple[str, int], tuple[bool, int, int, int]],
        reports: Mapping[tuple[str, int], DriftReport] | None = None,
    ) -> None:
        """Once a second, on the event loop: gauges. `states` maps (model, version) -> (resident,
        memory bytes, queued, in flight) for every version served; versions gone since the last tick
        lose their series, so no gauge reports a version that left. `reports`: drift_reports()."""
        m = self.metrics
        for key in self._ticked - set(states):
            for gauge in (m.loaded, m.memory, m.queue_depth, m.in_flight):
                with contextlib.suppress(KeyError):
                    gauge.remove(key[0], str(key[1]))
        self._ticked = set(states)
        for (model, number), (resident, memory, queued, in_flight) in states.items():
            labels = (model, str(number))
            m.loaded.labels(*labels).set(1 if resident else 0)
            m.memory.labels(*labels).set(memory)
            m.queue_depth.labels(*labels).set(queued)
            m.in_flight.labels(*labels).set(in_flight)
        for (model, number), monitor in list(self._versions.items()):
            labels = (model, str(number))
            accuracy, cost = monitor.accuracy(), monitor.cost_per_1k()
            if accuracy is not None:
                m.accuracy.labels(*labels).set(accuracy)
            if cost is not None:
                m.cost.labels(*labels).set(cost)
        for (model, number), report in (reports or {}).items():
            labels = (model, str(number))
            m.drifting.labels(*labels).set(1 if report.flagged else 0)
            for feature in report.features:
                m.drift.labels(*labels, feature.name, "psi").set(feature.psi)
                m.drift.labels(*labels, feature.name, "ks").set(feature.ks)
        if self.log is not None:
            counters = self.log.counters()
            for outcome in ("written", "dropped_full", "sampled_out", "rate_limited"):
                now = getattr(counters, outcome)
                m.log_records.labels(outcome).inc(now - self._logged.get(outcome, 0))
                self._logged[outcome] = now


def _predicted(
    scores: np.ndarray | None, rows: int, kind: ScoreKind | None, labels: Sequence[str] | None
) -> list[tuple[str | None, float | None]]:
    """(class, confidence) per row; for the usual single row, in plain Python (numpy's per-call cost
    is most of the work on a 10-class row)."""
    if scores is None or len(scores) != rows or not _classes(scores):
        return [(None, None)] * rows
    if rows == 1:
        values = scores.reshape(-1).tolist()
        if not values or not all(math.isfinite(v) for v in values):
            return [(None, None)]
        best = max(range(len(values)), key=values.__getitem__)
        top = values[best]
        confidence = 1.0 / sum(math.exp(v - top) for v in values) if kind == "logits" else top
        return [(_label(best, labels), confidence)]
    best_rows, conf = confidences(scores, kind)
    return [
        (_label(b, labels), c if math.isfinite(c) else None)
        for b, c in zip(best_rows.tolist(), conf.tolist(), strict=True)
    ]


def _label(index: int, labels: Sequence[str] | None) -> str:
    return labels[index] if labels and index < len(labels) else str(index)


def _classes(scores: np.ndarray) -> bool:
    """Whether a batch of outputs reads as class scores: floats, at least two per sample."""
    return scores.dtype.kind == "f" and scores.ndim >= 2 and scores[:1].size >= 2

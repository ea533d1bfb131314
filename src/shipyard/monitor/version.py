"""One model version's live state: timings for Triton's statistics, the confidence histogram, the
drift window and live accuracy, fed by its batcher (`batch_done`), the data plane (`answered`,
`failed`) and feedback (`label`, from any thread).

`batch_done` runs on the event loop once per batch, so it only gathers: confidence and drift are worked
out `PENDING_ROWS` rows at a time in `flush()`, which any thread may call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipyard.config import MonitorSettings
from shipyard.errors import InvalidInput
from shipyard.monitor.accuracy import FeedbackWindow
from shipyard.monitor.drift import DriftMonitor, Thresholds
from shipyard.monitor.feedback import class_names
from shipyard.monitor.metrics import CONFIDENCE_BUCKETS, Metrics
from shipyard.monitor.profile import Profile
from shipyard.monitor.series import Series, quantile
from shipyard.registry import VersionRecord
from shipyard.scoring import Scored, is_class_scores, read

log = logging.getLogger(__name__)

NS = 1_000_000_000
PENDING_ROWS = 64

FEEDBACK = {True: "new", False: "replaced"}
"""The feedback counter's outcome label, by whether the prediction id was labelled for the first time."""

Pending = tuple[dict[str, np.ndarray], np.ndarray | None]
"""A batch waiting for flush(): its inputs and its class scores (None when it has none)."""


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
    """Why drift was (last) unable to take some rows; empty when it never was."""
    drift_skipped: int = 0
    """Rows drift could not take (inputs the profile does not describe), since the reference was set."""
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
    series: Series = field(default_factory=Series)

    def __post_init__(self) -> None:
        self.children = self.metrics.version(self.record.model, str(self.record.number))
        self.feedback = FeedbackWindow(self.settings.accuracy_window)
        self.classes = class_names(self.record)
        """What a feedback label may name (feedback.read_label); None: numbers, for a regressor."""
        signature = self.record.signature
        self.kind = signature.scores.kind if signature.scores else None
        self.batched = all(spec.batched for spec in signature.inputs)
        self._pending: list[Pending] = []
        self._pending_rows = 0
        self._flushing = threading.Lock()
        self.use_reference(self.record)

    def use_reference(self, record: VersionRecord) -> None:
        """(Re)build the drift watch from the version's reference profile; counters stay."""
        self.record, self.drift, self.drift_problem, self.drift_skipped = record, None, "", 0
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
        if scores is not None and not is_class_scores(scores):
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
        """Confidence histogram and drift window for the batches gathered so far (any thread).

        Batches are grouped by the shapes of their inputs and scores: a batch without scores (a request
        for other outputs) or with inputs of another shape never takes the others' scores away."""
        with self._flushing:
            pending, self._pending, self._pending_rows = self._pending, [], 0
            groups: dict[tuple[object, ...], list[Pending]] = {}
            for item in pending:
                inputs, scores = item
                key = (
                    tuple((k, v.shape[1:], v.dtype.str) for k, v in inputs.items()),
                    None if scores is None else (scores.shape[1:], scores.dtype.str),
                )
                groups.setdefault(key, []).append(item)
            for group in groups.values():
                self._watch(group)

    def _watch(self, group: list[Pending]) -> None:
        """One group's confidences and drift. Nothing a request sent can stop either for good: what
        cannot be read is left out of this group, counted and reported (drift_problem)."""
        rows = sum(_rows(inputs) for inputs, _ in group)
        try:
            inputs = {k: np.concatenate([p[0][k] for p in group]) for k in group[0][0]}
            parts = [p[1] for p in group if p[1] is not None]  # all or none: scores are part of the key
            scores = np.concatenate(parts) if parts else None
        except Exception:
            log.exception("%s: drift: batches of %d rows could not be joined", self.record.ref, rows)
            self._problem(rows, "batches could not be joined (an unexpected error, logged)")
            return
        scored = None
        if scores is not None:
            try:  # read once: the histogram's confidences, and the drift window's when it reads alike
                scored = read(scores.reshape(len(scores), -1), self.kind or "probabilities")
                self._count_confidence(scored)
            except Exception:
                log.exception("%s: confidences of %d rows could not be read", self.record.ref, rows)
        drift = self.drift
        if drift is None:
            return
        problem = _observe(drift, inputs, _for_drift(drift, scores, scored))
        if problem is None:
            return
        if scores is not None and drift.profile.score_kind and _observe(drift, inputs, None) is None:
            self._problem(0, f"scores of {rows} rows left out: {problem}")
        else:
            self._problem(rows, problem)

    def _count_confidence(self, scored: Scored) -> None:
        confidence = scored.confidence[np.isfinite(scored.confidence)]
        observe = self.children.confidence.observe
        for value in confidence.tolist():
            observe(value)
        bins = np.minimum((confidence * 10).astype(np.int64), 9)
        for i, n in enumerate(np.bincount(bins, minlength=10).tolist()):
            self.confidence_counts[i] += n

    def _problem(self, skipped: int, problem: str) -> None:
        """Rows drift could not take: counted, the latest reason kept, each new reason logged once."""
        self.drift_skipped += skipped
        if problem != self.drift_problem:
            log.warning("%s: drift: %s", self.record.ref, problem)
        self.drift_problem = problem

    def _scores(self, names: Sequence[str] | None, outputs: list[np.ndarray]) -> np.ndarray | None:
        """The class scores among a run's outputs, if it has them (`names` empty or None: all outputs,
        in the signature's order, as the runner gives them)."""
        scores = self.record.signature.scores
        if scores is None:
            return None
        order = list(names) if names else [spec.name for spec in self.record.signature.outputs]
        if scores.output not in order or len(order) != len(outputs):
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

    def label(self, prediction_id: str, truth: str | float, predicted: str | None) -> None:
        """A prediction's true label (as read_label gives it), replacing any earlier one for that id;
        any thread. A value (regression) or a prediction without a class is counted, not judged."""
        outcome = None if predicted is None or isinstance(truth, float) else predicted == truth
        new = self.feedback.add(prediction_id, outcome)
        self.metrics.feedback.labels(self.record.model, str(self.record.number), FEEDBACK[new]).inc()

    # -- read when asked ---------------------------------------------------------------------------

    def accuracy(self) -> float | None:
        return self.feedback.figures().value

    def cost_per_1k(self) -> float | None:
        if not self.predictions:
            return None
        return self.settings.price_per_hour / 3600 * self.compute_s / self.predictions * 1000

    def drift_report(self) -> dict[str, Any]:
        self.flush()
        if self.drift is None:
            status = "no-reference" if not self.drift_problem else "stopped"
            return {
                "status": status,
                "problem": self.drift_problem,
                "skipped_rows": 0,
                "features": [],
                "rows": 0,
            }
        report = self.drift.report().to_dict()
        report["status"] = "judged" if report["judged"] else "warming-up"
        report["threshold"] = self.settings.psi_threshold
        report["problem"], report["skipped_rows"] = self.drift_problem, self.drift_skipped
        return report

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
            "requests": self.success.count + self.fail.count,
            "errors": self.fail.count,
            "error_rate": errors / requests if requests else 0.0,
            "throughput_rps": requests / window_s,
            "latency_ms": {"p50": quantile(latency, 0.5), "p99": quantile(latency, 0.99)},
            "series": self.series.table(),
            "confidence": {"edges": [0.0, *CONFIDENCE_BUCKETS], "counts": list(self.confidence_counts)},
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


def _for_drift(
    drift: DriftMonitor, scores: np.ndarray | None, scored: Scored | None
) -> np.ndarray | Scored | None:
    """What the drift window takes of a group's scores: none when the profile has none; the read
    confidences when the profile reads them alike; else the raw scores, for it to read its way."""
    kind = drift.profile.score_kind
    if kind is None or scores is None:
        return None
    if scored is not None and scored.kind == kind and scores.ndim == 2:
        return scored
    return scores


def _rows(inputs: dict[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()), None)
    return len(first) if first is not None and first.ndim else 1


def _observe(
    drift: DriftMonitor, inputs: dict[str, np.ndarray], scores: np.ndarray | Scored | None
) -> str | None:
    """Add a batch to the drift window; None when done, else why not (nothing was added)."""
    try:
        drift.observe(inputs, scores)
    except InvalidInput as exc:
        return exc.message
    except Exception:  # a fault of ours: logged in full, and still no reason to stop watching
        log.exception("drift: a batch could not be observed")
        return "a batch could not be observed (an unexpected error, logged)"
    return None

"""What one version's batches show: the confidence histogram of its predictions, and the drift of its
inputs (and scores) from the reference profile.

The batcher reports each run on the event loop, so `gather()` only keeps the batch: confidence and
drift are worked out `PENDING_ROWS` rows at a time in `flush()`, which any thread may call. There the
scores of a group of batches are read once (shipyard/scoring.py), for the histogram and the drift
window alike. Nothing a request sent can stop either for good: rows drift cannot take are left out,
counted, and the latest reason is kept (`problem`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from shipyard.config import MonitorSettings
from shipyard.errors import InvalidInput
from shipyard.monitor.drift import DriftMonitor, DriftReport, Thresholds
from shipyard.monitor.metrics import CONFIDENCE_BUCKETS, observe_all
from shipyard.monitor.profile import Profile
from shipyard.registry import VersionRecord
from shipyard.scoring import Scored, is_class_scores, read

log = logging.getLogger(__name__)

PENDING_ROWS = 512
"""Rows gathered before confidence and drift are worked out (~0.3 us a row at this size, 4x that at 64)."""
PENDING_BYTES = 4 << 20
"""Or input bytes gathered: what is gathered is held till then, so large inputs are worked out sooner."""

DRIFT_VALUES = 65_536
"""Input values drift takes from one group of a flush, as a uniform sample of its rows (at least
MIN_DRIFT_ROWS). The window holds the latest `drift_window` rows either way, so under load a sample
says what every row would; this keeps drift's cost from growing with the input: the digits MLP
(64 values a row) keeps all its rows, a 3x64x64 image model 8 rows in 512."""
MIN_DRIFT_ROWS = 8

Pending = tuple[dict[str, np.ndarray], np.ndarray | None]
"""A batch waiting for flush(): its inputs and its class scores (None when it has none)."""


class BatchWatch:
    def __init__(self, record: VersionRecord, settings: MonitorSettings, confidence: Any) -> None:
        """`confidence`: the version's child of the Prometheus confidence histogram."""
        self.settings = settings
        self._confidence = confidence
        self.confidence_counts = [0] * len(CONFIDENCE_BUCKETS)
        self.confidence_sum = 0.0  # of every confidence counted: with the counts, the mean a rollout judges
        self.drifted = False
        """Whether the last drift scores flagged the window (a rollout's drift gate reads it)."""
        signature = record.signature
        self.kind = signature.scores.kind if signature.scores else None
        self.batched = signature.batched
        self._pending: list[Pending] = []
        self._pending_rows = self._pending_bytes = 0
        self._flushing = threading.Lock()
        self._sampler = np.random.default_rng()
        self.use_reference(record)

    def use_reference(self, record: VersionRecord) -> None:
        """(Re)build the drift watch from the version's reference profile; the histogram stays."""
        self.record, self.drift = record, None
        self.problem = ""  # why drift was (last) unable to take some rows; empty when it never was
        self.skipped = 0  # rows it could not take since the reference was set
        if record.reference is None:
            return
        settings = self.settings
        try:
            self.drift = DriftMonitor(
                Profile.from_dict(record.reference),
                capacity=settings.drift_window,
                max_age_s=settings.drift_max_age_s,
                thresholds=Thresholds(
                    psi=settings.psi_threshold,
                    ks=settings.ks_threshold,
                    min_rows=min(settings.drift_min_rows, settings.drift_window),
                ),
            )
        except InvalidInput as exc:
            self.problem = f"the reference profile cannot be used: {exc.message}"

    def class_scores(self, names: Sequence[str] | None, outputs: list[np.ndarray]) -> np.ndarray | None:
        """A run's class scores, a row per sample (None: the run has none); `names` as in Ran."""
        scores = self.record.signature.scores
        if scores is None or not outputs:
            return None
        order = list(names) if names else [spec.name for spec in self.record.signature.outputs]
        if scores.output not in order or len(order) != len(outputs):
            return None
        found = outputs[order.index(scores.output)]
        if found.dtype.kind != "f":
            return None
        if not self.batched:  # one sample without a batch axis: give it one
            found = found[None]
        return found if is_class_scores(found) else None

    def gather(self, rows: int, inputs: dict[str, np.ndarray], scores: np.ndarray | None) -> None:
        """Keep a batch the version answered and its class_scores(), for the next flush."""
        if not self.batched:  # one sample without a batch axis: give it one
            inputs = {k: v[None] for k, v in inputs.items()}
        if scores is None and self.drift is None:
            return
        # Confidence and drift take tens of microseconds a call, whatever the rows: gathered and
        # done for PENDING_ROWS rows at once (and before any report), they cost well under 1 us a request.
        self._pending.append((inputs, scores))
        self._pending_rows += rows
        self._pending_bytes += sum(array.nbytes for array in inputs.values())
        if self._pending_rows >= PENDING_ROWS or self._pending_bytes >= PENDING_BYTES:
            self.flush()

    def flush(self) -> None:
        """Confidence histogram and drift window for the batches gathered so far (any thread).

        Batches are grouped by the shapes of their inputs and scores: a batch without scores (a request
        for other outputs) or with inputs of another shape never takes the others' scores away."""
        with self._flushing:
            pending, self._pending, self._pending_rows, self._pending_bytes = self._pending, [], 0, 0
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
        """One group's confidences (every row) and drift (a sample of rows when the group is large);
        what cannot be read is left out of this group, counted and reported."""
        rows = sum(_rows(inputs) for inputs, _ in group)
        try:
            parts = [p[1] for p in group if p[1] is not None]  # all or none: scores are part of the key
            scores = np.concatenate(parts) if parts else None
        except Exception:
            log.exception("%s: confidences of %d rows could not be joined", self.record.ref, rows)
            scores = None
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
        wanted = max(MIN_DRIFT_ROWS, DRIFT_VALUES // max(_values(group[0][0]), 1))
        keep = None if wanted >= rows else np.sort(self._sampler.choice(rows, wanted, replace=False))
        try:
            inputs = _joined([p[0] for p in group], keep)
        except Exception:
            log.exception("%s: drift: batches of %d rows could not be joined", self.record.ref, rows)
            self._problem(rows, "batches could not be joined (an unexpected error, logged)")
            return
        if keep is not None:
            scores = None if scores is None else scores[keep]
            scored = None if scored is None else scored.rows(keep)
        problem = _observe(drift, inputs, _for_drift(drift, scores, scored))
        if problem is None:
            return
        if scores is not None and drift.profile.score_kind and _observe(drift, inputs, None) is None:
            self._problem(0, f"scores of {rows} rows left out: {problem}")
        else:
            self._problem(rows, problem)

    def _count_confidence(self, scored: Scored) -> None:
        confidence = scored.confidence[np.isfinite(scored.confidence)]
        observe_all(self._confidence, confidence)
        self.confidence_sum += float(confidence.sum())
        bins = np.minimum((confidence * 10).astype(np.int64), 9)
        for i, n in enumerate(np.bincount(bins, minlength=10).tolist()):
            self.confidence_counts[i] += n

    def _problem(self, skipped: int, problem: str) -> None:
        """Rows drift could not take: counted, the latest reason kept, each new reason logged once."""
        self.skipped += skipped
        if problem != self.problem:
            log.warning("%s: drift: %s", self.record.ref, problem)
        self.problem = problem

    # -- read when asked ---------------------------------------------------------------------------

    def drift_scores(self) -> DriftReport | None:
        """The drift scores of the window now, the gathered batches in (milliseconds: off the loop)."""
        self.flush()
        if self.drift is None:
            return None
        report = self.drift.report()
        self.drifted = report.flagged
        return report

    def drift_report(self) -> dict[str, Any]:
        """The drift scores as the dashboard and `monitor status` show them, with why rows were left out."""
        report = self.drift_scores()
        if report is None:
            return {
                "status": "no-reference" if not self.problem else "stopped",
                "problem": self.problem,
                "skipped_rows": 0,
                "features": [],
                "rows": 0,
            }
        shown = report.to_dict()
        shown["status"] = "judged" if shown["judged"] else "warming-up"
        shown["threshold"] = self.settings.psi_threshold
        shown["problem"], shown["skipped_rows"] = self.problem, self.skipped
        return shown


def _rows(inputs: dict[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()), None)
    return len(first) if first is not None and first.ndim else 1


def _values(inputs: dict[str, np.ndarray]) -> int:
    """Values in one row of `inputs`."""
    return sum(int(np.prod(v.shape[1:])) for v in inputs.values())


def _joined(batches: list[dict[str, np.ndarray]], keep: np.ndarray | None) -> dict[str, np.ndarray]:
    """The batches as one, or only the rows at the (sorted) indexes `keep` of the joined batch: each
    batch gives its own kept rows, so rows left out are never copied."""
    if keep is None:
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    picked: list[dict[str, np.ndarray]] = []
    start = 0
    for batch in batches:
        n = _rows(batch)
        lo, hi = np.searchsorted(keep, (start, start + n))
        if hi > lo:
            local = keep[lo:hi] - start
            picked.append({k: v[local] for k, v in batch.items()})
        start += n
    return {k: np.concatenate([b[k] for b in picked]) for k in picked[0]}


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

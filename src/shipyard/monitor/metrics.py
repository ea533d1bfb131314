"""Prometheus metrics of a server process, named as Prometheus asks (base units, `_total` counters).

The hot path only increments counters and observes histograms, through label children cached per
model version; answers are counted in flushes (monitor/live.py), their latencies observed together by
`observe_all`, so a request costs well under a microsecond here. Gauges of state (queue depth, requests in
flight, loaded versions and their memory, drift, live accuracy, cost) are set once a second by the
server's monitor tick. With `serve --workers N`, PROMETHEUS_MULTIPROC_DIR makes every process write its
values to shared files, and /metrics sums them (`multiprocess_mode` says how for each gauge).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONFIDENCE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
VERSION = ("model", "version")
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class VersionMetrics:
    """The label children of one model version, looked up once."""

    queue: Any
    compute: Any
    batch: Any
    compute_total: Any
    confidence: Any


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "shipyard_requests", "Requests by outcome.", [*VERSION, "protocol", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "shipyard_request_duration_seconds",
            "Time from a request's arrival to its answer.",
            [*VERSION, "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "shipyard_queue_duration_seconds",
            "Time a request waited for its batch to start.",
            VERSION,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_seconds = Histogram(
            "shipyard_compute_duration_seconds",
            "Time of one ONNX Runtime run (a whole batch).",
            VERSION,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "shipyard_batch_size", "Rows per run.", VERSION, buckets=BATCH_BUCKETS, registry=r
        )
        self.compute_total = Counter(
            "shipyard_compute_seconds", "Seconds spent computing, for cost.", VERSION, registry=r
        )
        self.confidence = Histogram(
            "shipyard_prediction_confidence",
            "Confidence (top probability) of each prediction.",
            VERSION,
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.queue_depth = gauge("shipyard_queue_depth", "Requests waiting for a run.", VERSION, r)
        self.in_flight = gauge("shipyard_inflight_requests", "Requests being answered.", VERSION, r)
        self.loaded = gauge("shipyard_model_loaded", "1 when the version is resident.", VERSION, r)
        self.memory = gauge(
            "shipyard_model_memory_bytes", "Resident memory the version added when loaded.", VERSION, r
        )
        self.drift = gauge(
            "shipyard_drift_score",
            "Drift of live inputs from the reference, per feature and statistic (psi, ks).",
            [*VERSION, "feature", "statistic"],
            r,
            mode="livemostrecent",
        )
        self.drifting = gauge(
            "shipyard_drift_flagged",
            "1 when a drift score passes its threshold.",
            VERSION,
            r,
            mode="livemostrecent",
        )
        self.accuracy = gauge(
            "shipyard_live_accuracy",
            "Accuracy over the recent feedback window.",
            VERSION,
            r,
            mode="livemostrecent",
        )
        self.shadow = Counter(
            "shipyard_shadow_requests",
            "Copies of requests offered to a shadow version, by outcome: answered, failed, or dropped "
            "(it was busy, or past its rate).",
            [*VERSION, "outcome"],
            registry=r,
        )
        self.shadow_rows = Counter(
            "shipyard_shadow_rows",
            "Rows a shadow version answered beside production's, by outcome: compared (both had a "
            "class), agreed (the same class).",
            [*VERSION, "outcome"],
            registry=r,
        )
        self.feedback = Counter(
            "shipyard_feedback",
            "Labels received for predictions: outcome new (the first for its prediction id) or replaced.",
            [*VERSION, "outcome"],
            registry=r,
        )
        self.feedback_labelled = gauge(
            "shipyard_feedback_labelled",
            "Labelled predictions in the accuracy window by outcome (correct, wrong); a replaced label "
            "moves its prediction from one to the other.",
            [*VERSION, "outcome"],
            r,
        )
        self.cost = gauge(
            "shipyard_cost_per_1k_predictions",
            "Compute cost of 1,000 predictions at the configured price per instance-hour.",
            VERSION,
            r,
            mode="livemostrecent",
        )
        self.log_records = Counter(
            "shipyard_prediction_log_records",
            "Prediction log records by outcome (written, dropped_full, sampled_out, rate_limited).",
            ["outcome"],
            registry=r,
        )
        self._versions: dict[tuple[str, str], VersionMetrics] = {}
        self._requests: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    def version(self, model: str, version: str) -> VersionMetrics:
        key = (model, version)
        found = self._versions.get(key)
        if found is None:
            found = self._versions[key] = VersionMetrics(
                self.queue_seconds.labels(*key),
                self.compute_seconds.labels(*key),
                self.batch_size.labels(*key),
                self.compute_total.labels(*key),
                self.confidence.labels(*key),
            )
        return found

    def request(self, model: str, version: str, protocol: str, status: str, seconds: float) -> None:
        count, latency = self._children(model, version, protocol, status)
        count.inc()
        latency.observe(seconds)

    def requests_answered(
        self, model: str, version: str, protocol: str, seconds: Sequence[float] | np.ndarray
    ) -> None:
        """Many answered requests at once (Monitor.flush): one count, each latency observed."""
        count, latency = self._children(model, version, protocol, "200")
        count.inc(len(seconds))
        observe_all(latency, seconds)

    def _children(self, model: str, version: str, protocol: str, status: str) -> tuple[Any, Any]:
        key = (model, version, protocol, status)
        children = self._requests.get(key)
        if children is None:
            children = self._requests[key] = (
                self.requests.labels(*key),
                self.request_seconds.labels(model, version, protocol),
            )
        return children

    def exposition(self) -> tuple[bytes, str]:
        """The text format for /metrics: this process's registry, or every worker's files."""
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


NUMPY_FROM = 64
"""Values from which observe_all finds their buckets with numpy rather than bisect."""


def observe_all(histogram: Any, values: Sequence[float] | np.ndarray) -> None:
    """Observe many values of one histogram child at once: each bucket they fall in and the sum are
    incremented once (Histogram.observe takes two locks and walks the bounds per value: ~1 us each).
    It reaches into the child's `_upper_bounds`, `_buckets` and `_sum`, stable across
    prometheus_client's releases and the same in multiprocess mode; a child without them is observed
    value by value. NaN, never a latency, is left out (observe() would make the sum NaN)."""
    buckets, bounds = getattr(histogram, "_buckets", None), getattr(histogram, "_upper_bounds", None)
    if buckets is None or bounds is None:
        for value in values:
            histogram.observe(float(value))
        return
    counts: dict[int, int] = {}
    if len(values) >= NUMPY_FROM:
        found = np.asarray(values, dtype=np.float64)
        found = found[~np.isnan(found)]
        total = float(found.sum())
        where = np.bincount(np.searchsorted(np.asarray(bounds), found, side="left"), minlength=len(bounds))
        counts = {i: n for i, n in enumerate(where.tolist()) if n}
    else:
        total, find = 0.0, bisect.bisect_left
        for value in values.tolist() if isinstance(values, np.ndarray) else values:
            if value == value:  # not NaN
                total += value
                i = find(bounds, value)
                counts[i] = counts.get(i, 0) + 1
    histogram._sum.inc(total)
    for i, n in counts.items():
        buckets[i].inc(n)


Mode = Literal["livesum", "livemostrecent"]


def gauge(name: str, doc: str, labels: Any, registry: CollectorRegistry, mode: Mode = "livesum") -> Gauge:
    return Gauge(name, doc, labels, registry=registry, multiprocess_mode=mode)

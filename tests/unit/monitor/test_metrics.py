"""Histograms observed many values at once read exactly as if each value had been observed."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from shipyard.monitor.metrics import LATENCY_BUCKETS, NUMPY_FROM, observe_all


def samples(registry: CollectorRegistry, child: str) -> dict[str, float]:
    (family,) = [m for m in registry.collect() if m.name == "latency"]
    return {
        f"{s.name}{s.labels.get('le', '')}": s.value
        for s in family.samples
        if s.labels["child"] == child and not s.name.endswith("_created")
    }


@pytest.mark.parametrize("size", [1, 5, NUMPY_FROM - 1, NUMPY_FROM, 500])
@pytest.mark.parametrize("as_array", [False, True])
def test_observing_all_at_once_counts_as_observing_each(size: int, as_array: bool) -> None:
    registry = CollectorRegistry()
    histogram = Histogram("latency", "", ["child"], buckets=LATENCY_BUCKETS, registry=registry)
    rng = np.random.default_rng(size)
    edges = [0.0005, 0.001, 10.0, 11.0, 0.0]  # on a bound, past the last one, zero
    values = [*rng.exponential(0.004, size).tolist(), *edges]
    for value in values:
        histogram.labels("each").observe(value)
    observe_all(histogram.labels("all"), np.array(values) if as_array else values)
    each, together = samples(registry, "each"), samples(registry, "all")
    assert together.keys() == each.keys()
    assert together == pytest.approx(each, rel=1e-12)


def test_nan_is_left_out_instead_of_spoiling_the_sum() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("latency", "", ["child"], buckets=LATENCY_BUCKETS, registry=registry)
    for size in (2, NUMPY_FROM):
        observe_all(histogram.labels("all"), [0.001, float("nan")] * (size // 2))
    found = samples(registry, "all")
    assert found["latency_count"] == 1 + NUMPY_FROM // 2
    assert found["latency_sum"] == pytest.approx(0.001 * (1 + NUMPY_FROM // 2))

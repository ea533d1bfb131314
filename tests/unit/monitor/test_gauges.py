"""The monitor tick's gauges alone: what the runtime reports, set each second; a version that left
loses its series, and the prediction log's counters grow by what they grew since the last tick."""

from __future__ import annotations

from dataclasses import replace

from shipyard.monitor.gauges import Gauges
from shipyard.monitor.metrics import Metrics
from shipyard.monitor.predlog import PredictionLogCounters


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_version_that_left_loses_its_series() -> None:
    metrics = Metrics()
    gauges = Gauges(metrics)
    gauges.states({("digits", 1): (True, 1000, 2, 3), ("digits", 2): (False, 0, 0, 0)})
    assert value(metrics, "shipyard_model_memory_bytes", model="digits", version="1") == 1000
    assert value(metrics, "shipyard_queue_depth", model="digits", version="1") == 2
    assert value(metrics, "shipyard_inflight_requests", model="digits", version="1") == 3
    assert value(metrics, "shipyard_model_loaded", model="digits", version="2") == 0
    gauges.states({("digits", 2): (True, 500, 0, 0)})
    assert value(metrics, "shipyard_model_loaded", model="digits", version="1") is None
    assert value(metrics, "shipyard_model_memory_bytes", model="digits", version="1") is None
    assert value(metrics, "shipyard_model_loaded", model="digits", version="2") == 1


def test_the_log_counters_count_what_they_grew_by() -> None:
    metrics = Metrics()
    gauges = Gauges(metrics)
    counters = PredictionLogCounters(10, 1, 2, 3, 0, 4, 0, 0)
    gauges.log(counters)
    gauges.log(replace(counters, written=9, dropped_full=3))
    assert value(metrics, "shipyard_prediction_log_records_total", outcome="written") == 9
    assert value(metrics, "shipyard_prediction_log_records_total", outcome="dropped_full") == 3
    assert value(metrics, "shipyard_prediction_log_records_total", outcome="sampled_out") == 1

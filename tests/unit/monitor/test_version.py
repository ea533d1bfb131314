"""A version's live state fed as its batcher feeds it: batches that drift cannot read are left out,
counted and reported, and never stop drift or confidence for the batches after them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from shipyard.config import MonitorSettings
from shipyard.monitor import watch
from shipyard.monitor.metrics import Metrics
from shipyard.monitor.profile import build_profile
from shipyard.monitor.version import VersionMonitor
from shipyard.registry import Registry, VersionRecord
from shipyard.runtime.batcher import Ran
from tests.conftest import register_digits
from tests.models import digits_data, digits_linear

WINDOW = 400


@pytest.fixture
def record(registry: Registry) -> VersionRecord:
    """digits (logits) with a reference profile of its first 1,000 rows."""
    X = digits_data()[0][:1000]
    profile = build_profile({"input": X}, digits_linear().logits(X), score_kind="logits")
    return dataclasses.replace(register_digits(registry), reference=profile.to_dict())


def watched(record: VersionRecord) -> VersionMonitor:
    return VersionMonitor(record, MonitorSettings(drift_window=WINDOW, drift_min_rows=300), Metrics())


def run(
    monitor: VersionMonitor,
    x: np.ndarray,
    outputs: list[np.ndarray] | None = None,
    names: list[str] | None = None,
) -> None:
    """What the batcher reports after a run of `x`, and the monitor's flush takes."""
    scores = [digits_linear().logits(x)] if outputs is None else outputs
    monitor.batch_done(Ran(len(x), {"input": x}, names, True, [len(x)], [0.0], 0.001, [None]), scores)
    assert monitor.take()


def confidences(monitor: VersionMonitor) -> list[int]:
    """The confidence histogram's counts, as the dashboard shows them."""
    counts: list[int] = monitor.summary("ready", True, {})["confidence"]["counts"]
    return counts


def live(rows: int, seed: int = 0) -> np.ndarray:
    X = digits_data()[0][1000:]
    return X[np.random.default_rng(seed).integers(0, len(X), rows)]


def test_inputs_the_profile_cannot_describe_are_skipped_and_drift_goes_on(record: VersionRecord) -> None:
    monitor = watched(record)
    run(monitor, live(20))
    x = live(20, 1)
    run(monitor, x[:, :32], [digits_linear().logits(x)])  # 32 features where the profile has 64
    run(monitor, live(20, 2))
    report = monitor.drift_report()
    assert report["rows"] == 40 and report["skipped_rows"] == 20
    assert "32 features" in report["problem"] and report["status"] == "warming-up"
    for seed in range(3, 3 + WINDOW // 20):
        run(monitor, live(20, seed))
    report = monitor.drift_report()
    assert report["status"] == "judged" and not report["flagged"] and report["skipped_rows"] == 20
    for seed in range(100, 100 + WINDOW // 20):  # a real shift is still seen
        run(monitor, np.clip(live(20, seed) + 3, 0, 16))
    assert monitor.drift_report()["flagged"]


def test_scores_the_profile_cannot_read_leave_the_inputs_in(record: VersionRecord) -> None:
    monitor = watched(record)
    x = live(20)
    run(monitor, x, [digits_linear().logits(x)[:, :5]])  # five classes where the profile has ten
    run(monitor, live(20, 1))
    report = monitor.drift_report()
    assert report["rows"] == 40 and report["scored_rows"] == 20 and report["skipped_rows"] == 0
    assert "scores of 20 rows left out" in report["problem"] and "10 classes" in report["problem"]
    assert sum(confidences(monitor)) == 40  # the confidence histogram reads any class scores


def test_runs_without_the_score_output_keep_the_scores_of_the_others(record: VersionRecord) -> None:
    monitor = watched(record)
    for seed in range(10):
        x = live(10, seed)
        if seed % 2:
            run(monitor, x, [np.zeros(10, np.int64)], ["other"])
        else:
            run(monitor, x)
    report = monitor.drift_report()
    assert report["rows"] == 100 and report["scored_rows"] == 50 and report["problem"] == ""
    assert sum(confidences(monitor)) == 50


def test_large_inputs_give_drift_a_sample_of_each_flush_and_confidence_every_row(
    record: VersionRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "DRIFT_VALUES", 64 * 32)  # digits rows as if each were 16x larger
    monitor = watched(record)
    for seed in range(watch.PENDING_ROWS // 32):
        run(monitor, live(32, seed))
    report = monitor.drift_report()
    assert report["rows"] == 32 and sum(confidences(monitor)) == watch.PENDING_ROWS
    for seed in range(100, 100 + 10 * watch.PENDING_ROWS // 32):  # 10 flushes: 320 sampled rows
        run(monitor, np.clip(live(32, seed) + 3, 0, 16))
    report = monitor.drift_report()
    assert report["rows"] == 32 * 11 and report["status"] == "judged" and report["flagged"]

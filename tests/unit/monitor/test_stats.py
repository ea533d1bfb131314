"""Triton's statistics of one version alone: runs, answers and failures counted as Triton counts them."""

from __future__ import annotations

from shipyard.monitor.stats import NS, TritonStats


def test_runs_answers_and_failures_are_counted_as_triton_counts_them() -> None:
    stats = TritonStats()
    stats.ran(4, [0.001, 0.002], 0.010, answered=True)
    stats.ran(4, [0.001], 0.020, answered=True)
    stats.ran(1, [0.003], 0.005, answered=False)  # a run that failed queued and computed all the same
    stats.answered_all([0.015, 0.025])
    stats.failed(0.004)
    doc = stats.to_dict("digits", 2)
    assert (doc["name"], doc["version"]) == ("digits", "2")
    assert doc["inference_count"] == 8 and doc["execution_count"] == 3 and doc["last_inference"] > 0
    inference = doc["inference_stats"]
    assert inference["success"] == {"count": 2, "ns": int(0.015 * NS) + int(0.025 * NS)}
    assert inference["fail"]["count"] == 1 and inference["queue"]["count"] == 4
    assert inference["compute_infer"]["count"] == 3 and inference["cache_hit"] == {"count": 0, "ns": 0}
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in doc["batch_stats"]] == [(4, 2)]
    assert stats.requests == 3

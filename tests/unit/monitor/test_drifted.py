"""Drifted features are listed worst first: the report ranks them by PSI, and the line `monitor status`
and the dashboard show names the top five with their PSI and how many more drifted."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from shipyard.monitor.dashboard import fragment
from shipyard.monitor.drift import DriftMonitor
from shipyard.monitor.drifted import ranked, verdict, worst
from shipyard.monitor.profile import build_profile

SHIFTS = [0.0, 0.6, 3.0, 0.0, 1.5, 6.0, 0.9, 0.0, 2.0, 4.0]  # in standard deviations, per column


def drifted_report() -> dict[str, Any]:
    """A real report: ten columns, seven of them shifted by different amounts."""
    rng = np.random.default_rng(0)
    monitor = DriftMonitor(build_profile({"x": rng.normal(size=(2000, 10))}))
    monitor.observe({"x": rng.normal(size=(500, 10)) + np.array(SHIFTS)})
    report = monitor.report()
    assert report.flagged
    return dict(json.loads(json.dumps(report.to_dict())))  # as the server sends it


def test_the_report_ranks_drifted_features_by_psi() -> None:
    report = drifted_report()
    psi = {f["name"]: f["psi"] for f in report["features"]}
    assert len(report["drifted"]) == 7 and not {"x[0]", "x[3]", "x[7]"} & set(report["drifted"])
    assert report["drifted"] == sorted(report["drifted"], key=lambda name: -psi[name])
    assert report["drifted"][0] == "x[5]"  # shifted the most; the feature order would say x[1]
    assert ranked(report) == [(name, psi[name]) for name in report["drifted"]]


def test_the_top_five_with_their_psi_and_how_many_more() -> None:
    report = drifted_report()
    top = ranked(report)[:5]
    line = worst(report)
    assert line == ", ".join(f"{name} {value:.2f}" for name, value in top) + ", +2 more"
    assert line.startswith("x[5] ")
    assert verdict(report) == f"by PSI: {line}"
    assert worst(report, shown=7) == worst(report, shown=9)
    assert "more" not in worst(report, shown=7)


def test_a_verdict_without_drifted_features_gives_its_reason() -> None:
    report = {"drifted": [], "features": [], "reasons": ["predicted classes PSI 0.310 >= 0.2"]}
    assert worst(report) == ""
    assert verdict(report) == "predicted classes PSI 0.310 >= 0.2"


def test_the_dashboard_tile_shows_the_same_line() -> None:
    drift = {**drifted_report(), "status": "judged", "threshold": 0.2}
    version = {
        "version": 1,
        "default": True,
        "state": "READY",
        "requests": 500,
        "errors": 0,
        "error_rate": 0.0,
        "throughput_rps": 1.0,
        "latency_ms": {"p50": 1.0, "p99": 2.0},
        "series": {"t": [], "rps": [], "p50_ms": [], "p99_ms": [], "error_pct": []},
        "confidence": {"edges": [0.0, 1.0], "counts": [0]},
        "drift": drift,
        "accuracy": {"value": None, "labelled": 0, "window": 0},
        "cost": {"per_1k": None, "price_per_hour": 0.1},
    }
    html = fragment({"versions": [version]})
    assert f'<div class="muted">{verdict(drift)}</div>' in html

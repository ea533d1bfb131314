"""`shipyard capacity` as a user runs it: a registered model measured here (a short measurement) and a
plan that adds up; a missing model, a budget nothing fits and bad numbers as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import DIGITS_SIGNATURE, LABELS
from tests.e2e.test_cli_tour import shipyard
from tests.models import digits_linear

SHORT = ["--measure-s", "0.3"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    registry = Registry.open(Settings(home=home))
    try:
        registry.register(
            "digits",
            digits_linear().onnx_bytes,
            signature=DIGITS_SIGNATURE,
            framework="onnx",
            check={},
            labels=LABELS,
        )
    finally:
        registry.close()
    return home


def test_capacity_measures_the_model_here_and_plans_replicas_cores_and_cost(home: Path) -> None:
    out = shipyard(home, "capacity", "digits:1", "--rps", "50000", "--p99-ms", "50", "--json", *SHORT).stdout
    doc = json.loads(out)
    measured, p = doc["measured"], doc["plan"]
    assert doc["version"] == "digits:1" and measured["body"] == "json" and measured["threads"] == 1
    assert measured["cores"] >= 1 and measured["cpu"]
    assert measured["server_ms_per_request"] > 0 and measured["server_ms_per_cycle"] >= 0
    assert sorted(int(k) for k in measured["run_ms_by_batch"]) == [1, 2, 4, 8, 16, 32]
    assert p["workers_per_replica"] == 2 and p["cores"] == 2 * p["replicas"]
    assert p["dollars_per_hour"] == pytest.approx(0.04 * p["cores"])
    assert p["dollars_per_1k_predictions"] == pytest.approx(p["dollars_per_hour"] / (50_000 * 3.6))
    assert p["replicas"] * 2 * p["worker_max_rps"] >= 50_000  # enough workers for the load
    assert p["worker_rps"] <= p["worker_max_rps"] < p["worker_capacity_rps"]
    assert 0 < p["utilisation"] <= 0.7 + 1e-9
    assert p["p99_ms"] <= 50 and p["limited_by"] in ("utilisation", "latency")
    assert any("load balancer" in line for line in doc["assumptions"])


def test_capacity_errors_are_one_line(home: Path) -> None:
    missing = shipyard(home, "capacity", "nothing", "--rps", "10", "--p99-ms", "50", ok=False)
    assert "nothing" in missing.stderr
    tight = shipyard(home, "capacity", "digits", "--rps", "10", "--p99-ms", "0.00001", *SHORT, ok=False)
    assert "no batch size fits" in tight.stderr
    for bad in (["--rps", "0", "--p99-ms", "50"], ["--rps", "10", "--p99-ms", "-1"]):
        assert "must be" in shipyard(home, "capacity", "digits", *bad, ok=False).stderr
    wrong_body = ["--rps", "10", "--p99-ms", "50", "--body", "xml", *SHORT]
    assert "--body" in shipyard(home, "capacity", "digits", *wrong_body, ok=False).stderr

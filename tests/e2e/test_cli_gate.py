"""`shipyard gate` as a user runs it before any traffic: a candidate measured beside production on an
evaluation file, passed or failed on its metric, latency and size, the verdict as the exit status and
in the history."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import DIGITS_SIGNATURE, LABELS
from tests.e2e.test_cli_tour import shipyard
from tests.integration.conftest import shipyard_command
from tests.models import digits_confused, digits_data, digits_linear

QUICK = ["--latency-runs", "20", "--throughput-batches", "2", "--threads", "1"]


def failing_gate(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A gate that runs and fails: exit status 1, the verdict on stdout, no error line."""
    result = subprocess.run(
        shipyard_command(home, "gate", *args, *QUICK), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1 and "error" not in result.stderr, result.stderr
    return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """digits 1 in production; 2, the same model; 3, one that confuses half the classes."""
    registry = Registry.open(Settings(home=tmp_path / "home"))
    for model in (digits_linear(), digits_linear(), digits_confused()):
        registry.register(
            "digits", model.onnx_bytes, signature=DIGITS_SIGNATURE, framework="onnx", check={}, labels=LABELS
        )
    registry.deploy("digits", 1)
    registry.close()
    X, y = digits_data()
    np.savez(tmp_path / "eval.npz", X=X[:500], y=y[:500])
    return tmp_path / "home"


def gates(home: Path) -> list[tuple[int | None, int | None, str, str]]:
    registry = Registry.open(Settings(home=home))
    try:
        return [
            (e.version, e.from_version, e.detail, e.reason)
            for e in registry.history("digits")
            if e.kind == "gate"
        ]
    finally:
        registry.close()


def test_a_candidate_as_good_as_production_passes(home: Path) -> None:
    evaluation = str(home.parent / "eval.npz")
    out = shipyard(
        home,
        "gate",
        "digits:2",
        "--eval",
        evaluation,
        *QUICK,
        "--max-latency-ratio",
        "100",
        "--reason",
        "weekly retrain",
    ).stdout
    assert (
        "accuracy drop: 0 (at most 0.01): ok" in out and "file size: the same (at most 2x larger): ok" in out
    )
    assert "p99 latency: " in out and "(at most 100x slower): ok" in out
    assert out.strip().endswith("gate passed: digits:2 against digits:1")
    ((version, against, detail, reason),) = gates(home)
    assert (version, against, reason) == (2, 1, "weekly retrain") and detail.startswith(
        "passed against digits:1"
    )


def test_a_candidate_that_loses_accuracy_fails_with_exit_status_1(home: Path) -> None:
    evaluation = str(home.parent / "eval.npz")
    result = failing_gate(home, "digits:3", "--eval", evaluation, "--json")
    verdict = json.loads(result.stdout)["verdict"]
    checks = {check["name"]: check for check in verdict["checks"]}
    assert not verdict["passed"] and not checks["accuracy drop"]["passed"]
    assert 0.3 < checks["accuracy drop"]["value"] < 0.7 and checks["file size"]["passed"]
    assert gates(home)[0][2].startswith("failed against digits:1: accuracy drop: ")


def test_latency_and_size_have_bounds_of_their_own(home: Path) -> None:
    evaluation = str(home.parent / "eval.npz")
    args = ["--max-latency-ratio", "0.01", "--max-size-ratio", "0.5"]
    out = failing_gate(home, "digits:2", "--against", "1", "--eval", evaluation, *args).stdout
    assert (
        "(at most 0.01x slower): FAILED" in out and "file size: the same (at most 0.5x larger): FAILED" in out
    )
    assert "gate failed: digits:2 against digits:1" in out


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["digits:1"], "digits:1 is production already"),
        (["digits:9"], "no version 9"),
        (["digits:2", "--against", "staging"], "no version or alias 'staging'"),
        (["digits:2", "--max-latency-ratio", "0"], "must be more than 0"),
        (["digits:2", "--latency-floor-ms", "-1"], "--latency-floor-ms must be 0 or more"),
    ],
)
def test_a_gate_that_cannot_run_is_one_line(home: Path, args: list[str], problem: str) -> None:
    result = shipyard(home, "gate", *args, "--eval", str(home.parent / "eval.npz"), *QUICK, ok=False)
    assert result.returncode == 1 and problem in result.stderr and result.stderr.count("\n") == 1
    assert gates(home) == []

"""`shipyard optimize` and `shipyard model compare` as a user runs them: a registered model, an
evaluation file, the report table, the gate's verdict as the exit status, lineage in `model show`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_cli_tour import shipyard
from tests.unit.optimize.trained import mlp, split

QUICK = ["--latency-runs", "10", "--throughput-batches", "2", "--threads", "1"]


@pytest.fixture
def model_files(tmp_path: Path) -> Path:
    torch = pytest.importorskip("torch")
    from shipyard.convert.torch import from_module

    torch.set_num_threads(1)
    (tmp_path / "digits.onnx").write_bytes(from_module(mlp(), torch.zeros(1, 64)).onnx_bytes)
    (tmp_path / "labels.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    s = split()
    np.savez(tmp_path / "test.npz", X=s.X_test, y=s.y_test)
    return tmp_path


def test_optimize_registers_within_the_bound_and_refuses_beyond_it(model_files: Path, tmp_path: Path) -> None:
    home, d = tmp_path / "home", model_files
    labels = str(d / "labels.txt")
    shipyard(home, "model", "import", str(d / "digits.onnx"), "--name", "digits", "--labels", labels)
    evaluation = ["--eval", str(d / "test.npz")]

    out = shipyard(home, "optimize", "digits", "--method", "dynamic-int8", *evaluation, *QUICK).stdout
    for row in ("file size", "parameters", "sparsity", "latency p50", "latency p99", "samples/s", "accuracy"):
        assert row in out
    assert "gate passed" in out and "registered digits:2" in out

    refused = shipyard(
        home, "optimize", "digits:1", "-m", "prune", "--sparsity", "0.99", *evaluation, *QUICK, ok=False
    )
    assert "gate failed: accuracy drops by" in refused.stderr and "nothing registered" in refused.stderr
    assert "accuracy" in refused.stdout  # the report is shown all the same
    assert "2, 3" not in shipyard(home, "model", "list").stdout

    doc = json.loads(
        shipyard(home, "optimize", "digits:1", "-m", "fp16", *evaluation, *QUICK, "--json").stdout
    )
    assert doc["version"] == "digits:3" and doc["gate"]["passed"]
    assert doc["report"]["candidate"]["size_bytes"] < doc["report"]["parent"]["size_bytes"]

    shown = shipyard(home, "model", "show", "digits:2").stdout
    assert "lineage" in shown and "dynamic-int8 of digits:1" in shown and "gate passed" in shown
    manifest = json.loads(shipyard(home, "model", "show", "digits:2", "--json").stdout)
    assert manifest["lineage"]["parent"] == "digits:1" and manifest["report"]["metric"] == "accuracy"

    compared = shipyard(home, "model", "compare", "digits:1", "digits:3", *evaluation, *QUICK).stdout
    assert "digits:1" in compared and "digits:3" in compared and "x smaller" in compared

    shipyard(home, "optimize", "digits", "-m", "shrink", *evaluation, ok=False)
    shipyard(home, "optimize", "digits", "-m", "distill", *evaluation, ok=False)  # no --train
    shipyard(home, "optimize", "digits", "-m", "prune", "--eval", str(d / "labels.txt"), ok=False)

"""The README's tour, run as a user runs it: the CLI in subprocesses, on files made the way the demo
makes them. Every command must succeed with readable output; every mistake must be one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import joblib
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.integration.conftest import start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's files, built by the demo's own script."""
    out = tmp_path_factory.mktemp("demo")
    subprocess.run(
        [sys.executable, str(ROOT / "examples/digits/build.py"), str(out)], check=True, timeout=300
    )
    return out


def shipyard(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHIPYARD_HOME": str(home), "COLUMNS": "120"}
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", *args], capture_output=True, text=True, env=env, timeout=300
    )
    if ok:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return result


def test_tour(home: Path, demo: Path, tmp_path: Path) -> None:
    # import: TorchScript with an input shape, labels and the dataset it was evaluated on
    out = shipyard(
        home,
        "model",
        "import",
        str(demo / "digits.pt"),
        "--name",
        "digits",
        "--input-shape",
        "1,64",
        "--labels",
        str(demo / "labels.txt"),
        "--dataset",
        str(demo / "digits-test.npz"),
    ).stdout
    assert "imported digits:1 from torchscript" in out and "check passed" in out

    # scikit-learn from a joblib file, and ONNX as it is (exported from the registry)
    X, y = load_digits(return_X_y=True)
    joblib.dump(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y), tmp_path / "lr.joblib"
    )
    assert (
        "imported digits:2 from sklearn"
        in shipyard(
            home, "model", "import", str(tmp_path / "lr.joblib"), "--name", "digits", "--trust"
        ).stdout
    )
    shipyard(home, "model", "export", "digits:1", str(tmp_path / "digits.onnx"))
    out = shipyard(home, "model", "import", str(tmp_path / "digits.onnx"), "--name", "digits-onnx").stdout
    assert "imported digits-onnx:1 from onnx" in out

    listing = shipyard(home, "model", "list").stdout
    assert "digits" in listing and "1, 2" in listing

    manifest = json.loads(shipyard(home, "model", "show", "digits:1", "--json").stdout)
    assert manifest["signature"]["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert manifest["signature"]["scores"] == {"output": "logits", "kind": "logits"}
    assert manifest["labels"] == [str(i) for i in range(10)]
    assert manifest["framework"] == "torchscript" and manifest["check"]["passed"]
    assert manifest["check"]["max_abs_diff"] < 1e-4
    assert manifest["dataset"]["name"] == "digits-test.npz" and len(manifest["dataset"]["sha256"]) == 64
    assert "sha256" in shipyard(home, "model", "show", "digits").stdout

    shipyard(home, "model", "alias", "digits", "2", "production")
    assert (
        "restored digits:1 as production (was 2)" in shipyard(home, "model", "restore", "digits", "1").stdout
    )
    history = shipyard(home, "model", "history", "digits").stdout
    for word in ("created", "alias", "restore"):
        assert word in history

    out = shipyard(home, "model", "configure", "digits", "--max-batch-size", "64", "--instances", "2").stdout
    assert out.splitlines() == [
        "digits is served with instances=2, max_batch_size=64",
        "running servers pick it up at their next registry check, without a restart",
    ]
    shipyard(home, "model", "configure", "digits", "--max-batch-size", "0", ok=False)

    # serve: the production version answers, as the README's curl line shows
    server = start_server(home)
    try:
        log = (home / f"server-{server.port}.log").read_text()
        assert "serving digits versions 1, 2 (default 1; batch <= 64, 2 instances" in log
        body = json.loads((demo / "seven.json").read_text())
        doc = httpx.post(f"{server.url}/v1/models/digits/predict", json=body).json()
        assert doc["class"] == "7" and doc["version"] == 1 and doc["confidence"] > 0.5
        sk = httpx.post(f"{server.url}/v1/models/digits/versions/2/predict", json=body).json()
        assert sk["class"] == "7" and sk["version"] == 2
    finally:
        stop_server(server)

    shipyard(home, "model", "delete", "digits-onnx", "--yes")
    assert "digits-onnx" not in shipyard(home, "model", "list").stdout
    gone = shipyard(home, "model", "show", "digits-onnx", ok=False).stderr
    assert gone == "error: no model named 'digits-onnx'\n"
    out = shipyard(home, "model", "import", str(tmp_path / "digits.onnx"), "--name", "digits-onnx").stdout
    assert "imported digits-onnx:2 from onnx" in out  # a number is never given twice, even after a delete


def test_mistakes_are_one_clear_line(home: Path, demo: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    shipyard(home, "model", "import", str(tmp_path / "junk.onnx"), "--name", "x", ok=False)
    shipyard(home, "model", "import", str(tmp_path / "missing.onnx"), "--name", "x", ok=False)
    shipyard(home, "model", "import", str(demo / "digits.pt"), "--name", "x", ok=False)  # no --input-shape
    shipyard(
        home, "model", "import", str(demo / "digits.pt"), "--name", "x", "--input-shape", "1,63", ok=False
    )
    shipyard(home, "model", "import", str(demo / "labels.txt"), "--name", "x", ok=False)
    shipyard(home, "model", "show", "nope", ok=False)
    shipyard(home, "model", "show", "nope:", ok=False)
    shipyard(home, "model", "alias", "nope", "1", "production", ok=False)
    shipyard(home, "model", "restore", "nope", "3", ok=False)
    shipyard(home, "model", "history", "never-existed", ok=False)
    shipyard(home, "model", "export", "nope", str(tmp_path / "x.onnx"), ok=False)
    shipyard(home, "model", "delete", "nope", "--yes", ok=False)
    assert not any(
        p.name.startswith("x") for p in tmp_path.iterdir() if p.suffix == ".onnx" and p.name != "junk.onnx"
    )


def test_labels_of_the_wrong_length_are_refused(home: Path, demo: Path, tmp_path: Path) -> None:
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    result = shipyard(
        home,
        "model",
        "import",
        str(demo / "digits.pt"),
        "--name",
        "bad",
        "--input-shape",
        "1,64",
        "--labels",
        str(tmp_path / "three.txt"),
        ok=False,
    )
    assert "3 labels given, but the model scores 10 classes" in result.stderr
    assert "bad" not in shipyard(home, "model", "list").stdout

"""`shipyard pipeline` as a user runs it: create a pipeline of registered versions, create it again,
show it, serve it, and get one clear line for each mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shipyard.config import Settings
from shipyard.convert.check import run_onnx
from shipyard.importing import import_sklearn
from shipyard.registry import Registry
from tests.integration.conftest import start_server, stop_server
from tests.models import digits_data
from tests.unit.test_pipelines import classifier, scaler_onnx


def shipyard(home: Path, *args: str, ok: bool = True) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SHIPYARD_HOME": str(home), "COLUMNS": "200"},
    )
    if ok:
        assert result.returncode == 0, result.stderr
        return result.stdout
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding scaler:1, imported as a user imports an ONNX file."""
    folder = tmp_path_factory.mktemp("pipeline")
    (folder / "scaler.onnx").write_bytes(scaler_onnx())
    out = shipyard(folder / "home", "model", "import", str(folder / "scaler.onnx"), "--name", "scaler")
    assert "imported scaler:1" in out
    return folder / "home"


def test_create_show_and_serve_a_pipeline(home: Path) -> None:
    registry = Registry.open(Settings(home=home))
    model = import_sklearn(classifier(), name="classifier", registry=registry)
    registry.set_alias("classifier", 1, "production")
    scaler = registry.version("scaler")

    out = shipyard(home, "pipeline", "create", "digits-pipe", "--steps", "scaler,classifier:production")
    record = registry.version("digits-pipe")
    assert out == (
        f"created digits-pipe:1 from scaler:1, classifier:1 ({record.size / 1024:.1f} KiB, sha256 "
        f"{record.sha256[:12]}, check passed: max |diff| {record.check['max_abs_diff']:.2e})\n"
    )
    again = shipyard(home, "pipeline", "create", "digits-pipe", "--steps", "scaler:1,classifier:1")
    assert again.startswith("digits-pipe:1 already holds these steps")
    shown = shipyard(home, "pipeline", "show", "digits-pipe:1").splitlines()
    assert shown[1].split() == f"step 1 scaler:1 sha256 {scaler.sha256} onnx (asked as scaler)".split()
    wanted = f"step 2 classifier:1 sha256 {model.sha256} sklearn (asked as classifier:production)"
    assert shown[2].split() == wanted.split()
    assert shown[3].split() == ["scaled", "->", "input"]
    manifest = shipyard(home, "model", "show", "digits-pipe:1")
    assert "lineage      pipeline of scaler:1, classifier:1" in manifest

    X, _ = digits_data()
    (scaled,) = run_onnx(registry.artifact(scaler), {"x": X[:10]})
    _, probabilities = run_onnx(registry.artifact(model), {"input": scaled})
    by_hand = [str(i) for i in probabilities.argmax(axis=1)]
    registry.close()
    server = start_server(home)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            classes = [
                client.post("/v1/models/digits-pipe/predict", json={"input": row.tolist()}).json()["class"]
                for row in X[:10]
            ]
    finally:
        stop_server(server)
    assert classes == by_hand


def test_mistakes_are_one_clear_line(home: Path) -> None:
    assert shipyard(home, "pipeline", "create", "p", "--steps", "scaler", ok=False) == (
        "error: a pipeline needs at least two steps, got 1 (scaler): one model is imported with "
        "`shipyard model import`"
    )
    assert shipyard(home, "pipeline", "show", "scaler", ok=False) == (
        "error: scaler:1 is not a pipeline (it is from onnx)"
    )

"""`model import` on a Keras .keras file and an XGBoost .ubj file, as a user runs it: one line saying
what was imported, and a manifest naming the framework and the numerical check."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.e2e.test_cli_tour import shipyard


def _keras_file(path: Path) -> Path:
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Keras 3 on numpy 2 warns as it saves
        model.save(path)
    return path


def _xgboost_file(path: Path) -> Path:
    xgb = pytest.importorskip("xgboost")
    pytest.importorskip("onnxmltools")
    x, y = load_digits(return_X_y=True)
    xgb.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=2).fit(x.astype(np.float32), y).save_model(path)
    return path


def _manifest(home: Path, name: str) -> dict[str, object]:
    manifest: dict[str, object] = json.loads(shipyard(home, "model", "show", name, "--json").stdout)
    return manifest


@pytest.mark.parametrize(
    ("make", "filename", "framework"),
    [(_keras_file, "digits.keras", "keras"), (_xgboost_file, "digits.ubj", "xgboost")],
    ids=["keras", "xgboost"],
)
def test_a_model_file_imports_by_its_suffix_with_one_line(
    tmp_path: Path, make: Callable[[Path], Path], filename: str, framework: str
) -> None:
    home = tmp_path / "home"
    model = make(tmp_path / filename)

    result = shipyard(home, "model", "import", str(model), "--name", "digits")

    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"imported digits:1 from {framework} ("), result.stdout
    assert "check passed: max |diff|" in lines[0]
    assert result.stderr.strip() == ""  # no library's log lines (TensorFlow's among them)
    manifest = _manifest(home, "digits")
    assert manifest["framework"] == framework
    check = manifest["check"]
    assert isinstance(check, dict) and check["passed"] and check["source"] == "generated"
    assert check["max_abs_diff"] is not None and check["max_abs_diff"] <= 1e-4

"""Importing the same model twice (as `make demo` run again does) adds no version; --new-version does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.models import digits_linear


def shipyard(home: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SHIPYARD_HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_same_model_again_is_the_same_version(tmp_path: Path) -> None:
    model = tmp_path / "digits.onnx"
    model.write_bytes(digits_linear().onnx_bytes)
    home = tmp_path / "home"
    assert "imported digits:1" in shipyard(home, "model", "import", str(model), "--name", "digits")
    again = shipyard(home, "model", "import", str(model), "--name", "digits")
    assert again.startswith("digits:1 already holds this model") and "--new-version" in again
    forced = shipyard(home, "model", "import", str(model), "--name", "digits", "--new-version")
    assert "imported digits:2" in forced
    other = tmp_path / "other.onnx"
    other.write_bytes(digits_linear(seed=1).onnx_bytes)
    assert "imported digits:3" in shipyard(home, "model", "import", str(other), "--name", "digits")
    registry = Registry.open(Settings(home=home))
    assert registry.model("digits").versions == (1, 2, 3)
    registry.close()

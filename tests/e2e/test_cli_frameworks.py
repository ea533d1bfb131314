"""`model import` names the framework as the user does: a TorchScript file is imported from torchscript,
whether `--framework torchscript` says so or its suffix does, and the manifest and history agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import torch


def shipyard(home: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == code, result.stderr
    return result


def _torchscript(path: Path) -> Path:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in torch 2.x
        torch.jit.save(torch.jit.trace(mlp, torch.zeros(2, 64)), str(path))
    return path


def test_a_torchscript_file_is_imported_from_torchscript(tmp_path: Path) -> None:
    home = tmp_path / "home"
    told = _torchscript(tmp_path / "mlp.bin")  # a suffix that says nothing: --framework does
    out = shipyard(
        home,
        "model",
        "import",
        str(told),
        "--name",
        "mlp",
        "--framework",
        "torchscript",
        "--input-shape",
        "1,64",
    ).stdout
    assert out.startswith("imported mlp:1 from torchscript (")
    manifest = json.loads(shipyard(home, "model", "show", "mlp", "--json").stdout)
    assert manifest["framework"] == "torchscript"
    assert "from torchscript" in shipyard(home, "model", "history", "mlp").stdout

    by_suffix = _torchscript(tmp_path / "mlp.pt")
    out = shipyard(
        home, "model", "import", str(by_suffix), "--name", "by-suffix", "--input-shape", "1,64"
    ).stdout
    assert out.startswith("imported by-suffix:1 from torchscript (")


def test_a_framework_not_offered_is_a_usage_error_naming_the_choices(tmp_path: Path) -> None:
    model = _torchscript(tmp_path / "mlp.pt")
    wrong = shipyard(tmp_path, "model", "import", str(model), "--name", "mlp", "--framework", "jax", code=2)
    assert "--framework" in wrong.stderr and "'onnx', 'torchscript', 'sklearn'" in wrong.stderr

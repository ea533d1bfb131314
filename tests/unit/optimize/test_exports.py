"""shipyard.optimize's public names, and that importing it (or the CLI) loads no training framework."""

from __future__ import annotations

import subprocess
import sys

import shipyard.optimize


def test_exported_members() -> None:
    assert sorted(shipyard.optimize.__all__) == [
        "Candidate",
        "Dataset",
        "METHODS",
        "METRICS",
        "Model",
        "Options",
        "Outcome",
        "Report",
        "Timing",
        "Verdict",
        "compare",
        "compare_models",
        "judge",
        "load_data",
        "optimize",
    ]
    assert sorted(shipyard.optimize.METHODS) == ["distill", "dynamic-int8", "fp16", "prune", "static-int8"]
    assert sorted(shipyard.optimize.METRICS) == ["accuracy", "mse", "top-5"]


def test_optimize_imports_torch_only_for_the_methods_that_train() -> None:
    code = (
        "import sys, shipyard.optimize, shipyard.cli.optimize\n"
        "from shipyard.optimize.methods import get_method\n"
        "[get_method(m) for m in ('dynamic-int8', 'static-int8', 'fp16', 'prune', 'distill')]\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'PIL', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

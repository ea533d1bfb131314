"""The drift core's public surface, and the rule that it does no web and no I/O."""

from __future__ import annotations

import subprocess
import sys

from shipyard.monitor import drift, features, profile, window


def test_exported_members() -> None:
    assert sorted(features.__all__) == ["CHANNEL_WIDTHS", "Features", "MAX_COLUMNS", "feature_matrix"]
    assert sorted(profile.__all__) == [
        "BINS",
        "GRID",
        "Marginal",
        "Profile",
        "bin_shares",
        "build_profile",
        "ecdf",
        "infer_score_kind",
    ]
    assert sorted(window.__all__) == ["CAPACITY", "SlidingWindow", "Snapshot", "UNSCORED"]
    assert sorted(drift.__all__) == [
        "DriftMonitor",
        "DriftReport",
        "EPSILON",
        "FeatureDrift",
        "Thresholds",
        "ks",
        "psi",
        "score_window",
    ]
    for module in (features, profile, window, drift):
        for name in module.__all__:
            assert hasattr(module, name)


def test_the_drift_core_imports_no_web_database_runtime_or_scipy() -> None:
    code = (
        "import sys, shipyard.monitor.drift\n"
        "banned = ('fastapi', 'starlette', 'grpc', 'sqlalchemy', 'onnxruntime', 'sklearn', 'scipy',"
        " 'torch')\n"
        "print(sorted(m for m in banned if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

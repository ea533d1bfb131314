"""`shipyard export` as a user runs it: the report it prints, the folder it writes, the history line,
and one clear line for each mistake."""

from __future__ import annotations

import json
from pathlib import Path

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import register_digits
from tests.e2e.test_cli_pipeline import shipyard


def test_export_for_ort_mobile_and_its_mistakes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    registry = Registry.open(Settings(home=home))
    register_digits(registry)
    gate = {"passed": False, "metric": "accuracy", "drop": 0.2, "max_drop": 0.01}
    register_digits(registry, lineage={"method": "dynamic-int8", "parent": "digits:1", "gate": gate})
    registry.set_alias("digits", 1, "production")
    registry.close()

    out = tmp_path / "phone"
    printed = shipyard(home, "export", "digits:production", "--target", "ort-mobile", "--out", str(out))
    lines = printed.splitlines()
    assert lines[0].startswith("exported digits:1 (sha256 ") and lines[0].endswith(f"for ort-mobile to {out}")
    assert "max |diff|" in lines[2] and "top-1 agreement 100%" in lines[2]
    assert json.loads((out / "shipyard-export.json").read_text())["version"] == 1
    assert "export" in shipyard(home, "model", "history", "digits")

    refused = shipyard(
        home, "export", "digits:2", "--target", "ort-mobile", "--out", str(tmp_path / "b"), ok=False
    )
    assert refused == (
        "error: digits:2 failed its optimize gate (accuracy drop 0.2, bound 0.01): only a version that "
        "passed is exported (--force exports it anyway)"
    )
    assert not (tmp_path / "b").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    taken = shipyard(
        home, "export", "digits", "--target", "ort-mobile", "--out", str(tmp_path / "mine"), ok=False
    )
    assert taken == f"error: {tmp_path / 'mine'} is not empty and holds no export: give a new --out folder"
    unknown = shipyard(
        home, "export", "nope", "--target", "ort-mobile", "--out", str(tmp_path / "c"), ok=False
    )
    assert unknown == "error: no model named 'nope'"

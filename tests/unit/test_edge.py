"""Edge export (shipyard/edge/), with the ort-mobile target: the check against the server's graph,
the manifest, the history, gates that refuse, and an export that never leaves a half-written folder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from shipyard.edge import MANIFEST, TARGETS, Built, Options, Ran, export
from shipyard.edge.checks import inputs
from shipyard.edge.ort_mobile import OrtMobile
from shipyard.errors import Conflict, ConversionFailed, InvalidInput
from shipyard.importing import import_onnx
from shipyard.registry import Registry
from tests.conftest import register_digits
from tests.models import digits_linear, picture_cnn

RECIPE = "image: resize=40, center_crop=32, normalize=imagenet"


def test_an_ort_export_computes_what_the_server_computes(registry: Registry, tmp_path: Path) -> None:
    record = register_digits(registry)
    out = tmp_path / "phone"
    report = export(registry, "digits", "ort-mobile", out)
    assert sorted(p.name for p in out.iterdir()) == ["model.ort", "required_operators.config", MANIFEST]
    assert report.check.max_abs_diff <= 1e-5 and report.check.top1 == 1.0
    assert "Gemm" in report.operators or "com.microsoft:FusedGemm" in report.operators
    manifest = json.loads((out / MANIFEST).read_text())
    assert (manifest["model"], manifest["version"], manifest["sha256"]) == ("digits", 1, record.sha256)
    assert manifest["target"] == "ort-mobile" and manifest["check"]["max_abs_diff"] <= 1e-5
    assert manifest["files"]["model.ort"]["size"] == (out / "model.ort").stat().st_size
    session = ort.InferenceSession(str(out / "model.ort"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((3, 64), dtype=np.float32) * 16
    np.testing.assert_allclose(session.run(["logits"], {"input": x})[0], digits_linear().logits(x), atol=1e-4)
    events = [e for e in registry.history("digits") if e.kind == "export"]
    assert [e.version for e in events] == [1] and str(out) in events[0].detail


def test_a_picture_model_is_checked_on_decoded_pictures_and_int8_on_its_own_graph(
    registry: Registry, tmp_path: Path
) -> None:
    model = tmp_path / "cnn.onnx"
    model.write_bytes(picture_cnn())
    record = import_onnx(model, name="pets", preprocess=RECIPE, registry=registry)
    assert inputs(record.signature)["image"].shape == (6, 32, 32, 3)  # the sample pictures, decoded
    report = export(registry, "pets", "ort-mobile", tmp_path / "pets")
    assert report.check.samples == 6 and report.check.max_abs_diff <= 1e-4
    small = export(registry, "pets", "ort-mobile", tmp_path / "pets-int8", Options(int8=True))
    assert small.check.top1_version is not None and "com.microsoft:DynamicQuantizeMatMul" in small.operators
    assert json.loads((tmp_path / "pets-int8" / MANIFEST).read_text())["int8"] is True


def test_an_export_replaces_an_earlier_one_and_refuses_other_folders(
    registry: Registry, tmp_path: Path
) -> None:
    register_digits(registry)
    register_digits(registry)
    out = tmp_path / "exports" / "phone"
    export(registry, "digits:1", "ort-mobile", out)
    export(registry, "digits:2", "ort-mobile", out)
    assert json.loads((out / MANIFEST).read_text())["version"] == 2
    assert [p.name for p in out.parent.iterdir()] == ["phone"]  # nothing left beside it
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(Conflict, match="not empty and holds no export"):
        export(registry, "digits", "ort-mobile", taken)
    with pytest.raises(InvalidInput, match="unknown target 'coreml'"):
        export(registry, "digits", "coreml", tmp_path / "x")
    assert (taken / "notes.txt").read_text() == "mine"


def test_a_version_whose_gate_failed_needs_force(registry: Registry, tmp_path: Path) -> None:
    register_digits(registry)
    gate = {"passed": False, "metric": "accuracy", "drop": 0.2, "max_drop": 0.01, "forced": True}
    register_digits(registry, lineage={"method": "dynamic-int8", "parent": "digits:1", "gate": gate})
    with pytest.raises(
        Conflict, match=r"digits:2 failed its optimize gate \(accuracy drop 0.2, bound 0.01\)"
    ):
        export(registry, "digits:2", "ort-mobile", tmp_path / "a")
    assert not (tmp_path / "a").exists()
    registry.record("digits", "gate", 1, "", detail="failed against digits:2: accuracy drop 0.3 (bound 0.01)")
    with pytest.raises(Conflict, match="digits:1 failed its gate: failed against digits:2"):
        export(registry, "digits:1", "ort-mobile", tmp_path / "b")
    forced = export(registry, "digits:2", "ort-mobile", tmp_path / "a", Options(force=True))
    assert forced.forced is not None and "forced" in json.dumps(
        json.loads((tmp_path / "a" / MANIFEST).read_text())
    )
    assert "(forced)" in [e for e in registry.history("digits") if e.kind == "export"][-1].detail


class Drifting(OrtMobile):
    """ort-mobile, but its runtime answers a little off: what a broken converter would do."""

    def run(self, folder: Path, built: Built, feeds: dict[str, np.ndarray], outputs: list[str]) -> Ran:
        ran = super().run(folder, built, feeds, outputs)
        return replace(ran, outputs=[o + 0.01 for o in ran.outputs])


TARGET = Drifting()


def test_an_export_that_differs_is_refused_and_leaves_nothing(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_digits(registry)
    monkeypatch.setitem(TARGETS, "drifting", __name__)
    with pytest.raises(
        ConversionFailed, match=r"max \|diff\| 0.01 past the tolerance 0.0001, top-1 agreement 100%"
    ):
        export(registry, "digits", "drifting", tmp_path / "exports" / "phone")
    assert list((tmp_path / "exports").iterdir()) == []
    assert not [e for e in registry.history("digits") if e.kind == "export"]


def test_the_current_folder_is_no_export_folder(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_digits(registry)
    monkeypatch.chdir(tmp_path)
    for out in (Path("."), Path("..")):
        with pytest.raises(InvalidInput, match="holds the current folder"):
            export(registry, "digits", "ort-mobile", out)

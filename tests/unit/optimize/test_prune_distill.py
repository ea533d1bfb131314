"""prune (ONNX initializers, and fine-tuned from the PyTorch source) and distill, with the gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from shipyard.errors import InvalidInput
from shipyard.optimize import Options, optimize
from shipyard.registry import Registry, VersionRecord
from tests.unit.optimize.trained import QUICK, accuracy_of, cnn, images, mlp, split


def _weights(onnx_bytes: bytes) -> list[np.ndarray]:
    model = onnx.load_model_from_string(onnx_bytes)
    return [numpy_helper.to_array(i) for i in model.graph.initializer if len(i.dims) >= 2]


def _zeros(onnx_bytes: bytes) -> float:
    weights = _weights(onnx_bytes)
    return sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)


def test_prune_zeroes_the_smallest_weights_and_measures_the_sparsity(
    registry: Registry, digits_mlp: VersionRecord, files: dict[str, Path]
) -> None:
    outcome = optimize(
        registry, "digits", "prune", files["test"], options=Options(sparsity=0.3), timing=QUICK
    )
    assert outcome.record is not None
    before, after = _weights(registry.artifact(digits_mlp)), _weights(registry.artifact(outcome.record))
    for w, p in zip(before, after, strict=True):
        kept = p != 0
        assert abs(kept.mean() - 0.7) < 1 / w.size + 1e-9
        assert np.abs(w[~kept]).max() <= np.abs(w[kept]).min()  # the smallest went
        np.testing.assert_array_equal(p[kept], w[kept])
    report = outcome.report
    assert report.candidate.contents.sparsity == pytest.approx(_zeros(registry.artifact(outcome.record)))
    assert report.parent.contents.sparsity == 0.0
    s = split()
    assert report.candidate.metric == accuracy_of(registry.artifact(outcome.record), s.X_test, s.y_test)


def test_the_gate_refuses_absurd_sparsity_and_registers_nothing(
    registry: Registry, digits_mlp: VersionRecord, files: dict[str, Path]
) -> None:
    outcome = optimize(
        registry, "digits", "prune", files["test"], options=Options(sparsity=0.99), timing=QUICK
    )
    assert outcome.record is None and not outcome.verdict.passed
    assert outcome.verdict.drop == pytest.approx(
        outcome.report.parent.metric - outcome.report.candidate.metric
    )
    assert outcome.verdict.excess == pytest.approx(outcome.verdict.drop - 0.01)
    assert outcome.verdict.excess > 0.3
    assert "nothing registered" in outcome.verdict.message("digits:1")
    assert registry.model("digits").versions == (1,)


def test_force_registers_a_failing_candidate_marked_failing_with_its_lineage(
    registry: Registry, digits_mlp: VersionRecord, files: dict[str, Path]
) -> None:
    outcome = optimize(
        registry, "digits:1", "prune", files["test"], options=Options(sparsity=0.99), timing=QUICK, force=True
    )
    assert outcome.record is not None
    stored = registry.version("digits", outcome.record.number)
    assert stored.lineage is not None
    assert stored.lineage["parent"] == "digits:1" and stored.lineage["method"] == "prune"
    assert stored.lineage["parent_sha256"] == digits_mlp.sha256
    assert stored.lineage["options"] == {"sparsity": 0.99, "fine_tuned": False}
    assert stored.lineage["gate"]["status"] == "failing" and stored.lineage["gate"]["forced"]
    assert stored.report == outcome.report.to_dict()
    assert stored.labels == digits_mlp.labels
    assert "failing" in stored.description


def test_fine_tuning_from_the_torch_source_keeps_the_sparsity_and_wins_back_accuracy(
    registry: Registry, digits_mlp: VersionRecord, files: dict[str, Path], tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    torch.jit.save(torch.jit.script(mlp()), tmp_path / "mlp.pt")
    plain = optimize(
        registry, "digits:1", "prune", files["test"], options=Options(sparsity=0.8), timing=QUICK, force=True
    )
    tuned_options = Options(
        sparsity=0.8, torch_model=tmp_path / "mlp.pt", train=files["train"], epochs=4, learning_rate=1e-2
    )
    tuned = optimize(
        registry, "digits:1", "prune", files["test"], options=tuned_options, timing=QUICK, force=True
    )
    assert tuned.record is not None and tuned.record.framework == "pytorch"
    assert tuned.candidate.options["fine_tuned"] is True
    assert _zeros(registry.artifact(tuned.record)) >= 0.8 - 1e-3
    assert tuned.report.candidate.metric > plain.report.candidate.metric + 0.05
    # mlp() is the trained module itself: fine-tuning worked on a copy
    assert next(mlp().parameters()).count_nonzero() == next(mlp().parameters()).numel()


def test_fine_tuning_refuses_a_torch_model_that_is_not_the_version(
    registry: Registry, digits_mlp: VersionRecord, files: dict[str, Path], tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    other = torch.nn.Sequential(torch.nn.Linear(64, 10))
    torch.jit.save(torch.jit.script(other), tmp_path / "other.pt")
    options = Options(torch_model=tmp_path / "other.pt", train=files["train"])
    with pytest.raises(InvalidInput, match="does not compute what digits:1 computes"):
        optimize(registry, "digits", "prune", files["test"], options=options, timing=QUICK)
    with pytest.raises(InvalidInput, match="needs both --torch-model"):
        optimize(
            registry, "digits", "prune", files["test"], options=Options(train=files["train"]), timing=QUICK
        )


def test_distill_trains_a_quarter_width_student(
    registry: Registry, digits_mlp: VersionRecord, files: dict[str, Path]
) -> None:
    options = Options(train=files["train"], width=0.25, epochs=60, learning_rate=1e-2)
    outcome = optimize(
        registry, "digits", "distill", files["test"], options=options, timing=QUICK, max_drop=0.03
    )
    assert outcome.record is not None, outcome.verdict.message("digits")
    stored = registry.artifact(outcome.record)
    assert sorted(w.shape for w in _weights(stored)) == [(8, 64), (10, 8)]  # 32 hidden -> 8
    assert outcome.candidate.options["student"] == "64 -> 8 -> 10"
    assert outcome.record.signature == digits_mlp.signature
    s = split()
    assert outcome.report.candidate.metric == accuracy_of(stored, s.X_test, s.y_test)
    assert outcome.report.candidate.contents.parameters < outcome.report.parent.contents.parameters / 3


def test_distill_narrows_a_cnn_and_trains_a_given_student(
    registry: Registry, digits_cnn: VersionRecord, files: dict[str, Path], tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    options = Options(train=files["train_images"], width=0.5, epochs=3)
    narrowed = optimize(
        registry, "cnn", "distill", files["test_images"], options=options, timing=QUICK, force=True
    )
    assert narrowed.record is not None
    model = onnx.load_model_from_string(registry.artifact(narrowed.record))
    inits = {i.name: i for i in model.graph.initializer}
    convs = [tuple(inits[n.input[1]].dims) for n in model.graph.node if n.op_type == "Conv"]
    assert convs == [(4, 1, 3, 3), (8, 4, 3, 3)]  # cnn() has 8 and 16 channels

    given = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.jit.save(torch.jit.script(given), tmp_path / "student.pt")
    options = Options(train=files["train_images"], student=tmp_path / "student.pt", epochs=5)
    outcome = optimize(
        registry, "cnn:1", "distill", files["test_images"], options=options, timing=QUICK, force=True
    )
    assert outcome.candidate.options["student"] == "student.pt"
    s = split()
    stored = registry.artifact(outcome.record) if outcome.record else b""
    assert outcome.report.candidate.metric == accuracy_of(stored, images(s.X_test), s.y_test) > 0.5
    assert cnn() is not None

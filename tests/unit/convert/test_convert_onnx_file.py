"""Importing a model that is already ONNX: validation, a first run, and the signature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from shipyard.convert import from_onnx, run_onnx
from shipyard.errors import ConversionFailed, NotFound
from shipyard.signature import Scores, TensorSpec


def _classifier(softmax: bool = True) -> onnx.ModelProto:
    """x [n, 4] @ w [4, 3], then softmax when asked: a tiny stand-in for an exported classifier."""
    rng = np.random.default_rng(0)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], rng.standard_normal(12).tolist())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits" if softmax else "scores"])]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
        initializer=[weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    onnx.save(_classifier(), path)
    return path


def test_a_valid_file_imports_with_its_signature_and_scores(model_path: Path) -> None:
    converted = from_onnx(model_path)

    assert converted.framework == "onnx"
    assert converted.signature.inputs == (TensorSpec("x", "FP32", (-1, 4)),)
    assert converted.signature.outputs == (TensorSpec("scores", "FP32", (-1, 3)),)
    assert converted.signature.scores == Scores("scores", "probabilities")
    assert converted.check.passed and converted.check.source == "onnx.checker"
    assert converted.check.max_abs_diff is None
    assert converted.labels is None
    (scores,) = run_onnx(converted.onnx_bytes, {"x": np.ones((2, 4), np.float32)})
    assert scores.shape == (2, 3)


def test_bytes_import_and_a_sample_is_recorded_as_user_data() -> None:
    sample = np.random.default_rng(1).standard_normal((5, 4))  # float64: cast to the input's FP32

    converted = from_onnx(_classifier(softmax=False).SerializeToString(), sample=sample)

    assert converted.check.source == "user data" and converted.check.samples == 5
    assert converted.signature.scores == Scores("scores", "logits")


def test_a_sample_may_name_its_inputs(model_path: Path) -> None:
    converted = from_onnx(str(model_path), sample={"x": np.zeros((3, 4), np.float32)})

    assert converted.check.samples == 3


def test_a_sample_missing_an_input_is_refused(model_path: Path) -> None:
    with pytest.raises(ConversionFailed, match="sample lacks input"):
        from_onnx(model_path, sample={"y": np.zeros((3, 4), np.float32)})


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such file"):
        from_onnx(tmp_path / "absent.onnx")


def test_a_truncated_file_is_refused_with_one_line(model_path: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(model_path.read_bytes()[:60])

    with pytest.raises(ConversionFailed) as info:
        from_onnx(corrupt)

    assert "is not a valid ONNX model" in str(info.value)
    assert str(corrupt) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("data", [b"", b"not an onnx model at all", bytes(range(256)) * 4])
def test_bytes_that_are_not_onnx_are_refused(data: bytes) -> None:
    with pytest.raises(ConversionFailed, match="not a valid ONNX model"):
        from_onnx(data)


def test_a_graph_the_checker_rejects_is_refused() -> None:
    model = _classifier()
    model.graph.node[0].op_type = "NoSuchOperator"

    with pytest.raises(ConversionFailed, match="the ONNX checker rejects"):
        from_onnx(model.SerializeToString())


def test_a_graph_with_inconsistent_shapes_is_refused() -> None:
    model = _classifier()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 5  # w expects 4

    with pytest.raises(ConversionFailed, match="shape inference fails"):
        from_onnx(model.SerializeToString())

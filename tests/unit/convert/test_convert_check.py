"""The shared pieces of conversion: signatures from graphs, scores, generated inputs, the check."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper

from shipyard.convert import (
    CheckResult,
    compare,
    detect_scores,
    require_close,
    run_onnx,
    sample_inputs,
    signature_of,
)
from shipyard.errors import ConversionFailed
from shipyard.signature import Scores, Signature, TensorSpec


def _linear_model(initializer_as_input: bool = False) -> onnx.ModelProto:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, np.float32).tolist())
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])]
    if initializer_as_input:  # what exporters before IR version 4 wrote
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3]))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "linear",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        initializer=[weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _signature(*outputs: TensorSpec) -> Signature:
    return Signature(inputs=(TensorSpec("x", "FP32", (-1, 4)),), outputs=outputs)


def test_signature_of_reads_names_types_and_dynamic_dims() -> None:
    signature = signature_of(_linear_model())

    assert signature.inputs == (TensorSpec("x", "FP32", (-1, 4)),)
    assert signature.outputs == (TensorSpec("y", "FP32", (-1, 3)),)
    assert signature.scores is None


def test_signature_of_leaves_out_initializers_listed_as_inputs() -> None:
    signature = signature_of(_linear_model(initializer_as_input=True), Scores("y", "logits"))

    assert [spec.name for spec in signature.inputs] == ["x"]
    assert signature.scores == Scores("y", "logits")


def test_signature_of_refuses_outputs_that_are_not_tensors() -> None:
    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x"], ["seq"])],
        "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(ConversionFailed, match="'seq' is not a tensor"):
        signature_of(helper.make_model(graph))


def test_detect_scores_tells_probabilities_from_logits() -> None:
    signature = _signature(TensorSpec("out", "FP32", (-1, 3)))
    probabilities = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], np.float32)
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]], np.float32)

    assert detect_scores(signature, {"out": probabilities}) == Scores("out", "probabilities")
    assert detect_scores(signature, {"out": logits}) == Scores("out", "logits")


def test_detect_scores_prefers_an_output_named_like_probabilities() -> None:
    signature = _signature(
        TensorSpec("label", "INT64", (-1,)),
        TensorSpec("embedding", "FP32", (-1, 2)),
        TensorSpec("probabilities", "FP32", (-1, 2)),
    )
    outputs = {
        "label": np.array([1]),
        "embedding": np.array([[3.0, 4.0]], np.float32),
        "probabilities": np.array([[0.4, 0.6]], np.float32),
    }

    assert detect_scores(signature, outputs) == Scores("probabilities", "probabilities")


@pytest.mark.parametrize(
    "values",
    [np.ones((5, 1), np.float32), np.ones(5, np.float32), np.ones((5, 2, 2), np.float32)],
    ids=["regression", "rank-1", "rank-3"],
)
def test_detect_scores_finds_none_without_a_batch_by_classes_output(values: np.ndarray) -> None:
    signature = _signature(TensorSpec("out", "FP32", (-1,) * values.ndim))

    assert detect_scores(signature, {"out": values}) is None


def test_sample_inputs_fill_dynamic_dims_and_follow_dtypes() -> None:
    signature = Signature(
        inputs=(
            TensorSpec("pixels", "FP32", (-1, 3, -1)),
            TensorSpec("tokens", "INT64", (-1, 5)),
            TensorSpec("mask", "BOOL", (2,)),
        ),
        outputs=(),
    )

    inputs = sample_inputs(signature, batch=6)

    assert inputs["pixels"].shape == (6, 3, 1) and inputs["pixels"].dtype == np.float32
    assert inputs["tokens"].shape == (6, 5) and inputs["tokens"].dtype == np.int64
    assert inputs["tokens"].min() >= 0 and inputs["tokens"].max() <= 9
    assert inputs["mask"].dtype == np.bool_
    np.testing.assert_array_equal(sample_inputs(signature, 6)["pixels"], inputs["pixels"])


def test_sample_inputs_ask_for_a_sample_for_string_inputs() -> None:
    signature = Signature(inputs=(TensorSpec("text", "BYTES", (-1,)),), outputs=())

    with pytest.raises(ConversionFailed, match="pass a sample"):
        sample_inputs(signature)


def test_compare_passes_within_tolerance_and_reports_the_largest_difference() -> None:
    expected = {"a": np.zeros((2, 2)), "b": np.ones(3)}
    actual = {"a": np.full((2, 2), 2e-5), "b": np.ones(3) + 5e-5}

    result = compare(expected, actual, tolerance=1e-4, samples=2, source="generated")

    assert result.passed
    assert result.max_abs_diff == pytest.approx(5e-5)
    assert (result.tolerance, result.samples, result.source) == (1e-4, 2, "generated")


def test_compare_fails_when_outputs_differ() -> None:
    result = compare([np.zeros(4)], [np.array([0, 0, 0.31, 0])], 1e-4, 4, "user data")

    assert not result.passed
    assert result.max_abs_diff == pytest.approx(0.31)


def test_compare_fails_on_a_shape_mismatch_without_a_difference() -> None:
    result = compare([np.zeros((2, 3))], [np.zeros((3, 2))], 1e-4, 2, "generated")

    assert not result.passed and result.max_abs_diff is None


def test_require_close_names_the_output_the_difference_and_the_tolerance() -> None:
    expected = {"probabilities": np.ones((2, 2)), "logits": np.ones((2, 2))}
    actual = {"probabilities": np.ones((2, 2)), "logits": np.array([[1.0, 1.31], [1.0, 1.0]])}

    with pytest.raises(ConversionFailed) as info:
        require_close(expected, actual, 1e-4, 2, "generated")

    assert str(info.value) == ("numerical check failed: output 'logits' differs by 0.31 (tolerance 0.0001)")


def test_require_close_returns_the_result_when_it_passes() -> None:
    result = require_close([np.ones(3)], [np.ones(3)], 1e-4, 3, "generated")

    assert result == CheckResult(True, 0.0, 1e-4, 3, "generated")


@given(hnp.arrays(np.float32, hnp.array_shapes(max_dims=3), elements=st.floats(width=32)))
def test_compare_passes_any_array_against_itself(values: np.ndarray) -> None:
    result = compare([values], [values.copy()], 1e-6, 1, "generated")

    assert result.passed


def test_check_result_round_trips_through_json() -> None:
    result = CheckResult(False, 0.25, 1e-4, 8, "user data")

    assert CheckResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_run_onnx_runs_on_cpu_and_refuses_bad_inputs() -> None:
    model = _linear_model().SerializeToString()

    (y,) = run_onnx(model, {"x": np.ones((2, 4), np.float32)})

    np.testing.assert_array_equal(y, np.full((2, 3), 4.0, np.float32))
    with pytest.raises(ConversionFailed, match="onnxruntime cannot run the model"):
        run_onnx(model, {"x": np.ones((2, 5), np.float32)})

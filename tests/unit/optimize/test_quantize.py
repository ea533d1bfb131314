"""dynamic-int8, static-int8 and fp16 on small trained models: what the file holds, what the report
says, and that every figure in it matches what the test measures on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from shipyard.optimize import Options, optimize
from shipyard.registry import Registry, VersionRecord
from tests.unit.optimize.trained import QUICK, accuracy_of, images, split


def _initializers(onnx_bytes: bytes) -> dict[str, np.ndarray]:
    model = onnx.load_model_from_string(onnx_bytes)
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def test_dynamic_int8_stores_int8_weights_and_reports_measured_figures(
    registry: Registry, digits_mlp: VersionRecord, files: dict[str, Path]
) -> None:
    outcome = optimize(registry, "digits:1", "dynamic-int8", files["test"], timing=QUICK)
    record = outcome.record
    assert record is not None and record.number == 2
    stored = registry.artifact(record)
    parent_bytes = registry.artifact(digits_mlp)
    weights = [a for a in _initializers(stored).values() if a.ndim == 2]
    assert weights and all(a.dtype == np.int8 for a in weights)

    report = outcome.report
    assert report.parent.contents.size_bytes == len(parent_bytes) == digits_mlp.size
    assert report.candidate.contents.size_bytes == len(stored) == record.size
    assert report.size_ratio == len(parent_bytes) / len(stored) > 3.0
    s = split()
    assert report.parent.metric == accuracy_of(parent_bytes, s.X_test, s.y_test)
    assert report.candidate.metric == accuracy_of(stored, s.X_test, s.y_test)
    assert report.rows == len(s.X_test)
    assert report.drop <= 0.01 and outcome.verdict.passed
    assert report.parent.contents.parameters == 64 * 32 + 32 + 32 * 10 + 10 + 1  # + the constant 16
    speed = report.candidate.speed
    assert 0 < speed.p50_ms <= speed.p99_ms and speed.samples_per_s > 0

    session_out = _run(stored, s.X_test[:5])
    parent_out = _run(parent_bytes, s.X_test[:5])
    assert np.abs(session_out - parent_out).max() <= report.max_abs_diff


def test_static_int8_is_qdq_per_channel_calibrated_on_the_given_file(
    registry: Registry, digits_cnn: VersionRecord, files: dict[str, Path]
) -> None:
    options = Options(calibration=files["train_images"], calibration_rows=128)
    outcome = optimize(registry, "cnn", "static-int8", files["test_images"], options=options, timing=QUICK)
    assert outcome.record is not None
    stored = registry.artifact(outcome.record)
    model = onnx.load_model_from_string(stored)
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    inits = _initializers(stored)
    conv_weights = [node.input[1] for node in model.graph.node if node.op_type == "Conv"]
    dequantized = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for name in conv_weights:
        node = dequantized[name]
        assert inits[node.input[0]].dtype == np.int8
        assert inits[node.input[1]].size == inits[node.input[0]].shape[0]  # a scale per output channel
    assert outcome.candidate.options == {
        "calibration": "train-images.npz",
        "calibration_rows": 128,
        "per_channel": True,
        "reduce_range": True,
    }
    s = split()
    assert outcome.report.candidate.metric == accuracy_of(stored, images(s.X_test), s.y_test)
    assert outcome.report.drop <= 0.01


def test_fp16_keeps_float32_inputs_and_outputs(
    registry: Registry, digits_mlp: VersionRecord, files: dict[str, Path]
) -> None:
    outcome = optimize(registry, "digits", "fp16", files["test"], timing=QUICK)
    assert outcome.record is not None
    stored = registry.artifact(outcome.record)
    weights = [a for a in _initializers(stored).values() if a.ndim == 2]
    assert weights and all(a.dtype == np.float16 for a in weights)
    assert outcome.record.signature == digits_mlp.signature  # FP32 in and out, same names and shapes
    s = split()
    assert outcome.report.candidate.metric == accuracy_of(stored, s.X_test, s.y_test)
    assert 1.8 < outcome.report.size_ratio < 2.1
    assert 0 < outcome.report.max_abs_diff < 0.05


def _run(onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, {"input": X})[0]
    return out

"""Import a model that is already ONNX: validate it, prove it runs, and read its signature."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import onnx

from shipyard.convert.check import (
    ONNX_CHECKER,
    USER_DATA,
    Array,
    CheckResult,
    Converted,
    detect_scores,
    first_line,
    rows_of,
    run_onnx,
    sample_inputs,
    signature_of,
    user_inputs,
)
from shipyard.errors import ConversionFailed, NotFound


def from_onnx(source: str | Path | bytes, sample: Array | Mapping[str, Array] | None = None) -> Converted:
    """Validate an ONNX model and run it once on `sample` (or generated data) to prove it runs.

    There is no source framework to compare against, so the check records what was proven: the
    checker passed and onnxruntime ran it, on the caller's data where given.
    """
    model = _load(source)
    _check_model(model, "the data" if isinstance(source, bytes) else str(source))
    onnx_bytes = model.SerializeToString()
    signature = signature_of(model)
    inputs = user_inputs(signature, sample) if sample is not None else sample_inputs(signature)
    outputs = run_onnx(onnx_bytes, inputs)
    named = {spec.name: out for spec, out in zip(signature.outputs, outputs, strict=True)}
    scores = detect_scores(signature, named)
    check = CheckResult(
        passed=True,
        max_abs_diff=None,
        tolerance=0.0,
        samples=rows_of(inputs),
        source=USER_DATA if sample is not None else ONNX_CHECKER,
    )
    return Converted(
        onnx_bytes=onnx_bytes,
        signature=signature_of(model, scores),
        framework="onnx",
        check=check,
        labels=None,
    )


def _load(source: str | Path | bytes) -> onnx.ModelProto:
    if isinstance(source, bytes):
        return _parse(source, "the data")
    path = Path(source)
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    try:
        # onnx.load also pulls in external data files stored next to the model
        return onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError, or OSError for missing external data
        raise ConversionFailed(f"{path} is not a valid ONNX model: {_why(exc)}") from exc


def _parse(data: bytes, what: str) -> onnx.ModelProto:
    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError, whose module has no type stubs
        raise ConversionFailed(f"{what} is not a valid ONNX model: {_why(exc)}") from exc


def _check_model(model: onnx.ModelProto, what: str) -> None:
    # protobuf parses many random byte strings into an empty message without complaint
    if not model.graph.node and not model.graph.output:
        raise ConversionFailed(f"{what} is not a valid ONNX model: it has an empty graph")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConversionFailed(f"the ONNX checker rejects {what}: {first_line(exc)}") from exc
    try:
        # full_check adds strict shape inference, which catches inconsistent graphs early
        onnx.checker.check_model(model, full_check=True)
    except onnx.shape_inference.InferenceError as exc:
        raise ConversionFailed(f"ONNX shape inference fails on {what}: {first_line(exc)}") from exc
    except onnx.checker.ValidationError:
        pass  # the plain check passed; the full one can trip on ops it lacks schemas for


def _why(exc: Exception) -> str:
    if type(exc).__name__ == "DecodeError":
        return "it cannot be parsed"
    return first_line(exc)

"""Pieces every converter shares: reading a signature, generating inputs, and the numerical check.

A conversion is only trusted when the ONNX model gives the same numbers as its source on the same
inputs, so each converter ends by calling `require_close` and records the `CheckResult` it returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from shipyard import customops
from shipyard.datatypes import ONNX_TO_V2, numpy_dtype
from shipyard.errors import ConversionFailed
from shipyard.signature import ScoreKind, Scores, Signature, TensorSpec

Array = npt.NDArray[Any]
Arrays = Mapping[str, Array] | Sequence[Array]
# What a version was converted from: "pytorch" for a module given in Python, "torchscript" for a file
Framework = Literal[
    "onnx",
    "pytorch",
    "torchscript",
    "sklearn",
    "pipeline",
    "keras",
    "tensorflow",
    "xgboost",
    "lightgbm",
    "catboost",
]

GENERATED = "generated"
USER_DATA = "user data"
ONNX_CHECKER = "onnx.checker"

_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
_ROW_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class CheckResult:
    """How a conversion was verified; stored in the version's manifest so the proof travels with it."""

    passed: bool
    max_abs_diff: float | None  # None: nothing compared, shapes differ, or a difference is inf/NaN
    tolerance: float
    samples: int
    source: str  # "user data", "generated" or "onnx.checker"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        diff = data.get("max_abs_diff")
        return cls(
            passed=bool(data["passed"]),
            max_abs_diff=None if diff is None else float(diff),
            tolerance=float(data["tolerance"]),
            samples=int(data["samples"]),
            source=str(data["source"]),
        )


@dataclass(frozen=True)
class Converted:
    """An ONNX model ready to register, with what was learned about it on the way."""

    onnx_bytes: bytes
    signature: Signature
    framework: Framework
    check: CheckResult
    labels: list[str] | None = None  # class labels found in the source, e.g. sklearn's classes_


def real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph's inputs a caller feeds: older exporters list initializers among the inputs too."""
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def dims(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    """A tensor's shape, -1 for a dimension without a fixed size."""
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)


def signature_of(model: onnx.ModelProto, scores: Scores | None = None) -> Signature:
    """The graph's real inputs (initializers excluded) and outputs, with -1 for unknown dims."""
    inputs = tuple(_spec(v) for v in real_inputs(model))
    outputs = tuple(_spec(v) for v in model.graph.output)
    return Signature(inputs=inputs, outputs=outputs, scores=scores)


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    if value.type.WhichOneof("value") != "tensor_type":
        raise ConversionFailed(
            f"'{value.name}' is not a tensor (it is a {value.type.WhichOneof('value')}); "
            "shipyard serves models whose inputs and outputs are tensors"
        )
    tensor = value.type.tensor_type
    datatype = ONNX_TO_V2.get(tensor.elem_type)
    if datatype is None:
        type_name = onnx.TensorProto.DataType.Name(tensor.elem_type)
        raise ConversionFailed(f"'{value.name}' has element type {type_name}, which is not supported")
    shape = dims(value)
    return TensorSpec(value.name, datatype, shape)


def detect_scores(signature: Signature, outputs: Mapping[str, Array]) -> Scores | None:
    """Which output holds class scores and whether they are already probabilities.

    Judged from real outputs rather than names alone: a [batch, classes] float output whose rows are
    in [0, 1] and sum to 1 is probabilities; any other such output is logits; anything else (a
    regressor, an embedding of rank 3) has no scores.
    """
    floats = [spec.name for spec in signature.outputs if spec.datatype in _FLOAT_TYPES]
    named = [name for name in floats if "prob" in name.lower()]
    candidates = named or floats
    if not candidates or candidates[0] not in outputs:
        return None
    name = candidates[0]
    values = np.asarray(outputs[name])
    if values.ndim != 2 or values.shape[1] < 2 or values.dtype.kind != "f":
        return None
    return Scores(name, _score_kind(values))


def _score_kind(values: Array) -> ScoreKind:
    if not np.all(np.isfinite(values)):
        return "logits"
    in_range = bool(np.all((values >= 0.0) & (values <= 1.0)))
    sums = values.astype(np.float64).sum(axis=1)
    if in_range and bool(np.all(np.abs(sums - 1.0) <= _ROW_SUM_TOLERANCE)):
        return "probabilities"
    return "logits"


def sample_inputs(signature: Signature, batch: int = 8, seed: int = 0) -> dict[str, Array]:
    """Random inputs that fit the signature: `batch` rows along a dynamic first axis, 1 elsewhere."""
    rng = np.random.default_rng(seed)
    return {spec.name: _sample(spec, batch, rng) for spec in signature.inputs}


def _sample(spec: TensorSpec, batch: int, rng: np.random.Generator) -> Array:
    shape = tuple(dim if dim >= 0 else (batch if axis == 0 else 1) for axis, dim in enumerate(spec.shape))
    dtype = numpy_dtype(spec.datatype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 10, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    raise ConversionFailed(
        f"cannot generate data for {spec.datatype} input '{spec.name}'; pass a sample to check it"
    )


def rows_of(inputs: Mapping[str, Array]) -> int:
    """How many samples a set of inputs holds: the first input's first axis."""
    first = next(iter(inputs.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


def user_inputs(
    signature: Signature, sample: Array | Mapping[str, Array] | Sequence[Array]
) -> dict[str, Array]:
    """A caller's sample as named inputs of the declared dtypes (numpy defaults to float64)."""
    names = [spec.name for spec in signature.inputs]
    if isinstance(sample, Mapping):
        missing = [name for name in names if name not in sample]
        if missing:
            raise ConversionFailed(f"sample lacks input(s) {', '.join(missing)}")
        arrays = [sample[name] for name in names]
    elif isinstance(sample, np.ndarray):
        arrays = [sample]
    else:
        arrays = list(sample)
    if len(arrays) != len(names):
        raise ConversionFailed(
            f"the model has {len(names)} inputs ({', '.join(names)}); the sample has {len(arrays)}"
        )
    return {
        spec.name: np.asarray(array).astype(numpy_dtype(spec.datatype), copy=False)
        for spec, array in zip(signature.inputs, arrays, strict=True)
    }


def run_onnx(onnx_bytes: bytes, inputs: Mapping[str, Array]) -> list[Array]:
    """Run the model once on CPU, the provider every machine has, so checks agree everywhere."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise
    customops.register(options, onnx_bytes, "check")  # a tokenizer's ops, as the server registers them
    try:
        session = ort.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        return list(session.run(None, dict(inputs)))
    except Exception as exc:  # ORT raises its own unexported exception types
        raise ConversionFailed(f"onnxruntime cannot run the model: {first_line(exc)}") from exc


def _named(arrays: Arrays) -> dict[str, Array]:
    if isinstance(arrays, Mapping):
        return {name: np.asarray(a) for name, a in arrays.items()}
    return {f"output_{i}": np.asarray(a) for i, a in enumerate(arrays)}


def _check_outputs(
    expected: Arrays, actual: Arrays, tolerance: float
) -> list[tuple[str, float | None, str | None]]:
    """Per output, in order: its name, max abs difference, and why it fails (None if it passes)."""
    want, got = _named(expected), _named(actual)
    if len(want) != len(got):
        return [("*", None, f"expected {len(want)} outputs, got {len(got)}")]
    return [
        (name, *_check_output(a, b, tolerance))
        for (name, a), b in zip(want.items(), got.values(), strict=True)
    ]


def _check_output(expected: Array, actual: Array, tolerance: float) -> tuple[float | None, str | None]:
    if expected.shape != actual.shape:
        return None, f"has shape {list(actual.shape)} instead of {list(expected.shape)}"
    a, b = expected.astype(np.float64), actual.astype(np.float64)
    if a.size == 0:
        return 0.0, None
    with np.errstate(invalid="ignore"):  # inf - inf; such equal values count as no difference
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        diff = np.where(same, 0.0, np.abs(a - b))
    worst = float(np.max(diff))
    max_diff = worst if np.isfinite(worst) else None
    # rtol as well as atol: large outputs (regressors) keep float32's relative precision
    if bool(np.all(np.isclose(b, a, rtol=tolerance, atol=tolerance, equal_nan=True))):
        return max_diff, None
    return max_diff, f"differs by {worst:.3g} (tolerance {tolerance:g})"


def compare(expected: Arrays, actual: Arrays, tolerance: float, samples: int, source: str) -> CheckResult:
    """Compare source outputs with ONNX outputs, in order; a pass needs every value within tolerance.

    A value passes when |actual - expected| <= tolerance * (1 + |expected|), so large outputs keep
    float32's relative precision. max_abs_diff is None where shapes differ or a difference is not
    finite (NaN or inf on one side only).
    """
    checks = _check_outputs(expected, actual, tolerance)
    passed = all(why is None for _, _, why in checks)
    diffs = [diff for _, diff, _ in checks]
    max_diff = None if None in diffs else max((d for d in diffs if d is not None), default=0.0)
    return CheckResult(passed, max_diff, tolerance, samples, source)


def require_close(
    expected: Arrays, actual: Arrays, tolerance: float, samples: int, source: str
) -> CheckResult:
    """`compare`, refusing the conversion with a message that names the first output that differs."""
    for name, _, why in _check_outputs(expected, actual, tolerance):
        if why is not None:
            what = why if name == "*" else f"output '{name}' {why}"
            raise ConversionFailed(f"numerical check failed: {what}")
    return compare(expected, actual, tolerance, samples, source)


def first_line(exc: BaseException) -> str:
    """The first line of an error from a library, for one-line messages."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

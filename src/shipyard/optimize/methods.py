"""What every optimization method takes and gives, and the table of methods.

A method turns a source version into a candidate ONNX model. It knows nothing of the registry or
the gate: `pipeline.optimize` measures the candidate against its parent and decides. Methods are
looked up by name and imported on first use, so torch is loaded only by the methods that train.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from shipyard.convert.check import signature_of
from shipyard.datasets import Dataset
from shipyard.errors import InvalidInput
from shipyard.optimize import graph
from shipyard.optimize.measure import Progress
from shipyard.signature import Signature

CHECK_ROWS = 64


@dataclass(frozen=True)
class Source:
    """The version being optimized, and the evaluation data (calibration falls back on a sample of it)."""

    ref: str
    onnx_bytes: bytes
    signature: Signature
    labels: list[str] | None
    framework: str
    data: Dataset


@dataclass(frozen=True)
class Options:
    """Every method's knobs; each method reads its own and records them in the lineage."""

    sparsity: float = 0.5
    calibration: Path | None = None
    calibration_rows: int = 256
    per_channel: bool = True
    reduce_range: bool = True
    """7-bit weights: x86 CPUs without VNNI saturate uint8 x int8 products (4 points of accuracy lost
    on a small CNN here); with 7 bits they cannot, at no cost in speed."""
    train: Path | None = None
    torch_model: Path | None = None
    student: Path | None = None
    width: float = 0.25
    epochs: int | None = None
    temperature: float = 4.0
    learning_rate: float | None = None
    batch_size: int = 64
    label_column: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class Candidate:
    onnx_bytes: bytes
    signature: Signature
    framework: str
    check: dict[str, Any]
    options: dict[str, Any]  # what the lineage records: the options this method used


MethodFn = Callable[[Source, Options, Progress], Candidate]

# name -> module under shipyard.optimize whose `run` implements it
METHODS = {
    "dynamic-int8": "quantize_dynamic",
    "static-int8": "quantize_static",
    "fp16": "fp16",
    "prune": "prune",
    "distill": "distill",
}


def get_method(name: str) -> MethodFn:
    module = METHODS.get(name)
    if module is None:
        raise InvalidInput(f"unknown method {name!r}: use {', '.join(METHODS)}")
    run: MethodFn = importlib.import_module(f"shipyard.optimize.{module}").run
    return run


def finish(
    model: onnx.ModelProto,
    source: Source,
    options: dict[str, Any],
    *,
    framework: str | None = None,
    check: dict[str, Any] | None = None,
) -> Candidate:
    """Compact the candidate, prove it is valid ONNX that runs on the data, and read its signature."""
    from shipyard.convert.onnx_file import from_onnx

    model = graph.compact(model)
    onnx_bytes = model.SerializeToString()
    sample = {name: array[:CHECK_ROWS] for name, array in source.data.inputs.items()}
    converted = from_onnx(onnx_bytes, sample=sample)
    scores = source.signature.scores
    keeps_scores = scores is not None and converted.signature.output(scores.output) is not None
    signature = signature_of(model, scores) if keeps_scores else converted.signature
    return Candidate(
        onnx_bytes=onnx_bytes,
        signature=signature,
        framework=framework or source.framework,
        check=check or converted.check.to_dict(),
        options=options,
    )


def load_model(source: Source) -> onnx.ModelProto:
    return onnx.load_model_from_string(source.onnx_bytes)


def need(value: Any, flag: str, method: str) -> None:
    if value is None:
        raise InvalidInput(f"{method} needs {flag}")

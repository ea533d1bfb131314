"""The friendly API: ``{"input": [...]}`` in, ``{"class": "7", "confidence": 0.97}`` out.

Inputs are samples without the batch axis; outputs are read through the signature's scores and the
version's labels (shipyard/scoring.py: softmax applied when the model gives logits).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from shipyard import scoring
from shipyard.datatypes import numpy_dtype
from shipyard.errors import InvalidInput
from shipyard.protocol.v2 import loads
from shipyard.scoring import Scored
from shipyard.signature import ScoreKind, Signature, TensorSpec, format_shape


def decode_predict(body: bytes, signature: Signature) -> tuple[dict[str, np.ndarray], bool]:
    """Named batch inputs for a one-input model, and whether the caller sent one sample."""
    doc = loads(body)
    if not isinstance(doc, dict) or ("input" in doc) == ("inputs" in doc):
        raise InvalidInput('request must be {"input": [...]} for one sample or {"inputs": [...]}')
    if len(signature.inputs) != 1:
        names = ", ".join(spec.name for spec in signature.inputs)
        raise InvalidInput(
            f"/predict serves models with one input; this one has {names}: use /v2 infer instead"
        )
    spec = signature.inputs[0]
    single = "input" in doc
    samples = [doc["input"]] if single else doc["inputs"]
    if not isinstance(samples, list) or not samples:
        raise InvalidInput("'inputs' must be a non-empty list of samples")
    return {spec.name: _batch(spec, samples)}, single


def _batch(spec: TensorSpec, samples: list[Any]) -> np.ndarray:
    dtype = numpy_dtype(spec.datatype)
    if spec.datatype == "BYTES":
        dtype = np.dtype(object)
    try:
        arrays = [np.asarray(sample, dtype=dtype) for sample in samples]
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"input {spec.name!r}: samples must be lists of numbers") from None
    sample_shape = spec.shape[1:] if spec.batched else spec.shape
    fixed = all(d >= 0 for d in sample_shape)
    out = []
    for i, array in enumerate(arrays):
        if fixed and array.shape != tuple(sample_shape) and array.size == math.prod(sample_shape):
            array = array.reshape(sample_shape)  # a flat list is fine when the size is right
        if len(array.shape) != len(sample_shape) or any(
            want not in (-1, got) for want, got in zip(sample_shape, array.shape, strict=True)
        ):
            which = f"input {spec.name!r}" if len(arrays) == 1 else f"sample {i}"
            raise InvalidInput(
                f"{which}: expected shape {format_shape(sample_shape)}, got {format_shape(array.shape)} "
                "(one sample, without the batch axis)"
            )
        out.append(array)
    if not spec.batched:
        if len(out) != 1:
            raise InvalidInput("this model takes one sample at a time")
        return out[0]
    try:
        return np.stack(out)
    except ValueError:
        raise InvalidInput("all samples must have the same shape") from None


def predictions(
    output: np.ndarray,
    *,
    kind: ScoreKind | None,
    labels: list[str] | None,
    top_k: int = 0,
    scored: Scored | None = None,
) -> list[dict[str, Any]]:
    """One dict per sample: class and confidence for classifiers, the raw prediction otherwise.
    `scored`: the scores already read (scoring.read of `output` as [samples, classes]), so that the
    caller reads them once for this answer and for the monitor."""
    if kind is None:
        return [{"prediction": row} for row in output.tolist()]
    if scored is None:
        scored = scoring.read(output.reshape(-1, output.shape[-1]), kind)
    ranked = scoring.top(scored.probabilities, top_k).tolist() if top_k > 0 else None
    results = []
    for i, (index, confidence) in enumerate(
        zip(scored.predicted.tolist(), scored.confidence.tolist(), strict=True)
    ):
        item: dict[str, Any] = {"class": scoring.label(index, labels), "confidence": round(confidence, 6)}
        if ranked is not None:
            row = scored.probabilities[i]
            item["top_k"] = [
                {"class": scoring.label(j, labels), "confidence": round(float(row[j]), 6)} for j in ranked[i]
            ]
        results.append(item)
    return results

"""The friendly API: ``{"input": [...]}`` in, ``{"class": "7", "confidence": 0.97}`` out.

Inputs are samples without the batch axis: numbers, a sentence for a text model, a row by column name
for a tabular model that knows its columns (Signature.features). A model that takes pictures (an image
recipe) takes them as the body itself (content-type image/*), as files of a multipart upload, or as
base64 text in JSON. Outputs are read through the signature's scores and the version's labels
(shipyard/scoring.py: softmax or sigmoid applied as declared), a regression's with its unit.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from shipyard import scoring
from shipyard.datatypes import numpy_dtype
from shipyard.errors import InvalidInput
from shipyard.protocol.uploads import file_parts
from shipyard.protocol.v2 import loads
from shipyard.scoring import Scored
from shipyard.signature import ScoreKind, Signature, TensorSpec, format_shape


def decode_predict(
    body: bytes, signature: Signature, content_type: str = ""
) -> tuple[dict[str, np.ndarray], bool]:
    """Named batch inputs for a one-input model, and whether the caller sent one sample."""
    media = content_type.partition(";")[0].strip().lower()
    if media.startswith(PICTURES) or (
        signature.preprocess is not None and media != "application/json" and body.lstrip()[:1] != b"{"
    ):  # a picture model also takes a picture sent with curl's default content-type
        return _pictures(body, signature, content_type, media)
    doc = loads(body)  # whatever else it says: curl -d says form-urlencoded for JSON
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
    if signature.features is not None:
        samples = [_by_name(sample, signature.features) for sample in samples]
    elif spec.datatype == "BYTES":
        samples = [_unwrapped(sample, signature.preprocess is None) for sample in samples]
    return {spec.name: _batch(spec, samples)}, single


PICTURES = ("image/", "multipart/form-data", "application/octet-stream")
"""Content-types of bodies that hold pictures, not JSON."""


def _pictures(
    body: bytes, signature: Signature, content_type: str, media: str
) -> tuple[dict[str, np.ndarray], bool]:
    """A body of pictures: the picture itself, or the files of a multipart upload."""
    spec = signature.inputs[0]
    if signature.preprocess is None or len(signature.inputs) != 1:
        raise InvalidInput(f'this model takes JSON ({{"input": [...]}}), not {media}: it has no image recipe')
    files = file_parts(body, content_type) if media == "multipart/form-data" else [body]
    if not files[0] and len(files) == 1:
        raise InvalidInput("the body is empty: send the picture's bytes")
    batch = np.empty(len(files), dtype=object)
    batch[:] = files
    return {spec.name: batch}, media != "multipart/form-data" or len(files) == 1


def _by_name(sample: Any, features: tuple[str, ...]) -> Any:
    """A row given by column name ({"age": 42, ...}) in the model's column order; a list as it is."""
    if not isinstance(sample, dict):
        return sample
    missing = [name for name in features if name not in sample]
    if missing:
        shown = ", ".join(map(repr, missing[:8])) + (", ..." if len(missing) > 8 else "")
        raise InvalidInput(f"missing column(s) {shown}: the model takes {', '.join(features)}")
    if len(sample) != len(features):
        unknown = [name for name in sample if name not in features]
        raise InvalidInput(
            f"unknown column(s) {', '.join(map(repr, unknown[:8]))}: the model takes {', '.join(features)}"
        )
    return [sample[name] for name in features]


def _unwrapped(sample: Any, decode: bool) -> Any:
    """Text or base64 as it is; {"b64": "..."} (KServe v1's form) as its bytes when `decode`, else as
    its base64 text (a picture model's server decodes that itself)."""
    if isinstance(sample, dict) and set(sample) == {"b64"} and isinstance(sample["b64"], str):
        if not decode:
            return sample["b64"]
        try:
            return base64.b64decode(sample["b64"], validate=True)
        except binascii.Error:
            raise InvalidInput('a {"b64": ...} sample holds text that is not base64') from None
    return sample


def _batch(spec: TensorSpec, samples: list[Any]) -> np.ndarray:
    dtype = numpy_dtype(spec.datatype)
    if spec.datatype == "BYTES":
        dtype = np.dtype(object)
    try:
        arrays = [np.asarray(sample, dtype=dtype) for sample in samples]
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"input {spec.name!r}: samples must be lists of numbers") from None
    if spec.datatype == "BYTES" and not all(isinstance(v, str | bytes) for a in arrays for v in a.flat):
        raise InvalidInput(f"input {spec.name!r}: samples must be strings (text, or base64 of a picture)")
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
    threshold: float | None = None,
    unit: str | None = None,
) -> list[dict[str, Any]]:
    """One dict per sample: class and confidence for classifiers (and, multi-label, every class
    whose probability reaches `threshold`), the raw prediction otherwise (a single value as a number,
    with its `unit` when declared). `scored`: the scores already read (scoring.read of `output` as
    [samples, classes]), so that the caller reads them once for this answer and for the monitor."""
    if kind is None:
        if unit is None:
            return [{"prediction": row} for row in output.tolist()]
        rows = output.reshape(len(output), -1).tolist() if output.ndim else [[output.item()]]
        return [{"prediction": row[0] if len(row) == 1 else row, "unit": unit} for row in rows]
    if scored is None:
        scored = scoring.read(output.reshape(-1, output.shape[-1]), kind)
    ranked = scoring.top(scored.probabilities, top_k).tolist() if top_k > 0 else None
    results = []
    for i, (index, confidence) in enumerate(
        zip(scored.predicted.tolist(), scored.confidence.tolist(), strict=True)
    ):
        item: dict[str, Any] = {"class": scoring.label(index, labels), "confidence": round(confidence, 6)}
        if threshold is not None:
            row = scored.probabilities[i]
            item["classes"] = [
                {"class": scoring.label(j, labels), "confidence": round(float(row[j]), 6)}
                for j in np.argsort(-row, kind="stable").tolist()
                if row[j] >= threshold
            ]
        if ranked is not None:
            row = scored.probabilities[i]
            item["top_k"] = [
                {"class": scoring.label(j, labels), "confidence": round(float(row[j]), 6)} for j in ranked[i]
            ]
        results.append(item)
    return results

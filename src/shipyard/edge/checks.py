"""The check of an export: the same inputs through the server's graph (ONNX Runtime on the CPU) and
through the target's runtime, compared by max abs diff and, for classifiers, top-1 agreement."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from shipyard.errors import ConversionFailed
from shipyard.processing import graph_inputs, pixels, recipe_of, samples
from shipyard.signature import Signature

ROWS = 8


@dataclass(frozen=True)
class Check:
    samples: int
    max_abs_diff: float
    tolerance: float
    top1: float | None
    """The share of rows whose top class is the server's (classifiers only)."""
    top1_version: float | None = None
    """With int8 weights: the share of rows whose top class is the version's own (fp32) one."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inputs(signature: Signature) -> dict[str, np.ndarray]:
    """What the graph takes, as the server gives it: pictures of several sizes and kinds decoded as the
    server decodes them, else random rows that fit the signature."""
    from shipyard.convert.check import sample_inputs

    graph = Signature(graph_inputs(signature), signature.outputs)
    texts = [spec for spec in graph.inputs if spec.datatype == "BYTES"]
    found = sample_inputs(
        Signature(tuple(s for s in graph.inputs if s not in texts), graph.outputs), batch=ROWS
    )
    for spec in texts:
        found[spec.name] = _sentences(spec.shape)
    recipe = recipe_of(signature)
    if recipe is not None:
        found[recipe.input] = np.stack([pixels(p, recipe, i) for i, p in enumerate(samples.pictures())])
    return found


SENTENCES = ("a great film", "Loved every minute, a clever story!", "boring", "", "x y z", "the end")


def _sentences(shape: tuple[int, ...]) -> np.ndarray:
    """Text for a BYTES input: a sentence a row (its other axes 1 long)."""
    rows = np.empty((len(SENTENCES), *(1 for _ in shape[1:])), dtype=object)
    rows.reshape(len(SENTENCES))[:] = SENTENCES
    return rows


def reference(onnx_bytes: bytes, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    """The server's answer: the stored graph on ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    from shipyard import customops

    options = ort.SessionOptions()
    options.log_severity_level = 3
    customops.register(options, onnx_bytes, "export")
    try:
        session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        return list(session.run(outputs, feeds))
    except Exception as exc:  # ORT raises its own unexported types
        from shipyard.convert.check import first_line

        raise ConversionFailed(
            f"ONNX Runtime cannot run the version on the check's inputs: {first_line(exc)}"
        ) from None


def compare(
    expected: list[np.ndarray],
    got: list[np.ndarray],
    names: list[str],
    signature: Signature,
    tolerance: float,
) -> Check:
    """The figures of the check; ConversionFailed, with them, when an output differs past `tolerance`."""
    worst = 0.0
    for name, want, have in zip(names, expected, got, strict=True):
        have = np.asarray(have)
        if have.size != want.size:
            raise ConversionFailed(
                f"the export's output {name!r} has shape {list(have.shape)}, the server's {list(want.shape)}"
            )
        have = have.reshape(want.shape)
        if want.dtype.kind in "fiu":
            diff = float(np.max(np.abs(want.astype(np.float64) - have.astype(np.float64)), initial=0.0))
        else:
            diff = 0.0 if np.array_equal(want, have) else float("inf")
        worst = max(worst, diff if np.isfinite(diff) else float("inf"))
    top1 = None
    scores = signature.scores
    if scores is not None and scores.output in names:
        at = names.index(scores.output)
        want, have = expected[at], np.asarray(got[at]).reshape(expected[at].shape)
        top1 = float(np.mean(want.argmax(axis=-1) == have.argmax(axis=-1)))
    check = Check(len(next(iter(expected))) if expected else 0, worst, tolerance, top1)
    if not worst <= tolerance * (
        1 + max((float(np.max(np.abs(e))) for e in expected if e.dtype.kind == "f"), default=0.0)
    ):
        agreement = "" if top1 is None else f", top-1 agreement {top1:.0%}"
        raise ConversionFailed(
            f"the export computes other numbers than the server: max |diff| {worst:.3g} past the tolerance "
            f"{tolerance:g}{agreement}; nothing was written"
        )
    return check


def with_agreement(
    check: Check, own: list[np.ndarray], got: list[np.ndarray], names: list[str], signature: Signature
) -> Check:
    """`check` with the top-1 agreement of the export with the version's own graph."""
    scores = signature.scores
    if scores is None or scores.output not in names:
        return check
    at = names.index(scores.output)
    agreement = float(
        np.mean(own[at].argmax(axis=-1) == np.asarray(got[at]).reshape(own[at].shape).argmax(axis=-1))
    )
    return replace(check, top1_version=agreement)


def operators(onnx_bytes: bytes) -> list[str]:
    """The graph's operators, most used first (domain-qualified outside the default domain)."""
    import onnx

    model = onnx.load_model_from_string(onnx_bytes)
    counts = Counter(f"{n.domain}:{n.op_type}" if n.domain else n.op_type for n in model.graph.node)
    return [op for op, _ in counts.most_common()]

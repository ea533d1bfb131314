"""Post-processing declared at import, not coded: how /predict reads a model's outputs.

    softmax | probabilities | sigmoid | multilabel [, threshold=0.5] [, top_k=3] [, output=NAME]
    regression [, unit=EUR] [, output=NAME]

softmax: the output holds logits of one class a row; probabilities: it holds the probabilities already;
sigmoid: one logit per class of a multi-label model, each read on its own, and every class whose
probability reaches the threshold is predicted; multilabel: the same for an output of probabilities.
regression: the output is a value, answered with its unit. What is declared is stored on the signature
(Signature.scores, Signature.unit), so the manifest says it and every server reads it the same way.
"""

from __future__ import annotations

import math
from dataclasses import replace

from shipyard.errors import InvalidInput
from shipyard.signature import ScoreKind, Scores, Signature, TensorSpec

KINDS: dict[str, ScoreKind | None] = {
    "softmax": "logits",
    "logits": "logits",
    "probabilities": "probabilities",
    "sigmoid": "sigmoid",
    "multilabel": "probabilities",
    "regression": None,
}
_OPTIONS = {"threshold", "top_k", "output", "unit"}
_FLOATS = ("FP16", "FP32", "FP64")


def apply(signature: Signature, text: str) -> Signature:
    """`signature` reading its outputs as `text` declares; InvalidInput naming what does not fit."""
    head, *rest = [part.strip() for part in text.split(",")]
    reading = head.lower()
    if reading not in KINDS:
        raise InvalidInput(f"bad --postprocess {text!r}: it starts with one of {', '.join(KINDS)}")
    options = _options(rest)
    output = _output(signature, options.get("output"), reading)
    if reading == "regression":
        if output.name != signature.outputs[0].name:
            raise InvalidInput(
                f"regression answers with the model's first output, {signature.outputs[0].name!r}; "
                f"output={output.name} cannot be answered"
            )
        for key in ("threshold", "top_k"):
            if key in options:
                raise InvalidInput(f"--postprocess regression takes unit= and output=, not {key}=")
        return replace(signature, scores=None, unit=options.get("unit"))
    if "unit" in options:
        raise InvalidInput("unit= is for regression outputs")
    multilabel = reading in ("sigmoid", "multilabel")
    if "threshold" in options and not multilabel:
        raise InvalidInput("threshold= is for multi-label outputs (sigmoid or multilabel)")
    threshold = _threshold(options.get("threshold", "0.5")) if multilabel else None
    if not multilabel and output.shape and output.shape[-1] == 1:
        raise InvalidInput(f"output {output.name!r} holds one value a row: use sigmoid or regression")
    kind = KINDS[reading]
    assert kind is not None
    scores = Scores(output.name, kind, threshold, _top_k(options.get("top_k", "0")))
    return replace(signature, scores=scores, unit=None)


def describe(signature: Signature) -> str | None:
    """How /predict reads the outputs, in the recipe's words (`model show`); None for raw outputs."""
    scores = signature.scores
    if scores is None:
        return f"regression, unit={signature.unit}" if signature.unit else None
    name = {"logits": "softmax", "probabilities": "probabilities", "sigmoid": "sigmoid"}[scores.kind]
    if scores.threshold is not None and scores.kind == "probabilities":
        name = "multilabel"
    parts = [name, f"output={scores.output}"]
    if scores.threshold is not None:
        parts.append(f"threshold={scores.threshold:g}")
    if scores.top_k:
        parts.append(f"top_k={scores.top_k}")
    return ", ".join(parts)


def _options(items: list[str]) -> dict[str, str]:
    options = {}
    for item in filter(None, items):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not value.strip():
            raise InvalidInput(f"bad --postprocess option {item!r}: expected key=value")
        if key not in _OPTIONS:
            raise InvalidInput(f"unknown --postprocess option {key!r}: {', '.join(sorted(_OPTIONS))}")
        options[key] = value.strip()
    return options


def _output(signature: Signature, name: str | None, reading: str) -> TensorSpec:
    if name is not None:
        spec = signature.output(name)
        if spec is None:
            names = ", ".join(signature.output_names)
            raise InvalidInput(f"unknown output {name!r}: the model's outputs are {names}")
    elif signature.scores is not None:
        spec = signature.output(signature.scores.output)
    else:
        floats = [s for s in signature.outputs if s.datatype in _FLOATS] or list(signature.outputs)
        spec = floats[0] if floats else None
    if spec is None:
        raise InvalidInput("the model has no outputs to read")
    if spec.datatype not in _FLOATS and reading != "regression":
        raise InvalidInput(f"output {spec.name!r} holds {spec.datatype}: class scores are floats")
    return spec


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise InvalidInput(f"bad threshold {text!r}: a probability between 0 and 1")
    return value


def _top_k(text: str) -> int:
    if not text.isdigit() or int(text) > 1000:
        raise InvalidInput(f"bad top_k {text!r}: a whole number from 0 to 1000")
    return int(text)

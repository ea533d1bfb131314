"""Feedback bodies, and what a label may be: the true class of an earlier prediction, or its true value.

A classifier's label must be one of its classes: a label of the version (a JSON number is compared by
its text, so 7 names the class "7"), or else an integer class index within range. A model without class
scores (a regressor) takes numbers. Anything else is refused, so a typo or a stranger's vocabulary
never counts as a wrong answer and drags live accuracy down.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from shipyard.errors import InvalidInput
from shipyard.registry import VersionRecord

MAX_ITEMS = 10_000
SHOWN_LABELS = 10
"""Labels named in an error before the rest is cut short."""

Label = str | int | float
"""A label as sent: text, or a JSON number."""


def decode_feedback(body: bytes) -> list[tuple[str, Label]]:
    """`{"id": "...", "label": "7"}` or a list of those -> [(id, label)], or a 400 naming the problem.

    Labels stay as sent (text or number): whether they fit is the version's business (`read_label`)."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"feedback is not JSON: {exc}") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise InvalidInput("feedback is an empty list")
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"feedback has {len(items)} items; send at most {MAX_ITEMS} at once")
    out = []
    for i, item in enumerate(items):
        where = f"feedback item {i}" if isinstance(doc, list) else "feedback"
        if not isinstance(item, dict) or set(item) - {"id", "label"} or not {"id", "label"} <= set(item):
            raise InvalidInput(f'{where} must be {{"id": "<prediction id>", "label": "<true class>"}}')
        request_id, label = item["id"], item["label"]
        if not isinstance(request_id, str) or not request_id:
            raise InvalidInput(f"{where}: id must be a non-empty string")
        if isinstance(label, bool) or not isinstance(label, str | int | float):
            raise InvalidInput(f"{where}: label must be a string (or a class index, or a number)")
        out.append((request_id, label))
    return out


def class_names(record: VersionRecord) -> list[str] | None:
    """The classes a label may name, None for a model without class scores (labels are numbers then).

    Without labels in the record, classes are named by their index, as predictions name them."""
    scores = record.signature.scores
    if scores is None:
        return None
    if record.labels:
        return list(record.labels)
    spec = record.signature.output(scores.output)
    count = spec.shape[-1] if spec is not None and spec.shape else -1
    return [str(i) for i in range(count)] if count > 0 else []


def read_label(label: Label, classes: list[str] | None) -> str | float:
    """The class a label names (`classes` from class_names), or the number it is for a regressor; a 400
    otherwise. An empty `classes` (a classifier whose class count is unknown) takes any class index."""
    if classes is None:
        value = _number(label)
        if value is None:
            raise InvalidInput(f"label {label!r} is not a number: this model predicts values, not classes")
        return value
    text = str(label)
    if text in classes:
        return text
    index = _index(label)
    if index is not None and (index < len(classes) or not classes):
        return classes[index] if classes else str(index)
    raise InvalidInput(f"label {label!r} is not one of the model's classes: {_allowed(classes)}")


def _number(label: Label) -> float | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _index(label: Label) -> int | None:
    if isinstance(label, int):
        return label if label >= 0 else None
    if isinstance(label, str) and label.isascii() and label.isdigit() and len(label) <= 18:
        return int(label)
    return None


def _allowed(classes: list[str]) -> str:
    if not classes:
        return "a class index"
    shown = ", ".join(repr(c) for c in classes[:SHOWN_LABELS])
    more = f", ... ({len(classes)} in all)" if len(classes) > SHOWN_LABELS else ""
    return f"{shown}{more}, or a class index from 0 to {len(classes) - 1}"


__all__ = ["MAX_ITEMS", "Label", "class_names", "decode_feedback", "read_label"]

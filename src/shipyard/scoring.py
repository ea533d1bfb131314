"""Reading class scores: the one place that works out softmax, the predicted class, its confidence and
its label, for the friendly API, the monitor and the optimize report alike.

A classifier's scores (signature.Scores) are probabilities or logits; logits go through softmax first.
The confidence of a prediction is the top probability. `read()` reads a batch of rows at once, so each
batch is read once and what is read is passed on (the monitor's confidence histogram and its drift
window share one read). `read_row()` reads one row in plain Python: for the usual single request of
ten classes, numpy's cost per call would be most of the work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shipyard.signature import ScoreKind

Prediction = tuple[str | None, float | None]
"""(class label, confidence) of one row; None where the row cannot say."""


@dataclass(frozen=True, slots=True, eq=False)
class Scored:
    """A batch of class scores, read."""

    kind: ScoreKind
    """How the scores were read: "logits" went through softmax, "sigmoid" through sigmoid."""
    probabilities: np.ndarray
    """[rows, classes], float64."""
    predicted: np.ndarray
    """[rows]: the index of each row's top probability."""
    confidence: np.ndarray
    """[rows]: that top probability."""

    def rows(self, index: np.ndarray) -> Scored:
        """The rows at `index`, read as these were."""
        return Scored(self.kind, self.probabilities[index], self.predicted[index], self.confidence[index])

    def labelled(self, labels: Sequence[str] | None) -> list[Prediction]:
        """(label, confidence) per row; a confidence that is not finite is None."""
        return [
            (label(best, labels), c if math.isfinite(c) else None)
            for best, c in zip(self.predicted.tolist(), self.confidence.tolist(), strict=True)
        ]


def softmax(x: np.ndarray) -> np.ndarray:
    """Probabilities from logits along the last axis (shifted by the maximum: no overflow)."""
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Each logit's own probability (multi-label models), without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.asarray(np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))


def probabilities_of(scores: np.ndarray, kind: ScoreKind) -> np.ndarray:
    """Class probabilities from scores as `kind` says (float64)."""
    s = np.asarray(scores, dtype=np.float64)
    return softmax(s) if kind == "logits" else sigmoid(s) if kind == "sigmoid" else s


def read(scores: np.ndarray, kind: ScoreKind) -> Scored:
    """Read class scores of shape [rows, classes] (taken as float64)."""
    probabilities = probabilities_of(scores, kind)
    predicted = probabilities.argmax(axis=-1)
    confidence = probabilities[np.arange(len(probabilities)), predicted]
    return Scored(kind, probabilities, predicted, confidence)


def best(scores: np.ndarray, kind: ScoreKind) -> tuple[np.ndarray, np.ndarray]:
    """The predicted class and its confidence of each row of class scores [rows, classes], without the
    other probabilities: the top one of a softmax is 1 / sum(exp(x - max)). For batch jobs, where the
    whole matrix of probabilities would be most of the work."""
    predicted = scores.argmax(axis=-1)
    top = np.take_along_axis(scores, predicted[:, None], axis=-1)
    if kind == "logits":
        confidence = 1.0 / np.exp(scores - top, dtype=np.float64).sum(axis=-1)
    elif kind == "sigmoid":
        confidence = sigmoid(top[:, 0].astype(np.float64))
    else:
        confidence = top[:, 0].astype(np.float64)
    return predicted, np.asarray(confidence)


def read_row(values: Sequence[float], kind: ScoreKind) -> tuple[int, float] | None:
    """The predicted class and its confidence of one row of scores, in plain Python; None when the
    row is empty or holds a score that is not finite."""
    if not values or not all(math.isfinite(v) for v in values):
        return None
    best = max(range(len(values)), key=values.__getitem__)
    top = values[best]
    if kind == "logits":
        confidence = 1.0 / sum(math.exp(v - top) for v in values)
    elif kind == "sigmoid":
        confidence = 1.0 / (1.0 + math.exp(-top)) if top >= 0 else math.exp(top) / (1.0 + math.exp(top))
    else:
        confidence = top
    return best, confidence


def predictions(scores: np.ndarray, kind: ScoreKind, labels: Sequence[str] | None) -> list[Prediction]:
    """(label, confidence) of each row of class scores [rows, ...]. One row is read in plain Python, and
    gives (None, None) when a score is not finite; more rows are read at once (Scored.labelled)."""
    if len(scores) == 1:
        found = read_row(scores.reshape(-1).tolist(), kind)
        return [(None, None)] if found is None else [(label(found[0], labels), found[1])]
    return read(scores.reshape(len(scores), -1), kind).labelled(labels)


class ClassOf:
    """A version's classes, read only when asked: the log reads the (class, confidence) of the rows it
    keeps, and feedback names the class of a prediction from its top index (`top_indexes`)."""

    __slots__ = ("kind", "labels")

    def __init__(self, kind: ScoreKind, labels: Sequence[str] | None) -> None:
        self.kind, self.labels = kind, labels

    def read_all(self, rows: Sequence[np.ndarray | None]) -> list[Prediction]:
        """(class, confidence) of each row of class scores, (None, None) for anything else (None, other
        dtypes, a score that is not finite); rows of one shape are read together, as one batch."""
        found: list[Prediction] = [(None, None)] * len(rows)
        for indexes, stacked in _stacked(rows):
            finite = np.isfinite(stacked).all(axis=1).tolist()
            read_ = read(stacked, self.kind).labelled(self.labels)
            for i, ok, prediction in zip(indexes, finite, read_, strict=True):
                if ok:
                    found[i] = prediction
        return found

    def name(self, index: int | None) -> str | None:
        """The class of a top index (None: the prediction has none)."""
        return None if index is None else label(index, self.labels)


def top_indexes(scores: np.ndarray) -> list[int | None]:
    """The index of each row's top score, for a batch of class scores (a row per prediction); None for
    a row with a score that is not finite (as read_row). This is all a prediction keeps for feedback,
    so it is read for a whole flush at once."""
    if not len(scores):
        return []
    flat = scores.reshape(len(scores), -1)
    best: list[int | None] = flat.argmax(axis=1).tolist()
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            best[i] = None
    return best


def _stacked(rows: Sequence[np.ndarray | None]) -> list[tuple[Sequence[int], np.ndarray]]:
    """The rows that are class scores (floats, at least two), stacked by shape: (their indexes in
    `rows`, [n, classes]). The usual flush, a [1, classes] row of one dtype each, is one concatenate
    rather than a Python step per row."""
    try:
        floats = {row.dtype.kind for row in rows} == {"f"}  # type: ignore[union-attr]
        together: np.ndarray = np.concatenate(rows) if floats else np.empty(0)  # type: ignore[arg-type]
    except (AttributeError, ValueError, TypeError):  # a None, rows of other shapes or of no shape
        pass
    else:
        if floats and together.ndim == 2 and len(together) == len(rows):
            return [(range(len(rows)), together)] if together.shape[1] >= 2 else []
    shapes: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(rows):
        if row is not None and row.dtype.kind == "f" and row.size >= 2:
            shapes.setdefault(row.shape, []).append(i)
    return [
        (indexes, np.stack([rows[i] for i in indexes]).reshape(len(indexes), -1))  # type: ignore[misc]
        for indexes in shapes.values()
    ]


def is_class_scores(scores: np.ndarray) -> bool:
    """Whether a batch of outputs reads as class scores: floats, at least two per sample."""
    return scores.dtype.kind == "f" and scores.ndim >= 2 and scores[:1].size >= 2


def top(scores: np.ndarray, k: int) -> np.ndarray:
    """The indices of the `k` highest scores along the last axis, highest first (ties: lower index first)."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def label(index: int, labels: Sequence[str] | None) -> str:
    """A class's name: its label when the version has one, else its index."""
    return labels[index] if labels and index < len(labels) else str(index)

"""The metrics a candidate is judged by, and how raw targets become what each metric compares.

A table, not branches: each metric knows which way is better, so the gate reads "drop" the same
way for accuracy (lower is worse) and mean squared error (higher is worse).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.errors import InvalidInput

Array = npt.NDArray[Any]


def _accuracy(scores: Array, targets: Array) -> float:
    predicted = scores if scores.ndim == 1 else scores.reshape(len(scores), -1).argmax(axis=1)
    return float(np.mean(predicted.astype(np.int64) == targets))


def _top5(scores: Array, targets: Array) -> float:
    if scores.ndim != 2:
        raise InvalidInput("top-5 needs class scores of shape [batch, classes]")
    k = min(5, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == targets[:, None], axis=1)))


def _mse(outputs: Array, targets: Array) -> float:
    predicted = outputs.reshape(len(outputs), -1).astype(np.float64)
    wanted = targets.reshape(len(targets), -1).astype(np.float64)
    if predicted.shape != wanted.shape:
        raise InvalidInput(
            f"mse compares outputs of {predicted.shape[1]} values per row with targets of {wanted.shape[1]}"
        )
    return float(np.mean((predicted - wanted) ** 2))


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    classes: bool  # targets are class indices (else numbers to regress)
    compute: Callable[[Array, Array], float]

    def drop(self, parent: float, candidate: float) -> float:
        """How much worse the candidate is, in the metric's units; negative when it is better."""
        return parent - candidate if self.higher_is_better else candidate - parent


METRICS = {
    "accuracy": Metric("accuracy", True, True, _accuracy),
    "top-5": Metric("top-5", True, True, _top5),
    "mse": Metric("mse", False, False, _mse),
}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise InvalidInput(f"unknown metric {name!r}: use {', '.join(METRICS)}") from None


def targets_for(
    metric: Metric, y: Array, labels: Sequence[str] | None, classes: Sequence[str] | None = None
) -> Array:
    """Class indices (through the model's labels, else `classes`' order) or float regression targets."""
    if not metric.classes:
        if y.dtype == object:
            raise InvalidInput(f"{metric.name} needs numeric targets, got names such as {y[0]!r}")
        return y.astype(np.float64)
    if y.dtype != object:
        if not np.all(np.mod(y, 1) == 0):
            raise InvalidInput(f"{metric.name} needs class targets; got non-integer values such as {y[0]}")
        return y.astype(np.int64)
    for order in (labels, classes):
        if order and set(y) <= set(order):
            index = {name: i for i, name in enumerate(order)}
            return np.asarray([index[v] for v in y], dtype=np.int64)
    try:
        return np.asarray([int(v) for v in y], dtype=np.int64)
    except ValueError:
        known = set(labels or classes or [])
        unknown = sorted(set(y) - known)[:3]
        raise InvalidInput(
            f"targets {', '.join(map(repr, unknown))} are not among the model's labels"
            + ("" if labels else " (the model has no labels: import it with --labels)")
        ) from None

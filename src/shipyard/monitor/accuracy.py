"""Live accuracy from feedback: the latest labelled predictions of a version, one label per prediction.

A second label for a prediction id replaces the first, so the same id posted again (or 11,000 times)
moves that one prediction between right and wrong and never weighs more than once. The window keeps the
`capacity` latest labelled ids; an id labelled again after it left the window counts as new.

Feedback is joined on a worker thread while the event loop reads these figures, so a lock guards each
step; both are a few dict operations.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

Outcome = bool | None
"""Whether the prediction was right; None when there is nothing to compare (no predicted class: a
model without class scores, or a request that asked for other outputs)."""


@dataclass(frozen=True)
class Accuracy:
    """The window's figures at one moment."""

    value: float | None
    """Share of right predictions among the judged ones; None before any."""
    labelled: int
    """Prediction ids labelled since the server started, each counted once while in the window."""
    window: int
    """Judged predictions the value is read on (right + wrong)."""
    correct: int
    wrong: int
    replaced: int
    """Labels that replaced an earlier one for the same id."""


class FeedbackWindow:
    """The outcome of the latest `capacity` labelled prediction ids; safe to share between threads."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._outcomes: OrderedDict[str, Outcome] = OrderedDict()
        self._correct = self._wrong = self._labelled = self._replaced = 0
        self.ever = [0, 0]
        """[right, wrong] of every labelled prediction since the start, each as its latest label says
        (a rollout's accuracy gate judges these: they never forget, the window does)."""
        self._lock = threading.Lock()

    def add(self, prediction_id: str, outcome: Outcome) -> bool:
        """Record a prediction's outcome; True when the id is new, False when it replaced a label."""
        with self._lock:
            outcomes = self._outcomes
            new = prediction_id not in outcomes
            if new:
                self._labelled += 1
            else:
                old = outcomes.pop(prediction_id)
                self._count(old, -1)
                self._ever(old, -1)
                self._replaced += 1
            outcomes[prediction_id] = outcome
            self._count(outcome, 1)
            self._ever(outcome, 1)
            if len(outcomes) > self.capacity:
                self._count(outcomes.popitem(last=False)[1], -1)
            return new

    def _count(self, outcome: Outcome, step: int) -> None:
        if outcome is True:
            self._correct += step
        elif outcome is False:
            self._wrong += step

    def _ever(self, outcome: Outcome, step: int) -> None:
        if outcome is not None:
            self.ever[0 if outcome else 1] += step

    def figures(self) -> Accuracy:
        with self._lock:
            correct, wrong = self._correct, self._wrong
            judged = correct + wrong
            return Accuracy(
                correct / judged if judged else None, self._labelled, judged, correct, wrong, self._replaced
            )


__all__ = ["Accuracy", "FeedbackWindow", "Outcome"]

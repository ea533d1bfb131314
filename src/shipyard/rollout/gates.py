"""The online gates: is the candidate doing as well as production on the traffic of this step?

Both versions are judged on what they answered since the step began (`Figures`, summed over every
serving process, minus the marks taken when the step began), side by side:

    agreement    as a shadow, its top class must be production's on `min_agreement` of the rows at least
    errors       the candidate's error rate may exceed production's by `max_error_increase` at most
    latency      its p99 may be `max_p99_ratio` times production's at most
    confidence   its mean confidence may move `max_confidence_shift` from production's at most
    drift        its inputs must not have drifted from its own reference profile
    accuracy     from feedback: the 95% interval of (candidate - production) accuracy must lie above
                 -`accuracy_margin` to pass; below it, it fails; across it, the evidence is too thin

Each gate says pass, fail, or wait (too little evidence: fewer than `min_requests` answers, or
`min_labels` labels, on either side). A gate without anything to judge (no feedback at all, no
reference profile) is skipped. A rollout moves on only when no gate fails or waits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.monitor.series import EDGES_MS

PASS, FAIL, WAIT, SKIP = "pass", "fail", "wait", "skip"
Z95 = 1.959964


@dataclass(frozen=True)
class GateSettings:
    min_agreement: float = 0.9
    max_error_increase: float = 0.01
    max_p99_ratio: float = 1.5
    max_confidence_shift: float = 0.1
    accuracy_margin: float = 0.02
    min_requests: int = 100
    min_labels: int = 30

    def __post_init__(self) -> None:
        for name in ("min_agreement", "max_error_increase", "max_confidence_shift", "accuracy_margin"):
            if not 0 <= getattr(self, name) <= 1:
                raise InvalidInput(f"the gate setting {name} must be from 0 to 1, not {getattr(self, name)}")
        if not self.max_p99_ratio >= 1:
            raise InvalidInput(f"the gate setting max_p99_ratio must be 1 or more, not {self.max_p99_ratio}")
        if self.min_requests < 1 or self.min_labels < 1:
            raise InvalidInput("the gate settings min_requests and min_labels must be 1 or more")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> GateSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise InvalidInput(f"unknown gate setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        found = dict(doc)
        for name in ("min_requests", "min_labels"):  # counts: 30.0 from JSON is 30, 30.5 is a mistake
            value = found.get(name)
            if isinstance(value, float):
                if not value.is_integer():
                    raise InvalidInput(f"the gate setting {name} is a count, not {value}")
                found[name] = int(value)
        return cls(**found)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Figures:
    """What a version answered, as counts that only grow (rollout/evidence.py reports them)."""

    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(EDGES_MS) + 1))
    correct: int = 0
    wrong: int = 0
    confidence_sum: float = 0.0
    confidence_n: int = 0
    drifted: bool = False
    compared: int = 0
    """Rows answered as a shadow beside production's answer, and those with the same top class."""
    agreed: int = 0

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Figures:
        return cls(**{f.name: doc[f.name] for f in fields(cls) if f.name in doc})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.requests + other.requests,
            self.errors + other.errors,
            [a + b for a, b in zip(self.latency, other.latency, strict=True)],
            self.correct + other.correct,
            self.wrong + other.wrong,
            self.confidence_sum + other.confidence_sum,
            self.confidence_n + other.confidence_n,
            self.drifted or other.drifted,
            self.compared + other.compared,
            self.agreed + other.agreed,
        )

    def since(self, mark: Figures) -> Figures:
        """What came after `mark` (a process that went away takes its counts with it: never below 0)."""
        return Figures(
            max(0, self.requests - mark.requests),
            max(0, self.errors - mark.errors),
            [max(0, a - b) for a, b in zip(self.latency, mark.latency, strict=True)],
            max(0, self.correct - mark.correct),
            max(0, self.wrong - mark.wrong),
            max(0.0, self.confidence_sum - mark.confidence_sum),
            max(0, self.confidence_n - mark.confidence_n),
            self.drifted,
            max(0, self.compared - mark.compared),
            max(0, self.agreed - mark.agreed),
        )

    @property
    def answered(self) -> int:
        return self.requests + self.errors

    @property
    def error_rate(self) -> float:
        return self.errors / self.answered if self.answered else 0.0

    @property
    def labels(self) -> int:
        return self.correct + self.wrong

    def p99_ms(self) -> float | None:
        total = sum(self.latency)
        if not total:
            return None
        seen = 0
        for i, count in enumerate(self.latency):
            seen += count
            if seen >= 0.99 * total and count:
                return EDGES_MS[min(i, len(EDGES_MS) - 1)]
        return EDGES_MS[-1]


@dataclass(frozen=True)
class Gate:
    name: str
    outcome: str
    """pass, fail, wait or skip."""
    figures: str
    """What was measured, as a person reads it: `candidate 2.1% vs production 0.4% (bound +1%)`."""


def judge(production: Figures, candidate: Figures, settings: GateSettings, kind: str = "split") -> list[Gate]:
    """Every gate on the evidence of one step of `kind`: a shadow step is judged on agreeing with
    production instead of on feedback (a shadow's answers get none); an A/B step's accuracy is its
    finding at the end (`variants`), not a gate."""
    if kind == "shadow":
        accuracy = Gate("accuracy", SKIP, "a shadow's answers get no feedback")
    elif kind == "ab":
        accuracy = Gate("accuracy", SKIP, "the A/B experiment's finding, at its end")
    else:
        accuracy = _accuracy(production, candidate, settings)
    return [
        _agreement(candidate, settings) if kind == "shadow" else Gate("agreement", SKIP, "not a shadow step"),
        _errors(production, candidate, settings),
        _latency(production, candidate, settings),
        _confidence(production, candidate, settings),
        _drift(candidate),
        accuracy,
    ]


def _enough(production: Figures, candidate: Figures, settings: GateSettings) -> str | None:
    fewest = min(production.answered, candidate.answered)
    if fewest >= settings.min_requests:
        return None
    return f"{candidate.answered} answers vs {production.answered} (needs {settings.min_requests} each)"


def _agreement(candidate: Figures, settings: GateSettings) -> Gate:
    if candidate.compared < settings.min_requests:
        return Gate("agreement", WAIT, f"{candidate.compared} rows compared (needs {settings.min_requests})")
    share = candidate.agreed / candidate.compared
    said = f"{share:.1%} of {candidate.compared} rows as production (at least {settings.min_agreement:.0%})"
    return Gate("agreement", PASS if share >= settings.min_agreement else FAIL, said)


def _errors(production: Figures, candidate: Figures, settings: GateSettings) -> Gate:
    thin = _enough(production, candidate, settings)
    if thin:
        return Gate("errors", WAIT, thin)
    bound = production.error_rate + settings.max_error_increase
    said = f"{candidate.error_rate:.2%} vs production's {production.error_rate:.2%} (at most {bound:.2%})"
    return Gate("errors", PASS if candidate.error_rate <= bound else FAIL, said)


def _latency(production: Figures, candidate: Figures, settings: GateSettings) -> Gate:
    thin = _enough(production, candidate, settings)
    ours, theirs = candidate.p99_ms(), production.p99_ms()
    if thin or ours is None or theirs is None:
        return Gate("latency", WAIT, thin or "no answers timed yet")
    ratio = ours / theirs
    said = f"p99 {ours:.3g} ms vs {theirs:.3g} ms: {ratio:.2f}x (at most {settings.max_p99_ratio:g}x)"
    return Gate("latency", PASS if ratio <= settings.max_p99_ratio else FAIL, said)


def _confidence(production: Figures, candidate: Figures, settings: GateSettings) -> Gate:
    if not production.confidence_n and not candidate.confidence_n:
        return Gate("confidence", SKIP, "no class scores")
    if min(production.confidence_n, candidate.confidence_n) < settings.min_requests:
        return Gate(
            "confidence", WAIT, f"{candidate.confidence_n} vs {production.confidence_n} scored answers"
        )
    ours = candidate.confidence_sum / candidate.confidence_n
    theirs = production.confidence_sum / production.confidence_n
    shift = ours - theirs
    said = f"mean {ours:.3f} vs {theirs:.3f}: {shift:+.3f} (at most ±{settings.max_confidence_shift:g})"
    return Gate("confidence", PASS if abs(shift) <= settings.max_confidence_shift else FAIL, said)


def _drift(candidate: Figures) -> Gate:
    if candidate.drifted:
        return Gate("drift", FAIL, "the candidate's inputs drifted from its reference profile")
    return Gate("drift", PASS, "no drift from its reference profile")


def _accuracy(production: Figures, candidate: Figures, settings: GateSettings) -> Gate:
    if not production.labels and not candidate.labels:
        return Gate("accuracy", SKIP, "no feedback")
    if min(production.labels, candidate.labels) < settings.min_labels:
        said = f"{candidate.labels} labels vs {production.labels} (needs {settings.min_labels} each)"
        return Gate("accuracy", WAIT, said)
    ours, theirs = candidate.correct / candidate.labels, production.correct / production.labels
    low, high = difference_interval(ours, candidate.labels, theirs, production.labels)
    margin = settings.accuracy_margin
    said = (
        f"{ours:.1%} of {candidate.labels} vs {theirs:.1%} of {production.labels}: difference "
        f"{ours - theirs:+.1%}, 95% interval [{low:+.1%}, {high:+.1%}] (fails below -{margin:.1%})"
    )
    outcome = PASS if low > -margin else FAIL if high < -margin else WAIT
    return Gate("accuracy", outcome, said)


def difference_interval(p1: float, n1: int, p2: float, n2: int) -> tuple[float, float]:
    """The 95% interval of p1 - p2, two independent proportions (Agresti-Caffo: each with one success
    and one failure added, which keeps its coverage near 95% for small counts and rates near 0 or 1)."""
    a1, a2 = (p1 * n1 + 1) / (n1 + 2), (p2 * n2 + 1) / (n2 + 2)
    spread = Z95 * math.sqrt(a1 * (1 - a1) / (n1 + 2) + a2 * (1 - a2) / (n2 + 2))
    return max(-1.0, a1 - a2 - spread), min(1.0, a1 - a2 + spread)


def variants(
    production: Figures, candidate: Figures, numbers: tuple[int, int], settings: GateSettings
) -> dict[str, Any]:
    """Each variant's figures over a step, and what they say together: an A/B experiment's verdict."""

    def figures(f: Figures) -> dict[str, Any]:
        return {
            "answers": f.answered,
            "error_rate": f.error_rate,
            "p99_ms": f.p99_ms(),
            "mean_confidence": f.confidence_sum / f.confidence_n if f.confidence_n else None,
            "accuracy": f.correct / f.labels if f.labels else None,
            "labels": f.labels,
        }

    production_number, candidate_number = numbers
    return {
        "variants": {str(production_number): figures(production), str(candidate_number): figures(candidate)},
        "finding": finding(production, candidate, numbers, settings),
    }


def finding(production: Figures, candidate: Figures, numbers: tuple[int, int], settings: GateSettings) -> str:
    """Which variant is more accurate, when the feedback can tell (a 95% interval on the difference)."""
    if min(production.labels, candidate.labels) < settings.min_labels:
        return (
            f"too little feedback to compare accuracy ({candidate.labels} labels vs {production.labels}, "
            f"needs {settings.min_labels} each)"
        )
    ours, theirs = candidate.correct / candidate.labels, production.correct / production.labels
    low, high = difference_interval(ours, candidate.labels, theirs, production.labels)
    interval = f"{ours - theirs:+.1%} for version {numbers[1]}, 95% interval [{low:+.1%}, {high:+.1%}]"
    if low > 0:
        return f"version {numbers[1]} is more accurate: {interval}"
    if high < 0:
        return f"version {numbers[0]} is more accurate: {interval}"
    return f"no significant difference in accuracy: {interval}"


def describe_variant(v: dict[str, Any]) -> str:
    """One variant's figures over a step, as `rollout status` and the dashboard show them."""
    parts = [f"{v['answers']:,} answers", f"errors {v['error_rate']:.2%}"]
    if v["p99_ms"] is not None:
        parts.append(f"p99 {v['p99_ms']:.3g} ms")
    if v["mean_confidence"] is not None:
        parts.append(f"confidence {v['mean_confidence']:.3f}")
    if v["accuracy"] is not None:
        parts.append(f"accuracy {v['accuracy']:.1%} of {v['labels']:,} labels")
    return ", ".join(parts)

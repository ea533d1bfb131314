"""Input drift: is the live window still drawn from the distribution the model was profiled on?

Two scores per feature, each read against the reference profile (monitor/profile.py):

    PSI   population stability index over the profile's decile bins, sum of (live - ref) * ln(live / ref)
          with both shares floored at EPSILON (1e-4), so an empty bin costs a bounded amount, never
          infinity. It is a symmetric KL divergence on a scale people already read (below 0.1 stable,
          0.1 to 0.2 moving, above 0.2 shifted), it sees any change of shape in discrete, constant and
          continuous features alike, and the same formula serves the predicted-class distribution.
    KS    the two-sample Kolmogorov-Smirnov statistic: the largest gap between the live ECDF and the
          reference's, read on the profile's 2.5%-step quantile grid. It needs no bin choice and sees a
          shift that stays inside one decile bin, which PSI cannot.

Defaults (Thresholds), and why:

    psi 0.2          the conventional "significant shift" line; for a normal feature, a mean shift of
                     about 0.45 standard deviations.
    ks 0.2           that same 0.45-sd shift gives a KS gap of 0.18: the two fire on shifts of about the
                     same size.
    min_rows 300     no verdict on fewer rows. Sampling noise alone gives a 10-bin PSI of about
                     9 / rows on average (0.9 on 10 rows), and the largest of many features' PSIs is
                     what decides. Measured on digits (64 features, reference 1257 rows, live rows
                     drawn from 540 held-out ones): unshifted windows were flagged in 6% of checks at
                     200 rows, 1% at 250, 0.4% at 300 and none at 500 (the default window).
    min_features 1   one drifted feature is enough: a broken sensor or a changed unit usually moves one
                     column. Models with hundreds of loosely watched features may want more.

A model is flagged when the window holds at least `min_rows` rows and at least `min_features` features
drift (PSI >= psi or KS >= ks), or the predicted classes' PSI >= psi, or the confidence's PSI >= psi or
KS >= ks. Rows observed without scores (a request that asked for other outputs) count for the features
only; the class and confidence scores read the scored rows, and judge only once `min_rows` of them are in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shipyard import scoring
from shipyard.errors import InvalidInput
from shipyard.monitor.features import feature_matrix
from shipyard.monitor.profile import Marginal, Profile, bin_shares, ecdf
from shipyard.monitor.window import CAPACITY, SlidingWindow, Snapshot
from shipyard.scoring import Scored

EPSILON = 1e-4


def psi(reference: np.ndarray, live: np.ndarray, epsilon: float = EPSILON) -> float:
    """Population stability index of two share vectors over the same bins (finite: shares are floored)."""
    ref, cur = np.maximum(reference, epsilon), np.maximum(live, epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks(reference_cdf: np.ndarray, live_cdf: np.ndarray) -> float:
    """The KS statistic: the largest gap between two CDFs read at the same points."""
    return float(np.max(np.abs(live_cdf - reference_cdf), initial=0.0))


@dataclass(frozen=True)
class Thresholds:
    """When a score counts as drift, and how much evidence a verdict needs (see the module docstring).

    A KS threshold above 1 (or a huge PSI one) turns that score off.
    """

    psi: float = 0.2
    ks: float = 0.2
    min_rows: int = 300
    min_features: int = 1

    def __post_init__(self) -> None:
        if self.psi <= 0 or self.ks <= 0:
            raise InvalidInput(f"drift thresholds: psi and ks must be > 0, got {self.psi}, {self.ks}")
        if self.min_rows < 1 or self.min_features < 1:
            raise InvalidInput("drift thresholds: min_rows and min_features must be at least 1")


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    ks: float
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    """Scores of one window against the profile, and the verdict. `reasons` says why (or why none)."""

    rows: int
    judged: bool
    flagged: bool
    reasons: tuple[str, ...]
    features: tuple[FeatureDrift, ...]
    prediction_psi: float | None
    confidence_psi: float | None
    confidence_ks: float | None
    thresholds: Thresholds
    scored: int = 0
    """Rows of the window with scores: what the class and confidence scores were read on."""

    @property
    def drifted(self) -> tuple[str, ...]:
        """Names of the features whose PSI or KS passed its threshold, highest PSI first (ties in
        feature order): the order every view of the report lists them in."""
        return tuple(f.name for f in sorted((f for f in self.features if f.drifted), key=lambda f: -f.psi))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "scored_rows": self.scored,
            "judged": self.judged,
            "flagged": self.flagged,
            "reasons": list(self.reasons),
            "drifted": list(self.drifted),
            "features": [asdict(f) for f in self.features],
            "predictions": None if self.prediction_psi is None else {"psi": self.prediction_psi},
            "confidence": (
                None
                if self.confidence_psi is None
                else {"psi": self.confidence_psi, "ks": self.confidence_ks}
            ),
            "thresholds": asdict(self.thresholds),
        }


def score_window(profile: Profile, window: Snapshot, thresholds: Thresholds | None = None) -> DriftReport:
    """Score a window's rows against the profile and give the verdict."""
    limits = thresholds or Thresholds()
    if window.features.ndim != 2 or window.features.shape[1] != len(profile.features):
        raise InvalidInput(
            f"the window has {window.features.shape[1:]} features, the profile {len(profile.features)}"
        )
    n = window.rows
    if n == 0:
        return DriftReport(0, False, False, ("the window is empty",), (), None, None, None, limits)
    columns = np.ascontiguousarray(window.features.T)
    columns.sort(axis=1)
    features = []
    for name, marginal, column in zip(profile.features, profile.marginals, columns, strict=True):
        p, k = _scores(marginal, column)
        features.append(FeatureDrift(name, p, k, p >= limits.psi or k >= limits.ks))
    prediction_psi = confidence_psi = confidence_ks = None
    scored_rows = window.classes >= 0 if window.classes is not None else None
    scored = n if scored_rows is None else int(np.count_nonzero(scored_rows))
    if profile.classes is not None and window.classes is not None and scored:
        predicted = window.classes[scored_rows] if scored < n else window.classes
        counts = np.bincount(predicted, minlength=len(profile.classes))[: len(profile.classes)]
        prediction_psi = psi(profile.classes, counts / scored)
    if profile.confidence is not None and window.confidence is not None and scored:
        confidence = window.confidence[scored_rows] if scored < n else window.confidence
        confidence_psi, confidence_ks = _scores(profile.confidence, np.sort(confidence))
    enough = scored >= limits.min_rows  # a few scored rows among many would judge on noise
    reasons = _crossings(
        features,
        prediction_psi if enough else None,
        confidence_psi if enough else None,
        confidence_ks if enough else None,
        limits,
    )
    judged = n >= limits.min_rows
    if not judged:
        reasons = (f"{n} rows in the window; a verdict needs {limits.min_rows}",)
    return DriftReport(
        n,
        judged,
        judged and bool(reasons),
        reasons,
        tuple(features),
        prediction_psi,
        confidence_psi,
        confidence_ks,
        limits,
        scored,
    )


def _scores(marginal: Marginal, ordered: np.ndarray) -> tuple[float, float]:
    """PSI and KS of one sorted live column against its reference."""
    live_shares, live_cdf = bin_shares(ordered, marginal.edges), ecdf(ordered, marginal.grid)
    return psi(marginal.shares, live_shares), ks(marginal.cdf, live_cdf)


def _crossings(
    features: list[FeatureDrift],
    prediction_psi: float | None,
    confidence_psi: float | None,
    confidence_ks: float | None,
    limits: Thresholds,
) -> tuple[str, ...]:
    reasons = []
    drifted = [f for f in features if f.drifted]
    if drifted and len(drifted) >= min(limits.min_features, len(features)):
        worst = max(drifted, key=lambda f: f.psi)
        reasons.append(
            f"{len(drifted)} of {len(features)} features drifted (worst {worst.name}: "
            f"PSI {worst.psi:.3f}, KS {worst.ks:.3f})"
        )
    if prediction_psi is not None and prediction_psi >= limits.psi:
        reasons.append(f"predicted classes PSI {prediction_psi:.3f} >= {limits.psi}")
    if confidence_psi is not None and confidence_psi >= limits.psi:
        reasons.append(f"confidence PSI {confidence_psi:.3f} >= {limits.psi}")
    if confidence_ks is not None and confidence_ks >= limits.ks:
        reasons.append(f"confidence KS {confidence_ks:.3f} >= {limits.ks}")
    return tuple(reasons)


class DriftMonitor:
    """One model version's drift watch: its profile, a window of live rows, and the thresholds.

    The server builds one per monitored version from the stored profile, calls `observe()` with each
    batch it ran (cheap: features, then a copy into the ring buffer) and `report()` when asked (scores
    the whole window, a few milliseconds).
    """

    def __init__(
        self,
        profile: Profile,
        *,
        capacity: int = CAPACITY,
        max_age_s: float | None = None,
        thresholds: Thresholds | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.thresholds = thresholds or Thresholds()
        if self.thresholds.min_rows > capacity:
            raise InvalidInput(
                f"a window of {capacity} rows can never hold the {self.thresholds.min_rows} a verdict needs"
            )
        scored = profile.score_kind is not None
        self.window = SlidingWindow(
            len(profile.features), capacity=capacity, max_age_s=max_age_s, scores=scored, clock=clock
        )

    def observe(
        self,
        inputs: Mapping[str, np.ndarray],
        scores: np.ndarray | Scored | None = None,
        *,
        now: float | None = None,
    ) -> None:
        """Add one batch: the inputs the model ran on and, for a classifier, its scores [rows, classes],
        raw or already read the profile's way (scoring.read with its score_kind); None when the request
        did not ask for them: the inputs still count. Raises InvalidInput, having added nothing, for
        inputs or scores the profile does not describe."""
        names, values = feature_matrix(inputs)
        if names != self.profile.features:
            raise InvalidInput(
                f"these inputs give {len(names)} features ({_head(names)}); the profile has "
                f"{len(self.profile.features)} ({_head(self.profile.features)})"
            )
        kind, classes = self.profile.score_kind, self.profile.classes
        if kind is None or classes is None or scores is None:
            self.window.observe(values, now=now)
            return
        shape = np.shape(scores.probabilities if isinstance(scores, Scored) else scores)
        if len(shape) != 2 or shape[1] != len(classes):
            raise InvalidInput(f"scores of shape {list(shape)}; the profile has {len(classes)} classes")
        if shape[0] != len(values):
            raise InvalidInput(f"{shape[0]} rows of scores for {len(values)} rows of inputs")
        if not isinstance(scores, Scored):
            scores = scoring.read(scores, kind)
        elif scores.kind != kind:
            raise InvalidInput(f"scores read as {scores.kind}; the profile reads them as {kind}")
        self.window.observe(values, scores.predicted, scores.confidence, now=now)

    def report(self, *, now: float | None = None) -> DriftReport:
        return score_window(self.profile, self.window.snapshot(now=now), self.thresholds)


def _head(names: tuple[str, ...]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


__all__ = [
    "EPSILON",
    "DriftMonitor",
    "DriftReport",
    "FeatureDrift",
    "Thresholds",
    "ks",
    "psi",
    "score_window",
]

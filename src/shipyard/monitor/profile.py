"""A model version's reference profile: what its inputs and scores looked like on data it was built for.

Built once, from reference inputs and the model's scores on them, and stored with the version in the
registry as a small JSON document (a few numbers per feature, never the data). Each scalar (a feature,
the confidence) keeps two summaries of its reference distribution:

    quantile bins    inner edges at the reference's deciles; bin i holds (edges[i-1], edges[i]]. The
                     shares of reference rows per bin are what PSI compares with.
    ECDF grid        the reference's quantiles on a finer grid (2.5% steps) and the exact share of
                     reference rows at or below each; the KS statistic is read on these points.

Edges are quantiles that are data values, and bins are closed on the right, so a discrete or constant
feature whose quantiles collapse keeps each repeated value whole in one bin: a constant feature has one
edge and two bins (the value, and anything above it), and a live value above it lands in the empty bin.
NaN sorts above everything and lands in the top bin, on both sides alike.

A model is usually more confident on the rows it was fitted on than on new ones, and that gap reads as
confidence drift: profile a validation split when there is one. (For logistic regression on digits the
gap is small: a confidence PSI under 0.1 between its training rows and held-out ones.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np

from shipyard import scoring
from shipyard.errors import InvalidInput
from shipyard.monitor.features import feature_matrix
from shipyard.signature import ScoreKind

FORMAT = 1
BINS = 10
GRID = 40
_EDGE_DIGITS = 9  # significant digits: enough for a float32 value (a feature, a confidence) to round-trip
_SHARE_DIGITS = 6  # decimals kept for shares of rows: a small JSON document, the same verdicts


@dataclass(frozen=True, eq=False)
class Marginal:
    """The reference distribution of one scalar, as quantile bins (for PSI) and an ECDF grid (for KS)."""

    edges: np.ndarray
    shares: np.ndarray
    grid: np.ndarray
    cdf: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, bins: int = BINS, grid: int = GRID) -> Marginal:
        ordered = np.sort(np.asarray(values, dtype=np.float64))
        finite = ordered[np.isfinite(ordered)]
        edges, points = _quantiles(finite, bins), _quantiles(finite, grid)
        shares, cdf = bin_shares(ordered, edges), ecdf(ordered, points)
        return cls(edges, np.round(shares, _SHARE_DIGITS), points, np.round(cdf, _SHARE_DIGITS))

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "edges": self.edges.tolist(),
            "shares": self.shares.tolist(),
            "grid": self.grid.tolist(),
            "cdf": self.cdf.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], what: str) -> Marginal:
        try:
            edges, shares, grid, cdf = (
                np.asarray(data[key], dtype=np.float64) for key in ("edges", "shares", "grid", "cdf")
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(f"profile: {what} needs numeric edges, shares, grid and cdf lists") from None
        if any(a.ndim != 1 or not np.isfinite(a).all() for a in (edges, shares, grid, cdf)):
            raise InvalidInput(f"profile: {what} must hold flat lists of finite numbers")
        if len(shares) != len(edges) + 1 or len(cdf) != len(grid):
            raise InvalidInput(f"profile: {what} has {len(edges)} edges but {len(shares)} shares")
        if np.any(np.diff(edges) <= 0) or np.any(np.diff(grid) <= 0):
            raise InvalidInput(f"profile: {what} edges must be increasing")
        return cls(edges, shares, grid, cdf)


def bin_shares(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the (sorted) values in each bin (edges[i-1], edges[i]]; the top bin also takes NaN."""
    n = max(len(ordered), 1)
    at_or_below = np.searchsorted(ordered, edges, side="right")
    return np.diff(at_or_below, prepend=0, append=len(ordered)) / n


def ecdf(ordered: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Share of the (sorted) values at or below each point."""
    return np.searchsorted(ordered, points, side="right") / max(len(ordered), 1)


def _quantiles(finite: np.ndarray, count: int) -> np.ndarray:
    """Inner quantiles at 1/count steps, as data values, rounded and without repeats."""
    if finite.size == 0:
        return np.empty(0)
    levels = np.arange(1, count) / count
    values = np.quantile(finite, levels, method="inverted_cdf")
    return np.unique([float(f"{v:.{_EDGE_DIGITS}g}") for v in values])


@dataclass(frozen=True, eq=False)
class Profile:
    """Reference statistics of a model version: one Marginal per feature, plus its scores when it has any.

    `classes` holds the share of reference rows predicted as each class; `score_kind` says how live
    scores are read (softmax first for logits), fixed here so every live batch is read the same way.
    """

    rows: int
    features: tuple[str, ...]
    marginals: tuple[Marginal, ...]
    score_kind: ScoreKind | None = None
    classes: np.ndarray | None = None
    confidence: Marginal | None = None

    def to_dict(self) -> dict[str, Any]:
        scores = None
        if self.score_kind is not None and self.classes is not None and self.confidence is not None:
            scores = {
                "kind": self.score_kind,
                "classes": self.classes.tolist(),
                "confidence": self.confidence.to_dict(),
            }
        return {
            "format": FORMAT,
            "rows": self.rows,
            "features": [
                {"name": name, **marginal.to_dict()}
                for name, marginal in zip(self.features, self.marginals, strict=True)
            ],
            "scores": scores,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """The profile back from `to_dict()`'s JSON; a damaged document raises InvalidInput."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise InvalidInput(f"profile: not a drift profile of format {FORMAT}")
        features, scores, rows = data.get("features"), data.get("scores"), data.get("rows")
        if (
            not isinstance(features, list)
            or not features
            or not all(isinstance(f, Mapping) for f in features)
        ):
            raise InvalidInput("profile: 'features' must be a non-empty list of objects")
        if not isinstance(rows, int) or not (scores is None or isinstance(scores, Mapping)):
            raise InvalidInput("profile: 'rows' must be a number and 'scores' an object or null")
        names = tuple(str(item.get("name", "")) for item in features)
        marginals = tuple(
            Marginal.from_dict(item, f"feature {name!r}") for name, item in zip(names, features, strict=True)
        )
        if scores is None:
            return cls(rows, names, marginals)
        kind = scores.get("kind")
        if kind not in get_args(ScoreKind):
            raise InvalidInput(f"profile: unknown score kind {kind!r}")
        try:
            classes = np.asarray(scores.get("classes"), dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInput("profile: 'classes' must be a list of shares") from None
        if classes.ndim != 1 or len(classes) < 2:
            raise InvalidInput("profile: 'classes' must list the share of at least two classes")
        confidence = Marginal.from_dict(scores.get("confidence") or {}, "confidence")
        return cls(rows, names, marginals, kind, classes, confidence)


def build_profile(
    inputs: Mapping[str, np.ndarray],
    scores: np.ndarray | None = None,
    *,
    score_kind: ScoreKind | None = None,
    bins: int = BINS,
    grid: int = GRID,
) -> Profile:
    """The profile of reference `inputs` (name -> batch-first array) and the model's `scores` on them.

    `scores` is [rows, classes], probabilities or logits (`score_kind`, guessed when not given); leave it
    out for models that do not classify. A few thousand rows give stable deciles; fewer still work.
    """
    if bins < 2 or grid < 2:
        raise InvalidInput(f"bins and grid must be at least 2, got {bins} and {grid}")
    names, values = feature_matrix(inputs)
    if len(values) == 0:
        raise InvalidInput("a profile needs at least one reference row")
    marginals = tuple(Marginal.fit(column, bins, grid) for column in values.T)
    if scores is None:
        return Profile(len(values), names, marginals)
    kind = score_kind or infer_score_kind(scores)
    scored = scoring.read(_scores_2d(scores), kind)
    rows = len(scored.predicted)
    if rows != len(values):
        raise InvalidInput(f"{rows} rows of scores for {len(values)} rows of inputs")
    classes = np.round(np.bincount(scored.predicted, minlength=scores.shape[1]) / rows, _SHARE_DIGITS)
    confidence = Marginal.fit(scored.confidence, bins, grid)
    return Profile(len(values), names, marginals, kind, classes, confidence)


def infer_score_kind(scores: np.ndarray) -> ScoreKind:
    """Probabilities when every row is non-negative and sums to 1, else logits."""
    s = _scores_2d(scores)
    if s.size and s.min() >= 0 and s.max() <= 1 and np.allclose(s.sum(axis=1), 1.0, atol=1e-3):
        return "probabilities"
    return "logits"


def _scores_2d(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise InvalidInput(f"scores must be [rows, classes] with at least two classes, got {list(s.shape)}")
    return s


__all__ = [
    "BINS",
    "GRID",
    "Marginal",
    "Profile",
    "bin_shares",
    "build_profile",
    "ecdf",
    "infer_score_kind",
]

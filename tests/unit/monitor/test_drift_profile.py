"""The reference profile: quantile bins and ECDF grid per feature, scores read once, JSON both ways."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest

from shipyard.errors import InvalidInput
from shipyard.monitor.drift import score_window
from shipyard.monitor.profile import Marginal, Profile, build_profile, infer_score_kind
from shipyard.monitor.window import Snapshot
from shipyard.scoring import read, softmax
from tests.models import digits_data, digits_linear


def digits_profile() -> tuple[Profile, np.ndarray, np.ndarray]:
    X, _ = digits_data()
    model = digits_linear()
    logits = X @ model.W + model.b
    return build_profile({"x": X[:1200]}, logits[:1200]), X, logits


def test_a_profile_survives_json_and_scores_the_same() -> None:
    profile, X, logits = digits_profile()
    document = json.dumps(profile.to_dict())
    back = Profile.from_dict(json.loads(document))
    assert back.to_dict() == profile.to_dict()
    assert back.features == profile.features and back.score_kind == "logits"
    scored = read(logits[1200:], "logits")
    live = Snapshot(X[1200:].astype(np.float64), scored.predicted, scored.confidence)
    assert score_window(back, live).to_dict() == score_window(profile, live).to_dict()


def test_a_profile_is_kilobytes_not_the_data() -> None:
    profile, X, _ = digits_profile()
    size = len(json.dumps(profile.to_dict()))
    assert size < 32_000 < X[:1200].nbytes


def test_discrete_values_keep_whole_bins_when_quantiles_collapse() -> None:
    values = np.array([0.0] * 70 + [1.0] * 20 + [2.0] * 10)
    marginal = Marginal.fit(values)
    assert marginal.edges.tolist() == [0.0, 1.0]  # the deciles are 0 (x6), 1 (x2) and 2: one edge each
    assert marginal.shares.tolist() == [0.7, 0.2, 0.1]
    assert marginal.grid.tolist() == [0.0, 1.0, 2.0]
    assert marginal.cdf.tolist() == [0.7, 0.9, 1.0]


def test_constant_features_and_empty_bins_stay_finite() -> None:
    reference = {"x": np.column_stack([np.full(500, 3.0), np.random.default_rng(0).normal(size=500)])}
    profile = build_profile(reference)
    constant = profile.marginals[0]
    assert constant.edges.tolist() == [3.0] and constant.shares.tolist() == [1.0, 0.0]
    for column in ([3.0] * 300, [5.0] * 300, [-1.0] * 300):  # all in the full bin, the empty one, below
        live = np.column_stack([column, np.zeros(300)])
        report = score_window(profile, Snapshot(live))
        assert all(np.isfinite([f.psi, f.ks]).all() for f in report.features)
        assert report.features[0].drifted == (column[0] == 5.0)  # below 3 is still the (-inf, 3] bin
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["rows"] == 300


def test_nan_features_are_counted_in_the_top_bin_not_lost() -> None:
    values = np.array([1.0, 2.0, np.nan, 4.0])
    marginal = Marginal.fit(values, bins=2)
    assert marginal.edges.tolist() == [2.0] and marginal.shares.tolist() == [0.5, 0.5]
    assert np.isfinite(marginal.to_dict()["grid"]).all()
    everything_nan = Marginal.fit(np.full(10, np.nan))
    assert everything_nan.edges.size == 0 and everything_nan.shares.tolist() == [1.0]


def test_scores_are_read_as_logits_or_probabilities() -> None:
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]])
    probs = softmax(logits)
    assert infer_score_kind(logits) == "logits" and infer_score_kind(probs) == "probabilities"
    assert infer_score_kind(np.array([[3.0, 1.0], [0.2, 5.0]])) == "logits"  # positive, rows not summing to 1
    with pytest.raises(InvalidInput, match="at least two classes"):
        build_profile({"x": np.zeros((2, 1))}, np.zeros((2, 1)))
    inputs = {"x": np.arange(6.0).reshape(2, 3)}
    from_logits, from_probs = build_profile(inputs, logits), build_profile(inputs, probs)
    assert (from_logits.score_kind, from_probs.score_kind) == ("logits", "probabilities")
    assert from_logits.to_dict()["scores"]["confidence"] == from_probs.to_dict()["scores"]["confidence"]
    assert from_logits.to_dict()["scores"]["classes"] == [0.5, 0.0, 0.5]


def test_a_regression_model_is_profiled_on_its_inputs_alone() -> None:
    profile = build_profile({"x": np.random.default_rng(0).normal(size=(100, 3))})
    assert profile.score_kind is None and profile.to_dict()["scores"] is None
    assert Profile.from_dict(json.loads(json.dumps(profile.to_dict()))).classes is None


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (np.zeros(4), r"scores must be \[rows, classes\]"),
        (np.zeros((4, 1)), "at least two classes"),
        (np.zeros((3, 2)), "3 rows of scores for 4 rows of inputs"),
    ],
)
def test_scores_that_do_not_fit_the_inputs_are_refused(scores: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build_profile({"x": np.zeros((4, 2))}, scores)


def _damaged(change: Any) -> dict[str, Any]:
    profile, _, _ = digits_profile()
    document = copy.deepcopy(profile.to_dict())
    change(document)
    return document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format=99), "not a drift profile"),
        (lambda d: d.update(features=[]), "non-empty list"),
        (lambda d: d["features"][3].pop("edges"), "needs numeric edges"),
        (lambda d: d["features"][3]["shares"].append(0.1), "shares"),
        (lambda d: d["features"][20]["edges"].reverse(), "increasing"),
        (lambda d: d["features"][20].update(cdf=["x"] * len(d["features"][20]["grid"])), "numeric"),
        (lambda d: d["scores"].update(kind="votes"), "unknown score kind"),
        (lambda d: d["scores"].update(classes=[1.0]), "at least two classes"),
    ],
)
def test_a_damaged_profile_is_refused_by_name(change: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Profile.from_dict(_damaged(change))

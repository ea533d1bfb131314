"""Drift scores and verdicts on real data: digits, a logistic regression fitted here, live streams.

The reference is a training split of digits with the classifier's probabilities on it; live traffic is
held-out rows drawn at random (resampled: there are only 540), sent in small batches as a server would,
with the verdict read after every batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from shipyard.errors import InvalidInput
from shipyard.monitor.drift import DriftMonitor, DriftReport, Thresholds, ks, psi
from shipyard.monitor.profile import Profile, build_profile
from shipyard.scoring import read
from tests.models import digits_data

WINDOW = 500
Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass
class Digits:
    predict: Callable[[np.ndarray], np.ndarray]  # rows [N, 64] -> probabilities [N, 10]
    profile: Profile
    live: np.ndarray


@pytest.fixture(scope="module")
def digits() -> Digits:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = digits_data()
    X_ref, X_live, y_ref, _ = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    model = LogisticRegression(max_iter=5000).fit(X_ref / 16, y_ref)

    def predict(rows: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_proba(rows.reshape(len(rows), 64) / 16))

    return Digits(predict, build_profile({"x": X_ref}, predict(X_ref)), X_live)


def stream(
    digits: Digits,
    monitor: DriftMonitor,
    rows: int,
    rng: np.random.Generator,
    shift: Shift | None = None,
    batch: int = 25,
    shape: tuple[int, ...] = (64,),
) -> Iterator[tuple[int, DriftReport]]:
    """Send `rows` held-out rows (shifted) in batches; after each, yield rows sent so far and the report."""
    for sent in range(batch, rows + 1, batch):
        x = digits.live[rng.integers(0, len(digits.live), batch)]
        if shift is not None:
            x = shift(x, rng)
        monitor.observe({"x": x.reshape(batch, *shape)}, digits.predict(x))
        yield sent, monitor.report()


def brighter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + 3, 0, 16)


def noisy(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + rng.normal(0, 2, x.shape), 0, 16).astype(np.float32)


def test_an_unshifted_stream_is_rarely_flagged(digits: Digits) -> None:
    """20 windows of held-out rows: the false-positive rate, per window and per check, stays under 5%."""
    monitor = DriftMonitor(digits.profile, capacity=WINDOW)
    checks = flagged_checks = flagged_windows = 0
    for sent, report in stream(digits, monitor, 20 * WINDOW, np.random.default_rng(0)):
        checks += report.judged
        flagged_checks += report.flagged
        if sent % WINDOW == 0:
            assert report.judged and report.rows == WINDOW
            flagged_windows += report.flagged
    assert checks == 20 * WINDOW // 25 - (300 // 25 - 1)  # every check from 300 rows on gave a verdict
    assert flagged_windows / 20 <= 0.05
    assert flagged_checks / checks <= 0.05


@pytest.mark.parametrize("shift", [brighter, noisy])
def test_a_shifted_stream_is_flagged_within_one_window(digits: Digits, shift: Shift) -> None:
    rng = np.random.default_rng(1)
    monitor = DriftMonitor(digits.profile, capacity=WINDOW)
    reports = dict(stream(digits, monitor, WINDOW, rng, shift))
    assert not any(r.judged for sent, r in reports.items() if sent < 300)  # no verdict on a few rows
    assert reports[WINDOW].flagged and len(reports[WINDOW].drifted) >= 10

    # a window full of normal traffic, then the shift: flagged before one window of shifted rows
    monitor = DriftMonitor(digits.profile, capacity=WINDOW)
    *_, (_, settled) = stream(digits, monitor, WINDOW, rng)
    assert settled.judged and not settled.flagged
    delay = next(
        (sent for sent, r in stream(digits, monitor, WINDOW, rng, shift, batch=10) if r.flagged), None
    )
    assert delay is not None and delay <= WINDOW


def test_images_are_watched_through_per_channel_statistics(digits: Digits) -> None:
    images = digits.live.reshape(-1, 1, 8, 8)
    profile = build_profile({"x": images}, digits.predict(digits.live))
    assert profile.features == ("x.mean", "x.std")
    rng = np.random.default_rng(2)
    clean = DriftMonitor(profile, capacity=WINDOW)
    *_, (_, report) = stream(digits, clean, WINDOW, rng, shape=(1, 8, 8))
    assert report.judged and not report.flagged
    shifted = DriftMonitor(profile, capacity=WINDOW)
    *_, (_, report) = stream(digits, shifted, WINDOW, rng, brighter, shape=(1, 8, 8))
    assert report.flagged and "x.mean" in report.drifted


def test_a_brightness_shift_in_one_channel_flags_that_channel_only() -> None:
    rng = np.random.default_rng(3)
    profile = build_profile({"img": rng.random((2000, 3, 16, 16), dtype=np.float32)})
    assert len(profile.features) == 6 and profile.score_kind is None
    monitor = DriftMonitor(profile)
    monitor.observe({"img": rng.random((WINDOW, 3, 16, 16), dtype=np.float32)})
    assert not monitor.report().flagged
    live = rng.random((WINDOW, 3, 16, 16), dtype=np.float32)
    live[:, 1] += 0.2
    monitor.observe({"img": live})
    report = monitor.report()
    assert report.flagged and report.drifted == ("img[ch1].mean",)


def test_a_change_in_predicted_classes_is_flagged(digits: Digits) -> None:
    """Only zeros and ones arrive: the predicted-class distribution drifts, whatever the pixels do."""
    probs = digits.predict(digits.live)
    few = digits.live[probs.argmax(axis=1) <= 1]
    monitor = DriftMonitor(digits.profile, thresholds=Thresholds(min_features=64))
    rows = few[np.random.default_rng(4).integers(0, len(few), WINDOW)]
    monitor.observe({"x": rows}, digits.predict(rows))
    report = monitor.report()
    assert report.prediction_psi is not None and report.prediction_psi > 1.0
    assert report.flagged and any("predicted classes" in reason for reason in report.reasons)


def test_each_score_can_flag_alone(digits: Digits) -> None:
    rng = np.random.default_rng(5)
    for limits, score in ((Thresholds(ks=2.0), "psi"), (Thresholds(psi=1e6), "ks")):  # the other is off
        monitor = DriftMonitor(digits.profile, thresholds=limits)
        *_, (_, report) = stream(digits, monitor, WINDOW, rng, brighter)
        assert report.flagged and report.drifted
        assert all(getattr(f, score) >= getattr(limits, score) for f in report.features if f.drifted)


def test_no_verdict_on_a_few_rows_however_strange() -> None:
    profile = build_profile({"x": np.random.default_rng(6).normal(size=(1000, 2))})
    monitor = DriftMonitor(profile)
    monitor.observe({"x": np.full((5, 2), 1e6)})
    report = monitor.report()
    assert report.rows == 5 and not report.judged and not report.flagged
    assert report.reasons == ("5 rows in the window; a verdict needs 300",)
    assert report.features[0].psi > 5  # the scores are there to look at, only the verdict waits


def test_old_rows_age_out_of_the_verdict() -> None:
    profile = build_profile({"x": np.random.default_rng(7).normal(size=(1000, 2))})
    monitor = DriftMonitor(profile, max_age_s=60.0)
    monitor.observe({"x": np.full((400, 2), 9.0)}, now=1000.0)
    assert monitor.report(now=1030.0).flagged
    report = monitor.report(now=1061.0)
    assert report.rows == 0 and not report.flagged and report.features == ()


def test_the_report_is_json(digits: Digits) -> None:
    monitor = DriftMonitor(digits.profile)
    *_, (_, report) = stream(digits, monitor, 300, np.random.default_rng(8), brighter)
    document = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert document["rows"] == document["scored_rows"] == 300 and document["flagged"] is True
    assert document["drifted"] == list(report.drifted) and len(document["features"]) == 64
    assert set(document["features"][0]) == {"name", "psi", "ks", "drifted"}
    assert set(document["confidence"]) == {"psi", "ks"} and "psi" in document["predictions"]
    assert document["thresholds"] == {"psi": 0.2, "ks": 0.2, "min_rows": 300, "min_features": 1}


def test_psi_and_ks_by_hand() -> None:
    even = np.array([0.5, 0.5])
    assert psi(even, even) == 0.0
    assert psi(even, np.array([0.9, 0.1])) == pytest.approx(0.4 * np.log(0.9 / 0.5) + 0.4 * np.log(0.5 / 0.1))
    assert psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(2 * (1 - 1e-4) * np.log(1e4))
    assert ks(np.array([0.2, 0.7, 1.0]), np.array([0.1, 0.3, 1.0])) == pytest.approx(0.4)
    assert ks(np.array([]), np.array([])) == 0.0


def test_monitors_refuse_what_they_cannot_judge(digits: Digits) -> None:
    with pytest.raises(InvalidInput, match="never hold the 300"):
        DriftMonitor(digits.profile, capacity=100)
    with pytest.raises(InvalidInput, match="psi and ks must be > 0"):
        Thresholds(psi=0)
    monitor = DriftMonitor(digits.profile)
    x = digits.live[:4]
    with pytest.raises(InvalidInput, match="give 2 features"):
        monitor.observe({"x": x.reshape(4, 1, 8, 8)}, digits.predict(x))
    with pytest.raises(InvalidInput, match="the profile has 10 classes"):
        monitor.observe({"x": x}, digits.predict(x)[:, :9])
    with pytest.raises(InvalidInput, match="3 rows of scores for 4 rows"):
        monitor.observe({"x": x}, digits.predict(x)[:3])
    assert monitor.report().rows == 0  # nothing of a refused batch was kept


def test_rows_without_scores_count_for_the_features_only(digits: Digits) -> None:
    """Requests that asked for other outputs than the scores: their inputs still show a shift, and the
    class and confidence scores read the scored rows only, judging once there are enough of them."""
    rng = np.random.default_rng(9)
    monitor = DriftMonitor(digits.profile, capacity=WINDOW)
    live = digits.live[rng.integers(0, len(digits.live), WINDOW)]
    monitor.observe({"x": live[:450]})
    few = digits.live[digits.predict(digits.live).argmax(axis=1) == 0][:50]  # all predicted "0"
    monitor.observe({"x": few}, digits.predict(few))
    report = monitor.report()
    assert report.rows == WINDOW and report.scored == 50 and report.judged
    assert report.prediction_psi is not None and report.prediction_psi > 1.0  # there to read...
    assert not report.flagged  # ...but 50 scored rows are too few to judge on
    monitor.observe({"x": live[:300]}, digits.predict(live[:300]))
    assert monitor.report().scored == 350 and not monitor.report().flagged  # 300 unscored rows left
    monitor.observe({"x": brighter(live[:WINDOW], rng)})  # a shift in requests without scores
    report = monitor.report()
    assert report.scored == 0 and report.prediction_psi is None and report.confidence_psi is None
    assert report.flagged and len(report.drifted) >= 10


def test_scores_read_once_elsewhere_count_as_the_raw_ones(digits: Digits) -> None:
    """A batch's scores read for the confidence histogram are handed on, not read again; scores read
    another way than the profile's are refused, having added nothing."""
    rows = digits.live[:400]
    raw, handed = DriftMonitor(digits.profile, capacity=WINDOW), DriftMonitor(digits.profile, capacity=WINDOW)
    raw.observe({"x": rows}, digits.predict(rows))
    handed.observe({"x": rows}, read(digits.predict(rows), "probabilities"))
    assert handed.report().to_dict() == raw.report().to_dict()
    with pytest.raises(InvalidInput, match="read as logits; the profile reads them as probabilities"):
        handed.observe({"x": rows}, read(digits.predict(rows), "logits"))
    with pytest.raises(InvalidInput, match="the profile has 10 classes"):
        handed.observe({"x": rows}, read(digits.predict(rows)[:, :9], "probabilities"))
    assert handed.report().rows == 400

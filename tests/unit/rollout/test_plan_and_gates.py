"""A rollout's plan as written, and the online gates on figures made by hand."""

from __future__ import annotations

import pytest

from shipyard.errors import InvalidInput
from shipyard.rollout.gates import FAIL, PASS, SKIP, WAIT, Figures, GateSettings, difference_interval, judge
from shipyard.rollout.plan import Plan, Step

# -- plans -------------------------------------------------------------------------------------------


def test_a_plan_reads_as_written() -> None:
    plan = Plan.parse(" shadow:2m,canary:5%:10m, 25%:30s ,pause,ab:50%:1.5h,100%")
    assert plan.steps == (
        Step("shadow", 0, 120),
        Step("split", 5, 600),
        Step("split", 25, 30),
        Step("pause"),
        Step("ab", 50, 5400),
        Step("promote"),
    )
    assert str(plan) == "shadow for 2m, 5% for 10m, 25% for 30s, pause, A/B 50% for 90m, 100%"
    assert plan.text == "shadow:2m,canary:5%:10m,25%:30s,pause,ab:50%:1.5h,100%"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "separated by commas"),
        ("5%:10m,,100%", "separated by commas"),
        ("5%", "needs a duration"),
        ("100%:10m", "needs a duration"),
        ("5%:10", "not a duration"),
        ("5%:0s", "not a duration"),
        ("5%:10d", "not a duration"),
        ("0%:10m", "more than 0%"),
        ("150%", "more than 0%"),
        ("five%:10m", "not a percentage"),
        ("shadow", "a shadow step needs a duration"),
        ("mirror:10m", "expected shadow:DURATION, P%:DURATION"),
        ("100%,5%:10m", "only be the last step"),
        ("ab:100%", "needs a duration"),
        (",".join(["5%:1s"] * 33), "at most 32 steps"),
    ],
)
def test_a_bad_plan_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        Plan.parse(text)


# -- gates -------------------------------------------------------------------------------------------

SETTINGS = GateSettings(min_requests=100, min_labels=30)


def answers(requests: int, errors: int = 0, latency_bin: int = 20, **more: object) -> Figures:
    figures = Figures(requests=requests, errors=errors, **more)  # type: ignore[arg-type]
    figures.latency[latency_bin] = requests
    return figures


def outcomes(
    production: Figures, candidate: Figures, settings: GateSettings = SETTINGS, shadow: bool = False
) -> dict[str, str]:
    return {
        gate.name: gate.outcome
        for gate in judge(production, candidate, settings, "shadow" if shadow else "split")
    }


def test_alike_versions_pass_and_the_gates_without_evidence_are_skipped() -> None:
    same = answers(500, errors=1)
    assert outcomes(same, same) == {
        "agreement": SKIP, "errors": PASS, "latency": PASS,
        "confidence": SKIP, "drift": PASS, "accuracy": SKIP,
    }  # fmt: skip


def test_too_few_answers_wait() -> None:
    assert outcomes(answers(500), answers(99))["errors"] == WAIT
    assert outcomes(answers(500), answers(99))["latency"] == WAIT


def test_errors_fail_beyond_productions_rate_plus_the_margin() -> None:
    production = answers(1000, errors=10)  # 1%
    assert outcomes(production, answers(1000, errors=19))["errors"] == PASS  # 1.9% <= 2%
    assert outcomes(production, answers(1000, errors=25))["errors"] == FAIL


def test_latency_fails_beyond_the_ratio() -> None:
    production = answers(500, latency_bin=20)  # ~1 ms
    assert outcomes(production, answers(500, latency_bin=22))["latency"] == PASS  # 1.47x
    assert outcomes(production, answers(500, latency_bin=24))["latency"] == FAIL  # 2.2x


def test_confidence_fails_when_it_shifts() -> None:
    production = answers(500, confidence_sum=450.0, confidence_n=500)
    assert outcomes(production, answers(500, confidence_sum=420.0, confidence_n=500))["confidence"] == PASS
    assert outcomes(production, answers(500, confidence_sum=300.0, confidence_n=500))["confidence"] == FAIL


def test_a_shadow_that_disagrees_with_production_fails() -> None:
    production = answers(500)
    assert outcomes(production, answers(500, compared=99, agreed=99), shadow=True)["agreement"] == WAIT
    assert outcomes(production, answers(500, compared=400, agreed=370), shadow=True)["agreement"] == PASS
    assert outcomes(production, answers(500, compared=400, agreed=200), shadow=True)["agreement"] == FAIL
    # past a shadow step, copies still in flight are no reason to wait
    assert outcomes(production, answers(500, compared=14, agreed=14))["agreement"] == SKIP


def test_drift_of_the_candidates_inputs_fails() -> None:
    assert outcomes(answers(500), answers(500, drifted=True))["drift"] == FAIL


def test_accuracy_is_judged_only_on_enough_labels_and_waits_when_the_interval_straddles_the_margin() -> None:
    good = answers(500, correct=95, wrong=5)
    assert outcomes(good, answers(500, correct=20, wrong=9))["accuracy"] == WAIT  # 29 labels
    assert outcomes(good, answers(500, correct=15, wrong=15))["accuracy"] == FAIL  # 50% vs 95%
    assert outcomes(good, answers(500, correct=28, wrong=2))["accuracy"] == WAIT  # alike, but 30 labels
    many = GateSettings(accuracy_margin=0.05)
    big = answers(500, correct=1900, wrong=100)
    assert outcomes(big, answers(500, correct=1905, wrong=95), many)["accuracy"] == PASS


def test_the_difference_interval_covers_the_difference() -> None:
    low, high = difference_interval(0.5, 100, 0.5, 100)
    assert low < 0 < high and high - low == pytest.approx(2 * 1.96 * (2 * 0.25 / 102) ** 0.5, rel=1e-3)
    low, high = difference_interval(1.0, 30, 0.0, 30)  # rates at the edges stay inside [-1, 1]
    assert 0.7 < low < high <= 1.0


@pytest.mark.parametrize(
    "doc",
    [{"max_p99_ratio": 0.5}, {"accuracy_margin": 2}, {"min_requests": 0}, {"max_errors": 1}],
)
def test_bad_gate_settings_are_refused(doc: dict[str, float]) -> None:
    with pytest.raises(InvalidInput):
        GateSettings.from_dict(doc)


def test_figures_add_up_and_subtract_a_mark() -> None:
    one, two = answers(10, errors=1, correct=3), answers(20, errors=2, wrong=4)
    both = one + two
    assert (both.requests, both.errors, both.correct, both.wrong, sum(both.latency)) == (30, 3, 3, 4, 30)
    assert both.since(one) == Figures.from_dict(two.to_dict())
    assert one.since(both).requests == 0  # a process that went away never makes counts negative

"""The rollout controller over a real registry: each decision on evidence reported as serving
processes report it, the moves a person makes, and one controller among many (the lease)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.registry import Registry, RolloutRecord
from shipyard.rollout import commands
from shipyard.rollout.controller import Controller, decide
from shipyard.rollout.gates import Figures
from shipyard.rollout.router import Split
from tests.conftest import register_digits, registry_on_every_engine

registry = registry_on_every_engine()
GATES = {"min_requests": 50, "min_labels": 20}
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def digits(registry: Registry) -> Registry:
    """digits 1 in production, 2 the candidate."""
    register_digits(registry)
    register_digits(registry)
    registry.deploy("digits", 1)
    return registry


def figures(requests: int, correct: int = 0, wrong: int = 0, latency_bin: int = 20) -> Figures:
    found = Figures(requests=requests, correct=correct, wrong=wrong)
    found.latency[latency_bin] = requests
    return found


def report(registry: Registry, reporter: str, production: Figures, candidate: Figures) -> None:
    """What one serving process has seen of both versions (counts since it started)."""
    registry.report_evidence(reporter, "digits", {1: production.to_dict(), 2: candidate.to_dict()})


def history(registry: Registry) -> list[str]:
    return [e.detail for e in registry.history("digits") if e.kind == "rollout"]


def test_a_good_candidate_steps_through_its_plan_to_production(digits: Registry) -> None:
    commands.start(digits, "digits", 2, "10%:0.001s,50%:0.001s,100%", GATES, reason="retrained")
    controller = Controller(digits, None)
    assert controller.tick() == ["digits: step 1: 10% for 0.001s: traffic 1=90%, 2=10%"]
    assert digits.model("digits").splits == {"production": {"1": 90.0, "2": 10.0}}
    for reporter in ("a", "b"):  # two processes, 60 answers each per version: enough only together
        report(digits, reporter, figures(60), figures(60))
    (passed,) = controller.tick()
    assert passed.startswith("digits: step 1 passed: errors 0.00% vs production's 0.00%")
    assert controller.tick() == ["digits: step 2: 50% for 0.001s: traffic 1=50%, 2=50%"]
    for reporter in ("a", "b"):
        report(digits, reporter, figures(120), figures(120))
    assert controller.tick()[0].startswith("digits: step 2 passed")
    assert controller.tick() == ["digits: promoted: digits:2 is production"]
    rollout = digits.rollout("digits")
    assert (rollout.status, rollout.ended_at is not None) == ("promoted", True)
    summary = digits.model("digits")
    assert summary.default_version == 2 and summary.splits == {}
    assert controller.tick() == []  # nothing active: nothing to do
    assert history(digits)[0] == "started: digits:2 against 1, plan 10% for 0.001s, 50% for 0.001s, 100%"
    assert len(history(digits)) == 6


def test_a_candidate_that_loses_accuracy_is_rolled_back_at_its_first_step(digits: Registry) -> None:
    commands.start(digits, "digits", 2, "5%:1h,100%", GATES)
    controller = Controller(digits, None)
    controller.tick()
    report(digits, "a", figures(500, correct=95, wrong=5), figures(100, correct=10, wrong=12))
    (line,) = controller.tick()
    assert line.startswith("digits: rolled back: accuracy gate failed at step 1: 45.5% of 22 vs 95.0% of 100")
    rollout = digits.rollout("digits")
    assert rollout.status == "rolled-back" and rollout.reason.startswith("accuracy gate failed")
    assert digits.model("digits").splits == {} and digits.model("digits").default_version == 1
    splits = [e.reason for e in digits.history("digits") if e.kind == "split"]
    assert splits == ["rollout of digits:2", "rollout of digits:2"]  # set, then ended: one transaction each


def test_a_slow_candidate_fails_the_latency_gate(digits: Registry) -> None:
    commands.start(digits, "digits", 2, "5%:1h,100%", GATES)
    controller = Controller(digits, None)
    controller.tick()
    report(digits, "a", figures(500, latency_bin=20), figures(100, latency_bin=26))
    assert "latency gate failed at step 1: p99 14.7 ms vs 4.64 ms: 3.16x" in controller.tick()[0]


def test_evidence_counts_from_the_steps_start() -> None:
    rollout = RolloutRecord(
        1, "digits", 2, 1, "5%:10m,100%", GATES, 0, NOW, 0, "running", "", None, None, "me", NOW, NOW, None
    )
    before = {1: figures(1000, correct=900, wrong=100), 2: figures(10, correct=0, wrong=10)}
    began = decide(rollout, NOW, before)
    assert began.changes["split"] == Split.of({1: 95, 2: 5}) and began.event is not None
    marked = RolloutRecord(**{**vars(rollout), "marks": began.changes["marks"]})
    after = {
        1: before[1] + figures(100, correct=90, wrong=10),
        2: before[2] + figures(100, correct=28, wrong=2),
    }
    judged = decide(marked, NOW + timedelta(minutes=5), after)  # the 10 wrong before the step are not its
    assert judged.event is None and {g["outcome"] for g in judged.verdict["gates"]} <= {
        "pass",
        "wait",
        "skip",
    }


def test_thin_evidence_extends_the_step_twice_then_pauses() -> None:
    rollout = RolloutRecord(
        1, "digits", 2, 1, "5%:10m,100%", GATES, 0, NOW, 0, "running", "", {}, None, "me", NOW, NOW, None
    )
    thin = {1: figures(30), 2: figures(3)}
    assert decide(rollout, NOW + timedelta(minutes=9), thin).event is None
    first = decide(rollout, NOW + timedelta(minutes=10), thin)
    assert first.changes["extensions"] == 1 and "inconclusive, extended" in str(first.event)
    once = RolloutRecord(**{**vars(rollout), "extensions": 1})
    assert decide(once, NOW + timedelta(minutes=19), thin).event is None
    twice = RolloutRecord(**{**vars(rollout), "extensions": 2})
    paused = decide(twice, NOW + timedelta(minutes=30), thin)
    assert paused.changes["status"] == "paused" and paused.changes["reason"].startswith(
        "inconclusive at step 1"
    )


def test_a_person_pauses_resumes_promotes_and_aborts(digits: Registry) -> None:
    commands.start(digits, "digits", 2, "5%:1h,pause,100%", GATES)
    controller = Controller(digits, None)
    controller.tick()
    assert commands.pause(digits, "digits", "a look at the logs").status == "paused"
    assert controller.tick() == []  # a paused rollout waits; its split stays
    assert digits.model("digits").splits == {"production": {"1": 95.0, "2": 5.0}}
    with pytest.raises(Conflict, match="is paused, not running"):
        commands.pause(digits, "digits")
    resumed = commands.resume(digits, "digits")
    assert (resumed.status, resumed.step, resumed.marks) == ("running", 0, None)  # the step again, afresh
    moved = digits.move_rollout(resumed, step=1, marks=None)  # as if step 1 passed
    assert moved is not None
    assert controller.tick() == [
        "digits: paused: step 2 is a manual gate: `shipyard rollout resume` (or promote, or abort)"
    ]
    assert commands.resume(digits, "digits").step == 2  # past the manual gate
    assert commands.abort(digits, "digits", "not today").status == "aborted"
    assert digits.model("digits").splits == {} and digits.model("digits").default_version == 1
    with pytest.raises(Conflict, match="has ended \\(aborted\\)"):
        commands.promote(digits, "digits")
    commands.start(digits, "digits", 2, "5%:1h,100%", GATES)
    assert commands.promote(digits, "digits").status == "promoted"
    assert digits.model("digits").default_version == 2


def test_a_move_from_a_stale_state_moves_nothing(digits: Registry) -> None:
    rollout = commands.start(digits, "digits", 2, "5%:1h,100%", GATES)
    assert digits.move_rollout(rollout, status="paused") is not None
    assert digits.move_rollout(rollout, status="aborted", split=None) is None  # it is paused now
    assert digits.rollout("digits").status == "paused"


@pytest.mark.parametrize(
    ("args", "error", "problem"),
    [
        ((1, "5%:1h,100%", {}), Conflict, "digits:1 is production already"),
        ((9, "5%:1h,100%", {}), NotFound, "no version 9"),
        ((2, "5%", {}), InvalidInput, "needs a duration"),
        ((2, "5%:1h", {"max_p99_ratio": 0.2}), InvalidInput, "max_p99_ratio must be 1 or more"),
    ],
)
def test_a_rollout_that_cannot_start_changes_nothing(
    digits: Registry, args: tuple[int, str, dict[str, float]], error: type[Exception], problem: str
) -> None:
    with pytest.raises(error, match=problem):
        commands.start(digits, "digits", *args)
    assert digits.rollouts("digits") == []


def test_one_rollout_at_a_time_and_none_without_production(registry: Registry) -> None:
    register_digits(registry)
    register_digits(registry)
    with pytest.raises(Conflict, match="no production version"):
        commands.start(registry, "digits", 2)
    registry.deploy("digits", 1)
    commands.start(registry, "digits", 2)
    with pytest.raises(Conflict, match="has a rollout under way"):
        commands.start(registry, "digits", 2)


def test_one_controller_judges_among_many(digits: Registry) -> None:
    commands.start(digits, "digits", 2, "10%:0.001s,100%", GATES)
    first, second = Controller(digits, None), Controller(digits, None)
    assert first.tick() and second.tick() == []  # the lease is the first's for LEASE_S
    assert digits.take_lease("rollout-controller", first.name, 10)
    assert not digits.take_lease("rollout-controller", second.name, 10)
    assert digits.take_lease("rollout-controller", first.name, -1)  # as if it had died 1 s ago
    assert digits.take_lease("rollout-controller", second.name, 10)


def test_an_ab_experiment_holds_its_split_then_pauses_with_a_verdict(digits: Registry) -> None:
    commands.start(digits, "digits", 2, "ab:50%:0.001s,100%", GATES)
    controller = Controller(digits, None)
    assert controller.tick() == ["digits: step 1: A/B 50% for 0.001s: traffic 1=50%, 2=50%"]
    report(digits, "a", figures(400, correct=190, wrong=10), figures(400, correct=150, wrong=50))
    (line,) = controller.tick()
    assert line.startswith("digits: step 1 A/B over: version 1 is more accurate: -20.0% for version 2")
    paused = digits.rollout("digits")
    assert (paused.status, paused.step) == ("paused", 1)  # past the experiment, before promoting
    assert digits.model("digits").splits == {"production": {"1": 50.0, "2": 50.0}}  # held meanwhile
    assert paused.verdict is not None
    assert paused.verdict["variants"]["2"] == {
        "answers": 400, "error_rate": 0.0, "p99_ms": pytest.approx(4.64, rel=0.01),
        "mean_confidence": None, "accuracy": 0.75, "labels": 200,
    }  # fmt: skip
    commands.resume(digits, "digits", "promote it anyway")
    assert controller.tick() == ["digits: promoted: digits:2 is production"]


def test_an_experiment_without_enough_feedback_says_so() -> None:
    rollout = RolloutRecord(
        1, "digits", 2, 1, "ab:50%:10m,100%", GATES, 0, NOW, 0, "running", "", {}, None, "me", NOW, NOW, None
    )
    over = decide(rollout, NOW + timedelta(minutes=10), {1: figures(300), 2: figures(300, correct=3)})
    assert over.changes["status"] == "paused"
    assert over.changes["reason"].startswith(
        "A/B over: too little feedback to compare accuracy (3 labels vs 0"
    )


def test_the_evidence_of_processes_long_gone_is_forgotten(digits: Registry) -> None:
    report(digits, "gone", figures(10), figures(10))
    digits.forget_evidence(timedelta(days=1))
    assert len(digits.evidence("digits", 1)) == 1  # reported just now: kept
    digits.forget_evidence(timedelta(seconds=-1))  # as if a day had passed
    assert digits.evidence("digits", 1) == []

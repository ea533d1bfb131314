"""The rollout controller: takes a candidate through its plan on evidence, and backs out by itself.

Every serving process runs `Controller.tick` once a second. Each reports what its monitor has seen of
the versions under rollout (rollout/evidence.py); one of them, the holder of a lease in the registry,
also judges: it applies each step's traffic, judges the step by the online gates (rollout/gates.py) on
the evidence summed over every process, and moves the rollout on, rolls it back the moment a gate
fails, or pauses it when the evidence stays too thin. The state lives in the registry, so a controller
that dies is replaced within LEASE_S by another process, which goes on at the same step, and every
decision goes into the model's history with the figures behind it.

`decide` is the whole judgement, pure; `Controller` reads, decides and writes.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shipyard.errors import Conflict
from shipyard.monitor.live import Monitor
from shipyard.registry import Registry, RolloutRecord
from shipyard.registry.tables import utcnow
from shipyard.rollout.evidence import Reporter, summed
from shipyard.rollout.gates import FAIL, WAIT, Figures, Gate, GateSettings, judge, variants
from shipyard.rollout.plan import Plan
from shipyard.rollout.router import Split

log = logging.getLogger(__name__)

LEASE = "rollout-controller"
LEASE_S = 10.0
"""How long the controller's lease lasts unrenewed: a controller that died is replaced this soon."""
FORGET_EVERY_S = 3600.0
"""How often the leader drops the evidence of processes that stopped reporting a day ago."""
MAX_EXTENSIONS = 2
"""How many times a step whose evidence is too thin is extended by its own duration before the
rollout pauses, inconclusive, for a person to decide."""


@dataclass(frozen=True)
class Decision:
    """What to do with a rollout now: the arguments of Registry.move_rollout, and why."""

    changes: dict[str, Any] = field(default_factory=dict)
    event: str | None = None
    verdict: dict[str, Any] | None = None
    """The gates' judgement, when they judged (kept for `rollout status` when nothing moves)."""


def decide(rollout: RolloutRecord, now: datetime, figures: dict[int, Figures]) -> Decision:
    """The next move of a running rollout, given the evidence now (version -> Figures)."""
    plan, settings = Plan.parse(rollout.plan), GateSettings.from_dict(rollout.gates)
    if rollout.step >= len(plan.steps):
        reason = "the plan is done: `shipyard rollout promote` (or abort)"
        return Decision({"status": "paused", "reason": reason}, f"paused: {reason}")
    step, number = plan.steps[rollout.step], rollout.step + 1
    marks = {str(v): f.to_dict() for v, f in figures.items()}
    if rollout.marks is None:  # the step begins: its traffic, and the evidence it is judged from
        if step.kind == "promote":
            event = f"promoted: {rollout.model}:{rollout.candidate} is production"
            return Decision({"status": "promoted", "promote": True, "reason": "plan complete"}, event)
        if step.kind == "pause":
            reason = f"step {number} is a manual gate: `shipyard rollout resume` (or promote, or abort)"
            return Decision({"status": "paused", "marks": marks, "reason": reason}, f"paused: {reason}")
        changes: dict[str, Any]
        if step.kind == "shadow":
            changes = {"shadow": rollout.candidate, "split": None, "marks": marks}
            return Decision(changes, f"step {number}: {step}: a copy of the traffic, answering no one")
        split = Split.of({rollout.candidate: step.percent}, rest_to=rollout.baseline)
        changes = {"split": split, "shadow": None, "marks": marks}
        return Decision(changes, f"step {number}: {step}: traffic {split}")
    since = {v: f.since(Figures.from_dict(rollout.marks.get(str(v), {}))) for v, f in figures.items()}
    gates = judge(since[rollout.baseline], since[rollout.candidate], settings, step.kind)
    verdict: dict[str, Any] = {"step": rollout.step, "at": now.isoformat(), "gates": [vars(g) for g in gates]}
    if step.kind in ("split", "ab"):
        numbers = (rollout.baseline, rollout.candidate)
        verdict |= variants(since[rollout.baseline], since[rollout.candidate], numbers, settings)
    failed = [g for g in gates if g.outcome == FAIL]
    if failed:
        reason = f"{failed[0].name} gate failed at step {number}: {failed[0].figures}"
        back = {"status": "rolled-back", "split": None, "shadow": None, "reason": reason, "verdict": verdict}
        return Decision(back, f"rolled back: {reason}", verdict)
    if (now - rollout.step_started_at).total_seconds() < step.seconds * (1 + rollout.extensions):
        return Decision(verdict=verdict)
    if step.kind == "ab":  # held for its time: done, and what its verdict says is a person's to act on
        reason = f"A/B over: {verdict['finding']}: `shipyard rollout resume`, promote or abort"
        after = {"step": rollout.step + 1, "marks": None, "status": "paused", "reason": reason}
        return Decision({**after, "verdict": verdict}, f"step {number} {reason}", verdict)
    waiting = [g for g in gates if g.outcome == WAIT]
    if not waiting:
        moving: dict[str, Any] = {"step": rollout.step + 1, "marks": None, "extensions": 0}
        return Decision({**moving, "verdict": verdict}, f"step {number} passed: {_passed(gates)}", verdict)
    thin = f"{waiting[0].name}: {waiting[0].figures}"
    if rollout.extensions < MAX_EXTENSIONS:
        extended = {"extensions": rollout.extensions + 1, "verdict": verdict}
        return Decision(extended, f"step {number} inconclusive, extended by {step}: {thin}", verdict)
    reason = f"inconclusive at step {number}: {thin}"
    return Decision({"status": "paused", "reason": reason, "verdict": verdict}, f"paused: {reason}", verdict)


def _passed(gates: list[Gate]) -> str:
    return "; ".join(f"{g.name} {g.figures}" for g in gates if g.outcome != "skip")


class Controller:
    """One serving process's part in every rollout: reporting always, judging while it holds the lease."""

    def __init__(self, registry: Registry, monitor: Monitor | None) -> None:
        """`monitor`: this process's, whose figures it reports (None: it only judges)."""
        self.registry = registry
        self.name = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.reporter = None if monitor is None else Reporter(monitor, self.name)
        self._forgot = -math.inf  # when old evidence was last dropped (time.monotonic)

    def tick(self) -> list[str]:
        """Blocking (run it in a thread): report, and judge when leading; the history lines it wrote."""
        active = self.registry.rollouts(active=True)
        if not active:
            return []
        if self.reporter is not None:
            self.reporter.report(self.registry, active)
        if not self.registry.take_lease(LEASE, self.name, LEASE_S):
            return []
        if time.monotonic() - self._forgot >= FORGET_EVERY_S:
            self._forgot = time.monotonic()
            self.registry.forget_evidence(timedelta(days=1))  # processes gone a day are no one's evidence
        moved = []
        for rollout in active:
            if rollout.status == "running":
                line = self.advance(rollout)
                if line:
                    moved.append(f"{rollout.model}: {line}")
        return moved

    def advance(self, rollout: RolloutRecord) -> str | None:
        """Judge one running rollout and make its move; the history line of the move, if any."""
        versions = (rollout.baseline, rollout.candidate)
        figures = {v: summed(self.registry.evidence(rollout.model, v)) for v in versions}
        decision = decide(rollout, utcnow(), figures)
        if decision.event is None:
            if decision.verdict is not None:
                self.registry.note_verdict(rollout, decision.verdict)
            return None
        try:
            moved = self.registry.move_rollout(
                rollout, event=decision.event, actor="rollout", **decision.changes
            )
        except Conflict as exc:  # e.g. the promotion's deploy refused: a person must look
            reason = f"could not move on: {exc.message}"
            moved = self.registry.move_rollout(
                rollout, status="paused", reason=reason, event=f"paused: {reason}"
            )
            return None if moved is None else f"paused: {reason}"
        return None if moved is None else decision.event

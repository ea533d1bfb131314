"""What a person does to a rollout (the CLI and the admin endpoints alike): start one, pause, resume,
promote or abort it. Each is one move in the registry (registry/rollouts.py), taken effect by the
controller at its next tick and by every server following the registry within a second."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipyard.errors import Conflict
from shipyard.registry import Registry, RolloutRecord
from shipyard.rollout.gates import GateSettings
from shipyard.rollout.plan import Plan

DEFAULT_PLAN = "5%:10m,25%:10m,50%:10m,100%"


def start(
    registry: Registry,
    name: str,
    candidate: int,
    plan: str = DEFAULT_PLAN,
    gates: Mapping[str, Any] | None = None,
    *,
    force: bool = False,
    reason: str = "",
    actor: str | None = None,
) -> RolloutRecord:
    settings = GateSettings.from_dict(gates or {})
    Plan.parse(plan)
    return registry.start_rollout(
        name, candidate, plan, settings.to_dict(), force=force, reason=reason, actor=actor
    )


def pause(registry: Registry, name: str, reason: str = "", actor: str | None = None) -> RolloutRecord:
    """Hold the rollout where it is, its traffic split as it is, until resumed."""
    rollout = _active(registry, name, "running")
    why = reason or "paused by hand"
    return _moved(
        registry.move_rollout(rollout, status="paused", reason=why, event=f"paused: {why}", actor=actor)
    )


def resume(registry: Registry, name: str, reason: str = "", actor: str | None = None) -> RolloutRecord:
    """Go on: past a manual gate to the next step, or the paused step again, judged afresh."""
    rollout = _active(registry, name, "paused")
    steps = Plan.parse(rollout.plan).steps
    if rollout.step >= len(steps):
        raise Conflict(f"{name}'s plan is done: promote the candidate or abort the rollout")
    step = rollout.step + 1 if steps[rollout.step].kind == "pause" else rollout.step
    event = f"resumed at step {step + 1}" + (f": {reason}" if reason else "")
    moved = registry.move_rollout(
        rollout,
        status="running",
        step=step,
        marks=None,
        extensions=0,
        reason=reason,
        event=event,
        actor=actor,
    )
    return _moved(moved)


def promote(registry: Registry, name: str, reason: str = "", actor: str | None = None) -> RolloutRecord:
    """The candidate becomes production now, whatever step the rollout is at."""
    rollout = _active(registry, name)
    event = f"promoted by hand: {name}:{rollout.candidate} is production"
    moved = registry.move_rollout(
        rollout,
        status="promoted",
        promote=True,
        reason=reason or "promoted by hand",
        event=event,
        actor=actor,
    )
    return _moved(moved)


def abort(registry: Registry, name: str, reason: str = "", actor: str | None = None) -> RolloutRecord:
    """All traffic back to production now; the rollout ends."""
    rollout = _active(registry, name)
    why = reason or "aborted by hand"
    moved = registry.move_rollout(
        rollout, status="aborted", split=None, shadow=None, reason=why, event=f"aborted: {why}", actor=actor
    )
    return _moved(moved)


def _active(registry: Registry, name: str, status: str | None = None) -> RolloutRecord:
    rollout = registry.rollout(name)
    if not rollout.active:
        raise Conflict(f"{name}'s last rollout has ended ({rollout.status}): nothing to change")
    if status is not None and rollout.status != status:
        raise Conflict(f"{name}'s rollout is {rollout.status}, not {status}")
    return rollout


def _moved(moved: RolloutRecord | None) -> RolloutRecord:
    if moved is None:
        raise Conflict("the rollout moved meanwhile (the controller acted first): look again and retry")
    return moved

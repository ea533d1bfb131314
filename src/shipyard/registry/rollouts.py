"""Rollouts in the registry: a candidate's plan and the step it is at, the evidence serving processes
report, and the lease that makes one process the controller (rollout/controller.py decides; this
stores).

Every move of a rollout is one transaction with what it does to the traffic: a step's split, a
promotion's deploy, a rollback's end of the split, and the history events of each. A move names the
step and status it expects the rollout to be at, so two controllers (or a controller and a person)
never both move it: the second finds it moved and does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.errors import Conflict, NotFound
from shipyard.registry.aliases import PRODUCTION, AliasesMixin, deployable
from shipyard.registry.records import ACTIVE, RolloutRecord
from shipyard.registry.tables import EvidenceRow, LeaseRow, RolloutRow, utcnow
from shipyard.rollout.plan import Plan
from shipyard.rollout.router import Split

KEEP: Any = object()
"""A field `move_rollout` leaves as it is."""


class RolloutsMixin(AliasesMixin):
    def start_rollout(
        self,
        name: str,
        candidate: int,
        plan: str,
        gates: Mapping[str, Any],
        *,
        force: bool = False,
        reason: str = "",
        actor: str | None = None,
    ) -> RolloutRecord:
        """Begin taking `candidate` to production by `plan` (checked; its first step runs at the
        controller's next tick). Conflict when the model has an active rollout, no production
        version, or the candidate is production already or takes other inputs (unless `force`)."""
        steps = Plan.parse(plan)
        with self._writing() as session:
            model = self._locked_model(session, name)
            production = next((a.version for a in model.aliases if a.name == PRODUCTION), None)
            if production is None:
                raise Conflict(f"{name} has no production version to roll out against: deploy one first")
            if candidate == production:
                raise Conflict(f"{name}:{candidate} is production already")
            deployable(model, candidate, force=force, alias=PRODUCTION)
            if self._active(session, name) is not None:
                raise Conflict(f"{name} has a rollout under way: `shipyard rollout status {name}`")
            now = utcnow()
            row = RolloutRow(
                model=name,
                candidate=candidate,
                baseline=production,
                plan=steps.text,
                gates=dict(gates),
                step=0,
                step_started_at=now,
                extensions=0,
                status="running",
                reason=reason,
                actor=actor or self.actor,
                started_at=now,
                updated_at=now,
            )
            session.add(row)
            detail = f"started: {name}:{candidate} against {production}, plan {steps}"
            self._event(
                session,
                name,
                "rollout",
                candidate,
                from_version=production,
                detail=detail,
                reason=reason,
                actor=actor,
            )
            session.flush()
            return _record(row)

    def rollouts(self, name: str | None = None, *, active: bool = False) -> list[RolloutRecord]:
        """Rollouts, newest first: of one model, or all; only the running and paused ones when `active`."""
        query = select(RolloutRow).order_by(RolloutRow.id.desc())
        if name is not None:
            query = query.where(RolloutRow.model == name)
        if active:
            query = query.where(RolloutRow.status.in_(ACTIVE))
        with self._session() as session:
            return [_record(row) for row in session.scalars(query)]

    def rollout(self, name: str) -> RolloutRecord:
        """The model's latest rollout."""
        found = self.rollouts(name)
        if not found:
            raise NotFound(f"{name} has never been rolled out: `shipyard rollout start {name} --candidate V`")
        return found[0]

    def move_rollout(
        self,
        rollout: RolloutRecord,
        *,
        step: int = KEEP,
        status: str = KEEP,
        split: Split | None = KEEP,
        shadow: int | None = KEEP,
        promote: bool = False,
        marks: dict[str, Any] | None = KEEP,
        verdict: dict[str, Any] | None = KEEP,
        extensions: int = KEEP,
        reason: str = KEEP,
        event: str | None = None,
        actor: str | None = None,
    ) -> RolloutRecord | None:
        """Move `rollout` from the step and status it has: its fields, the production alias's split
        (`split`: None ends it) and shadow (`shadow`: a version, or None), or a promotion (the alias
        moves to the candidate), and `event` into the history, in one transaction. None, moving
        nothing, when it was moved meanwhile."""
        with self._writing() as session:
            model = self._locked_model(session, rollout.model)
            row = session.get(RolloutRow, rollout.id)
            if row is None or (row.step, row.status) != (rollout.step, rollout.status):
                return None
            alias = next((a for a in model.aliases if a.name == PRODUCTION), None)
            if split is not KEEP and alias is not None and alias.version == row.baseline:
                after = None if split is None else split.to_dict()
                if alias.split != after:
                    alias.split, alias.updated_at = after, utcnow()
                    why = f"rollout of {row.model}:{row.candidate}"
                    self._split_event(session, model.name, alias, split, reason=why, actor=actor)
            if shadow is not KEEP and alias is not None and alias.version == row.baseline:
                why = f"rollout of {row.model}:{row.candidate}"
                self._shadow(session, model.name, alias, shadow, reason=why, actor=actor)
            if promote:
                why = f"rollout of {row.model}:{row.candidate} promoted"
                self._move(session, model, row.candidate, PRODUCTION, kind="deploy", reason=why, actor=actor)
            now = utcnow()
            for field, value in (
                ("step", step), ("status", status), ("marks", marks), ("verdict", verdict),
                ("extensions", extensions), ("reason", reason),
            ):  # fmt: skip
                if value is not KEEP:
                    setattr(row, field, value)
            if step is not KEEP or status is not KEEP:
                row.step_started_at = now
            if row.status not in ACTIVE and row.ended_at is None:
                row.ended_at = now
            row.updated_at = now
            if event:
                self._event(
                    session, row.model, "rollout", row.candidate, from_version=row.baseline, detail=event,
                    reason=row.reason if reason is KEEP else reason, actor=actor,
                )  # fmt: skip
            session.flush()
            return _record(row)

    def note_verdict(self, rollout: RolloutRecord, verdict: dict[str, Any]) -> None:
        """The last judgement of a rollout's step, for `rollout status` (no history event)."""
        with self._writing() as session:
            row = session.get(RolloutRow, rollout.id)
            if row is not None and row.status in ACTIVE:
                row.verdict = verdict

    # -- evidence and the controller's lease --------------------------------------------------------

    def report_evidence(self, reporter: str, model: str, figures: Mapping[int, dict[str, Any]]) -> None:
        """What one serving process (`reporter`) has seen of some versions so far (replaces its last)."""
        now = utcnow()
        with self._writing() as session:
            for version, doc in figures.items():
                row = session.get(EvidenceRow, (reporter, model, version))
                if row is None:
                    session.add(
                        EvidenceRow(
                            reporter=reporter, model=model, version=version, figures=doc, updated_at=now
                        )
                    )
                else:
                    row.figures, row.updated_at = doc, now

    def evidence(self, model: str, version: int) -> list[dict[str, Any]]:
        """Every process's last report on a version."""
        query = select(EvidenceRow.figures).where(EvidenceRow.model == model, EvidenceRow.version == version)
        with self._session() as session:
            return list(session.scalars(query))

    def forget_evidence(self, older_than: timedelta) -> None:
        """Drop the reports of processes that stopped reporting that long ago."""
        with self._writing() as session:
            session.execute(delete(EvidenceRow).where(EvidenceRow.updated_at < utcnow() - older_than))

    def take_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Hold the lease `name` for `seconds` more when it is free, expired or `owner`'s already."""
        now = utcnow()
        try:
            with self._writing() as session:
                row = session.scalar(select(LeaseRow).where(LeaseRow.name == name).with_for_update())
                if row is None:
                    session.add(LeaseRow(name=name, owner=owner, expires_at=now + timedelta(seconds=seconds)))
                elif row.owner == owner or row.expires_at < now:
                    row.owner, row.expires_at = owner, now + timedelta(seconds=seconds)
                else:
                    return False
        except IntegrityError:  # another process inserted it first
            return False
        return True

    def _active(self, session: Session, name: str) -> RolloutRow | None:
        query = select(RolloutRow).where(RolloutRow.model == name, RolloutRow.status.in_(ACTIVE))
        return session.scalar(query)


def _record(row: RolloutRow) -> RolloutRecord:
    return RolloutRecord(
        row.id,
        row.model,
        row.candidate,
        row.baseline,
        row.plan,
        dict(row.gates),
        row.step,
        row.step_started_at,
        row.extensions,
        row.status,
        row.reason,
        row.marks,
        row.verdict,
        row.actor,
        row.started_at,
        row.updated_at,
        row.ended_at,
    )

"""Plain records the registry hands out: detached from the database session, safe to pass around."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shipyard.signature import Signature


@dataclass(frozen=True)
class DatasetInfo:
    """The data a version was trained or evaluated on, identified by content."""

    name: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class VersionRecord:
    """A version's manifest: everything needed to serve it, readable without opening the model."""

    model: str
    number: int
    sha256: str
    size: int
    framework: str
    signature: Signature
    labels: list[str] | None
    check: dict[str, Any]
    description: str
    dataset: DatasetInfo | None
    created_at: datetime
    aliases: tuple[str, ...] = field(default=())
    lineage: dict[str, Any] | None = None
    """Where an optimized version came from: parent ref, method, options, gate verdict."""
    report: dict[str, Any] | None = None
    """The measured comparison with the parent (sizes, latency, metric) that the gate judged."""
    reference: dict[str, Any] | None = field(default=None, repr=False)
    """The reference profile live inputs are compared with (monitor/profile.py), when one was given."""

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.number}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.number,
            "sha256": self.sha256,
            "size": self.size,
            "framework": self.framework,
            "signature": self.signature.to_dict(),
            "labels": self.labels,
            "check": self.check,
            "description": self.description,
            "dataset": self.dataset.to_dict() if self.dataset else None,
            "created_at": self.created_at.isoformat(),
            "aliases": list(self.aliases),
            "lineage": self.lineage,
            "report": self.report,
            "reference": _reference_summary(self.reference),
        }


@dataclass(frozen=True)
class ModelSummary:
    name: str
    versions: tuple[int, ...]
    aliases: dict[str, int]
    created_at: datetime
    serving: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, dict[str, float]] = field(default_factory=dict)
    """alias -> the shares of its traffic by version ({"1": 80.0, "2": 20.0}), for split aliases."""
    shadows: dict[str, int] = field(default_factory=dict)
    """alias -> the version that gets a copy of its requests, for shadowed aliases."""

    @property
    def latest(self) -> int | None:
        return self.versions[-1] if self.versions else None

    @property
    def default_version(self) -> int | None:
        """The version served by default: the production alias, else the newest."""
        return self.served_version("production")

    def served_version(self, alias: str) -> int | None:
        """The version a server following `alias` answers with: that alias, else the newest."""
        return self.aliases.get(alias, self.latest)


@dataclass(frozen=True)
class RolloutRecord:
    """A rollout as stored (registry/rollouts.py); what its plan and gates mean is rollout/'s."""

    id: int
    model: str
    candidate: int
    baseline: int
    plan: str
    gates: dict[str, Any]
    step: int
    step_started_at: datetime
    extensions: int
    status: str
    """running or paused (active); promoted, rolled-back or aborted (ended)."""
    reason: str
    marks: dict[str, Any] | None
    verdict: dict[str, Any] | None
    actor: str
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


ACTIVE = ("running", "paused")


@dataclass(frozen=True)
class Event:
    model: str
    kind: str
    version: int | None
    from_version: int | None
    actor: str
    detail: str
    created_at: datetime
    reason: str = ""


def _reference_summary(profile: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a manifest shows of a reference profile: where it came from, not every bin."""
    if profile is None:
        return None
    return {k: v for k, v in profile.items() if k in ("source", "rows", "features", "created_at")}


@dataclass(frozen=True)
class TokenRecord:
    """A scoped API token as stored: what it may do, on which models, how fast; the secret's hash only."""

    name: str
    scopes: tuple[str, ...]
    models: tuple[str, ...] | None
    """The models it may be used on; None means every model."""
    rate_per_s: float | None
    """Requests per second it may make; None means unlimited."""
    burst: int | None
    sha256: str
    """hashlib.sha256 of the secret (tokens.hash_token); the secret itself is never stored."""
    created_at: datetime


@dataclass(frozen=True)
class ScheduleRecord:
    """A `batch run` fired by cron (registry/jobs.py stores it; batch/schedule.py fires it)."""

    name: str
    cron: str
    args: tuple[str, ...]
    """The `batch run` arguments, the model reference first; {date}, {time} and {datetime} in them
    stand for the firing's."""
    folder: str | None
    """Where relative paths in `args` are read from: the folder the schedule was added in."""
    actor: str
    created_at: datetime
    fired_at: datetime | None
    """The time of its last firing (the time cron named, not when the scheduler got to it)."""

    @property
    def ref(self) -> str:
        return self.args[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "cron": self.cron, "args": list(self.args), "folder": self.folder,
            "actor": self.actor, "created_at": self.created_at.isoformat(),
            "fired_at": self.fired_at.isoformat() if self.fired_at else None,
        }  # fmt: skip


@dataclass(frozen=True)
class JobRecord:
    """One `batch run`, by hand or of a schedule, as the registry recorded it (registry/jobs.py)."""

    id: int
    schedule: str | None
    ref: str
    """The reference as given: digits:production, digits:3, digits."""
    model: str
    version: int | None
    """The version the reference stood for when the job ran; None when it was never resolved."""
    outcome: str
    """running, succeeded or failed; skipped (a firing whose schedule's job was still running); lost
    (running, but its process is gone from its host)."""
    started_at: datetime
    ended_at: datetime | None
    rows: int | None
    errors: int | None
    output: str
    message: str
    pid: int | None
    host: str | None
    actor: str

    @property
    def seconds(self) -> float | None:
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "schedule": self.schedule, "ref": self.ref, "model": self.model,
            "version": self.version, "outcome": self.outcome, "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None, "seconds": self.seconds,
            "rows": self.rows, "errors": self.errors, "output": self.output, "message": self.message,
            "pid": self.pid, "host": self.host, "actor": self.actor,
        }  # fmt: skip

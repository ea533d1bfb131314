"""What one model is served as: its settings, default version, the records its policy serves and
the versions resident, read from the registry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from shipyard.config import ModelServing
from shipyard.errors import InvalidInput, NotFound
from shipyard.registry import ModelSummary, Registry, VersionRecord
from shipyard.rollout.router import Split
from shipyard.runtime.loading import LoadedVersion
from shipyard.runtime.policy import wanted_versions


@dataclass
class ServedModel:
    name: str
    serving: ModelServing
    default: int
    records: dict[int, VersionRecord]
    """Every version the policy serves, resident or not."""
    versions: dict[int, LoadedVersion] = field(default_factory=dict)
    """The resident ones, ready to answer."""
    loading: dict[int, asyncio.Task[LoadedVersion]] = field(default_factory=dict)
    waiting: dict[int, int] = field(default_factory=dict)
    """Requests waiting for a version's load: it is not idle for them between its load and their turn."""
    split: Split | None = None
    """How the requests that name no version are shared among versions (None: all to `default`)."""
    shadow: int | None = None
    """The version that gets a copy of the requests that name no version (rollout/shadow.py)."""


def read_served(
    registry: Registry, name: str, defaults: ModelServing, alias: str, summary: ModelSummary | None = None
) -> ServedModel:
    """A model as the registry describes it now (blocking reads): the server's defaults under the
    model's own settings, the version `alias` names (else the newest) and its traffic split, the
    records its policy keeps (and every version the split sends traffic to)."""
    summary = summary or registry.model(name)
    try:
        serving = defaults.model_copy(update=summary.serving)
        serving = ModelServing.model_validate(serving.model_dump())
    except ValueError as exc:
        raise InvalidInput(f"model {name!r} has bad serving settings: {exc}") from None
    default = summary.served_version(alias)
    if default is None:
        raise NotFound(f"model {name!r} has no versions")
    shares = summary.splits.get(alias)
    split = Split.from_dict(shares) if shares else None
    shadow = summary.shadows.get(alias)
    keep = wanted_versions(serving.versions, summary.versions, default)
    if split is not None:
        keep |= set(split.versions) & set(summary.versions)
    if shadow is not None:
        keep |= {shadow} & set(summary.versions)
    records = {r.number: r for r in registry.versions(name) if r.number in keep}
    if split is not None and not set(split.versions) <= set(records):
        split = None  # a version it names is gone (the registry ends such a split): the default serves
    return ServedModel(
        name, serving, default, records, split=split, shadow=shadow if shadow in records else None
    )

"""Versions of models, their aliases and history, API tokens, batch jobs and their schedules, and the
content-addressed artifacts."""

from shipyard.registry.artifacts import ArtifactStore
from shipyard.registry.records import (
    DatasetInfo,
    Event,
    JobRecord,
    ModelSummary,
    RolloutRecord,
    ScheduleRecord,
    TokenRecord,
    VersionRecord,
)
from shipyard.registry.store import Registry, parse_ref

__all__ = [
    "ArtifactStore",
    "DatasetInfo",
    "Event",
    "JobRecord",
    "ModelSummary",
    "Registry",
    "RolloutRecord",
    "ScheduleRecord",
    "TokenRecord",
    "VersionRecord",
    "parse_ref",
]

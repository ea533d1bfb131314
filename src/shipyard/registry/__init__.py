"""Versions of models, their aliases and history, API tokens, and the content-addressed artifacts."""

from shipyard.registry.artifacts import ArtifactStore
from shipyard.registry.records import (
    DatasetInfo,
    Event,
    ModelSummary,
    RolloutRecord,
    TokenRecord,
    VersionRecord,
)
from shipyard.registry.store import Registry, parse_ref

__all__ = [
    "ArtifactStore",
    "DatasetInfo",
    "Event",
    "ModelSummary",
    "Registry",
    "RolloutRecord",
    "TokenRecord",
    "VersionRecord",
    "parse_ref",
]

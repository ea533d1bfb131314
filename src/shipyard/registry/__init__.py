"""Versions of models, their aliases and history, and the content-addressed artifacts behind them."""

from shipyard.registry.artifacts import ArtifactStore
from shipyard.registry.records import DatasetInfo, Event, ModelSummary, VersionRecord
from shipyard.registry.store import Registry, parse_ref

__all__ = [
    "ArtifactStore",
    "DatasetInfo",
    "Event",
    "ModelSummary",
    "Registry",
    "VersionRecord",
    "parse_ref",
]

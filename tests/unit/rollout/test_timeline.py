"""Which versions were live when (rollout/timeline.py), replayed from a real registry's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shipyard.registry import Registry
from shipyard.rollout.router import Split
from shipyard.rollout.timeline import traffic_at
from tests.conftest import register_digits


def now(registry: Registry) -> datetime:
    """A moment after every event so far (and before any later one)."""
    return registry.history("digits")[-1].created_at + timedelta(microseconds=1)


def test_the_traffic_of_any_moment_is_replayed(registry: Registry) -> None:
    for _ in range(3):
        register_digits(registry)
    moments = {"before": now(registry)}
    registry.deploy("digits", 1)
    moments["deployed"] = now(registry)
    registry.set_split("digits", {2: 10})
    moments["canary"] = now(registry)
    registry.set_split("digits", {2: 50})
    moments["half"] = now(registry)
    registry.deploy("digits", 2)  # ends the split
    moments["promoted"] = now(registry)
    registry.set_alias("digits", 3, "staging")
    registry.set_split("digits", {3: 5})
    moments["second canary"] = now(registry)
    registry.delete("digits", 3)  # staging goes, and the split with it
    moments["deleted"] = now(registry)
    events = registry.history("digits")

    def at(moment: str) -> dict[str, tuple[tuple[int, float], ...]]:
        return {alias: live.shares() for alias, live in traffic_at(events, moments[moment]).items()}

    assert at("before") == {}
    assert at("deployed") == {"production": ((1, 100.0),)}
    assert at("canary") == {"production": ((1, 90.0), (2, 10.0))}
    assert at("half") == {"production": ((1, 50.0), (2, 50.0))}
    assert at("promoted") == {"production": ((2, 100.0),)}
    assert at("second canary") == {"production": ((2, 95.0), (3, 5.0)), "staging": ((3, 100.0),)}
    assert at("deleted") == {"production": ((2, 100.0),)}
    live = traffic_at(events, moments["half"])["production"]
    assert live.split == Split.of({1: 50, 2: 50}) and live.since <= moments["half"]
    assert traffic_at(events, datetime(2000, 1, 1, tzinfo=UTC)) == {}

"""Which versions were live when: a model's traffic at any past moment, replayed from its history.

Every change to what serves is an event (registry/aliases.py): an alias moved (alias, restore,
deploy, rollback; the detail names the alias), a split set or ended (`split`, the detail `alias:
1=80%, 2=20%` or `alias: ended`), a version or the model deleted (its aliases go with it). Replaying
them up to a moment gives each alias's version and split then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from shipyard.errors import InvalidInput
from shipyard.registry import Event
from shipyard.registry.store import ALIAS_CHANGES
from shipyard.rollout.router import Split


@dataclass(frozen=True)
class Live:
    """What an alias served at a moment: its version, and how its traffic was split (None: not)."""

    version: int
    split: Split | None
    since: datetime
    """When this last changed."""

    def shares(self) -> tuple[tuple[int, float], ...]:
        return self.split.shares if self.split is not None else ((self.version, 100.0),)


def traffic_at(events: Iterable[Event], at: datetime) -> dict[str, Live]:
    """Each alias's traffic at `at` (timezone-aware), from the model's history, oldest first."""
    live: dict[str, Live] = {}
    for event in events:
        if event.created_at > at:
            break
        if event.kind in ALIAS_CHANGES and event.version is not None:
            live[event.detail] = Live(event.version, None, event.created_at)
        elif event.kind == "split":
            alias, _, shares = event.detail.partition(": ")
            if alias in live:
                live[alias] = Live(live[alias].version, _split(shares), event.created_at)
        elif event.kind == "deleted":
            gone = [a for a, now in live.items() if event.version is None or now.version == event.version]
            for alias in gone:
                del live[alias]
    return live


def _split(text: str) -> Split | None:
    """`1=80%, 2=20%` as a Split; `ended` (or anything unreadable) as none."""
    try:
        pairs = (part.strip().removesuffix("%").split("=") for part in text.split(","))
        return Split.of({int(version): float(share) for version, share in pairs})
    except (ValueError, InvalidInput):
        return None

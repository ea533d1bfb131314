"""The memory budget alone: what a version will cost, which idle version goes to make room, and
waiting for one to become idle. (test_memory_budget.py runs it inside the manager, on real models.)"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from shipyard.errors import Overloaded, Unavailable
from shipyard.registry import VersionRecord
from shipyard.runtime.budget import MemoryBudget
from shipyard.runtime.memory import MB
from tests.conftest import DIGITS_SIGNATURE


def record(number: int, size_mb: int) -> VersionRecord:
    return VersionRecord(
        model="m",
        number=number,
        sha256=f"sha{number}",
        size=size_mb * MB,
        framework="onnx",
        signature=DIGITS_SIGNATURE,
        labels=None,
        check={},
        description="",
        dataset=None,
        created_at=datetime.now(UTC),
    )


@dataclass
class Resident:
    """A resident version as the budget sees one: its record, its cost, when it last answered."""

    record: VersionRecord
    memory_bytes: int
    last_used: float
    busy: bool = False


class Server:
    """The resident versions, and the three views of them make_room takes."""

    def __init__(self, *versions: Resident) -> None:
        self.versions = list(versions)
        self.drained: list[int] = []
        self.asked = asyncio.Event()

    def resident_bytes(self) -> int:
        return sum(v.memory_bytes for v in self.versions)

    def idle(self, keep: Resident | None) -> list[tuple[None, Resident]]:
        self.asked.set()
        return [(None, v) for v in self.versions if not v.busy and v is not keep]

    async def drain(self, _served: None, versions: list[Resident]) -> None:
        for version in versions:
            self.versions.remove(version)
            self.drained.append(version.record.number)


def test_a_version_costs_what_it_cost_last_time_else_its_size_times_what_loading_costs_per_byte() -> None:
    budget = MemoryBudget(1000, room_wait_s=1)
    assert budget.estimate(record(1, 10)) == 10 * MB  # nothing learnt yet: its size
    budget.learn(record(1, 10), 40 * MB)
    budget.learn(record(2, 30), 80 * MB)
    assert budget.estimate(record(1, 10)) == 40 * MB
    assert budget.estimate(record(3, 20)) == 20 * MB * 3  # 120 MB cost for 40 MB of models so far
    assert budget.need(record(3, 20)) == 60 * MB


def test_a_version_known_not_to_fit_is_refused_and_an_unknown_one_needs_at_most_the_budget() -> None:
    budget = MemoryBudget(100, room_wait_s=1)
    budget.learn(record(1, 10), 150 * MB)
    with pytest.raises(Unavailable, match="needs about 150 MB, more than the whole memory budget"):
        budget.need(record(1, 10))
    assert budget.need(record(2, 500)) == 100 * MB


def test_the_least_recently_used_idle_versions_go_until_the_new_one_fits() -> None:
    server = Server(
        Resident(record(1, 1), 40 * MB, last_used=3.0),
        Resident(record(2, 1), 40 * MB, last_used=1.0),
        Resident(record(3, 1), 40 * MB, last_used=2.0, busy=True),
        Resident(record(4, 1), 40 * MB, last_used=0.5),
    )
    budget = MemoryBudget(200, room_wait_s=1)
    budget.learn(record(5, 1), 90 * MB)

    asyncio.run(budget.make_room(record(5, 1), server.resident_bytes, server.idle, server.drain))
    assert server.drained == [4, 2]  # 160 MB resident + 90 MB: two idle ones go, oldest first
    assert server.resident_bytes() + 90 * MB <= 200 * MB


def test_after_a_load_room_is_made_only_from_idle_versions_and_never_waited_for() -> None:
    loaded = Resident(record(2, 1), 120 * MB, last_used=9.0)
    server = Server(Resident(record(1, 1), 100 * MB, last_used=1.0, busy=True), loaded)
    budget = MemoryBudget(200, room_wait_s=60)

    asyncio.run(budget.make_room(loaded.record, server.resident_bytes, server.idle, server.drain, loaded))
    assert server.drained == [] and server.resident_bytes() > 200 * MB  # over for now, not stuck


def test_a_load_waits_for_a_busy_version_to_become_idle() -> None:
    busy = Resident(record(1, 1), 100 * MB, last_used=1.0, busy=True)
    server = Server(busy)
    budget = MemoryBudget(150, room_wait_s=60)
    budget.learn(record(2, 1), 100 * MB)

    async def body() -> None:
        making = asyncio.create_task(
            budget.make_room(record(2, 1), server.resident_bytes, server.idle, server.drain)
        )
        await server.asked.wait()  # it found nothing idle, and waits
        assert not making.done()
        busy.busy = False  # its last request finished
        budget.released()
        await making

    asyncio.run(body())
    assert server.drained == [1]


def test_a_load_that_finds_every_version_busy_past_its_wait_is_overloaded() -> None:
    server = Server(Resident(record(1, 1), 100 * MB, last_used=1.0, busy=True))
    budget = MemoryBudget(150, room_wait_s=0)
    budget.learn(record(2, 1), 100 * MB)
    making = budget.make_room(record(2, 1), server.resident_bytes, server.idle, server.drain)
    with pytest.raises(Overloaded, match=r"m:2 could not load within 0 s"):
        asyncio.run(making)
    assert server.drained == []

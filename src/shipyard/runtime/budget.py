"""The memory budget's bookkeeping: what each artifact costs once loaded, what an unseen one will, and
when a version becomes idle (so that a load waiting for room can try again)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from shipyard.errors import Overloaded, Unavailable
from shipyard.registry import VersionRecord
from shipyard.runtime.memory import MB

log = logging.getLogger(__name__)


class MemoryBudget:
    def __init__(self, limit_mb: int, room_wait_s: float) -> None:
        self.limit = limit_mb * MB
        self.room_wait_s = room_wait_s
        self._costs: dict[str, tuple[int, int]] = {}  # artifact -> (memory when last loaded, size)
        self._idle = asyncio.Event()  # set when a version's last request finishes

    def learn(self, record: VersionRecord, cost: int) -> None:
        self._costs[record.sha256] = (cost, record.size)

    def estimate(self, record: VersionRecord) -> int:
        """What a version will cost: what it cost last time, else its size times what loading has cost
        per byte of model so far (ORT keeps the weights, often a pre-packed copy, and its buffers)."""
        if record.sha256 in self._costs:
            return self._costs[record.sha256][0]
        costs, sizes = (sum(x) for x in zip(*self._costs.values(), strict=True)) if self._costs else (1, 1)
        return int(record.size * max(1.0, costs / max(sizes, 1)))

    def need(self, record: VersionRecord) -> int:
        """Room to make before loading `record`; Unavailable when it is known not to fit at all."""
        known = self._costs.get(record.sha256)
        if known is not None and known[0] > self.limit:
            raise Unavailable(
                f"{record.ref} needs about {known[0] / MB:.0f} MB, more than the whole memory budget "
                f"({self.limit / MB:.0f} MB)"
            )
        return min(self.estimate(record), self.limit)

    async def make_room(
        self,
        record: VersionRecord,
        resident_bytes: Callable[[], int],
        idle: Callable[[Any], list[tuple[Any, Any]]],
        drain: Callable[[Any, list[Any]], Awaitable[None]],
        keep: Any = None,
    ) -> None:
        """Drain the least recently used of the `idle` versions until `record` fits (or, with `keep`
        just loaded, until everything does); when none is idle, wait for one until room_wait_s."""
        need = 0 if keep is not None else self.need(record)
        deadline = asyncio.get_running_loop().time() + self.room_wait_s
        while resident_bytes() + need > self.limit:
            candidates = idle(keep)
            if not candidates:
                if keep is not None:
                    return  # over for now: the next load makes room again
                await self.wait_for_idle(record, deadline)
                continue
            served, victim = min(candidates, key=lambda sv: sv[1].last_used)
            log.info("unloading %s to stay under the memory budget", victim.record.ref)
            await drain(served, [victim])

    def released(self) -> None:
        """A version's last request finished: it can be unloaded now."""
        self._idle.set()

    async def wait_for_idle(self, record: VersionRecord, deadline: float) -> None:
        """Every resident version is busy: wait for one to become idle, or Overloaded at `deadline`."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise Overloaded(
                f"the memory budget ({self.limit / MB:.0f} MB) is taken by versions answering "
                f"requests; {record.ref} could not load within {self.room_wait_s:g} s"
            )
        self._idle.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), remaining)

"""Which versions hold memory: loading them, unloading them, and the loads that failed.

A version loads once at a time: a request for one that is not resident starts its load and every
other request for it waits on that same load. Loads run one after another, so what the process grows
by during one is that version's cost (runtime/loading.py). Within a memory budget (runtime/budget.py)
the least recently used idle versions drain first to make room. A version that failed to load is
remembered, with why, and not tried again until it is asked for again (`retry`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from shipyard.config import ModelServing
from shipyard.errors import ShipyardError, Unavailable
from shipyard.registry import Registry, VersionRecord
from shipyard.runtime.batcher import BatchObserver
from shipyard.runtime.budget import MemoryBudget
from shipyard.runtime.loading import LoadedVersion, build_version, settled
from shipyard.runtime.memory import MB, release_free_memory
from shipyard.runtime.served import ServedModel
from shipyard.runtime.session import RunnerOptions

log = logging.getLogger(__name__)


class Residency:
    def __init__(
        self,
        registry: Registry,
        options: RunnerOptions,
        *,
        budget: MemoryBudget | None = None,
        observer: Callable[[VersionRecord], BatchObserver] | None = None,
        cost: Callable[[LoadedVersion], int] | None = None,
    ) -> None:
        """`cost`: what a loaded version counts against the budget; by default what loading it was
        measured to add to the process (build_version)."""
        self._registry = registry
        self._options = options
        self.budget = budget
        self._observer = observer
        self.cost = cost or (lambda loaded: loaded.memory_bytes)
        self._resident: dict[int, tuple[ServedModel, LoadedVersion]] = {}  # by id(LoadedVersion)
        self._failed: dict[tuple[str, int], str] = {}  # versions that failed to load, and why
        self.lock = asyncio.Lock()  # one load at a time: its memory growth is its own

    @property
    def budgeted(self) -> bool:
        """Whether versions are resident only while they fit a memory budget."""
        return self.budget is not None

    def eager(self, served: ServedModel) -> list[int]:
        """Versions loaded ahead of requests: all the policy serves, or only the default within a budget."""
        others = sorted(n for n in served.records if n != served.default)
        return [served.default] if self.budget is not None else [served.default, *others]

    # -- loading ---------------------------------------------------------------------------------

    def load_eager(self, served: ServedModel) -> None:
        """Before serving (blocking): the eager versions that fit; one that fails is recorded, and
        the others load all the same."""
        for number in self.eager(served):
            record = served.records[number]
            if not self._fits(record):
                log.info("%s waits for its first request (memory budget)", record.ref)
                continue
            try:
                self.add(served, self.build(record, served.serving))
            except ShipyardError as exc:  # one broken version must not keep the others from serving
                self._load_failed(record, exc)

    async def load(self, served: ServedModel, number: int) -> None:
        """Load one version of `served`, or join the load of it already under way."""
        why = self._failed.get((served.name, number))
        if why is not None:
            raise Unavailable(f"{served.name}:{number} failed to load: {why}")
        task = served.loading.get(number)
        if task is None:
            task = asyncio.create_task(self._load_now(served, number), name=f"load {served.name}:{number}")
            served.loading[number] = task
            task.add_done_callback(lambda _t: served.loading.pop(number, None))
        served.waiting[number] = served.waiting.get(number, 0) + 1
        try:
            await asyncio.shield(task)  # a caller that gives up does not cancel the load for the others
        finally:
            served.waiting[number] -= 1
            if not served.waiting[number]:
                del served.waiting[number]

    async def _load_now(self, served: ServedModel, number: int) -> LoadedVersion:
        record = served.records[number]
        async with self.lock:
            if number in served.versions:
                return served.versions[number]
            await self.make_room(record)
            try:
                loaded = await asyncio.to_thread(self.build, record, served.serving)
            except ShipyardError as exc:
                await asyncio.to_thread(self._load_failed, record, exc)
                raise
            await loaded.batcher.start()
            self.add(served, loaded)
            await self.make_room(record, keep=loaded)
            log.info("%s loaded (%.0f MB)", record.ref, loaded.memory_bytes / MB)
            return loaded

    async def stage(self, served: ServedModel, numbers: Iterable[int] | None = None) -> None:
        """Load `numbers` of `served` (its eager versions when None); on failure what this loaded goes,
        and the versions that were resident before stay (a failed deploy leaves the default serving)."""
        before = set(served.versions)
        try:
            for number in self.eager(served) if numbers is None else numbers:
                await self.load(served, number)
        except BaseException:
            await self.drain(served, [v for n, v in served.versions.items() if n not in before])
            raise

    def build(self, record: VersionRecord, serving: ModelServing) -> LoadedVersion:
        """Verify, load and warm up one version (blocking); its batcher still has to be started."""
        observer = self._observer(record) if self._observer else None
        return build_version(self._registry, record, serving, self._options, observer)

    def add(self, served: ServedModel, loaded: LoadedVersion) -> None:
        """`loaded` answers for its version of `served` from now on, and counts against the budget."""
        loaded.memory_bytes = self.cost(loaded)
        loaded.last_used = time.monotonic()  # just loaded: the last to go, not the first
        served.versions[loaded.number] = loaded
        self._resident[id(loaded)] = (served, loaded)
        if self.budget is not None:
            self.budget.learn(loaded.record, loaded.memory_bytes)

    def replace(self, served: ServedModel, old: LoadedVersion, new: LoadedVersion) -> None:
        """`new` answers for `old`'s version from now on; `old` no longer counts (it is retired apart)."""
        new.last_used = old.last_used
        served.versions[old.number] = new
        self._resident.pop(id(old), None)
        self._resident[id(new)] = (served, new)
        if self.budget is not None and new.runner is not old.runner:
            self.budget.learn(new.record, new.memory_bytes)

    # -- loads that failed -----------------------------------------------------------------------

    def _load_failed(self, record: VersionRecord, exc: ShipyardError) -> None:
        """Remember why (readiness and the index say so) and record it in the history (blocking)."""
        log.error("%s cannot be loaded, still serving the others: %s", record.ref, exc)
        self._failed[record.model, record.number] = exc.message
        try:
            self._registry.record(record.model, "load-failed", record.number, exc.message)
        except ShipyardError as problem:
            log.error("%s: the history could not record it: %s", record.ref, problem)

    def failure(self, name: str, number: int) -> str | None:
        """Why the version failed to load here, or None when it did not."""
        return self._failed.get((name, number))

    def down(self) -> dict[str, str]:
        """Versions that should serve here and cannot: `name:version` -> why."""
        return {f"{name}:{number}": why for (name, number), why in sorted(self._failed.items())}

    def retry(self, name: str, numbers: Iterable[int]) -> None:
        """Versions asked for again after a failed load: the next load tries them again."""
        for number in numbers:
            self._failed.pop((name, number), None)

    # -- unloading and the memory budget -------------------------------------------------------

    async def drain(self, served: ServedModel, versions: Iterable[LoadedVersion]) -> None:
        """Stop routing to `versions`, let their queued requests finish, then free their memory."""
        doomed = list(versions)
        for version in doomed:
            if served.versions.get(version.number) is version:
                del served.versions[version.number]  # new requests no longer reach it ...
        for version in doomed:
            await settled(version)  # ... those decoding pictures reach its batcher ...
            await version.batcher.aclose()  # ... and those it has queued finish first
            await asyncio.to_thread(version.runner.unload)
            self._resident.pop(id(version), None)
        await asyncio.to_thread(release_free_memory)

    def released(self) -> None:
        """A version's last request finished: a load waiting for room may unload it now."""
        if self.budget is not None:
            self.budget.released()

    def resident_bytes(self) -> int:
        """What the resident versions count against the budget, in bytes."""
        return sum(v.memory_bytes for _, v in self._resident.values())

    async def make_room(self, record: VersionRecord, keep: LoadedVersion | None = None) -> None:
        """Unload the least recently used idle versions until `record` fits in the budget (or, once it
        is loaded as `keep`, until everything does: the estimate before a first load can be short)."""
        if self.budget is not None:
            await self.budget.make_room(record, self.resident_bytes, self._idle, self.drain, keep)

    async def room_beside(self, old: LoadedVersion) -> None:
        """Within a budget, room for a second copy of `old` (never made by unloading `old` itself)."""
        if self.budget is not None:
            idle = self._idle
            await self.budget.make_room(old.record, self.resident_bytes, lambda _: idle(old), self.drain)

    def _idle(self, keep: LoadedVersion | None) -> list[tuple[ServedModel, LoadedVersion]]:
        """Resident versions no request holds or waits for: what may be unloaded."""
        return [
            (s, v)
            for s, v in self._resident.values()
            if v.in_flight == 0 and not s.waiting.get(v.number) and v is not keep
        ]

    def _fits(self, record: VersionRecord) -> bool:
        budget = self.budget
        return budget is None or self.resident_bytes() + budget.estimate(record) <= budget.limit

    # -- every resident version at once --------------------------------------------------------

    @property
    def empty(self) -> bool:
        """Whether no version is resident."""
        return not self._resident

    async def start(self) -> None:
        """Start every resident version's batcher on the running event loop."""
        for _, version in self._resident.values():
            await version.batcher.start()

    async def aclose(self) -> None:
        """Finish the queued requests of every resident version, then stop its batcher."""
        for _, version in list(self._resident.values()):
            await version.batcher.aclose()

    def unload_all(self) -> None:
        for _, version in self._resident.values():
            version.runner.unload()
        self._resident.clear()
        release_free_memory()

"""The model manager: which versions are resident, and which one answers a request.

A served model has a default version (the one its alias points at: `production` unless the server
follows another) and the versions its policy serves. Loading verifies the artifact against its hash,
builds a runner and warms it up with one request, so a version is READY only once it has answered.

With a memory budget, versions are resident only while they fit: a request for one that is not loads
it (and waits, with any other request for it, on that one load), and the least recently used idle
version is unloaded to make room. Every request holds its version (`use()`) so that a version with
requests in flight is never unloaded under them. What the registry asks of a running server (new
versions, a moved alias, changed settings) is followed in runtime/follow.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable

from shipyard.config import ModelServing
from shipyard.errors import NotFound, ShipyardError, Unavailable
from shipyard.registry import ModelSummary, Registry, VersionRecord
from shipyard.registry.store import PRODUCTION
from shipyard.runtime.batcher import BatchObserver
from shipyard.runtime.budget import MemoryBudget
from shipyard.runtime.follow import Follower
from shipyard.runtime.loading import LoadedVersion, batch_settings, build_version, retire, with_batcher
from shipyard.runtime.memory import MB, release_free_memory
from shipyard.runtime.served import ServedModel, gauges, read_served, state_of
from shipyard.runtime.session import RunnerOptions

log = logging.getLogger(__name__)


class ModelManager:
    def __init__(
        self,
        registry: Registry,
        options: RunnerOptions,
        serving: ModelServing | None = None,
        watch_interval_s: float = 0.0,
        *,
        alias: str = PRODUCTION,
        memory_budget_mb: int | None = None,
        observer: Callable[[VersionRecord], BatchObserver] | None = None,
        cost: Callable[[LoadedVersion], int] | None = None,
        room_wait_s: float = 30.0,
    ) -> None:
        """`cost`: what a loaded version counts against the memory budget; by default what loading it
        was measured to add to the process (build_version). `room_wait_s`: how long a load waits for a
        version to become idle when every resident one is busy, before Overloaded (503)."""
        self._registry = registry
        self._options = options
        self._serving = serving or ModelServing()
        self.alias = alias
        self._budget = MemoryBudget(memory_budget_mb, room_wait_s) if memory_budget_mb else None
        self._observer = observer
        self._cost = cost or (lambda loaded: loaded.memory_bytes)
        self._models: dict[str, ServedModel] = {}
        self._resident: dict[int, tuple[ServedModel, LoadedVersion]] = {}  # by id(LoadedVersion)
        self._failed: dict[tuple[str, int], str] = {}  # versions that failed to load, and why
        self._load_lock = asyncio.Lock()  # one load at a time: its memory growth is its own
        self._started = False
        self._watch_interval_s = watch_interval_s
        self._follower = Follower(self)
        self._watcher: asyncio.Task[None] | None = None

    # -- start-up and shutdown ---------------------------------------------------------------------

    def load(self, names: Iterable[str] | None = None) -> None:
        """Before serving: load the named models (all when None); errors surface here, not later.
        Within a memory budget, default versions come first and the rest load when first asked for."""
        wanted = list(names) if names else [m.name for m in self._registry.models()]
        if not wanted:
            raise NotFound("no models are registered: import one with `shipyard model import`")
        for name in wanted:
            self._models[name] = served = self.read(name)
            for number in self.eager(served):
                record = served.records[number]
                if not self._fits(record):
                    log.info("%s waits for its first request (memory budget)", record.ref)
                    continue
                try:
                    self._add(served, self._build(record, served.serving))
                except ShipyardError as exc:  # one broken version must not keep the others from serving
                    self._load_failed(record, exc)
            log.info("serving %s versions %s (default %s)", name, sorted(served.records), served.default)
        if self._failed and not self._resident and self._budget is None:
            reasons = "; ".join(f"{n}:{v}: {why}" for (n, v), why in sorted(self._failed.items()))
            raise Unavailable(f"no model could be loaded: {reasons}")

    async def start(self) -> None:
        """Start every resident version's batcher on the running event loop, and the registry watch."""
        for _, version in self._resident.values():
            await version.batcher.start()
        self._started = True
        if self._watch_interval_s > 0:
            self._watcher = asyncio.create_task(
                self._follower.watch(self._watch_interval_s), name="registry-watch"
            )

    async def aclose(self) -> None:
        """Stop following the registry, finish queued requests, then stop the batchers."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        loads = [task for served in self._models.values() for task in served.loading.values()]
        for task in loads:
            task.cancel()
        await asyncio.gather(*loads, return_exceptions=True)
        for _, version in list(self._resident.values()):
            await version.batcher.aclose()
        self._started = False

    def unload_all(self) -> None:
        for _, version in self._resident.values():
            version.runner.unload()
        self._resident.clear()
        self._models.clear()
        release_free_memory()

    # -- answering requests ----------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return sorted(self._models)

    @property
    def models(self) -> dict[str, ServedModel]:
        """Served models by name (read only)."""
        return self._models

    def served(self, name: str) -> ServedModel:
        try:
            return self._models[name]
        except KeyError:
            raise NotFound(f"model {name!r} is not served here") from None

    def record(self, name: str, version: str | int | None = None) -> VersionRecord:
        """The manifest of the version that answers for `name` (resident or not): no loading."""
        served = self.served(name)
        return served.records[self._number(served, version)]

    def resident(self, name: str, version: str | int | None = None) -> bool:
        served = self.served(name)
        return self._number(served, version) in served.versions

    @contextlib.asynccontextmanager
    async def use(self, name: str, version: str | int | None = None) -> AsyncIterator[LoadedVersion]:
        """The version that answers (loaded first if it is not resident), held while the block runs."""
        served = self.served(name)
        number = self._number(served, version)
        loaded = served.versions.get(number)
        while loaded is None:  # not resident: load it, or wait for the load under way
            await self.load_version(served, number)
            loaded = served.versions.get(number)
        loaded.in_flight += 1
        loaded.last_used = time.monotonic()
        try:
            yield loaded
        finally:
            loaded.in_flight -= 1
            if not loaded.in_flight and self._budget is not None:
                self._budget.released()

    def _number(self, served: ServedModel, version: str | int | None) -> int:
        if version is None or version == "":
            return served.default
        text = str(version)
        if not (text.isascii() and text.isdigit()):
            raise NotFound(f"model {served.name!r} has no version {text!r}: versions are numbers")
        if int(text) not in served.records:
            raise NotFound(f"model {served.name!r} has no version {text} served here")
        return int(text)

    def ready(self, name: str | None = None) -> bool:
        if not self._started:
            return False
        if name is None:
            return bool(self._models)
        return name in self._models and self.resident(name)

    # -- loading and unloading -------------------------------------------------------------------

    async def load_version(self, served: ServedModel, number: int) -> None:
        """Load one version of `served`, or join the load of it already under way."""
        if (served.name, number) in self._failed:
            raise Unavailable(f"{served.name}:{number} failed to load: {self._failed[served.name, number]}")
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
        async with self._load_lock:
            if number in served.versions:
                return served.versions[number]
            await self._make_room(record)
            try:
                loaded = await asyncio.to_thread(self._build, record, served.serving)
            except ShipyardError as exc:
                await asyncio.to_thread(self._load_failed, record, exc)
                raise
            await loaded.batcher.start()
            self._add(served, loaded)
            await self._make_room(record, keep=loaded)
            log.info("%s loaded (%.0f MB)", record.ref, loaded.memory_bytes / MB)
            return loaded

    def _load_failed(self, record: VersionRecord, exc: ShipyardError) -> None:
        """Remember why (readiness and the index say so) and record it in the history (blocking)."""
        log.error("%s cannot be loaded, still serving the others: %s", record.ref, exc)
        self._failed[record.model, record.number] = exc.message
        try:
            self._registry.record(record.model, "load-failed", record.number, exc.message)
        except ShipyardError as problem:
            log.error("%s: the history could not record it: %s", record.ref, problem)

    def down(self) -> dict[str, str]:
        """Versions that should serve here and cannot: `name:version` -> why."""
        return {f"{name}:{number}": why for (name, number), why in sorted(self._failed.items())}

    def _build(self, record: VersionRecord, serving: ModelServing) -> LoadedVersion:
        observer = self._observer(record) if self._observer else None
        return build_version(self._registry, record, serving, self._options, observer)

    def _add(self, served: ServedModel, loaded: LoadedVersion) -> None:
        loaded.memory_bytes = self._cost(loaded)
        loaded.last_used = time.monotonic()  # just loaded: the last to go, not the first
        served.versions[loaded.number] = loaded
        self._resident[id(loaded)] = (served, loaded)
        if self._budget is not None:
            self._budget.learn(loaded.record, loaded.memory_bytes)

    def _resident_bytes(self) -> int:
        return sum(v.memory_bytes for _, v in self._resident.values())

    async def _make_room(self, record: VersionRecord, keep: LoadedVersion | None = None) -> None:
        """Unload the least recently used idle versions until `record` fits in the budget (or, once it
        is loaded as `keep`, until everything does: the estimate before a first load can be short)."""
        if self._budget is not None:
            await self._budget.make_room(record, self._resident_bytes, self._idle, self.drain, keep)

    def _idle(self, keep: LoadedVersion | None) -> list[tuple[ServedModel, LoadedVersion]]:
        """Resident versions no request holds or waits for: what may be unloaded."""
        return [
            (s, v)
            for s, v in self._resident.values()
            if v.in_flight == 0 and not s.waiting.get(v.number) and v is not keep
        ]

    def _fits(self, record: VersionRecord) -> bool:
        budget = self._budget
        return budget is None or self._resident_bytes() + budget.estimate(record) <= budget.limit

    async def drain(self, served: ServedModel, versions: Iterable[LoadedVersion]) -> None:
        """Stop routing to `versions`, let their queued requests finish, then free their memory."""
        doomed = list(versions)
        for version in doomed:
            if served.versions.get(version.number) is version:
                del served.versions[version.number]  # new requests no longer reach it ...
        for version in doomed:
            await version.batcher.aclose()  # ... and those it has queued finish first
            await asyncio.to_thread(version.runner.unload)
            self._resident.pop(id(version), None)
        await asyncio.to_thread(release_free_memory)

    # -- following the registry (runtime/follow.py) ------------------------------------------

    async def refresh(self, names: Iterable[str] | None = None) -> list[str]:
        """Bring the server in line with the registry now (what the watch does every interval)."""
        return await self._follower.refresh(names)

    def eager(self, served: ServedModel) -> list[int]:
        """Versions loaded ahead of requests: all the policy serves, or only the default within a budget."""
        others = sorted(n for n in served.records if n != served.default)
        return [served.default] if self._budget is not None else [served.default, *others]

    @property
    def budgeted(self) -> bool:
        """Whether versions are resident only while they fit a memory budget."""
        return self._budget is not None

    def failed(self, name: str, number: int) -> bool:
        """Whether the version failed to load here (and is not tried again until asked for)."""
        return (name, number) in self._failed

    async def reconfigure(self, served: ServedModel, serving: ModelServing) -> None:
        """Serve `served` with `serving` from now on, without a restart and without failing a request.

        Each resident version whose batching changes gets a new batcher on the same runner, or, when
        its instances change (threads and sessions), a new runner loaded and warmed up off the loop.
        Then, in one step, the settings and every new version take over, and the old versions drain
        (their queued requests finish) before they go. When a rebuild fails nothing changes."""
        async with self._load_lock:  # loads wait: one started now would build with the old settings
            if serving == served.serving:
                return  # another refresh got here first
            pairs: list[tuple[LoadedVersion, LoadedVersion]] = []  # (old, new)
            try:
                for old in list(served.versions.values()):
                    settings = batch_settings(serving, old.signature)
                    if settings == old.batcher.settings:
                        continue
                    if settings.instances == old.batcher.settings.instances:
                        new = with_batcher(old, settings)
                    else:
                        await self._room_beside(old)
                        new = await asyncio.to_thread(self._build, old.record, serving)
                        new.memory_bytes = self._cost(new)
                    pairs.append((old, new))
                    await new.batcher.start()
            except BaseException:
                for old, new in pairs:
                    await retire(new, keep_runner=new.runner is old.runner)
                raise
            live = self._models.get(served.name) is served  # not replaced or unloaded meanwhile
            if live:
                served.serving = serving
            swapped = {id(new) for old, new in pairs if live and served.versions.get(old.number) is old}
            for old, new in pairs:
                if id(new) in swapped:
                    new.last_used = old.last_used
                    served.versions[old.number] = new
                    self._resident.pop(id(old), None)
                    self._resident[id(new)] = (served, new)
                    if self._budget is not None and new.runner is not old.runner:
                        self._budget.learn(new.record, new.memory_bytes)
        for old, new in pairs:  # outside the lock: draining waits for the queued requests
            await retire(old if id(new) in swapped else new, keep_runner=new.runner is old.runner)
        await asyncio.to_thread(release_free_memory)

    async def _room_beside(self, old: LoadedVersion) -> None:
        """Within a budget, room for a second copy of `old` (never made by unloading `old` itself)."""
        if self._budget is not None:
            idle = self._idle
            await self._budget.make_room(old.record, self._resident_bytes, lambda _: idle(old), self.drain)

    # -- what the changes asked of this server (runtime/changes.py) build on -------------------

    @property
    def registry(self) -> Registry:
        return self._registry

    def read(self, name: str, summary: ModelSummary | None = None) -> ServedModel:
        """The model as the registry describes it now (blocking reads; `summary` when just read):
        the server's settings under the model's own, its default version, the records its policy keeps."""
        return read_served(self._registry, name, self._serving, self.alias, summary)

    def retry(self, name: str, numbers: Iterable[int]) -> None:
        """Versions asked for again after a failed load: the next load tries them again."""
        for number in numbers:
            self._failed.pop((name, number), None)

    async def stage(self, served: ServedModel, numbers: Iterable[int] | None = None) -> None:
        """Load `numbers` of `served` (its eager versions when None); on failure what this loaded goes,
        and the versions that were resident before stay (a failed deploy leaves the default serving)."""
        before = set(served.versions)
        try:
            for number in self.eager(served) if numbers is None else numbers:
                await self.load_version(served, number)
        except BaseException:
            await self.drain(served, [v for n, v in served.versions.items() if n not in before])
            raise

    def swap(self, name: str, fresh: ServedModel | None) -> ServedModel | None:
        """Serve `fresh` as `name` from now on (None: stop serving it); returns what served before."""
        old = self._models.pop(name, None)
        if fresh is not None:
            self._models[name] = fresh
        return old

    def state(self, name: str, number: int) -> tuple[str, str]:
        """(READY | LOADING | UNAVAILABLE, why not ready) of one version on this server."""
        if (name, number) in self._failed:
            return "UNAVAILABLE", f"failed to load: {self._failed[name, number]}"
        return state_of(self._models.get(name), number)

    def memory(self) -> dict[str, int]:
        """Resident versions and what each costs, in bytes (for the index and metrics)."""
        return {v.record.ref: v.memory_bytes for _, v in self._resident.values()}

    def gauges(self) -> dict[tuple[str, int], tuple[bool, int, int, int]]:
        """(model, version) -> (resident, memory bytes, queued, in flight), for the monitor's tick."""
        return gauges(self._models.values())

"""The model manager: the models a server serves, and the version that answers each request.

A served model has a default version (the one its alias points at: `production` unless the server
follows another) and the versions its policy serves. Every request holds the version that answers it
(`use()`), loaded first when it is not resident, so that a version with requests in flight is never
unloaded under them. The rest has a room of its own:

    rollout/router.py        which version answers (pure)
    runtime/residency.py     which versions hold memory: loads, unloads, failed loads, the budget
    runtime/follow.py        following the registry (new versions, a moved alias, changed settings)
    runtime/report.py        each version's state, and the gauges of the monitor's tick
    rollout/changes.py       load, unload, deploy and roll back while serving
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable

from shipyard.config import ModelServing
from shipyard.errors import NotFound, Unavailable
from shipyard.registry import ModelSummary, Registry, VersionRecord
from shipyard.registry.store import PRODUCTION
from shipyard.rollout.router import route, sticky_point
from shipyard.runtime import report
from shipyard.runtime.batcher import BatchObserver
from shipyard.runtime.budget import MemoryBudget
from shipyard.runtime.follow import Follower
from shipyard.runtime.loading import LoadedVersion
from shipyard.runtime.residency import Residency
from shipyard.runtime.served import ServedModel, read_served
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
        self._serving = serving or ModelServing()
        self.alias = alias
        budget = MemoryBudget(memory_budget_mb, room_wait_s) if memory_budget_mb else None
        self._residency = Residency(registry, options, budget=budget, observer=observer, cost=cost)
        self._models: dict[str, ServedModel] = {}
        self._started = False
        self._watch_interval_s = watch_interval_s
        self._follower = Follower(self, self._residency)
        self._watcher: asyncio.Task[None] | None = None

    @property
    def registry(self) -> Registry:
        return self._registry

    @property
    def residency(self) -> Residency:
        """Which versions hold memory: what changes and the registry watch load and drain through."""
        return self._residency

    # -- start-up and shutdown ---------------------------------------------------------------------

    def load(self, names: Iterable[str] | None = None) -> None:
        """Before serving: load the named models (all when None); errors surface here, not later.
        Within a memory budget, default versions come first and the rest load when first asked for."""
        wanted = list(names) if names else [m.name for m in self._registry.models()]
        if not wanted:
            raise NotFound("no models are registered: import one with `shipyard model import`")
        residency = self._residency
        for name in wanted:
            self._models[name] = served = self.read(name)
            residency.load_eager(served)
            log.info("serving %s versions %s (default %s)", name, sorted(served.records), served.default)
        down = residency.down()
        if down and residency.empty and not residency.budgeted:
            reasons = "; ".join(f"{ref}: {why}" for ref, why in down.items())
            raise Unavailable(f"no model could be loaded: {reasons}")

    async def start(self) -> None:
        """Start every resident version's batcher on the running event loop, and the registry watch."""
        await self._residency.start()
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
        await self._residency.aclose()
        self._started = False

    def unload_all(self) -> None:
        self._residency.unload_all()
        self._models.clear()

    # -- the models served ---------------------------------------------------------------------

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

    def read(self, name: str, summary: ModelSummary | None = None) -> ServedModel:
        """The model as the registry describes it now (blocking reads; `summary` when just read):
        the server's settings under the model's own, its default version, the records its policy keeps."""
        return read_served(self._registry, name, self._serving, self.alias, summary)

    def swap(self, name: str, fresh: ServedModel | None) -> ServedModel | None:
        """Serve `fresh` as `name` from now on (None: stop serving it); returns what served before."""
        old = self._models.pop(name, None)
        if fresh is not None:
            self._models[name] = fresh
        return old

    async def refresh(self, names: Iterable[str] | None = None) -> list[str]:
        """Bring the server in line with the registry now (what the watch does every interval)."""
        return await self._follower.refresh(names)

    # -- answering requests ----------------------------------------------------------------------

    def record(
        self, name: str, version: str | int | None = None, key: Callable[[], str | None] | None = None
    ) -> VersionRecord:
        """The manifest of the version that answers for `name` (resident or not): no loading. A request
        that names no version goes where the model's traffic split sends it: by its key (`key()`, read
        only then) when it has one (the same key, the same version), else at random."""
        served = self.served(name)
        split = served.split
        if split is None or version:
            return served.records[route(name, version, served.default, served.records)]
        found = None if key is None else key()
        point = random.random() if found is None else sticky_point(found)  # a share, not a secret
        number = route(name, None, served.default, served.records, split, point)
        return served.records.get(number) or served.records[served.default]  # one leaving: the default

    def use(self, name: str, version: str | int | None = None) -> Held:
        """The version that answers (loaded first if it is not resident), held while the block runs
        (`async with manager.use(name) as loaded`)."""
        return Held(self, name, version)

    async def _hold(self, name: str, version: str | int | None) -> LoadedVersion:
        served = self.served(name)
        number = route(name, version, served.default, served.records)
        loaded = served.versions.get(number)
        while loaded is None:  # not resident: load it, or wait for the load under way
            await self._residency.load(served, number)
            loaded = served.versions.get(number)
        loaded.in_flight += 1
        loaded.last_used = time.monotonic()
        return loaded

    def _release(self, loaded: LoadedVersion) -> None:
        loaded.in_flight -= 1
        if not loaded.in_flight:
            self._residency.released()

    # -- reporting -------------------------------------------------------------------------------

    def resident(self, name: str, version: str | int | None = None) -> bool:
        served = self.served(name)
        return route(name, version, served.default, served.records) in served.versions

    def ready(self) -> bool:
        """Started, and serving at least one model."""
        return self._started and bool(self._models)

    def state(self, name: str, number: int) -> tuple[str, str]:
        """(READY | LOADING | UNAVAILABLE, why not ready) of one version on this server."""
        return report.state_of(self._models.get(name), number, self._residency.failure(name, number))

    def down(self) -> dict[str, str]:
        """Versions that should serve here and cannot: `name:version` -> why."""
        return self._residency.down()

    def gauges(self) -> dict[tuple[str, int], tuple[bool, int, int, int]]:
        """(model, version) -> (resident, memory bytes, queued, in flight), for the monitor's tick."""
        return report.gauges(self._models.values())


class Held:
    """A version held for one request (ModelManager.use): a plain class, as every request enters one
    (contextlib's generator-based manager measured ~3% of the event loop's time per request)."""

    __slots__ = ("_loaded", "_manager", "_name", "_version")

    def __init__(self, manager: ModelManager, name: str, version: str | int | None) -> None:
        self._manager, self._name, self._version = manager, name, version
        self._loaded: LoadedVersion | None = None

    async def __aenter__(self) -> LoadedVersion:
        self._loaded = await self._manager._hold(self._name, self._version)
        return self._loaded

    async def __aexit__(self, *exc: object) -> None:
        if self._loaded is not None:
            self._manager._release(self._loaded)
            self._loaded = None

"""The model manager: which versions are loaded, and which one answers a request.

Loading verifies the artifact against its hash, builds a runner and warms it up with one request, so a
version counts as ready only once it has answered. Each version gets a batcher, started and closed
with the server (`start()` / `aclose()` on its event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from shipyard.config import ModelServing
from shipyard.errors import InvalidInput, NotFound, ShipyardError
from shipyard.protocol.datatypes import numpy_dtype
from shipyard.registry import Registry, VersionRecord
from shipyard.runtime.batcher import Batcher, BatchSettings
from shipyard.runtime.policy import wanted_versions
from shipyard.runtime.session import Runner, RunnerOptions
from shipyard.signature import Signature

log = logging.getLogger(__name__)


@dataclass
class LoadedVersion:
    record: VersionRecord
    runner: Runner
    batcher: Batcher

    @property
    def name(self) -> str:
        return self.record.model

    @property
    def number(self) -> int:
        return self.record.number

    @property
    def signature(self) -> Signature:
        return self.record.signature

    async def infer(self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None) -> list[np.ndarray]:
        return await self.batcher.submit(inputs, outputs)


@dataclass
class ServedModel:
    name: str
    default: int
    versions: dict[int, LoadedVersion]
    serving: ModelServing


def warmup_inputs(signature: Signature) -> dict[str, np.ndarray]:
    """A batch of one of zeros (empty strings for BYTES): enough to touch every kernel once."""
    inputs = {}
    for spec in signature.inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        dtype = numpy_dtype(spec.datatype)
        if spec.datatype == "BYTES":
            inputs[spec.name] = np.full(shape, "", dtype=object)
        else:
            inputs[spec.name] = np.zeros(shape, dtype=dtype)
    return inputs


def batch_settings(serving: ModelServing, signature: Signature) -> BatchSettings:
    """A model whose inputs have no dynamic batch axis is never batched."""
    batchable = serving.batching and all(spec.batched for spec in signature.inputs)
    return BatchSettings(
        max_batch_size=serving.max_batch_size if batchable else 1,
        max_queue_delay_us=serving.max_queue_delay_us,
        max_queue_size=serving.max_queue_size,
        instances=serving.instances,
        timeout_s=serving.timeout_s,
    )


def runner_options(options: RunnerOptions, instances: int) -> RunnerOptions:
    """Split the cores between instances unless the thread count was set explicitly."""
    intra = options.intra_op_threads
    if intra == 0 and instances > 1:
        intra = max(1, (os.cpu_count() or 1) // instances)
    return replace(options, intra_op_threads=intra, instances=instances)


class ModelManager:
    def __init__(
        self,
        registry: Registry,
        options: RunnerOptions,
        serving: ModelServing | None = None,
        watch_interval_s: float = 0.0,
    ) -> None:
        self._registry = registry
        self._options = options
        self._serving = serving or ModelServing()
        self._models: dict[str, ServedModel] = {}
        self._started = False
        self._watch_interval_s = watch_interval_s
        self._watcher: asyncio.Task[None] | None = None
        self._failed: set[tuple[str, int]] = set()  # versions that failed to load: not retried

    def load(self, names: Iterable[str] | None = None) -> None:
        """Load every version of the named models (all registered models when None)."""
        wanted = list(names) if names else [m.name for m in self._registry.models()]
        if not wanted:
            raise NotFound("no models are registered: import one with `shipyard model import`")
        for name in wanted:
            summary = self._registry.model(name)
            try:
                serving = self._serving.model_copy(update=summary.serving)
                serving = ModelServing.model_validate(serving.model_dump())
            except ValueError as exc:
                raise InvalidInput(f"model {name!r} has bad serving settings: {exc}") from None
            default = self._registry.version(name).number
            keep = wanted_versions(serving.versions, summary.versions, default)
            versions = {
                r.number: self._load_version(r, serving)
                for r in self._registry.versions(name)
                if r.number in keep
            }
            self._models[name] = ServedModel(name, default, versions, serving)
            log.info("serving %s versions %s (default %s)", name, list(versions), default)

    def _load_version(self, record: VersionRecord, serving: ModelServing) -> LoadedVersion:
        runner = Runner(
            record.ref, self._registry.artifact(record), runner_options(self._options, serving.instances)
        )
        runner.load()
        runner.run_sync(warmup_inputs(record.signature))
        batcher = Batcher(record.ref, runner.run, batch_settings(serving, record.signature))
        return LoadedVersion(record, runner, batcher)

    async def start(self) -> None:
        """Start every version's batcher on the running event loop, and the registry watch."""
        for version in self._all():
            await version.batcher.start()
        self._started = True
        if self._watch_interval_s > 0:
            self._watcher = asyncio.create_task(self._watch(), name="registry-watch")

    async def aclose(self) -> None:
        """Stop following the registry, finish queued requests, then stop the batchers."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for version in self._all():
            await version.batcher.aclose()
        self._started = False

    async def refresh(self) -> list[str]:
        """Follow the registry: load versions added since, and move each model's default version to
        its production alias. Loading and warm-up happen off the loop; the switch is one assignment,
        so a request sees the old default or the new one, never neither, and the old version's
        in-flight requests finish on its own batcher."""
        plans = await asyncio.to_thread(self._plan)
        changes = []
        for name, default, loaded, wanted in plans:
            served = self._models.get(name)
            if served is None:
                continue
            for version in loaded:
                await version.batcher.start()
                served.versions[version.number] = version
                changes.append(f"{name}: loaded version {version.number}")
            if default is not None and default in served.versions and default != served.default:
                changes.append(f"{name}: default version {served.default} -> {default}")
                served.default = default
            for number in sorted(set(served.versions) - wanted - {served.default}):
                old = served.versions.pop(number)  # new requests no longer reach it ...
                await old.batcher.aclose()  # ... and the ones it has queued finish first
                await asyncio.to_thread(old.runner.unload)
                changes.append(f"{name}: unloaded version {number}")
        return changes

    def _plan(self) -> list[tuple[str, int | None, list[LoadedVersion], set[int]]]:
        """Blocking part of refresh (registry reads, session loads), run on a worker thread."""
        plans = []
        for name, served in list(self._models.items()):
            try:
                summary = self._registry.model(name)
            except NotFound:
                continue  # deleted from the registry: keep serving what is loaded
            wanted = wanted_versions(served.serving.versions, summary.versions, summary.default_version)
            loaded = []
            for number in sorted(wanted):
                if number in served.versions or (name, number) in self._failed:
                    continue
                try:
                    loaded.append(self._load_version(self._registry.version(name, number), served.serving))
                except ShipyardError as exc:
                    log.error("%s:%s cannot be loaded, still serving the others: %s", name, number, exc)
                    self._failed.add((name, number))
                    self._registry.record(name, "load-failed", number, exc.message)
            plans.append((name, summary.default_version, loaded, wanted))
        return plans

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._watch_interval_s)  # a polling period, not a synchronisation
            try:
                for change in await self.refresh():
                    log.info("registry watch: %s", change)
            except Exception:
                log.exception("registry watch failed; trying again")

    # -- the repository extension: load and unload whole models while serving ----------------------

    async def load_model(self, name: str) -> None:
        """Load (or reload) a model while serving: built off the loop, swapped in at once."""
        staged = ModelManager(self._registry, self._options, self._serving)
        await asyncio.to_thread(staged.load, [name])
        fresh = staged._models[name]
        for version in fresh.versions.values():
            await version.batcher.start()
        old = self._models.get(name)
        self._models[name] = fresh
        self._failed = {f for f in self._failed if f[0] != name}
        if old is not None:
            await self._drain(old.versions.values())

    async def unload_model(self, name: str) -> None:
        """Stop serving a model: new requests get 404, queued ones finish, then its sessions go."""
        served = self._models.pop(self.served(name).name)
        await self._drain(served.versions.values())

    async def _drain(self, versions: Iterable[LoadedVersion]) -> None:
        for version in list(versions):
            await version.batcher.aclose()
            await asyncio.to_thread(version.runner.unload)

    def index(self) -> list[dict[str, str]]:
        """Every registered version with its state here: READY, or UNAVAILABLE and why."""
        out = []
        for summary in self._registry.models():
            served = self._models.get(summary.name)
            for number in summary.versions:
                state, reason = "READY", ""
                if (summary.name, number) in self._failed:
                    state, reason = "UNAVAILABLE", "failed to load (see the model's history)"
                elif served is None:
                    state, reason = "UNAVAILABLE", "model not loaded"
                elif number not in served.versions:
                    state, reason = "UNAVAILABLE", f"not in the version policy ({served.serving.versions})"
                out.append({"name": summary.name, "version": str(number), "state": state, "reason": reason})
        return out

    def unload_all(self) -> None:
        for version in self._all():
            version.runner.unload()
        self._models.clear()

    def _all(self) -> list[LoadedVersion]:
        return [v for model in self._models.values() for v in model.versions.values()]

    @property
    def names(self) -> list[str]:
        return sorted(self._models)

    def served(self, name: str) -> ServedModel:
        try:
            return self._models[name]
        except KeyError:
            raise NotFound(f"model {name!r} is not served here") from None

    def get(self, name: str, version: str | int | None = None) -> LoadedVersion:
        """The version that answers for `name` (the default one when `version` is None)."""
        model = self.served(name)
        if version is None or version == "":
            return model.versions[model.default]
        text = str(version)
        if not text.isdigit():
            raise NotFound(f"model {name!r} has no version {text!r}: versions are numbers")
        try:
            return model.versions[int(text)]
        except KeyError:
            raise NotFound(f"model {name!r} has no version {text} loaded") from None

    def ready(self, name: str | None = None) -> bool:
        if not self._started:
            return False
        if name is None:
            return bool(self._models)
        return name in self._models

"""One version, loaded: a verified artifact, a runner warmed up with a request, a batcher in front.

`build_version` is the blocking part (run off the event loop): the manager decides when and whether.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from shipyard.config import ModelServing
from shipyard.datatypes import numpy_dtype
from shipyard.errors import ShipyardError, Unavailable
from shipyard.machine import usable_cores
from shipyard.processing import ImageFront, front_for, graph_inputs
from shipyard.processing.samples import picture
from shipyard.registry import Registry, VersionRecord
from shipyard.runtime.batcher import Batcher, BatchObserver, BatchSettings
from shipyard.runtime.memory import release_free_memory, rss_bytes
from shipyard.runtime.session import Runner, RunnerOptions
from shipyard.signature import Signature


@dataclass
class LoadedVersion:
    record: VersionRecord
    runner: Runner
    batcher: Batcher
    memory_bytes: int
    """What loading it added to the process (resident set growth; at least the file's size)."""
    front: ImageFront | None = None
    """What the server does before the graph runs (decoding pictures), when the version says."""
    in_flight: int = 0
    last_used: float = 0.0

    @property
    def name(self) -> str:
        return self.record.model

    @property
    def number(self) -> int:
        return self.record.number

    @property
    def signature(self) -> Signature:
        return self.record.signature

    async def infer(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None, note: object = None
    ) -> list[np.ndarray]:
        if self.front is not None:  # each request's own pictures: a bad one fails its request only
            inputs = await self.front(inputs)
        return await self.batcher.submit(inputs, outputs, note)


def build_version(
    registry: Registry,
    record: VersionRecord,
    serving: ModelServing,
    options: RunnerOptions,
    observer: BatchObserver | None = None,
) -> LoadedVersion:
    """Verify, load and warm up one version (blocking). Its batcher still has to be started."""
    release_free_memory()  # so that memory freed earlier does not hide this version's cost
    before = rss_bytes()
    front = front_for(record.signature)
    wanted = runner_options(options, serving)
    if front is not None:
        wanted = replace(wanted, spinning=False)
    runner = Runner(record.ref, registry.artifact(record), wanted)
    runner.load()
    try:
        runner.choose_execution(warmup_inputs(record.signature))  # its runs are the warm-up
        if front is not None:  # Pillow's first picture loads its plugins: not on a request's time
            front.decode([picture()])
    except Exception as exc:  # whatever the graph raised: the version is not fit to serve
        runner.unload()
        reason = exc.message if isinstance(exc, ShipyardError) else f"{type(exc).__name__}: {exc}"
        raise Unavailable(f"{record.ref} failed its warm-up request: {reason}") from exc
    batcher = Batcher(record.ref, runner.run, batch_settings(serving, record.signature), observer)
    return LoadedVersion(record, runner, batcher, max(rss_bytes() - before, record.size), front)


def with_batcher(old: LoadedVersion, settings: BatchSettings) -> LoadedVersion:
    """`old`'s runner behind a new batcher (still to be started): new batching settings need no
    new session. The two share the runner until the old batcher has drained."""
    batcher = Batcher(old.batcher.name, old.runner.run, settings, old.batcher.observer)
    return LoadedVersion(old.record, old.runner, batcher, old.memory_bytes, old.front)


async def retire(version: LoadedVersion, *, keep_runner: bool) -> None:
    """Let the requests queued on `version` finish, then stop its batcher and, unless a version that
    stays shares it, unload its runner."""
    await settled(version)
    await version.batcher.aclose()
    if not keep_runner:
        await asyncio.to_thread(version.runner.unload)


async def settled(version: LoadedVersion, limit_s: float = 60.0) -> None:
    """Wait, a while at most, until no request holds a version that decodes pictures: such a request
    has not reached the batcher while its pictures decode, and closing the batcher under it would refuse
    it. Polled, since holding is a counter (the manager's `use`); only drains and swaps wait here."""
    deadline = time.monotonic() + limit_s
    while version.front is not None and version.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def warmup_inputs(signature: Signature) -> dict[str, np.ndarray]:
    """A batch of one of zeros (empty strings for BYTES) of what the graph takes: enough to touch every
    kernel once."""
    inputs = {}
    for spec in graph_inputs(signature):
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        dtype = numpy_dtype(spec.datatype)
        if spec.datatype == "BYTES":
            inputs[spec.name] = np.full(shape, "", dtype=object)
        else:
            inputs[spec.name] = np.zeros(shape, dtype=dtype)
    return inputs


def batch_settings(serving: ModelServing, signature: Signature) -> BatchSettings:
    """A model whose inputs have no dynamic batch axis is never batched."""
    batchable = serving.batching and signature.batched
    return BatchSettings(
        max_batch_size=serving.max_batch_size if batchable else 1,
        max_queue_delay_us=serving.max_queue_delay_us,
        max_queue_size=serving.max_queue_size,
        instances=serving.instances,
        timeout_s=serving.timeout_s,
    )


def runner_options(options: RunnerOptions, serving: ModelServing) -> RunnerOptions:
    """Split the cores between instances unless the thread count was set explicitly."""
    intra, instances = options.intra_op_threads, serving.instances
    if intra == 0 and instances > 1:
        intra = max(1, usable_cores() // instances)
    return replace(options, intra_op_threads=intra, instances=instances, execution=serving.execution)

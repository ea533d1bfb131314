"""Serving a model with new settings, without a restart and without failing a request.

Each resident version whose batching changes gets a new batcher on the same runner or, when its
instances or execution change (threads and sessions), a new runner loaded and warmed up off the
loop. Then, in one step, the settings and every new version take over, and the old versions drain
(their queued requests finish) before they go. When a rebuild fails nothing changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from shipyard.config import ModelServing
from shipyard.runtime.loading import LoadedVersion, batch_settings, retire, with_batcher
from shipyard.runtime.memory import release_free_memory
from shipyard.runtime.residency import Residency
from shipyard.runtime.served import ServedModel

Pair = tuple[LoadedVersion, LoadedVersion]
"""(old, new): a resident version and the one rebuilt to take its place."""


async def reconfigure(
    residency: Residency, models: Mapping[str, ServedModel], served: ServedModel, serving: ModelServing
) -> None:
    """Serve `served` with `serving` from now on; `models` is what the server serves now (a model
    replaced or unloaded meanwhile keeps its versions: only the new ones it got are retired)."""
    async with residency.lock:  # loads wait: one started now would build with the old settings
        if serving == served.serving:
            return  # another refresh got here first
        pairs = await _rebuild(residency, served, serving)
        live = models.get(served.name) is served
        if live:
            served.serving = serving
        swapped = {id(new) for old, new in pairs if live and served.versions.get(old.number) is old}
        for old, new in pairs:
            if id(new) in swapped:
                residency.replace(served, old, new)
    for old, new in pairs:  # outside the lock: draining waits for the queued requests
        await retire(old if id(new) in swapped else new, keep_runner=new.runner is old.runner)
    await asyncio.to_thread(release_free_memory)


async def _rebuild(residency: Residency, served: ServedModel, serving: ModelServing) -> list[Pair]:
    """A new version, started, for each resident one whose batching changes; when one cannot be
    built, those built so far are retired and the error raised."""
    pairs: list[Pair] = []
    same_runner = serving.execution == served.serving.execution
    try:
        for old in list(served.versions.values()):
            settings = batch_settings(serving, old.signature)
            if settings == old.batcher.settings and same_runner:
                continue
            if settings.instances == old.batcher.settings.instances and same_runner:
                new = with_batcher(old, settings)
            else:
                await residency.room_beside(old)
                new = await asyncio.to_thread(residency.build, old.record, serving)
                new.memory_bytes = residency.cost(new)
            pairs.append((old, new))
            await new.batcher.start()
    except BaseException:
        for old, new in pairs:
            await retire(new, keep_runner=new.runner is old.runner)
        raise
    return pairs

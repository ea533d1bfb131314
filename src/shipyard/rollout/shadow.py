"""Shadow traffic: a version that gets a copy of the requests production answers, and answers no one.

When a model has a shadow (the registry says which version: a rollout's `shadow:` step sets it), each
request that names no version is answered by production as always; then a copy of its inputs goes to
the shadow's batcher, off the request's path, and the two answers are compared: how many rows have the
same top class, how far the scores are apart, how long the shadow took. What the shadow answers is
counted in its own monitor (VersionMonitor.shadowed), which is what a rollout's gates judge.

A shadow never slows production down: a copy goes only while the shadow has fewer than a batch of
copies in flight and the model is under MAX_PER_S copies a second; otherwise it is dropped, and counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np

from shipyard.buckets import TokenBucket
from shipyard.errors import Overloaded
from shipyard.monitor.live import Monitor
from shipyard.monitor.version import VersionMonitor
from shipyard.runtime.loading import LoadedVersion
from shipyard.runtime.served import ServedModel

MAX_PER_S = 200.0
"""Copies a second per model at most: a rollout's gates need hundreds of comparisons, not every
request, and a bound keeps a shadow's cost small whatever the traffic (bench/shadow.py)."""


class Shadow:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self._buckets: dict[str, TokenBucket] = {}
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def offer(
        self,
        served: ServedModel,
        primary: LoadedVersion,
        inputs: dict[str, np.ndarray],
        names: Sequence[str] | None,
        outputs: list[np.ndarray],
    ) -> None:
        """A request production answered (its inputs, the outputs asked for and production's): a copy
        for the model's shadow, when it has one, resident, with room."""
        number = served.shadow
        loaded = None if number is None else served.versions.get(number)
        if loaded is None or loaded is primary:
            return
        watch = self.monitor.observer(loaded.record)
        name = served.name
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = TokenBucket(MAX_PER_S, MAX_PER_S / 10)
        if self._in_flight.get(name, 0) >= served.serving.max_batch_size or not bucket.take():
            watch.shadowed("dropped")
            return
        self._in_flight[name] = self._in_flight.get(name, 0) + 1
        run = self._run(name, loaded, watch, inputs, names, outputs, primary)
        task = asyncio.get_running_loop().create_task(run, name=f"shadow {loaded.record.ref}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        name: str,
        loaded: LoadedVersion,
        watch: VersionMonitor,
        inputs: dict[str, np.ndarray],
        names: Sequence[str] | None,
        outputs: list[np.ndarray],
        primary: LoadedVersion,
    ) -> None:
        started = time.perf_counter()
        try:
            theirs = await loaded.infer(inputs, names)
        except Overloaded:
            watch.shadowed("dropped")
        except Exception:  # its own failure, counted; production answered already
            watch.shadowed("failed", time.perf_counter() - started)
        else:
            compared, agreed = agreement(primary, names, outputs, theirs)
            watch.shadowed("answered", time.perf_counter() - started, compared, agreed)
        finally:
            self._in_flight[name] -= 1


def agreement(
    primary: LoadedVersion, names: Sequence[str] | None, ours: list[np.ndarray], theirs: list[np.ndarray]
) -> tuple[int, int]:
    """(rows compared, rows whose top class is the same) of two answers to one request: compared on
    the class scores of the primary's signature, when the request asked for them."""
    signature = primary.signature
    scores = signature.scores
    if scores is None:
        return 0, 0
    order = list(names) if names else [spec.name for spec in signature.outputs]
    if scores.output not in order:
        return 0, 0
    i = order.index(scores.output)
    if i >= len(ours) or i >= len(theirs) or ours[i].shape != theirs[i].shape or not ours[i].size:
        return 0, 0
    a, b = ours[i].reshape(-1, ours[i].shape[-1]), theirs[i].reshape(-1, theirs[i].shape[-1])
    return len(a), int(np.count_nonzero(a.argmax(axis=1) == b.argmax(axis=1)))

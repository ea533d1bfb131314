"""Shadow traffic: a version that gets a copy of the requests production answers, and answers no one.

When a model has a shadow (the registry says which version: a rollout's `shadow:` step sets it), each
request that names no version is answered by production as always; then a copy of its inputs goes to
the shadow's batcher, off the request's path, and the two answers are compared: how many rows have the
same top class, how far the scores are apart, how long the shadow took. What the shadow answers is
counted in its own monitor (VersionMonitor.shadowed), which is what a rollout's gates judge.

A shadow never slows production down: a copy goes to one request in so many, at most MAX_PER_S a
second, and only while the shadow has fewer than a batch of copies in flight; the other requests are
counted as dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np

from shipyard.errors import Overloaded
from shipyard.monitor.live import Monitor
from shipyard.monitor.version import VersionMonitor
from shipyard.registry import VersionRecord
from shipyard.runtime.loading import LoadedVersion
from shipyard.runtime.served import ServedModel

MAX_PER_S = 50.0
"""Copies a second per model at most: a rollout's gates need hundreds of comparisons, not every
request, and a bound keeps a shadow's cost small whatever the traffic (bench/shadow.py)."""


READ_RATE_S = 0.05
"""The request rate that paces the copies is read over this long at least."""


class _Pace:
    """Every how many requests a model's shadow gets a copy: re-read from the request rate at each
    copy, so that a request that gets none costs a decrement, not a clock read."""

    __slots__ = ("at", "countdown", "dropped", "every", "in_flight", "seen", "shadow")

    def __init__(self) -> None:
        self.countdown = self.seen = self.dropped = self.in_flight = 0
        self.every = 1
        self.at = time.perf_counter()
        self.shadow: VersionRecord | None = None  # its latest shadow: whose the drops are

    def due(self) -> bool:
        """Whether this request gets a copy (at most MAX_PER_S a second, spread over the requests)."""
        self.seen += 1
        self.countdown -= 1
        if self.countdown > 0:
            return False
        now = time.perf_counter()
        if now - self.at >= READ_RATE_S:
            self.every = max(1, int(self.seen / (now - self.at) / MAX_PER_S))
            self.at, self.seen = now, 0
        self.countdown = self.every
        return True


class Shadow:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self._paces: dict[str, _Pace] = {}
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
        pace = self._paces.get(served.name)
        if pace is None:
            pace = self._paces[served.name] = _Pace()
        pace.shadow = loaded.record
        if not pace.due() or pace.in_flight >= served.serving.max_batch_size:
            pace.dropped += 1  # told to the monitor at flush(): most requests get no copy
            return
        pace.in_flight += 1
        watch = self.monitor.observer(loaded.record)
        run = self._run(pace, loaded, watch, inputs, names, outputs, primary)
        task = asyncio.get_running_loop().create_task(run, name=f"shadow {loaded.record.ref}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def flush(self) -> None:
        """Tell the monitor of the requests that got no copy since the last flush (the server's tick)."""
        for pace in self._paces.values():
            if pace.dropped and pace.shadow is not None:
                dropped, pace.dropped = pace.dropped, 0
                self.monitor.observer(pace.shadow).shadowed("dropped", count=dropped)

    async def _run(
        self,
        pace: _Pace,
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
            pace.in_flight -= 1


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

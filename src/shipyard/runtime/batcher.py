"""Dynamic batching: concurrent requests for one model version coalesced into one run.

A plain asyncio object. ``await submit(inputs)`` queues a request and returns its own rows of the
outputs. Each of ``instances`` workers loops: take the oldest request and every queued request that
can share its run (same non-batch shapes, dtypes and outputs) up to ``max_batch_size`` rows, run them
as one batch, split the result. An idle worker takes what is queued at once, so at low load a request
runs alone with no added wait; requests pile up, and so batch, only while every worker is busy.
``max_queue_delay_us`` optionally waits a little longer for a fuller batch.

The queue is bounded: when it is full, ``submit`` raises Overloaded at once instead of queueing
without bound, so memory stays flat under overload.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from shipyard.errors import DeadlineExceeded, Overloaded, Unavailable
from shipyard.runtime import tensors

log = logging.getLogger(__name__)

RunFn = Callable[[dict[str, np.ndarray], Sequence[str] | None], Awaitable[list[np.ndarray]]]


@dataclass(frozen=True, slots=True)
class Ran:
    """One run of a batch, as its observer is told of it (times in seconds)."""

    rows: int
    inputs: dict[str, np.ndarray]
    names: Sequence[str] | None
    """The outputs asked for; None: all, in the signature's order."""
    ok: bool
    """Whether the run answered (its outputs come beside it: the observer keeps what it needs)."""
    sizes: list[int]
    """Each request's rows, in the order of the batch."""
    queued_s: list[float]
    compute_s: float
    notes: list[object]
    """What each request's caller gave submit() to be known by (None: nothing), in the same order."""


class BatchObserver(Protocol):
    """Told about every run (metrics, statistics, drift, and each request's answer). Called on the
    event loop once per batch, once its callers have been woken: it must be quick."""

    def batch_done(self, ran: Ran, outputs: list[np.ndarray]) -> None:
        """`outputs`: the run's, in the order of `ran.names` (empty when it failed)."""
        ...


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int = 32
    """Most rows in one run; 1 turns batching off."""
    max_queue_delay_us: int = 0
    """Extra wait for a fuller batch after the queue is drained; 0 never waits."""
    max_queue_size: int = 512
    """Requests waiting beyond this are refused with Overloaded."""
    instances: int = 1
    """Runs in flight at once (ORT sessions run concurrently on separate threads)."""
    timeout_s: float | None = None
    """Give up on a request that has waited and run this long; None waits for ever."""


@dataclass(eq=False)
class _Request:
    inputs: dict[str, np.ndarray]
    outputs: Sequence[str] | None
    key: tuple[object, ...]
    rows: int
    future: asyncio.Future[list[np.ndarray]] = field(repr=False)
    enqueued: float = 0.0
    note: object = None


class Batcher:
    def __init__(
        self, name: str, run: RunFn, settings: BatchSettings, observer: BatchObserver | None = None
    ) -> None:
        self.name = name
        self.settings = settings
        self.observer = observer
        self._run = run
        self._queue: deque[_Request] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()  # a worker waiting for work, each
        self._started = False
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        self._started, self._closing = True, False
        self._workers = [
            asyncio.create_task(self._worker(), name=f"batcher-{self.name}-{i}")
            for i in range(self.settings.instances)
        ]

    async def aclose(self) -> None:
        """Stop taking requests, let the workers finish what is queued, then stop them."""
        if not self._started:
            return
        self._closing = True
        while self._idle:
            self._wake()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        self._started = False

    async def submit(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None = None, note: object = None
    ) -> list[np.ndarray]:
        """This request's rows of the outputs of the batch it ran in; its observer is told the run,
        `note` among the batch's."""
        if not self._started or self._closing:
            raise Unavailable(f"{self.name} is not accepting requests")
        if len(self._queue) >= self.settings.max_queue_size:
            raise Overloaded(f"{self.name} is overloaded: {len(self._queue)} requests are queued")
        loop = asyncio.get_running_loop()
        request = _Request(
            inputs,
            outputs,
            tensors.batch_key(inputs, outputs),
            tensors.rows(inputs),
            loop.create_future(),
            loop.time(),
            note,
        )
        self._queue.append(request)
        if self._idle:
            self._wake()
        try:
            if self.settings.timeout_s is None:
                return await request.future
            return await asyncio.wait_for(asyncio.shield(request.future), self.settings.timeout_s)
        except TimeoutError:
            request.future.cancel()  # dropped if it has not started; ignored if it has
            raise DeadlineExceeded(
                f"{self.name}: no answer within {self.settings.timeout_s:g} s; the request was dropped"
            ) from None
        except asyncio.CancelledError:
            request.future.cancel()  # the caller gave up: never run work nobody waits for
            raise

    def _wake(self) -> None:
        """Wake one idle worker (a plain future each: a lock and a condition per request cost more)."""
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():  # a worker that timed out (top-up) or was cancelled left its own
                waiter.set_result(None)
                return

    async def _idle_until_woken(self, timeout_s: float | None = None) -> None:
        """Wait for a request (or closing); TimeoutError after `timeout_s`."""
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        if timeout_s is None:
            await waiter
        else:
            await asyncio.wait_for(waiter, timeout_s)

    async def _worker(self) -> None:
        while True:
            while not self._queue:
                if self._closing:
                    return  # closing and drained
                await self._idle_until_woken()
            batch = self._take()
            if not batch:
                continue
            delay = self.settings.max_queue_delay_us
            if delay and sum(r.rows for r in batch) < self.settings.max_batch_size:
                batch = await self._top_up(batch, delay / 1e6)
            await self._execute(batch)

    def _take(self, batch: list[_Request] | None = None) -> list[_Request]:
        """Pop the oldest live request (unless topping up) and every queued one that fits with it."""
        batch = batch or []
        while not batch and self._queue:
            head = self._queue.popleft()
            if not head.future.done():
                batch.append(head)
        if not batch:
            return batch
        key, room = batch[0].key, self.settings.max_batch_size - sum(r.rows for r in batch)
        kept: deque[_Request] = deque()
        while self._queue and room > 0:
            request = self._queue.popleft()
            if request.future.done():
                continue
            if request.key == key and request.rows <= room:
                batch.append(request)
                room -= request.rows
            else:
                kept.append(request)
        kept.extend(self._queue)
        self._queue = kept
        return batch

    async def _top_up(self, batch: list[_Request], wait_s: float) -> list[_Request]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (remaining := deadline - loop.time()) > 0:
            if sum(r.rows for r in batch) >= self.settings.max_batch_size or self._closing:
                break
            try:
                await self._idle_until_woken(remaining)
            except TimeoutError:
                break
            batch = self._take(batch)
        return batch

    async def _execute(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]
        if not live:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        merged: dict[str, np.ndarray] = {}
        try:
            merged = tensors.merge([r.inputs for r in live])
            outputs = await self._run(merged, live[0].outputs)
            parts = tensors.split(outputs, [r.rows for r in live])
        except Exception as exc:  # a failed batch fails its own callers, and only them
            loop.call_soon(self._observe, live, started, loop.time(), merged, [])
            for request in live:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        ended = loop.time()
        for request, part in zip(live, parts, strict=True):
            if not request.future.done():
                request.future.set_result(part)
        # told once the callers have been woken: their answers go out before the observer runs
        loop.call_soon(self._observe, live, started, ended, merged, outputs)

    def _observe(
        self,
        batch: list[_Request],
        started: float,
        ended: float,
        inputs: dict[str, np.ndarray],
        outputs: list[np.ndarray],
    ) -> None:
        if self.observer is None:
            return
        sizes = [r.rows for r in batch]
        try:
            self.observer.batch_done(
                Ran(
                    sum(sizes),
                    inputs,
                    batch[0].outputs,
                    bool(outputs),
                    sizes,
                    [started - r.enqueued for r in batch],
                    ended - started,
                    [r.note for r in batch],
                ),
                outputs,
            )
        except Exception:  # watching must never fail a batch that was answered
            log.exception("%s: the batch observer failed", self.name)

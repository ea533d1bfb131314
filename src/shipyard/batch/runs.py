"""Model runs of a batch job, several at once, answered in order.

A job runs one batch per core at once, each on one ONNX Runtime thread, rather than one batch at a time
on a thread per core. ONNX Runtime splits an operator across its threads and waits for the slowest, so
when the job's reading thread takes a core, a one-batch-at-a-time run stalls on that core's share
while the other core waits; with a batch per core, only that batch slows. On 2 cores the CNN over
Parquet went from ~62% to ~74% of in-process ONNX Runtime, alternating runs of each on one machine
(bench/BENCHMARKS.md, "Batch inference", says what bounds it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Generic, TypeVar

Key = TypeVar("Key")
In = TypeVar("In")
Out = TypeVar("Out")


class Runs(Generic[In, Out]):
    def __init__(self, pool: ThreadPoolExecutor, at_once: int, work: Callable[[In], Out]) -> None:
        self._pool = pool
        self._at_once = at_once
        self._work = work

    def ordered(self, items: Iterable[tuple[Key, In]]) -> Iterator[tuple[Key, Out]]:
        """`work` on each item's input, `at_once` at a time, answered with its key in the items' order.
        One more waits in the pool beside them, so a thread that finishes starts the next at once;
        the rest of `items` is not read before there is room (memory holds a few batches, whatever
        the input)."""
        pending: deque[tuple[Key, Future[Out]]] = deque()
        for key, given in items:
            pending.append((key, self._pool.submit(self._work, given)))
            if len(pending) > self._at_once:
                key, future = pending.popleft()
                yield key, future.result()
        while pending:
            key, future = pending.popleft()
            yield key, future.result()


@contextmanager
def concurrently(at_once: int, work: Callable[[In], Out]) -> Iterator[Runs[In, Out]]:
    """Runs of `work` on `at_once` threads; leaving the block drops those not started and waits for the
    others (an error in one is raised where its answer is read)."""
    pool = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="shipyard-batch-run")
    try:
        yield Runs(pool, at_once, work)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

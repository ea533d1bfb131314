"""Work done ahead on a thread: the next items of an iterator made while the caller uses the last ones.

A batch job reads and decodes its input (pyarrow, Pillow) on this thread while ONNX Runtime runs the
model on the caller's; both release the GIL for their heavy parts, so the two overlap. At most `depth`
items wait, which bounds the memory they take.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
_END = object()


@contextmanager
def ahead(items: Iterator[T], depth: int = 2) -> Iterator[Iterator[T]]:
    """`items`, made on a thread up to `depth` ahead; its error is raised where the caller reads it.
    Leaving the block early stops the thread at its next item."""
    waiting: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def make() -> None:
        try:
            for item in items:
                if not _put(waiting, item, stop):
                    return
        except BaseException as exc:  # raised again on the caller's thread
            _put(waiting, exc, stop)
            return
        _put(waiting, _END, stop)

    def taken() -> Iterator[T]:
        while (item := waiting.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    thread = threading.Thread(target=make, name="shipyard-batch-read", daemon=True)
    thread.start()
    try:
        yield taken()
    finally:
        stop.set()
        thread.join()


def _put(waiting: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    """Hand `item` over, waiting for room; False when the caller has stopped reading."""
    while not stop.is_set():
        try:
            waiting.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False

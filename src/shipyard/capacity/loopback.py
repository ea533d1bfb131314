"""A closed-loop HTTP/1.1 client over loopback, as light as Python allows: each connection sends its next
request the moment its answer is whole. It only has to keep a server busy, so that the server's CPU per
request can be read; its own speed does not enter the figures.

Protocol callbacks rather than streams or an HTTP library: on a small machine the client shares the
cores with the server, and every microsecond it spends is one the server does not get.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from shipyard.errors import Unavailable


@dataclass
class Counts:
    answered: int = 0
    """Answers with status 200."""
    failed: int = 0
    first_failure: str = ""
    sending: bool = True


class _Connection(asyncio.Protocol):
    def __init__(self, request: bytes, counts: Counts) -> None:
        self.request, self.counts = request, counts
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.need: int | None = None  # the bytes of the answer being read, head and body
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.need is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).lower()
                self.status = int(head[9:12])
                length = _content_length(head)
                if length is None:  # every answer of the server says its length
                    self._fail("an answer without Content-Length")
                    return
                self.need = end + 4 + length
            if len(self.buffer) < self.need:
                return
            if self.status != 200:
                self._fail(f"HTTP {self.status}: {bytes(self.buffer[: self.need])[-300:]!r}")
                return
            del self.buffer[: self.need]
            self.need = None
            self.counts.answered += 1
            if self.counts.sending and self.transport is not None:
                self.transport.write(self.request)

    def _fail(self, why: str) -> None:
        self.counts.failed += 1
        self.counts.first_failure = self.counts.first_failure or why
        if self.transport is not None:
            self.transport.close()


def _content_length(head: bytes) -> int | None:
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return None
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : end if end >= 0 else len(head)])


@dataclass
class Window:
    """What the server did between two readings: the answers it gave, and `snapshot()` before and after
    (its CPU time, its counters)."""

    answered: int
    seconds: float
    before: dict[str, float]
    after: dict[str, float]

    def per_answer(self, key: str) -> float:
        return (self.after[key] - self.before[key]) / max(1, self.answered)


async def measure(
    port: int,
    request: bytes,
    connections: int,
    warm_up_s: float,
    seconds: float,
    snapshot: Callable[[], dict[str, float]],
) -> Window:
    """Keep the server on `port` busy with `connections` connections each sending `request`; after
    `warm_up_s`, take a `snapshot()` of the server and count its answers, and again `seconds` later."""
    loop = asyncio.get_running_loop()
    counts = Counts()
    transports = []
    try:
        for _ in range(connections):
            transport, _protocol = await loop.create_connection(
                lambda: _Connection(request, counts), "127.0.0.1", port
            )
            transports.append(transport)
        await asyncio.sleep(warm_up_s)  # the measurement's window, not a wait for an event
        before, answered0, started = snapshot(), counts.answered, loop.time()
        await asyncio.sleep(seconds)
        after, answered1, ended = snapshot(), counts.answered, loop.time()
    finally:
        counts.sending = False
        for transport in transports:
            transport.close()
    if counts.failed:
        raise Unavailable(f"the server refused the measurement's requests: {counts.first_failure}")
    return Window(answered1 - answered0, ended - started, before, after)

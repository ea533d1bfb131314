"""The small clients that run beside wrk during an overload: wrk's latency histogram mixes served
requests with fast refusals, and its connections are all opened at the start, so neither says how
long a served request took nor how long a newcomer waits. These do, at a few requests a second."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from servers import tree_rss_kib


def _percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    a = np.asarray(ms)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


@dataclass
class Probe:
    """Closed-loop clients on kept-alive connections, opened before the load starts: the latency of
    their 200 answers is the latency of admitted requests, apart from the refusals."""

    url: str
    body: bytes
    headers: dict[str, str]
    clients: int = 16
    interval_s: float = 0.2  # after a 200
    retry_s: float = 0.05  # after an error without Retry-After; a 503 with it waits as it says
    timeout_s: float = 30
    ok_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    async def run(self, stop: asyncio.Event, started: asyncio.Event) -> None:
        async with contextlib.AsyncExitStack() as stack:
            sessions = [
                await stack.enter_async_context(
                    httpx.AsyncClient(timeout=self.timeout_s, limits=httpx.Limits(max_connections=1))
                )
                for _ in range(self.clients)
            ]
            for session in sessions:  # connect while the server is idle
                await session.post(self.url, content=self.body, headers=self.headers)
            started.set()
            await asyncio.gather(*(self._loop(s, stop) for s in sessions))

    async def _loop(self, session: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            pause = self.retry_s
            try:
                response = await session.post(self.url, content=self.body, headers=self.headers)
            except httpx.HTTPError:
                self.errors += 1
            else:
                self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    self.ok_ms.append(1000 * (time.perf_counter() - t0))
                    pause = self.interval_s
                elif (retry := response.headers.get("retry-after", "")).isdigit():
                    pause = float(retry)  # a polite client: as it was told
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)

    def summary(self) -> dict[str, Any]:
        return {
            "answered_200": len(self.ok_ms),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "errors": self.errors,
            **_percentiles(self.ok_ms),
        }


async def fresh_client(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> dict[str, Any]:
    """One request on a new TCP connection: time from connecting to the first byte of the answer,
    whatever the answer is (a 503 in time is a good answer under overload)."""
    parts = urlsplit(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    t0 = time.perf_counter()
    connect_ms = math.nan
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            connect_ms = 1000 * (time.perf_counter() - t0)
            writer.write(request)
            await writer.drain()
            first = await reader.read(1)
            ttfb_ms = 1000 * (time.perf_counter() - t0)
            if not first:
                return {"outcome": "closed", "connect_ms": connect_ms, "ttfb_ms": ttfb_ms}
            line = first + await reader.readline()
        status = line.split()[1].decode() if len(line.split()) > 1 else "?"
        return {"outcome": status, "connect_ms": connect_ms, "ttfb_ms": ttfb_ms}
    except TimeoutError:
        return {"outcome": "timeout", "connect_ms": connect_ms, "ttfb_ms": math.nan}
    except OSError as e:
        return {"outcome": type(e).__name__, "connect_ms": connect_ms, "ttfb_ms": math.nan}
    finally:
        if writer is not None:
            writer.close()


async def fresh_clients(
    url: str, body: bytes, headers: dict[str, str], tries: int, over_s: float, timeout_s: float
) -> dict[str, Any]:
    """`tries` fresh clients spread evenly over `over_s` seconds, each on its own schedule, so one
    stuck client does not hold back the next."""

    async def at(delay: float) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return await fresh_client(url, body, headers, timeout_s)

    gap = over_s / max(tries - 1, 1)
    results = await asyncio.gather(*(at(i * gap) for i in range(tries)))
    answered = [r["ttfb_ms"] for r in results if r["outcome"].isdigit()]
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {
        "tries": tries,
        "timeout_s": timeout_s,
        "outcomes": outcomes,
        "answered": len(answered),
        "ttfb_p50_ms": float(np.percentile(answered, 50)) if answered else math.nan,
        "ttfb_max_ms": max(answered) if answered else math.nan,
        "connect_max_ms": max(
            (r["connect_ms"] for r in results if not math.isnan(r["connect_ms"])), default=math.nan
        ),
        "results": results,
    }


async def sample_rss(pid: int, stop: asyncio.Event, samples: list[tuple[float, int]]) -> None:
    """The server's RSS every second until `stop`."""
    t0 = time.monotonic()
    while not stop.is_set():
        samples.append((round(time.monotonic() - t0, 1), tree_rss_kib(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)

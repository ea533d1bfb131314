"""Overload control on a real server: a bounded queue answers 503 with Retry-After at once, every
request gets an answer, and the server's memory stays flat however many requests are refused."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from shipyard.signature import Signature, TensorSpec
from tests.bodies import binary_request
from tests.integration.conftest import Server, start_server, stop_server
from tests.models import slow_model


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("slow")
    registry = Registry.open(Settings(home=home))
    signature = Signature((TensorSpec("x", "FP32", (-1, 128, 128)),), (TensorSpec("y", "FP32", (-1,)),))
    registry.register("slow", slow_model(), signature=signature, framework="onnx", check={"passed": True})
    registry.close()
    server = start_server(
        home, "--max-queue-size", "4", "--max-batch-size", "2", "--intra-op-threads", "1", "--timeout-s", "30"
    )
    yield server
    stop_server(server)


async def blast(url: str, requests: int, concurrency: int) -> Counter[int]:
    body, length = binary_request(np.ones((1, 128, 128), np.float32))
    headers = {"Inference-Header-Content-Length": str(length)}
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        remaining = iter(range(requests))

        async def worker() -> None:
            for _ in remaining:
                response = await client.post("/v2/models/slow/infer", content=body, headers=headers)
                statuses[response.status_code] += 1
                if response.status_code == 503:
                    assert int(response.headers["retry-after"]) >= 1
                    assert "overloaded" in response.json()["error"]
                else:
                    assert response.status_code == 200, response.text

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def test_overload_is_refused_at_once_and_memory_stays_flat(slow_server: Server) -> None:
    # as many requests as measured first: the server's bounded buffers (the log's, the monitor's,
    # the allocator's) fill to their size then, not while memory is measured (it grew 6 to 32 MiB)
    warm = asyncio.run(blast(slow_server.url, 1500, 32))
    before = rss_kib(slow_server.process.pid)
    statuses = asyncio.run(blast(slow_server.url, 1500, 32))
    after = rss_kib(slow_server.process.pid)
    assert warm[503] > 0 and statuses[503] > 0, statuses  # the queue did fill up
    assert statuses[200] > 0 and set(statuses) <= {200, 503}
    assert after - before < 30 * 1024, f"RSS grew from {before} KiB to {after} KiB"
    metrics = httpx.get(f"{slow_server.url}/metrics").text  # refusals at the transport are counted too
    assert 'model="slow"' in metrics and 'status="503"' in metrics
    assert slow_server.alive()

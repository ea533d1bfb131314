"""Serving settings changed while traffic flows: a running server picks up `model configure` without a
restart, its model config endpoint shows the new batch size and instances, and no request fails."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import register_digits
from tests.integration.conftest import Server, start_server, stop_server
from tests.integration.test_deploy import cli
from tests.models import digits_data


def config_shows(server: Server, batch: int, instances: int, timeout: float = 30.0) -> dict[str, Any]:
    """The model config once it shows this max batch size and instance count (polled, bounded)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url) as client:
        while time.monotonic() < deadline:
            config: dict[str, Any] = client.get("/v2/models/digits/config").json()
            if (config["max_batch_size"], config["instance_group"][0]["count"]) == (batch, instances):
                return config
            time.sleep(0.05)  # polling the endpoint, bounded by the deadline
    raise AssertionError(f"the server did not show max_batch_size={batch}, instances={instances}")


def test_settings_change_live_under_traffic_and_no_request_fails(tmp_path: Path) -> None:
    registry = Registry.open(Settings(home=tmp_path))
    register_digits(registry)
    registry.close()
    server = start_server(tmp_path, "--no-grpc")
    X, _ = digits_data()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    shown: list[dict[str, Any]] = []

    async def client(done: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            i = 0
            while not done.is_set():
                rows = X[i % 100 : i % 100 + 1 + i % 3]  # 1 to 3 rows: batches of several sizes
                body = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                                    "data": rows.ravel().tolist()}]}  # fmt: skip
                response = await http.post("/v2/models/digits/infer", json=body)
                statuses[response.status_code] += 1
                if response.status_code != 200:
                    failures.append(response.text)
                i += 1

    async def operator(done: asyncio.Event) -> None:
        try:
            shown.append(await asyncio.to_thread(config_shows, server, 32, 1))  # the defaults
            out = await asyncio.to_thread(
                cli, tmp_path, "model", "configure", "digits", "--max-batch-size", "64", "--instances", "2"
            )
            assert "running servers pick it up at their next registry check, without a restart" in out
            shown.append(await asyncio.to_thread(config_shows, server, 64, 2))
            before, deadline = sum(statuses.values()), time.monotonic() + 30
            await asyncio.to_thread(
                cli, tmp_path, "model", "configure", "digits", "--max-batch-size", "8",
                "--max-queue-delay-us", "200", "--instances", "1",
            )  # fmt: skip
            shown.append(await asyncio.to_thread(config_shows, server, 8, 1))
            while sum(statuses.values()) < before + 200:  # traffic on the new settings too
                assert time.monotonic() < deadline, "the clients stopped sending"
                await asyncio.sleep(0.05)  # polling a counter, bounded by the deadline
        finally:
            done.set()

    async def main() -> None:
        done = asyncio.Event()
        await asyncio.gather(operator(done), *(client(done) for _ in range(8)))

    try:
        asyncio.run(main())
        log = server.log.read_text() if server.log else ""
    finally:
        stop_server(server)
    assert failures == [], failures[:3]
    assert statuses[200] > 300
    assert shown[-1]["dynamic_batching"] == {"max_queue_delay_microseconds": 200}
    assert "Traceback" not in log

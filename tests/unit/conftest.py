"""Unit fixtures: the server as `shipyard serve` builds it, over a real registry and real ONNX Runtime
sessions, running, with its ASGI app called in-process (no sockets)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from shipyard.config import MonitorSettings, Settings
from shipyard.monitor.live import Monitor
from shipyard.registry import Registry
from shipyard.server.auth import Auth
from shipyard.server.serving import Server
from tests.asgi import ASGIClient
from tests.conftest import register_digits, register_many_types


def unit_settings(settings: Settings, **updates: Any) -> Settings:
    """`settings` for a test: one ONNX Runtime thread, no registry watch (a test changes the registry
    and says when the server reads it), no monitor unless asked; then `updates`."""
    defaults: dict[str, Any] = {
        "intra_op_threads": 1,
        "watch_interval_s": 0.0,
        "monitor": MonitorSettings(enabled=False),
    }
    return Settings.model_validate({**settings.model_dump(), **defaults, **updates})


@contextlib.contextmanager
def serving(
    registry: Registry,
    settings: Settings,
    *,
    auth: Auth | None = None,
    monitor: Monitor | None = None,
) -> Iterator[tuple[ASGIClient, Server]]:
    """The server (server/serving.py) over `registry`, started as `shipyard serve` starts it (its
    `running()`, on the client's event loop), and a client of its ASGI app. The test owns the monitor's
    tick (`client.run(server.tick())`) and the tokens (`auth`, by default `settings`' admin tokens)."""
    auth = auth or Auth(settings.named_admin_tokens)
    server = Server(settings, registry, grpc=False, auth=auth, monitor=monitor, tick_s=None)
    client = ASGIClient(server.app)
    running = server.running()
    client.run(running.__aenter__())
    try:
        yield client, server
    finally:
        client.run(running.__aexit__(None, None, None))
        client.close()
        server.manager.unload_all()


@pytest.fixture
def client(registry: Registry, settings: Settings) -> Iterator[ASGIClient]:
    """digits (two versions) and a model of many datatypes, bodies limited to 200 kB."""
    register_digits(registry)
    register_digits(registry)
    register_many_types(registry)
    with serving(registry, unit_settings(settings, max_body_bytes=200_000)) as (test_client, _):
        yield test_client


def digits_request(x: np.ndarray, **extra: object) -> dict[str, object]:
    return {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
        **extra,
    }

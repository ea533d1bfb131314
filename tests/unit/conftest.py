"""Unit fixtures: the ASGI app in-process over a real registry and real ONNX Runtime sessions."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from shipyard.config import ModelServing
from shipyard.dataplane import DataPlane
from shipyard.registry import Registry
from shipyard.runtime import ModelManager, RunnerOptions
from shipyard.server.auth import Auth
from shipyard.server.http import create_app
from tests.asgi import ASGIClient
from tests.conftest import register_digits, register_many_types


def serve_in_process(
    registry: Registry, serving: ModelServing | None = None, auth: Auth | None = None, **app: object
) -> tuple[ASGIClient, ModelManager]:
    manager = ModelManager(registry, RunnerOptions(intra_op_threads=1), serving)
    manager.load()
    client = ASGIClient(create_app(DataPlane(manager), auth=auth, **app))  # type: ignore[arg-type]
    client.run(manager.start())
    return client, manager


def stop_in_process(client: ASGIClient, manager: ModelManager) -> None:
    client.run(manager.aclose())
    client.close()
    manager.unload_all()


@pytest.fixture
def client(registry: Registry) -> Iterator[ASGIClient]:
    """digits (two versions) and a model of many datatypes, bodies limited to 200 kB."""
    register_digits(registry)
    register_digits(registry)
    register_many_types(registry)
    test_client, manager = serve_in_process(registry, max_body_bytes=200_000)
    yield test_client
    stop_in_process(test_client, manager)


def digits_request(x: np.ndarray, **extra: object) -> dict[str, object]:
    return {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
        **extra,
    }

"""Requests made to hurt: huge declared shapes, empty tensors, empty output lists, and floods that must
be refused before their bodies are read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import numpy as np
import orjson
import pytest

from shipyard.admission import READING
from shipyard.config import ModelServing, MonitorSettings, Settings
from shipyard.registry import Registry
from shipyard.server.serving import Server
from tests.asgi import ASGIClient
from tests.conftest import register_digits
from tests.models import digits_data
from tests.unit.conftest import digits_request, serving, unit_settings

HUGE = 4611686018427387904


def binary(shape: list[int], blob: bytes, datatype: str = "FP32") -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": shape,
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        }
    )
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


@pytest.mark.parametrize(
    "shape",
    [[0, HUGE], [HUGE, 0], [1, HUGE], [2**31, 2**31], [0, 64], [0], [*[1] * 17, 64], [-1, 64]],
)
def test_declared_shapes_are_checked_before_anything_is_allocated(
    client: ASGIClient, shape: list[int]
) -> None:
    as_json = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": []}]}
    response = client.post("/v2/models/digits/infer", json=as_json)
    assert response.status_code == 400, response.text
    body, headers = binary(shape, b"")
    response = client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str)


def test_binary_data_of_size_zero_is_a_clear_400(client: ASGIClient) -> None:
    body, headers = binary([1, 64], b"")
    response = client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert response.status_code == 400 and "needs 256 bytes, got 0" in response.json()["error"]
    body, headers = binary([0, 64], b"")
    response = client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert response.status_code == 400 and "holds no values" in response.json()["error"]


def test_an_empty_outputs_list_asks_for_every_output(client: ASGIClient) -> None:
    X, _ = digits_data()
    response = client.post("/v2/models/digits/infer", json=digits_request(X[:2], outputs=[]))
    assert response.status_code == 200, response.text
    assert [out["name"] for out in response.json()["outputs"]] == ["logits"]


def test_the_prediction_id_is_the_servers_own_not_the_clients(registry: Registry, settings: Settings) -> None:
    register_digits(registry)
    monitored = unit_settings(settings, monitor=MonitorSettings(log=False))
    with serving(registry, monitored) as (client, _):
        X, _ = digits_data()
        doc = client.post("/v2/models/digits/infer", json=digits_request(X[:1], id="mine")).json()
        assert doc["id"] == "mine"  # echoed, as v2 says
        prediction = doc["parameters"]["prediction_id"]
        assert prediction != "mine" and len(prediction) == 32
        feedback = client.post("/v1/models/digits/feedback", json={"id": "mine", "label": "0"})
        assert feedback.status_code == 404
        accepted = client.post("/v1/models/digits/feedback", json={"id": prediction, "label": "0"})
        assert accepted.status_code == 200, accepted.text


async def _admission(server: Server) -> tuple[int, str, bool, list[int]]:
    """With room for one request at work, slow senders are let in to read their bodies (up to four
    per place, so they cannot take the place of a request at work); once those are full, the next
    request is refused without its body ever being read."""
    dataplane = server.dataplane
    release = asyncio.Event()
    read_last = False

    async def stalled() -> AsyncIterator[bytes]:
        yield b'{"input": '
        await release.wait()
        yield orjson.dumps(np.zeros(64).tolist()) + b"}"

    async def last() -> AsyncIterator[bytes]:
        nonlocal read_last
        read_last = True
        yield orjson.dumps({"input": np.zeros(64).tolist()})

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=server.app), base_url="http://t"
    ) as client:
        slow = [
            asyncio.create_task(client.post("/v1/models/digits/predict", content=stalled()))
            for _ in range(READING)
        ]
        for _ in range(10_000):  # yield to the slow senders until they are all reading
            if dataplane.in_flight("digits") == READING:
                break
            await asyncio.sleep(0)
        assert dataplane.in_flight("digits") == READING
        refused = await client.post("/v1/models/digits/predict", content=last())
        release.set()
        answered = [response.status_code for response in await asyncio.gather(*slow)]
    assert dataplane.in_flight("digits") == 0  # every place given back
    return refused.status_code, refused.headers.get("retry-after", ""), read_last, answered


def test_overload_is_refused_before_the_body_is_read(registry: Registry, settings: Settings) -> None:
    register_digits(registry)
    with serving(registry, unit_settings(settings, serving=ModelServing(max_in_flight=1))) as (
        client,
        server,
    ):
        status, retry_after, body_read, slow = client.run(_admission(server))
    assert (status, retry_after, body_read) == (503, "1", False)
    assert slow == [200] * READING

"""The real server over real sockets, with httpx: endpoints, errors, and staying up after them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.integration.conftest import Server, shipyard_command, start_server, stop_server
from tests.models import digits_data, digits_linear


def test_predict_over_the_network(server: Server) -> None:
    X, _ = digits_data()
    with httpx.Client(base_url=server.url) as client:
        doc = client.post("/v1/models/digits/predict", json={"input": X[3].tolist()}).json()
        assert doc["version"] == 1  # the production alias, not the latest
        assert doc["class"] == str(int(digits_linear().logits(X[3:4]).argmax()))
        latest = client.post("/v1/models/digits/versions/2/predict", json={"input": X[3].tolist()}).json()
        assert latest["version"] == 2
        only = client.post("/predict", json={"input": X[3].tolist()}).json()
        assert only["id"] != doc.pop("id")  # every prediction has its own id, for feedback
        only.pop("id")
        assert only == doc


def test_docs_are_served(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/docs").status_code == 200
        spec = client.get("/openapi.json").json()
        assert "/v2/models/{name}/infer" in spec["paths"]


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server: Server) -> None:
    X, _ = digits_data()
    bad = [
        (b"", 400),
        (b"not json", 400),
        (b'{"inputs": [{"name": "input", "shape": [1, 63], "datatype": "FP32", "data": [1]}]}', 400),
        (b"x" * (1024 * 1024 + 1), 413),
    ]
    with httpx.Client(base_url=server.url) as client:
        for body, status in bad:
            response = client.post("/v2/models/digits/infer", content=body)
            assert response.status_code == status
            assert "error" in response.json()
        assert client.get("/v2/models/nope").status_code == 404
        ok = client.post("/v1/models/digits/predict", json={"input": X[0].tolist()})
        assert ok.status_code == 200
    assert server.alive()


def test_concurrent_requests_all_answer(server: Server) -> None:
    X, _ = digits_data()
    import asyncio

    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url) as client:
            requests = [
                client.post("/v1/models/digits/predict", json={"input": X[i].tolist()}) for i in range(64)
            ]
            return [r.status_code for r in await asyncio.gather(*requests)]

    assert asyncio.run(run()) == [200] * 64


def test_unknown_model_is_one_clear_line(served_home: Path) -> None:
    result = subprocess.run(
        shipyard_command(served_home, "serve", "nope"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no model named 'nope'"


def test_corrupt_artifact_is_refused_at_load(tmp_path: Path) -> None:
    from tests.conftest import register_digits

    registry = Registry.open(Settings(home=tmp_path))
    record = register_digits(registry)
    path = registry.artifacts.path(record.sha256)
    registry.close()
    path.write_bytes(b"\x00" + path.read_bytes()[1:])
    result = subprocess.run(shipyard_command(tmp_path, "serve"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "is corrupt" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("threads", ["1", "2"])
def test_thread_settings(tmp_path: Path, threads: str) -> None:
    from tests.conftest import register_digits

    registry = Registry.open(Settings(home=tmp_path))
    register_digits(registry)
    registry.close()
    srv = start_server(tmp_path, "--intra-op-threads", threads, "--inter-op-threads", "1")
    try:
        x = np.zeros((2, 64), np.float32)
        body = {
            "inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": x.ravel().tolist()}]
        }
        response = httpx.post(f"{srv.url}/v2/models/digits/infer", json=body)
        assert response.status_code == 200
    finally:
        stop_server(srv)


def test_workers_share_the_ports(served_home: Path) -> None:
    import tritonclient.grpc as grpcclient

    srv = start_server(served_home, "--workers", "2")
    try:
        children = Path(f"/proc/{srv.process.pid}/task/{srv.process.pid}/children").read_text().split()
        assert len(children) >= 2  # uvicorn's worker processes
        X, _ = digits_data()
        with httpx.Client(base_url=srv.url) as client:
            for i in range(20):
                assert (
                    client.post("/v1/models/digits/predict", json={"input": X[i].tolist()}).status_code == 200
                )
        grpc_client = grpcclient.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}")
        inp = grpcclient.InferInput("input", [1, 64], "FP32")
        inp.set_data_from_numpy(X[:1])
        np.testing.assert_allclose(
            grpc_client.infer("digits", [inp]).as_numpy("logits"),
            digits_linear().logits(X[:1]),
            rtol=1e-5,
            atol=1e-4,
        )
        grpc_client.close()

        def answered() -> float:
            metrics = httpx.get(f"{srv.url}/metrics").text
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("shipyard_requests_total{") and 'status="200"' in line
            )

        # A read counts its own worker's answers first; the other's are counted at its tick (every
        # second), so the sum reaches 21 within about a second ...
        deadline = time.monotonic() + 10
        while answered() != 21 and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(4):  # ... and stays there whichever worker a new connection lands on
            assert answered() == 21
    finally:
        stop_server(srv)


def test_a_port_in_use_is_one_clear_line(server: Server, served_home: Path) -> None:
    for args, flag in (
        (["--port", str(server.port), "--grpc-port", "0"], "--port"),
        (["--port", "0", "--grpc-port", str(server.grpc_port)], "--grpc-port"),
    ):
        result = subprocess.run(
            shipyard_command(served_home, "serve", *args), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1
        assert result.stderr.strip().endswith(f"choose another {flag}"), result.stderr
    assert server.alive()

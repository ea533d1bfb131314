"""Memory on a real server: a budget that holds two of three models, and memory given back on unload."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import DIGITS_SIGNATURE
from tests.integration.conftest import Server, start_server, stop_server
from tests.models import dense_model, digits_data

NAMES = ["m0", "m1", "m2"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("memory")
    registry = Registry.open(Settings(home=home))
    for seed, name in enumerate(NAMES):
        registry.register(
            name, dense_model(seed).onnx_bytes, signature=DIGITS_SIGNATURE, framework="onnx", check={}
        )
    registry.close()
    return home


def rss_mb(server: Server) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc")


def predict(client: httpx.Client, name: str, rows: np.ndarray) -> None:
    doc = client.post(f"/v2/models/{name}/infer", json=infer_body(rows)).json()
    logits = np.array(doc["outputs"][0]["data"], np.float32).reshape(len(rows), 10)
    np.testing.assert_allclose(logits, dense_model(int(name[1:])).logits(rows), rtol=1e-4, atol=1e-3)


def infer_body(rows: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "input", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}
        ]
    }


def states(client: httpx.Client) -> dict[str, str]:
    return {row["name"]: row["state"] for row in client.post("/v2/repository/index").json()}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_unloading_two_of_three_models_gives_their_memory_back(home: Path) -> None:
    X = digits_data()[0][:8]
    one = start_server(home, "m0", "--no-grpc")
    three = start_server(home, "--no-grpc")
    try:
        with httpx.Client(base_url=one.url) as a, httpx.Client(base_url=three.url) as b:
            for _ in range(20):
                predict(a, "m0", X)
                for name in NAMES:
                    predict(b, name, X)
            loaded_three = rss_mb(three)
            for name in NAMES[1:]:
                assert b.post(f"/v2/repository/models/{name}/unload").status_code == 200
            for _ in range(20):
                predict(a, "m0", X)
                predict(b, "m0", X)
            one_model, after_unload = rss_mb(one), rss_mb(three)
        print(f"RSS MB: one model {one_model:.0f}; three {loaded_three:.0f}; two unloaded {after_unload:.0f}")
        weights_mb = len(dense_model(1).onnx_bytes) / 2**20
        assert loaded_three > one_model + 2 * weights_mb  # the two extra models were really resident ...
        assert after_unload <= one_model * 1.15  # ... and their memory went back to the system
    finally:
        stop_server(one)
        stop_server(three)


def test_a_server_with_a_budget_for_two_of_three_loads_on_demand(home: Path) -> None:
    X = digits_data()[0][:4]
    # Two take ~110-130 MB, three ~155 and more. One ORT thread, set: a model timed slower than the
    # loop's share on a busy machine would otherwise be opened a second time with ORT's own threads,
    # and what the first session left behind would count in its cost.
    server = start_server(home, "--no-grpc", "--memory-budget", "145", "--intra-op-threads", "1")
    try:
        with httpx.Client(base_url=server.url) as client:
            assert states(client) == {"m0": "READY", "m1": "READY", "m2": "UNAVAILABLE"}
            assert client.get("/v2/models/m2/ready").status_code == 400  # not resident: not ready
            for name in ["m1", "m2", "m0", "m1"]:
                predict(client, name, X)
            assert states(client) == {"m0": "READY", "m1": "READY", "m2": "UNAVAILABLE"}
            index = client.post("/v2/repository/index").json()
            assert "memory budget" in next(r["reason"] for r in index if r["name"] == "m2")
    finally:
        stop_server(server)

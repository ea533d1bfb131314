"""Two machines, one registry database and one S3 bucket: a model imported on one is served by the
other, started on an empty SHIPYARD_HOME, and keeps being served when the bucket goes away."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from tests import s3
from tests.conftest import ENGINES, POSTGRES_URL, empty_postgres
from tests.integration.conftest import shipyard_command, start_server, stop_server
from tests.models import digits_data, digits_linear


def shared_database(engine: str, folder: Path) -> str:
    if engine == "sqlite":
        return f"sqlite:///{folder / 'registry.db'}"
    assert POSTGRES_URL is not None
    empty_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.mark.parametrize("engine", ENGINES)
def test_a_server_on_an_empty_home_serves_what_another_machine_imported(tmp_path: Path, engine: str) -> None:
    model = tmp_path / "digits.onnx"
    model.write_bytes(digits_linear().onnx_bytes)
    first, second = tmp_path / "first", tmp_path / "second"
    second.mkdir()  # empty: no registry, no artifacts
    with s3.s3_server() as endpoint:
        bucket = s3.new_bucket(endpoint)
        env = {
            **bucket.env,
            "SHIPYARD_DATABASE_URL": shared_database(engine, tmp_path),
            "SHIPYARD_ARTIFACTS": bucket.url(),
        }
        imported = subprocess.run(
            shipyard_command(first, "model", "import", str(model), "--name", "digits"),
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=120,
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        [key] = s3.keys(bucket)
        sha = key.rpartition("/")[2]

        server = start_server(second, env=env)
        try:
            X, _ = digits_data()
            body = {
                "inputs": [
                    {"name": "input", "shape": [2, 64], "datatype": "FP32", "data": X[:2].ravel().tolist()}
                ]
            }
            answer = httpx.post(f"{server.url}/v2/models/digits/infer", json=body, timeout=10)
            assert answer.status_code == 200, answer.text
            [logits] = answer.json()["outputs"]
            expected = digits_linear().logits(X[:2])
            np.testing.assert_allclose(
                np.reshape(logits["data"], logits["shape"]), expected, rtol=1e-5, atol=1e-4
            )
            assert s3.cached(second, sha).read_bytes() == s3.read(bucket, key)
        except BaseException:
            stop_server(server)
            raise
    try:  # the bucket is gone: what the server has loaded, it goes on serving
        again = httpx.post(f"{server.url}/v2/models/digits/infer", json=body, timeout=10)
        assert again.status_code == 200 and again.json()["outputs"] == answer.json()["outputs"]
    finally:
        stop_server(server)

"""`shipyard k8s serve`: the KServe runtime's entry point, run as KServe runs it, over a model folder
such as the storage initializer leaves at /mnt/models (no Kubernetes needed to test it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from shipyard.config import Settings
from shipyard.errors import InvalidInput, NotFound
from shipyard.k8s import Target
from shipyard.k8s.kserve import MODEL_DIR, serving_runtime
from shipyard.k8s.modeldir import import_model_dir, onnx_file
from shipyard.registry import Registry
from tests.conftest import LABELS
from tests.integration.conftest import free_port, wait_ready
from tests.models import digits_data, digits_linear


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A folder as `storageUri: s3://models/digits` leaves it: the model and its labels, one level down."""
    folder = tmp_path / "mnt-models"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(digits_linear().onnx_bytes)
    (folder / "1" / "labels.txt").write_text("\n".join(LABELS))
    return folder


def test_the_runtime_registers_the_mounted_model_and_serves_it_under_the_service_name(
    tmp_path: Path, model_dir: Path
) -> None:
    home = tmp_path / "home"
    port, grpc_port = free_port(), free_port()
    # the ServingRuntime's own arguments, as KServe fills them in, on this machine's folder and ports
    given = {"{{.Name}}": "mnist", MODEL_DIR: str(model_dir), "8080": str(port), "9000": str(grpc_port)}
    args = [given.get(arg, arg) for arg in runtime_container()["args"]]
    log = tmp_path / "runtime.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "shipyard", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SHIPYARD_HOME": str(home)},
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(process, url, log, port, grpc_port, timeout=60.0)
        X, _ = digits_data()
        body = {
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [2, 64], "data": X[:2].ravel().tolist()}
            ]
        }
        answer = httpx.post(f"{url}/v2/models/mnist/infer", json=body, timeout=10).json()
        logits = np.array(answer["outputs"][0]["data"], dtype=np.float32).reshape(2, 10)
        np.testing.assert_allclose(logits, digits_linear().logits(X[:2]), rtol=1e-5, atol=1e-4)
        assert httpx.get(f"{url}/v2/models/mnist", timeout=10).json()["versions"] == ["1"]
        grpc_client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")  # KServe's grpc-v2
        assert grpc_client.is_server_ready() and grpc_client.is_model_ready("mnist")
        grpc_client.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert log.read_text().splitlines()[0] == f"registered {model_dir} as mnist version 1"
    registry = Registry.open(Settings(home=home))
    try:
        # a restart on the same SHIPYARD_HOME finds the same model: no second version
        assert import_model_dir(model_dir, "mnist", registry).number == 1
        record = registry.version("mnist")
        assert record.labels == LABELS and record.framework == "onnx"
    finally:
        registry.close()


def runtime_container() -> dict[str, Any]:
    (container,) = serving_runtime(Target("digits", replicas=1))["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_a_folder_without_exactly_one_model_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no model folder"):
        onnx_file(tmp_path / "absent")
    with pytest.raises(
        NotFound, match=r"no \.onnx file in .*: the storageUri must hold the model's ONNX file"
    ):
        onnx_file(tmp_path)
    for name in ("a.onnx", "b/c.onnx"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(
        InvalidInput, match=r"2 \.onnx files in .* \(a\.onnx, b/c\.onnx\): the storageUri must hold one"
    ):
        onnx_file(tmp_path)

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shipyard",
            "--home",
            str(tmp_path / "home"),
            "k8s",
            "serve",
            "x",
            "--model-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert (
        done.stderr
        == f"error: 2 .onnx files in {tmp_path} (a.onnx, b/c.onnx): the storageUri must hold one\n"
    )

"""KServe v2 over gRPC with the real Triton client: typed contents and raw bytes, metadata, errors."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import Server
from tests.models import digits_data, digits_linear


@pytest.fixture
def client(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc_port}")
    yield c
    c.close()


def test_health_and_metadata(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "2")
    assert not client.is_model_ready("nope")
    meta = client.get_model_metadata("digits", as_json=True)
    assert meta["versions"] == ["1", "2"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "64"]}]
    assert client.get_server_metadata(as_json=True)["name"] == "shipyard"


def test_model_config_reads_like_tritons(client: grpcclient.InferenceServerClient) -> None:
    config = client.get_model_config("digits", as_json=True)["config"]
    assert config["max_batch_size"] == 32 and config["platform"] == "onnxruntime_onnx"
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": ["64"]}]
    assert config["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": ["10"]}]
    assert config["instance_group"] == [{"count": 1, "kind": "KIND_CPU"}]
    assert "dynamic_batching" in config


def test_infer_with_raw_contents(client: grpcclient.InferenceServerClient) -> None:
    X, _ = digits_data()
    inp = grpcclient.InferInput("input", [9, 64], "FP32")
    inp.set_data_from_numpy(X[:9])  # tritonclient sends raw_input_contents
    result = client.infer("digits", [inp], request_id="g-1", model_version="2")
    assert result.get_response().id == "g-1" and result.get_response().model_version == "2"
    np.testing.assert_allclose(result.as_numpy("logits"), digits_linear().logits(X[:9]), rtol=1e-5, atol=1e-4)


def test_infer_with_typed_contents(server: Server) -> None:
    """A client that sends fp32_contents gets fp32_contents back (KServe's own clients do this)."""
    X, _ = digits_data()
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="digits")
        tensor = request.inputs.add(name="input", datatype="FP32", shape=[2, 64])
        tensor.contents.fp32_contents.extend(X[:2].ravel().tolist())
        response = stub.ModelInfer(request)
    assert not response.raw_output_contents
    (out,) = response.outputs
    logits = np.array(out.contents.fp32_contents, np.float32).reshape(list(out.shape))
    np.testing.assert_allclose(logits, digits_linear().logits(X[:2]), rtol=1e-5, atol=1e-4)
    assert response.model_version == "1"  # the production alias


def test_classification(client: grpcclient.InferenceServerClient) -> None:
    X, _ = digits_data()
    inp = grpcclient.InferInput("input", [2, 64], "FP32")
    inp.set_data_from_numpy(X[:2])
    out = grpcclient.InferRequestedOutput("logits", class_count=2)
    top = client.infer("digits", [inp], outputs=[out]).as_numpy("logits")
    expected = np.argsort(-digits_linear().logits(X[:2]), axis=1)[:, :2]
    assert [[int(item.split(b":")[1]) for item in row] for row in top] == expected.tolist()


def test_errors_map_to_status_codes(client: grpcclient.InferenceServerClient) -> None:
    inp = grpcclient.InferInput("input", [1, 63], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 63), np.float32))
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 64\], got \[1, 63\]") as bad:
        client.infer("digits", [inp])
    assert bad.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="not served") as missing:
        client.infer("nope", [inp])
    assert missing.value.status() == "StatusCode.NOT_FOUND"
    assert client.is_server_live()

"""The real Triton client library against shipyard: JSON and binary tensors, metadata, classification."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import Server
from tests.models import digits_data, digits_linear

pytestmark = pytest.mark.usefixtures("collected")  # tritonclient's HTTP clients: see the fixture


@pytest.fixture
def client(server: Server) -> httpclient.InferenceServerClient:
    c = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    yield c
    c.close()


def test_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "2")
    assert not client.is_model_ready("nope")
    meta = client.get_model_metadata("digits")
    assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 64]}
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]


@pytest.mark.parametrize("binary", [True, False])
def test_infer(client: httpclient.InferenceServerClient, binary: bool) -> None:
    X, _ = digits_data()
    x = X[:7]
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("logits", binary_data=binary)
    result = client.infer("digits", [inp], outputs=[out], request_id="r-1", model_version="2")
    assert result.get_response()["id"] == "r-1"
    assert result.get_response()["model_version"] == "2"
    np.testing.assert_allclose(result.as_numpy("logits"), digits_linear().logits(x), rtol=1e-5, atol=1e-4)


def test_infer_with_all_defaults(client: httpclient.InferenceServerClient) -> None:
    X, _ = digits_data()
    inp = httpclient.InferInput("input", [1, 64], "FP32")
    inp.set_data_from_numpy(X[:1])
    result = client.infer("digits", [inp])
    np.testing.assert_allclose(result.as_numpy("logits"), digits_linear().logits(X[:1]), rtol=1e-5, atol=1e-4)


def test_classification_extension(client: httpclient.InferenceServerClient) -> None:
    X, _ = digits_data()
    inp = httpclient.InferInput("input", [2, 64], "FP32")
    inp.set_data_from_numpy(X[:2])
    out = httpclient.InferRequestedOutput("logits", class_count=3)
    top = client.infer("digits", [inp], outputs=[out]).as_numpy("logits")
    assert top.shape == (2, 3)
    expected = np.argsort(-digits_linear().logits(X[:2]), axis=1)[:, :3]
    got = [[int(item.split(b":")[1]) for item in row] for row in top]
    assert got == expected.tolist()


def test_errors_reach_the_client(client: httpclient.InferenceServerClient) -> None:
    inp = httpclient.InferInput("input", [1, 63], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 63), np.float32))
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 64\], got \[1, 63\]"):
        client.infer("digits", [inp])
    with pytest.raises(InferenceServerException, match="not served"):
        client.infer("nope", [inp])

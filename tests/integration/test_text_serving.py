"""Sentences in, over the network: a scikit-learn TF-IDF pipeline and a torch classifier of token ids
imported with `--tokenizer`, served by the real server and asked through /predict, v2 JSON, the Triton
clients' binary tensors over HTTP and gRPC."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from shipyard.config import Settings
from shipyard.importing import import_sklearn
from shipyard.registry import Registry
from tests.integration.conftest import Server, shipyard_command, start_server, stop_server
from tests.text_models import SENTENCES, VOCAB, logits_of, text_classifier, text_pipeline

pytestmark = pytest.mark.usefixtures("collected")  # tritonclient's HTTP clients: see the fixture

MAX_LENGTH = 16
REVIEW_LABELS = ["negative", "positive"]
REVIEWS = ["This movie was GREAT, I loved it!", "Boring plot; the actors acted badly.", "fun"]


@pytest.fixture(scope="module")
def pipeline() -> Any:
    return text_pipeline()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pipeline: Any) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("home")
    registry = Registry.open(Settings(home=home))
    import_sklearn(pipeline, name="topics", registry=registry)
    registry.close()
    model, vocab, labels = home / "reviews.onnx", home / "vocab.txt", home / "labels.txt"
    model.write_bytes(text_classifier()[1])
    vocab.write_text("\n".join(VOCAB) + "\n")
    labels.write_text("\n".join(REVIEW_LABELS) + "\n")
    flags = ["--name", "reviews", "--labels", str(labels), "--tokenizer", str(vocab)]
    imported = subprocess.run(
        shipyard_command(home, "model", "import", str(model), *flags, "--max-length", str(MAX_LENGTH)),
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr
    assert "imported reviews:1 from onnx" in imported.stdout
    srv = start_server(home)
    yield srv
    stop_server(srv)
    log = srv.log.read_text() if srv.log else ""
    assert "Traceback" not in log, log  # nothing on the way (monitor included) choked on strings


def _expected_reviews(sentences: list[str]) -> list[str]:
    return [REVIEW_LABELS[i] for i in logits_of(sentences, MAX_LENGTH).argmax(axis=1)]


def test_predict_takes_a_sentence_or_a_list(server: Server, pipeline: Any) -> None:
    with httpx.Client(base_url=server.url) as client:
        one = client.post("/v1/models/topics/predict", json={"input": SENTENCES[0]})
        many = client.post("/v1/models/topics/predict", json={"inputs": SENTENCES[:3]})

    assert one.status_code == 200, one.text
    assert one.json()["class"] == pipeline.predict(SENTENCES[:1])[0]
    assert one.json()["confidence"] == pytest.approx(pipeline.predict_proba(SENTENCES[:1]).max(), abs=1e-5)
    assert many.status_code == 200, many.text
    assert [item["class"] for item in many.json()] == pipeline.predict(SENTENCES[:3]).tolist()


@pytest.mark.parametrize("body", [{"input": 5}, {"input": None}, {"input": {"x": 1}}, {"inputs": ["a", 3]}])
def test_predict_refuses_samples_that_are_not_text(server: Server, body: dict[str, Any]) -> None:
    with httpx.Client(base_url=server.url) as client:
        for model in ("topics", "reviews"):
            answer = client.post(f"/v1/models/{model}/predict", json=body)

            assert answer.status_code == 400, answer.text
            assert "input 'input'" in answer.json()["error"] or "input 'text'" in answer.json()["error"]


def test_predict_through_the_tokenizer(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        one = client.post("/v1/models/reviews/predict", json={"input": REVIEWS[0]})
        many = client.post("/v1/models/reviews/predict", json={"inputs": REVIEWS})

    assert one.status_code == 200, one.text
    assert one.json()["class"] == _expected_reviews(REVIEWS[:1])[0]
    assert [item["class"] for item in many.json()] == _expected_reviews(REVIEWS)


def test_v2_json_bytes(server: Server, pipeline: Any) -> None:
    tensor = {"name": "input", "datatype": "BYTES", "shape": [len(SENTENCES), 1], "data": SENTENCES}
    with httpx.Client(base_url=server.url) as client:
        topics = client.post("/v2/models/topics/infer", json={"inputs": [tensor]})
        reviews = client.post("/v2/models/reviews/infer", json={"inputs": [{**tensor, "name": "text"}]})

    assert topics.status_code == 200, topics.text
    outputs = {out["name"]: out for out in topics.json()["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES"
    assert outputs["label"]["data"] == pipeline.predict(SENTENCES).tolist()
    probabilities = np.reshape(outputs["probabilities"]["data"], outputs["probabilities"]["shape"])
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(SENTENCES), atol=1e-5)
    assert reviews.status_code == 200, reviews.text
    (logits,) = reviews.json()["outputs"]
    expected = logits_of(SENTENCES, MAX_LENGTH)
    np.testing.assert_allclose(np.reshape(logits["data"], logits["shape"]), expected, atol=1e-5)


def _column(sentences: list[str]) -> np.ndarray:
    column = np.empty((len(sentences), 1), dtype=object)
    column[:, 0] = [s.encode() for s in sentences]
    return column


def test_tritonclient_http_binary_bytes(server: Server, pipeline: Any) -> None:
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        topics_in = httpclient.InferInput("input", [len(SENTENCES), 1], "BYTES")
        topics_in.set_data_from_numpy(_column(SENTENCES), binary_data=True)
        label = httpclient.InferRequestedOutput("label", binary_data=True)
        topics = client.infer("topics", [topics_in], outputs=[label]).as_numpy("label")
        reviews_in = httpclient.InferInput("text", [len(REVIEWS), 1], "BYTES")
        reviews_in.set_data_from_numpy(_column(REVIEWS), binary_data=True)
        reviews = client.infer("reviews", [reviews_in]).as_numpy("logits")
    finally:
        client.close()

    assert [item.decode() for item in topics.reshape(-1)] == pipeline.predict(SENTENCES).tolist()
    np.testing.assert_allclose(reviews, logits_of(REVIEWS, MAX_LENGTH), atol=1e-5)


def test_tritonclient_grpc_bytes(server: Server, pipeline: Any) -> None:
    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc_port}")
    try:
        topics_in = grpcclient.InferInput("input", [len(SENTENCES), 1], "BYTES")
        topics_in.set_data_from_numpy(_column(SENTENCES))
        topics = client.infer("topics", [topics_in]).as_numpy("label")
        reviews_in = grpcclient.InferInput("text", [len(REVIEWS), 1], "BYTES")
        reviews_in.set_data_from_numpy(_column(REVIEWS))
        reviews = client.infer("reviews", [reviews_in]).as_numpy("logits")
        bad = grpcclient.InferInput("input", [1, 1], "BYTES")
        bad.set_data_from_numpy(np.array([[b"caf\xe9 \xff"]], dtype=object))
        with pytest.raises(InferenceServerException, match=r"input 'input'.*not UTF-8") as refused:
            client.infer("topics", [bad])
        config = client.get_model_config("topics", as_json=True)["config"]
    finally:
        client.close()

    assert [item.decode() for item in topics.reshape(-1)] == pipeline.predict(SENTENCES).tolist()
    np.testing.assert_allclose(reviews, logits_of(REVIEWS, MAX_LENGTH), atol=1e-5)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert config["input"] == [{"name": "input", "data_type": "TYPE_STRING", "dims": ["1"]}]


def test_bytes_that_are_not_utf8_are_a_400_naming_the_input(server: Server) -> None:
    """Latin-1 text in a binary v2 request: refused before the model runs, and the server goes on."""
    bad = httpclient.InferInput("text", [2, 1], "BYTES")
    bad.set_data_from_numpy(np.array([[b"fine"], ["café".encode("latin-1")]], dtype=object), binary_data=True)
    body, header_length = httpclient.InferenceServerClient.generate_request_body([bad])
    with httpx.Client(base_url=server.url) as client:
        refused = client.post(
            "/v2/models/reviews/infer",
            content=body,
            headers={"Inference-Header-Content-Length": str(header_length)},
        )
        after = client.post("/v1/models/reviews/predict", json={"input": "fine"})

    assert refused.status_code == 400, refused.text
    assert "input 'text'" in refused.json()["error"] and "not UTF-8" in refused.json()["error"]
    assert after.status_code == 200

"""The ASGI app in-process (no sockets): every endpoint, every error status, and fuzzed bodies."""

from __future__ import annotations

import json
import struct

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.config import ModelServing, Settings
from shipyard.registry import Registry
from tests.asgi import ASGIClient
from tests.conftest import DIGITS_SIGNATURE, register_digits
from tests.models import digits_data, digits_linear
from tests.unit.conftest import digits_request, serving, unit_settings


def test_health_and_metadata(client: ASGIClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2").json()
    assert meta["name"] == "shipyard" and "binary_tensor_data" in meta["extensions"]
    model = client.get("/v2/models/digits").json()
    assert model == {
        "name": "digits",
        "versions": ["1", "2"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
    }
    assert client.get("/v2/models/digits/versions/1").status_code == 200
    assert client.get("/v2/models/digits/ready").json() == {"name": "digits", "ready": True}
    assert client.get("/v2/models/digits/versions/2/ready").status_code == 200


def test_model_config_as_triton_writes_it(client: ASGIClient) -> None:
    config = client.get("/v2/models/digits/config").json()
    assert config["max_batch_size"] == 32 and config["platform"] == "onnxruntime_onnx"
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [64]}]
    assert config["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}]
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 0}
    types = client.get("/v2/models/types/versions/1/config").json()
    assert {t["name"]: t["data_type"] for t in types["input"]}["text"] == "TYPE_STRING"


def test_infer_matches_numpy(client: ASGIClient) -> None:
    X, _ = digits_data()
    x = X[:5]
    response = client.post("/v2/models/digits/infer", json=digits_request(x, id="abc"))
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["id"] == "abc" and doc["model_name"] == "digits" and doc["model_version"] == "2"
    (out,) = doc["outputs"]
    assert out["shape"] == [5, 10] and out["datatype"] == "FP32"
    np.testing.assert_allclose(
        np.array(out["data"]).reshape(5, 10), digits_linear().logits(x), rtol=1e-5, atol=1e-4
    )


def test_version_route_and_classification(client: ASGIClient) -> None:
    X, _ = digits_data()
    request = digits_request(X[:2], outputs=[{"name": "logits", "parameters": {"classification": 3}}])
    doc = client.post("/v2/models/digits/versions/1/infer", json=request).json()
    assert doc["model_version"] == "1"
    (out,) = doc["outputs"]
    assert out["datatype"] == "BYTES" and out["shape"] == [2, 3]
    expected = np.argsort(-digits_linear().logits(X[:2]), axis=1)[:, :3]
    for row, want in zip(np.array(out["data"]).reshape(2, 3), expected, strict=True):
        indices = [int(item.split(":")[1]) for item in row]
        labels = [item.split(":")[2] for item in row]
        assert indices == want.tolist() and labels == [str(i) for i in want]


def test_every_datatype_round_trips(client: ASGIClient) -> None:
    values = {
        "f64": ("FP64", [[1.5, -2.25]]),
        "i32": ("INT32", [[1, -7]]),
        "i64": ("INT64", [[2**40, 3]]),
        "flag": ("BOOL", [[True, False]]),
        "text": ("BYTES", [["héllo", ""]]),
    }
    request = {
        "inputs": [{"name": n, "shape": [1, 2], "datatype": t, "data": d} for n, (t, d) in values.items()]
    }
    doc = client.post("/v2/models/types/infer", json=request).json()
    got = {o["name"]: (o["datatype"], o["data"]) for o in doc["outputs"]}
    for name, (datatype, data) in values.items():
        assert got[f"{name}_out"] == (datatype, data[0])


def test_outputs_selects_and_binary_output(client: ASGIClient) -> None:
    x = np.zeros((1, 2))
    head = orjson.dumps(
        {
            "inputs": [
                {"name": "f64", "shape": [1, 2], "datatype": "FP64", "parameters": {"binary_data_size": 16}},
                {"name": "i32", "shape": [1, 2], "datatype": "INT32", "data": [1, 2]},
                {"name": "i64", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]},
                {"name": "flag", "shape": [1, 2], "datatype": "BOOL", "data": [True, True]},
                {"name": "text", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]},
            ],
            "outputs": [{"name": "text_out", "parameters": {"binary_data": True}}, {"name": "i32_out"}],
        }
    )
    response = client.post(
        "/v2/models/types/infer",
        content=head + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    doc = orjson.loads(response.content[:length])
    assert [o["name"] for o in doc["outputs"]] == ["text_out", "i32_out"]
    assert doc["outputs"][1]["data"] == [1, 2]
    blob = response.content[length:]
    assert blob == struct.pack("<I", 1) + b"a" + struct.pack("<I", 1) + b"b"


def test_friendly_predict(client: ASGIClient) -> None:
    X, _ = digits_data()
    response = client.post("/v1/models/digits/predict", json={"input": X[0].tolist()})
    assert response.status_code == 200
    doc = response.json()
    assert set(doc) == {"class", "confidence", "model", "version"}
    assert doc["model"] == "digits" and doc["version"] == 2
    logits = digits_linear().logits(X[:1])[0]
    assert doc["class"] == str(int(logits.argmax()))
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert doc["confidence"] == pytest.approx(float(probs.max()), abs=1e-5)
    many = client.post("/v1/models/digits/versions/1/predict?top_k=3", json={"inputs": X[:4].tolist()}).json()
    assert isinstance(many, list) and len(many) == 4
    assert all(item["version"] == 1 and len(item["top_k"]) == 3 for item in many)
    assert many[0]["top_k"][0]["class"] == many[0]["class"]


def test_predict_without_name_needs_one_model(client: ASGIClient) -> None:
    response = client.post("/predict", json={"input": [0] * 64})
    assert response.status_code == 404
    assert "exactly one served model" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("get", "/v2/models/nope", None, 404, "model 'nope' is not served"),
        ("get", "/v2/models/digits/versions/9", None, 404, "no version 9"),
        ("get", "/v2/models/digits/versions/x/ready", None, 404, "versions are numbers"),
        ("post", "/v2/models/nope/infer", b"{}", 404, "not served"),
        ("post", "/v2/models/digits/infer", b"", 400, "empty"),
        ("post", "/v2/models/digits/infer", b"{nope", 400, "not valid JSON"),
        (
            "post",
            "/v2/models/digits/infer",
            orjson.dumps(
                {"inputs": [{"name": "input", "shape": [1, 63], "datatype": "FP32", "data": [0] * 63}]}
            ),
            400,
            r"input 'input': expected shape [-1, 64], got [1, 63]",
        ),
        (
            "post",
            "/v2/models/digits/infer",
            orjson.dumps(
                {"inputs": [{"name": "image", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}]}
            ),
            400,
            "unknown input 'image': the model's inputs are 'input'",
        ),
        (
            "post",
            "/v2/models/digits/infer",
            orjson.dumps(
                {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0] * 64}]}
            ),
            400,
            "expected datatype FP32, got FP64",
        ),
        (
            "post",
            "/v2/models/digits/infer",
            orjson.dumps(
                {
                    "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}],
                    "outputs": [{"name": "probs"}],
                }
            ),
            400,
            "unknown output 'probs'",
        ),
        ("post", "/v1/models/digits/predict", b'{"input": [1, 2]}', 400, "expected shape [64], got [2]"),
        ("post", "/v1/models/digits/predict?top_k=-1", b'{"input": [1]}', 400, "top_k"),
        ("get", "/nowhere", None, 404, "no such endpoint"),
        ("post", "/v2/models/digits/infer", b"x" * 200_001, 413, "limit"),
    ],
)
def test_errors_are_json_and_name_the_problem(
    client: ASGIClient, method: str, path: str, body: bytes | None, status: int, message: str
) -> None:
    response = client.request(method.upper(), path, content=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()  # stdlib: big integers too, which orjson would refuse to write


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "x", ""]) | st.integers(),
        "shape": st.lists(st.integers(-2, 70), max_size=3)
        | st.lists(st.sampled_from([0, 1, 64, 2**31, 2**62, 2**64]), max_size=3)
        | json_values,
        "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BOOL", "BYTES", "fp32"]) | json_values,
        "data": json_values | st.lists(st.floats(allow_nan=False, width=32), min_size=60, max_size=70),
    }
)
bodies = (
    st.binary(max_size=64)
    | json_values.map(dumps)
    | st.fixed_dictionaries(
        {"inputs": st.lists(tensors, max_size=2)},
        optional={"outputs": json_values | st.just([]), "id": json_values},
    ).map(dumps)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=bodies,
    path=st.sampled_from(["/v2/models/digits/infer", "/v1/models/digits/predict", "/v2/models/types/infer"]),
)
def test_fuzzed_bodies_never_cause_a_server_error(client: ASGIClient, body: bytes, path: str) -> None:
    response = client.post(path, content=body)
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str)
    assert client.get("/v2/health/live").status_code == 200


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.binary(max_size=40), tail=st.binary(max_size=40), declared=st.integers(-5, 100))
def test_fuzzed_binary_bodies_never_cause_a_server_error(
    client: ASGIClient, head: bytes, tail: bytes, declared: int
) -> None:
    response = client.post(
        "/v2/models/types/infer",
        content=head + tail,
        headers={"Inference-Header-Content-Length": str(declared)},
    )
    assert response.status_code < 500, response.text


def test_repository_index_unload_and_load(client: ASGIClient) -> None:
    index = client.post("/v2/repository/index").json()
    assert {"name": "digits", "version": "2", "state": "READY", "reason": ""} in index
    assert client.post("/v2/repository/models/digits/unload").json() == {"name": "digits", "loaded": False}
    assert client.post("/v2/models/digits/infer", json=digits_request(np.zeros((1, 64)))).status_code == 404
    states = {
        (e["name"], e["version"]): (e["state"], e["reason"])
        for e in client.post("/v2/repository/index").json()
    }
    assert states[("digits", "1")] == ("UNAVAILABLE", "model not loaded")
    assert client.post("/v2/repository/models/digits/load").json() == {"name": "digits", "loaded": True}
    X, _ = digits_data()
    response = client.post("/v2/models/digits/infer", json=digits_request(X[:2]))
    assert response.status_code == 200
    assert client.post("/v2/repository/models/nope/load").status_code == 404


def test_admin_tokens_guard_the_repository_and_name_the_actor(registry: Registry, settings: Settings) -> None:
    register_digits(registry)
    register_digits(registry)
    registry.deploy("digits", 1)
    tokens = unit_settings(settings, admin_tokens={"admin": "s3cret", "ci": "c1-token"})
    with serving(registry, tokens) as (guarded, _):
        as_ci = {"Authorization": "Bearer c1-token"}
        refused = guarded.post("/v2/repository/index")
        assert refused.status_code == 401 and "admin token" in refused.json()["error"]
        wrong = {"Authorization": "Bearer wrong"}
        assert guarded.post("/v2/repository/index", headers=wrong).status_code == 401
        assert guarded.post("/v2/repository/models/digits/deploy", headers=wrong).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert guarded.post("/v2/repository/index", headers=ok).status_code == 200
        assert guarded.get("/v2/models/digits").status_code == 200  # inference and metadata stay open

        deployed = guarded.post(
            "/v2/repository/models/digits/deploy", json={"version": 2, "reason": "better"}, headers=as_ci
        )
        assert deployed.json() == {"name": "digits", "alias": "production", "version": 2, "previous": 1}
        X, _ = digits_data()
        assert (
            guarded.post("/v2/models/digits/infer", json=digits_request(X[:1])).json()["model_version"] == "2"
        )
        rolled = guarded.post("/v2/repository/models/digits/rollback", json={"reason": "oops"}, headers=ok)
        assert rolled.json() == {"name": "digits", "alias": "production", "version": 1, "previous": 2}
        assert (
            guarded.post("/v2/models/digits/infer", json=digits_request(X[:1])).json()["model_version"] == "1"
        )
        events = [(e.kind, e.version, e.actor, e.reason) for e in registry.history("digits")[-2:]]
        assert events == [("deploy", 2, "token:ci", "better"), ("rollback", 1, "token:admin", "oops")]

        for body, problem in [
            (b"{nope", "not JSON"),
            (b'{"version": "two"}', "version"),
            (b'{"verison": 2}', "verison"),
            (b'{"version": 0}', "version"),
        ]:
            bad = guarded.post("/v2/repository/models/digits/deploy", content=body, headers=as_ci)
            assert bad.status_code == 400 and problem in bad.json()["error"], bad.json()
        missing = guarded.post("/v2/repository/models/digits/deploy", json={"version": 9}, headers=as_ci)
        assert missing.status_code == 404 and "no version 9" in missing.json()["error"]
        unknown = guarded.post("/v2/repository/models/nope/rollback", headers=as_ci)
        assert unknown.status_code == 404


def test_a_deploy_that_cannot_load_changes_nothing(registry: Registry, settings: Settings) -> None:
    register_digits(registry)
    registry.deploy("digits", 1)
    registry.register("digits", b"no ONNX at all", signature=DIGITS_SIGNATURE, framework="onnx", check={})
    with serving(registry, unit_settings(settings, serving=ModelServing(versions="specific 1"))) as (
        client,
        server,
    ):
        resident = server.manager.served("digits").versions[1]
        refused = client.post("/v2/repository/models/digits/deploy", json={"version": 2})
        assert refused.status_code == 503
        assert "digits:2 was not deployed, digits:1 still serves" in refused.json()["error"]
        assert "cannot load the model" in refused.json()["error"]
        assert registry.model("digits").aliases["production"] == 1
        assert registry.history("digits")[-1].kind == "load-failed"
        assert server.manager.served("digits").versions[1] is resident  # still resident: never drained
        X, _ = digits_data()
        assert (
            client.post("/v2/models/digits/infer", json=digits_request(X[:1])).json()["model_version"] == "1"
        )

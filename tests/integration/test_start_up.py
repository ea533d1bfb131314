"""Starting and restarting: at once after kill -9, with a broken version among good ones, and over TLS."""

from __future__ import annotations

import signal
import ssl
from pathlib import Path

import httpx
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import DIGITS_SIGNATURE, register_digits
from tests.integration.conftest import infer_digits_over_grpc, start_server, stop_server
from tests.models import digits_data, digits_linear

PREDICT = {"input": [0.0] * 64}


def test_a_killed_server_restarts_at_once_on_the_same_ports(tmp_path: Path) -> None:
    registry = Registry.open(Settings(home=tmp_path))
    register_digits(registry)
    registry.close()
    first = start_server(tmp_path)
    with httpx.Client(base_url=first.url) as client:  # a keep-alive connection open when it dies
        assert client.post("/v1/models/digits/predict", json=PREDICT).status_code == 200
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    second = start_server(tmp_path, ports=(first.port, first.grpc_port), timeout=30)
    try:
        assert httpx.post(f"{second.url}/v1/models/digits/predict", json=PREDICT).status_code == 200
    finally:
        stop_server(second)


def test_a_corrupt_version_is_skipped_and_named_while_the_others_serve(tmp_path: Path) -> None:
    registry = Registry.open(Settings(home=tmp_path))
    good = register_digits(registry)
    broken = registry.register(
        "broken", digits_linear(seed=1).onnx_bytes, signature=DIGITS_SIGNATURE, framework="onnx", check={}
    )
    assert broken.sha256 != good.sha256
    path = registry.artifacts.path(broken.sha256)
    registry.close()
    path.write_bytes(b"\x00" + path.read_bytes()[1:])
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url) as client:
            ready = client.get("/v2/health/ready")
            assert ready.status_code == 200
            assert "broken:1" in ready.json()["down"] and "corrupt" in ready.json()["down"]["broken:1"]
            assert client.get("/v2/models/broken/ready").status_code == 400
            X, _ = digits_data()
            assert client.post("/v1/models/digits/predict", json={"input": X[0].tolist()}).status_code == 200
            refused = client.post("/v1/models/broken/predict", json=PREDICT)
            assert refused.status_code == 503 and "corrupt" in refused.json()["error"]
            index = client.post("/v2/repository/index").text
            for text in (ready.text, refused.text, index):
                assert str(tmp_path) not in text and "/artifacts" not in text  # no paths over the network
    finally:
        stop_server(server)


def test_tls_for_http_and_grpc(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    import grpc

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    home = tmp_path / "home"
    registry = Registry.open(Settings(home=home))
    register_digits(registry)
    registry.close()
    tls = ("--tls-cert", str(cert_file), "--tls-key", str(key_file))
    trusted = ssl.create_default_context(cafile=str(ca_file))
    server = start_server(home, *tls, scheme="https", verify=trusted)
    try:
        answer = httpx.post(f"{server.url}/v1/models/digits/predict", json=PREDICT, verify=trusted)
        assert answer.status_code == 200
        with pytest.raises(httpx.TransportError):  # plain HTTP is not answered
            httpx.post(f"http://127.0.0.1:{server.port}/v1/models/digits/predict", json=PREDICT, timeout=5)
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", credentials) as channel:
            response = infer_digits_over_grpc(channel)
            assert response.model_name == "digits" and response.outputs[0].name == "logits"
    finally:
        stop_server(server)

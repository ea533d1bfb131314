"""Scoped tokens end to end: made with the CLI, followed by a running server over REST and gRPC,
revoked while it runs (a server bound beyond loopback is tested in-process: tests/unit/test_auth.py)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import grpc
import httpx

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import register_digits
from tests.integration.conftest import infer_digits_over_grpc, shipyard_command, start_server, stop_server

PREDICT = {"input": [0.0] * 64}


def cli(home: Path, *args: str) -> str:
    result = subprocess.run(shipyard_command(home, *args), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_for(check: object, within_s: float = 15.0) -> None:
    """Poll a condition the server reaches on its own (it re-reads the registry every second)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)  # polling, bounded by the deadline
    raise AssertionError("the server did not follow the registry in time")


def grpc_infer(port: int, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            infer_digits_over_grpc(channel, metadata)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK


def test_tokens_made_with_the_cli_are_followed_by_a_running_server(tmp_path: Path) -> None:
    registry = Registry.open(Settings(home=tmp_path))
    register_digits(registry)
    registry.close()
    server = start_server(tmp_path)
    try:
        url = f"{server.url}/v1/models/digits/predict"
        assert httpx.post(url, json=PREDICT).status_code == 200  # no tokens: open on loopback
        out = cli(tmp_path, "token", "create", "ci", "--scope", "predict", "--model", "digits")
        secret = next(word for word in out.split() if word.startswith("shp_"))
        wait_for(lambda: httpx.post(url, json=PREDICT).status_code == 401)
        auth = {"Authorization": f"Bearer {secret}"}
        assert httpx.post(url, json=PREDICT, headers=auth).status_code == 200
        assert grpc_infer(server.grpc_port, None) == grpc.StatusCode.UNAUTHENTICATED
        assert grpc_infer(server.grpc_port, secret) == grpc.StatusCode.OK
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        assert "ci" in cli(tmp_path, "token", "list") and secret not in cli(tmp_path, "token", "list")
        cli(tmp_path, "token", "revoke", "ci")
        wait_for(lambda: httpx.post(url, json=PREDICT).status_code == 200)
        assert httpx.post(url, json=PREDICT, headers=auth).status_code == 200  # unknown, but not needed
    finally:
        stop_server(server)

"""Deploys and rollbacks while traffic flows: a running server follows the registry, loads and warms
the new version before switching, and no request fails."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import POSTGRES_URL, open_registry, register_digits
from tests.integration.conftest import Server, shipyard_command, start_server, stop_server
from tests.models import digits_data


def cli(home: Path, *args: str) -> str:
    result = subprocess.run(shipyard_command(home, *args), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_for_version(server: Server, version: int, timeout: float = 5.0) -> float:
    """Seconds until the server's default version is `version` (polled, bounded by `timeout`)."""
    start = time.monotonic()
    X, _ = digits_data()
    with httpx.Client(base_url=server.url) as client:
        while time.monotonic() - start < timeout:
            if (
                client.post("/v1/models/digits/predict", json={"input": X[0].tolist()}).json()["version"]
                == version
            ):
                return time.monotonic() - start
            time.sleep(0.05)
    raise AssertionError(f"the server did not switch to version {version} within {timeout} s")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    registry = Registry.open(Settings(home=tmp_path))
    register_digits(registry)
    registry.deploy("digits", 1)
    registry.close()
    return tmp_path


def test_a_new_version_is_followed_without_restart(home: Path) -> None:
    server = start_server(home)
    try:
        registry = Registry.open(Settings(home=home))
        register_digits(registry, description="imported while serving")
        registry.close()
        cli(home, "deploy", "digits:2", "--reason", "new weights")
        assert wait_for_version(server, 2) < 2.0 + 1.0  # within the 1 s watch period, plus load time
        assert "rolled digits back from version 2 to 1" in cli(home, "rollback", "digits")
        assert wait_for_version(server, 1) < 2.0
        history = cli(home, "model", "history", "digits")
        assert "deploy" in history and "rollback" in history and "new weights" in history
    finally:
        stop_server(server)


def test_no_request_fails_during_deploys_and_rollbacks(home: Path) -> None:
    registry = Registry.open(Settings(home=home))
    register_digits(registry)
    registry.close()
    server = start_server(home)
    X, _ = digits_data()
    seen: Counter[int] = Counter()
    failures: list[str] = []
    switch_times: list[float] = []

    async def client(stop: float) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            i = 0
            while time.monotonic() < stop:
                response = await http.post("/v1/models/digits/predict", json={"input": X[i % 100].tolist()})
                i += 1
                if response.status_code != 200:
                    failures.append(response.text)
                else:
                    seen[response.json()["version"]] += 1

    async def operator() -> None:
        for _ in range(5):
            for command in (["deploy", "digits:2"], ["rollback", "digits"]):
                await asyncio.to_thread(cli, home, *command)
                want = 2 if command[0] == "deploy" else 1
                switch_times.append(await asyncio.to_thread(wait_for_version, server, want))

    async def main() -> None:
        stop = time.monotonic() + 20
        await asyncio.gather(operator(), *(client(stop) for _ in range(16)))

    try:
        asyncio.run(main())
    finally:
        stop_server(server)
    assert failures == []
    assert set(seen) == {1, 2}
    assert sum(seen.values()) > 100
    assert len(switch_times) == 10 and max(switch_times) < 3.0
    total, slowest = sum(seen.values()), max(switch_times)
    print(f"requests {total}, failed 0, by version {dict(seen)}, slowest switch {slowest:.2f} s")


def test_a_corrupt_version_leaves_the_current_one_serving(home: Path) -> None:
    registry = Registry.open(Settings(home=home))
    server = start_server(home)
    try:
        record = registry.register(
            "digits",
            b"these bytes are no ONNX model",
            signature=registry.version("digits").signature,
            framework="onnx",
            check={},
        )
        registry.deploy("digits", record.number, reason="try the broken one")
        X, _ = digits_data()
        deadline = time.monotonic() + 5
        while not any(e.kind == "load-failed" for e in registry.history("digits")):
            assert time.monotonic() < deadline, "the server never reported the failed load"
            time.sleep(0.1)
        failed = next(e for e in registry.history("digits") if e.kind == "load-failed")
        assert failed.version == 2 and "cannot load the model" in failed.reason
        doc = httpx.post(f"{server.url}/v1/models/digits/predict", json={"input": X[0].tolist()}).json()
        assert doc["version"] == 1
        assert server.alive()
    finally:
        stop_server(server)
        registry.close()


@pytest.mark.skipif(not POSTGRES_URL, reason="SHIPYARD_TEST_POSTGRES_URL is not set")
def test_two_servers_on_one_postgres_registry_both_follow(tmp_path: Path) -> None:
    assert POSTGRES_URL is not None
    settings = Settings(home=tmp_path, database_url=POSTGRES_URL)
    registry = open_registry(Settings(home=tmp_path), "postgresql")
    register_digits(registry)
    register_digits(registry)
    registry.deploy("digits", 1)
    servers = [start_server(tmp_path, env={"SHIPYARD_DATABASE_URL": POSTGRES_URL}) for _ in range(2)]
    try:
        operator = Registry.open(settings)
        operator.deploy("digits", 2, reason="both must follow")
        operator.close()
        for server in servers:
            assert wait_for_version(server, 2) < 3.0
    finally:
        for server in servers:
            stop_server(server)
        registry.close()


def test_deploy_and_rollback_through_a_running_server(home: Path) -> None:
    """With --server, the server loads the version before it answers: no waiting for the watch."""
    registry = Registry.open(Settings(home=home))
    register_digits(registry)
    server = start_server(
        home, env={"SHIPYARD_WATCH_INTERVAL_S": "0", "SHIPYARD_ADMIN_TOKENS": '{"ci": "t0k"}'}
    )
    try:
        denied = subprocess.run(
            shipyard_command(home, "deploy", "digits:2", "--server", server.url),
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if k not in {"SHIPYARD_ADMIN_TOKEN", "SHIPYARD_TOKEN"}},
        )
        assert denied.returncode == 1 and denied.stderr.startswith(
            "error: this endpoint needs an admin token"
        )
        out = cli(
            home, "deploy", "digits:2", "--server", server.url, "--token", "t0k", "--reason", "canary ok"
        )
        assert "deployed digits:2 to production (was 1)" in out
        assert wait_for_version(server, 2, timeout=0.5) < 0.5  # already switched when deploy returned
        out = cli(home, "rollback", "digits", "--server", server.url, "--token", "t0k")
        assert "rolled digits back from version 2 to 1" in out
        assert wait_for_version(server, 1, timeout=0.5) < 0.5
        events = [(e.kind, e.version, e.actor, e.reason) for e in registry.history("digits")[-2:]]
        assert events == [("deploy", 2, "token:ci", "canary ok"), ("rollback", 1, "token:ci", "")]
        # SHIPYARD_SERVER and SHIPYARD_TOKEN stand for --server and --token
        by_env = subprocess.run(
            shipyard_command(home, "deploy", "digits:2"),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SHIPYARD_SERVER": server.url, "SHIPYARD_TOKEN": "t0k"},
        )
        assert "deployed digits:2 to production (was 1)" in by_env.stdout, by_env.stderr
        assert wait_for_version(server, 2, timeout=0.5) < 0.5
        assert registry.history("digits")[-1].actor == "token:ci"
        gone = subprocess.run(
            shipyard_command(home, "deploy", "digits:9", "--server", server.url, "--token", "t0k"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert gone.returncode == 1 and gone.stderr == "error: model 'digits' has no version 9\n"
    finally:
        stop_server(server)
        registry.close()


def test_a_server_can_follow_another_alias(home: Path) -> None:
    registry = Registry.open(Settings(home=home))
    register_digits(registry)
    registry.set_alias("digits", 2, "staging")
    server = start_server(home, "--alias", "staging")
    try:
        assert wait_for_version(server, 2, timeout=0.5) < 0.5  # production is 1; this one follows staging
        registry.set_alias("digits", 1, "staging")
        assert wait_for_version(server, 1) < 3.0
    finally:
        stop_server(server)
        registry.close()

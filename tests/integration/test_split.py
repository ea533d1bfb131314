"""A traffic split through the registry, as a user sets it: `shipyard rollout split`, followed by every
worker of a server (each reads the registry on its own), sticky by X-Shipyard-Key over HTTP and gRPC."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.integration.conftest import Server, infer_digits_over_grpc, start_server, stop_server
from tests.integration.test_deploy import cli
from tests.models import digits_data


@pytest.fixture(scope="module")
def home(served_home: Path) -> Path:
    """digits 1 in production and 2 beside it (this module's own copy: the split changes it)."""
    return served_home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    srv = start_server(home, "--workers", "2")
    yield srv
    stop_server(srv)


def version_of(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.headers["x-shipyard-version"])


def wait_for_split(server: Server, split: dict[str, float] | None, timeout: float = 10.0) -> None:
    """Until 20 fresh connections in a row (the kernel spreads them over both workers) see `split`."""
    deadline, in_a_row = time.monotonic() + timeout, 0
    while in_a_row < 20:
        assert time.monotonic() < deadline, f"the workers did not all apply {split} within {timeout} s"
        with httpx.Client(base_url=server.url) as fresh:
            seen = fresh.get("/v1/models").json()["models"][0]["split"]
        in_a_row = in_a_row + 1 if seen == split else 0
        if seen != split:
            time.sleep(0.05)  # polling the workers' state, bounded by the deadline


def test_every_worker_shares_traffic_by_the_registrys_split(server: Server, home: Path) -> None:
    out = cli(home, "rollout", "split", "digits", "2=20", "--reason", "canary")
    assert out.strip() == "digits: traffic split 1=80%, 2=20%"
    wait_for_split(server, {"1": 80.0, "2": 20.0})
    X, _ = digits_data()
    body = {"input": X[0].tolist()}
    seen: Counter[int] = Counter()
    for _ in range(20):  # 2,000 requests over 20 connections, so both workers answer
        with httpx.Client(base_url=server.url) as client:
            seen.update(version_of(client.post("/v1/models/digits/predict", json=body)) for _ in range(100))
    assert sum(seen.values()) == 2000
    assert 0.17 <= seen[2] / 2000 <= 0.23, seen  # 20% within 3 points (3.4 standard deviations)

    for key in (f"user-{i}" for i in range(30)):  # a key lands on one version, whichever worker answers
        versions = set()
        for _ in range(3):
            with httpx.Client(base_url=server.url) as client:
                headers = {"X-Shipyard-Key": key}
                versions.add(version_of(client.post("/v1/models/digits/predict", json=body, headers=headers)))
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            versions.add(int(infer_digits_over_grpc(channel, [("x-shipyard-key", key)]).model_version))
        assert len(versions) == 1, (key, versions)

    assert cli(home, "rollout", "split", "digits").strip() == "digits: traffic split 1=80%, 2=20%"
    assert cli(home, "rollout", "split", "digits", "--end").strip() == (
        "digits: split ended, all traffic to production"
    )
    wait_for_split(server, None)
    with httpx.Client(base_url=server.url) as client:
        assert {version_of(client.post("/v1/models/digits/predict", json=body)) for _ in range(50)} == {1}
    registry = Registry.open(Settings(home=home))
    splits = [(e.detail, e.reason) for e in registry.history("digits") if e.kind == "split"]
    registry.close()
    assert splits == [("production: 1=80%, 2=20%", "canary"), ("production: ended", "")]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["2=abc"], "'2=abc' is not VERSION=PERCENT"),
        (["2=20", "2=30"], "version 2 is given twice"),
        (["2=20", "--end"], "not both"),
        (["9=20"], "no version 9"),
        (["2=60", "1=60"], "add up to 120%"),
    ],
)
def test_a_bad_split_is_one_line(home: Path, args: list[str], problem: str) -> None:
    import subprocess

    from tests.integration.conftest import shipyard_command

    command = shipyard_command(home, "rollout", "split", "digits", *args)
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and problem in result.stderr and result.stderr.count("\n") == 1

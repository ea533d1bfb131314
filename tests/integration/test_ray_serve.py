"""`shipyard serve --engine ray` on a local Ray cluster: two replicas share the ports and both answer,
the v2 conformance tests of this repo pass through them (REST and gRPC, with tritonclient), a deploy
reaches every replica, and a replica killed under load costs no request that is retried once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration import test_grpc
from tests.integration.conftest import Server, free_port, shipyard_command, stop_server

pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'shipyard[ray]')")

# The repo's v2 conformance tests over REST, run here against the replicas: their `server` fixture is
# this file's, their `client` (tritonclient.http) theirs
from tests.integration.test_tritonclient import (  # noqa: F401
    client,
    test_classification_extension,
    test_errors_reach_the_client,
    test_health_and_metadata,
    test_infer,
    test_infer_with_all_defaults,
)

# the conformance tests' tritonclient HTTP clients are collected where they were used (the fixture)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_ray_at_a_time", "collected")]
REPLICA = "x-shipyard-replica"
ROW = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}


@contextlib.contextmanager
def on_ray(home: Path, *options: str) -> Iterator[Server]:
    """`shipyard serve --engine ray OPTIONS` on free ports, once it says it listens; stopped after."""
    port, grpc_port = free_port(), free_port()
    log = home / f"ray-serve-{port}.log"
    ports = ["--port", str(port), "--grpc-port", str(grpc_port)]
    command = shipyard_command(home, "serve", "--engine", "ray", "--replica-cpus", "0.5", *options, *ports)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "SHIPYARD_WATCH_INTERVAL_S": "0.2"},
        )
    srv = Server(f"http://127.0.0.1:{port}", port, grpc_port, process, log)
    try:
        deadline = time.monotonic() + 120  # a Ray cluster, then the replicas loading the models
        while "listening on" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)  # polling the command's output, bounded by the deadline
        yield srv
    finally:
        stop_server(srv)
    assert "stopped" in log.read_text(errors="replace")


@pytest.fixture(scope="module")
def server(one_ray_at_a_time: None, served_home: Path) -> Iterator[Server]:
    with on_ray(served_home, "--replicas", "2") as srv:
        yield srv


def replicas_answering(url: str, tries: int = 200, want: int = 2) -> dict[str, str]:
    """Replica id -> the model version it answered with, each request on a new connection (the kernel
    picks a replica per connection), until `want` replicas have answered or `tries` are spent."""
    seen: dict[str, str] = {}
    for _ in range(tries):
        with httpx.Client(timeout=10) as http:
            answer = http.post(f"{url}/v2/models/digits/infer", json=ROW)
        assert answer.status_code == 200, answer.text
        seen[answer.headers[REPLICA]] = answer.headers["x-shipyard-version"]
        if len(seen) >= want:
            break
    return seen


def test_grpc_conformance(server: Server) -> None:
    """The gRPC conformance tests (tests/integration/test_grpc.py), through the replicas' shared port."""
    import tritonclient.grpc as grpcclient

    grpc_client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc_port}")
    try:
        for test in (
            test_grpc.test_health_and_metadata,
            test_grpc.test_model_config_reads_like_tritons,
            test_grpc.test_infer_with_raw_contents,
            test_grpc.test_classification,
            test_grpc.test_errors_map_to_status_codes,
        ):
            test(grpc_client)
    finally:
        grpc_client.close()
    test_grpc.test_infer_with_typed_contents(server)


def test_two_replicas_both_answer(server: Server) -> None:
    assert len(replicas_answering(server.url)) == 2


def test_a_deploy_reaches_every_replica(server: Server, served_home: Path) -> None:
    def deploy(version: str) -> None:
        done = subprocess.run(
            shipyard_command(served_home, "deploy", f"digits:{version}", "--reason", "test"),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    try:
        deploy("2")
        deadline = time.monotonic() + 30
        while set(replicas_answering(server.url, tries=50).values()) != {"2"}:
            assert time.monotonic() < deadline, "the deploy did not reach both replicas"
    finally:
        deploy("1")  # the conformance tests above expect production at 1
    deadline = time.monotonic() + 30
    while set(replicas_answering(server.url, tries=50).values()) != {"1"}:
        assert time.monotonic() < deadline, "the rollback did not reach both replicas"


def replica_pids() -> list[int]:
    """The processes of this cluster's shipyard replicas (Ray names them by deployment)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(b"ray::ServeReplica:shipyard:shipyard"):
                pids.append(int(entry.name))
    return pids


def test_a_killed_replica_loses_no_retried_request_and_comes_back(server: Server) -> None:
    before = replicas_answering(server.url)
    pids = replica_pids()
    assert len(pids) == 2, pids

    def call(_: int) -> int:
        # The client retries on a new connection, twice, after 0.1 then 0.2 s, as urllib3's Retry
        # would: until the killed process's sockets are closed, which takes a while on a busy machine,
        # the kernel can still queue a new connection on its listening one, and resets it.
        for attempt in range(3):
            try:
                with httpx.Client(timeout=10) as http:
                    return http.post(f"{server.url}/v2/models/digits/infer", json=ROW).status_code
            except httpx.TransportError:
                if attempt == 2:
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    with ThreadPoolExecutor(8) as pool:
        load = pool.map(call, range(400))
        first = [next(load) for _ in range(50)]  # the load is under way
        os.kill(pids[0], signal.SIGKILL)
        statuses = first + list(load)
    assert statuses == [200] * 400

    deadline = time.monotonic() + 90  # Ray notices the dead actor and starts another replica
    while True:
        now = replicas_answering(server.url, tries=60)
        if len(now) == 2 and set(now) != set(before):
            break
        assert time.monotonic() < deadline, f"no new replica came up: {now} (before: {before})"

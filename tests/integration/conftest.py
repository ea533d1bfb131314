"""Integration fixtures: `shipyard serve` as a real subprocess on a free loopback port."""

from __future__ import annotations

import gc
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import register_digits


@pytest.fixture
def collected() -> Iterator[None]:
    """Garbage collected on the test's own thread after it. tritonclient's HTTP client closes itself
    again when collected, joining a gevent pool, which only the thread that used it may do: one kept
    alive by an error's traceback and collected later on another test's thread failed that test."""
    yield
    gc.collect()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    port: int
    grpc_port: int
    process: subprocess.Popen[bytes]
    log: Path | None = None
    """What the server printed (it writes to a file, not a pipe)."""

    def alive(self) -> bool:
        return self.process.poll() is None


def shipyard_command(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "shipyard", "--home", str(home), *args]


def start_server(
    home: Path,
    *args: str,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    ports: tuple[int, int] | None = None,
    scheme: str = "http",
    verify: ssl.SSLContext | bool = True,
) -> Server:
    """Start the server and return once /v2/health/ready answers 200 (or fail with its output)."""
    port, grpc_port = ports or (free_port(), free_port())
    log = home / f"server-{port}.log"
    with log.open("wb") as out:  # a file, not a pipe: nobody has to drain it while tests run
        process = subprocess.Popen(
            shipyard_command(
                home,
                "serve",
                *args,
                "--port",
                str(port),
                "--grpc-port",
                str(grpc_port),
                "--log-level",
                "warning",
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SHIPYARD_HOME": str(home), **(env or {})},
        )
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        return wait_ready(process, url, log, port, grpc_port, timeout, verify)
    except BaseException:
        process.kill()  # never leave a server running behind a failed start
        process.wait()
        raise


def wait_ready(
    process: subprocess.Popen[bytes],
    url: str,
    log: Path,
    port: int,
    grpc_port: int,
    timeout: float,
    verify: ssl.SSLContext | bool = True,
) -> Server:
    """`process` as a Server once /v2/health/ready answers 200 at `url` (or fail with its output)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0, verify=verify) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = log.read_text(errors="replace")
                raise RuntimeError(f"server exited with {process.returncode}:\n{output}")
            try:
                if client.get(f"{url}/v2/health/ready").status_code == 200:
                    return Server(url, port, grpc_port, process, log)
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling the readiness endpoint, bounded by the deadline
    raise RuntimeError("server did not become ready in time")


def infer_digits_over_grpc(channel: Any, metadata: list[tuple[str, str]] | None = None) -> Any:
    """One ModelInfer of a row of zeros for `digits`, as any gRPC client sends it."""
    import numpy as np

    from shipyard.protocol.grpc import messages as pb

    infer = channel.unary_unary(
        f"/{pb.SERVICE}/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    request = pb.ModelInferRequest(model_name="digits")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    tensor.contents.fp32_contents.extend(np.zeros(64).tolist())
    return infer(request, timeout=10, metadata=metadata)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def served_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    registry = Registry.open(Settings(home=home))
    register_digits(registry)
    register_digits(registry)
    registry.set_alias("digits", 1, "production")
    registry.close()
    return home


@pytest.fixture(scope="module")
def server(served_home: Path) -> Iterator[Server]:
    srv = start_server(served_home, "--max-body-mb", "1")
    yield srv
    stop_server(srv)

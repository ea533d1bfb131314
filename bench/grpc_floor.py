"""gRPC beside HTTP, by one native client (h2load) for both: the bare grpc.aio handler
(bench/bare_grpc_server.py, the floor of a Python gRPC server) and shipyard over gRPC and over HTTP with
the binary tensor extension, at 64 connections. Part of floor.py's run (its "gRPC" table and target).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import grpc
import h2load
import loadgen
import models
import numpy as np
from servers import cpu_s, free_port, server
from tritonclient.grpc import service_pb2

BENCH = Path(__file__).parent
PYTHON = sys.executable
METHOD = "/inference.GRPCInferenceService/ModelInfer"
GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}
CONNECTIONS = 64


def check_one_call(target: str, message: bytes) -> None:
    """h2load sees HTTP statuses only: one real gRPC call first, which must answer a tensor."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD, response_deserializer=service_pb2.ModelInferResponse.FromString)
        answer = call(message, timeout=30)
    if not answer.raw_output_contents or not np.frombuffer(answer.raw_output_contents[0], np.float32).size:
        raise RuntimeError(f"{target}: ModelInfer answered no tensor")


async def measure(name: str, onnx_file: Path, home: Path, seconds: float, rounds: int) -> dict[str, Any]:
    x = models.sample(name)
    message = loadgen.grpc_body(name, x)
    binary, binary_headers = loadgen.binary_body(x)
    env = {"MODEL": str(onnx_file), "INTRA_OP_THREADS": "1"}
    one_thread = ["--intra-op-threads", "1", "--inter-op-threads", "1"]
    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(rounds):
        port = free_port()
        bare = [PYTHON, str(BENCH / "bare_grpc_server.py"), str(port)]
        with server(bare, env, port) as process:  # its gRPC port is port + 1
            runs.setdefault("bare grpc.aio handler, gRPC", []).append(
                await _run(process.pid, f"127.0.0.1:{port + 1}", message, seconds)
            )
        port, grpc_port = free_port(), free_port()
        serve = [PYTHON, "-m", "shipyard", "--home", str(home), "serve", name, *one_thread]
        with server([*serve, "--port", str(port), "--grpc-port", str(grpc_port)], {}, port) as process:
            runs.setdefault("shipyard, gRPC", []).append(
                await _run(process.pid, f"127.0.0.1:{grpc_port}", message, seconds)
            )
            url = f"http://127.0.0.1:{port}/v2/models/{name}/infer"
            await h2load.run(url, binary, binary_headers, CONNECTIONS, min(seconds, 1.0), h1=True)
            before = cpu_s(process.pid)
            r = await h2load.run(url, binary, binary_headers, CONNECTIONS, seconds, h1=True)
            runs.setdefault("shipyard, HTTP binary", []).append(_row(r, cpu_s(process.pid) - before))
    return {label: _median(rows) for label, rows in runs.items()}


async def _run(pid: int, target: str, message: bytes, seconds: float) -> dict[str, float]:
    check_one_call(target, message)
    url, body = f"http://{target}{METHOD}", h2load.grpc_frame(message)
    await h2load.run(url, body, GRPC_HEADERS, CONNECTIONS, min(seconds, 1.0))  # warm-up
    before = cpu_s(pid)
    r = await h2load.run(url, body, GRPC_HEADERS, CONNECTIONS, seconds)
    return _row(r, cpu_s(pid) - before)


def _row(r: h2load.H2Result, cpu: float) -> dict[str, float]:
    return {
        "requests_per_s": r.requests_per_s,
        "mean_ms": r.mean_ms,
        "failed": r.failed,
        "server_cpu_ms_per_request": 1000 * cpu / max(r.succeeded, 1),
    }


def _median(rows: list[dict[str, float]]) -> dict[str, Any]:
    ranked = sorted(rows, key=lambda r: r["requests_per_s"])
    found: dict[str, Any] = dict(ranked[len(ranked) // 2])
    found["requests_per_s_rounds"] = [r["requests_per_s"] for r in rows]
    return found


def section(found: dict[str, Any]) -> list[str]:
    http = found["shipyard, HTTP binary"]["requests_per_s"]
    lines = [
        "### gRPC",
        "",
        "h2load (`-t1`, 64 connections, one request in flight each) drives gRPC and HTTP alike: a Python "
        "gRPC client would be the bottleneck. The digits MLP, one row per request.",
        "",
        "| system | requests/s | vs shipyard HTTP binary | mean ms | server CPU ms/request |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, row in found.items():
        lines.append(
            f"| {label} | {row['requests_per_s']:,.0f} | {row['requests_per_s'] / http:.0%} | "
            f"{row['mean_ms']:.2f} | {row['server_cpu_ms_per_request']:.3f} |"
        )
    return [*lines, ""]


def target(found: dict[str, Any]) -> tuple[str, str, bool]:
    http = found["shipyard, HTTP binary"]["requests_per_s"]
    ship = found["shipyard, gRPC"]["requests_per_s"]
    floor = found["bare grpc.aio handler, gRPC"]["requests_per_s"]
    return (
        "digits, c=64: gRPC within 20% of HTTP binary",
        f"{ship / http:.0%} of HTTP binary (grpc.aio's own floor: {floor / http:.0%})",
        ship >= 0.8 * http,
    )

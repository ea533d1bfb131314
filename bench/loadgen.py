"""A closed-loop load generator: N workers, each sending its next request when its previous answer
has arrived, over reused connections (one aiohttp session, one gRPC channel). Bodies are encoded once
up front, so the generator spends its share of the 2 cores on I/O, not on building requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import aiohttp
import grpc
import numpy as np
import onnxruntime as ort
import orjson
from tritonclient.grpc import service_pb2

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class Result:
    samples_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def summarise(latencies: list[float], errors: int, elapsed: float, rows: int) -> Result:
    lat = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return Result(
        samples_per_s=len(latencies) * rows / elapsed,
        p50_ms=float(np.percentile(lat, 50)),
        p90_ms=float(np.percentile(lat, 90)),
        p99_ms=float(np.percentile(lat, 99)),
        requests=len(latencies),
        errors=errors,
    )


def json_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    doc = {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    }
    return orjson.dumps(doc), {"Content-Type": "application/json"}


def binary_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    )
    return head + x.tobytes(), {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }


def grpc_body(model: str, x: np.ndarray) -> bytes:
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    return request.SerializeToString()


async def closed_loop(
    send: Callable[[], Awaitable[bool]], concurrency: int, duration: float, warmup: float
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + duration

    async def worker() -> None:
        nonlocal errors
        while (now := time.perf_counter()) < stop:
            try:
                ok = await send()
            except (TimeoutError, aiohttp.ClientError, grpc.aio.AioRpcError):
                ok = False
            done = time.perf_counter()
            if now >= measure_from:
                if ok:
                    latencies.append(done - now)
                else:
                    errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - measure_from


async def http(
    url: str, body: bytes, headers: dict[str, str], concurrency: int, duration: float, warmup: float
) -> Result:
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send() -> bool:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status == 200

        latencies, errors, elapsed = await closed_loop(send, concurrency, duration, warmup)
    return summarise(latencies, errors, elapsed, 1)


async def grpc_infer(target: str, body: bytes, concurrency: int, duration: float, warmup: float) -> Result:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(INFER_METHOD)  # bytes in, bytes out: no client-side (de)serialising

        async def send() -> bool:
            await call(body, timeout=30)
            return True

        latencies, errors, elapsed = await closed_loop(send, concurrency, duration, warmup)
    return summarise(latencies, errors, elapsed, 1)


def in_process(model_path: str, x: np.ndarray, duration: float, intra_op_threads: int = 1) -> Result:
    """`session.run` in a loop: the ceiling no server can pass on the same threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: x}
    for _ in range(10):
        session.run(None, feeds)
    latencies = []
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < duration:
        session.run(None, feeds)
        latencies.append(time.perf_counter() - now)
    return summarise(latencies, 0, time.perf_counter() - start, len(x))

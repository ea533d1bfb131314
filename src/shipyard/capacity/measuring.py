"""Measuring a version on this machine, for the arithmetic of plan.py:

- ONNX Runtime's run by batch size, on a runner configured as a server worker configures it (the same
  `Runner`, its intra-op threads, one inter-op thread, the CPU provider);
- the server's CPU around the model, by the real server over loopback: `shipyard serve` in a child
  process, kept busy by a light client, its CPU time read from /proc, once with one connection and
  once with BUSY_CONNECTIONS, which split it into a cost per cycle and a cost per request. In-process
  through the ASGI app would leave out uvicorn's HTTP parsing and the sockets, most of what a request
  of a small model costs, and would count the client's work as the server's.

The server runs on a scratch copy of the version (its artifact, signature, labels and drift
reference), with the batching the plan assumes: nothing is written to the registry or to its
prediction log.
"""

from __future__ import annotations

import asyncio
import base64
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import orjson

from shipyard.capacity import loopback
from shipyard.capacity.plan import Figures, compute_at
from shipyard.config import Settings
from shipyard.datatypes import numpy_dtype
from shipyard.errors import InvalidInput, Unavailable
from shipyard.machine import usable_cores
from shipyard.processing import graph_inputs, recipe_of, samples
from shipyard.protocol.v2 import encode_raw
from shipyard.registry import Registry, VersionRecord
from shipyard.runtime.session import Runner, RunnerOptions
from shipyard.signature import Signature

BODIES = ("json", "binary")
BUSY_CONNECTIONS = 16
"""Enough requests in flight that the server always has some to read: it is measured busy."""
LEFT_OUT = ("SHIPYARD_DATABASE_URL", "SHIPYARD_MONITOR__LOG_DIR", "SHIPYARD_TLS_CERT", "SHIPYARD_TLS_KEY")
"""What the measuring server must not inherit: the scratch registry is its registry, its prediction
log stays in the scratch folder, and the client speaks plain HTTP."""


def machine() -> tuple[str, int]:
    """This machine's CPU model and the cores this process may use."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return cpu, usable_cores()


def batch_sizes(most: int) -> list[int]:
    """1, 2, 4, ... up to `most`, and `most` itself."""
    sizes = [1]
    while sizes[-1] * 2 < most:
        sizes.append(sizes[-1] * 2)
    return sorted({*sizes, most})


def sample(signature: Signature, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`rows` rows of every input: uniform numbers in [0, 1) for floats (as long in JSON as real data),
    zeros for integers and booleans, empty strings for BYTES, a 640x480 JPEG photo (as base64, which
    JSON and binary bodies both carry) for a recipe's pictures; any other dynamic axis 1 long."""
    rng = np.random.default_rng(seed)
    inputs = {}
    recipe = recipe_of(signature)
    for spec in signature.inputs:
        shape = (rows, *(1 if d < 0 else d for d in spec.shape[1:])) if spec.batched else spec.shape
        shape = tuple(1 if d < 0 else d for d in shape)
        dtype = numpy_dtype(spec.datatype)
        if recipe is not None and spec.name == recipe.input:
            photo = base64.b64encode(samples.picture("JPEG", "RGB", (640, 480), seed))
            inputs[spec.name] = np.full(shape, photo, dtype=object)
        elif spec.datatype == "BYTES":
            inputs[spec.name] = np.full(shape, b"", dtype=object)
        elif dtype.kind == "f":
            inputs[spec.name] = rng.random(shape).astype(dtype)
        else:
            inputs[spec.name] = np.zeros(shape, dtype=dtype)
    return inputs


def request_body(signature: Signature, body: str) -> tuple[bytes, dict[str, str]]:
    """A KServe v2 request of one row, in JSON or with the binary tensor extension (outputs too)."""
    if body not in BODIES:
        raise InvalidInput(f"--body must be json or binary, not {body!r}")
    inputs = sample(signature, 1)
    datatypes = {spec.name: spec.datatype for spec in signature.inputs}
    if body == "json":
        tensors = [
            {"name": n, "shape": list(a.shape), "datatype": datatypes[n], "data": _json_data(a)}
            for n, a in inputs.items()
        ]
        return orjson.dumps({"inputs": tensors}), {"Content-Type": "application/json"}
    raws = {n: encode_raw(a) for n, a in inputs.items()}
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": n,
                    "shape": list(a.shape),
                    "datatype": datatypes[n],
                    "parameters": {"binary_data_size": len(raws[n])},
                }
                for n, a in inputs.items()
            ],
            "outputs": [{"name": s.name, "parameters": {"binary_data": True}} for s in signature.outputs],
        }
    )
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}
    return head + b"".join(raws.values()), headers


def _json_data(array: np.ndarray) -> list[object]:
    flat: list[object] = array.ravel().tolist()
    return [item.decode() if isinstance(item, bytes) else item for item in flat]


def http_request(path: str, port: int, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def compute(
    name: str, model: bytes, signature: Signature, sizes: Sequence[int], threads: int, seconds: float,
    stop_above_s: float | None = None,
) -> dict[int, float]:  # fmt: skip
    """The median time of one run by batch size, each timed for about `seconds` (at least 5 runs). Sizes
    past one whose run alone takes longer than `stop_above_s` are left out: no latency budget fits
    them."""
    options = RunnerOptions(threads, 1, ["CPUExecutionProvider"], execution="threads")
    # the graph's own inputs (a recipe's pictures are pixels there, decoded beside the runs)
    signature = replace(signature, inputs=graph_inputs(signature), preprocess=None)
    runner = Runner(name, model, options)
    runner.load()
    times: dict[int, float] = {}
    try:
        for size in sizes if signature.batched else [1]:
            inputs = sample(signature, size)
            runner.run_sync(inputs)  # warm-up: first runs allocate
            runs: list[float] = []
            deadline = time.perf_counter() + seconds
            while len(runs) < 5 or time.perf_counter() < deadline:
                started = time.perf_counter()
                runner.run_sync(inputs)
                runs.append(time.perf_counter() - started)
            times[size] = float(np.median(runs))
            if stop_above_s is not None and times[size] > stop_above_s:
                break
    finally:
        runner.unload()
    return times


@dataclass(frozen=True)
class ServerCosts:
    """The server's CPU (seconds) per request in two windows, and what they give for plan.py."""

    alone_s: float
    """One connection: every request its own cycle (a wake-up, a batch of one)."""
    busy_s: float
    """BUSY_CONNECTIONS connections: the loop wakes for several requests, batched together."""
    busy_batch: float
    """The mean batch in the busy window: from the server's metrics, else half its connections."""
    per_cycle_s: float
    per_request_s: float


def server_costs(
    registry: Registry,
    record: VersionRecord,
    compute_s: Mapping[int, float],
    *,
    body: str,
    threads: int,
    execution: str,
    max_batch_size: int,
    seconds: float,
    warm_up_s: float,
) -> ServerCosts:
    """`shipyard serve` on a scratch copy of the version, batching as planned, measured alone and busy.
    Per request, alone: cycle + request + run(1); busy, in batches of n: cycle / n + request + run(n) / n.
    The two give the cycle's and the request's costs."""
    with tempfile.TemporaryDirectory(prefix="shipyard-capacity-") as scratch:
        home = Path(scratch)
        number = _copy(registry, record, home)
        port = _free_port()
        command = [
            sys.executable, "-m", "shipyard", "--home", str(home), "serve", record.model, "--no-grpc",
            "--host", "127.0.0.1", "--port", str(port), "--intra-op-threads", str(threads),
            "--inter-op-threads", "1", "--batching", "--max-batch-size", str(max_batch_size),
            "--max-queue-delay-us", "0", "--execution", execution, "--log-level", "warning",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in LEFT_OUT}
        log = home / "server.log"
        with log.open("wb") as out:
            server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_ready(server, port, log)
            payload, headers = request_body(record.signature, body)
            request = http_request(
                f"/v2/models/{record.model}/versions/{number}/infer", port, payload, headers
            )

            def snapshot() -> dict[str, float]:
                return {"cpu": _cpu_s(server.pid), **_batches(port)}

            alone, busy = (
                asyncio.run(loopback.measure(port, request, connections, warm_up_s, seconds, snapshot))
                for connections in (1, BUSY_CONNECTIONS)
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    if alone.answered < 1 or busy.answered < 1:
        raise Unavailable("the measuring server answered no request")
    runs = busy.after.get("batches", 0) - busy.before.get("batches", 0)
    batch = busy.answered / runs if runs > 0 else BUSY_CONNECTIONS / 2
    batch = min(max(1.0, batch), float(max_batch_size))
    return split_costs(alone.per_answer("cpu"), busy.per_answer("cpu"), batch, compute_s, threads)


def split_costs(
    alone_s: float, busy_s: float, batch: float, compute_s: Mapping[int, float], threads: int
) -> ServerCosts:
    """The cycle's and the request's CPU from the two windows (each at least 0): the run's CPU is taken
    off (its wall time x its threads), the rest shared as cycle / n + request."""
    figures = Figures(0.0, compute_s)
    run_alone = threads * compute_at(figures, 1)
    run_busy = threads * compute_at(figures, batch) / batch
    cycle = 0.0
    if batch > 1.05:
        cycle = max(0.0, ((alone_s - run_alone) - (busy_s - run_busy)) / (1 - 1 / batch))
    request = max(0.0, alone_s - run_alone - cycle)
    return ServerCosts(alone_s, busy_s, batch, cycle, request)


def _copy(registry: Registry, record: VersionRecord, home: Path) -> int:
    """The version copied into a scratch registry under `home` (artifact, signature, labels, drift
    reference): its number there."""
    copy = Registry.open(Settings(home=home))
    try:
        made = copy.register(
            record.model,
            registry.artifact(record),
            signature=record.signature,
            framework=record.framework,
            check=record.check,
            labels=record.labels,
        )
        if record.reference:
            copy.set_reference(made.model, made.number, record.reference, "copied for capacity")
        return made.number
    finally:
        copy.close()


def _batches(port: int) -> dict[str, float]:
    """The runs and rows the server's metrics have counted (none when monitoring is off)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        for key, metric in (("batches", "shipyard_batch_size_count"), ("rows", "shipyard_batch_size_sum")):
            if line.startswith(metric + "{") or line.startswith(metric + " "):
                found[key] = found.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(server: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float = 120) -> None:
    """Until the server answers its readiness check: it loads and warms up the model first."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            said = log.read_text(errors="replace").strip().splitlines()
            raise Unavailable(f"the measuring server stopped: {said[-1] if said else server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a child process that has no way to tell us sooner
    raise Unavailable(f"the measuring server was not ready within {timeout_s:g} s")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux's /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        raise Unavailable("measuring the server's CPU needs Linux's /proc") from None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    registry: Registry,
    record: VersionRecord,
    *,
    body: str,
    threads: int,
    execution: str,
    max_batch_size: int,
    budget_s: float,
    seconds: float,
) -> Figures:
    """The figures of plan.py for `record` on this machine; about 2 x `seconds` plus the server's start."""
    if threads < 1:
        raise InvalidInput("--threads must be 1 or more")
    request_body(record.signature, body)  # a bad --body fails before anything is measured
    model = registry.artifact(record)
    sizes = batch_sizes(max_batch_size)
    times = compute(
        record.ref, model, record.signature, sizes, threads, seconds / len(sizes), stop_above_s=budget_s
    )
    if times[1] > budget_s:
        raise InvalidInput(
            f"one row alone takes {times[1] * 1000:.3g} ms in ONNX Runtime here, over the p99 budget of "
            f"{budget_s * 1000:g} ms: no batch size fits"
        )
    costs = server_costs(
        registry,
        record,
        times,
        body=body,
        threads=threads,
        execution=execution,
        max_batch_size=max_batch_size,
        seconds=seconds,
        warm_up_s=min(1.0, seconds / 2),
    )
    cpu, cores = machine()
    return Figures(
        overhead_s=costs.per_request_s,
        compute_s=times,
        cycle_s=costs.per_cycle_s,
        threads=threads,
        cpu=cpu,
        cores=cores,
        body=body,
    )

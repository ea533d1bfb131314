"""`make bench`: every scenario side by side, in one run, on this machine; writes bench/results/ and
bench/BENCHMARKS.md. Environment: BENCH_QUICK=1 (short runs, no soak), BENCH_DURATION (s per run),
SOAK_S (soak length, 0 skips it), OVERLOAD=0 (skips the overload scenario, which needs wrk). With wrk,
the floor, shadow traffic and images (bench/images.py: pictures in, labels out) run after. Batch
inference (bench/batch.py, then bench/batch_ray.py) runs after serving on Ray (bench/ray_serve.py) and
capacity planning (bench/capacity.py); it writes up to 2 GB of input to a temporary folder."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnxruntime
import orjson

sys.path.insert(0, str(Path(__file__).parent))

import batch
import batch_ray
import capacity
import floor
import images
import loadgen
import models
import overload
import ray_serve
import report
import shadow
import wrk
from servers import cpu_s, free_port, rss_kib, server

BENCH = Path(__file__).parent
WORK = BENCH / ".work"
QUICK = os.environ.get("BENCH_QUICK") == "1"
DURATION = float(os.environ.get("BENCH_DURATION", "1.5" if QUICK else "5"))
WARMUP = 0.5 if QUICK else 1.0
SOAK_S = 0 if QUICK else float(os.environ.get("SOAK_S", "300"))
OVERLOAD = os.environ.get("OVERLOAD", "1") != "0"
CONCURRENCY = [1, 8, 64]
PYTHON = sys.executable


@contextmanager
def shipyard(
    model: str, batching: bool, env: dict[str, str] | None = None
) -> Iterator[tuple[int, int, subprocess.Popen[bytes]]]:
    port, grpc_port = free_port(), free_port()
    flags = ["--max-batch-size", "64"] if batching else ["--no-batching"]
    command = [
        PYTHON, "-m", "shipyard", "--home", str(WORK / "home"), "serve", model, "--port", str(port),
        "--grpc-port", str(grpc_port), "--intra-op-threads", "1", "--inter-op-threads", "1",
        "--log-level", "warning", *flags,
    ]  # fmt: skip
    with server(command, env or {}, port) as process:
        yield port, grpc_port, process


def measure_model(name: str, onnx_file: Path) -> dict:
    rows: list[dict] = []
    x1 = models.sample(name)
    batch1 = loadgen.in_process(str(onnx_file), x1, DURATION)
    best = (1, batch1)
    for b in (8, 32, 64, 128):
        r = loadgen.in_process(str(onnx_file), models.sample(name, b), DURATION)
        if r.samples_per_s > best[1].samples_per_s:
            best = (b, r)
    print(
        f"{name}: in-process batch 1 {batch1.samples_per_s:.0f}/s, batch {best[0]} {best[1].samples_per_s:.0f}/s"
    )

    json_req = loadgen.json_body(x1)
    binary_req = loadgen.binary_body(x1)
    port = free_port()
    naive_cmd = [PYTHON, str(BENCH / "naive_server.py"), str(port)]
    with server(naive_cmd, {"MODEL": str(onnx_file), "INTRA_OP_THREADS": "1"}, port) as naive:
        url = f"http://127.0.0.1:{port}/v2/models/{name}/infer"
        for c in CONCURRENCY:
            r = measured(naive.pid, loadgen.http(url, *json_req, c, DURATION, WARMUP))
            rows.append(
                {
                    "system": "naive FastAPI",
                    "transport": "HTTP JSON",
                    "batching": "-",
                    "concurrency": c,
                    **r,
                }
            )
            print(rows[-1])
    grpc_req = loadgen.grpc_body(name, x1)
    for batching in (True, False):
        with shipyard(name, batching) as (port, grpc_port, process):
            url = f"http://127.0.0.1:{port}/v2/models/{name}/infer"
            for c in CONCURRENCY:
                for transport in ("HTTP JSON", "HTTP binary", "gRPC"):
                    if transport == "gRPC":
                        coro = loadgen.grpc_infer(f"127.0.0.1:{grpc_port}", grpc_req, c, DURATION, WARMUP)
                    else:
                        body, headers = json_req if transport == "HTTP JSON" else binary_req
                        coro = loadgen.http(url, body, headers, c, DURATION, WARMUP)
                    r = measured(process.pid, coro)
                    state = "on" if batching else "off"
                    rows.append(
                        {
                            "system": "shipyard",
                            "transport": transport,
                            "batching": state,
                            "concurrency": c,
                            **r,
                        }
                    )
                    print(rows[-1])
    return {
        "in_process": {"batch1": batch1.to_dict(), "best_batch": best[0], "best": best[1].to_dict()},
        "rows": rows,
    }


def monitoring_cost(name: str) -> list[dict]:
    """The same server with monitoring on (metrics, drift against a reference, the prediction log)
    and off, side by side: what watching every prediction costs."""
    rows = []
    binary_req = loadgen.binary_body(models.sample(name))
    for label, env in (("on", {}), ("off", {"SHIPYARD_MONITOR__ENABLED": "false"})):
        with shipyard(name, True, env) as (port, _grpc_port, process):
            url = f"http://127.0.0.1:{port}/v2/models/{name}/infer"
            for c in (1, 64):
                r = measured(process.pid, loadgen.http(url, *binary_req, c, DURATION, WARMUP))
                rows.append({"monitoring": label, "concurrency": c, **r})
                print(rows[-1])
    return rows


def measured(pid: int, coro: Any) -> dict[str, float]:
    """Run one load scenario and add the server's CPU time per request to its figures."""
    before = cpu_s(pid)
    r = asyncio.run(coro)
    used = cpu_s(pid) - before
    return {**r.to_dict(), "server_cpu_ms_per_request": 1000 * used / max(r.requests, 1)}


def soak() -> dict:
    body, headers = loadgen.binary_body(models.sample("digits"))
    with shipyard("digits", True) as (port, _, process):
        url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
        asyncio.run(loadgen.http(url, body, headers, 64, 10, 1))  # warm up: sessions, buffers, allocator
        start = rss_kib(process.pid)
        samples: list[tuple[float, int]] = []

        async def load_and_sample() -> loadgen.Result:
            """RSS every 10 s while the load runs: bounded buffers filling early look like growth in
            a start/end pair; a leak keeps rising to the end."""
            task = asyncio.create_task(loadgen.http(url, body, headers, 64, SOAK_S, 0))
            t0 = time.monotonic()
            while not task.done():
                samples.append((time.monotonic() - t0, rss_kib(process.pid)))
                await asyncio.wait({task}, timeout=10)
            return task.result()

        r = asyncio.run(load_and_sample())
        end = rss_kib(process.pid)
    half = next(kib for t, kib in samples if t >= SOAK_S / 2)
    return {
        "seconds": SOAK_S,
        "concurrency": 64,
        "rss_start_kib": start,
        "rss_half_kib": half,
        "rss_end_kib": end,
        "rss_samples": samples,
        **r.to_dict(),
    }


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "cpu": report.cpu(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "duration_s": DURATION,
        "ort_threads": "intra_op 1, inter_op 1 everywhere",
    }


def main() -> None:
    WORK.mkdir(exist_ok=True)
    home = WORK / "home"
    if home.exists():
        import shutil

        shutil.rmtree(home)
    files = models.build(home)
    results = {
        "machine": machine(),
        "models": {name: measure_model(name, path) for name, path in files.items()},
    }
    results["monitoring"] = monitoring_cost("digits")
    if SOAK_S:
        results["soak"] = soak()
        print(results["soak"])
    if OVERLOAD and wrk.available():
        results["overload"] = overload.run(home, QUICK)
    elif OVERLOAD:
        print("overload skipped: it needs wrk (Debian: apt-get install wrk)")
    out = BENCH / "results" / ("quick.json" if QUICK else "latest.json")
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    if not QUICK:
        report.write(results, BENCH / "BENCHMARKS.md", BENCH / "results" / "throughput.png")
    print(f"wrote {out}")
    if wrk.available():
        floor.run(QUICK)  # its own section of BENCHMARKS.md, and bench/results/floor.json
        shadow.run(QUICK)  # the same: "Shadow traffic", bench/results/shadow.json
        images.run(QUICK)  # the same: "Images: bytes in, label out", bench/results/images.json
    ray_serve.run(QUICK)  # the same: "Serving on Ray", bench/results/ray_serve.json
    capacity.run(QUICK)  # the same: "Capacity planning", bench/results/capacity.json
    batch.run(QUICK)  # the same: "Batch inference", bench/results/batch.json
    batch_ray.run(QUICK)  # the same: "Batch on Ray", bench/results/batch_ray.json


if __name__ == "__main__":
    main()

"""The floor: shipyard beside the least a Python server can do per request, in one run. wrk (`-t1`, the
other core stays with the server) drives, one after another: the bare ASGI handler
(bench/bare_server.py), the hand-written FastAPI server (bench/naive_server.py) and shipyard with
monitoring on (its default, drift reference included) and off, each with the v2 JSON body and the
binary tensor extension, at 64 connections and at 1. ONNX Runtime gets one intra-op thread
everywhere for the digits MLP; for the compute-bound CNN shipyard also runs with its own thread
choice and as two worker processes of one thread each, against in-process ONNX Runtime at batch 32
on every core.

    python bench/floor.py [--quick] [--rounds N] [--model digits|cnn]

gRPC is measured beside HTTP by h2load (Debian: nghttp2-client) when it is installed (grpc_floor.py).

Writes bench/results/floor.json (floor-quick.json with --quick); a full run also rewrites the
"The floor" section of bench/BENCHMARKS.md. `make bench` runs it as a scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import grpc_floor
import h2load
import loadgen
import models
import report
import wrk
from servers import free_port, server, tree_cpu_s

BENCH = Path(__file__).parent
PYTHON = sys.executable
CONNECTIONS = (64, 1)
ONE_THREAD = ["--intra-op-threads", "1", "--inter-op-threads", "1"]


def systems(name: str, onnx_file: Path, home: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    """(label, command without its port, environment) of every server measured for `name`."""
    env = {"MODEL": str(onnx_file), "INTRA_OP_THREADS": "1"}
    serve = [PYTHON, "-m", "shipyard", "--home", str(home), "serve", name, "--no-grpc"]
    off = {"SHIPYARD_MONITOR__ENABLED": "false"}
    found = [
        ("bare handler", [PYTHON, str(BENCH / "bare_server.py")], env),
        ("FastAPI by hand", [PYTHON, str(BENCH / "naive_server.py")], env),
        ("shipyard", [*serve, *ONE_THREAD], {}),
        ("shipyard, monitoring off", [*serve, *ONE_THREAD], off),
    ]
    if name == "cnn":
        found.append(("shipyard, its own threads", serve, {}))
        found.append(("shipyard, 2 workers", [*serve, "--workers", "2", "--intra-op-threads", "1"], {}))
    return found


def command_for(command: list[str], port: int) -> list[str]:
    return [*command, "--port", str(port)] if "shipyard" in command else [*command, str(port)]


async def measure_server(name: str, command: list[str], env: dict[str, str], seconds: float) -> list[dict]:
    rows = []
    port = free_port()
    bodies = {
        "JSON": loadgen.json_body(models.sample(name)),
        "binary": loadgen.binary_body(models.sample(name)),
    }
    with server(command_for(command, port), env, port) as process:
        url = f"http://127.0.0.1:{port}/v2/models/{name}/infer"
        for body_kind, (body, headers) in bodies.items():
            if body_kind == "binary" and "naive_server.py" in command[1]:
                continue  # the hand-written server speaks JSON only
            for c in CONNECTIONS:
                await wrk.run(url, body, headers, c, min(seconds, 1.0), 10)  # warm-up
                before = tree_cpu_s(process.pid)
                r = await wrk.run(url, body, headers, c, seconds, 10)
                used = tree_cpu_s(process.pid) - before
                rows.append(
                    {
                        "body": body_kind,
                        "connections": c,
                        "requests_per_s": r.ok_per_s,
                        "p50_ms": r.p50_ms,
                        "p99_ms": r.p99_ms,
                        "errors": r.requests - r.statuses.get(200, 0) + r.socket_errors,
                        "server_cpu_ms_per_request": 1000 * used / max(r.statuses.get(200, 0), 1),
                    }
                )
    return rows


async def measure(home: Path, files: dict[str, Path], seconds: float, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                       "cpus": os.cpu_count(), "seconds": seconds, "rounds": rounds}}  # fmt: skip
    for name, onnx_file in files.items():
        threads = os.cpu_count() or 1
        batch32 = loadgen.in_process(str(onnx_file), models.sample(name, 32), seconds, threads)
        batch1 = loadgen.in_process(str(onnx_file), models.sample(name), seconds, 1)
        model: dict[str, Any] = {
            "in_process": {
                "batch1_one_thread_per_s": batch1.samples_per_s,
                "batch32_all_cores_per_s": batch32.samples_per_s,
                "threads": threads,
            },
            "systems": {},
        }
        measured: dict[str, list[list[dict]]] = {}
        for _ in range(rounds):  # every system once per round: a slow spell of the machine hits all
            for label, command, env in systems(name, onnx_file, home):
                measured.setdefault(label, []).append(await measure_server(name, command, env, seconds))
        if name == "digits" and h2load.available():
            model["grpc"] = await grpc_floor.measure(name, onnx_file, home, seconds, rounds)
        for label, runs in measured.items():
            model["systems"][label] = [median_row(cells) for cells in zip(*runs, strict=True)]
            best = max(model["systems"][label], key=lambda r: r["requests_per_s"])
            print(
                f"{name} {label}: best {best['requests_per_s']:,.0f}/s ({best['body']}, c={best['connections']})"
            )
        out[name] = model
    return out


def median_row(cells: tuple[dict, ...]) -> dict:
    """Of one cell's rounds, the run with the median requests/s (its latency and CPU with it)."""
    ranked = sorted(cells, key=lambda r: r["requests_per_s"])
    row = dict(ranked[len(ranked) // 2])
    row["requests_per_s_rounds"] = [r["requests_per_s"] for r in cells]
    return row


def cell(rows: list[dict], body: str, connections: int) -> dict | None:
    return next((r for r in rows if r["body"] == body and r["connections"] == connections), None)


def section(results: dict[str, Any]) -> list[str]:
    """The "The floor" section of BENCHMARKS.md."""
    m = results["machine"]
    lines = [
        "## The floor",
        "",
        f"Measured {m['date']} by `bench/floor.py` on {m['cpus']} cores: wrk `-t1` POSTing one sample per "
        f"request for {m['seconds']:g} s per cell, the servers one after another in this one run, "
        f"{m.get('rounds', 1)} rounds of them; each cell is the round with the median requests/s (this "
        "machine's speed wanders by ±20% over minutes, so one round says little). The bare "
        "handler is a raw ASGI callable on uvicorn (uvloop, httptools) running ONNX Runtime on the event loop "
        "with orjson, and nothing else: the floor of per-request cost. shipyard runs with its defaults "
        "(batching, monitoring with a drift reference) unless the row says otherwise.",
        "",
    ]
    for name in (n for n in results if n != "machine"):
        data = results[name]
        bare = data["systems"]["bare handler"]
        lines += [
            f"### {name}",
            "",
            "| system | body | c=64 requests/s | vs bare | c=64 p99 ms | c=1 requests/s | c=1 p50 ms | "
            "p50 - bare's | server CPU ms/request (c=64) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, rows in data["systems"].items():
            for body in ("JSON", "binary"):
                hi, lo = cell(rows, body, 64), cell(rows, body, 1)
                if hi is None or lo is None:
                    continue
                floor_hi, floor_lo = cell(bare, body, 64), cell(bare, body, 1)
                ratio = hi["requests_per_s"] / floor_hi["requests_per_s"] if floor_hi else float("nan")
                delta = lo["p50_ms"] - floor_lo["p50_ms"] if floor_lo else float("nan")
                lines.append(
                    f"| {label} | {body} | {hi['requests_per_s']:,.0f} | {ratio:.0%} | {hi['p99_ms']:.2f} | "
                    f"{lo['requests_per_s']:,.0f} | {lo['p50_ms']:.3f} | {delta:+.3f} | "
                    f"{hi['server_cpu_ms_per_request']:.3f} |"
                )
        ip = data["in_process"]
        lines += [
            "",
            f"In-process ONNX Runtime: batch 1 on one thread {ip['batch1_one_thread_per_s']:,.0f} samples/s; "
            f"batch 32 on {ip['threads']} threads {ip['batch32_all_cores_per_s']:,.0f} samples/s.",
            "",
        ]
        if "grpc" in data:
            lines += grpc_floor.section(data["grpc"])
    return lines + targets(results) + limits(results)


def limits(results: dict[str, Any]) -> list[str]:
    """What keeps the missed targets out of reach on this machine, worked out from the cells above."""
    lines = []
    if "cnn" in results:
        data = results["cnn"]
        ip, cores = data["in_process"], results["machine"]["cpus"]
        bare = cell(data["systems"]["bare handler"], "binary", 64)
        ort_ms = 1000 * ip["threads"] / ip["batch32_all_cores_per_s"]  # core time per image at batch 32
        one_ms = 1000 / ip["batch1_one_thread_per_s"]
        http_ms = bare["server_cpu_ms_per_request"] - one_ms
        most = 1000 * cores / (ort_ms + http_ms)
        lines.append(
            f"- **The CNN on {cores} cores.** In-process ONNX Runtime at batch 32 spends {ort_ms:.2f} ms of "
            f"core time per image. The bare handler spends {bare['server_cpu_ms_per_request']:.2f} ms of "
            f"CPU per request, {one_ms:.2f} ms of it its batch-1 run: {http_ms:.2f} ms to receive the 48 KiB "
            f"body and answer. So even with a client that cost nothing, a server on these {cores} cores could "
            f"answer at most {cores} / ({ort_ms:.2f} + {http_ms:.2f}) ms = {most:,.0f} images/s, "
            f"{most / ip['batch32_all_cores_per_s']:.0%} of the in-process figure, and wrk needs part of a "
            "core on top. 85% needs the client on another machine, or more cores."
        )
        workers = cell(data["systems"].get("shipyard, 2 workers", []), "binary", 64)
        alone = max(
            (
                r
                for label, rows in data["systems"].items()
                if label.startswith("shipyard") and "workers" not in label
                for r in rows
                if r["connections"] == 64
            ),
            key=lambda r: r["requests_per_s"],
        )
        if workers:
            lines.append(
                f"- **One process.** The best single shipyard process answers {alone['requests_per_s']:,.0f} "
                f"images/s (the bare handler, one ORT thread on its event loop: {bare['requests_per_s']:,.0f}): "
                "its event loop and its ORT threads take turns with Python's GIL, so a core waits while the "
                "other hands a batch over. "
                f"Two worker processes (`--workers 2`, one ORT thread each) answer {workers['requests_per_s']:,.0f}"
                f"/s, {workers['requests_per_s'] / ip['batch32_all_cores_per_s']:.0%} of the in-process figure."
            )
    if "digits" in results:
        systems = results["digits"]["systems"]
        bare, on, off = (
            cell(systems[k], "JSON", 64) for k in ("bare handler", "shipyard", "shipyard, monitoring off")
        )
        lines.append(
            f"- **The digits request path.** At 64 connections the event loop is the bottleneck, so requests/s "
            f"is one core over the CPU a request takes: {bare['server_cpu_ms_per_request'] * 1000:.0f} us in the "
            f"bare handler, {off['server_cpu_ms_per_request'] * 1000:.0f} us in shipyard without monitoring and "
            f"{on['server_cpu_ms_per_request'] * 1000:.0f} us with it. The difference is Python run per request: "
            "routing and the transport's guards, admission, the version's lease, checking the inputs against "
            "the signature, the batcher's future, and monitoring's id and bookkeeping (py-spy and cProfile show "
            "no single part above ~10% of it)."
        )
    found = results.get("digits", {}).get("grpc")
    if found:
        floor, http = found["bare grpc.aio handler, gRPC"], found["shipyard, HTTP binary"]
        lines.append(
            f"- **gRPC.** A grpc.aio handler that only parses ModelInfer, runs the model and answers spends "
            f"{floor['server_cpu_ms_per_request']:.3f} ms of CPU per call, against "
            f"{http['server_cpu_ms_per_request']:.3f} ms for a whole shipyard HTTP request; it reaches "
            f"{floor['requests_per_s'] / http['requests_per_s']:.0%} of shipyard's HTTP binary throughput. "
            "grpcio's own cost per call, not shipyard's, keeps Python gRPC from 80% of HTTP."
        )
    return ["### What limits it", "", *lines, ""] if lines else []


def targets(results: dict[str, Any]) -> list[str]:
    """The request path's targets, each worked out from the cells above."""
    rows = []

    def add(target: str, measured: str, met: bool) -> None:
        rows.append(f"| {target} | {measured} | {'yes' if met else 'no'} |")

    if "digits" in results:
        systems = results["digits"]["systems"]
        bare, ship, off = systems["bare handler"], systems["shipyard"], systems["shipyard, monitoring off"]
        fast = systems["FastAPI by hand"]
        hi, hi_bare, hi_fast = cell(ship, "JSON", 64), cell(bare, "JSON", 64), cell(fast, "JSON", 64)
        ratio, times = (
            hi["requests_per_s"] / hi_bare["requests_per_s"],
            hi["requests_per_s"] / hi_fast["requests_per_s"],
        )
        add("digits, c=64, JSON: >= 80% of the bare handler", f"{ratio:.0%}", ratio >= 0.8)
        add("digits, c=64, JSON: >= 3x the FastAPI server", f"{times:.1f}x", times >= 3)
        lo, lo_bare = cell(ship, "JSON", 1), cell(bare, "JSON", 1)
        delta = lo["p50_ms"] - lo_bare["p50_ms"]
        add("digits, c=1, JSON: p50 <= the bare handler's + 0.15 ms", f"{delta:+.3f} ms", delta <= 0.15)
        binary = cell(ship, "binary", 64)["requests_per_s"] / hi["requests_per_s"]
        add("digits, c=64: binary at least as fast as JSON", f"{binary:.2f}x JSON", binary >= 1)
        for body in ("JSON", "binary"):
            cost = 1 - cell(ship, body, 64)["requests_per_s"] / cell(off, body, 64)["requests_per_s"]
            add(f"digits, c=64, {body}: monitoring costs <= 5%", f"{cost:.0%}", cost <= 0.05)
            extra = cell(ship, body, 1)["p50_ms"] - cell(off, body, 1)["p50_ms"]
            add(f"digits, c=1, {body}: monitoring adds <= 0.05 ms to p50", f"{extra:+.3f} ms", extra <= 0.05)
        if "grpc" in results["digits"]:
            add(*grpc_floor.target(results["digits"]["grpc"]))
    if "cnn" in results:
        data = results["cnn"]
        ceiling = data["in_process"]["batch32_all_cores_per_s"]
        best = max(
            (r for label, rows_ in data["systems"].items() if label.startswith("shipyard") for r in rows_),
            key=lambda r: r["requests_per_s"],
        )
        share = best["requests_per_s"] / ceiling
        add(
            "CNN, c=64: >= 85% of in-process ORT, batch 32, every core",
            f"{best['requests_per_s']:,.0f} of {ceiling:,.0f}/s = {share:.0%} ({best['body']})",
            share >= 0.85,
        )
        ship = data["systems"]["shipyard"]
        faster = cell(ship, "binary", 64)["requests_per_s"] / cell(ship, "JSON", 64)["requests_per_s"]
        add("CNN, c=64: binary faster than JSON", f"{faster:.2f}x JSON", faster > 1)
    if not rows:
        return []
    return ["### Targets", "", "| target | measured | met |", "|---|---|---|", *rows, ""]


def run(quick: bool, names: tuple[str, ...] = ("digits", "cnn"), rounds: int | None = None) -> dict[str, Any]:
    """The scenario; a full run also rewrites its section of BENCHMARKS.md (after `make bench`'s own)."""
    home = BENCH / ".work" / "floor-home"
    shutil.rmtree(home, ignore_errors=True)
    files = models.build(home, names)
    rounds = rounds or (1 if quick else 3)
    results = asyncio.run(measure(home, files, 1.0 if quick else 4.0, rounds))
    report.finish("floor", results, quick, section(results))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s per cell")
    parser.add_argument("--model", action="append", choices=["digits", "cnn"], help="default: both")
    parser.add_argument(
        "--rounds", type=int, help="every system measured this many times (default 3, quick 1)"
    )
    args = parser.parse_args()
    if not wrk.available():
        sys.exit("the floor scenario needs wrk (Debian: apt-get install wrk)")
    run(args.quick, tuple(args.model or ("digits", "cnn")), args.rounds)


if __name__ == "__main__":
    main()

"""What a shadow costs the version that answers: shipyard serving the digits MLP with a shadow version
(rollout/shadow.py: a copy of each request, within its bounds) and without, side by side in one run,
wrk at 1, 8 and 64 connections, v2 JSON bodies, monitoring on (the default). The target: production's
p50 and requests/s within 5% at 1 and 8 connections.

    python bench/shadow.py [--quick] [--rounds N]

Writes bench/results/shadow.json (shadow-quick.json with --quick); a full run also rewrites the
"Shadow traffic" section of bench/BENCHMARKS.md. `make bench` runs it as a scenario.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))

import loadgen
import models
import report
import wrk
from servers import free_port, server, tree_cpu_s

from shipyard.config import Settings
from shipyard.registry import Registry

BENCH = Path(__file__).parent
CONNECTIONS = (1, 8, 64)
ONE_THREAD = ["--intra-op-threads", "1", "--inter-op-threads", "1"]


def prepare(home: Path) -> None:
    """digits 1 in production and 2, the same model, beside it."""
    shutil.rmtree(home, ignore_errors=True)
    models.build(home, ("digits",))
    registry = Registry.open(Settings(home=home))
    try:
        first = registry.version("digits", 1)
        registry.register(
            "digits", registry.artifact(first), signature=first.signature, framework="onnx",
            check=first.check, labels=first.labels,
        )  # fmt: skip
        registry.deploy("digits", 1)
    finally:
        registry.close()


def shadowed(home: Path, version: int | None) -> None:
    registry = Registry.open(Settings(home=home))
    try:
        registry.set_shadow("digits", version)
    finally:
        registry.close()


async def measure_once(home: Path, shadow: bool, seconds: float) -> list[dict[str, Any]]:
    shadowed(home, 2 if shadow else None)
    port = free_port()
    command = [sys.executable, "-m", "shipyard", "--home", str(home), "serve", "digits", "--no-grpc",
               *ONE_THREAD, "--port", str(port)]  # fmt: skip
    body, headers = loadgen.json_body(models.sample("digits"))
    rows = []
    with server(command, {}, port) as process:
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/v2/models/digits/infer"
        for c in CONNECTIONS:
            await wrk.run(url, body, headers, c, min(seconds, 1.0), 10)  # warm-up
            before = tree_cpu_s(process.pid)
            r = await wrk.run(url, body, headers, c, seconds, 10)
            used = tree_cpu_s(process.pid) - before
            rows.append({
                "connections": c, "requests_per_s": r.ok_per_s, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                "errors": r.requests - r.statuses.get(200, 0) + r.socket_errors,
                "server_cpu_ms_per_request": 1000 * used / max(r.statuses.get(200, 0), 1),
            })  # fmt: skip
        rows.append({"shadow_requests": shadow_counts(base)})
    return rows


def shadow_counts(base: str) -> dict[str, float]:
    """The shadow's outcomes over the whole run (answered, dropped, failed), from /metrics."""
    counts: dict[str, float] = {}
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("shipyard_shadow_requests_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts


async def measure(home: Path, seconds: float, rounds: int) -> dict[str, Any]:
    runs: dict[str, list[list[dict[str, Any]]]] = {"off": [], "on": []}
    for _ in range(rounds):  # both in every round: a slow spell of the machine hits both
        for label in runs:
            runs[label].append(await measure_once(home, label == "on", seconds))
    out: dict[str, Any] = {
        "machine": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": seconds,
            "rounds": rounds,
        }
    }
    for label, rounds_of in runs.items():
        cells = []
        for i in range(len(CONNECTIONS)):
            ranked = sorted((r[i] for r in rounds_of), key=lambda row: row["requests_per_s"])
            cell = dict(ranked[len(ranked) // 2])
            cell["requests_per_s_rounds"] = [r[i]["requests_per_s"] for r in rounds_of]
            cells.append(cell)
        out[label] = {"cells": cells, "shadow_requests": rounds_of[-1][-1]["shadow_requests"]}
    return out


def section(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    lines = [
        "## Shadow traffic",
        "",
        f"Measured {m['date']} by `bench/shadow.py`: the digits MLP served with version 2 as a shadow of "
        "version 1 (requests that name no version copied to it within its bounds: at most 50 a second, "
        "a batch in flight) and without, wrk `-t1` with v2 JSON bodies for "
        f"{m['seconds']:g} s per cell, {m['rounds']} rounds, the median round's figures. Monitoring on.",
        "",
        "| connections | requests/s off | requests/s on | change | p50 ms off | p50 ms on | change | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for off, on in zip(results["off"]["cells"], results["on"]["cells"], strict=True):
        rate = on["requests_per_s"] / off["requests_per_s"] - 1
        p50 = on["p50_ms"] / off["p50_ms"] - 1
        target = "-"
        if off["connections"] in (1, 8):
            target = "met" if rate >= -0.05 and p50 <= 0.05 else "missed"
        lines.append(
            f"| {off['connections']} | {off['requests_per_s']:,.0f} | {on['requests_per_s']:,.0f} | {rate:+.1%} "
            f"| {off['p50_ms']:.3f} | {on['p50_ms']:.3f} | {p50:+.1%} | {target} |"
        )
    counts = results["on"]["shadow_requests"]
    lines += [
        "",
        "Copies in the last round with the shadow on: "
        + ", ".join(f"{outcome} {n:,.0f}" for outcome, n in sorted(counts.items()))
        + " (dropped: no copy, past the bounds; the answer to the client never waits for one).",
        "",
    ]
    return lines


def run(quick: bool, rounds: int | None = None) -> dict[str, Any]:
    home = BENCH / ".work" / "shadow-home"
    prepare(home)
    results = asyncio.run(measure(home, 1.0 if quick else 5.0, rounds or (1 if quick else 3)))
    report.finish("shadow", results, quick, section(results))
    return results


def main() -> None:
    report.command_line(__doc__, run, "1 s per cell, one round", "rounds of both (default 3)")


if __name__ == "__main__":
    main()

"""shipyard on Ray Serve beside plain `shipyard serve` and a plain Ray Serve deployment, side by side:
the digits MLP, one row a request, wrk at 64 connections, every server in every round.

- shipyard serve: one process (the local engine), as `shipyard serve` runs it;
- shipyard on Ray Serve: `shipyard serve --engine ray --replicas N`, N = 1 and 2, one Ray CPU each;
- plain Ray Serve: bench/plain_ray_serve.py, an ONNX Runtime session in `@serve.deployment` with
  `@serve.batch`, as Ray's documentation writes one, behind Ray's HTTP proxy; N = 1 and 2 replicas.

Every server: ONNX Runtime on one intra-op thread, batches of up to 64, monitoring at its defaults
(shipyard's on: metrics, prediction log, drift). wrk runs on one thread beside them, on the same
2 cores: the ratios count, not one absolute figure. Bodies: KServe v2 JSON for all, and v2 with the
binary tensor extension for shipyard (plain Ray Serve has no binary route).

    python bench/ray_serve.py [--quick] [--rounds N]

Writes bench/results/ray_serve.json (ray_serve-quick.json with --quick); a full run also rewrites the
"Serving on Ray" section of bench/BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import loadgen
import models
import report
import wrk
from servers import free_port, raise_open_files, server

PYTHON = sys.executable
BENCH = Path(__file__).parent
CONNECTIONS = 64
TARGET = 3.0  # shipyard on Ray Serve / plain Ray Serve, same replicas
ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def shipyard_command(home: Path, port: int, replicas: int | None) -> list[str]:
    engine = [] if replicas is None else ["--engine", "ray", "--replicas", str(replicas)]
    return [
        PYTHON, "-m", "shipyard", "--home", str(home), "serve", "digits", "--port", str(port),
        "--grpc-port", str(free_port()), "--intra-op-threads", "1", "--inter-op-threads", "1",
        "--max-batch-size", "64", *engine,
    ]  # fmt: skip


SERVERS: dict[str, tuple[str, int | None]] = {
    "shipyard serve": ("shipyard", None),
    "shipyard on Ray Serve, 1 replica": ("shipyard", 1),
    "shipyard on Ray Serve, 2 replicas": ("shipyard", 2),
    "plain Ray Serve, 1 replica": ("plain", 1),
    "plain Ray Serve, 2 replicas": ("plain", 2),
}


def measure(work: Path, rounds: int, seconds: float) -> dict[str, Any]:
    home = work / "home"
    onnx = models.build(home, ("digits",))["digits"]
    x = models.sample("digits")
    bodies = {"json": loadgen.json_body(x), "binary": loadgen.binary_body(x)}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in SERVERS}
    names = list(SERVERS)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # each round starts elsewhere
            kind, replicas = SERVERS[name]
            port = free_port()
            if kind == "shipyard":
                command = shipyard_command(home, port, replicas)
            else:
                command = [PYTHON, str(BENCH / "plain_ray_serve.py"), str(port), str(onnx), str(replicas)]
            with server(command, ENV, port, log=work / f"{kind}-{replicas}.log"):
                url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
                for body_name, (body, headers) in bodies.items():
                    if kind == "plain" and body_name == "binary":
                        continue
                    asyncio.run(wrk.run(url, body, headers, CONNECTIONS, 1.0, 10))  # warm-up
                    result = asyncio.run(wrk.run(url, body, headers, CONNECTIONS, seconds, 10))
                    assert result.statuses.get(200) == result.requests, (name, result.statuses)
                    runs[name].setdefault(body_name, []).append(result.to_dict())
                    print(
                        f"round {r + 1} {name} {body_name}: {result.ok_per_s:,.0f}/s p99 {result.p99_ms:.1f} ms"
                    )
    import ray

    return {
        "machine": {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "ray": ray.__version__,
            "rounds": rounds,
            "seconds": seconds,
        },
        "runs": runs,
    }


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def section(results: dict[str, Any]) -> list[str]:
    """The "Serving on Ray" section of BENCHMARKS.md."""
    m, runs = results["machine"], results["runs"]
    local = runs["shipyard serve"]["json"]
    rows = []
    for name, by_body in runs.items():
        kind, replicas = SERVERS[name]
        plain = runs.get(f"plain Ray Serve, {replicas} replica{'s' if replicas and replicas > 1 else ''}")
        for body, body_runs in by_body.items():
            rate = [run["ok_per_s"] for run in body_runs]
            vs_local = statistics.median(a / b["ok_per_s"] for a, b in zip(rate, local, strict=True))
            vs_plain = "-"
            if kind == "shipyard" and plain is not None:
                ratio = statistics.median(a / b["ok_per_s"] for a, b in zip(rate, plain["json"], strict=True))
                vs_plain = f"**{ratio:.1f}**" if body == "json" else f"{ratio:.1f}"
            rows.append(
                f"| {name} | {body} | {statistics.median(rate):,.0f} | {_median(body_runs, 'p50_ms'):.1f} | "
                f"{_median(body_runs, 'p99_ms'):.1f} | {vs_local:.2f} | {vs_plain} |"
            )
    ratios = [
        statistics.median(
            a["ok_per_s"] / b["ok_per_s"]
            for a, b in zip(
                runs[f"shipyard on Ray Serve, {n}"]["json"],
                runs[f"plain Ray Serve, {n}"]["json"],
                strict=True,
            )
        )
        for n in ("1 replica", "2 replicas")
    ]
    met = "met" if min(ratios) >= TARGET else "missed"
    return [
        "## Serving on Ray",
        "",
        f"Measured {m['date']} by `bench/ray_serve.py` on {m['cpus']} cores, Ray {m['ray']}: the digits MLP, "
        f"one row a request, wrk on one thread at {CONNECTIONS} connections for {m['seconds']:g} s after a "
        f"second of warm-up, every server in each of {m['rounds']} rounds; medians of the rounds (ratios: "
        "medians of each round's ratio). Every server runs ONNX Runtime on one intra-op thread with "
        "batches of up to 64; shipyard with monitoring on (its default). Plain Ray Serve is "
        "`bench/plain_ray_serve.py`: `@serve.deployment` and `@serve.batch` around an ORT session, as "
        "Ray's documentation writes one, behind Ray's HTTP proxy.",
        "",
        "| server | body | requests/s | p50 ms | p99 ms | x shipyard serve (JSON) | x plain Ray Serve (JSON, same replicas) |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Target: shipyard on Ray Serve at least {TARGET:g}x a plain Ray Serve deployment at "
        f"{CONNECTIONS} connections: {ratios[0]:.1f}x with 1 replica, {ratios[1]:.1f}x with 2 ({met}). "
        "Most of the difference is the path: through Ray's proxy, each request crosses two processes "
        "and Ray's RPC, where shipyard's replicas take their connections themselves (the replicas "
        "of a node share its port). Beside `shipyard serve`, Ray costs next to nothing on the request path: "
        "one replica is the same server in a Ray actor, and two do what `--workers 2` would on "
        "these 2 cores shared with wrk.",
        "",
    ]


def run(quick: bool, rounds: int | None = None) -> dict[str, Any]:
    raise_open_files()
    with report.scratch("shipyard-ray-serve-bench-") as work:
        results = measure(work, rounds or (1 if quick else 3), 2.0 if quick else 5.0)
    report.finish("ray_serve", results, quick, section(results))
    return results


def main() -> None:
    report.command_line(__doc__, run, "one round of 2 s runs", "rounds of every server (default 3)")


if __name__ == "__main__":
    main()

"""Capacity planning checked against this machine: what `shipyard capacity` predicts for 1 and 2
`shipyard serve` processes, beside what wrk measures of them.

For the digits MLP (v2 JSON) and the small CNN (v2 binary tensors), in each round:

1. the figures `shipyard capacity` measures (`shipyard.capacity.measure`: ONNX Runtime by batch size,
   the server's CPU per request over loopback) and its plan for a p99 of 50 ms;
2. one process (`shipyard serve`, one ORT thread) pinned to core 0 with wrk pinned to core 1: exactly
   the plan's unit, a worker on a core of its own. wrk at the load the plan says fits (paced: each
   connection waits an exponential time before its next request, so the arrivals are about Poisson),
   then at saturation (64 connections, closed loop);
3. two processes (`--workers 2`), unpinned on both cores, with wrk beside them. wrk's CPU per request,
   measured in step 2 (its own core, children's rusage), comes off the 2 cores: each worker is left
   (2 - wrk's CPU) / 2 of a core, and its cycle is stretched by as much.

Predicted throughput at the planned load is the load offered; at saturation, each worker's capacity at
the batch 64 connections make (half of its connections: the other half wait for the batch in
progress). Predicted p99: plan.py's formula; at saturation 2 x the cycle of that batch.

    python bench/capacity.py [--quick] [--rounds N] [--keep-markdown]

Writes bench/results/capacity.json (capacity-quick.json with --quick); a full run also rewrites the
"Capacity planning" section of bench/BENCHMARKS.md (not with --keep-markdown).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnxruntime
import orjson

sys.path.insert(0, str(Path(__file__).parent))

import loadgen
import models
import report
import wrk
from servers import cpu_s, free_port, raise_open_files, server

from shipyard.capacity import Figures, Target, latency, measure, plan
from shipyard.capacity.plan import cycle
from shipyard.config import Settings
from shipyard.registry import Registry

PYTHON = sys.executable
P99_MS = 50.0
SATURATION_CONNECTIONS = 64
QUIET_CORES = 0.3
BODIES = {"digits": "json", "cnn": "binary"}
PACE = """
local mean_ms = %(mean_ms)f
function delay() return math.floor(-math.log(1 - math.random()) * mean_ms + 0.5) end
"""
"""Appended to wrk.LUA: each connection waits an exponential time (mean `mean_ms`) before each request."""


def target(max_batch_size: int) -> Target:
    return Target(rps=1.0, p99_s=P99_MS / 1000, cores_per_replica=1, max_batch_size=max_batch_size)


def stretched(figures: Figures, share: float) -> Figures:
    """The figures of a worker left `share` of a core: every step takes 1 / share as long."""
    share = min(1.0, share)
    return replace(
        figures,
        cycle_s=figures.cycle_s / share,
        overhead_s=figures.overhead_s / share,
        compute_s={k: v / share for k, v in figures.compute_s.items()},
    )


def planned(figures: Figures, most: int, processes: int, wrk_cpu_s: float) -> tuple[float, Figures]:
    """The load `processes` workers are planned for on this machine's cores beside wrk, and the
    figures each worker runs with there (wrk's CPU per request off the cores, shared evenly)."""
    cores = os.cpu_count() or 1
    share, load = 1.0, 0.0
    for _ in range(20):  # the share depends on the load and the load on the share: a few rounds settle it
        eff = stretched(figures, share)
        load = processes * plan(eff, target(most)).worker_rps
        share = 1.0 if processes == 1 else (cores - wrk_cpu_s * load) / processes
    return load, stretched(figures, share)


def saturation(figures: Figures, most: int, processes: int, wrk_cpu_s: float) -> tuple[float, float]:
    """Requests/s and p99 of `processes` workers under wrk's 64 closed-loop connections: batches of half
    a worker's connections (the other half wait for the batch in progress), p99 two of their cycles."""
    cores = os.cpu_count() or 1
    n = max(1, min(most, SATURATION_CONNECTIONS // (2 * processes)))
    t = cycle(figures, target(most), n)
    mu = n / t  # a worker with a core of its own
    rate = processes * mu
    if processes > 1:  # the cores left beside wrk: rate = (cores - wrk * rate) * mu
        rate = min(rate, cores * mu / (1 + wrk_cpu_s * mu))
    share = rate / (processes * mu)
    return rate, 2 * t / share


async def paced(url: str, body: bytes, headers: dict[str, str], rate: float, latency_s: float,
                seconds: float, pin: list[str], server_pid: int) -> tuple[wrk.WrkResult, dict[str, float]]:  # fmt: skip
    """wrk offering about `rate` requests/s: each connection pauses an exponential time between its
    requests, long beside the expected latency (`latency_s`), so that the arrivals are about Poisson."""
    gap_s = max(0.02, 20 * latency_s)
    connections = max(4, min(2000, math.ceil(rate * gap_s)))
    mean_ms = max(1.0, 1000 * (connections / rate - latency_s))
    return await _wrk(url, body, headers, connections, seconds, pin, server_pid, PACE % {"mean_ms": mean_ms})


async def quiet(most_s: float = 120) -> float:
    """Wait (up to `most_s`) for a second in which the machine's other work takes less than QUIET_CORES:
    the cores are shared, and a cell measured beside another program measures that program. The
    cores the other work took in the last second."""
    deadline, others = time.monotonic() + most_s, math.inf
    while others >= QUIET_CORES and time.monotonic() < deadline:
        busy, started = _busy_s(), time.monotonic()
        await asyncio.sleep(1.0)  # the second measured
        others = (_busy_s() - busy) / (time.monotonic() - started)
    return others


def _tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of a process and of each of its descendants, by pid (`--workers N`: the workers)."""
    found, todo = {}, [pid]
    while todo:
        p = todo.pop()
        try:
            found[p] = cpu_s(p)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _busy_s() -> float:
    """CPU seconds every core of the machine has been busy, all processes together (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def _wrk(url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float,
               pin: list[str], server_pid: int, extra: str = "") -> tuple[wrk.WrkResult, dict[str, float]]:  # fmt: skip
    """One wrk run (bench/wrk.py's script and counting, `extra` Lua appended); wrk's CPU per answer
    (children's rusage: wrk is the only child waited for meanwhile), the server's, and the cores the
    machine's other work took meanwhile."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        lua = wrk.script(body, headers, Path(tmp))
        lua.write_text(lua.read_text() + extra)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0, server0, started = _busy_s(), _tree_cpu(server_pid), time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout=10s", "--latency",
            "-s", str(lua), url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy1, server1, elapsed = _busy_s(), _tree_cpu(server_pid), time.monotonic() - started
    result = wrk.parse(out.decode(errors="replace"), process.returncode, connections)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    used = {p: server1[p] - server0.get(p, 0.0) for p in server1}
    server_cpu = sum(used.values())
    return result, {
        "wrk_cpu_s": wrk_cpu / max(1, result.requests),
        "server_cpu_s": server_cpu / max(1, result.requests),
        "other_cores": max(0.0, (busy1 - busy0 - wrk_cpu - server_cpu) / elapsed),
        "busiest_share": max(used.values()) / server_cpu if server_cpu > 0 else math.nan,
    }


def _cell(kind: str, predicted_rps: float, predicted_p99: float, result: wrk.WrkResult,
          cpu: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    return {
        "server_cpu_ms_per_request": cpu["server_cpu_s"] * 1000,
        "wrk_cpu_ms_per_request": cpu["wrk_cpu_s"] * 1000,
        "other_cores": cpu["other_cores"],
        "busiest_process_share": cpu["busiest_share"],
        "load": kind,
        "predicted_rps": predicted_rps,
        "measured_rps": result.ok_per_s,
        "predicted_p99_ms": predicted_p99 * 1000,
        "measured_p99_ms": result.p99_ms,
        "errors": result.requests - result.statuses.get(200, 0) + result.socket_errors,
        "connections": result.connections,
    }


async def servers_round(
    home: Path, name: str, figures: Figures, most: int, seconds: float
) -> list[dict[str, Any]]:
    """1 process pinned beside wrk pinned, then 2 processes beside wrk: planned load and saturation."""
    body, headers = (loadgen.json_body if BODIES[name] == "json" else loadgen.binary_body)(
        models.sample(name)
    )
    cells: list[dict[str, Any]] = []
    wrk_cpu = {"paced": 0.0, "closed": 0.0}
    for processes in (1, 2):
        port = free_port()
        command = [PYTHON, "-m", "shipyard", "--home", str(home), "serve", name, "--no-grpc", "--port", str(port),
                   "--intra-op-threads", "1", "--inter-op-threads", "1", "--workers", str(processes)]  # fmt: skip
        pin_server, pin_wrk = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if processes == 1 else ([], [])
        url = f"http://127.0.0.1:{port}/v2/models/{name}/infer"
        with server([*pin_server, *command], {}, port) as process:
            await _wrk(url, body, headers, SATURATION_CONNECTIONS, 1.0, pin_wrk, process.pid)  # warm-up
            load, eff = planned(figures, most, processes, wrk_cpu["paced"])
            per_worker = latency(eff, target(most), load / processes)
            assert per_worker is not None  # planned below capacity
            mean_latency = cycle(eff, target(most), per_worker.mean_batch)
            await quiet()
            result, cpu = await paced(url, body, headers, load, mean_latency, seconds, pin_wrk, process.pid)
            cells.append({"processes": processes, **_cell("planned", load, per_worker.p99_s, result, cpu)})
            rate, p99 = saturation(figures, most, processes, wrk_cpu["closed"])
            await quiet()
            closed, cpu_closed = await _wrk(
                url, body, headers, SATURATION_CONNECTIONS, seconds, pin_wrk, process.pid
            )
            cells.append({"processes": processes, **_cell("saturation", rate, p99, closed, cpu_closed)})
            if processes == 1:
                wrk_cpu = {"paced": cpu["wrk_cpu_s"], "closed": cpu_closed["wrk_cpu_s"]}
        print(f"{name}, {processes} process(es): {cells[-2:]}")
    return cells


def measure_round(home: Path, name: str, seconds: float) -> tuple[Figures, int]:
    registry = Registry.open(Settings(home=home))
    try:
        record = registry.version(name)
        most = Settings().serving.max_batch_size
        figures = measure(registry, record, body=BODIES[name], threads=1, execution="auto",
                          max_batch_size=most, budget_s=P99_MS / 1000, seconds=seconds)  # fmt: skip
    finally:
        registry.close()
    return figures, most


def run(quick: bool, rounds: int | None = None, markdown: bool = True) -> dict[str, Any]:
    raise_open_files()
    rounds = rounds or (1 if quick else 3)
    seconds = 2.0 if quick else 5.0
    results: dict[str, Any] = {
        "machine": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "rounds": rounds,
            "seconds": seconds,
        },
        "models": {},
    }
    with report.scratch("shipyard-capacity-bench-") as home:
        models.build(home)
        for name in ("digits", "cnn"):
            model: dict[str, Any] = {"body": BODIES[name], "rounds": []}
            for _ in range(rounds):
                asyncio.run(quiet())
                figures, most = measure_round(home, name, 1.0 if quick else 3.0)
                print(
                    f"{name}: server {figures.cycle_s * 1000:.3f} ms/cycle + {figures.overhead_s * 1000:.3f} "
                    f"ms/request, runs {figures.compute_s}"
                )
                cells = asyncio.run(servers_round(home, name, figures, most, seconds))
                model["rounds"].append({
                    "cycle_ms": figures.cycle_s * 1000,
                    "overhead_ms": figures.overhead_s * 1000,
                    "run_ms_by_batch": {str(k): v * 1000 for k, v in figures.compute_s.items()},
                    "cells": cells,
                })  # fmt: skip
            results["models"][name] = model
    lines = section(results)
    if markdown or quick:
        report.finish("capacity", results, quick, lines)
    else:
        out = Path(__file__).parent / "results" / "capacity.json"
        out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
        print("\n".join(lines))
        print(f"wrote {out}")
    return results


def _off(predicted: float, measured: float) -> float:
    """How far the prediction was from the measure, as a share of the measure (+: predicted more)."""
    return predicted / measured - 1 if measured else math.nan


def section(results: dict[str, Any]) -> list[str]:
    """The "Capacity planning" section of BENCHMARKS.md: the median of the rounds, cell by cell."""
    m = results["machine"]
    lines = [
        "## Capacity planning",
        "",
        f"Measured {m['date']} by `bench/capacity.py` on {m['cpus']} cores: what `shipyard capacity` predicts "
        f"(its own figures, measured in each round, and its plan for a p99 of {P99_MS:g} ms, each worker at most 70% "
        "busy) beside what wrk measures of `shipyard serve` (defaults: batching up to 32, monitoring on; "
        f"one ORT thread a worker), {m['rounds']} rounds of {m['seconds']:g} s cells, the median of each figure "
        "and of each round's 'off'. 1 process: the server pinned to core 0 and wrk (`-t1`) to core 1, the plan's "
        "own unit. 2 processes (`--workers 2`): both cores shared with wrk, whose CPU per request (measured in "
        "the 1-process runs) is taken off the cores before the prediction. 'planned': wrk paced at the load the "
        "plan says fits (exponential pauses per connection, about Poisson); 'saturation': 64 connections, "
        "closed loop. Off: predicted / measured - 1 for requests/s; predicted - measured for p99 (what the model "
        "leaves out is mostly a floor of milliseconds: wrk's side, the kernel, the scheduler). The cores are shared with other work: each measure starts "
        f"after a second in which that work took under {QUIET_CORES:g} cores (waiting up to 2 minutes), and "
        "'other work' is the cores it took during the cell (all the machine's CPU less the server's and wrk's).",
        "",
        "| model | body | processes | load | predicted req/s | measured req/s | off | predicted p99 ms "
        f"| measured p99 ms | off | p99 <= {P99_MS:g} ms | server CPU ms/request | busiest worker's share "
        "| other work, cores | errors |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    keys = ("predicted_rps", "measured_rps", "predicted_p99_ms", "measured_p99_ms", "server_cpu_ms_per_request",
            "other_cores", "wrk_cpu_ms_per_request", "busiest_process_share")  # fmt: skip
    notes = []
    for name, model in results["models"].items():
        keyed: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for r in model["rounds"]:
            for c in r["cells"]:
                keyed.setdefault((c["processes"], c["load"]), []).append(c)
        for (processes, load), cells in keyed.items():
            med = {k: statistics.median(c[k] for c in cells) for k in keys}
            off_rps = statistics.median(_off(c["predicted_rps"], c["measured_rps"]) for c in cells)
            off_p99 = statistics.median(c["predicted_p99_ms"] - c["measured_p99_ms"] for c in cells)
            within = sum(c["measured_p99_ms"] <= P99_MS for c in cells)
            share = "-" if processes == 1 else f"{med['busiest_process_share']:.0%}"
            lines.append(
                f"| {name} | {model['body']} | {processes} | {load} | {med['predicted_rps']:,.0f} | "
                f"{med['measured_rps']:,.0f} | {off_rps:+.0%} | {med['predicted_p99_ms']:.2f} | "
                f"{med['measured_p99_ms']:.2f} | {off_p99:+.1f} ms | "
                f"{'-' if load == 'saturation' else f'{within} of {len(cells)} rounds'} | "
                f"{med['server_cpu_ms_per_request']:.3f} | "
                f"{share} | "
                f"{med['other_cores']:.2f} | "
                f"{sum(c['errors'] for c in cells)} |"
            )
        wrk_paced = statistics.median(
            keyed[(1, "planned")][i]["wrk_cpu_ms_per_request"] for i in range(len(model["rounds"]))
        )
        wrk_closed = statistics.median(
            keyed[(1, "saturation")][i]["wrk_cpu_ms_per_request"] for i in range(len(model["rounds"]))
        )
        cycle_ms = statistics.median(r["cycle_ms"] for r in model["rounds"])
        overhead = statistics.median(r["overhead_ms"] for r in model["rounds"])
        runs = model["rounds"][0]["run_ms_by_batch"]
        most = max(runs, key=int)
        notes.append(
            f"{name}: `shipyard capacity` measured the server's CPU around the model at {cycle_ms:.3f} ms a cycle + "
            f"{overhead:.3f} ms a request (medians of the rounds); ONNX Runtime's run {runs['1']:.3f} ms at batch 1, "
            f"{runs[most]:.3f} ms at batch {most} (first round). wrk's CPU: {wrk_paced:.3f} ms a request paced, "
            f"{wrk_closed:.3f} ms closed-loop."
        )
    misses = (
        "Where a p99 misses under the planned load, it is the plan's even spread that did not hold: "
        "`--workers` processes take connections from one shared listening socket, and a few long-lived "
        "connections do not spread evenly ('busiest worker's share' above a half), so the busiest worker "
        "runs past its 70% and its queue past the admission limit is refused with Retry-After ('errors'), "
        "which wrk waits out. The throughput figures hold within the 'off' column."
    )
    return [*lines, "", *notes, "", misses, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s cells, one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every figure (default 3)")
    parser.add_argument("--keep-markdown", action="store_true", help="leave BENCHMARKS.md as it is")
    args = parser.parse_args()
    run(args.quick, args.rounds, markdown=not args.keep_markdown)


if __name__ == "__main__":
    main()

"""Images, bytes in and label out: `shipyard serve` for a model imported with an image recipe, beside
the server people write by hand (bench/images_baseline.py: FastAPI + uvicorn + Pillow + ONNX Runtime)
and beside the same work in one process with no server (the ceiling), side by side in one run.

The model is a CNN built here with torch (8 convolutions with batch norm, 224x224 RGB in, 10 classes,
random weights: ~2 ms a picture on one core), exported to ONNX and imported as the README shows:
`--preprocess "image: resize=256, center_crop=224, normalize=imagenet"`. The pictures are JPEGs drawn by
shipyard.processing.samples (640x480 and 1024x768). wrk (`-t1`) POSTs a picture's bytes as the body
(content-type image/jpeg) to /v1/models/pets/predict at 1, 8 and 32 connections, after a warm-up, for
every server in each round:

- shipyard serve: its defaults (batching up to 32, monitoring on, pictures decoded on a pool of one
  thread per core, ORT's own thread choice for a model that runs on threads: one a core);
- FastAPI, careful: decoding and the run in Starlette's thread pool (`run_in_threadpool`);
- FastAPI, naive: everything inside the `async def` endpoint, on the event loop;
- shipyard serve --intra-op-threads 1, and FastAPI, careful with one ORT thread: the same two with
  ONNX Runtime on one intra-op thread.

The FastAPI servers leave ORT's session options at their defaults (intra- and inter-op threads 0: one
a core), as shipyard does. The in-process ceiling is measured in each round too (no server running):
Pillow decode + resize + crop, numpy normalise and session.run, on one thread and on two threads
sharing one session (ORT's default threads, then one ORT thread). Before any load, each server's answer
to each picture is checked against the in-process one: the same class, the same confidence within 1e-3.

    python bench/images.py [--quick] [--rounds N]

Writes bench/results/images.json (images-quick.json with --quick: one round of 2 s cells, the 640x480
picture only); a full run also rewrites the "Images: bytes in, label out" section of
bench/BENCHMARKS.md. `make bench` runs it as a scenario (BENCH_QUICK=1: --quick).
"""

from __future__ import annotations

import asyncio
import io
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import PIL
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

import capacity
import images_baseline
import report
import wrk
from servers import cpu_s, free_port, raise_open_files, server

from shipyard.config import Settings
from shipyard.importing import import_onnx
from shipyard.processing import samples
from shipyard.registry import Registry

PYTHON = sys.executable
BENCH = Path(__file__).parent
CONNECTIONS = (1, 8, 32)
RECIPE = "image: resize=256, center_crop=224, normalize=imagenet"
LABELS = ["cat", "dog", "rabbit", "hamster", "parrot", "goldfish", "turtle", "ferret", "horse", "lizard"]
PICTURES = {"640x480 JPEG": (640, 480), "1024x768 JPEG": (1024, 768)}
HEADERS = {"content-type": "image/jpeg"}
SERVERS: dict[str, tuple[str, int]] = {
    "shipyard serve": ("shipyard", 0),
    "FastAPI, careful": ("careful", 0),
    "FastAPI, naive": ("naive", 0),
    "shipyard serve --intra-op-threads 1": ("shipyard", 1),
    "FastAPI, careful, ORT 1 thread": ("careful", 1),
}
"""name: (kind, ORT intra-op threads; 0 is ORT's choice, one a core)."""
BASELINE = {0: "FastAPI, careful", 1: "FastAPI, careful, ORT 1 thread"}
"""What each row is compared with: the careful hand-written server with the same ORT threads."""
CEILINGS = {"1 thread": (1, 0), "2 threads": (2, 0), "2 threads, ORT 1 thread each": (2, 1)}
"""name: (Python threads decoding and classifying, ORT intra-op threads)."""
TRIES = 3
QUIET_WAIT_S = 60


class PetCNN(nn.Module):
    """Not trivially cheap: four stride-2 stages, three of them with a second convolution."""

    def __init__(self) -> None:
        super().__init__()
        widths = [(3, 16, 2), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2),
                  (128, 128, 1), (128, 256, 2)]  # fmt: skip
        layers: list[nn.Module] = []
        for c_in, c_out, stride in widths:
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(256, len(LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def build(work: Path) -> tuple[Path, Path, Path]:
    """The CNN as an ONNX file, its labels, and a shipyard home where it is imported with the recipe."""
    torch.manual_seed(0)
    module = PetCNN().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter says it is deprecated
        torch.onnx.export(
            module, (torch.zeros(1, 3, 224, 224),), buffer, input_names=["pixels"], output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
    onnx_file, labels, home = work / "cnn.onnx", work / "labels.txt", work / "home"
    onnx_file.write_bytes(buffer.getvalue())
    labels.write_text("\n".join(LABELS) + "\n")
    registry = Registry.open(Settings(home=home))
    try:
        import_onnx(onnx_file, name="pets", labels=LABELS, preprocess=RECIPE, registry=registry)
    finally:
        registry.close()
    return onnx_file, labels, home


def pictures(quick: bool) -> dict[str, bytes]:
    chosen = list(PICTURES.items())[:1] if quick else PICTURES.items()
    return {name: samples.picture("JPEG", "RGB", size, seed=1) for name, size in chosen}


def command(
    name: str, home: Path, onnx_file: Path, labels: Path, port: int
) -> tuple[list[str], dict[str, str]]:
    kind, threads = SERVERS[name]
    if kind == "shipyard":
        serve = [PYTHON, "-m", "shipyard", "--home", str(home), "serve", "pets", "--port", str(port),
                 "--grpc-port", str(free_port()), "--log-level", "warning"]  # fmt: skip
        return serve + (["--intra-op-threads", str(threads)] if threads else []), {}
    env = {"MODEL": str(onnx_file), "LABELS": str(labels), "MODE": kind, "INTRA_OP_THREADS": str(threads)}
    return [PYTHON, str(BENCH / "images_baseline.py"), str(port)], env


def ceiling(
    classifier: images_baseline.Classifier, data: bytes, seconds: float, threads: int
) -> dict[str, float]:
    """Pictures/s of `threads` threads, each decoding and classifying `data` in a loop on one session."""
    classifier(data)  # warm
    deadline = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(threads)]

    def loop(times: list[float]) -> None:
        while (started := time.perf_counter()) < deadline:
            classifier(data)
            times.append(time.perf_counter() - started)

    busy, own, begun = capacity._busy_s(), cpu_s(os.getpid()), time.perf_counter()
    workers = [threading.Thread(target=loop, args=(times,)) for times in latencies]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.perf_counter() - begun
    used = cpu_s(os.getpid()) - own
    every = np.array([x for times in latencies for x in times]) * 1000
    return {
        "images_per_s": len(every) / elapsed,
        "p50_ms": float(np.percentile(every, 50)),
        "p99_ms": float(np.percentile(every, 99)),
        "cpu_ms_per_image": 1000 * used / len(every),
        "other_cores": max(0.0, (capacity._busy_s() - busy - used) / elapsed),
    }


def calm_ceiling(classifier: images_baseline.Classifier, data: bytes, seconds: float, threads: int) -> dict:
    """ceiling(), measured again (up to TRIES times) while other work took the cores."""
    tries = []
    for _ in range(TRIES):
        asyncio.run(capacity.quiet(QUIET_WAIT_S))
        tries.append(ceiling(classifier, data, seconds, threads))
        if tries[-1]["other_cores"] < capacity.QUIET_CORES:
            break
    return {**min(tries, key=lambda t: t["other_cores"]), "tries": len(tries)}


def check_answers(url: str, expected: dict[str, dict[str, Any]], bodies: dict[str, bytes]) -> dict[str, Any]:
    """The server's answer to each picture, which must be the in-process one."""
    found = {}
    for picture, data in bodies.items():
        answer = httpx.post(url, content=data, headers=HEADERS, timeout=30)
        answer.raise_for_status()
        got, want = answer.json(), expected[picture]
        if got["class"] != want["class"] or abs(got["confidence"] - want["confidence"]) > 1e-3:
            raise AssertionError(f"{url} answered {got} for the {picture} picture; in process: {want}")
        found[picture] = got
    return found


async def measure_server(url: str, pid: int, bodies: dict[str, bytes], seconds: float, warmup: float) -> dict:
    cells: dict[str, dict[str, Any]] = {}
    for picture, data in bodies.items():
        for c in CONNECTIONS:
            await wrk.run(url, data, HEADERS, c, warmup, 10)
            tries = []
            # the cores are shared: a cell measured beside other work is measured again
            for _ in range(TRIES):
                others = await capacity.quiet(QUIET_WAIT_S)
                tries.append((*await capacity._wrk(url, data, HEADERS, c, seconds, [], pid), others))
                if tries[-1][1]["other_cores"] < capacity.QUIET_CORES:
                    break
            result, cpu, others = min(tries, key=lambda t: t[1]["other_cores"])
            errors = result.requests - result.statuses.get(200, 0) + result.socket_errors
            cells.setdefault(picture, {})[str(c)] = {
                "images_per_s": result.ok_per_s,
                "p50_ms": result.p50_ms,
                "p99_ms": result.p99_ms,
                "errors": errors,
                "server_cpu_ms_per_image": cpu["server_cpu_s"] * 1000,
                "wrk_cpu_ms_per_image": cpu["wrk_cpu_s"] * 1000,
                "other_cores": cpu["other_cores"],
                "other_cores_before": others,
                "tries": len(tries),
            }
            print(f"  {picture} c={c}: {result.ok_per_s:,.1f}/s p50 {result.p50_ms:.1f} ms p99 "
                  f"{result.p99_ms:.1f} ms, server {cpu['server_cpu_s'] * 1000:.2f} ms CPU/image, "
                  f"other work {cpu['other_cores']:.2f} cores, {errors} errors")  # fmt: skip
    return cells


def measure(work: Path, rounds: int, seconds: float, warmup: float, quick: bool) -> dict[str, Any]:
    onnx_file, labels, home = build(work)
    bodies = pictures(quick)
    classifiers = {t: images_baseline.Classifier(str(onnx_file), LABELS, t) for t in (0, 1)}
    expected = {name: classifiers[0](data) for name, data in bodies.items()}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in (*SERVERS, "ceiling")}
    answers: dict[str, dict[str, Any]] = {"in process": expected}
    names = list(SERVERS)
    for r in range(rounds):
        print(f"round {r + 1}: the ceiling")
        runs["ceiling"].append(
            {
                picture: {
                    label: calm_ceiling(classifiers[ort_threads], data, seconds, threads)
                    for label, (threads, ort_threads) in CEILINGS.items()
                }
                for picture, data in bodies.items()
            }
        )
        print(f"  {runs['ceiling'][-1]}")
        for name in names[r % len(names) :] + names[: r % len(names)]:  # each round starts elsewhere
            port = free_port()
            cmd, env = command(name, home, onnx_file, labels, port)
            log = work / f"{''.join(ch if ch.isalnum() else '-' for ch in name)}.log"
            with server(cmd, env, port, log=log) as process:
                url = f"http://127.0.0.1:{port}/v1/models/pets/predict"
                answers[name] = check_answers(url, expected, bodies)
                print(f"round {r + 1}: {name} (answers {answers[name]})")
                runs[name].append(asyncio.run(measure_server(url, process.pid, bodies, seconds, warmup)))
    return {
        "machine": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "pillow": PIL.__version__,
            "rounds": rounds,
            "seconds": seconds,
            "warmup_s": warmup,
        },
        "pictures": {name: len(data) for name, data in bodies.items()},
        "answers": answers,
        "runs": runs,
    }


def cell(runs: list[dict[str, Any]], picture: str, key: str, field: str) -> list[float]:
    """One figure of one cell, a value per round."""
    return [float(run[picture][key][field]) for run in runs]


def ratio(a: list[float], b: list[float]) -> float:
    """The median of each round's a / b: a slow spell of the machine hits both sides of a round."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def best_ceiling(runs: list[dict[str, Any]], picture: str) -> list[float]:
    """The best in-process images/s of each round."""
    return [max(c["images_per_s"] for c in run[picture].values()) for run in runs]


def section(results: dict[str, Any]) -> list[str]:
    """The "Images: bytes in, label out" section of BENCHMARKS.md."""
    m, runs = results["machine"], results["runs"]
    sizes = ", ".join(f"{name}: {size / 1024:.0f} KiB" for name, size in results["pictures"].items())
    lines = [
        "## Images: bytes in, label out",
        "",
        f"Measured {m['date']} by `bench/images.py` on {m['cpus']} cores, ONNX Runtime {m['onnxruntime']}, "
        f"Pillow {m['pillow']}: a CNN built in the bench (8 convolutions with batch norm on 224x224 RGB, "
        '10 classes) imported with `--preprocess "image: resize=256, center_crop=224, normalize=imagenet"`; '
        f"JPEGs drawn by `shipyard.processing.samples` ({sizes}). wrk on one thread POSTs the picture's "
        f"bytes (content-type image/jpeg) for {m['seconds']:g} s per cell after {m['warmup_s']:g} s of "
        f"warm-up, every server in each of {m['rounds']} rounds, on the same 2 cores as the server; "
        "medians of the rounds (ratios: medians of each round's ratio); a cell measured while other "
        "work took 0.3 cores or more is measured again (up to 3 times, the calmest kept). "
        "`shipyard serve` runs with its defaults (batching up to 32, monitoring on, ORT's own thread "
        "choice: one a core for a model this heavy). FastAPI is `bench/images_baseline.py`: an "
        "`async def` endpoint reading the raw body, Pillow, numpy, one ORT session left at ORT's "
        "defaults (intra- and inter-op threads 0: one a core), a softmax; 'careful' hands decoding and "
        "the run to Starlette's thread pool, 'naive' does them on the event loop. The rows with one ORT "
        "thread set it in both. The ceiling is the same Pillow + numpy + ORT code in one process with no "
        "server, on one thread or on two threads sharing one session. Before the load, each server "
        "answered each picture with the in-process class and confidence (within 1e-3).",
        "",
        "| picture | system | connections | images/s | p50 ms | p99 ms | CPU ms/image (server, or process) | "
        "x FastAPI careful (same ORT threads) | x best ceiling |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for picture in results["pictures"]:
        best = best_ceiling(runs["ceiling"], picture)
        for label in CEILINGS:
            rate = cell(runs["ceiling"], picture, label, "images_per_s")
            p50 = statistics.median(cell(runs["ceiling"], picture, label, "p50_ms"))
            p99 = statistics.median(cell(runs["ceiling"], picture, label, "p99_ms"))
            cpu = statistics.median(cell(runs["ceiling"], picture, label, "cpu_ms_per_image"))
            lines.append(
                f"| {picture} | ceiling, {label} | - | {statistics.median(rate):,.0f} | {p50:.1f} | {p99:.1f} | "
                f"{cpu:.2f} | - | {ratio(rate, best):.2f} |"
            )
        for name, (kind, threads) in SERVERS.items():
            for c in map(str, CONNECTIONS):
                rate = cell(runs[name], picture, c, "images_per_s")
                careful = ratio(rate, cell(runs[BASELINE[threads]], picture, c, "images_per_s"))
                bold = "**" if kind == "shipyard" else ""
                med = {f: statistics.median(cell(runs[name], picture, c, f))
                       for f in ("p50_ms", "p99_ms", "server_cpu_ms_per_image")}  # fmt: skip
                lines.append(
                    f"| {picture} | {name} | {c} | {statistics.median(rate):,.0f} | {med['p50_ms']:.1f} | "
                    f"{med['p99_ms']:.1f} | {med['server_cpu_ms_per_image']:.2f} | {bold}{careful:.2f}{bold} | "
                    f"{bold}{ratio(rate, best):.2f}{bold} |"
                )
    return [*lines, "", *ratios(results), "", *limits(results), "", "Rerun: `python bench/images.py` "
            "(`--quick`: one round of 2 s cells, the 640x480 picture only); raw figures in "
            "`bench/results/images.json`.", ""]  # fmt: skip


def ratios(results: dict[str, Any]) -> list[str]:
    """shipyard (its defaults) against the careful hand-written server and the best ceiling."""
    runs, lines = results["runs"], []
    for picture in results["pictures"]:
        best = best_ceiling(runs["ceiling"], picture)
        parts = []
        for c in map(str, CONNECTIONS):
            rate = cell(runs["shipyard serve"], picture, c, "images_per_s")
            careful = ratio(rate, cell(runs[BASELINE[0]], picture, c, "images_per_s"))
            parts.append(f"{careful:.2f}x FastAPI careful and {ratio(rate, best):.0%} of the ceiling at {c}")
        lines.append(f"{picture}: `shipyard serve` answers " + ", ".join(parts) + " connections.")
    return ["  \n".join(lines)]


def limits(results: dict[str, Any]) -> list[str]:
    """What bounds the figures: worked out from them, and what a profile of shipyard showed (by hand)."""
    runs, cores = results["runs"], results["machine"]["cpus"]
    names = list(results["pictures"])
    small, large = names[0], names[-1]

    def med(system: str, picture: str, key: str, field: str) -> float:
        return statistics.median(cell(runs[system], picture, key, field))

    one = {f: med("ceiling", small, "1 thread", f) for f in ("images_per_s", "cpu_ms_per_image")}
    spin = med("ceiling", small, "2 threads", "cpu_ms_per_image")
    calm = med("ceiling", small, "2 threads, ORT 1 thread each", "cpu_ms_per_image")
    ship, careful = (med(s, small, "8", "server_cpu_ms_per_image") for s in ("shipyard serve", BASELINE[0]))
    wrk_ms = med("shipyard serve", small, "8", "wrk_cpu_ms_per_image")
    one_thread = "shipyard serve --intra-op-threads 1"
    gain = {
        p: ratio(
            cell(runs[one_thread], p, "32", "images_per_s"),
            cell(runs["shipyard serve"], p, "32", "images_per_s"),
        )
        for p in names
    }
    gains = ", ".join(f"{g:.2f}x at {p}" for p, g in gain.items())
    lines = [
        "What limits it:",
        "",
        f"- **{cores} cores, CPU-bound everywhere, and ORT's spinning thread.** Images/s is about the cores "
        f"over the CPU per image. In process, a {small} picture on one thread takes "
        f"{1000 / one['images_per_s']:.1f} ms but {one['cpu_ms_per_image']:.1f} ms of CPU: ORT's second "
        f"intra-op thread spins between runs. Two threads cost {spin:.1f} ms of CPU a picture on ORT's "
        f"default, {calm:.1f} ms with one ORT thread each. Served at 8 connections, shipyard spends "
        f"{ship:.1f} ms of CPU per image, the careful FastAPI server {careful:.1f} ms, wrk {wrk_ms:.2f} ms. "
        "In shipyard the pool that decodes pictures (a thread per core) and ORT's spinning thread share "
        f"the cores: `--intra-op-threads 1` changes its images/s at 32 connections by {gains}.",
        "- **What this bench changed (py-spy and ORT's profiler, by hand on 2026-12-01, 640x480 at 8 "
        "connections).** Its first runs had shipyard at 0.70x to 0.89x the careful FastAPI server, spending "
        "9.9 ms of CPU a picture against 7.1 ms. A quarter of py-spy's samples were the prediction log's input "
        "summaries, which copied every decoded 224x224x3 picture to float64 (monitor/logfiles.py now sums "
        "small integers in int64, in place: a third of the time); the recipe's graph normalised before its "
        "Transpose, per channel on the innermost axis of 3, which ORT broadcasts slowly (it now transposes "
        "the uint8 pixels first and normalises whole planes: 2.9 ms to 1.9 ms a run on one ORT thread, the "
        "same logits); and ORT's spinning threads took the cores the decoding pool needed (spinning is now "
        "off for a version that decodes pictures).",
    ]
    if large != small:
        spread = [
            ratio(cell(runs["shipyard serve"], large, c, "images_per_s"),
                  cell(runs[BASELINE[0]], large, c, "images_per_s"))
            for c in map(str, CONNECTIONS)
        ]  # fmt: skip
        best = {p: statistics.median(best_ceiling(runs["ceiling"], p)) for p in (small, large)}
        naive = {f: med("FastAPI, naive", large, "32", f) for f in ("p50_ms", "p99_ms")}
        lines.append(
            f"- **Bigger pictures.** At {large} decoding weighs more (in process at best "
            f"{best[large]:,.0f} images/s, against {best[small]:,.0f} at {small}), the same Pillow calls in "
            f"every server, and the gap to the careful server widens: {min(spread):.2f}x to "
            f"{max(spread):.2f}x the careful server. The naive server does everything on the event loop, "
            f"one request at a time, and serves its connections unevenly: at 32 connections its p50 is "
            f"{naive['p50_ms']:.0f} ms and its p99 {naive['p99_ms'] / 1000:.1f} s. The machine's speed "
            "wanders: on 2026-12-01 the 1024x768 ratios moved by up to 0.25 between two runs an hour apart."
        )
    return lines


def run(quick: bool, rounds: int | None = None) -> dict[str, Any]:
    raise_open_files()
    with report.scratch("shipyard-images-bench-") as work:
        results = measure(work, rounds or (1 if quick else 3), 2.0 if quick else 5.0, 1.0, quick)
    report.finish("images", results, quick, section(results))
    return results


def main() -> None:
    if not wrk.available():
        sys.exit("the images scenario needs wrk (Debian: apt-get install wrk)")
    report.command_line(
        __doc__, run, "one round of 2 s cells, the 640x480 picture only", "rounds (default 3)"
    )


if __name__ == "__main__":
    main()

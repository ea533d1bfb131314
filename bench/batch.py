"""Batch inference: `shipyard batch run` against its targets, each measured side by side in one run:

- bounded memory: the CLI's peak RSS (each run a fresh process, its ru_maxrss read by a small
  launcher) over a ~100 MB and a ~2 GB Parquet file of digits rows, within 10% of each other;
- the digits MLP at >= 200,000 rows/s over >= 1M Parquet rows (the Python API's summary);
- the CNN (3x64x64, each row's pixels one list column) at >= 90% of in-process ONNX Runtime on the same
  cores at its best, reading nothing (bench/batch_cnn.py, with what reading the file costs);
- the digits MLP >= 5x a loop that reads the file with pandas and POSTs each row to `shipyard serve`
  (v2 JSON, httpx on one kept-alive connection), and >= 2x the same loop POSTing batches of 64.

    python bench/batch.py [--quick] [--rounds N]

The inputs are written here, a row group at a time (never a whole file in memory), in a temporary
folder with the registry (SHIPYARD_HOME); the ~2 GB run is left out, and says so, when the disk has no
room for it. Writes bench/results/batch.json (batch-quick.json with --quick); a full run also rewrites
the "Batch inference" section of bench/BENCHMARKS.md. `make bench` runs it as a scenario.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))

import batch_cnn
import models
import peak_rss
import report
from servers import free_port, server

from shipyard.batch import Job, Summary
from shipyard.batch import run as run_job
from shipyard.config import Settings
from shipyard.registry import Registry

PYTHON = sys.executable
THREADS = os.cpu_count() or 1
"""The batch job's cores (a model run at once on each): every core."""
ROW_GROUP = 65_536
PIXELS = 3 * 64 * 64
LOOP_BATCH = 64
ROW_BY_ROW, BATCHED, BATCH_JOB = "POST row by row", f"POST batches of {LOOP_BATCH}", "shipyard batch run"


@dataclass(frozen=True)
class Sizes:
    small_bytes: int
    large_bytes: int
    throughput_rows: int
    cnn_rows: int
    loop_rows: int
    ceiling_s: float


FULL = Sizes(100 * 10**6, 2 * 10**9, 1_000_000, 8_192, 20_000, 3.0)
QUICK = Sizes(25 * 10**6, 250 * 10**6, 200_000, 512, 2_000, 1.0)
FLOOR_ROWS = 4_096
"""The memory floor: the same command over a file of one small part."""


def write_digits(path: Path, rows: int) -> int:
    """`rows` digits rows (id, f0..f63 in [0, 16)), a row group at a time, with pyarrow's defaults (as
    pandas writes them); the file's size. The same seed everywhere: a shorter file is the first rows of
    a longer one."""
    schema = pa.schema([("id", pa.int64()), *((f"f{i}", pa.float32()) for i in range(64))])
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            columns = rng.random((64, n), dtype=np.float32) * 16
            ids = pa.array(np.arange(start, start + n, dtype=np.int64))
            writer.write_table(pa.Table.from_arrays([ids, *map(pa.array, columns)], schema=schema))
    return path.stat().st_size


def write_cnn(path: Path, rows: int) -> int:
    """`rows` images as one fixed_size_list<float32>[12288] column, pixels, beside an id."""
    schema = pa.schema([("id", pa.int64()), ("pixels", pa.list_(pa.float32(), PIXELS))])
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 256):
            n = min(256, rows - start)
            pixels = pa.FixedSizeListArray.from_arrays(
                pa.array(rng.random(n * PIXELS, dtype=np.float32)), PIXELS
            )
            ids = pa.array(np.arange(start, start + n, dtype=np.int64))
            writer.write_table(pa.Table.from_arrays([ids, pixels], schema=schema))
    return path.stat().st_size


def job(home: Path, ref: str, inputs: Path, output: Path, **options: Any) -> Summary:
    """The batch job through the Python API, on every core; its output deleted after."""
    registry = Registry.open(Settings(home=home))
    try:
        return run_job(registry, Job(ref, str(inputs), output, threads=THREADS, **options))
    finally:
        registry.close()
        shutil.rmtree(output, ignore_errors=True)


def cli_job(home: Path, inputs: Path, output: Path, log: Path) -> dict[str, Any]:
    """`shipyard batch run digits` in a fresh process of its own: its peak RSS, wall time and the rows/s
    it prints."""
    command = [PYTHON, "-m", "shipyard", "batch", "run", "digits", "--input", str(inputs), "--output",
               str(output), "--keep", "id", "--threads", str(THREADS)]  # fmt: skip
    try:
        peak, wall, text = peak_rss.run(command, {**os.environ, "SHIPYARD_HOME": str(home)}, log)
    finally:
        shutil.rmtree(output, ignore_errors=True)
    printed = re.search(r"\(([\d,]+) rows/s\)", text)
    return {
        "peak_rss_kib": peak,
        "wall_s": wall,
        "rows_per_s": float(printed.group(1).replace(",", "")) if printed else None,
    }


def memory(home: Path, work: Path, sizes: Sizes) -> dict[str, Any]:
    """The floor, the ~100 MB and the ~2 GB file, each written, run once in a fresh child, deleted."""
    runs, skipped = [], None
    probe = work / "probe.parquet"
    row_bytes = write_digits(probe, ROW_GROUP) / ROW_GROUP  # on disk, dictionary pages and all
    probe.unlink()
    plan = [
        ("floor (one small part)", FLOOR_ROWS),
        (f"~{sizes.small_bytes / 1e6:.0f} MB", int(sizes.small_bytes / row_bytes)),
        (f"~{sizes.large_bytes / 1e9:g} GB", int(sizes.large_bytes / row_bytes)),
    ]
    for label, rows in plan:
        need = rows * row_bytes * 1.3 + 2**30  # the input, the predictions, a margin
        free = shutil.disk_usage(work).free
        if free < need:
            skipped = f"{label}: {free / 2**30:.1f} GiB free on {work}, {need / 2**30:.1f} GiB needed"
            print(f"memory: skipped {skipped}")
            continue
        path = work / "memory.parquet"
        size = write_digits(path, rows)
        run = {
            "input": label,
            "rows": rows,
            "file_bytes": size,
            **cli_job(home, path, work / "out", work / "cli.log"),
        }
        path.unlink()
        runs.append(run)
        print(f"memory: {run}")
    return {"runs": runs, "skipped": skipped}


def post_loop(url: str, input_name: str, path: Path, rows_per_request: int, output: Path) -> float:
    """What people write today: the file read with pandas, its rows POSTed to the server (KServe v2 JSON)
    over one kept-alive connection, the classes gathered and written out. Rows/s, all of it timed."""
    started = time.perf_counter()
    frame = pd.read_parquet(path)
    values = frame.drop(columns="id").to_numpy(np.float32)
    classes = []
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(values), rows_per_request):
            rows = values[start : start + rows_per_request]
            tensor = {
                "name": input_name,
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": rows.ravel().tolist(),
            }
            response = client.post(url, json={"inputs": [tensor]})
            response.raise_for_status()
            answer = response.json()["outputs"][0]
            classes.append(np.asarray(answer["data"], np.float32).reshape(answer["shape"]).argmax(axis=1))
    pd.DataFrame({"id": frame["id"], "class": np.concatenate(classes)}).to_parquet(output)
    elapsed = time.perf_counter() - started
    output.unlink()
    return len(values) / elapsed


def versus_loops(home: Path, work: Path, path: Path, rounds: int) -> dict[str, list[float]]:
    """post_loop row by row and in batches against `shipyard serve digits` (one ONNX Runtime thread:
    the client needs the other core; monitoring off: the loops' fastest server), and the batch job over
    the same file, in each round."""
    registry = Registry.open(Settings(home=home))
    try:
        input_name = registry.version("digits", 1).signature.inputs[0].name
    finally:
        registry.close()
    loops: dict[str, list[float]] = {ROW_BY_ROW: [], BATCHED: [], BATCH_JOB: []}
    port = free_port()
    command = [PYTHON, "-m", "shipyard", "serve", "digits", "--no-grpc", "--port", str(port),
               "--intra-op-threads", "1", "--inter-op-threads", "1", "--log-level", "warning"]  # fmt: skip
    environment = {"SHIPYARD_HOME": str(home), "SHIPYARD_MONITOR__ENABLED": "false"}
    answers = work / "loop-out.parquet"
    with server(command, environment, port):
        url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
        post_loop(url, input_name, path, LOOP_BATCH, answers)  # warm-up
        for _ in range(rounds):
            for size, label in ((1, ROW_BY_ROW), (LOOP_BATCH, BATCHED)):
                loops[label].append(post_loop(url, input_name, path, size, answers))
            loops[BATCH_JOB].append(job(home, "digits", path, work / "out", keep=("id",)).rows_per_s)
            print(f"loops: { {k: round(v[-1]) for k, v in loops.items()} }")
    return loops


def measure(work: Path, sizes: Sizes, rounds: int) -> dict[str, Any]:
    home = work / "home"
    files = models.build(home)
    results: dict[str, Any] = {
        "machine": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(),
            "cpu": report.cpu(),
            "threads": THREADS,
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "rounds": rounds,
        },
        "memory": memory(home, work, sizes),
    }
    digits, loop_file, cnn_file = work / "digits.parquet", work / "loop.parquet", work / "cnn.parquet"
    sized = {
        "digits": write_digits(digits, sizes.throughput_rows),
        "loop": write_digits(loop_file, sizes.loop_rows),
        "cnn": write_cnn(cnn_file, sizes.cnn_rows),
    }
    cnn_rounds, digits_rounds = [], []
    for _ in range(rounds):  # every figure in every round: a slow spell of the machine hits them all
        sample = functools.partial(models.sample, "cnn")
        cnn_rounds.append(batch_cnn.round_(home, files["cnn"], sample, cnn_file, work, sizes.ceiling_s))
        print(f"cnn: {cnn_rounds[-1]}")
        digits_rounds.append(job(home, "digits", digits, work / "out", keep=("id",)).rows_per_s)
        print(f"digits over {sizes.throughput_rows:,} rows: {digits_rounds[-1]:,.0f} rows/s")
    ceiling = {
        way: {b: statistics.median(r["ceiling"][way][b] for r in cnn_rounds) for b in by_batch}
        for way, by_batch in cnn_rounds[0]["ceiling"].items()
    }
    results["digits"] = {
        "rows": sizes.throughput_rows,
        "file_bytes": sized["digits"],
        "rounds": digits_rounds,
    }
    results["cnn"] = {
        "rows": sizes.cnn_rows, "file_bytes": sized["cnn"], "ceiling_by_batch": ceiling,
        "ceiling_rounds": [r["best"] for r in cnn_rounds], "job_rounds": [r["job"] for r in cnn_rounds],
        "bound_rounds": [r["bound"] for r in cnn_rounds], "by_hand_rounds": [r["best_by_hand"] for r in cnn_rounds],
        "reading_s_per_row": statistics.median(r["reading_s_per_row"] for r in cnn_rounds),
        "model_s_per_row": statistics.median(r["model_s_per_row"] for r in cnn_rounds), "by_round": cnn_rounds,
    }  # fmt: skip
    loops = versus_loops(home, work, loop_file, rounds)
    results["loops"] = {"rows": sizes.loop_rows, "file_bytes": sized["loop"], "rounds": loops}
    return results


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def _ratio(ours: list[float], theirs: list[float]) -> float:
    """The median of the rounds' ratios: both sides of a round ran a moment apart, on one machine's mood."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def _by_hand(cnn: dict[str, Any]) -> str:
    """The hand-written ways' rows/s, each the median of the rounds."""
    rounds = [r["by_hand"] for r in cnn["by_round"]]
    return "; ".join(f"{way}: {statistics.median(r[way] for r in rounds):,.0f} rows/s" for way in rounds[0])


def section(results: dict[str, Any]) -> list[str]:
    """The "Batch inference" section of BENCHMARKS.md."""
    m, mem, digits, cnn, loops = (results[k] for k in ("machine", "memory", "digits", "cnn", "loops"))
    targets = ["| target | measured | met |", "|---|---|---|"]
    runs = mem["runs"]
    if len(runs) == 3:
        small, large = runs[1], runs[2]
        change = large["peak_rss_kib"] / small["peak_rss_kib"] - 1
        targets.append(
            f"| peak RSS over {large['input']} within 10% of over {small['input']} | "
            f"{large['peak_rss_kib'] / 1024:,.0f} vs {small['peak_rss_kib'] / 1024:,.0f} MiB: **{change:+.1%}** "
            f"| {_yes(abs(change) <= 0.10)} |"
        )
    else:
        targets.append(f"| peak RSS within 10% | not measured: {mem['skipped']} | - |")
    rate = statistics.median(digits["rounds"])
    enough = digits["rows"] >= 1_000_000
    targets.append(
        f"| digits MLP over >= 1M rows: >= 200,000 rows/s | **{rate:,.0f} rows/s** over {digits['rows']:,} rows "
        f"| {_yes(rate >= 200_000) if enough else '- (too few rows)'} |"
    )
    ceiling, cnn_rate = statistics.median(cnn["ceiling_rounds"]), statistics.median(cnn["job_rounds"])
    share = _ratio(cnn["job_rounds"], cnn["ceiling_rounds"])
    bound = statistics.median(cnn["bound_rounds"])
    by_hand = _ratio(cnn["by_hand_rounds"], cnn["ceiling_rounds"])
    targets.append(
        f"| CNN over Parquet: >= 90% of in-process ONNX Runtime at its best | {cnn_rate:,.0f} vs "
        f"{ceiling:,.0f} rows/s: **{share:.0%}** (reading the file alone bounds any job at {bound:.0%}; "
        f"the same file by hand in process: {by_hand:.0%}) | {_yes(share >= 0.9)} |"
    )
    rounds = loops["rounds"]
    for label, times in ((ROW_BY_ROW, 5), (BATCHED, 2)):
        ratio = _ratio(rounds[BATCH_JOB], rounds[label])
        targets.append(
            f"| digits: the batch job >= {times}x {label} | {statistics.median(rounds[BATCH_JOB]):,.0f} vs "
            f"{statistics.median(rounds[label]):,.0f} rows/s: **{ratio:,.1f}x** | {_yes(ratio >= times)} |"
        )
    lines = [
        "## Batch inference",
        "",
        f"Measured {m['date']} by `bench/batch.py` on {m['cpus']} cores ({m['cpu']}): `shipyard batch run` with its default "
        f"part and batch sizes, a model run at once on each of its {m['threads']} cores, over "
        f"Parquet written for the run (digits: an int64 id and 64 float32 columns of random values in [0, 16), "
        f"row groups of {ROW_GROUP:,} rows; CNN: an id and the pixels as one fixed_size_list<float32>[{PIXELS}] "
        f"column). Rows/s: the job's own summary (`Summary.rows_per_s`: not the process's start-up), the median "
        f"of {m['rounds']} rounds, every figure measured in every round; a ratio is the median of the rounds' "
        "ratios.",
        "",
        *targets,
        "",
        "Peak memory: `shipyard batch run digits --keep id`, a fresh process per input, its peak RSS "
        "(ru_maxrss, read by a small launcher process that starts it). The floor is the same command over one small part: what the process holds "
        "whatever the input.",
        "",
        "| input | rows | Parquet MiB | peak RSS MiB | rows/s | wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        printed = f"{run['rows_per_s']:,.0f}" if run["rows_per_s"] else "-"
        lines.append(
            f"| {run['input']} | {run['rows']:,} | {run['file_bytes'] / 2**20:,.0f} | "
            f"{run['peak_rss_kib'] / 1024:,.0f} | {printed} | {run['wall_s']:.1f} |"
        )
    if mem["skipped"]:
        lines += ["", f"Left out for want of disk: {mem['skipped']}."]
    by_batch = "; ".join(
        f"{way}: " + ", ".join(f"batch {b}: {r:,.0f}" for b, r in rates.items())
        for way, rates in cnn["ceiling_by_batch"].items()
    )
    lines += [
        "",
        f"CNN ({cnn['rows']:,} images, {cnn['file_bytes'] / 2**20:,.0f} MiB): in-process ONNX Runtime, "
        f"`session.run` on a ready array, measured just before and just after each round's job (the mean of "
        f"the two), rows/s by batch: {by_batch}. The job runs a batch per core at once on one ONNX Runtime "
        f"thread each (`batch/runs.py`). Reading the file (the job's own reading and decoding, no model) "
        f"takes {cnn['reading_s_per_row'] * 1e3:.3f} ms of CPU a row against the model's "
        f"{cnn['model_s_per_row'] * 1e3:.3f} ms at the ceiling: with every core busy with the model, a job "
        f"that reads the file on those cores reaches at most {bound:.0%} of the ceiling "
        "(model / (model + reading)), before any contention between the two for the caches and memory. "
        f"By hand, the same file through in-process ONNX Runtime ({_by_hand(cnn)}; batches of "
        f"{batch_cnn.BY_HAND_BATCH}, no output written, no rows checked) reached {by_hand:.0%} of the ceiling: "
        f"the job ran at {_ratio(cnn['job_rounds'], cnn['by_hand_rounds']):.0%} of the best of those.",
        "",
        f"Against the ways people do it today, over the same {loops['rows']:,} digits rows: the file read with "
        "pandas, its rows POSTed to `shipyard serve digits` (v2 JSON through httpx on one kept-alive "
        "connection; the server with one ONNX Runtime thread, batching on, monitoring off) and the classes "
        "written to Parquet, all of it timed; the batch job over the same file.",
        "",
        "| way | rows/s | x row by row |",
        "|---|---:|---:|",
        *(
            f"| {label} | {statistics.median(r):,.0f} | {_ratio(r, rounds[ROW_BY_ROW]):,.1f} |"
            for label, r in rounds.items()
        ),
        "",
    ]
    return lines


def run(quick: bool, rounds: int | None = None) -> dict[str, Any]:
    with report.scratch("shipyard-batch-bench-") as work:
        results = measure(work, QUICK if quick else FULL, rounds or (1 if quick else 3))
    report.finish("batch", results, quick, section(results))
    return results


def main() -> None:
    report.command_line(
        __doc__, run, "smaller files (25 and 250 MB), one round", "rounds of every figure (default 3)"
    )


if __name__ == "__main__":
    main()

"""A batch job on Ray Data beside the same job on the local engine: `shipyard.batch.run` over one digits
Parquet file (~1M rows), both engines in every round, rows/s from each job's own summary.

- local: the local engine, ONNX Runtime on every core, reading a few batches ahead on a thread;
- ray: `engine="ray"` on a local Ray started once for the run (`ray.init()`, every core), actors of
  one core and one ONNX Runtime thread each (the default), as many as Ray starts (a core is left for
  the reading and writing tasks).

Ray's own start-up (`ray.init()`) and a first job on a fresh Ray (its workers started, the model loaded
in each) are measured once and given apart: a `shipyard batch run --engine ray` pays both.

    python bench/batch_ray.py [--quick] [--rounds N]

Writes bench/results/batch_ray.json (batch_ray-quick.json with --quick); a full run also rewrites the
"Batch on Ray" section of bench/BENCHMARKS.md.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import models
import report
from batch import write_digits

from shipyard.batch import Job, Summary
from shipyard.batch import run as run_job
from shipyard.config import Settings
from shipyard.registry import Registry

CPUS = os.cpu_count() or 1
FULL_ROWS, QUICK_ROWS = 1_000_000, 200_000
FIRST_ROWS = 10_000
ENGINES = {
    "local": {"threads": CPUS},
    "ray": {"engine": "ray"},
}


def job(home: Path, inputs: Path, output: Path, **options: Any) -> Summary:
    registry = Registry.open(Settings(home=home))
    try:
        return run_job(registry, Job("digits", str(inputs), output, keep=("id",), **options))
    finally:
        registry.close()
        shutil.rmtree(output, ignore_errors=True)


def measure(work: Path, rows: int, rounds: int) -> dict[str, Any]:
    import ray

    load = os.getloadavg()[0]
    home = work / "home"
    models.build(home, ("digits",))
    digits, first = work / "digits.parquet", work / "first.parquet"
    size = write_digits(digits, rows)
    write_digits(first, FIRST_ROWS)
    started = time.perf_counter()
    ray.init(include_dashboard=False, logging_level=logging.WARNING)
    startup = time.perf_counter() - started
    try:
        cold = job(home, first, work / "out", engine="ray")
        print(f"ray.init(): {startup:.1f} s; a first job on it, {FIRST_ROWS:,} rows: {cold.seconds:.1f} s")
        by_engine: dict[str, list[float]] = {name: [] for name in ENGINES}
        small: dict[str, list[float]] = {name: [] for name in ENGINES}
        for _ in range(rounds):  # every engine in every round: a slow spell of the machine hits them all
            for name, options in ENGINES.items():
                summary = job(home, digits, work / "out", **options)
                assert summary.rows == rows and summary.errors == 0, summary
                by_engine[name].append(summary.rows_per_s)
                small[name].append(job(home, first, work / "out", **options).seconds)
                print(f"{name}: {summary.rows_per_s:,.0f} rows/s ({summary.seconds:.1f} s; "
                      f"{FIRST_ROWS:,} rows: {small[name][-1]:.1f} s)")  # fmt: skip
    finally:
        ray.shutdown()
    return {
        "machine": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": CPUS,
            "python": platform.python_version(),
            "ray": ray.__version__,
            "rounds": rounds,
            "load_average": [load, os.getloadavg()[0]],  # before and after: other work on the machine
        },
        "rows": rows,
        "file_bytes": size,
        "ray_init_s": startup,
        "first_job": {"rows": FIRST_ROWS, "seconds": cold.seconds},
        "rounds": by_engine,
        "small_job_s": small,
    }


def section(results: dict[str, Any]) -> list[str]:
    """The "Batch on Ray" section of BENCHMARKS.md."""
    m, by_engine = results["machine"], results["rounds"]
    local = by_engine["local"]
    rows = []
    for name, rates in by_engine.items():
        seconds = [results["rows"] / rate for rate in rates]
        past = [
            (results["rows"] - FIRST_ROWS) / (big - fixed)
            for big, fixed in zip(seconds, results["small_job_s"][name], strict=True)
        ]
        ratio = statistics.median(r / base for r, base in zip(rates, local, strict=True))
        rows.append(
            f"| {name} | {statistics.median(rates):,.0f} | {ratio:.2f} | "
            f"{statistics.median(results['small_job_s'][name]):.2f} | {statistics.median(past):,.0f} |"
        )
    first = results["first_job"]
    return [
        "## Batch on Ray",
        "",
        f"Measured {m['date']} by `bench/batch_ray.py` on {m['cpus']} cores, Ray {m['ray']}: the digits MLP "
        f"over one Parquet file of {results['rows']:,} rows ({results['file_bytes'] / 2**20:,.0f} MiB: an "
        "int64 id and 64 float32 columns), kept id and class and confidence written to Parquet, by "
        "`shipyard.batch.run` on each engine with its defaults. Rows/s: the job's own summary, the median "
        f"of {m['rounds']} rounds, every engine in every round, on a Ray already started; x local: the "
        f"median of the rounds' ratios. The same job over the file's first {FIRST_ROWS:,} rows, in each round "
        "too, is about what any job costs (starting the work, not doing it); rows/s past that: the "
        f"{results['rows']:,}-row job's rows less those over its seconds less those.",
        "",
        f"| engine | rows/s | x local | a {FIRST_ROWS:,}-row job, s | rows/s past that |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"Before any of it: `ray.init()` took {results['ray_init_s']:.1f} s and a first job on the fresh Ray "
        f"({first['rows']:,} rows) {first['seconds']:.1f} s (its worker processes started), which "
        "`shipyard batch run --engine ray` pays on every run (it starts a local Ray and stops it). On one "
        "machine the local engine is the faster, by both counts: a Ray job spends seconds starting its "
        "tasks and its actors (each loads the model) whatever the input, and past that its actors, one "
        "core each with a core left for the reading and writing tasks, take blocks that travel through "
        "Ray's object store, where the local engine runs ONNX Runtime on every core with its reading "
        "thread beside it. Ray pays where one machine is not enough: a cluster's cores (`--address`).",
        "",
    ]


def run(quick: bool, rounds: int | None = None) -> dict[str, Any]:
    with report.scratch("shipyard-batch-ray-bench-") as work:
        results = measure(work, QUICK_ROWS if quick else FULL_ROWS, rounds or (1 if quick else 3))
    report.finish("batch_ray", results, quick, section(results))
    return results


def main() -> None:
    report.command_line(__doc__, run, f"{QUICK_ROWS:,} rows, one round", "rounds of every engine (default 3)")


if __name__ == "__main__":
    main()

"""The CNN over Parquet (bench/batch.py's third target): the batch job beside in-process ONNX Runtime,
and what reading the file costs, which bounds any job that reads it on the cores the model uses.

The ceiling is in-process ONNX Runtime on a ready array at each batch size, in both ways it can use
the cores: one run at a time on a thread per core, and a run per core at once on one thread each (the
job's way); the better of the two is the ceiling. The reading cost is the job's own reading and
decoding (its Source and Mapping, no model) in CPU seconds a row: as the model keeps
every core busy, a job can reach at most model / (model + reading) of the ceiling. Beside them, the
same file through in-process ONNX Runtime as one would write it by hand: what reading the file leaves
of the ceiling to anyone, so what is the job's own cost and what is the file's.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq

from shipyard.batch import Job, Summary, plan
from shipyard.batch import run as run_job
from shipyard.config import Settings
from shipyard.machine import usable_cores
from shipyard.registry import Registry

BATCHES = (16, 64, 256)
WAYS = ("one run, a thread a core", "a run a core, one thread each")
BY_HAND = ("a loop", "a reading thread")
BY_HAND_BATCH = 64


def _session(model: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def in_process(model: Path, x: np.ndarray, seconds: float, at_once: int, threads: int) -> float:
    """Rows/s of `at_once` Python threads each running `x` in a loop on one session of `threads`
    intra-op threads (ORT's run is thread-safe and lets go of the GIL)."""
    session = _session(model, threads)
    feeds = {session.get_inputs()[0].name: x}
    for _ in range(3):
        session.run(None, feeds)
    runs = [0] * at_once
    stop = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < stop:
            session.run(None, feeds)
            runs[i] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(at_once)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(runs) * len(x) / (time.perf_counter() - started)


def ceiling(model: Path, sample: Any, seconds: float) -> dict[str, dict[str, float]]:
    """Rows/s by way and batch size; `sample(b)` is a ready batch of b rows."""
    cores = usable_cores()
    return {
        WAYS[0]: {str(b): in_process(model, sample(b), seconds, 1, cores) for b in BATCHES},
        WAYS[1]: {str(b): in_process(model, sample(b), seconds, cores, 1) for b in BATCHES},
    }


def reading_s_per_row(home: Path, path: Path) -> float:
    """CPU seconds a row of the job's reading and decoding alone (pyarrow's threads too; the best of 3)."""
    registry = Registry.open(Settings(home=home))
    try:
        job = plan(registry, Job("cnn", str(path), path.parent / "unused", columns=("pixels",), keep=("id",)))
        best = float("inf")
        for _ in range(3):
            rows, started = 0, time.process_time()
            for part in job.source.parts(job.part_rows):
                for start in range(0, part.rows, job.batch_rows):
                    rows += len(job.mapping.features(part.table.slice(start, job.batch_rows)).good)
            best = min(best, (time.process_time() - started) / rows)
        return best
    finally:
        registry.close()


def by_hand(model: Path, path: Path, way: str) -> float:
    """Rows/s of the file's images through in-process ONNX Runtime as one would write it by hand
    (pyarrow's batches of the pixels column, reshaped, run; no output written, no rows checked):
    `a loop` reads a batch then runs it on a thread per core; `a reading thread` reads ahead while a
    thread per core runs a batch each on one ONNX Runtime thread (the job's own way, without the job)."""
    cores = usable_cores()
    shape = (-1, 3, 64, 64)
    session = _session(model, cores if way == BY_HAND[0] else 1)
    name = session.get_inputs()[0].name
    session.run(None, {name: np.zeros((BY_HAND_BATCH, *shape[1:]), np.float32)})  # as the job, warm
    batches = pq.ParquetFile(path).iter_batches(batch_size=BY_HAND_BATCH, columns=["pixels"])
    images = (batch.column(0).values.to_numpy().reshape(shape) for batch in batches)
    started = time.perf_counter()
    rows = 0
    if way == BY_HAND[0]:
        for x in images:
            session.run(None, {name: x})
            rows += len(x)
        return rows / (time.perf_counter() - started)
    ready: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=cores + 1)

    def read() -> None:
        for x in images:
            ready.put(x)
        for _ in range(cores):
            ready.put(None)

    def run(done: list[int]) -> None:
        while (x := ready.get()) is not None:
            session.run(None, {name: x})
            done.append(len(x))

    done: list[int] = []
    threads = [
        threading.Thread(target=read),
        *(threading.Thread(target=run, args=(done,)) for _ in range(cores)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def job(home: Path, path: Path, output: Path) -> Summary:
    registry = Registry.open(Settings(home=home))
    try:
        return run_job(registry, Job("cnn", str(path), output, columns=("pixels",), keep=("id",)))
    finally:
        registry.close()
        shutil.rmtree(output, ignore_errors=True)


def round_(home: Path, model: Path, sample: Any, path: Path, work: Path, seconds: float) -> dict[str, Any]:
    """The batch job between two measures of the ceiling (this machine's speed wanders by minutes: the
    ceiling is the mean of the two), and the reading cost."""
    before = ceiling(model, sample, seconds)
    rate = job(home, path, work / "out").rows_per_s
    hand = {way: by_hand(model, path, way) for way in BY_HAND}
    after = ceiling(model, sample, seconds)
    mean = {w: {b: (before[w][b] + after[w][b]) / 2 for b in before[w]} for w in before}
    best = max(max(by_batch.values()) for by_batch in mean.values())
    read = reading_s_per_row(home, path)
    model_s = usable_cores() / best  # CPU seconds a row at the ceiling, every core busy
    return {
        "ceiling": mean, "best": best, "job": rate, "by_hand": hand, "best_by_hand": max(hand.values()),
        "reading_s_per_row": read,
        "model_s_per_row": model_s, "bound": model_s / (model_s + read),
    }  # fmt: skip

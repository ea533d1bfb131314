"""Measure models the way shipyard serves them: ONNX Runtime through the same Runner, on the same
data, with the same threads, in the same process, timed in alternating rounds so that a noisy
neighbour or a CPU frequency change falls on both models alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from shipyard.datasets import Dataset
from shipyard.machine import usable_cores
from shipyard.optimize import graph
from shipyard.runtime.session import Runner, RunnerOptions
from shipyard.signature import Signature

Array = npt.NDArray[Any]
Progress = Callable[[str, int, int], None]
"""Called as progress(stage, done, total) while long work runs (the CLI draws bars from it)."""


def no_progress(stage: str, done: int, total: int) -> None:
    """The default: report nothing."""


EVAL_BATCH = 256


@dataclass(frozen=True)
class Timing:
    """How much timing to do: batch-1 runs for the latency percentiles and full batches for throughput,
    split into `rounds` that alternate between the models."""

    latency_runs: int = 400
    throughput_batches: int = 40
    batch: int = 32
    rounds: int = 4
    warmup: int = 5
    threads: int = 0  # 0: one per usable core

    @property
    def intra_op_threads(self) -> int:
        return self.threads or usable_cores()


@dataclass(frozen=True)
class Speed:
    p50_ms: float
    p99_ms: float
    samples_per_s: float


@dataclass(frozen=True)
class Contents:
    size_bytes: int
    parameters: int
    sparsity: float


def contents(onnx_bytes: bytes) -> Contents:
    """What the file holds, read from the file itself."""
    model = onnx.load_model_from_string(onnx_bytes)
    return Contents(len(onnx_bytes), graph.parameter_count(model), graph.sparsity(model))


def score_output(signature: Signature) -> str:
    """The output a metric reads: the class scores when the model has them, else the first float one."""
    if signature.scores is not None:
        return signature.scores.output
    floats = [s.name for s in signature.outputs if s.datatype in ("FP16", "FP32", "FP64")]
    return (floats or [signature.outputs[0].name])[0]


def load_runner(name: str, onnx_bytes: bytes, timing: Timing) -> Runner:
    runner = Runner(
        name,
        onnx_bytes,
        RunnerOptions(
            intra_op_threads=timing.intra_op_threads,
            inter_op_threads=1,
            providers=("CPUExecutionProvider",),
        ),
    )
    runner.load()
    return runner


def predict(runner: Runner, data: Dataset, output: str, progress: Progress = no_progress) -> Array:
    """The model's `output` for every row of `data`, run in batches."""
    batches = data.batches(EVAL_BATCH)
    parts = []
    for i, batch in enumerate(batches):
        parts.append(np.asarray(runner.run_sync(batch, [output])[0]))
        progress(f"evaluating {runner.name}", i + 1, len(batches))
    return np.concatenate(parts)


def time_runners(
    runners: Sequence[Runner], data: Dataset, timing: Timing, progress: Progress = no_progress
) -> list[Speed]:
    """Latency at batch 1 and throughput at `timing.batch`, each runner timed in every round.

    On a shared machine one stall of the scheduler (milliseconds, against microseconds a run of a small
    model) would otherwise decide a figure, and a gate on it: the latency percentiles are each round's,
    the median of the rounds taken; throughput is the batch size over the median time of a batch.
    """
    one = _rows(data, 1)
    full = _rows(data, timing.batch)
    latencies: list[list[float]] = [[] for _ in runners]
    batch_times: list[list[float]] = [[] for _ in runners]
    per_round = max(1, timing.latency_runs // timing.rounds)
    batches_per_round = max(1, timing.throughput_batches // timing.rounds)
    for runner in runners:
        for _ in range(timing.warmup):
            runner.run_sync(one)
            runner.run_sync(full)
    steps = timing.rounds * len(runners)
    for r in range(timing.rounds):
        for i, runner in enumerate(runners):
            for _ in range(per_round):
                start = time.perf_counter()
                runner.run_sync(one)
                latencies[i].append(time.perf_counter() - start)
            for _ in range(batches_per_round):
                start = time.perf_counter()
                runner.run_sync(full)
                batch_times[i].append(time.perf_counter() - start)
            progress("timing", r * len(runners) + i + 1, steps)
    return [
        Speed(
            p50_ms=percentile_of_rounds(lat, timing.rounds, 50),
            p99_ms=percentile_of_rounds(lat, timing.rounds, 99),
            samples_per_s=timing.batch / float(np.median(times)),
        )
        for lat, times in zip(latencies, batch_times, strict=True)
    ]


def percentile_of_rounds(seconds: list[float], rounds: int, percentile: float) -> float:
    """The median over rounds of each round's percentile, in ms."""
    return float(np.median(np.percentile(np.reshape(seconds, (rounds, -1)), percentile, axis=1)) * 1e3)


def _rows(data: Dataset, rows: int) -> dict[str, Array]:
    """The first `rows` rows, repeated when the data holds fewer."""
    index = np.arange(rows) % data.rows
    return {name: np.ascontiguousarray(array[index]) for name, array in data.inputs.items()}

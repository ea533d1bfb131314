"""The arithmetic of a capacity plan: measured figures in, workers, replicas, cores and cost out.

No I/O and no clocks here, so that every step can be checked with figures given by hand.

A replica of C cores runs ``shipyard serve --workers W --intra-op-threads t`` with W = C // t: one
worker process to each t cores. A worker works in cycles: its event loop reads and decodes the
requests that have arrived, ONNX Runtime runs them as one batch, the loop encodes the answers. A cycle
of n requests takes

    T(n) = cycle + n * overhead + compute(n) + max_queue_delay

(`cycle`: the server's CPU per cycle, its wake-up and hand-offs; `overhead`: its CPU per request
outside the model; `compute(n)`: one run of n rows), and n / T(n) requests/s is the worker's throughput
with batches of n. A worker at `load` requests/s is busy

    busy(n) = load * T(n) / n

of the time. Dynamic batching runs a request with those waiting when its cycle starts; a queue served
one at a time that is busy b of the time holds b² / (2 (1 - b)) requests on average (M/D/1), so the
mean batch solves n = 1 + busy(n)² / (2 (1 - busy(n))). For the p99 the queue's tail is taken as
M/M/1's (more waiting than M/D/1: the cautious side): P(k or more waiting) = busy^k. A request's p99 is
the remainder of the cycle in progress when it arrives (one is in progress busy of the time), any full
batches ahead of it, and its own cycle:

    p99 = T(n99) * max(0, 1 - 0.01 / busy) + ahead * T(max_batch) + T(n99)

Each worker is planned at the largest load that keeps it busy no more than the target utilisation (the
headroom absorbs bursts, a replica lost, the machine's stalls and the measurement's noise) and whose
p99 fits the budget. Replicas: the target load over a replica's planned load, rounded up.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shipyard.errors import InvalidInput


@dataclass(frozen=True)
class Figures:
    """What was measured on this machine (seconds), for one model version."""

    overhead_s: float
    """The server's CPU per request outside the model: HTTP, decoding, checks, batcher, encoding,
    monitoring. It is what limits a small model."""
    compute_s: Mapping[int, float]
    """One ONNX Runtime run, by batch size (rows), on the worker's threads."""
    cycle_s: float = 0.0
    """The server's CPU per cycle, whatever its batch: the loop's wake-up and hand-offs."""
    threads: int = 1
    """ONNX Runtime's intra-op threads in each worker; a worker takes that many cores."""
    cpu: str = "unknown CPU"
    cores: int = 1
    body: str = "json"


@dataclass(frozen=True)
class Target:
    """What is asked for, and the serving settings the plan assumes."""

    rps: float
    p99_s: float
    cores_per_replica: int = 2
    cost_per_core_hour: float = 0.04
    utilisation: float = 0.7
    max_batch_size: int = 32
    max_queue_delay_s: float = 0.0

    def check(self) -> None:
        """Every figure in its range, or one line naming the first that is not."""
        problems = [
            (self.rps > 0 and math.isfinite(self.rps), "--rps must be a number above 0"),
            (self.p99_s > 0 and math.isfinite(self.p99_s), "--p99-ms must be a number above 0"),
            (self.cores_per_replica >= 1, "--cores-per-replica must be 1 or more"),
            (
                self.cost_per_core_hour >= 0 and math.isfinite(self.cost_per_core_hour),
                "--cost-per-core-hour must be 0 or more",
            ),
            (0 < self.utilisation <= 1, "--utilisation must be above 0 and at most 1"),
            (self.max_batch_size >= 1, "--max-batch-size must be 1 or more"),
            (self.max_queue_delay_s >= 0, "the max queue delay must be 0 or more"),
        ]
        for ok, message in problems:
            if not ok:
                raise InvalidInput(message)


@dataclass(frozen=True)
class BatchRow:
    """One measured batch size, as a worker saturated with such batches would serve it."""

    size: int
    compute_s: float
    cycle_s: float
    worker_rps: float
    saturated_p99_s: float
    """A request waits for the cycle in progress, then runs in the next: 2 T(n)."""
    fits: bool


@dataclass(frozen=True)
class Latency:
    """A worker at a given load: its batches and its p99."""

    load_rps: float
    mean_batch: float
    p99_batch: int
    busy: float
    p99_s: float


@dataclass(frozen=True)
class Plan:
    target: Target
    figures: Figures
    workers_per_replica: int
    worker_capacity_rps: float
    """A worker's saturation throughput: batches of max_batch_size back to back."""
    worker_rps: float
    """The load each worker is planned for."""
    limited_by: str
    """"latency" (the p99 budget) or "utilisation" (the headroom target)."""
    replicas: int
    at_plan: Latency
    """Each worker at the target load spread over the replicas (rounded up, so at most worker_rps)."""
    batches: list[BatchRow] = field(default_factory=list)

    @property
    def replica_rps(self) -> float:
        return self.worker_rps * self.workers_per_replica

    @property
    def cores(self) -> int:
        return self.replicas * self.target.cores_per_replica

    @property
    def dollars_per_hour(self) -> float:
        return self.cores * self.target.cost_per_core_hour

    @property
    def dollars_per_1k(self) -> float:
        """Per thousand predictions (one row a request) at the target load."""
        return self.dollars_per_hour / (self.target.rps * 3600 / 1000)

    @property
    def utilisation(self) -> float:
        """How busy each worker is at the target load."""
        return self.at_plan.busy


def compute_at(figures: Figures, rows: float) -> float:
    """One run of `rows` rows: linear between the measured batch sizes; beyond the largest, its cost
    per row."""
    sizes = sorted(figures.compute_s)
    if not sizes:
        raise InvalidInput("no batch size was measured")
    if rows <= sizes[0]:
        return figures.compute_s[sizes[0]]
    for low, high in itertools.pairwise(sizes):
        if rows <= high:
            a, b = figures.compute_s[low], figures.compute_s[high]
            return a + (b - a) * (rows - low) / (high - low)
    last = sizes[-1]
    return figures.compute_s[last] / last * rows


def cycle(figures: Figures, target: Target, rows: float) -> float:
    """T(n): the loop's wake-up, decoding and encoding n requests, one run of n rows, the wait for a
    fuller batch."""
    return figures.cycle_s + rows * figures.overhead_s + compute_at(figures, rows) + target.max_queue_delay_s


def waiting(busy: float) -> float:
    """The mean queue of an M/D/1 server busy `busy` of the time."""
    return busy * busy / (2 * (1 - busy))


def busy_at(figures: Figures, target: Target, load: float, rows: float) -> float:
    """The share of the time a worker at `load` requests/s is in a cycle, with batches of `rows`."""
    return load * cycle(figures, target, rows) / rows


def latency(figures: Figures, target: Target, load: float) -> Latency | None:
    """A worker at `load` requests/s: its mean and p99 batches, how busy it is, its p99; None past
    its capacity (busy even with batches of max_batch_size)."""
    most = target.max_batch_size
    if busy_at(figures, target, load, most) >= 1:
        return None

    def short(rows: float) -> bool:  # fewer rows than the request and those waiting for it
        busy = busy_at(figures, target, load, rows)
        return busy >= 1 or rows < 1 + waiting(busy)

    low, high = 1.0, float(most)
    if not short(low):
        high = low
    elif short(high):
        low = high  # more wait than one batch holds: batches are full
    for _ in range(60):  # busy falls as batches grow, and the queue with it
        middle = (low + high) / 2
        low, high = (middle, high) if short(middle) else (low, middle)
    n = high
    busy = busy_at(figures, target, load, n)
    ahead = 0 if busy <= 0.01 else math.ceil(math.log(0.01) / math.log(busy)) - 1
    n99 = 1 + ahead
    own = min(n99, most)
    full = math.ceil(n99 / most) - 1  # whole batches ahead when more wait than one batch holds
    wait = cycle(figures, target, own) * max(0.0, 1 - 0.01 / busy) if busy > 0 else 0.0
    p99 = wait + full * cycle(figures, target, most) + cycle(figures, target, own)
    return Latency(load, n, own, busy, p99)


def largest(fits: Callable[[float], bool], high: float) -> float:
    """The largest load in (0, high) for which `fits` holds (it holds below it and not above)."""
    low = 0.0
    for _ in range(80):
        middle = (low + high) / 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def batch_rows(figures: Figures, target: Target) -> list[BatchRow]:
    rows = []
    for size in sorted(s for s in figures.compute_s if s <= target.max_batch_size):
        t = cycle(figures, target, size)
        rows.append(BatchRow(size, figures.compute_s[size], t, size / t, 2 * t, 2 * t <= target.p99_s))
    return rows


def plan(figures: Figures, target: Target) -> Plan:
    """Workers, replicas and cores for `target`, from `figures`; InvalidInput when nothing fits."""
    target.check()
    if figures.overhead_s < 0 or figures.cycle_s < 0 or any(v <= 0 for v in figures.compute_s.values()):
        raise InvalidInput("the measured figures must be positive")
    if target.cores_per_replica < figures.threads:
        raise InvalidInput(
            f"a worker uses {figures.threads} ONNX Runtime threads: --cores-per-replica must be at least that"
        )
    single = cycle(figures, target, 1)
    if single > target.p99_s:
        raise InvalidInput(
            f"one row alone takes {single * 1000:.3g} ms here (server "
            f"{(figures.cycle_s + figures.overhead_s) * 1000:.3g} ms + "
            f"model {compute_at(figures, 1) * 1000:.3g} ms), over the p99 budget of "
            f"{target.p99_s * 1000:g} ms: no batch size fits"
        )
    most = target.max_batch_size
    capacity = most / cycle(figures, target, most)

    def calm(load: float) -> bool:
        answer = latency(figures, target, load)
        return answer is not None and answer.busy <= target.utilisation

    def quick(load: float) -> bool:
        answer = latency(figures, target, load)
        return answer is not None and answer.p99_s <= target.p99_s

    by_utilisation, by_latency = largest(calm, capacity), largest(quick, capacity)
    highest = min(by_utilisation, by_latency)
    limited_by = "utilisation" if by_utilisation <= by_latency else "latency"
    if highest <= 0:
        raise InvalidInput(f"no load fits a p99 of {target.p99_s * 1000:g} ms on this machine")
    workers = target.cores_per_replica // figures.threads
    replicas = max(1, math.ceil(target.rps / (highest * workers) - 1e-9))
    at_plan = latency(figures, target, target.rps / (replicas * workers))
    assert at_plan is not None  # at most `highest`, below capacity
    return Plan(
        target=target,
        figures=figures,
        workers_per_replica=workers,
        worker_capacity_rps=capacity,
        worker_rps=highest,
        limited_by=limited_by,
        replicas=replicas,
        at_plan=at_plan,
        batches=batch_rows(figures, target),
    )

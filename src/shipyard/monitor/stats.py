"""Triton's statistics extension for one model version: counts and nanoseconds of successes, failures,
queueing and compute, per batch size too (what perf_analyzer reads from /v2/models/stats)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NS = 1_000_000_000


@dataclass
class Timing:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * NS)

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class TritonStats:
    success: Timing = field(default_factory=Timing)
    fail: Timing = field(default_factory=Timing)
    queue: Timing = field(default_factory=Timing)
    compute: Timing = field(default_factory=Timing)
    batches: dict[int, Timing] = field(default_factory=dict)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0

    def ran(self, rows: int, queued_s: list[float], compute_s: float, answered: bool) -> None:
        """One run of `rows` rows: how long each request queued, how long it computed, and whether it
        answered (a failed run still queued and computed)."""
        self.queue.add(sum(queued_s), len(queued_s))
        self.compute.add(compute_s)
        self.execution_count += 1
        if answered:
            self.inference_count += rows
            self.batches.setdefault(rows, Timing()).add(compute_s)

    def answered_all(self, seconds: Sequence[float] | np.ndarray) -> None:
        self.success.add(float(np.sum(seconds)), len(seconds))
        self.last_inference_ms = int(time.time() * 1000)

    def failed(self, seconds: float) -> None:
        self.fail.add(seconds)

    @property
    def requests(self) -> int:
        return self.success.count + self.fail.count

    def to_dict(self, model: str, version: int) -> dict[str, Any]:
        zero = Timing().to_dict()
        return {
            "name": model,
            "version": str(version),
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.to_dict(),
                "fail": self.fail.to_dict(),
                "queue": self.queue.to_dict(),
                "compute_input": zero,
                "compute_infer": self.compute.to_dict(),
                "compute_output": zero,
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": zero,
                    "compute_infer": t.to_dict(),
                    "compute_output": zero,
                }
                for size, t in sorted(self.batches.items())
            ],
        }

"""The offline gate: before any traffic, a candidate measured beside the version it would replace, on
the same evaluation data in the same run (optimize's report), and judged on three counts: its metric
drops no more than a margin (optimize's gate, the same rule `optimize` registers by), its p99 latency
and its size grow no more than a ratio. The verdict goes into the model's history, so a rollout can
ask whether the candidate passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.optimize.gate import judge
from shipyard.optimize.report import Report
from shipyard.ratios import times


@dataclass(frozen=True)
class Bounds:
    """What a candidate may lose: its metric by `max_drop`, and its p99 latency and file size may grow
    to so many times the other's. Checked when made, so a bad bound is refused before any measuring."""

    max_drop: float = 0.01
    max_latency_ratio: float = 1.5
    max_size_ratio: float = 2.0
    latency_floor_ms: float = 1.0
    """p99 latencies are compared as at least this: below it a server's own cost for a request and the
    scheduler's stalls decide them (a digits model's 0.02 ms p99 read 0.35 ms on a busy machine, 17x),
    not the model."""

    def __post_init__(self) -> None:
        if not self.max_drop >= 0:
            raise InvalidInput(f"--max-accuracy-drop must be 0 or more, got {self.max_drop}")
        if not (self.max_latency_ratio > 0 and self.max_size_ratio > 0):
            raise InvalidInput("--max-latency-ratio and --max-size-ratio must be more than 0")
        if not self.latency_floor_ms >= 0:
            raise InvalidInput(f"--latency-floor-ms must be 0 or more, got {self.latency_floor_ms}")


@dataclass(frozen=True)
class Check:
    """One count of the verdict: what was measured against its bound."""

    name: str
    value: float
    bound: float
    passed: bool
    shown: str = ""
    """How the value and the bound read, when not as plain numbers (`1.12x slower`, `3x slower`)."""
    bound_shown: str = ""

    def __str__(self) -> str:
        value, bound = self.shown or f"{self.value:.4g}", self.bound_shown or f"{self.bound:g}"
        return f"{self.name}: {value} (at most {bound}): {'ok' if self.passed else 'FAILED'}"


@dataclass(frozen=True)
class GateVerdict:
    candidate: str
    against: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def summary(self) -> str:
        """One line for the history: `passed: accuracy drop 0 (bound 0.01): ok; ...`."""
        return f"{'passed' if self.passed else 'failed'} against {self.against}: " + "; ".join(
            str(check) for check in self.checks
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "against": self.against,
            "passed": self.passed,
            "checks": [vars(check) for check in self.checks],
        }


def offline_gate(report: Report, bounds: Bounds) -> GateVerdict:
    """Judge `report` (the production version as its parent, the candidate as its candidate)."""
    max_drop, max_latency_ratio, max_size_ratio = (
        bounds.max_drop,
        bounds.max_latency_ratio,
        bounds.max_size_ratio,
    )
    metric = judge(report, max_drop)
    before, after = report.parent, report.candidate
    candidate_ms, current_ms = (max(side.speed.p99_ms, bounds.latency_floor_ms) for side in (after, before))
    latency = candidate_ms / current_ms if current_ms > 0 else 1.0
    size = after.contents.size_bytes / before.contents.size_bytes if before.contents.size_bytes else 1.0
    checks = (
        Check(f"{metric.metric} drop", metric.drop, max_drop, metric.passed),
        Check(
            "p99 latency",
            latency,
            max_latency_ratio,
            latency <= max_latency_ratio,
            times(1 / latency, "faster", "slower", "same speed"),
            f"{max_latency_ratio:g}x slower",
        ),
        Check(
            "file size",
            size,
            max_size_ratio,
            size <= max_size_ratio,
            times(1 / size, "smaller", "larger", "the same"),
            f"{max_size_ratio:g}x larger",
        ),
    )
    return GateVerdict(after.ref, before.ref, checks)

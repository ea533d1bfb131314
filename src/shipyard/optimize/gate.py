"""The gate: a candidate becomes a version only when its metric drops by no more than the bound.

`--force` registers a refused candidate anyway, and the lineage says it is failing, so nobody
mistakes it for one that passed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.optimize.report import Report

# Metrics are means over the data; a drop equal to the bound must pass despite float rounding.
SLACK = 1e-9


@dataclass(frozen=True)
class Verdict:
    metric: str
    drop: float
    max_drop: float
    passed: bool
    forced: bool

    @property
    def registers(self) -> bool:
        return self.passed or self.forced

    @property
    def status(self) -> str:
        return "passed" if self.passed else "failing"

    @property
    def excess(self) -> float:
        """By how much the drop exceeds the bound (0 when it passes)."""
        return max(0.0, self.drop - self.max_drop)

    def message(self, ref: str) -> str:
        drop = f"{self.metric} drops by {self.drop:.4g} (bound {self.max_drop:g})"
        if self.passed:
            return f"gate passed: {drop}"
        if self.forced:
            return f"gate failed: {drop}, {self.excess:.4g} over; registered anyway (--force), marked failing"
        return (
            f"gate failed: {drop}, {self.excess:.4g} over the bound; "
            f"nothing registered for {ref} (--force registers it marked failing)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


def judge(report: Report, max_drop: float, force: bool = False) -> Verdict:
    if max_drop < 0:
        raise InvalidInput(f"--max-accuracy-drop must be 0 or more, got {max_drop}")
    drop = report.drop
    return Verdict(report.metric, drop, max_drop, drop <= max_drop + SLACK, force)

"""Smaller, faster models with their cost in accuracy measured: quantize (dynamic and static int8),
fp16, prune and distill, each producing a candidate that is measured against its parent on the same
data and registered only when its metric stays within the user's bound.

    from shipyard.optimize import optimize
    outcome = optimize(registry, "digits:1", "dynamic-int8", Path("test.npz"), max_drop=0.01)
    outcome.report.size_ratio, outcome.verdict.passed, outcome.record
"""

from shipyard.datasets import Dataset, load_data
from shipyard.optimize.gate import Verdict, judge
from shipyard.optimize.measure import Timing
from shipyard.optimize.methods import METHODS, Candidate, Options
from shipyard.optimize.metrics import METRICS
from shipyard.optimize.pipeline import Outcome, compare, optimize
from shipyard.optimize.report import Model, Report, compare_models

__all__ = [
    "METHODS",
    "METRICS",
    "Candidate",
    "Dataset",
    "Model",
    "Options",
    "Outcome",
    "Report",
    "Timing",
    "Verdict",
    "compare",
    "compare_models",
    "judge",
    "load_data",
    "optimize",
]

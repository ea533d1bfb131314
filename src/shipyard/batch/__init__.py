"""Batch inference: a registered version run over files, streamed part by part, resumable.

from shipyard.batch import Job, run
summary = run(registry, Job("digits:production", "day/*.parquet", Path("scored")))
"""

from shipyard.batch.job import Job, Plan, Progress, Summary, plan, run
from shipyard.batch.outputs import Predictions

__all__ = ["Job", "Plan", "Predictions", "Progress", "Summary", "plan", "run"]

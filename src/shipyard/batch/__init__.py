"""Batch inference: a registered version run over files, streamed part by part, resumable.

from shipyard.batch import Job, run
summary = run(registry, Job("digits:production", "day/*.parquet", Path("scored")))
"""

from shipyard.batch.job import Job, Summary, run

__all__ = ["Job", "Summary", "run"]

"""A batch job run with its record in the registry: started, then succeeded or failed (and why).

`run_recorded` is what `shipyard batch run` calls: every job, by hand or of a schedule, leaves a row
that `shipyard batch jobs` lists. A job killed -9 leaves its row running; the registry reads it as
lost once its process is gone (registry/jobs.py).
"""

from __future__ import annotations

from typing import Any

from shipyard.batch import Job, Summary, run
from shipyard.errors import ShipyardError
from shipyard.registry import Registry, parse_ref


def run_recorded(registry: Registry, job: Job, progress: Any = None, schedule: str | None = None) -> Summary:
    """Run `job` as `shipyard.batch.run` does (`progress` is passed on as it is), recording it as a
    job (of `schedule`, when a scheduler started it): the version its reference stands for now, then
    its rows and errors, or the error that ended it, which is raised again."""
    name, version = parse_ref(job.ref)
    try:
        record = registry.version(name, version)
    except ShipyardError as exc:  # an alias deleted since the schedule was made: a failed job to see
        registry.job_not_started(job.ref, name, "failed", exc.message, schedule=schedule, output=job.output)
        raise
    id = registry.job_started(job.ref, name, record.number, job.output, schedule)
    try:
        summary = run(registry, job, progress)
    except BaseException as exc:  # KeyboardInterrupt too: the job ended, and its row must say so
        try:
            registry.job_finished(id, None, None, "failed", _why(exc))
        except Exception as recording:  # the job's own error is the one to raise
            exc.add_note(f"(recording batch job {id} as failed failed too: {recording})")
        raise
    # an alias moved between the two look-ups: the version the job ran is the one to keep
    registry.job_finished(id, summary.rows, summary.errors, "succeeded", version=summary.version)
    return summary


def _why(exc: BaseException) -> str:
    if isinstance(exc, ShipyardError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"

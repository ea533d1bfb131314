"""The same batch job on Ray Data, for more than one machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.batch.job import Job, Progress, Summary
    from shipyard.registry import Registry


def run_on_ray(registry: Registry, job: Job, progress: Progress | None = None) -> Summary:
    raise InvalidInput("--engine ray is not available in this build")

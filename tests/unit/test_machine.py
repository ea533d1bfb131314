"""The cores a process may use: its affinity (a container's cpuset, taskset), which every count of
threads follows, not the machine's count."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.batch.job import Job, _cores
from shipyard.machine import usable_cores
from shipyard.optimize.measure import Timing

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs CPU affinity and at least 2 cores to narrow",
)


@pytest.fixture
def one_core() -> Iterator[None]:
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def test_usable_cores_follow_the_affinity() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0)) >= 2


def test_a_narrower_affinity_narrows_every_count_of_threads(one_core: None) -> None:
    assert usable_cores() == 1
    assert Timing().intra_op_threads == 1  # optimize's timings
    assert _cores(Job("m", "in.parquet", Path("out"))) == 1  # a batch job's runs
    assert Timing(threads=3).intra_op_threads == 3  # a count given is kept

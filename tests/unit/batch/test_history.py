"""Every batch job recorded (shipyard/batch/history.py): the version its reference stood for, its rows
and errors, or why it failed, with the error raised as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.batch import Job
from shipyard.batch.history import run_recorded
from shipyard.errors import Conflict, NotFound
from shipyard.registry import Registry
from tests.conftest import register_digits
from tests.unit.batch.conftest import parquet


@pytest.fixture
def digits(registry: Registry) -> Registry:
    register_digits(registry)
    register_digits(registry)
    registry.deploy("digits", 2)
    return registry


@pytest.fixture
def source(tmp_path: Path) -> str:
    parquet(tmp_path / "in.parquet", 120, ids=False)
    return str(tmp_path / "in.parquet")


def test_a_job_is_recorded_with_the_version_it_ran(digits: Registry, source: str, tmp_path: Path) -> None:
    summary = run_recorded(digits, Job("digits:production", source, tmp_path / "out"), schedule="nightly")
    (job,) = digits.jobs()
    assert (job.ref, job.model, job.version, job.outcome, job.rows, job.errors, job.schedule) == (
        "digits:production", "digits", 2, "succeeded", summary.rows, summary.errors, "nightly",
    )  # fmt: skip
    assert summary.rows == 120 and job.output == str(tmp_path / "out") and job.message == ""


def test_a_failed_job_is_recorded_with_why_and_the_error_raised(
    digits: Registry, source: str, tmp_path: Path
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("someone else's")
    with pytest.raises(Conflict) as raised:
        run_recorded(digits, Job("digits:1", source, taken))
    (job,) = digits.jobs()
    assert (job.outcome, job.version, job.rows, job.message) == ("failed", 1, None, raised.value.message)


def test_a_reference_that_stands_for_nothing_is_a_failed_job(
    digits: Registry, source: str, tmp_path: Path
) -> None:
    with pytest.raises(NotFound, match="has no version or alias 'staging'"):
        run_recorded(digits, Job("digits:staging", source, tmp_path / "out"))
    (job,) = digits.jobs()
    assert (job.outcome, job.model, job.version) == ("failed", "digits", None)
    assert job.message == "model 'digits' has no version or alias 'staging'"
    assert not (tmp_path / "out").exists()


class Interrupting:
    """Progress that is interrupted (Ctrl-C) once the first part is committed."""

    def started(self, total: int | None, done: int) -> None:
        pass

    def committed(self, part: object, rows: int) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_job_is_recorded_failed(digits: Registry, source: str, tmp_path: Path) -> None:
    job = Job("digits", source, tmp_path / "out", part_rows=50)
    with pytest.raises(KeyboardInterrupt):
        run_recorded(digits, job, Interrupting())
    (record,) = digits.jobs()
    assert (record.outcome, record.message, record.ended_at is not None) == ("failed", "interrupted", True)
    run_recorded(digits, job)  # a rerun goes on, and is a job of its own
    assert [j.outcome for j in digits.jobs()] == ["succeeded", "failed"]

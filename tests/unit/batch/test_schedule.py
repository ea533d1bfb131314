"""The scheduler (shipyard/batch/schedule.py) on a test clock: schedules due at their cron's times, each
job a real `shipyard batch run` process over a file made here, recorded in the registry; a schedule of
an alias following deploys; one job at a time per schedule; a job that cannot start failing alone."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shipyard.batch.schedule import (
    Finished,
    NotStarted,
    Scheduler,
    Started,
    check_placeholders,
    due,
    expand,
)
from shipyard.config import Settings
from shipyard.cron import next_fire
from shipyard.errors import InvalidInput
from shipyard.registry import Registry, ScheduleRecord
from tests.conftest import register_digits
from tests.unit.batch.conftest import parquet

NIGHTLY = "0 2 * * *"
WAIT_S = 120  # a job's process: start, load the model, score 300 rows


def nightly(registry: Registry, folder: Path, *args: str, ref: str = "digits:production") -> datetime:
    """A schedule `nightly` scoring folder/in.parquet into folder/scored/{date}; its first firing."""
    source = parquet(folder / "in.parquet", ids=False)
    run_args = [ref, "--input", str(source), "--output", "scored/{date}", *args]
    schedule = registry.add_schedule("nightly", NIGHTLY, run_args, folder=folder)
    return next_fire(NIGHTLY, schedule.created_at)


def one_finished(scheduler: Scheduler) -> Finished:
    (finished,) = scheduler.wait(timeout=WAIT_S)  # waits on the process itself
    return finished


def test_a_schedule_fires_at_its_time_and_follows_its_alias(
    digits: Registry, settings: Settings, tmp_path: Path
) -> None:
    first = nightly(digits, tmp_path)
    scheduler = Scheduler(digits, settings)
    assert scheduler.tick(first - timedelta(minutes=1)) == []
    (started,) = scheduler.tick(first)
    assert isinstance(started, Started) and started.fire == first and started.ref == "digits:production"
    assert scheduler.tick(first + timedelta(minutes=30)) == []  # fired once for 02:00
    finished = one_finished(scheduler)
    job = finished.job
    day_one = tmp_path / "scored" / f"{first:%Y-%m-%d}"
    assert finished.returncode == 0, started.log.read_text()
    assert (job.outcome, job.schedule, job.ref, job.version, job.rows, job.errors) == (
        "succeeded", "nightly", "digits:production", 1, 300, 0,
    )  # fmt: skip
    assert job.pid == started.pid and Path(job.output) == day_one.relative_to(tmp_path)
    assert pq.read_table(day_one).num_rows == 300
    assert finished.line().startswith(f"nightly: job {job.id} succeeded: digits:1, 300 rows, 0 errors")

    register_digits(digits)
    digits.deploy("digits", 2)
    second = first + timedelta(days=1)
    assert scheduler.tick(second - timedelta(seconds=1)) == []
    (again,) = scheduler.tick(second)
    assert isinstance(again, Started)
    job = one_finished(scheduler).job
    assert (job.outcome, job.version, job.rows) == ("succeeded", 2, 300)
    assert pq.read_table(tmp_path / "scored" / f"{second:%Y-%m-%d}").num_rows == 300
    assert [(j.version, j.outcome) for j in digits.jobs("nightly")] == [(2, "succeeded"), (1, "succeeded")]


def test_a_job_whose_reference_stands_for_nothing_fails_alone(
    digits: Registry, settings: Settings, tmp_path: Path
) -> None:
    first = nightly(digits, tmp_path, ref="digits:staging")
    scheduler = Scheduler(digits, settings)
    scheduler.tick(first)
    finished = one_finished(scheduler)
    assert finished.returncode == 1
    assert finished.job.pid is not None  # recorded by the job's own process
    assert (finished.job.outcome, finished.job.version, finished.job.message) == (
        "failed", None, "model 'digits' has no version or alias 'staging'",
    )  # fmt: skip
    assert not (tmp_path / "scored").exists()


def test_a_job_that_cannot_start_is_recorded_failed_by_the_scheduler(
    digits: Registry, settings: Settings, tmp_path: Path
) -> None:
    """Arguments `batch run` refuses (added past the CLI, which checks them): the process exits before
    its job starts, and the scheduler records why, from the job's log."""
    first = nightly(digits, tmp_path, "--no-such-option", "1")
    scheduler = Scheduler(digits, settings)
    (started,) = scheduler.tick(first)
    finished = one_finished(scheduler)
    assert finished.returncode == 2 and scheduler.running == 0
    job = finished.job
    assert (job.outcome, job.schedule, job.ref) == ("failed", "nightly", "digits:production")
    assert job.message.startswith("its process exited with 2 before the job started: ")
    assert "--no-such-option" in job.message and "--no-such-option" in started.log.read_text()
    assert digits.jobs("nightly") == [job]


def test_a_schedule_whose_job_is_still_running_is_not_started_again(
    digits: Registry, settings: Settings, tmp_path: Path
) -> None:
    first = nightly(digits, tmp_path)
    running = digits.job_started("digits:production", "digits", 1, "scored/x", "nightly")  # this process
    scheduler = Scheduler(digits, settings)
    (skipped,) = scheduler.tick(first)
    assert isinstance(skipped, NotStarted) and scheduler.running == 0
    job = skipped.job
    assert (job.outcome, job.schedule, job.ended_at) == ("skipped", "nightly", job.started_at)
    assert job.message.startswith(f"the {first:%Y-%m-%d %H:%M} firing was skipped: job {running} (started ")
    assert job.message.endswith(") is still running")
    assert skipped.line() == f"nightly: job {job.id} skipped: {job.message}"
    assert scheduler.tick(first + timedelta(hours=1)) == []  # the 02:00 firing is spent, skipped
    assert [j.outcome for j in digits.jobs("nightly")] == ["skipped", "running"]
    assert not (tmp_path / "scored").exists()


def test_a_schedule_is_due_once_for_the_latest_time_it_missed() -> None:
    created = datetime(2026, 3, 1, 12, 0).astimezone()
    schedule = ScheduleRecord("s", NIGHTLY, ("digits",), None, "me", created, None)
    two = datetime(2026, 3, 2, 2, 0).astimezone()
    assert due(schedule, two - timedelta(seconds=1)) is None
    assert due(schedule, two) == two
    assert due(schedule, two + timedelta(days=3, hours=5)) == two + timedelta(days=3)  # not four firings
    fired = ScheduleRecord("s", NIGHTLY, ("digits",), None, "me", created, two)
    assert due(fired, two + timedelta(hours=23)) is None
    assert due(fired, two + timedelta(days=1)) == two + timedelta(days=1)


def test_placeholders_stand_for_the_firing_time() -> None:
    fire = datetime(2026, 3, 4, 2, 5).astimezone()
    args = ["digits", "--input", "/data/{date}/*.{csv,parquet}", "--output", "out/{datetime}-{time}"]
    assert expand(args, fire) == [
        "digits", "--input", "/data/2026-03-04/*.{csv,parquet}", "--output", "out/2026-03-04T0205-0205",
    ]  # fmt: skip
    check_placeholders(args)
    with pytest.raises(InvalidInput, match=r"unknown placeholder \{dat\} in 'out/\{dat\}': \{date\}, "):
        check_placeholders(["digits", "--output", "out/{dat}"])


def test_no_schedules_nothing_due(registry: Registry, settings: Settings) -> None:
    scheduler = Scheduler(registry, settings)
    assert scheduler.tick() == [] and scheduler.next_due() is None and scheduler.wait() == []

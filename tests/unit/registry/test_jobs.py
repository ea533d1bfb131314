"""Schedules and the record of batch jobs, on a real database: SQLite, and PostgreSQL when configured."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.registry import JobRecord, Registry, ScheduleRecord
from tests.conftest import migrated_down_and_up, registry_on_every_engine

registry = registry_on_every_engine()

ARGS = ["digits:production", "--input", "day/*.parquet", "--output", "scored/{date}"]


def test_a_schedule_is_added_listed_and_removed(registry: Registry) -> None:
    added = registry.add_schedule("nightly", "0  2 * * *", ARGS, folder="/data")
    assert added == ScheduleRecord(
        "nightly", "0 2 * * *", tuple(ARGS), "/data", registry.actor, added.created_at, None
    )
    assert added.ref == "digits:production" and added.created_at.tzinfo is not None
    registry.add_schedule("hourly", "@hourly", ["digits", "--input", "x", "--output", "y"])
    assert [s.name for s in registry.schedules()] == ["hourly", "nightly"]
    assert registry.schedule("nightly") == added
    assert registry.remove_schedule("nightly") == added
    assert [s.name for s in registry.schedules()] == ["hourly"]
    with pytest.raises(NotFound, match="no schedule named 'nightly'"):
        registry.remove_schedule("nightly")
    with pytest.raises(NotFound, match="no schedule named 'nightly'"):
        registry.schedule("nightly")


def test_a_name_is_taken_once(registry: Registry) -> None:
    registry.add_schedule("nightly", "0 2 * * *", ARGS)
    with pytest.raises(Conflict, match="a schedule named 'nightly' exists"):
        registry.add_schedule("nightly", "0 3 * * *", ARGS)
    assert registry.schedule("nightly").cron == "0 2 * * *"


@pytest.mark.parametrize(
    ("name", "cron", "args", "message"),
    [
        ("bad name", "0 2 * * *", ARGS, "bad schedule name 'bad name'"),
        ("nightly", "61 2 * * *", ARGS, r"bad cron expression '61 2 \* \* \*': .*out of range"),
        ("nightly", "0 2 * * * *", ARGS, r"bad cron expression .*: use five fields"),
        ("nightly", "daily", ARGS, r"bad cron expression 'daily': use five fields .* @daily"),
        ("nightly", "0 2 30 2 *", ARGS, "no date ever matches it"),
        ("nightly", "0 2 * * *", [], "needs the arguments of `batch run`"),
        ("nightly", "0 2 * * *", ARGS[1:], "the first argument must be the model reference"),
        ("nightly", "0 2 * * *", ["digits:", "--input", "x"], "the first argument must be the model"),
        ("nightly", "0 2 * * *", ["bad name", "--input", "x"], "bad model name"),
    ],
)
def test_bad_schedules_are_refused_with_the_rule(
    registry: Registry, name: str, cron: str, args: list[str], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        registry.add_schedule(name, cron, args)
    assert registry.schedules() == []


def test_a_firing_moves_on_from_the_last_one_read_once(registry: Registry) -> None:
    added = registry.add_schedule("nightly", "0 2 * * *", ARGS)
    first = added.created_at + timedelta(hours=1)
    assert registry.fire_schedule("nightly", first, None)
    assert not registry.fire_schedule("nightly", first, None)  # another scheduler read it before
    assert registry.schedule("nightly").fired_at == first
    second = first + timedelta(days=1)
    assert registry.fire_schedule("nightly", second, first)
    assert registry.schedule("nightly").fired_at == second
    assert not registry.fire_schedule("gone", second, None)


def test_a_job_is_recorded_from_its_start_to_its_end(registry: Registry) -> None:
    id = registry.job_started("digits:production", "digits", 2, "scored/2026-03-04", "nightly")
    (running,) = registry.jobs()
    assert running == JobRecord(
        id, "nightly", "digits:production", "digits", 2, "running", running.started_at, None, None, None,
        "scored/2026-03-04", "", os.getpid(), socket.gethostname(), registry.actor,
    )  # fmt: skip
    assert registry.running_job("nightly") == running
    ended = registry.job_finished(id, 300, 2, "succeeded")
    assert (ended.outcome, ended.rows, ended.errors, ended.version) == ("succeeded", 300, 2, 2)
    assert ended.ended_at is not None and ended.seconds is not None and ended.seconds >= 0
    assert registry.jobs() == [ended] and registry.job(id) == ended
    assert registry.running_job("nightly") is None
    with pytest.raises(Conflict, match=f"batch job {id} has ended already: succeeded"):
        registry.job_finished(id, 0, 0, "failed", "late")
    with pytest.raises(InvalidInput, match="a job ends succeeded or failed, not 'lost'"):
        registry.job_finished(id, 0, 0, "lost")
    with pytest.raises(NotFound, match="no batch job 999"):
        registry.job_finished(999, 0, 0, "failed")
    with pytest.raises(NotFound, match="no batch job 999"):
        registry.job(999)


def test_a_failed_job_keeps_why_and_the_version_it_really_ran(registry: Registry) -> None:
    id = registry.job_started("digits:production", "digits", 1, "out")
    failed = registry.job_finished(id, None, None, "failed", "3 rows could not be read")
    assert (failed.outcome, failed.message, failed.rows, failed.schedule) == (
        "failed", "3 rows could not be read", None, None,
    )  # fmt: skip
    moved = registry.job_started("digits:production", "digits", 1, "out")
    assert registry.job_finished(moved, 10, 0, "succeeded", version=2).version == 2


def test_jobs_that_never_ran_are_recorded_as_ended(registry: Registry) -> None:
    skipped = registry.job_not_started(
        "digits:production", "digits", "skipped", "job 1 is still running", schedule="nightly"
    )
    assert (skipped.outcome, skipped.version, skipped.started_at) == ("skipped", None, skipped.ended_at)
    failed = registry.job_not_started("digits:nope", "digits", "failed", "no alias 'nope'", output="out")
    assert (failed.outcome, failed.message, failed.output) == ("failed", "no alias 'nope'", "out")
    with pytest.raises(InvalidInput, match="a job that never ran is skipped or failed"):
        registry.job_not_started("digits", "digits", "succeeded", "")


def test_jobs_are_listed_newest_first_by_schedule_and_limit(registry: Registry) -> None:
    ids = [
        registry.job_started("digits", "digits", 1, f"out{i}", "nightly" if i % 2 else None) for i in range(6)
    ]
    assert [j.id for j in registry.jobs()] == ids[::-1]
    assert [j.id for j in registry.jobs(limit=2)] == [ids[5], ids[4]]
    assert [j.id for j in registry.jobs("nightly")] == [ids[5], ids[3], ids[1]]
    assert [j.id for j in registry.jobs("nightly", limit=1)] == [ids[5]]
    assert registry.jobs("other") == []
    assert registry.running_job("nightly") == registry.job(ids[5])


def test_a_job_whose_process_was_killed_is_lost(registry: Registry) -> None:
    """A process that records a job's start and is killed -9: its job is read as lost at once, written
    down as lost by `mark_lost`, and no longer holds its schedule up."""
    code = (
        "import sys\n"
        "from pathlib import Path\nfrom shipyard.registry import ArtifactStore, Registry\n"
        "r = Registry(sys.argv[1], ArtifactStore(Path(sys.argv[2])))\n"
        "print(r.job_started('digits:production', 'digits', 1, 'out', 'nightly'), flush=True)\n"
        "sys.stdin.read()\n"  # holds the job running until killed
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, registry.url, str(registry.artifacts.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            id = int(process.stdout.readline())
            assert registry.job(id).outcome == "running" and registry.job(id).pid == process.pid
            assert registry.running_job("nightly") is not None
            assert registry.mark_lost() == []
        finally:
            process.kill()
            process.wait(timeout=30)
    lost = registry.job(id)
    assert lost.outcome == "lost" and f"its process ({process.pid} on " in lost.message
    assert registry.running_job("nightly") is None
    (marked,) = registry.mark_lost()
    assert marked.id == id and marked.outcome == "lost" and marked.ended_at is not None
    assert registry.job(id) == marked and registry.mark_lost() == []
    # its process was alive after all (another host's view): it may still say how it went
    assert registry.job_finished(id, 5, 0, "succeeded").outcome == "succeeded"


def test_the_migration_goes_down_and_up(registry: Registry) -> None:
    registry.add_schedule("nightly", "0 2 * * *", ARGS)
    again = migrated_down_and_up(registry, "0010")
    try:
        assert again.schedules() == [] and again.jobs() == []
        again.add_schedule("nightly", "0 2 * * *", ARGS)
        again.job_finished(again.job_started("digits", "digits", 1, "out", "nightly"), 1, 0, "succeeded")
        assert [j.outcome for j in again.jobs("nightly")] == ["succeeded"]
    finally:
        again.close()

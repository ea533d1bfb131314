"""`shipyard batch schedule ...`, `shipyard batch jobs` and `shipyard scheduler` as a user runs them:
arguments checked when a schedule is added, each mistake one line; the scheduler stopped by a signal."""

from __future__ import annotations

import os
import py_compile
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import register_digits

ROOT = Path(__file__).parents[2]
RUN = ["digits:production", "--input", "day/*.parquet", "--output", "scored/{date}"]


def shipyard(settings: Settings, *args: str, code: int = 0, cwd: Path | None = None) -> list[str]:
    env = {**os.environ, "SHIPYARD_HOME": str(settings.home_dir), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=cwd,
    )
    assert result.returncode == code, result.stdout + result.stderr
    return (result.stdout + result.stderr).strip().splitlines()


@pytest.fixture
def home(settings: Settings) -> Settings:
    registry = Registry.open(settings)
    register_digits(registry)
    registry.deploy("digits", 1)
    registry.close()
    return settings


@pytest.mark.parametrize(
    ("cron", "args", "error"),
    [
        ("61 2 * * *", RUN, "error: bad cron expression '61 2 * * *': [61 2 * * *] is not acceptable"),
        ("0 2 * * *", [*RUN, "--inptu", "x"], "error: bad `batch run` arguments: No such option: --inptu"),
        ("0 2 * * *", RUN[1:], "error: bad `batch run` arguments: Missing argument 'NAME[:VERSION]'."),
        ("0 2 * * *", [*RUN[1:], "digits"], "error: put the model first: -- digits --input ... --output ..."),
        ("0 2 * * *", ["digts", *RUN[1:]], "error: no model named 'digts'"),
        ("0 2 * * *", [*RUN, "--keep", "{dat}"], "error: unknown placeholder {dat} in '{dat}': {date}, "),
        ("0 2 * * *", [*RUN, "--schedule", "x"], "error: --schedule has no place in a schedule's arguments"),
        ("0 2 * * *", [*RUN, "--part-rows", "many"], "error: bad `batch run` arguments: Invalid value for"),
    ],
)
def test_a_mistake_fails_when_the_schedule_is_added_in_one_line(
    home: Settings, cron: str, args: list[str], error: str
) -> None:
    (line,) = shipyard(home, "batch", "schedule", "add", "nightly", "--cron", cron, "--", *args, code=1)
    assert line.startswith(error)
    registry = Registry.open(home)
    try:
        assert registry.schedules() == []
    finally:
        registry.close()


def test_a_schedule_is_added_listed_and_removed(home: Settings, tmp_path: Path) -> None:
    add = ("batch", "schedule", "add", "nightly")
    added = shipyard(home, *add, "--cron", "0 2 * * *", "--", *RUN, cwd=tmp_path)
    assert added[0].startswith("added schedule nightly (0 2 * * *, next at ")
    assert added[1] == "  shipyard batch run " + " ".join(RUN)
    registry = Registry.open(home)
    try:
        (schedule,) = registry.schedules()
        assert (schedule.args, schedule.folder) == (tuple(RUN), str(tmp_path))
    finally:
        registry.close()
    listed = "\n".join(shipyard(home, "batch", "schedule", "list"))
    assert "nightly" in listed and "0 2 * * *" in listed and "scored/{date}" in listed
    assert shipyard(home, "batch", "jobs") == ["no batch jobs yet"]
    assert orjson.loads("\n".join(shipyard(home, "batch", "jobs", "--json", "--schedule", "nightly"))) == []
    again = shipyard(home, *add, "--cron", "@daily", "--", *RUN, code=1)
    assert again == ["error: a schedule named 'nightly' exists: remove it first, or pick another name"]
    assert shipyard(home, "batch", "schedule", "remove", "nightly") == ["removed schedule nightly"]
    assert shipyard(home, "batch", "schedule", "remove", "nightly", code=1) == [
        "error: no schedule named 'nightly'"
    ]
    assert shipyard(home, "batch", "schedule", "list")[0].startswith("no schedules yet: shipyard batch")


def test_a_fixed_output_folder_is_pointed_out(home: Settings) -> None:
    fixed = [*RUN[:-1], "scored"]
    added = shipyard(home, "batch", "schedule", "add", "nightly", "--cron", "0 2 * * *", "--", *fixed)
    assert any(line.startswith("note: every run writes to scored") for line in added)


def test_jobs_are_listed_newest_first(home: Settings) -> None:
    registry = Registry.open(home)
    try:
        first = registry.job_started("digits:production", "digits", 1, "scored/a", "nightly")
        registry.job_finished(first, 300, 2, "succeeded")
        second = registry.job_started("digits:production", "digits", 1, "scored/b")
        registry.job_finished(second, None, None, "failed", "3 rows could not be read")
    finally:
        registry.close()
    table = shipyard(home, "batch", "jobs")
    assert table[-1] == f"job {second} failed: 3 rows could not be read"
    rows = [line.split("│")[1].strip() for line in table if line.startswith("│")]
    assert rows == [str(second), str(first)]
    jobs = orjson.loads("\n".join(shipyard(home, "batch", "jobs", "--json", "--schedule", "nightly")))
    assert [(j["id"], j["rows"], j["errors"], j["outcome"]) for j in jobs] == [(first, 300, 2, "succeeded")]
    assert [
        j["id"] for j in orjson.loads("\n".join(shipyard(home, "batch", "jobs", "--json", "--limit", "1")))
    ] == [second]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_scheduler_stops_on_a_signal(home: Settings, signum: int) -> None:
    shipyard(home, "batch", "schedule", "add", "nightly", "--cron", "0 2 * * *", "--", *RUN)
    env = {**os.environ, "SHIPYARD_HOME": str(home.home_dir)}
    with subprocess.Popen(
        [sys.executable, "-m", "shipyard", "scheduler"], stdout=subprocess.PIPE, text=True, env=env
    ) as scheduler:
        assert scheduler.stdout is not None
        opening = scheduler.stdout.readline()  # said once its signal handlers are set
        assert opening.startswith("scheduler: 1 schedule, the next at ")
        scheduler.send_signal(signum)
        out, _ = scheduler.communicate(timeout=60)
    assert scheduler.returncode == 0 and out.splitlines() == ["scheduler: stopped"]


def test_the_airflow_example_compiles(tmp_path: Path) -> None:
    source = ROOT / "examples" / "airflow" / "batch_dag.py"
    py_compile.compile(str(source), cfile=str(tmp_path / "dag.pyc"), doraise=True)
    assert "shipyard batch run digits:production " in source.read_text()

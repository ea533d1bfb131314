"""`shipyard batch schedule ...`, `shipyard batch jobs` and `shipyard scheduler`: batch jobs run by cron
(shipyard/batch/schedule.py) and the record of every batch job (shipyard/batch/history.py)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.table import Table

from shipyard.cli.common import console, get_state, when
from shipyard.cli.help import Group
from shipyard.errors import InvalidInput
from shipyard.registry import JobRecord, parse_ref

app = typer.Typer(cls=Group, help="Batch jobs run by cron: add, list, remove.", no_args_is_help=True)

NAME = typer.Argument(..., metavar="NAME", help="The schedule's name.")
REFUSED = ("--schedule", "--dry-run", "--help")
"""`batch run` options a schedule's arguments may not hold (the scheduler adds --schedule)."""


@app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="NAME", help="A name to list and remove it by: letters, digits, ., - and _."
    ),
    cron: str = typer.Option(
        ...,
        "--cron",
        metavar="CRON",
        help="When it runs, in local time: minute hour day month weekday ('0 2 * * *': 2 a.m. daily), "
        "or @hourly, @daily, @weekly, @monthly.",
    ),
    args: list[str] = typer.Argument(
        ...,
        metavar="RUN_ARGS",
        help="After --, the arguments of `batch run`, the model first: digits:production --input ... "
        "--output scored/{date}. {date}, {time} and {datetime} stand for the run's.",
    ),
) -> None:
    """Run `batch run` with these arguments at the times cron names (checked now, not at 2 a.m.)."""
    from shipyard.batch.schedule import check_placeholders, next_run

    registry = get_state(ctx).registry
    check_placeholders(args)
    params = _parsed(args)
    if args[0] != params["ref"]:
        raise InvalidInput(f"put the model first: -- {params['ref']} --input ... --output ...")
    registry.version(*parse_ref(params["ref"]))  # a typo in the name fails now
    record = registry.add_schedule(name, cron, args, folder=Path.cwd())
    console.print(f"added schedule {record.name} ({record.cron}, next at {when(next_run(record))}):")
    console.print(f"  shipyard batch run {' '.join(args)}")
    if "{" not in str(params["output"]):
        console.print(
            f"note: every run writes to {params['output']}, and a run finding a finished job's output "
            "there does nothing: --output scored/{date} gives each day its own folder"
        )
    console.print("`shipyard scheduler` runs it (one must be running)")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """The schedules: when each runs next, and how its last job went."""
    from shipyard.batch.schedule import next_run

    registry = get_state(ctx).registry
    schedules = registry.schedules()
    if not schedules:
        console.print(
            "no schedules yet: shipyard batch schedule add NAME --cron '0 2 * * *' -- "
            "NAME[:VERSION] --input ... --output ..."
        )
        return
    table = Table("name", "cron", "next run", "last job")
    for s in schedules:
        last = registry.jobs(s.name, limit=1)
        upcoming = next_run(s)
        due = " (due)" if upcoming <= datetime.now(UTC) else ""  # no scheduler has fired it
        table.add_row(s.name, s.cron, when(upcoming) + due, _last(last[0]) if last else "-")
    console.print(table)
    for s in schedules:  # below the table: arguments are long, and copied whole
        console.print(f"{s.name}: shipyard batch run {' '.join(s.args)}")


@app.command("remove")
def remove(ctx: typer.Context, name: str = NAME) -> None:
    """Remove a schedule: it runs no more (a job of it that is running goes on)."""
    record = get_state(ctx).registry.remove_schedule(name)
    console.print(f"removed schedule {record.name}")


def jobs(
    ctx: typer.Context,
    schedule: str | None = typer.Option(
        None, "--schedule", metavar="NAME", show_default="every job", help="Only the jobs of this schedule."
    ),
    limit: int = typer.Option(20, "--limit", metavar="N", help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The latest batch jobs, by hand or scheduled: version, rows, errors and how each ended."""
    found = get_state(ctx).registry.jobs(schedule, limit=limit)
    if as_json:
        doc = orjson.dumps([j.to_dict() for j in found], option=orjson.OPT_INDENT_2)
        sys.stdout.write(doc.decode() + "\n")
        return
    if not found:
        console.print("no batch jobs yet" + (f" of schedule {schedule}" if schedule else ""))
        return
    table = Table("id", "schedule", "ref", "version", "outcome", "started", "seconds", "rows", "errors")
    table.add_column("output")
    for j in found:
        table.add_row(
            str(j.id), j.schedule or "-", j.ref, _or_dash(j.version), j.outcome, when(j.started_at),
            "-" if j.seconds is None else f"{j.seconds:.1f}", _or_dash(j.rows, ","), _or_dash(j.errors, ","),
            j.output or "-",
        )  # fmt: skip
    console.print(table)
    for j in found:
        if j.message and j.outcome != "succeeded":
            console.print(f"job {j.id} {j.outcome}: {j.message}")


def scheduler(ctx: typer.Context) -> None:
    """Run the batch schedules' jobs at their times, a process each, until Ctrl-C.

    A line for each job started, skipped (its schedule's last job still running) and ended. Ctrl-C or
    SIGTERM: no new jobs; the running ones are waited for (again: they are interrupted, and a rerun
    goes on where each stopped).
    """
    from shipyard.batch.schedule import Scheduler

    state = get_state(ctx)
    Scheduler(state.registry, state.settings).run_forever(say=lambda line: console.print(line))
    console.print("scheduler: stopped")


def _parsed(args: list[str]) -> dict[str, Any]:
    """`args` read as `batch run` reads them: a typo fails here, in one line."""
    from shipyard.cli.batch import run

    refused = [a for a in args if a.split("=")[0] in REFUSED]
    if refused:
        raise InvalidInput(
            f"{refused[0]} has no place in a schedule's arguments (the scheduler adds --schedule)"
        )
    alone = typer.Typer(cls=Group)
    alone.command("run")(run)  # a Typer of one command is that command
    command = typer.main.get_command(alone)
    try:
        with command.make_context("shipyard batch run", list(args)) as parsed:
            return dict(parsed.params)
    except typer.TyperException as exc:
        raise InvalidInput(f"bad `batch run` arguments: {exc.format_message()}") from None


def _last(job: JobRecord) -> str:
    return f"{job.outcome} ({when(job.started_at)}, job {job.id})"


def _or_dash(value: int | None, form: str = "") -> str:
    return "-" if value is None else format(value, form)

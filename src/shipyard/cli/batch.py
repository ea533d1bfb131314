"""`shipyard batch run`: a registered version over files, part by part, resumable (shipyard/batch/)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from shipyard.cli.common import console, get_state
from shipyard.cli.help import Group

if TYPE_CHECKING:
    from rich.progress import Progress as Bar

    from shipyard.batch.sources import Part

app = typer.Typer(cls=Group, help="Batch inference over files.", no_args_is_help=True)


@app.command("run")
def run(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[:VERSION]", help="The version (or alias) to run."),
    inputs: str = typer.Option(
        ...,
        "--input",
        metavar="PATH",
        help="A file, a folder or a glob: Parquet, CSV, JSONL, Avro, .npy, .npz or images.",
    ),
    output: Path = typer.Option(..., "--output", metavar="DIR", help="The folder of the output's parts."),
    output_format: str = typer.Option("parquet", "--format", metavar="FORMAT", help="parquet, csv or jsonl."),
    columns: list[str] | None = typer.Option(
        None,
        "--columns",
        metavar="NAMES",
        show_default="the numeric, list or image columns, in order",
        help="The columns of a model input, comma-separated; once per input, in input order.",
    ),
    keep: str = typer.Option(
        "",
        "--keep",
        metavar="NAMES",
        show_default="path, for images",
        help="Input columns copied to the output.",
    ),
    outputs: str = typer.Option(
        "class",
        "--outputs",
        metavar="KIND",
        help="class (class and confidence) or raw (the model's outputs).",
    ),
    top_k: int = typer.Option(0, "--top-k", metavar="K", help="Add the K likeliest classes and confidences."),
    part_rows: int = typer.Option(
        0, "--part-rows", metavar="N", show_default="about 8 MB of input", help="Rows per output part."
    ),
    max_errors: float = typer.Option(
        0, "--max-errors", metavar="NUMBER", help="Rows that may fail: a count, or a fraction below 1."
    ),
    threads: int = typer.Option(
        0,
        "--threads",
        metavar="N",
        help="Cores: model runs at once, one ONNX Runtime thread each (with ray: each actor's threads); "
        "0: every core (with ray: 1).",
    ),
    engine: str = typer.Option("local", "--engine", metavar="ENGINE", help="local, or ray (Ray Data)."),
    address: str | None = typer.Option(
        None,
        "--address",
        metavar="ADDRESS",
        show_default="a local Ray",
        help="The Ray cluster, with --engine ray.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Check the columns on the first rows and say what would run; write nothing."
    ),
    schedule: str | None = typer.Option(
        None, "--schedule", metavar="NAME", hidden=True, help="The schedule that started it."
    ),
) -> None:
    """Run a version over files: predictions written part by part; a rerun goes on where one stopped."""
    from shipyard.batch import Job, Predictions, plan
    from shipyard.batch.history import run_recorded

    job = Job(
        ref,
        inputs,
        output,
        output_format,
        tuple(tuple(c for c in group.split(",") if c) for group in columns) if columns else None,
        tuple(k for k in keep.split(",") if k),
        Predictions(outputs, top_k),
        part_rows,
        max_errors=max_errors,
        threads=threads,
        engine=engine,
        address=address,
    )
    registry = get_state(ctx).registry
    if dry_run:
        planned = plan(registry, job)
        for line in planned.lines():
            console.print(line)
        console.print(f"first {planned.preview.num_rows} rows:")
        for row in planned.preview.to_pylist():
            console.print(f"  {row}")
        return
    with _Progress() as progress:
        summary = run_recorded(registry, job, progress, schedule)
    resumed = f", {summary.resumed_parts} parts from an earlier run" if summary.resumed_parts else ""
    console.print(
        f"{summary.model}:{summary.version}: {summary.rows:,} rows, {summary.errors:,} errors, "
        f"{summary.seconds:.1f} s ({summary.rows_per_s:,.0f} rows/s), {summary.parts} parts "
        f"in {summary.output}{resumed}"
    )


class _Progress:
    """A bar with rows/s and the time left on a terminal; a line per part otherwise (logs, CI)."""

    def __init__(self) -> None:
        self._bar: Bar | None = None
        self._task: object = None
        self._since, self._done = time.monotonic(), 0

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def started(self, total: int | None, done: int) -> None:
        if not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.completed:,.0f} rows"),
            BarColumn(),
            TextColumn("{task.fields[speed]}"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._bar.add_task("batch", total=total, completed=done, speed="")
        self._since, self._done = time.monotonic(), done
        self._bar.start()

    def committed(self, part: Part, rows: int) -> None:
        if self._bar is None:
            print(f"part {part.number}: {rows:,} rows done", file=sys.stderr)
        else:
            elapsed = time.monotonic() - self._since
            shown = f"{(rows - self._done) / elapsed:,.0f} rows/s" if elapsed > 0 else ""
            self._bar.update(self._task, completed=rows, speed=shown)  # type: ignore[arg-type]


# `batch schedule ...` and `batch jobs` (cli/schedule.py, which reads a schedule's arguments with `run`)
from shipyard.cli import schedule as _schedule  # noqa: E402

app.add_typer(_schedule.app, name="schedule")
app.command("jobs")(_schedule.jobs)

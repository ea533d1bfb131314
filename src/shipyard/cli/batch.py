"""`shipyard batch run`: a registered version over files, part by part, resumable (shipyard/batch/)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from shipyard.cli.common import console, get_state
from shipyard.cli.help import Group

app = typer.Typer(cls=Group, help="Batch inference over files.", no_args_is_help=True)


@app.command("run")
def run(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[:VERSION]", help="The version (or alias) to run."),
    inputs: str = typer.Option(
        ..., "--input", metavar="PATH", help="A file, a folder or a glob: Parquet, CSV, JSONL, .npy or .npz."
    ),
    output: Path = typer.Option(..., "--output", metavar="DIR", help="The folder of the output's parts."),
    output_format: str = typer.Option("parquet", "--format", metavar="FORMAT", help="parquet, csv or jsonl."),
    columns: str | None = typer.Option(
        None,
        "--columns",
        metavar="NAMES",
        show_default="every numeric column",
        help="The feature columns, in order.",
    ),
    keep: str = typer.Option("", "--keep", metavar="NAMES", help="Input columns copied to the output (ids)."),
    raw: bool = typer.Option(
        False, "--raw", help="Write the model's outputs instead of class and confidence."
    ),
    part_rows: int = typer.Option(100_000, "--part-rows", metavar="N", help="Rows per output part."),
    max_errors: float = typer.Option(
        0, "--max-errors", metavar="NUMBER", help="Rows that may fail: a count, or a fraction below 1."
    ),
    threads: int = typer.Option(0, "--threads", metavar="N", help="ONNX Runtime threads; 0: every core."),
) -> None:
    """Run a version over files: predictions written part by part; a rerun goes on where one stopped."""
    from shipyard.batch import Job
    from shipyard.batch import run as run_job

    job = Job(
        ref,
        inputs,
        output,
        output_format,
        tuple(c for c in columns.split(",") if c) if columns else None,
        tuple(k for k in keep.split(",") if k),
        raw,
        part_rows,
        max_errors=max_errors,
        threads=threads,
    )
    terminal = sys.stderr.isatty()

    def progress(part: object, rows: int) -> None:
        if not terminal:
            number = getattr(part, "number", 0)
            print(f"part {number}: {rows:,} rows done", file=sys.stderr)

    summary = run_job(get_state(ctx).registry, job, progress)
    resumed = f", {summary.resumed_parts} parts from an earlier run" if summary.resumed_parts else ""
    console.print(
        f"{summary.model}:{summary.version}: {summary.rows:,} rows, {summary.errors:,} errors, "
        f"{summary.seconds:.1f} s ({summary.rows_per_s:,.0f} rows/s), {summary.parts} parts "
        f"in {summary.output}{resumed}"
    )

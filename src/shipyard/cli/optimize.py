"""`shipyard optimize` and `shipyard model compare`: make a smaller or faster candidate, measure it
against its parent, and register it only when the gate passes; or measure any two versions."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from shipyard.cli.common import console, get_state
from shipyard.ratios import times

if TYPE_CHECKING:
    from shipyard.optimize import Report, Timing

EVAL = typer.Option(
    ...,
    "--eval",
    metavar="PATH",
    help="Evaluation data: .npz (X, y), CSV or Parquet with a label column, or a folder of class folders.",
)
METRIC = typer.Option(
    "accuracy", "--metric", metavar="METRIC", help="What is compared: accuracy, top-5 or mse."
)
LABEL_COLUMN = typer.Option(
    None,
    "--label-column",
    metavar="COLUMN",
    show_default="label, y, target or class",
    help="The label column of a CSV or Parquet file.",
)
THREADS = typer.Option(
    0, "--threads", metavar="N", help="ONNX Runtime threads for each model while measuring; 0: one per core."
)
LATENCY_RUNS = typer.Option(
    400, "--latency-runs", metavar="N", help="Batch-1 runs per model for the latency percentiles."
)
THROUGHPUT_BATCHES = typer.Option(
    40, "--throughput-batches", metavar="N", help="Batches of 32 per model for samples/s."
)
AS_JSON = typer.Option(False, "--json", help="Print the report as JSON instead of a table.")


def optimize(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., metavar="NAME[:VERSION]", help="The version to optimize (NAME alone: its default version)."
    ),
    method: str = typer.Option(
        ...,
        "--method",
        "-m",
        metavar="METHOD",
        help="How: dynamic-int8, static-int8, fp16, prune or distill.",
    ),
    eval_path: Path = EVAL,
    max_drop: float = typer.Option(
        0.01,
        "--max-accuracy-drop",
        metavar="NUMBER",
        help="Largest metric drop the gate accepts (0.01: one point of accuracy).",
    ),
    metric: str = METRIC,
    calibration: Path | None = typer.Option(
        None,
        metavar="PATH",
        show_default="a sample of --eval",
        help="static-int8: the inputs activation ranges are calibrated on.",
    ),
    calibration_rows: int = typer.Option(
        256, metavar="N", help="static-int8: rows of calibration data used."
    ),
    reduce_range: bool = typer.Option(
        True, "--reduce-range/--full-range", help="int8: 7-bit weights, safe on CPUs without VNNI."
    ),
    sparsity: float = typer.Option(
        0.5, metavar="FRACTION", help="prune: fraction of each weight matrix set to zero."
    ),
    torch_model: Path | None = typer.Option(
        None, metavar="FILE", help="prune: the version's TorchScript source, to fine-tune after pruning."
    ),
    train: Path | None = typer.Option(
        None, metavar="PATH", help="prune (to fine-tune) and distill: training data, as --eval takes."
    ),
    student: Path | None = typer.Option(
        None,
        metavar="FILE",
        show_default="the teacher at --width",
        help="distill: a TorchScript student to train.",
    ),
    width: float = typer.Option(
        0.25, metavar="FRACTION", help="distill: the student's hidden widths as a fraction of the teacher's."
    ),
    epochs: int | None = typer.Option(
        None,
        metavar="N",
        show_default="60 to distill, 5 to fine-tune",
        help="distill and prune's fine-tuning: training epochs.",
    ),
    temperature: float = typer.Option(
        4.0, metavar="NUMBER", help="distill: softmax temperature of the soft labels."
    ),
    learning_rate: float | None = typer.Option(
        None, metavar="NUMBER", show_default="0.003", help="distill and fine-tune: Adam's learning rate."
    ),
    label_column: str | None = LABEL_COLUMN,
    threads: int = THREADS,
    latency_runs: int = LATENCY_RUNS,
    throughput_batches: int = THROUGHPUT_BATCHES,
    force: bool = typer.Option(False, "--force", help="Register even when the gate fails (marked failing)."),
    description: str = typer.Option("", metavar="TEXT", help="Free text stored with the new version."),
    as_json: bool = AS_JSON,
) -> None:
    """Optimize a version, measure it against its parent, and register it if the metric holds."""
    from shipyard.optimize import Options, optimize

    options = Options(
        sparsity=sparsity,
        calibration=calibration,
        calibration_rows=calibration_rows,
        reduce_range=reduce_range,
        train=train,
        torch_model=torch_model,
        student=student,
        width=width,
        epochs=epochs,
        temperature=temperature,
        learning_rate=learning_rate,
        label_column=label_column,
    )
    with progress() as bars:
        outcome = optimize(
            get_state(ctx).registry,
            ref,
            method,
            eval_path,
            max_drop=max_drop,
            metric=metric,
            options=options,
            timing=timing(threads, latency_runs, throughput_batches),
            force=force,
            description=description,
            progress=bars,
        )
    verdict, record = outcome.verdict, outcome.record
    message = verdict.message(outcome.report.parent.ref)
    if as_json:
        version = record.ref if record else None
        write_json({"version": version, "gate": verdict.to_dict(), "report": outcome.report.to_dict()})
    else:
        console.print(report_table(outcome.report))
    if record is None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)
    if not as_json:
        console.print(f"{message}\nregistered {record.ref} ({record.description})")


def compare(
    ctx: typer.Context,
    first: str = typer.Argument(..., metavar="NAME[:VERSION]", help="The version measured as the reference."),
    second: str = typer.Argument(..., metavar="NAME[:VERSION]", help="The version measured against it."),
    eval_path: Path = EVAL,
    metric: str = METRIC,
    label_column: str | None = LABEL_COLUMN,
    threads: int = THREADS,
    latency_runs: int = LATENCY_RUNS,
    throughput_batches: int = THROUGHPUT_BATCHES,
    as_json: bool = AS_JSON,
) -> None:
    """Measure two versions side by side on the same data: size, speed, metric, output difference.

    When one version's scores are logits and the other's probabilities, the logits go through
    softmax first, so that the difference compares probabilities with probabilities.
    """
    from shipyard.optimize import compare

    with progress() as bars:
        report = compare(
            get_state(ctx).registry,
            first,
            second,
            eval_path,
            metric=metric,
            label_column=label_column,
            timing=timing(threads, latency_runs, throughput_batches),
            progress=bars,
        )
    if as_json:
        write_json({"report": report.to_dict()})
    else:
        console.print(report_table(report))


def report_table(report: Report) -> RenderableType:
    """Parent, candidate and the change between them, one measured figure per row; below, what the
    output difference compares when the two give their scores in different kinds."""
    p, c = report.parent, report.candidate
    table = Table("", p.ref, c.ref, "change", title=_title(report), title_justify="left")
    for column in table.columns[1:]:
        column.justify = "right"
    table.add_row(
        "file size",
        _bytes(p.contents.size_bytes),
        _bytes(c.contents.size_bytes),
        times(report.size_ratio, "smaller", "larger", "same size"),
    )
    table.add_row(
        "parameters",
        f"{p.contents.parameters:,}",
        f"{c.contents.parameters:,}",
        _ratio(c.contents.parameters, p.contents.parameters),
    )
    table.add_row("sparsity", f"{p.contents.sparsity:.1%}", f"{c.contents.sparsity:.1%}", "")
    table.add_row(
        "latency p50, batch 1",
        _ms(p.speed.p50_ms),
        _ms(c.speed.p50_ms),
        times(report.latency_speedup, "faster", "slower", "same speed"),
    )
    table.add_row(
        "latency p99, batch 1",
        _ms(p.speed.p99_ms),
        _ms(c.speed.p99_ms),
        times(p.speed.p99_ms / c.speed.p99_ms, "faster", "slower", "same speed"),
    )
    table.add_row(
        f"samples/s, batch {report.batch}",
        f"{p.speed.samples_per_s:,.0f}",
        f"{c.speed.samples_per_s:,.0f}",
        times(report.throughput_speedup, "faster", "slower", "same speed"),
    )
    table.add_row(report.metric, f"{p.metric:.4f}", f"{c.metric:.4f}", f"{c.metric - p.metric:+.4f}")
    table.add_row(
        f"|{'probabilities' if report.softmax_applied_to else report.output} diff| max / mean",
        "",
        f"{report.max_abs_diff:.3g} / {report.mean_abs_diff:.3g}",
        "",
    )
    note = _softmax_note(report)
    return Group(table, Text(note)) if note else table


def describe_lineage(lineage: dict[str, Any]) -> str:
    """One line for `model show`: method, parent, options and the gate's verdict (a pipeline: its
    steps)."""
    if lineage.get("method") == "pipeline":
        steps = ", ".join(f"{s.get('model')}:{s.get('version')}" for s in lineage.get("steps") or ())
        return f"pipeline of {steps}"
    gate = lineage.get("gate") or {}
    options = ", ".join(f"{k}={v}" for k, v in (lineage.get("options") or {}).items() if v is not None)
    verdict = (
        f"gate {gate.get('status', '?')}: {gate.get('metric')} drop {gate.get('drop', 0):.4g} "
        f"(bound {gate.get('max_drop')})"
        + (", forced" if gate.get("forced") and not gate.get("passed") else "")
    )
    return (
        f"{lineage.get('method')} of {lineage.get('parent')}"
        + (f" ({options})" if options else "")
        + f"; {verdict}"
    )


def describe_report(report: dict[str, Any]) -> str:
    change = report.get("change") or {}
    parent, candidate = report.get("parent") or {}, report.get("candidate") or {}
    return (
        f"{times(change.get('size_ratio', 1.0), 'smaller', 'larger', 'same size')}, "
        f"{times(change.get('throughput_speedup', 1.0), 'faster', 'slower', 'same speed')} at batch "
        f"{report.get('batch', 32)}, "
        f"{report.get('metric')} {parent.get('metric', 0):.4f} -> {candidate.get('metric', 0):.4f} "
        f"on {(report.get('data') or {}).get('name')}"
    )


def _softmax_note(report: Report) -> str | None:
    logits = report.softmax_applied_to
    if logits is None:
        return None
    other = report.candidate.ref if logits == report.parent.ref else report.parent.ref
    return (
        f"{logits} gives logits and {other} probabilities: the output difference compares "
        f"probabilities, softmax applied to {logits}'s logits"
    )


def _title(report: Report) -> str:
    return (
        f"{report.data.name}: {report.rows:,} rows, {report.metric}; "
        f"ONNX Runtime, {report.threads} thread{'s' if report.threads != 1 else ''}"
    )


def _bytes(size: int) -> str:
    return f"{size / 1024:,.1f} KiB" if size < 1 << 20 else f"{size / (1 << 20):,.2f} MiB"


def _ms(value: float) -> str:
    return f"{value:.3f} ms"


def _ratio(new: int, old: int) -> str:
    return f"{new / old:.2f}x" if old else ""


def timing(threads: int, latency_runs: int, throughput_batches: int) -> Timing:
    from shipyard.errors import InvalidInput
    from shipyard.optimize import Timing

    if threads < 0 or latency_runs < 1 or throughput_batches < 1:
        raise InvalidInput("--threads must be 0 or more, --latency-runs and --throughput-batches 1 or more")
    return Timing(latency_runs=latency_runs, throughput_batches=throughput_batches, threads=threads)


def write_json(doc: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


@contextmanager
def progress() -> Iterator[Any]:
    """A bar per stage on stderr (stdout stays clean for --json), gone when the work is done."""
    bars = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    with bars:
        yield update

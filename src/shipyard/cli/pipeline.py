"""`shipyard pipeline ...`: models run one after another, registered and versioned as one model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from shipyard.cli.common import console, get_state, refs, when
from shipyard.cli.help import Group
from shipyard.registry import VersionRecord, parse_ref

app = typer.Typer(cls=Group, help="Chain models into one, versioned like a model.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="NAME", help="The pipeline: a new model, or the next version of this one."
    ),
    steps: str = typer.Option(
        ...,
        "--steps",
        metavar="REFS",
        help="Registered versions to run in order, comma-separated, each NAME, NAME:3 or NAME:alias: "
        "e.g. scaler:1,classifier:production.",
    ),
    labels: Path | None = typer.Option(
        None,
        metavar="FILE",
        show_default="the last step's",
        help="Class labels, one per line or a JSON list: /predict answers with them.",
    ),
    description: str = typer.Option("", metavar="TEXT", help="Free text stored with the version."),
    dataset: Path | None = typer.Option(
        None,
        metavar="FILE",
        help="Data for the first step: recorded by name, size and sha256; the rows of an .npz, .npy or "
        ".csv feed the check.",
    ),
    tolerance: float = typer.Option(
        1e-4,
        metavar="NUMBER",
        help="Largest difference the check accepts between the merged graph and the steps run apart.",
    ),
) -> None:
    """Merge registered versions into one ONNX graph, check it, and register it as a version of NAME."""
    from shipyard import pipelines
    from shipyard.importing import read_labels

    st = get_state(ctx)
    before = refs(st.registry, name)
    with console.status(f"merging {steps}..."):
        record = pipelines.create(
            name,
            steps.split(","),
            registry=st.registry,
            labels=read_labels(labels) if labels else None,
            description=description,
            dataset=dataset,
            tolerance=tolerance,
        )
    if record.ref in before:
        console.print(
            f"{record.ref} already holds these steps (sha256 {record.sha256[:12]}, same labels): "
            "nothing new registered"
        )
        return
    made_of = ", ".join(f"{step['model']}:{step['version']}" for step in pipelines.steps_of(record))
    diff = record.check.get("max_abs_diff")
    checked = f"max |diff| {diff:.2e}" if diff is not None else record.check.get("source", "checked")
    console.print(
        f"created {record.ref} from {made_of} "
        f"({record.size / 1024:.1f} KiB, sha256 {record.sha256[:12]}, check passed: {checked})"
    )


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ...,
        metavar="NAME[:VERSION]",
        help="A pipeline version: NAME (its default version), NAME:3, NAME:production or NAME:latest.",
    ),
) -> None:
    """A pipeline version's steps: each one's version and sha256, and what joins it to the step before."""
    from shipyard import pipelines

    name, version = parse_ref(ref)
    record = get_state(ctx).registry.version(name, version)
    _print_steps(record, pipelines.steps_of(record))


def _print_steps(record: VersionRecord, steps: list[dict[str, Any]]) -> None:
    """Plain lines, not a table: sha256s are long, and a table would wrap them."""
    aliases = f"  ({', '.join(record.aliases)})" if record.aliases else ""
    console.print(f"{record.ref}{aliases}  created {when(record.created_at)}")
    refs = [f"{step.get('model')}:{step.get('version')}" for step in steps]
    width = max(len(ref) for ref in refs) if refs else 0
    for i, (ref, step) in enumerate(zip(refs, steps, strict=True), start=1):
        asked = step.get("asked")
        note = f"  (asked as {asked})" if asked and asked != ref else ""
        console.print(
            f"  step {i}  {ref:<{width}}  sha256 {step.get('sha256')}  {step.get('framework')}{note}"
        )
        for link in step.get("links") or []:
            adapters = ", ".join(link.get("adapters") or [])
            console.print(
                f"          {link.get('output')} -> {link.get('input')}"
                + (f" ({adapters})" if adapters else "")
            )
    check = record.check
    diff = check.get("max_abs_diff")
    console.print(
        f"  check   {'passed' if check.get('passed') else 'FAILED'} on {check.get('samples')} samples "
        f"({check.get('source')})"
        + (f", max |diff| {diff:.2e} <= {check.get('tolerance')}" if diff is not None else "")
    )
    console.print(f"  graph   sha256 {record.sha256}  {record.size:,} bytes")

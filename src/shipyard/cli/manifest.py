"""What `model import` and `model show` print of a version: its manifest, as a person reads it."""

from __future__ import annotations

from rich.table import Table

from shipyard.cli import optimize as optimizing
from shipyard.cli.common import console, when
from shipyard.processing import post, recipe_of
from shipyard.registry import VersionRecord


def print_imported(record: VersionRecord) -> None:
    check = record.check
    diff = check.get("max_abs_diff")
    checked = f"max |diff| {diff:.2e}" if diff is not None else check.get("source", "checked")
    pictures = (record.signature.preprocess or {}).get("check") or {}
    if pictures.get("max_abs_diff") is not None:
        checked += (
            f"; the image recipe's graph on {pictures['pictures']} pictures: {pictures['max_abs_diff']:.2e}"
        )
    console.print(
        f"imported {record.ref} from {record.framework} "
        f"({record.size / 1024:.1f} KiB, sha256 {record.sha256[:12]}, check passed: {checked})"
    )


def print_version(r: VersionRecord) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model", f"{r.model}:{r.number}" + (f"  ({', '.join(r.aliases)})" if r.aliases else ""))
    table.add_row("created", when(r.created_at))
    table.add_row("framework", r.framework)
    table.add_row("artifact", f"sha256 {r.sha256}  {r.size:,} bytes")
    for spec in r.signature.inputs:
        table.add_row("input", f"{spec.name}  {spec.datatype}  {list(spec.shape)}")
    for spec in r.signature.outputs:
        table.add_row("output", f"{spec.name}  {spec.datatype}  {list(spec.shape)}")
    if r.signature.features:
        shown = ", ".join(r.signature.features[:12]) + (", ..." if len(r.signature.features) > 12 else "")
        table.add_row("features", f"{shown}  ({len(r.signature.features)})")
    recipe = recipe_of(r.signature)
    if recipe is not None:
        table.add_row("preprocess", f"{recipe.describe()}  (pixels uint8 {list(recipe.pixels_shape)})")
        checked = (r.signature.preprocess or {}).get("check") or {}
        if checked:
            diff = checked.get("max_abs_diff")
            shown_diff = f"max |diff| {diff:.2e}" if isinstance(diff, float) else "passed"
            table.add_row(
                "", f"its graph checked on {checked.get('pictures')} pictures against numpy: {shown_diff}"
            )
    reading = post.describe(r.signature)
    if reading is not None:
        table.add_row("postprocess", reading)
    if r.labels:
        shown = ", ".join(r.labels[:12]) + (", ..." if len(r.labels) > 12 else "")
        table.add_row("labels", f"{shown}  ({len(r.labels)})")
    check = r.check
    diff = check.get("max_abs_diff")
    table.add_row(
        "check",
        f"{'passed' if check.get('passed') else 'FAILED'} on {check.get('samples')} samples "
        f"({check.get('source')})"
        + (f", max |diff| {diff:.2e} <= {check.get('tolerance')}" if diff is not None else ""),
    )
    if r.dataset:
        table.add_row("dataset", f"{r.dataset.name}  {r.dataset.size:,} bytes")
        table.add_row("", f"sha256 {r.dataset.sha256}")
    if r.description:
        table.add_row("description", r.description)
    if r.lineage:
        table.add_row("lineage", optimizing.describe_lineage(r.lineage))
    if r.report:
        table.add_row("report", optimizing.describe_report(r.report))
    console.print(table)

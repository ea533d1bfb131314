"""`shipyard export`: a registered version for the edge (a phone, a browser, a small device)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from shipyard.cli.common import console, get_state
from shipyard.cli.rollout import REASON


def export(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., metavar="NAME[:VERSION]", help="The version: NAME (its default), NAME:3, NAME:production."
    ),
    target: Literal["ort-mobile", "web", "tflite"] = typer.Option(
        ...,
        "--target",
        metavar="TARGET",
        help="ort-mobile (an .ort file and the operator config of a reduced ONNX Runtime build), web (a "
        "static page running onnxruntime-web) or tflite (TensorFlow Lite / LiteRT).",
    ),
    out: Path = typer.Option(
        ..., "--out", metavar="DIR", help="The folder to write (new, or an earlier export)."
    ),
    int8: bool = typer.Option(
        False, "--int8", help="int8 weights (ort-mobile): smaller, checked like the rest."
    ),
    tolerance: float = typer.Option(
        1e-4, metavar="NUMBER", help="Largest |server - export| output difference the check accepts."
    ),
    force: bool = typer.Option(
        False, "--force", help="Export a version whose gate failed; the manifest says so."
    ),
    reason: str = REASON,
) -> None:
    """Export a version in a target's format, checked on the target's own runtime against the server.

    The export is refused when its outputs differ from the server's past the tolerance, and when the
    version failed a gate (its optimize gate, `shipyard gate`, or a rollout that rolled it back) unless
    --force. The folder holds a manifest (model, version, sha256, the check); the history records it."""
    from shipyard.edge import Options
    from shipyard.edge import export as run_export

    st = get_state(ctx)
    options = Options(int8=int8, tolerance=tolerance, force=force)
    with console.status(f"exporting {ref} for {target}..."):
        report = run_export(st.registry, ref, target, out, options, reason=reason)
    for line in report.lines():
        console.print(line, highlight=False)

"""`shipyard monitor`: a model's reference profile, its live status on a server, its prediction log."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.client import SERVER_ENV, call
from shipyard.cli.common import console, get_state
from shipyard.cli.help import Group
from shipyard.monitor.drifted import verdict
from shipyard.registry import parse_ref

app = typer.Typer(
    cls=Group,
    help="Watch models in production: drift, accuracy, latency, cost, the prediction log.",
    no_args_is_help=True,
)

SERVER = typer.Option(
    "http://127.0.0.1:8000", "--server", metavar="URL", envvar=SERVER_ENV, help="The running server to ask."
)
JSON_OUT = typer.Option(False, "--json", help="Print JSON instead of a table.")


@app.command("reference")
def reference(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., metavar="NAME[:VERSION]", help="The version (NAME alone: its default version)."
    ),
    path: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        metavar="FILE",
        help="Reference rows, e.g. training data: .npz, .csv or .parquet.",
    ),
) -> None:
    """Store the statistics live inputs of a version are compared with (drift)."""
    from shipyard.monitor.reference import profile_version

    name, version = parse_ref(ref)
    registry = get_state(ctx).registry
    record = registry.version(name, version)
    profile = profile_version(registry, record, path)
    registry.set_reference(name, record.number, profile, path.name)
    console.print(
        f"reference of {record.ref}: {profile['rows']} rows of {path.name}, "
        f"{len(profile['features'])} features"
    )


@app.command("status")
def status(
    name: str | None = typer.Argument(
        None, metavar="NAME", help="The model (none: every model the server serves)."
    ),
    server: str = SERVER,
    as_json: bool = JSON_OUT,
) -> None:
    """How each version is doing on a running server: traffic, errors, latency, drift, accuracy, cost.

    A server that asks for a token is given SHIPYARD_TOKEN's (else SHIPYARD_ADMIN_TOKEN's).
    """
    names = [name] if name else [m["name"] for m in call("GET", server, "/v1/models")["models"]]
    snapshots = [call("GET", server, f"/v1/models/{n}/monitor") for n in names]
    if as_json:
        for snap in snapshots:
            for v in snap["versions"]:
                v.pop("series", None)
        typer.echo(json.dumps(snapshots, indent=2))
        return
    table = Table(
        "model", "version", "state", "requests", "errors", "p50 / p99 ms", "drift", "accuracy", "$/1k"
    )
    for snap in snapshots:
        for v in snap["versions"]:
            lat = v["latency_ms"]
            table.add_row(
                snap["model"],
                f"{v['version']}{' *' if v['default'] else ''}",
                v["state"],
                f"{v['requests']:,}",
                f"{v['error_rate'] * 100:.1f}%",
                f"{_num(lat['p50'])} / {_num(lat['p99'])}",
                _drift(v["drift"]),
                "-"
                if v["accuracy"]["value"] is None
                else f"{v['accuracy']['value']:.3f} ({v['accuracy']['window']})",
                _dollars(v["cost"]["per_1k"]),
            )
    console.print(table)
    console.print("* the default version; error rate and latency over the last minute")


@app.command("log")
def log(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="The model."),
    since: str = typer.Option(
        "1h",
        metavar="DURATION",
        help="How far back: 30m, 1h, 2d, or an ISO time (2025-01-31T12:00:00Z; UTC without a zone).",
    ),
    limit: int = typer.Option(20, min=1, metavar="N", help="Most records shown (the newest)."),
    as_json: bool = JSON_OUT,
) -> None:
    """The logged predictions of a model (files written by the servers, read here)."""
    from shipyard.monitor.logread import read_predictions

    settings = get_state(ctx).settings
    table = read_predictions(settings.predictions_dir, name, since=since)
    rows = table.slice(max(0, table.num_rows - limit)).to_pylist()
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    out = Table("time", "id", "version", "class", "confidence", "ms", "status")
    for row in rows:
        out.add_row(
            row["time"].astimezone().strftime("%H:%M:%S.%f")[:-3],
            str(row["request_id"]),  # whole: it is what feedback names
            str(row["version"]),
            str(row["class"] or "-"),
            "-" if row["confidence"] is None else f"{row['confidence']:.3f}",
            f"{row['latency_ms']:.2f}",
            str(row["status"]),
        )
    console.print(out)
    console.print(f"{table.num_rows} records since {since}; showing the last {len(rows)}")


def _dollars(value: float | None) -> str:
    """Three significant digits, never in exponent form: 0.0000139, not 0.00001 or 1.39e-05."""
    if value is None:
        return "-"
    if value <= 0:
        return "0"
    return f"{value:.{max(2, 2 - math.floor(math.log10(value)))}f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _drift(report: dict[str, Any]) -> str:
    status = report.get("status")
    if status == "no-reference":
        return "no reference"
    if status == "warming-up":
        return f"warming up ({report['rows']} rows)"
    if status == "stopped":
        return "stopped"
    if report.get("flagged"):
        return escape(f"DRIFT {verdict(report)}")  # feature names such as x[ch0].mean are no markup
    return f"ok ({report['rows']} rows)"

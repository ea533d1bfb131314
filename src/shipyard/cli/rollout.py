"""`shipyard deploy` and `shipyard rollback`: move the production alias, with checks and a reason;
`shipyard gate`: judge a candidate against it offline (the `rollout` group is cli/rollouts.py).

Through the registry (the default), every server following it loads the new version, warms it up, then
switches (SHIPYARD_WATCH_INTERVAL_S, default 1 s). With `--server URL` (or SHIPYARD_SERVER set), one
running server does it first and answers only once it serves the new version, so a version that cannot
load moves nothing; the registry then carries the change to the other servers.
"""

from __future__ import annotations

from pathlib import Path

import typer

from shipyard.cli import optimize as measuring
from shipyard.cli.client import SERVER_ENV, TOKEN_ENVS, call
from shipyard.cli.common import console, get_state
from shipyard.errors import InvalidInput
from shipyard.registry import parse_ref
from shipyard.registry.store import PRODUCTION

SERVER = typer.Option(
    None,
    "--server",
    metavar="URL",
    envvar=SERVER_ENV,
    help="A running server (http://host:8000) to do it: it loads the version, switches, then answers. "
    "Without one, through the registry, which the servers follow.",
)
TOKEN = typer.Option(
    None, "--token", metavar="TOKEN", envvar=list(TOKEN_ENVS), help="An admin token of the --server."
)
REASON = typer.Option("", metavar="TEXT", help="Why; kept in the model's history.")


def deploy(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., metavar="NAME[:VERSION]", help="The version to deploy (NAME: the model's latest version)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Deploy even when its inputs differ from the production version's."
    ),
    reason: str = REASON,
    server: str | None = SERVER,
    token: str | None = TOKEN,
) -> None:
    """Make a version the production one (its inputs must match the current production's)."""
    name, version = parse_ref(ref)
    if server:
        number = None if version in (None, "latest") else _number(version)
        body = {"version": number, "force": force, "reason": reason}
        done = call("POST", server, f"/v2/repository/models/{name}/deploy", body, token)
        before, number = done["previous"], done["version"]
    else:
        registry = get_state(ctx).registry
        number = registry.version(name, version or "latest").number
        before = registry.deploy(name, number, force=force, reason=reason)
    was = f" (was {before})" if before is not None else ""
    console.print(f"deployed {name}:{number} to production{was}")


def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="The model."),
    reason: str = REASON,
    server: str | None = SERVER,
    token: str | None = TOKEN,
) -> None:
    """Put back the version that was production before the last change."""
    if ":" in name:
        raise InvalidInput("rollback takes a model NAME: it goes back to the previous production version")
    if server:
        done = call("POST", server, f"/v2/repository/models/{name}/rollback", {"reason": reason}, token)
        current, previous = done["previous"], done["version"]
    else:
        current, previous = get_state(ctx).registry.rollback(name, reason=reason)
    console.print(f"rolled {name} back from version {current} to {previous}")


def _number(version: str) -> int:
    if not version.isdigit():
        raise InvalidInput(f"with --server, deploy takes NAME:NUMBER or NAME, not {version!r}")
    return int(version)


def gate(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME:VERSION", help="The candidate."),
    against: str = typer.Option(
        PRODUCTION, "--against", metavar="VERSION", help="What it would replace: a version or an alias."
    ),
    eval_path: Path = measuring.EVAL,
    metric: str = measuring.METRIC,
    max_drop: float = typer.Option(
        0.01, "--max-accuracy-drop", metavar="NUMBER", help="Largest metric drop (0.01: a point)."
    ),
    max_latency_ratio: float = typer.Option(
        1.5, "--max-latency-ratio", metavar="NUMBER", help="Largest p99 latency, times the other's."
    ),
    max_size_ratio: float = typer.Option(
        2.0, "--max-size-ratio", metavar="NUMBER", help="Largest file size, as a multiple of the other's."
    ),
    latency_floor_ms: float = typer.Option(
        1.0,
        "--latency-floor-ms",
        metavar="MS",
        help="p99 latencies are compared as at least this (below it, stalls of the machine decide them).",
    ),
    label_column: str | None = measuring.LABEL_COLUMN,
    threads: int = measuring.THREADS,
    latency_runs: int = measuring.LATENCY_RUNS,
    throughput_batches: int = measuring.THROUGHPUT_BATCHES,
    reason: str = REASON,
    as_json: bool = measuring.AS_JSON,
) -> None:
    """Judge a candidate against production offline, before any traffic.

    Measured beside it on the same data, it passes when its metric drops no more than the margin and
    its latency and size stay within their ratios. The verdict goes into the history; a failing one
    exits with 1."""
    from shipyard.optimize import compare
    from shipyard.rollout.gate import Bounds, offline_gate

    bounds = Bounds(max_drop, max_latency_ratio, max_size_ratio, latency_floor_ms)
    name, version = parse_ref(ref)
    registry = get_state(ctx).registry
    candidate, current = registry.version(name, version), registry.version(name, against)
    if candidate.number == current.number:
        raise InvalidInput(f"{candidate.ref} is {against} already: give another version to judge")
    timing = measuring.timing(threads, latency_runs, throughput_batches)
    with measuring.progress() as bars:
        report = compare(
            registry,
            current.ref,
            candidate.ref,
            eval_path,
            metric=metric,
            label_column=label_column,
            timing=timing,
            progress=bars,
        )
    verdict = offline_gate(report, bounds)
    registry.record(
        name, "gate", candidate.number, reason, from_version=current.number, detail=verdict.summary
    )
    if as_json:
        measuring.write_json({"report": report.to_dict(), "verdict": verdict.to_dict()})
    else:
        console.print(measuring.report_table(report))
        for check in verdict.checks:
            console.print(f"  {check}")
        outcome = "passed" if verdict.passed else "failed"
        console.print(f"gate {outcome}: {candidate.ref} against {current.ref}")
    if not verdict.passed:
        raise typer.Exit(1)

"""`shipyard rollout ...`: take a candidate to production gradually. `split` shares the traffic by
hand; `start` hands it to the controller (rollout/controller.py), which steps through a plan on the
online gates' evidence and rolls back by itself; `status`, `pause`, `resume`, `promote` and `abort`
watch and steer it. Everything goes through the registry, so it works whether a server is running or
not, and every server on the registry follows within a second.
"""

from __future__ import annotations

from typing import Any

import orjson
import typer

from shipyard.cli.client import call
from shipyard.cli.common import console, get_state, when
from shipyard.cli.help import Group
from shipyard.cli.rollout import REASON, SERVER, TOKEN
from shipyard.errors import InvalidInput
from shipyard.registry import RolloutRecord
from shipyard.registry.store import PRODUCTION
from shipyard.rollout.gates import describe_variant
from shipyard.rollout.router import Split

app = typer.Typer(
    cls=Group, help="Take a candidate to production gradually, on evidence.", no_args_is_help=True
)
NAME = typer.Argument(..., metavar="NAME", help="The model.")
MARK = {"pass": "ok", "fail": "FAILED", "wait": "waiting", "skip": "-"}


@app.command("split")
def split(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="The model."),
    shares: list[str] = typer.Argument(
        None,
        metavar="SHARES",
        help="VERSION=PERCENT of the requests that name no version (2=20: 20% to version 2, the "
        "rest to the production version). None given: show the split.",
    ),
    end: bool = typer.Option(False, "--end", help="End the split: all traffic to the production version."),
    force: bool = typer.Option(
        False, "--force", help="Split even when a version's inputs differ from the production version's."
    ),
    reason: str = REASON,
    server: str | None = SERVER,
    token: str | None = TOKEN,
) -> None:
    """Share the traffic among versions; a request with X-Shipyard-Key always gets the same one."""
    if end and shares:
        raise InvalidInput("give VERSION=PERCENT shares or --end, not both")
    if not end and not shares:
        summary = get_state(ctx).registry.model(name)
        now = summary.splits.get(PRODUCTION)
        where = f"{name}: all traffic to version {summary.default_version}"
        console.print(f"{name}: traffic split {Split.from_dict(now)}" if now else where)
        return
    wanted = None if end else _shares(shares)
    if server:
        body = {"shares": wanted, "force": force, "reason": reason}
        done = call("POST", server, f"/v2/repository/models/{name}/split", body, token)
        after = None if done["split"] is None else Split.from_dict(done["split"])
    else:
        _, after = get_state(ctx).registry.set_split(name, wanted, force=force, reason=reason)
    ended = f"{name}: split ended, all traffic to production"
    console.print(f"{name}: traffic split {after}" if after else ended)


def _shares(texts: list[str]) -> dict[int, float]:
    """VERSION=PERCENT arguments ("2=20", "2=20%") as {2: 20.0}."""
    found: dict[int, float] = {}
    for text in texts:
        version, sep, share = text.partition("=")
        try:
            number, percent = int(version), float(share.strip().removesuffix("%"))
        except ValueError:
            number = percent = -1
        if not sep or number < 1 or not 0 <= percent <= 100:
            raise InvalidInput(f"{text!r} is not VERSION=PERCENT (e.g. 2=20)")
        if number in found:
            raise InvalidInput(f"version {number} is given twice")
        found[number] = percent
    return found


@app.command("shadow")
def shadow(
    ctx: typer.Context,
    name: str = NAME,
    version: int | None = typer.Argument(
        None, metavar="VERSION", help="The version to get a copy of the traffic. None given: show the shadow."
    ),
    end: bool = typer.Option(False, "--end", help="End the shadow."),
    force: bool = typer.Option(False, "--force", help="Even when its inputs differ from production's."),
    reason: str = REASON,
) -> None:
    """Give production a shadow: a version that gets a copy of its requests and answers no one."""
    registry = get_state(ctx).registry
    if end and version is not None:
        raise InvalidInput("give a VERSION or --end, not both")
    if not end and version is None:
        now = registry.model(name).shadows.get(PRODUCTION)
        console.print(f"{name}: " + ("no shadow" if now is None else f"version {now} shadows production"))
        return
    registry.set_shadow(name, version, force=force, reason=reason)
    console.print(
        f"{name}: " + ("shadow ended" if version is None else f"version {version} shadows production")
    )


@app.command("start")
def start(
    ctx: typer.Context,
    name: str = NAME,
    candidate: int = typer.Option(..., "--candidate", metavar="VERSION", help="The version to roll out."),
    plan: str = typer.Option(
        "5%:10m,25%:10m,50%:10m,100%",
        "--plan",
        metavar="PLAN",
        help="Steps, comma-separated: P%:DURATION (a share for a time, judged all along), pause (until "
        "resumed), 100% (promotion). Durations: 30s, 10m, 1h.",
    ),
    gate: list[str] = typer.Option(
        None,
        "--gate",
        metavar="SETTING",
        help="An online gate's setting as NAME=NUMBER, repeatable: max_error_increase (0.01), "
        "max_p99_ratio (1.5), max_confidence_shift (0.1), accuracy_margin (0.02), min_requests (100), "
        "min_labels (30).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Roll out even when its inputs differ from production's."
    ),
    reason: str = REASON,
) -> None:
    """Start rolling a candidate out: the controller of a running server takes it step by step."""
    from shipyard.rollout import commands

    settings = _gate_settings(gate or [])
    rollout = commands.start(
        get_state(ctx).registry, name, candidate, plan, settings, force=force, reason=reason
    )
    console.print(
        f"{name}: rolling out version {rollout.candidate} against {rollout.baseline}, plan {_plan(rollout)}"
    )


@app.command("status")
def status(
    ctx: typer.Context,
    name: str = NAME,
    as_json: bool = typer.Option(False, "--json", help="Print it as JSON."),
) -> None:
    """Where the model's latest rollout is: its plan, its step, the gates' last judgement, why it ended."""
    rollout = get_state(ctx).registry.rollout(name)
    if as_json:
        console.print_json(orjson.dumps(_doc(rollout)).decode())
        return
    _show(rollout)


def _steer(action: str, helped: str) -> Any:
    def command(
        ctx: typer.Context,
        name: str = NAME,
        reason: str = REASON,
        server: str | None = SERVER,
        token: str | None = TOKEN,
    ) -> None:
        if server:
            done = call(
                "POST", server, f"/v2/repository/models/{name}/rollout/{action}", {"reason": reason}, token
            )
            rollout_status = done["status"]
        else:
            from shipyard.rollout import commands

            rollout_status = getattr(commands, action)(get_state(ctx).registry, name, reason).status
        console.print(f"{name}: rollout {rollout_status}")

    command.__doc__ = helped
    command.__name__ = action
    return command


app.command("pause")(_steer("pause", "Hold the rollout at its step, its traffic as it is."))
app.command("resume")(_steer("resume", "Go on: past a manual gate, or the paused step again."))
app.command("promote")(_steer("promote", "Make the candidate production now."))
app.command("abort")(_steer("abort", "Send all traffic back to production and end the rollout."))


def _gate_settings(texts: list[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or number != number:
            raise InvalidInput(f"--gate {text!r} is not SETTING=NUMBER (e.g. max_p99_ratio=2)")
        found[key.strip()] = number
    return found


def _plan(rollout: RolloutRecord) -> str:
    from shipyard.rollout.plan import Plan

    return str(Plan.parse(rollout.plan))


def _doc(rollout: RolloutRecord) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(rollout)


def _show(rollout: RolloutRecord) -> None:
    from shipyard.rollout.plan import Plan

    steps = Plan.parse(rollout.plan).steps
    console.print(
        f"{rollout.model}: version {rollout.candidate} against {rollout.baseline}, {rollout.status} "
        f"(started {when(rollout.started_at)} by {rollout.actor})"
    )
    for i, step in enumerate(steps):
        mark = "done" if i < rollout.step or rollout.status == "promoted" else ""
        if i == rollout.step and rollout.active:
            mark = f"{rollout.status} since {when(rollout.step_started_at)}"
            if rollout.extensions:
                mark += f", extended {rollout.extensions} times: too little evidence"
        console.print(f"  {i + 1}. {step!s:<16} {mark}")
    verdict = rollout.verdict
    if verdict:
        console.print(f"gates at step {verdict['step'] + 1} ({verdict['at'][:19].replace('T', ' ')} UTC):")
        for gate in verdict["gates"]:
            console.print(
                f"  {gate['name']:<11} {MARK.get(gate['outcome'], gate['outcome']):<8} {gate['figures']}"
            )
    for number, v in (verdict or {}).get("variants", {}).items():
        console.print(f"  version {number}: {describe_variant(v)}")
    if verdict and "finding" in verdict:
        console.print(f"finding: {verdict['finding']}")
    if rollout.reason:
        console.print(f"reason: {rollout.reason}")

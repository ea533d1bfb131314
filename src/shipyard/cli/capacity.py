"""`shipyard capacity`: how many replicas and cores a target load needs, from this machine's measurements."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import typer

from shipyard.cli.common import console, get_state

if TYPE_CHECKING:
    from rich.console import RenderableType

    from shipyard.capacity import Plan
    from shipyard.config import ModelServing, Settings
    from shipyard.registry import Registry


def capacity(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., metavar="NAME[:VERSION]", help="The model to plan for (NAME alone: its default version)."
    ),
    rps: float = typer.Option(
        ..., "--rps", metavar="NUMBER", help="Requests a second to serve, one row each."
    ),
    p99_ms: float = typer.Option(
        ..., "--p99-ms", metavar="NUMBER", help="Latency the 99th percentile must fit."
    ),
    cost_per_core_hour: float = typer.Option(
        0.04, metavar="NUMBER", help="What one core costs an hour, in dollars."
    ),
    cores_per_replica: int = typer.Option(
        2, metavar="N", help="Cores of one replica (a pod or machine): one worker process to each."
    ),
    body: str = typer.Option(
        "json", metavar="BODY", help="Request body measured: json or binary (KServe v2)."
    ),
    utilisation: float = typer.Option(
        0.7,
        metavar="FRACTION",
        help="Most of a worker's saturation throughput planned for: the rest is headroom.",
    ),
    threads: int | None = typer.Option(
        None,
        metavar="N",
        show_default="the server's --intra-op-threads, else 1",
        help="ONNX Runtime threads of each worker (cores each worker takes).",
    ),
    max_batch_size: int | None = typer.Option(
        None, metavar="N", show_default="the model's serving settings", help="Most rows the server batches."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON instead of text."),
    measure_s: float = typer.Option(
        3.0, "--measure-s", metavar="SECONDS", hidden=True, help="Length of each measurement."
    ),
) -> None:
    """Measure a version here and answer the replicas, cores and cost a target load needs at a p99.

    It measures ONNX Runtime's run by batch size and the server's CPU around the model (`shipyard
    serve` on a scratch copy, over loopback), then plans each worker process busy no more than
    --utilisation and within the latency budget. The assumptions are printed with the answer.
    """
    from shipyard.capacity import Target, measure, plan
    from shipyard.errors import InvalidInput
    from shipyard.registry import parse_ref

    st = get_state(ctx)
    name, version = parse_ref(ref)
    serving = _serving(st.registry, name, st.settings)
    target = Target(
        rps=rps,
        p99_s=p99_ms / 1000,
        cores_per_replica=cores_per_replica,
        cost_per_core_hour=cost_per_core_hour,
        utilisation=utilisation,
        max_batch_size=max_batch_size or serving.max_batch_size,
        max_queue_delay_s=serving.max_queue_delay_us / 1e6,
    )
    target.check()  # bad numbers fail before a second is spent measuring
    if not measure_s > 0:
        raise InvalidInput("--measure-s must be above 0")
    record = st.registry.version(name, version)
    if not (serving.batching and record.signature.batched):
        target = replace(target, max_batch_size=1)
    workers_threads = threads if threads is not None else (st.settings.intra_op_threads or 1)
    with console.status(f"measuring {record.ref} on this machine ...", spinner="dots"):
        figures = measure(
            st.registry,
            record,
            body=body,
            threads=workers_threads,
            execution=serving.execution,
            max_batch_size=target.max_batch_size,
            budget_s=target.p99_s,
            seconds=measure_s,
        )
    result = plan(figures, target)
    if as_json:
        from shipyard.cli.optimize import write_json

        write_json(to_dict(record.ref, result))
        return
    console.print(report(record.ref, result))


def _serving(registry: Registry, name: str, settings: Settings) -> ModelServing:
    """The model's serving settings as a server would resolve them: its own over the server's."""
    from shipyard.config import ModelServing

    own = registry.model(name).serving
    return ModelServing.model_validate(settings.serving.model_copy(update=own).model_dump())


def report(ref: str, p: Plan) -> RenderableType:
    """The answer first, then the measured figures by batch size, then what the answer assumes."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t, f, at = p.target, p.figures, p.at_plan
    body = "v2 JSON" if f.body == "json" else "v2 binary tensors"
    answer = [
        f"{ref}: {t.rps:,.0f} requests/s at p99 <= {t.p99_s * 1000:g} ms ({body}, one row a request)",
        f"  replicas   {p.replicas:,} of {t.cores_per_replica} cores "
        f"(shipyard serve --workers {p.workers_per_replica} --intra-op-threads {f.threads})",
        f"  cores      {p.cores:,}",
        f"  cost       ${p.dollars_per_hour:,.2f}/hour, {dollars(p.dollars_per_1k)} per 1k predictions "
        f"at ${t.cost_per_core_hour:g} a core-hour",
        f"  per worker {at.load_rps:,.0f} requests/s ({p.utilisation:.0%} busy, mean batch "
        f"{at.mean_batch:.1f}, predicted p99 {at.p99_s * 1000:.2f} ms); at most {p.worker_rps:,.0f}/s "
        f"(limited by {p.limited_by}), {p.worker_capacity_rps:,.0f}/s at saturation",
    ]
    table = Table(
        "batch",
        "run ms",
        "cycle ms",
        "requests/s a worker",
        "p99 if saturated ms",
        "fits",
        title=f"measured: the server's CPU around the model, {f.cycle_s * 1000:.3f} ms a cycle + "
        f"{f.overhead_s * 1000:.3f} ms a request; ONNX Runtime on {f.threads} "
        f"thread{'s' if f.threads != 1 else ''}",
        title_justify="left",
    )
    for column in table.columns[:-1]:
        column.justify = "right"
    for row in p.batches:
        table.add_row(
            f"{row.size}",
            f"{row.compute_s * 1000:.3f}",
            f"{row.cycle_s * 1000:.3f}",
            f"{row.worker_rps:,.0f}",
            f"{row.saturated_p99_s * 1000:.2f}",
            "yes" if row.fits else "no",
        )
    return Group(Text("\n".join(answer)), table, Text("\n".join(assumptions(p))))


def dollars(amount: float) -> str:
    """Cents and more to the cent; less than that to three significant digits, never as 1e-06."""
    if amount >= 0.01 or amount <= 0:
        return f"${amount:,.2f}"
    return f"${amount:.{2 - math.floor(math.log10(amount))}f}"


def assumptions(p: Plan) -> list[str]:
    t, f = p.target, p.figures
    queue = f" + the {t.max_queue_delay_s * 1e6:g} us max queue delay" if t.max_queue_delay_s else ""
    return [
        "assumptions:",
        f"- measured on this machine: {f.cpu}, {f.cores} core{'s' if f.cores != 1 else ''}; replicas run "
        "on cores as fast as these",
        f"- a worker's cycle of n requests takes {f.cycle_s * 1000:.3f} ms + n x {f.overhead_s * 1000:.3f} ms"
        " + one run of n rows"
        f"{queue}; a batch holds a request and those waiting for it (at most {t.max_batch_size} rows)",
        f"- each worker is planned busy no more than {t.utilisation:.0%} of the time, at a load whose "
        "predicted p99 fits the budget (waiting as in an M/D/1 queue, its p99 as in M/M/1)",
        "- the load balancer spreads requests evenly over replicas and workers, arriving at random "
        "(Poisson), one row a request",
        "- the network, TLS, the load balancer and the clients are not the bottleneck, and cost nothing here",
        "- the server runs as measured: the same settings (monitoring too), no other work on its cores",
    ]


def to_dict(ref: str, p: Plan) -> dict[str, Any]:
    t, f, at = p.target, p.figures, p.at_plan
    return {
        "version": ref,
        "target": {
            "rps": t.rps,
            "p99_ms": t.p99_s * 1000,
            "cores_per_replica": t.cores_per_replica,
            "cost_per_core_hour": t.cost_per_core_hour,
            "utilisation": t.utilisation,
            "max_batch_size": t.max_batch_size,
            "max_queue_delay_us": t.max_queue_delay_s * 1e6,
        },
        "measured": {
            "cpu": f.cpu,
            "cores": f.cores,
            "body": f.body,
            "threads": f.threads,
            "server_ms_per_cycle": f.cycle_s * 1000,
            "server_ms_per_request": f.overhead_s * 1000,
            "run_ms_by_batch": {str(k): v * 1000 for k, v in sorted(f.compute_s.items())},
        },
        "plan": {
            "replicas": p.replicas,
            "workers_per_replica": p.workers_per_replica,
            "cores": p.cores,
            "dollars_per_hour": p.dollars_per_hour,
            "dollars_per_1k_predictions": p.dollars_per_1k,
            "worker_capacity_rps": p.worker_capacity_rps,
            "worker_max_rps": p.worker_rps,
            "limited_by": p.limited_by,
            "worker_rps": at.load_rps,
            "utilisation": p.utilisation,
            "mean_batch": at.mean_batch,
            "p99_ms": at.p99_s * 1000,
        },
        "batches": [
            {
                "size": r.size,
                "run_ms": r.compute_s * 1000,
                "cycle_ms": r.cycle_s * 1000,
                "worker_rps": r.worker_rps,
                "saturated_p99_ms": r.saturated_p99_s * 1000,
                "fits": r.fits,
            }
            for r in p.batches
        ],
        "assumptions": assumptions(p)[1:],
    }

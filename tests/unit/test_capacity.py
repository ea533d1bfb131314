"""Capacity planning: the arithmetic with figures given by hand, and the measurement's pieces on a small
model built in code (what they return, never how fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rich.console import Console

from shipyard.capacity import Figures, Target, latency, plan
from shipyard.capacity.measuring import batch_sizes, compute, request_body, split_costs
from shipyard.capacity.plan import busy_at, compute_at, cycle, waiting
from shipyard.cli.capacity import dollars, report, to_dict
from shipyard.errors import InvalidInput
from shipyard.protocol.v2 import decode_request
from tests.conftest import DIGITS_SIGNATURE
from tests.models import digits_linear

MS = 1e-3
# a small model: the server's work dominates (0.05 ms a cycle, 0.1 ms a request), the run is cheap
SMALL = Figures(
    overhead_s=0.1 * MS,
    cycle_s=0.05 * MS,
    compute_s={1: 0.01 * MS, 2: 0.012 * MS, 4: 0.016 * MS, 8: 0.024 * MS, 16: 0.04 * MS, 32: 0.072 * MS},
    cpu="Test CPU",
    cores=2,
)
# a compute-bound one: 2 ms a row, a little cheaper per row in batches
HEAVY = Figures(overhead_s=0.3 * MS, cycle_s=0.1 * MS, compute_s={1: 2 * MS, 4: 7 * MS, 8: 13 * MS})


def target(**changes: float) -> Target:
    values: dict[str, float] = {"rps": 100_000, "p99_s": 50 * MS, "max_batch_size": 32, **changes}
    return Target(**values)  # type: ignore[arg-type]


def test_a_cycle_is_the_wake_up_the_requests_and_one_run() -> None:
    assert cycle(SMALL, target(), 1) == pytest.approx((0.05 + 0.1 + 0.01) * MS)
    assert cycle(SMALL, target(), 8) == pytest.approx((0.05 + 0.8 + 0.024) * MS)
    assert cycle(SMALL, target(max_queue_delay_s=0.5 * MS), 1) == pytest.approx((0.5 + 0.16) * MS)


def test_a_run_between_measured_sizes_is_interpolated_and_past_them_extrapolated_per_row() -> None:
    assert compute_at(HEAVY, 1) == 2 * MS
    assert compute_at(HEAVY, 2) == pytest.approx(2 * MS + 5 * MS / 3)
    assert compute_at(HEAVY, 6) == pytest.approx(10 * MS)
    assert compute_at(HEAVY, 16) == pytest.approx(26 * MS)  # 13 ms for 8 rows: 1.625 ms a row


def test_a_busier_worker_has_more_waiting_and_larger_batches() -> None:
    assert waiting(0) == 0 and waiting(0.5) == pytest.approx(0.25) and waiting(0.9) == pytest.approx(4.05)
    t = target()
    assert busy_at(SMALL, t, 1000, 1) == pytest.approx(1000 * 0.16 * MS)
    at = latency(SMALL, t, 5000)
    assert at is not None and at.mean_batch > 1
    assert at.mean_batch == pytest.approx(1 + waiting(at.busy), rel=1e-6)  # the batch and its queue agree
    assert at.busy == pytest.approx(busy_at(SMALL, t, 5000, at.mean_batch))
    ahead = math.ceil(math.log(0.01) / math.log(at.busy)) - 1  # M/M/1's p99 of those waiting
    assert at.p99_batch == 1 + ahead
    assert at.p99_s == pytest.approx(cycle(SMALL, t, 1 + ahead) * (2 - 0.01 / at.busy))


def test_the_batch_table_gives_each_size_its_throughput_and_saturated_p99() -> None:
    rows = plan(HEAVY, target(p99_s=20 * MS, max_batch_size=8)).batches
    assert [r.size for r in rows] == [1, 4, 8]
    eight = rows[-1]
    assert eight.cycle_s == pytest.approx((0.1 + 8 * 0.3 + 13) * MS)
    assert eight.worker_rps == pytest.approx(8 / eight.cycle_s)
    assert eight.saturated_p99_s == pytest.approx(2 * eight.cycle_s)
    assert [r.fits for r in rows] == [True, True, False]  # 2 x 15.5 ms > 20 ms


def test_a_generous_budget_plans_each_worker_at_the_target_utilisation() -> None:
    p = plan(SMALL, target(rps=1_000_000, cores_per_replica=4, cost_per_core_hour=0.05))
    assert p.limited_by == "utilisation"
    assert p.worker_capacity_rps == pytest.approx(32 / cycle(SMALL, target(), 32))
    planned = latency(SMALL, target(), p.worker_rps)
    assert planned is not None and planned.busy == pytest.approx(0.7, abs=1e-6)
    assert p.workers_per_replica == 4
    assert p.replicas == math.ceil(1_000_000 / (p.worker_rps * 4))
    assert p.cores == 4 * p.replicas
    assert p.dollars_per_hour == pytest.approx(0.05 * p.cores)
    assert p.dollars_per_1k == pytest.approx(p.dollars_per_hour / (1_000_000 * 3600) * 1000)
    assert p.at_plan.load_rps == pytest.approx(1_000_000 / (4 * p.replicas))
    assert p.at_plan.load_rps <= p.worker_rps and p.at_plan.p99_s <= 50 * MS
    assert p.utilisation <= 0.7


def test_a_tight_budget_plans_the_largest_load_whose_p99_fits() -> None:
    budget = 10 * MS
    p = plan(HEAVY, target(p99_s=budget, max_batch_size=8, cores_per_replica=1))
    assert p.limited_by == "latency"
    fitting = latency(HEAVY, target(max_batch_size=8), p.worker_rps)
    beyond = latency(HEAVY, target(max_batch_size=8), p.worker_rps * 1.01)
    assert fitting is not None and fitting.p99_s <= budget
    assert beyond is None or beyond.p99_s > budget
    assert fitting.busy < 0.7


def test_batches_grow_with_the_load_and_the_worker_refuses_past_its_capacity() -> None:
    t = target()
    light, heavy = latency(SMALL, t, 100), latency(SMALL, t, 8_000)
    assert light is not None and heavy is not None
    assert light.mean_batch == pytest.approx(1, abs=1e-3) and light.p99_batch <= 2
    assert heavy.mean_batch > 1 and heavy.p99_batch > light.p99_batch and heavy.p99_s > light.p99_s
    assert heavy.busy > light.busy
    assert latency(SMALL, t, 32 / cycle(SMALL, t, 32)) is None


def test_more_load_or_a_tighter_budget_never_needs_fewer_replicas() -> None:
    replicas = [plan(HEAVY, target(rps=rps, max_batch_size=8)).replicas for rps in (10, 1_000, 100_000)]
    assert replicas == sorted(replicas) and replicas[0] == 1
    budgets = [plan(HEAVY, target(p99_s=b * MS, max_batch_size=8)).replicas for b in (100, 20, 6)]
    assert budgets == sorted(budgets)


def test_threads_take_cores_from_a_replica() -> None:
    two = Figures(HEAVY.overhead_s, HEAVY.compute_s, HEAVY.cycle_s, threads=2)
    assert plan(two, target(cores_per_replica=4, max_batch_size=8)).workers_per_replica == 2
    with pytest.raises(InvalidInput, match="at least that"):
        plan(two, target(cores_per_replica=1, max_batch_size=8))


def test_a_budget_below_one_row_alone_is_refused_in_one_line() -> None:
    with pytest.raises(InvalidInput, match=r"one row alone takes 2\.4 ms .* no batch size fits"):
        plan(HEAVY, target(p99_s=2 * MS))


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"rps": 0}, "--rps"),
        ({"rps": -5}, "--rps"),
        ({"rps": math.inf}, "--rps"),
        ({"p99_s": math.nan}, "--p99-ms"),
        ({"cores_per_replica": 0}, "--cores-per-replica"),
        ({"cost_per_core_hour": -1}, "--cost-per-core-hour"),
        ({"utilisation": 1.5}, "--utilisation"),
        ({"utilisation": 0}, "--utilisation"),
        ({"max_batch_size": 0}, "--max-batch-size"),
    ],
)
def test_bad_numbers_are_refused_naming_their_option(changes: dict[str, float], flag: str) -> None:
    with pytest.raises(InvalidInput, match=flag):
        plan(SMALL, target(**changes))


def test_the_report_states_the_answer_the_figures_and_the_assumptions() -> None:
    p = plan(SMALL, target(rps=1_000_000))
    console = Console(record=True, width=200)
    console.print(report("digits:1", p))
    text = console.export_text()
    assert f"replicas   {p.replicas} of 2 cores" in text and f"cores      {p.cores}" in text
    assert "Test CPU, 2 cores" in text and "load balancer" in text and "network" in text
    assert "busy no more than 70%" in text
    doc = to_dict("digits:1", p)
    assert doc["plan"]["replicas"] == p.replicas
    assert doc["measured"]["server_ms_per_cycle"] == pytest.approx(0.05)
    assert [b["size"] for b in doc["batches"]] == [1, 2, 4, 8, 16, 32]


def test_dollars_are_readable_however_small() -> None:
    assert dollars(4.4) == "$4.40" and dollars(0.0000012345) == "$0.00000123" and dollars(0) == "$0.00"


def test_the_measured_batch_sizes_double_up_to_the_largest() -> None:
    assert batch_sizes(1) == [1] and batch_sizes(5) == [1, 2, 4, 5]
    assert batch_sizes(32) == [1, 2, 4, 8, 16, 32]


def test_runs_are_timed_by_batch_size_and_stop_past_the_budget() -> None:
    model = digits_linear().onnx_bytes
    times = compute("digits", model, DIGITS_SIGNATURE, [1, 2, 4, 8], threads=1, seconds=0.01)
    assert sorted(times) == [1, 2, 4, 8] and all(t > 0 for t in times.values())
    assert sorted(compute("digits", model, DIGITS_SIGNATURE, [1, 2, 4], 1, 0.01, stop_above_s=0)) == [1]


@pytest.mark.parametrize("body", ["json", "binary"])
def test_the_measurement_request_is_one_row_the_server_decodes(body: str) -> None:
    payload, headers = request_body(DIGITS_SIGNATURE, body)
    length = headers.get("Inference-Header-Content-Length")
    request = decode_request(payload, int(length) if length else None)
    (name,) = request.inputs
    data = request.inputs[name]
    assert name == "input" and data.shape == (1, 64) and data.dtype == np.float32
    assert data.min() >= 0 and data.max() < 1
    with pytest.raises(InvalidInput, match="--body"):
        request_body(DIGITS_SIGNATURE, "xml")


def test_the_two_windows_split_into_a_cycle_and_a_request() -> None:
    # alone: cycle + request + run(1) = 0.125 ms; busy in batches of 8: cycle / 8 + request + run(8) / 8
    costs = split_costs(0.125 * MS, 0.085 * MS, 8, {1: 0.005 * MS, 8: 0.008 * MS}, threads=1)
    assert costs.per_cycle_s == pytest.approx((0.12 - 0.084) / (1 - 1 / 8) * MS)
    assert costs.per_request_s == pytest.approx(0.12 * MS - costs.per_cycle_s)
    alone = split_costs(0.125 * MS, 0.125 * MS, 1, {1: 0.005 * MS}, threads=1)  # never batched
    assert alone.per_cycle_s == 0 and alone.per_request_s == pytest.approx(0.12 * MS)


def test_a_picture_model_is_measured_with_a_photo() -> None:
    from shipyard.capacity.measuring import sample
    from shipyard.processing import pixels
    from shipyard.processing.recipe import build
    from shipyard.signature import Signature, TensorSpec

    recipe = build("image: resize=40, center_crop=32", (-1, 3, 32, 32))
    signature = Signature(
        (TensorSpec("image", "BYTES", (-1,)),),
        (TensorSpec("y", "FP32", (-1, 4)),),
        preprocess=recipe.to_dict(),
    )
    (photo,) = sample(signature, 1)["image"]
    assert pixels(photo, recipe).shape == (32, 32, 3)  # base64 of a JPEG, in JSON and binary bodies alike

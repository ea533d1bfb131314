"""`model compare` says what its figures mean: a slower candidate is "slower" (never "0.75x faster"),
and the output difference between a version giving logits and one giving probabilities is taken on
probabilities (softmax applied to the logits side), as the command's help says."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from rich.console import Console

from shipyard.cli.optimize import report_table
from shipyard.convert.check import signature_of
from shipyard.errors import InvalidInput
from shipyard.optimize import Report, compare
from shipyard.optimize.measure import Contents, Speed
from shipyard.optimize.report import Side
from shipyard.registry import DatasetInfo, Registry
from shipyard.rollout.gate import Bounds, offline_gate
from shipyard.signature import Scores
from tests.conftest import register_digits
from tests.models import digits_linear
from tests.unit.optimize.trained import QUICK


def register_probabilities(registry: Registry) -> None:
    """digits' linear model with a Softmax at the end: the same predictions, as probabilities."""
    model = onnx.load_model_from_string(digits_linear().onnx_bytes)
    model.graph.node[0].output[0] = "scores"
    model.graph.node.append(onnx.helper.make_node("Softmax", ["scores"], ["probabilities"], axis=-1))
    model.graph.output[0].name = "probabilities"
    signature = replace(signature_of(model), scores=Scores("probabilities", "probabilities"))
    registry.register("digits", model.SerializeToString(), signature=signature, framework="onnx", check={})


def test_logits_and_probabilities_are_compared_as_probabilities(
    registry: Registry, files: dict[str, Path]
) -> None:
    register_digits(registry)  # logits
    register_probabilities(registry)
    for first, second in (("digits:1", "digits:2"), ("digits:2", "digits:1")):
        report = compare(registry, first, second, files["test"], timing=QUICK)
        assert report.softmax_applied_to == "digits:1"
        assert report.max_abs_diff < 1e-5  # the same model: what raw logits minus probabilities hides
        assert report.parent.metric == report.candidate.metric
        assert report.to_dict()["outputs"]["softmax_applied_to"] == "digits:1"
    same = compare(registry, "digits:1", "digits:1", files["test"], timing=QUICK)
    assert same.softmax_applied_to is None and same.to_dict()["outputs"]["softmax_applied_to"] is None
    shown = render(report)
    assert "|probabilities diff| max / mean" in shown
    assert (
        "digits:1 gives logits and digits:2 probabilities: the output difference compares "
        "probabilities, softmax applied to digits:1's logits" in shown
    )


def side(ref: str, size: int, p50_ms: float, p99_ms: float, samples_per_s: float) -> Side:
    return Side(ref, Contents(size, 100, 0.0), Speed(p50_ms, p99_ms, samples_per_s), 0.9)


def report(parent: Side, candidate: Side) -> Report:
    return Report(
        metric="accuracy",
        higher_is_better=True,
        output="logits",
        data=DatasetInfo("test.npz", 1, "ab" * 32),
        rows=10,
        threads=1,
        batch=32,
        parent=parent,
        candidate=candidate,
        max_abs_diff=0.5,
        mean_abs_diff=0.1,
    )


def render(report: Report) -> str:
    console = Console(record=True, width=240)
    console.print(report_table(report))
    return console.export_text()


def rows(text: str) -> dict[str, str]:
    """The table's rows by their first cell, with the change column's text."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 6:
            out[cells[1]] = cells[4]
    return out


@pytest.mark.parametrize(
    ("candidate", "size", "p50", "p99", "throughput"),
    [
        (side("b", 6000, 2.0, 4.0, 1125.0), "2.00x larger", "2.00x slower", "2.00x faster", "1.33x slower"),
        (side("b", 1000, 0.5, 8.0, 3000.0), "3.00x smaller", "2.00x faster", "same speed", "2.00x faster"),
        (side("b", 3000, 1.003, 6.0, 1500.0), "same size", "same speed", "1.33x faster", "same speed"),
    ],
)
def test_the_change_column_says_faster_or_slower(
    candidate: Side, size: str, p50: str, p99: str, throughput: str
) -> None:
    parent = side("a", 3000, 1.0, 8.0, 1500.0)
    found = rows(render(report(parent, candidate)))
    assert found["file size"] == size
    assert found["latency p50, batch 1"] == p50
    assert found["latency p99, batch 1"] == p99
    assert found["samples/s, batch 32"] == throughput


def test_a_slower_candidate_is_slower_and_show_says_so_too() -> None:
    from shipyard.cli.optimize import describe_report

    parent = side("digits:1", 3000, 1.0, 2.0, 1500.0)
    slower = side("digits:2", 4000, 1.33, 2.66, 1125.0)
    found = rows(render(report(parent, slower)))
    assert found["latency p50, batch 1"] == "1.33x slower"
    assert found["latency p99, batch 1"] == "1.33x slower"
    assert found["samples/s, batch 32"] == "1.33x slower"
    assert found["file size"] == "1.33x larger"
    assert describe_report(report(parent, slower).to_dict()).startswith(
        "1.33x larger, 1.33x slower at batch 32, accuracy 0.9000 -> 0.9000"
    )


def test_the_offline_gate_compares_p99s_under_its_floor_as_equal() -> None:
    """A digits model's p99 read 0.02 ms, then 0.35 ms on a busy machine: under the 1 ms floor, the
    same speed; with no floor, 17x slower. Above it, the ratio is the figures' own."""
    tiny = report(side("digits:1", 100, 0.006, 0.020, 1e6), side("digits:3", 100, 0.009, 0.348, 1e6))
    latency = {c.name: c for c in offline_gate(tiny, Bounds(max_latency_ratio=10)).checks}["p99 latency"]
    assert latency.passed and latency.value == 1.0
    bare = {c.name: c for c in offline_gate(tiny, Bounds(10, 10, 10, 0)).checks}["p99 latency"]
    assert not bare.passed and bare.value == pytest.approx(17.4)
    slow = report(side("cnn:1", 100, 1.0, 2.0, 500), side("cnn:2", 100, 2.0, 5.0, 200))
    assert {c.name: c for c in offline_gate(slow, Bounds()).checks}["p99 latency"].value == 2.5
    with pytest.raises(InvalidInput, match="--latency-floor-ms must be 0 or more"):
        Bounds(latency_floor_ms=-1)

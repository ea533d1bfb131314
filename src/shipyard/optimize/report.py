"""The report: two models measured side by side on the same data, in the same run.

Every figure is measured, none is estimated: sizes are the files' byte counts, parameters and
sparsity are counted in the files, the metric is computed from each model's own outputs, and the
timings come from `measure.time_runners`. The same report serves `optimize` (parent vs candidate,
judged by the gate and stored with the new version) and `model compare` (any two versions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shipyard.datasets import Dataset
from shipyard.errors import InvalidInput
from shipyard.optimize.measure import (
    Contents,
    Progress,
    Speed,
    Timing,
    contents,
    load_runner,
    no_progress,
    predict,
    score_output,
    time_runners,
)
from shipyard.optimize.metrics import get_metric, targets_for
from shipyard.registry import DatasetInfo
from shipyard.scoring import softmax
from shipyard.signature import Signature


@dataclass(frozen=True)
class Model:
    """A model to measure: a name to show, its ONNX bytes and its signature."""

    ref: str
    onnx_bytes: bytes
    signature: Signature


@dataclass(frozen=True)
class Side:
    ref: str
    contents: Contents
    speed: Speed
    metric: float

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, **asdict(self.contents), **asdict(self.speed), "metric": self.metric}


@dataclass(frozen=True)
class Report:
    metric: str
    higher_is_better: bool
    output: str
    data: DatasetInfo
    rows: int
    threads: int
    batch: int
    parent: Side
    candidate: Side
    max_abs_diff: float
    mean_abs_diff: float
    softmax_applied_to: str | None = None
    """The side whose logits went through softmax before the output difference was taken, when the
    other side's scores are probabilities (a difference between logits and probabilities means nothing)."""

    @property
    def drop(self) -> float:
        """How much worse the candidate's metric is (negative: better)."""
        change = self.parent.metric - self.candidate.metric
        return change if self.higher_is_better else -change

    @property
    def size_ratio(self) -> float:
        """How many times smaller the candidate's file is."""
        return self.parent.contents.size_bytes / self.candidate.contents.size_bytes

    @property
    def latency_speedup(self) -> float:
        return self.parent.speed.p50_ms / self.candidate.speed.p50_ms

    @property
    def throughput_speedup(self) -> float:
        return self.candidate.speed.samples_per_s / self.parent.speed.samples_per_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "output": self.output,
            "data": {**self.data.to_dict(), "rows": self.rows},
            "threads": self.threads,
            "batch": self.batch,
            "parent": self.parent.to_dict(),
            "candidate": self.candidate.to_dict(),
            "change": {
                "metric": self.candidate.metric - self.parent.metric,
                "drop": self.drop,
                "size_ratio": self.size_ratio,
                "latency_speedup": self.latency_speedup,
                "throughput_speedup": self.throughput_speedup,
            },
            "outputs": {
                "max_abs_diff": self.max_abs_diff,
                "mean_abs_diff": self.mean_abs_diff,
                "softmax_applied_to": self.softmax_applied_to,
            },
        }


def compare_models(
    parent: Model,
    candidate: Model,
    data: Dataset,
    *,
    metric: str = "accuracy",
    labels: Sequence[str] | None = None,
    timing: Timing | None = None,
    progress: Progress = no_progress,
) -> Report:
    """Evaluate and time both models on `data`; the candidate must take the parent's inputs."""
    timing = timing or Timing()
    chosen = get_metric(metric)
    if data.y is None:
        raise InvalidInput("comparing models needs data with targets (y or a label column)")
    targets = targets_for(chosen, data.y, labels, data.classes)
    _same_inputs(parent, candidate)
    output = score_output(parent.signature)
    candidate_output = output if candidate.signature.output(output) else score_output(candidate.signature)
    runners = [load_runner(m.ref, m.onnx_bytes, timing) for m in (parent, candidate)]
    try:
        outputs = [
            predict(runners[0], data, output, progress),
            predict(runners[1], data, candidate_output, progress),
        ]
        speeds = time_runners(runners, data, timing, progress)
    finally:
        for runner in runners:
            runner.unload()
    if outputs[0].shape != outputs[1].shape:
        raise InvalidInput(
            f"{candidate.ref} gives outputs of shape {list(outputs[1].shape)}, "
            f"{parent.ref} of shape {list(outputs[0].shape)}"
        )
    scores = [_score_kind(m, name) for m, name in ((parent, output), (candidate, candidate_output))]
    softmax_side = scores.index("logits") if set(scores) == {"logits", "probabilities"} else None
    compared = [out.astype(np.float64) for out in outputs]
    if softmax_side is not None:
        compared[softmax_side] = softmax(compared[softmax_side])
    diff = np.abs(compared[0] - compared[1])
    sides = [
        Side(m.ref, contents(m.onnx_bytes), speed, chosen.compute(out, targets))
        for m, speed, out in zip((parent, candidate), speeds, outputs, strict=True)
    ]
    return Report(
        metric=chosen.name,
        higher_is_better=chosen.higher_is_better,
        output=output,
        data=data.info,
        rows=data.rows,
        threads=timing.intra_op_threads,
        batch=timing.batch,
        parent=sides[0],
        candidate=sides[1],
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        softmax_applied_to=None if softmax_side is None else (parent, candidate)[softmax_side].ref,
    )


def _score_kind(model: Model, output: str) -> str | None:
    """'logits' or 'probabilities' when `output` holds the model's class scores, else None."""
    scores = model.signature.scores
    return scores.kind if scores is not None and scores.output == output else None


def _same_inputs(parent: Model, candidate: Model) -> None:
    from shipyard.registry.store import input_difference

    problem = input_difference(parent.signature, candidate.signature)
    if problem:
        raise InvalidInput(f"{candidate.ref} cannot be compared with {parent.ref}: {problem}")

"""`optimize` and `compare` over the registry: load versions and data, run a method, measure, judge,
register. The one place that ties the methods, the report and the gate to stored versions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shipyard.datasets import Dataset, load_data
from shipyard.optimize.gate import Verdict, judge
from shipyard.optimize.measure import Progress, Timing, no_progress
from shipyard.optimize.methods import Candidate, Options, Source, get_method
from shipyard.optimize.report import Model, Report, compare_models
from shipyard.registry import Registry, VersionRecord, parse_ref


@dataclass(frozen=True)
class Outcome:
    report: Report
    verdict: Verdict
    candidate: Candidate
    record: VersionRecord | None  # the new version; None when the gate refused it


def optimize(
    registry: Registry,
    ref: str,
    method: str,
    eval_path: Path,
    *,
    max_drop: float = 0.01,
    metric: str = "accuracy",
    options: Options | None = None,
    timing: Timing | None = None,
    force: bool = False,
    description: str = "",
    progress: Progress = no_progress,
) -> Outcome:
    """Make a candidate of `ref` with `method`, measure it against `ref` on `eval_path`, and register
    it as the next version when the gate passes (or `force`)."""
    options = options or Options()
    run = get_method(method)
    parent = _version(registry, ref)
    data = _eval_data(parent, eval_path, options.label_column)
    source = Source(
        ref=parent.ref,
        onnx_bytes=registry.artifact(parent),
        signature=parent.signature,
        labels=parent.labels,
        framework=parent.framework,
        data=data,
    )
    candidate = run(source, options, progress)
    report = compare_models(
        Model(parent.ref, source.onnx_bytes, parent.signature),
        Model(f"{method} candidate", candidate.onnx_bytes, candidate.signature),
        data,
        metric=metric,
        labels=parent.labels,
        timing=timing,
        progress=progress,
    )
    verdict = judge(report, max_drop, force)
    record = None
    if verdict.registers:
        made = f"{method} of {parent.ref}" + ("" if verdict.passed else " (failing its gate, forced)")
        record = _register(registry, parent, method, candidate, verdict, report, data, description or made)
    return Outcome(report, verdict, candidate, record)


def _register(
    registry: Registry,
    parent: VersionRecord,
    method: str,
    candidate: Candidate,
    verdict: Verdict,
    report: Report,
    data: Dataset,
    description: str,
) -> VersionRecord:
    """The candidate as the parent's next version, with its lineage, the report the gate judged and,
    when its inputs are the parent's, the parent's reference profile."""
    record = registry.register(
        parent.model,
        candidate.onnx_bytes,
        signature=candidate.signature,
        framework=candidate.framework,
        check=candidate.check,
        labels=parent.labels,
        description=description,
        dataset=data.info,
        lineage={
            "parent": parent.ref,
            "parent_sha256": parent.sha256,
            "method": method,
            "options": candidate.options,
            "gate": verdict.to_dict(),
        },
        report=report.to_dict(),
    )
    if parent.reference is not None and candidate.signature.inputs == parent.signature.inputs:
        # same inputs in production: drift is judged against the parent's reference data
        registry.set_reference(parent.model, record.number, parent.reference, f"from {parent.ref}")
        record = registry.version(parent.model, record.number)
    return record


def compare(
    registry: Registry,
    first: str,
    second: str,
    eval_path: Path,
    *,
    metric: str = "accuracy",
    label_column: str | None = None,
    timing: Timing | None = None,
    progress: Progress = no_progress,
) -> Report:
    """The optimize report for any two versions (the first plays the parent)."""
    a, b = _version(registry, first), _version(registry, second)
    data = _eval_data(a, eval_path, label_column)
    return compare_models(
        Model(a.ref, registry.artifact(a), a.signature),
        Model(b.ref, registry.artifact(b), b.signature),
        data,
        metric=metric,
        labels=a.labels,
        timing=timing,
        progress=progress,
    )


def _version(registry: Registry, ref: str) -> VersionRecord:
    name, version = parse_ref(ref)
    return registry.version(name, version)


def _eval_data(record: VersionRecord, path: Path, label_column: str | None) -> Dataset:
    return load_data(path, record.signature, label_column=label_column)

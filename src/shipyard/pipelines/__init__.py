"""Pipelines: registered models run one after another, merged into one ONNX graph, versioned like a model.

`create("digits-pipe", ["scaler:1", "classifier:production"])` resolves each step to a registered
version, connects each step's outputs to the next step's inputs (links.py: by name, else the one
output that fits, with a Cast or Reshape adapter where that is safe), merges the steps into one graph
with onnx.compose (compose.py), and registers it as a new version of the pipeline's own model, with
framework "pipeline" and the steps (model, version, sha256) in its lineage. Aliases, history, deploy
and rollback then work as for any model.

Nothing is chained at run time: one ONNX Runtime session runs the whole pipeline. The one step that
stays outside the graph is the first step's host-side preprocessing recipe (image decoding), which the
server runs before the graph as it does for that model alone; a later step with such a recipe is
refused, since nothing runs between the steps of a graph.

As every import is, the merged graph is checked numerically: it runs, and the steps run apart one
after another (each its own ONNX model, fed the previous step's outputs as the links say), on the
same inputs; the largest difference is recorded, and a pipeline beyond the tolerance is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import onnx

from shipyard import datasets
from shipyard.config import Settings
from shipyard.convert.check import (
    GENERATED,
    USER_DATA,
    Array,
    CheckResult,
    first_line,
    require_close,
    rows_of,
    run_onnx,
    sample_inputs,
    signature_of,
    user_inputs,
)
from shipyard.errors import ConversionFailed, InvalidInput, NotFound
from shipyard.importing import dataset_info
from shipyard.names import check_name
from shipyard.pipelines import compose
from shipyard.pipelines.links import Link, Step, connect
from shipyard.registry import Registry, VersionRecord, parse_ref
from shipyard.signature import Signature

__all__ = ["METHOD", "create", "steps_of"]

METHOD = "pipeline"
"""The framework of a pipeline's versions, and the method their lineage names."""


def create(
    name: str,
    steps: Sequence[str],
    *,
    registry: Registry | None = None,
    labels: Sequence[str] | None = None,
    description: str = "",
    dataset: str | Path | None = None,
    tolerance: float = 1e-4,
) -> VersionRecord:
    """Merge the versions `steps` name (NAME, NAME:3, NAME:alias) into one graph, check it against
    the steps run one after another, and register it as the next version of `name`.

    When a version of `name` already holds these steps (the same artifacts, in order) and labels, it
    is returned as it is: creating the same pipeline twice adds nothing.
    """
    own = registry is None
    reg = registry or Registry.open(Settings())
    try:
        return _create(reg, name, steps, labels, description, dataset, tolerance)
    finally:
        if own:
            reg.close()


def steps_of(record: VersionRecord) -> list[dict[str, Any]]:
    """A pipeline version's steps as its lineage records them: model, version, sha256, how each was
    asked for, and (after the first) its links from the step before."""
    lineage = record.lineage or {}
    if record.framework != METHOD or lineage.get("method") != METHOD:
        raise InvalidInput(f"{record.ref} is not a pipeline (it is from {record.framework})")
    return list(lineage.get("steps") or [])


def _create(
    reg: Registry,
    name: str,
    steps: Sequence[str],
    labels: Sequence[str] | None,
    description: str,
    dataset: str | Path | None,
    tolerance: float,
) -> VersionRecord:
    check_name(name)
    if not tolerance >= 0:
        raise InvalidInput(f"tolerance must be 0 or more, not {tolerance}")
    refs = _refs(steps)
    path = Path(dataset) if dataset is not None else None
    info = dataset_info(path) if path is not None else None  # a missing file is refused before any work
    records = [reg.version(*parse_ref(ref)) for ref in refs]
    for record in records:
        if record.model == name:
            raise InvalidInput(
                f"{record.ref} cannot be a step of pipeline {name}: it is that model; give the pipeline "
                "a name of its own"
            )
    for i, record in enumerate(records[1:], start=1):
        if record.signature.preprocess:
            raise InvalidInput(
                f"{record.ref} (step {i + 1}) has a host-side preprocessing recipe, which the server "
                "runs before a graph, never inside one: only a pipeline's first step may have one"
            )
    links = [connect(Step(a.ref, a.signature), Step(b.ref, b.signature)) for a, b in pairwise(records)]
    wanted = list(labels) if labels is not None else records[-1].labels
    existing = _existing(reg, name, records, wanted)
    if existing is not None:
        return existing

    merged, check = _merge_and_check(reg, records, links, path, tolerance)
    first, last = records[0].signature, records[-1].signature
    signature = Signature(
        inputs=first.inputs,
        outputs=last.outputs,
        scores=last.scores,
        features=first.features,
        preprocess=first.preprocess,
        unit=last.unit,
    )
    return reg.register(
        name,
        merged,
        signature=signature,
        framework=METHOD,
        check=check.to_dict(),
        labels=wanted,
        description=description,
        dataset=info,
        lineage={"method": METHOD, "steps": _lineage(refs, records, links)},
    )


def _merge_and_check(
    reg: Registry, records: list[VersionRecord], links: list[list[Link]], path: Path | None, tolerance: float
) -> tuple[bytes, CheckResult]:
    """The merged graph, and how it compares with the steps run apart on the same inputs."""
    artifacts = [reg.artifact(record) for record in records]
    refs = [record.ref for record in records]
    models = [_load(artifact, ref) for artifact, ref in zip(artifacts, refs, strict=True)]
    merged = compose.merge(models, links, refs).SerializeToString()
    # the graph's own inputs: with an image recipe, the first step's graph takes pixels, not pictures
    takes = signature_of(models[0])
    rows = datasets.sample_rows(path) if path is not None else None
    inputs = user_inputs(takes, rows) if rows is not None else sample_inputs(takes)
    expected = _run_apart(artifacts, records, links, inputs)
    source = USER_DATA if rows is not None else GENERATED
    return merged, require_close(expected, run_onnx(merged, inputs), tolerance, rows_of(inputs), source)


def _refs(steps: Sequence[str]) -> list[str]:
    listed = steps.split(",") if isinstance(steps, str) else list(steps)
    refs = [ref.strip() for ref in listed if ref.strip()]
    if len(refs) < 2:
        given = f" ({', '.join(refs)})" if refs else ""
        raise InvalidInput(
            f"a pipeline needs at least two steps, got {len(refs)}{given}: one model is imported "
            "with `shipyard model import`"
        )
    return refs


def _existing(
    reg: Registry, name: str, records: list[VersionRecord], labels: list[str] | None
) -> VersionRecord | None:
    """The version of `name` that already holds these steps' artifacts with these labels, newest first."""
    try:
        versions = reg.versions(name)
    except NotFound:
        return None
    shas = [record.sha256 for record in records]
    for version in reversed(versions):
        lineage = version.lineage or {}
        if version.framework != METHOD or lineage.get("method") != METHOD or version.labels != labels:
            continue
        if [step.get("sha256") for step in lineage.get("steps") or []] == shas:
            return version
    return None


def _load(data: bytes, ref: str) -> onnx.ModelProto:
    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError, whose module has no type stubs
        raise ConversionFailed(f"{ref} is not a valid ONNX model: {first_line(exc)}") from exc


def _run_apart(
    artifacts: list[bytes], records: list[VersionRecord], links: list[list[Link]], inputs: Mapping[str, Array]
) -> dict[str, Array]:
    """The last step's outputs when each step runs as its own model, fed as the links say."""
    feed = dict(inputs)
    outputs: dict[str, Array] = {}
    for i, (data, record) in enumerate(zip(artifacts, records, strict=True)):
        try:
            arrays = run_onnx(data, feed)
        except ConversionFailed as exc:
            raise ConversionFailed(f"{record.ref} does not run on what it is fed: {exc.message}") from exc
        outputs = dict(zip(record.signature.output_names, arrays, strict=True))
        if i < len(links):
            feed = {link.input.name: link.adapt(outputs[link.output.name]) for link in links[i]}
    return outputs


def _lineage(refs: list[str], records: list[VersionRecord], links: list[list[Link]]) -> list[dict[str, Any]]:
    steps = []
    for i, (ref, record) in enumerate(zip(refs, records, strict=True)):
        step: dict[str, Any] = {
            "model": record.model,
            "version": record.number,
            "sha256": record.sha256,
            "asked": ref,
            "framework": record.framework,
        }
        if i > 0:
            step["links"] = [link.to_dict() for link in links[i - 1]]
        steps.append(step)
    return steps

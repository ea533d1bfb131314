"""A version's reference profile, from a data file: the rows are run through the model itself, so the
profile holds what it predicted on them as well as the inputs' statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput
from shipyard.importing import load_sample
from shipyard.monitor.profile import build_profile
from shipyard.protocol.datatypes import numpy_dtype
from shipyard.registry import Registry, VersionRecord
from shipyard.runtime.session import Runner, RunnerOptions

MAX_ROWS = 20_000
CHUNK = 512


def reference_inputs(record: VersionRecord, path: Path, rows: int = MAX_ROWS) -> dict[str, np.ndarray]:
    """The file's rows shaped as the model's (single) input."""
    if len(record.signature.inputs) != 1:
        raise InvalidInput(f"{record.ref} has several inputs: a reference file gives one array")
    spec = record.signature.inputs[0]
    data = load_sample(path, rows)
    if data is None:
        raise InvalidInput(f"{path}: reference data must be .npz (X), .npy, .csv or .parquet")
    inner = tuple(d for d in spec.shape[1:])
    if -1 not in inner and data.shape[1:] != inner:
        per_row = int(np.prod(inner)) if inner else 1
        if data[0].size != per_row:
            raise InvalidInput(
                f"{path}: rows of {data.shape[1:]} do not fit input {spec.name!r} of shape {list(spec.shape)}"
            )
        data = data.reshape((len(data), *inner))
    return {spec.name: data.astype(numpy_dtype(spec.datatype))}


def profile_version(registry: Registry, record: VersionRecord, path: Path) -> dict[str, Any]:
    """Run the version on the file's rows and profile inputs and scores (JSON-able, for the registry)."""
    inputs = reference_inputs(record, path)
    scores_spec = record.signature.scores
    scores = None
    if scores_spec is not None:
        runner = Runner(record.ref, registry.artifact(record), RunnerOptions())
        runner.load()
        try:
            name, data = next(iter(inputs.items()))
            parts = [
                runner.run_sync({name: data[i : i + CHUNK]}, [scores_spec.output])[0]
                for i in range(0, len(data), CHUNK)
            ]
        finally:
            runner.unload()
        scores = np.concatenate(parts).reshape(len(data), -1)
    kind = scores_spec.kind if scores_spec else None
    profile = build_profile(inputs, scores, score_kind=kind if kind in ("logits", "probabilities") else None)
    doc = profile.to_dict()
    doc["source"] = path.name
    return doc

"""A version's reference profile, from a data file: the rows are run through the model itself, so the
profile holds what it predicted on them as well as the inputs' statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shipyard.datasets import load_data
from shipyard.monitor.profile import build_profile
from shipyard.registry import Registry, VersionRecord
from shipyard.runtime.session import Runner, RunnerOptions

MAX_ROWS = 20_000
CHUNK = 512


def reference_inputs(record: VersionRecord, path: Path, rows: int = MAX_ROWS) -> dict[str, np.ndarray]:
    """The file's rows (the first `rows`) as the model's inputs: read as `optimize` reads eval data."""
    data = load_data(path, record.signature, need_labels=False)
    return {name: array[:rows] for name, array in data.inputs.items()}


def profile_version(registry: Registry, record: VersionRecord, path: Path) -> dict[str, Any]:
    """Run the version on the file's rows and profile inputs and scores (JSON-able, for the registry)."""
    inputs = reference_inputs(record, path)
    scores_spec = record.signature.scores
    scores = None
    if scores_spec is not None:
        runner = Runner(record.ref, registry.artifact(record), RunnerOptions())
        runner.load()
        rows = len(next(iter(inputs.values())))
        try:
            parts = [
                runner.run_sync({k: v[i : i + CHUNK] for k, v in inputs.items()}, [scores_spec.output])[0]
                for i in range(0, rows, CHUNK)
            ]
        finally:
            runner.unload()
        scores = np.concatenate(parts).reshape(rows, -1)
    profile = build_profile(inputs, scores, score_kind=scores_spec.kind if scores_spec else None)
    doc = profile.to_dict()
    doc["source"] = path.name
    return doc

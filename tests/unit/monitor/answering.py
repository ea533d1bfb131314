"""Requests told to a monitor as the data plane and the batcher tell it, without a server."""

from __future__ import annotations

import time

import numpy as np

from shipyard.monitor.answers import ID, prediction_ids
from shipyard.monitor.live import Monitor
from shipyard.registry import VersionRecord
from shipyard.runtime import tensors
from shipyard.runtime.batcher import Ran


def answer(
    monitor: Monitor,
    record: VersionRecord,
    inputs: dict[str, np.ndarray],
    scores: np.ndarray | None,
    protocol: str = "rest",
) -> list[str]:
    """One request noted, run in a batch of its own and answered; its prediction ids. `scores`: what
    the run gave for the version's score output (None: a run asked for another output)."""
    note = monitor.note(protocol, time.perf_counter())
    rows = tensors.rows(inputs)
    if scores is None:
        names, outputs = ["other"], [np.zeros(rows, np.int64)]
    else:
        names, outputs = [record.signature.outputs[0].name], [scores]
    monitor.answered(note)
    monitor.observer(record).batch_done(Ran(rows, inputs, names, True, [rows], [0.0], 0.001, [note]), outputs)
    return prediction_ids(note[ID], rows)

"""The monitor's request taps: each answered row logged with its class and confidence, read from its
scores when the log or feedback asks."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence

import numpy as np
import pytest

from shipyard.config import MonitorSettings
from shipyard.monitor.live import FLUSH_EVERY, Monitor, RequestIds
from shipyard.monitor.predlog import PredictionRecord
from shipyard.registry import Registry, VersionRecord
from tests.conftest import LABELS, register_digits
from tests.models import digits_data, digits_linear


class Kept:
    """A sink that keeps what the writer thread gives it."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []

    def write(self, records: Sequence[PredictionRecord]) -> None:
        self.records.extend(records)

    def poll(self) -> float | None:
        return None

    def close(self) -> None:
        pass


@pytest.fixture
def digits(registry: Registry) -> VersionRecord:
    return register_digits(registry)


@pytest.mark.parametrize("rows", [1, 5])
def test_the_log_and_feedback_read_each_prediction_s_class_from_its_scores(
    digits: VersionRecord, rows: int
) -> None:
    sink = Kept()
    monitor = Monitor(MonitorSettings(), sink)
    monitor.start()
    x = digits_data()[0][:rows]
    logits = digits_linear().logits(x)
    raw = monitor.answered(digits, "predict", time.perf_counter(), {"input": x}, logits)
    monitor.close()
    by_id = {r.request_id: r for r in sink.records}
    recent = [monitor.recent.lookup(i) for i in raw]
    assert [found.class_ for found in recent if found] == [by_id[i].class_ for i in raw]
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert [by_id[i].class_ for i in raw] == [LABELS[i] for i in probabilities.argmax(axis=1)]
    assert [by_id[i].confidence for i in raw] == pytest.approx(probabilities.max(axis=1).tolist())


def test_scores_that_are_not_one_row_per_prediction_give_no_class(digits: VersionRecord) -> None:
    sink = Kept()
    monitor = Monitor(MonitorSettings(), sink)
    monitor.start()
    x = digits_data()[0][:1]
    two_rows = digits_linear().logits(digits_data()[0][:2])  # a one-row request answered with two
    nan_row = np.full((1, 10), np.nan, dtype=np.float32)
    (uneven,) = monitor.answered(digits, "rest", time.perf_counter(), {"input": x}, two_rows)
    (unreadable,) = monitor.answered(digits, "rest", time.perf_counter(), {"input": x}, nan_row)
    monitor.close()
    by_id = {r.request_id: r for r in sink.records}
    for prediction in (uneven, unreadable):
        assert by_id[prediction].class_ is None and by_id[prediction].confidence is None
        found = monitor.recent.lookup(prediction)
        assert found is not None and found.class_ is None


def test_prediction_ids_are_random_and_never_repeat_across_a_fork() -> None:
    ids = RequestIds()
    made = [ids() for _ in range(3 * RequestIds.BATCH)]
    assert len(set(made)) == len(made) and all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    ids()  # part of a batch is left, then the process forks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, ids().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    assert child != ids() and child not in made


def test_answers_are_counted_a_flush_at_a_time_or_when_read(digits: VersionRecord) -> None:
    """Without a reader flushing first (another worker's /metrics reads only what this one counted),
    answers are counted FLUSH_EVERY at a time, once the last of them has gone out, or at the tick."""
    monitor = Monitor(MonitorSettings())
    x = digits_data()[0][:1]
    labels = {"model": "digits", "version": "1", "protocol": "rest", "status": "200"}

    def counted() -> float | None:
        return monitor.metrics.registry.get_sample_value("shipyard_requests_total", labels)

    def answer(n: int) -> None:
        for _ in range(n):
            monitor.answered(digits, "rest", time.perf_counter(), {"input": x}, digits_linear().logits(x))

    async def main() -> list[float | None]:
        seen = []
        answer(FLUSH_EVERY - 1)
        await asyncio.sleep(0)  # a loop turn is over: not enough answers yet
        seen.append(counted())
        answer(1)
        seen.append(counted())  # the flush waits for the loop turn of the answer that asked for it
        await asyncio.sleep(0)
        seen.append(counted())
        answer(2)
        monitor.tick({})
        seen.append(counted())
        return seen

    assert asyncio.run(main()) == [None, None, FLUSH_EVERY, FLUSH_EVERY + 2]

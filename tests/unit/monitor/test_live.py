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
from shipyard.monitor import version
from shipyard.monitor.live import FLUSH_BYTES, FLUSH_EVERY, Monitor, RequestIds
from shipyard.monitor.predlog import PredictionRecord
from shipyard.registry import Registry, VersionRecord
from shipyard.runtime import Runner, RunnerOptions
from shipyard.runtime.batcher import Batcher, BatchSettings, Ran
from tests.conftest import LABELS, register_digits
from tests.models import digits_data, digits_linear
from tests.unit.monitor.answering import answer


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
    raw = answer(monitor, digits, {"input": x}, logits, "predict")
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
    (uneven,) = answer(monitor, digits, {"input": x}, two_rows)
    (unreadable,) = answer(monitor, digits, {"input": x}, nan_row)
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
    answers are counted FLUSH_EVERY rows at a time, as the run that fills them is reported (once its
    requests were answered), or at the tick."""
    monitor = Monitor(MonitorSettings())
    x = digits_data()[0][:1]
    labels = {"model": "digits", "version": "1", "protocol": "rest", "status": "200"}

    def counted() -> float | None:
        return monitor.metrics.registry.get_sample_value("shipyard_requests_total", labels)

    def answer_n(n: int) -> None:
        for _ in range(n):
            answer(monitor, digits, {"input": x}, digits_linear().logits(x))

    seen = []
    answer_n(FLUSH_EVERY - 1)
    seen.append(counted())
    answer_n(1)
    seen.append(counted())
    answer_n(2)
    seen.append(counted())
    monitor.tick({})
    seen.append(counted())
    assert seen == [None, FLUSH_EVERY, FLUSH_EVERY, FLUSH_EVERY + 2]


def test_a_run_waits_for_its_late_callers_and_not_for_ever(
    digits: VersionRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that marks its answer after its run was reported (its wake-up took longer) is counted
    by a later flush; one that never settles its note is left out once the run is LATE_S old, and the
    run itself is still counted."""
    monitor = Monitor(MonitorSettings())
    x = digits_data()[0][:2]
    late, gone = monitor.note("rest", time.perf_counter()), monitor.note("rest", time.perf_counter())
    ran = Ran(2, {"input": x}, None, True, [1, 1], [0.0, 0.0], 0.001, [late, gone])
    monitor.observer(digits).batch_done(ran, [digits_linear().logits(x)])

    def answered() -> int:
        return monitor.version(digits).triton_stats()["inference_stats"]["success"]["count"]

    assert answered() == 0 and monitor.recent.lookup(late[0]) is None
    monitor.answered(late)
    assert answered() == 0  # the run waits for its other caller
    monkeypatch.setattr(version, "LATE_S", 0.0)
    assert answered() == 1 and monitor.version(digits).triton_stats()["inference_count"] == 2
    assert monitor.recent.lookup(late[0]) is not None and monitor.recent.lookup(gone[0]) is None


def test_a_failed_run_is_counted_at_once(digits: VersionRecord) -> None:
    monitor = Monitor(MonitorSettings())
    x = digits_data()[0][:1]
    note = monitor.note("rest", time.perf_counter())
    monitor.observer(digits).batch_done(Ran(1, {"input": x}, None, False, [1], [0.0], 0.001, [note]), [])
    stats = monitor.version(digits).triton_stats()
    assert stats["execution_count"] == 1 and stats["inference_count"] == 0
    assert stats["inference_stats"]["success"]["count"] == 0


def test_a_caller_that_fails_or_leaves_settles_its_note_and_its_batch_is_counted_at_once(
    digits: VersionRecord,
) -> None:
    """Two requests share a run; the second's caller is cancelled while it runs (a client gone, a
    timeout), as the data plane settles it. The first is counted, found by feedback and logged at
    once; the second is neither."""
    sink = Kept()
    monitor = Monitor(MonitorSettings(), sink)
    monitor.start()
    runner = Runner("digits:1", digits_linear().onnx_bytes, RunnerOptions(intra_op_threads=1))
    runner.load()
    x = digits_data()[0][:1]

    async def main() -> tuple[list, list]:
        gate = asyncio.Event()

        async def held(inputs: dict, outputs: object) -> list:
            await gate.wait()
            return await runner.run(inputs, outputs)  # type: ignore[arg-type]

        batcher = Batcher("digits:1", held, BatchSettings(max_batch_size=8), monitor.observer(digits))
        await batcher.start()
        first = monitor.note("rest", time.perf_counter())
        second = monitor.note("rest", time.perf_counter())
        blocker = asyncio.create_task(batcher.submit({"input": x}))  # holds the worker at the gate
        await asyncio.sleep(0)
        calls = [asyncio.create_task(batcher.submit({"input": x}, None, n)) for n in (first, second)]
        while batcher.queued < 2:
            await asyncio.sleep(0)
        gate.set()
        await blocker
        while not calls[0].done():
            await asyncio.sleep(0)
        calls[1].cancel()
        monitor.answered(first)
        monitor.unanswered(second)  # as DataPlane.infer settles a request given up
        await asyncio.gather(*calls, return_exceptions=True)
        await batcher.aclose()
        return first, second

    first, second = asyncio.run(main())
    runner.unload()
    stats = monitor.version(digits).triton_stats()
    assert stats["inference_count"] == 3 and stats["inference_stats"]["success"]["count"] == 1
    assert monitor.recent.lookup(first[0]) is not None and monitor.recent.lookup(second[0]) is None
    monitor.close()
    assert [r.request_id for r in sink.records] == [first[0]]


def test_closing_counts_every_run_reported(digits: VersionRecord) -> None:
    sink = Kept()
    monitor = Monitor(MonitorSettings(), sink)
    monitor.start()
    x = digits_data()[0][:1]
    never = monitor.note("rest", time.perf_counter())  # a caller that never settled
    ran = Ran(1, {"input": x}, None, True, [1], [0.0], 0.001, [never])
    monitor.observer(digits).batch_done(ran, [digits_linear().logits(x)])
    monitor.close()
    assert monitor.version(digits).triton_stats()["inference_count"] == 1 and sink.records == []


def test_runs_with_large_inputs_are_counted_sooner(digits: VersionRecord) -> None:
    """The runs kept till a flush hold their inputs: FLUSH_BYTES of them flush as FLUSH_EVERY rows do."""
    monitor = Monitor(MonitorSettings())
    labels = {"model": "digits", "version": "1", "protocol": "rest", "status": "200"}
    x = digits_data()[0][:1]
    large = np.zeros((1, FLUSH_BYTES // 4), np.float32)  # one row of FLUSH_BYTES
    answer(monitor, digits, {"input": x}, digits_linear().logits(x))
    assert monitor.metrics.registry.get_sample_value("shipyard_requests_total", labels) is None
    answer(monitor, digits, {"input": large}, digits_linear().logits(x))
    assert monitor.metrics.registry.get_sample_value("shipyard_requests_total", labels) == 2

"""The batcher alone: a plain asyncio object driven by plain coroutines (no web, no sockets).

Runs are gated by asyncio events where a test needs requests to pile up, so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from shipyard.errors import DeadlineExceeded, Overloaded, ShipyardError
from shipyard.runtime import Runner, RunnerOptions
from shipyard.runtime.batcher import Batcher, BatchSettings, Ran
from tests.models import digits_data, digits_linear


class Recorder:
    """A model that doubles its input, records each run's rows, and can be held at the gate."""

    def __init__(self) -> None:
        self.runs: list[list[float]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None
    ) -> list[np.ndarray]:
        x = inputs["x"]
        self.runs.append(x[:, 0].tolist())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.started.set()
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        if (x < 0).any():
            raise ShipyardError("negative input")
        return [x * 2]


def req(value: float, rows: int = 1, width: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, width), value, dtype=np.float32)}


async def started(batcher: Batcher, recorder: Recorder, inputs: dict[str, np.ndarray]) -> asyncio.Task:
    """Submit a request and return once its run has begun (and is held at the gate)."""
    recorder.started.clear()
    task = asyncio.create_task(batcher.submit(inputs))
    await recorder.started.wait()
    return task


async def queued(batcher: Batcher, n: int) -> None:
    while batcher.queued < n:
        await asyncio.sleep(0)  # yield to let the submitting tasks reach the queue


def test_every_caller_gets_what_it_would_get_alone() -> None:
    X, _ = digits_data()
    runner = Runner("digits:1", digits_linear().onnx_bytes, RunnerOptions(intra_op_threads=1, instances=2))
    runner.load()
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4, size=60)
    starts = np.concatenate([[0], np.cumsum(sizes)])[:-1]

    async def main() -> list[list[np.ndarray]]:
        batcher = Batcher("digits:1", runner.run, BatchSettings(max_batch_size=16, instances=2))
        await batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit({"input": X[s : s + n]}) for s, n in zip(starts, sizes, strict=True))
            )
        finally:
            await batcher.aclose()

    results = asyncio.run(main())
    for (logits,), s, n in zip(results, starts, sizes, strict=True):
        (alone,) = runner.run_sync({"input": X[s : s + n]})
        assert logits.shape == (n, 10)
        np.testing.assert_array_equal(logits, alone)
    runner.unload()


def test_requests_batch_only_while_the_worker_is_busy() -> None:
    async def main() -> Recorder:
        rec = Recorder()
        batcher = Batcher("m", rec, BatchSettings(max_batch_size=8))
        await batcher.start()
        alone = await batcher.submit(req(1))  # idle worker: runs at once, alone
        np.testing.assert_array_equal(alone[0], req(2)["x"])
        rec.gate.clear()
        first = await started(batcher, rec, req(10))
        waiting = [asyncio.create_task(batcher.submit(req(v))) for v in (20, 21, 22)]
        await queued(batcher, 3)
        rec.gate.set()
        results = await asyncio.gather(first, *waiting)
        assert [r[0][0, 0] for r in results] == [20, 40, 42, 44]  # in order, each its own rows
        await batcher.aclose()
        return rec

    rec = asyncio.run(main())
    assert rec.runs == [[1], [10], [20, 21, 22]]


def test_max_batch_size_and_shapes_are_respected() -> None:
    async def main() -> Recorder:
        rec = Recorder()
        batcher = Batcher("m", rec, BatchSettings(max_batch_size=4))
        await batcher.start()
        rec.gate.clear()
        first = await started(batcher, rec, req(0))
        waiting = [
            asyncio.create_task(batcher.submit(req(1, rows=3))),
            asyncio.create_task(batcher.submit(req(2, width=3))),  # other shape: never mixed
            asyncio.create_task(batcher.submit(req(3, rows=2))),  # does not fit with the 3 rows
            asyncio.create_task(batcher.submit(req(4))),
        ]
        await queued(batcher, 4)
        rec.gate.set()
        await asyncio.gather(first, *waiting)
        await batcher.aclose()
        return rec

    rec = asyncio.run(main())
    assert rec.runs == [[0], [1, 1, 1, 4], [2], [3, 3]]


def test_full_queue_is_refused_at_once() -> None:
    async def main() -> None:
        rec = Recorder()
        batcher = Batcher("m", rec, BatchSettings(max_queue_size=2))
        await batcher.start()
        rec.gate.clear()
        first = await started(batcher, rec, req(0))
        waiting = [asyncio.create_task(batcher.submit(req(v))) for v in (1, 2)]
        await queued(batcher, 2)
        with pytest.raises(Overloaded, match="overloaded"):
            await batcher.submit(req(3))
        rec.gate.set()
        await asyncio.gather(first, *waiting)
        await batcher.aclose()

    asyncio.run(main())


def test_timed_out_and_cancelled_requests_are_never_run() -> None:
    async def main() -> Recorder:
        rec = Recorder()
        batcher = Batcher("m", rec, BatchSettings(max_batch_size=1, timeout_s=0.05))
        await batcher.start()
        rec.gate.clear()
        first = asyncio.create_task(batcher.submit(req(0)))
        await rec.started.wait()
        late = asyncio.create_task(batcher.submit(req(1)))
        cancelled = asyncio.create_task(batcher.submit(req(2)))
        await queued(batcher, 2)
        cancelled.cancel()
        with pytest.raises(DeadlineExceeded, match=r"no answer within 0\.05 s"):
            await late
        with pytest.raises(DeadlineExceeded):
            await first  # its run started but the caller's deadline passed
        rec.gate.set()
        after = await batcher.submit(req(3))
        assert after[0][0, 0] == 6
        await batcher.aclose()
        return rec

    rec = asyncio.run(main())
    assert rec.runs == [[0], [3]]


def test_a_failed_batch_fails_only_its_callers() -> None:
    async def main() -> None:
        rec = Recorder()
        batcher = Batcher("m", rec, BatchSettings(max_batch_size=1))
        await batcher.start()
        bad, good = await asyncio.gather(
            batcher.submit(req(-1)), batcher.submit(req(5)), return_exceptions=True
        )
        assert isinstance(bad, ShipyardError) and "negative" in str(bad)
        assert good[0][0, 0] == 10
        await batcher.aclose()

    asyncio.run(main())


def test_outputs_with_other_row_counts_break_the_contract_clearly() -> None:
    async def summed(inputs: dict[str, np.ndarray], outputs: Sequence[str] | None) -> list[np.ndarray]:
        return [inputs["x"].sum(axis=0, keepdims=True)]

    async def main() -> list[object]:
        gate = asyncio.Event()

        async def held(inputs: dict[str, np.ndarray], outputs: Sequence[str] | None) -> list[np.ndarray]:
            await gate.wait()
            return await summed(inputs, outputs)

        batcher = Batcher("m", held, BatchSettings(max_batch_size=4))
        await batcher.start()
        first = asyncio.create_task(batcher.submit(req(1)))
        await asyncio.sleep(0)
        others = [asyncio.create_task(batcher.submit(req(v))) for v in (2, 3)]
        await queued(batcher, 2)
        gate.set()
        results = await asyncio.gather(first, *others, return_exceptions=True)
        await batcher.aclose()
        return results

    alone, *merged = asyncio.run(main())
    assert isinstance(alone, list)
    assert all(isinstance(r, ShipyardError) and "output rows must equal input rows" in str(r) for r in merged)


def test_instances_run_concurrently_and_close_drains_the_queue() -> None:
    async def main() -> Recorder:
        rec = Recorder()
        batcher = Batcher("m", rec, BatchSettings(max_batch_size=1, instances=2))
        await batcher.start()
        rec.gate.clear()
        tasks = [asyncio.create_task(batcher.submit(req(v))) for v in range(4)]
        while rec.in_flight < 2:
            await asyncio.sleep(0)
        rec.gate.set()
        closing = asyncio.create_task(batcher.aclose())
        results = await asyncio.gather(*tasks)
        await closing
        assert [r[0][0, 0] for r in results] == [0, 2, 4, 6]
        return rec

    rec = asyncio.run(main())
    assert rec.most_in_flight == 2 and len(rec.runs) == 4


def test_queue_delay_waits_for_a_fuller_batch() -> None:
    async def main() -> Recorder:
        rec = Recorder()
        batcher = Batcher("m", rec, BatchSettings(max_batch_size=3, max_queue_delay_us=5_000_000))
        await batcher.start()
        first = asyncio.create_task(batcher.submit(req(0)))
        await queued(batcher, 1)
        while batcher.queued:  # the worker has taken it and now waits for more
            await asyncio.sleep(0)
        assert rec.runs == []
        results = await asyncio.gather(first, batcher.submit(req(1)), batcher.submit(req(2)))
        assert [r[0][0, 0] for r in results] == [0, 2, 4]
        await batcher.aclose()
        return rec

    rec = asyncio.run(main())
    assert rec.runs == [[0, 1, 2]]  # the batch closed when full, long before the 5 s delay


class Reports:
    """An observer that keeps each run it is told of, and which of the run's notes were marked by
    then (a note: a caller's dict, marked once the caller has its answer)."""

    def __init__(self) -> None:
        self.runs: list[Ran] = []
        self.outputs: list[list[np.ndarray]] = []
        self.marked: list[list[bool]] = []

    def batch_done(self, ran: Ran, outputs: list[np.ndarray]) -> None:
        self.runs.append(ran)
        self.outputs.append(outputs)
        self.marked.append([bool(note and note["answered"]) for note in ran.notes])  # type: ignore[index]


def test_the_observer_hears_each_run_with_its_requests_notes_once_they_were_answered() -> None:
    async def main() -> Reports:
        rec, reports = Recorder(), Reports()
        batcher = Batcher("m", rec, BatchSettings(max_batch_size=8), reports)
        await batcher.start()

        async def call(value: float, rows: int) -> None:
            note = {"value": value, "answered": False}
            await batcher.submit(req(value, rows), None, note)
            note["answered"] = True  # the caller's next step: its answer is out

        rec.gate.clear()
        first = asyncio.create_task(call(10, 1))
        await rec.started.wait()
        waiting = [asyncio.create_task(call(v, n)) for v, n in ((20, 2), (21, 1), (22, 3))]
        await queued(batcher, 3)
        rec.gate.set()
        await asyncio.gather(first, *waiting)
        await batcher.aclose()
        return reports

    reports = asyncio.run(main())
    assert [[note["value"] for note in run.notes] for run in reports.runs] == [[10], [20, 21, 22]]  # type: ignore[index]
    assert [run.sizes for run in reports.runs] == [[1], [2, 1, 3]] and reports.runs[1].rows == 6
    assert reports.outputs[1][0][:, 0].tolist() == [40, 40, 42, 44, 44, 44] and reports.runs[1].ok
    assert reports.marked == [[True], [True, True, True]]  # every caller answered before the report

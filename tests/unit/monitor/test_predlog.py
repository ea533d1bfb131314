"""The prediction log's hot path: sampling, rate cap, a bounded queue that drops instead of waiting."""

from __future__ import annotations

import io
import json
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from shipyard.monitor.logfiles import ParquetSink
from shipyard.monitor.logread import read_predictions
from shipyard.monitor.predlog import PredictionLog, PredictionRecord
from shipyard.monitor.recent import RecentPredictions

BASE = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


class ListSink:
    """Keeps what it is given, in memory."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []
        self.closed = False

    def write(self, records: Sequence[PredictionRecord]) -> None:
        self.records.extend(records)

    def poll(self) -> float | None:
        return None

    def close(self) -> None:
        self.closed = True


class BlockingSink(ListSink):
    """A disk that hangs: write() waits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, records: Sequence[PredictionRecord]) -> None:
        self.entered.set()
        assert self.release.wait(timeout=30), "the test never released the writer"
        super().write(records)


class FailingSink(ListSink):
    def __init__(self, fail_first: int) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.calls = 0

    def write(self, records: Sequence[PredictionRecord]) -> None:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise OSError("disk full")
        super().write(records)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def seconds_from(start: datetime) -> Iterator[float]:
    """A wall clock that ticks one second per record."""
    t = start.timestamp()
    while True:
        yield t
        t += 1.0


def offer(log: PredictionLog, i: int, **kwargs: object) -> bool:
    return log.offer(f"req-{i}", "digits", 1, "rest", latency_ms=1.0, **kwargs)  # type: ignore[arg-type]


def test_round_trip_through_parquet_keeps_every_field_and_type(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(1, 64)).astype(np.float32) for _ in range(40)]
    wall = seconds_from(BASE)
    with PredictionLog(
        ParquetSink(tmp_path, keep_inputs=True), max_per_second=None, wall_clock=lambda: next(wall)
    ) as log:
        for i, x in enumerate(inputs):
            accepted = log.offer(
                f"req-{i}",
                "digits",
                3,
                "grpc" if i % 2 else "rest",
                latency_ms=0.5 + i,
                status=200 if i < 39 else 503,
                inputs=x,
                output={"scores": np.arange(3, dtype=np.float32) * i} if i < 39 else None,
                class_=str(i % 10) if i < 39 else None,
                confidence=0.5 if i < 39 else None,
            )
            assert accepted
    assert log.counters().written == 40 and log.counters().queued == 0

    table = read_predictions(tmp_path, "digits")
    assert table.num_rows == 40
    rows = table.to_pylist()
    for i, (row, x) in enumerate(zip(rows, inputs, strict=True)):
        assert row["request_id"] == f"req-{i}"
        assert row["time"] == BASE + timedelta(seconds=i)
        assert (row["model"], row["version"]) == ("digits", 3)
        assert row["protocol"] == ("grpc" if i % 2 else "rest")
        assert row["input_mean"] == pytest.approx(float(x.astype(np.float64).mean()))
        assert row["input_std"] == pytest.approx(float(x.astype(np.float64).std()))
        assert (row["input_min"], row["input_max"]) == (pytest.approx(x.min()), pytest.approx(x.max()))
        np.testing.assert_array_equal(np.load(io.BytesIO(row["input"]), allow_pickle=False), x)
        assert row["latency_ms"] == 0.5 + i
    assert json.loads(rows[2]["output"]) == {"scores": [0.0, 2.0, 4.0]}
    assert (rows[2]["class"], rows[2]["confidence"], rows[2]["status"]) == ("2", 0.5, 200)
    assert (rows[39]["output"], rows[39]["class"], rows[39]["confidence"], rows[39]["status"]) == (
        None,
        None,
        None,
        503,
    )

    # the last 10 s before BASE + 40 s: requests 30..39
    recent = read_predictions(tmp_path, "digits", since="10s", now=BASE + timedelta(seconds=40))
    assert recent.column("request_id").to_pylist() == [f"req-{i}" for i in range(30, 40)]
    window = read_predictions(
        tmp_path, "digits", since=BASE + timedelta(seconds=5), until=BASE + timedelta(seconds=8)
    )
    assert window.column("request_id").to_pylist() == ["req-5", "req-6", "req-7"]


def test_the_default_sink_is_parquet_under_a_folder(tmp_path: Path) -> None:
    with PredictionLog(tmp_path / "log") as log:
        assert offer(log, 0, output="already JSON")
    assert read_predictions(tmp_path / "log", "digits").column("output").to_pylist() == ["already JSON"]


def test_sampling_keeps_the_configured_fraction() -> None:
    draws = iter([0.0, 0.25, 0.5, 0.75] * 25)
    sink = ListSink()
    log = PredictionLog(sink, sample_fraction=0.5, max_per_second=None, random=lambda: next(draws))
    accepted = [offer(log, i) for i in range(100)]
    log.close()
    assert accepted == [True, True, False, False] * 25
    counters = log.counters()
    assert (counters.offered, counters.sampled_out, counters.written) == (100, 50, 50)
    assert [r.request_id for r in sink.records] == [f"req-{i}" for i in range(100) if i % 4 < 2]


def test_the_rate_cap_is_a_token_bucket_on_the_monotonic_clock() -> None:
    clock = FakeClock()
    sink = ListSink()
    log = PredictionLog(sink, max_per_second=10, clock=clock)
    assert sum(offer(log, i) for i in range(15)) == 10  # a burst of one second's worth
    clock.now = 0.5
    assert sum(offer(log, i) for i in range(10)) == 5  # half a second refills 5
    clock.now = 100.0
    assert sum(offer(log, i) for i in range(20)) == 10  # idle time never saves more than the burst
    log.close()
    counters = log.counters()
    assert (counters.offered, counters.rate_limited, counters.written) == (45, 20, 25)
    assert len(sink.records) == 25


def test_sampled_out_requests_spend_no_tokens() -> None:
    draws = iter([0.9, 0.1] * 10)
    log = PredictionLog(
        ListSink(), sample_fraction=0.5, max_per_second=5, clock=FakeClock(), random=lambda: next(draws)
    )
    assert sum(offer(log, i) for i in range(20)) == 5
    counters = log.counters()
    assert (counters.sampled_out, counters.rate_limited, counters.queued) == (10, 5, 5)
    log.close()


def test_a_full_queue_drops_and_counts_without_waiting_for_a_blocked_writer() -> None:
    sink = BlockingSink()
    size = 1000
    log = PredictionLog(sink, max_per_second=None, queue_size=size)
    log.start()
    assert offer(log, -1)
    assert sink.entered.wait(timeout=30)  # the writer now holds record -1 and hangs

    def timed_offers(start: int) -> tuple[list[bool], list[int]]:
        results, costs = [], []
        for i in range(start, start + size):
            t0 = time.perf_counter_ns()
            results.append(offer(log, i))
            costs.append(time.perf_counter_ns() - t0)
        return results, costs

    filling, filling_ns = timed_offers(0)
    full, full_ns = timed_offers(size)
    assert all(filling) and not any(full)
    counters = log.counters()
    assert (counters.offered, counters.dropped_full, counters.queued) == (2 * size + 1, size, size)
    # offers into a full queue cost what offers into an empty one cost: nothing waits for the writer
    assert statistics.median(full_ns) < 50 * statistics.median(filling_ns)
    assert max(filling_ns + full_ns) < 50_000_000

    sink.release.set()
    assert log.close(timeout=30)
    assert [r.request_id for r in sink.records] == [f"req-{i}" for i in range(-1, size)]
    counters = log.counters()
    assert (counters.written, counters.dropped_full, counters.queued, counters.failed) == (
        size + 1,
        size,
        0,
        0,
    )
    assert sink.closed


def test_a_failing_sink_counts_its_records_as_failed_and_the_writer_goes_on() -> None:
    sink = FailingSink(fail_first=1)
    log = PredictionLog(sink, max_per_second=None)
    for i in range(3):
        offer(log, i)
    log.close()  # never started: close() drains on the calling thread, in one batch that fails
    assert (log.counters().failed, log.counters().written) == (3, 0)

    sink = FailingSink(fail_first=1)
    log = PredictionLog(sink, max_per_second=None)
    log.start()
    offer(log, 0)
    log.close()
    assert sink.calls == 1 and log.counters().failed == 1
    assert sink.closed


def test_close_writes_what_is_queued_then_refuses_more() -> None:
    sink = ListSink()
    log = PredictionLog(sink, max_per_second=None)
    for i in range(5):
        offer(log, i)
    assert log.counters().queued == 5
    log.close()
    assert len(sink.records) == 5 and sink.closed
    assert not offer(log, 5)
    counters = log.counters()
    assert (counters.offered, counters.dropped_closed, counters.written) == (6, 1, 5)


def test_every_offered_prediction_is_in_the_recent_index_at_once() -> None:
    recent = RecentPredictions(capacity=10)
    sink = BlockingSink()
    log = PredictionLog(sink, sample_fraction=0.0, recent=recent)
    log.start()
    log.offer("a", "digits", 2, "predict", latency_ms=1.0, class_="7")
    log.offer("", "digits", 2, "predict", latency_ms=1.0, class_="1")  # no id: nothing to look up later
    found = recent.lookup("a")
    assert found is not None and (found.model, found.version, found.class_) == ("digits", 2, "7")
    assert len(recent) == 1 and log.counters().sampled_out == 2
    sink.release.set()
    log.close()


@pytest.mark.parametrize(
    "kwargs",
    [{"sample_fraction": 1.5}, {"sample_fraction": -0.1}, {"max_per_second": 0}, {"queue_size": 0}],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PredictionLog(ListSink(), **kwargs)  # type: ignore[arg-type]


def test_start_twice_is_an_error() -> None:
    log = PredictionLog(ListSink())
    log.start()
    with pytest.raises(RuntimeError):
        log.start()
    log.close()


def test_answers_admitted_together_are_sampled_capped_and_bounded_as_single_offers_are() -> None:
    clock = FakeClock()
    draws = iter([0.0, 0.9] * 50)
    sink = ListSink()
    log = PredictionLog(
        sink, sample_fraction=0.5, max_per_second=10, queue_size=4, clock=clock, random=lambda: next(draws)
    )
    chosen = log.admit(30)  # 15 sampled in, 10 of them within the burst, 4 of those fit the queue
    assert chosen == [0, 2, 4, 6]
    records = [PredictionRecord(f"req-{i}", 0.0, "digits", 1, "rest", None, None, None, None, 1.0, 200)
               for i in chosen]  # fmt: skip
    assert log.queue(records) == 4
    assert log.admit(5) == []  # 3 sampled in, and no token left for them
    log.close()
    counters = log.counters()
    assert (counters.offered, counters.sampled_out, counters.rate_limited) == (35, 15 + 2, 5 + 3)
    assert (counters.dropped_full, counters.written) == (6, 4)
    assert counters.offered == (
        counters.sampled_out + counters.rate_limited + counters.dropped_full + counters.written
    )


def test_records_admitted_before_the_log_closes_are_counted_as_dropped() -> None:
    log = PredictionLog(ListSink(), max_per_second=None)
    chosen = log.admit(3)
    log.close()
    records = [PredictionRecord(f"req-{i}", 0.0, "digits", 1, "rest", None, None, None, None, 1.0, 200)
               for i in chosen]  # fmt: skip
    assert log.queue(records) == 0
    counters = log.counters()
    assert (counters.offered, counters.dropped_closed, counters.written, counters.queued) == (3, 3, 0, 0)

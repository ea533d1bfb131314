"""The prediction log's files: rotation by size and by age, atomic names, files a reader can trust."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.errors import InvalidInput
from shipyard.monitor.logfiles import (
    SCHEMA,
    ParquetSink,
    encode_npy,
    encode_output,
    file_name,
    file_span,
    model_dir,
    summarize,
)
from shipyard.monitor.logread import find_predictions, read_predictions
from shipyard.monitor.predlog import PredictionRecord
from shipyard.monitor.recent import RecentPrediction

T0 = datetime(2025, 1, 31, 12, 0, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def records(start: int, count: int, model: str = "digits", width: int = 8) -> list[PredictionRecord]:
    """Records start..start+count-1, one second apart; inputs of random floats, which compress badly."""
    rng = np.random.default_rng(start)
    return [
        PredictionRecord(
            request_id=f"req-{i}",
            time=T0 + i,
            model=model,
            version=1,
            protocol="rest",
            inputs=rng.random((1, width), dtype=np.float32),
            output={"scores": [i]},
            class_=str(i),
            confidence=0.5,
            latency_ms=1.0,
            status=200,
        )
        for i in range(start, start + count)
    ]


def finished(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if file_span(p.name) is not None)


def temporary(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def ids(table: pa.Table) -> list[str]:
    return table.column("request_id").to_pylist()  # type: ignore[no-any-return]


def test_files_rotate_by_age_and_an_idle_file_closes_on_poll(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = ParquetSink(tmp_path, max_file_age_s=5.0, clock=clock)
    folder = tmp_path / "digits"
    assert sink.poll() is None  # nothing open: the writer may sleep until the next record

    sink.write(records(0, 3))
    clock.now = 2.0
    sink.write(records(3, 3))
    assert sink.poll() == pytest.approx(3.0)  # the file opened at 0 falls due at 5
    assert finished(folder) == [] and len(temporary(folder)) == 1

    clock.now = 5.0
    assert sink.poll() is None  # idle, due: closed without waiting for another record
    assert len(finished(folder)) == 1 and temporary(folder) == []

    sink.write(records(6, 2))  # opens a file at 5
    clock.now = 11.0
    sink.write(records(8, 2))  # the file of 5 is due: closed, these go to a new one
    sink.close()

    files = finished(folder)
    assert [pq.read_table(f).num_rows for f in files] == [6, 2, 2]
    assert temporary(folder) == []
    assert ids(read_predictions(tmp_path, "digits")) == [f"req-{i}" for i in range(10)]


def test_files_rotate_by_size_into_complete_files(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, max_file_bytes=64 * 1024, keep_inputs=True, row_group_rows=4)
    batch = records(0, 100, width=1000)  # about 4 KB per record, even compressed
    for start in range(0, 100, 7):
        sink.write(batch[start : start + 7])
    sink.close()

    files = finished(tmp_path / "digits")
    assert len(files) >= 5
    assert sink.files_written == len(files)
    tables = [pq.read_table(f) for f in files]  # each is a whole Parquet file on its own
    assert all(t.schema.equals(SCHEMA, check_metadata=True) for t in tables)
    assert sum(t.num_rows for t in tables) == 100
    assert any(pq.ParquetFile(f).metadata.num_row_groups > 1 for f in files)
    assert all(f.stat().st_size < 2 * 64 * 1024 for f in files)
    table = read_predictions(tmp_path, "digits")
    assert ids(table) == [f"req-{i}" for i in range(100)]
    last = np.load(io.BytesIO(table.column("input")[99].as_py()))
    np.testing.assert_array_equal(last, batch[99].inputs)


def test_one_large_write_keeps_to_the_row_group_and_file_limits(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, max_file_bytes=64 * 1024, keep_inputs=True, row_group_rows=10)
    sink.write(records(0, 300, width=1000))  # about 1.2 MB in one write, as a busy writer gets it
    sink.close()

    files = finished(tmp_path / "digits")
    assert len(files) >= 10
    metadata = [pq.ParquetFile(f).metadata for f in files]
    assert all(m.row_group(i).num_rows <= 10 for m in metadata for i in range(m.num_row_groups))
    assert all(f.stat().st_size < 2 * 64 * 1024 for f in files)
    assert ids(read_predictions(tmp_path, "digits")) == [f"req-{i}" for i in range(300)]


def test_each_model_has_its_own_folder(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.write(records(0, 2, model="digits") + records(2, 3, model="iris"))
    sink.close()
    assert ids(read_predictions(tmp_path, "digits")) == ["req-0", "req-1"]
    assert ids(read_predictions(tmp_path, "iris")) == ["req-2", "req-3", "req-4"]
    assert read_predictions(tmp_path, "unknown").num_rows == 0


def test_an_open_file_is_never_read_and_a_leftover_temporary_file_is_ignored(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.write(records(0, 5))
    folder = tmp_path / "digits"
    assert len(temporary(folder)) == 1
    assert read_predictions(tmp_path, "digits").num_rows == 0  # still being written: not visible yet

    (folder / ".000099-deadbeef.parquet.tmp").write_bytes(b"PAR1 cut short by a crash")
    (folder / "notes.txt").write_text("not a log file")
    sink.close()
    table = read_predictions(tmp_path, "digits")
    assert ids(table) == [f"req-{i}" for i in range(5)]
    assert table.schema.equals(SCHEMA)


def test_files_wholly_before_since_are_skipped_by_name_unopened(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.write(records(0, 3))
    sink.close()
    long_ago = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
    (tmp_path / "digits" / file_name(long_ago, long_ago + 1, 1, "00ff")).write_bytes(b"not parquet")

    since = datetime.fromtimestamp(T0, UTC) - timedelta(days=1)
    assert ids(read_predictions(tmp_path, "digits", since=since)) == ["req-0", "req-1", "req-2"]
    with pytest.raises(pa.ArrowInvalid):  # the same file is read when the range includes it
        read_predictions(tmp_path, "digits")


def test_predictions_are_found_by_id_in_the_newest_files_first(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = ParquetSink(tmp_path, max_file_age_s=5.0, clock=clock)
    for file in range(4):  # four files of five records, one second apart
        clock.now = 10.0 * file
        sink.write(records(5 * file, 5))
    again = records(17, 1)[0]._replace(request_id="req-2", version=2, class_="new")  # an id seen twice
    sink.write([again])
    sink.close()
    (tmp_path / "digits" / file_name(int(T0 * 1e6) + 1, int(T0 * 1e6) + 2, 99, "00ff")).write_bytes(b"junk")
    now = datetime.fromtimestamp(T0 + 20, UTC)

    found = find_predictions(tmp_path, "digits", ["req-0", "req-2", "req-19", "nope"], now=now)
    assert found == {
        "req-0": RecentPrediction("digits", 1, "0"),
        "req-2": RecentPrediction("digits", 2, "new"),  # the newest record of an id wins
        "req-19": RecentPrediction("digits", 1, "19"),
    }
    assert find_predictions(tmp_path, "digits", ["req-0", "req-19"], max_files=1, now=now) == {
        "req-19": RecentPrediction("digits", 1, "19")
    }
    recent_only = find_predictions(
        tmp_path, "digits", ["req-0", "req-12"], max_age=timedelta(seconds=9), now=now
    )
    assert list(recent_only) == ["req-12"]  # the files before T0 + 11 are too old to be searched
    assert find_predictions(tmp_path, "iris", ["req-0"], now=now) == {}
    assert find_predictions(tmp_path, "digits", [], now=now) == {}


def test_file_names_sort_by_time_and_give_back_their_span() -> None:
    t = int(T0 * 1_000_000)
    names = [file_name(t + d, t + d + 999, seq, "ab12") for seq, d in [(3, 0), (1, 5_000_000), (2, 17)]]
    assert [file_span(n) for n in names] == [(t, t + 999), (t + 5_000_000, t + 5_000_999), (t + 17, t + 1016)]
    assert sorted(names) == [names[0], names[2], names[1]]
    assert names[0] == "20250131T120000000000Z-20250131T120000000999Z-000003-ab12.parquet"
    assert file_span(".000003-ab12.parquet.tmp") is None


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x" * 129])
def test_model_names_that_could_escape_the_root_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="bad model name"):
        model_dir(tmp_path, name)
    sink = ParquetSink(tmp_path)
    with pytest.raises(InvalidInput):
        sink.write(records(0, 1, model=name))
    assert list(tmp_path.iterdir()) == []


def test_summaries_and_encodings() -> None:
    assert summarize(np.array([[1, 2], [3, 6]], dtype=np.int64)) == (
        3.0,
        pytest.approx(1.8708, abs=1e-4),
        1.0,
        6.0,
    )
    assert summarize(np.array([True, False])) == (0.5, 0.5, 0.0, 1.0)
    assert summarize(np.array(["a", "b"])) == (None, None, None, None)
    assert summarize(np.zeros((0, 4), np.float32)) == (None, None, None, None)
    assert summarize(None) == (None, None, None, None)
    text = np.array(["a", "bc"])
    npy = encode_npy(text)
    assert npy is not None
    np.testing.assert_array_equal(np.load(io.BytesIO(npy)), text)
    assert encode_npy(np.array([b"x", None], dtype=object)) is None
    assert encode_output({"scores": np.array([0.5, 0.25], np.float32)}) == '{"scores":[0.5,0.25]}'
    assert encode_output(b'{"a":1}') == '{"a":1}'
    assert encode_output({1: "non-string key"}) is None
    assert encode_output(None) is None


def test_a_record_that_cannot_be_stored_spoils_no_file(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.write(records(0, 2))
    bad = records(2, 1)[0]._replace(version="two")
    with pytest.raises(ValueError):
        sink.write([bad])
    sink.write(records(3, 1))
    sink.close()
    assert ids(read_predictions(tmp_path, "digits")) == ["req-0", "req-1", "req-3"]


def test_the_first_write_imports_nothing_while_serving(tmp_path: Path) -> None:
    """What pyarrow loads on its first conversion (pandas, where installed, ~150 ms holding the GIL)
    is loaded as the sink is made, before serving: not on the writer's first flush, where it stopped
    the server's event loop. A fresh interpreter, so that nothing was loaded before."""
    import subprocess
    import sys

    script = f"""
import sys
from shipyard.monitor.logfiles import ParquetSink
from tests.unit.monitor.test_predlog_files import records
sink = ParquetSink({str(tmp_path)!r})
before = set(sys.modules)
sink.write(records(0, 3))
sink.close()
print(sorted(set(sys.modules) - before))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.bool_, np.int64, np.float32])
def test_summaries_of_every_numeric_type_match_float64_arithmetic(dtype: type) -> None:
    from shipyard.monitor.logfiles import summarize_all

    rng = np.random.default_rng(0)
    rows = [
        rng.integers(-100 if np.dtype(dtype).kind == "i" else 0, 256, (8, 8, 3)).astype(dtype)
        for _ in range(3)
    ]
    for row, (mean, std, low, high) in zip(rows, summarize_all(rows), strict=True):
        wide = row.astype(np.float64)
        assert (mean, std, low, high) == pytest.approx(
            (wide.mean(), wide.std(), wide.min(), wide.max()), rel=1e-9
        )

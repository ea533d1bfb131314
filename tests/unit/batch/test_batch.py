"""Batch jobs over files made here (shipyard/batch/): every input format, the outputs and what they
record, bad rows, and a job stopped part-way going on to an output with every row exactly once."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.batch import Job, Predictions, run
from shipyard.errors import Conflict, InvalidInput
from shipyard.registry import Registry
from tests.models import digits_linear
from tests.unit.batch.conftest import X, Y, bad_csv, expected_classes, parquet


def read(output: Path) -> pa.Table:
    """The output folder as a reader of Parquet datasets sees it: one table (the manifest and the
    errors files are named to be skipped)."""
    return pq.read_table(output)


def test_a_parquet_file_is_scored_part_by_part(digits: Registry, tmp_path: Path) -> None:
    source = parquet(tmp_path / "in.parquet")
    summary = run(digits, Job("digits:production", str(source), tmp_path / "out", keep=("id",), part_rows=64))
    assert (summary.rows, summary.errors, summary.parts, summary.resumed_parts) == (300, 0, 5, 0)
    table = read(tmp_path / "out")
    assert table.column_names == ["id", "class", "confidence"]
    assert table.column("id").to_pylist() == list(range(300))
    assert table.column("class").to_pylist() == expected_classes(slice(0, 300))
    meta = pq.read_schema(tmp_path / "out" / "part-00000.parquet").metadata
    assert meta[b"shipyard.model"] == b"digits" and meta[b"shipyard.version"] == b"1"
    manifest = orjson.loads((tmp_path / "out" / "_manifest.json").read_bytes())
    assert manifest["done"] and [p["rows"] for p in manifest["parts"]] == [64, 64, 64, 64, 44]


def test_runs_at_once_keep_the_rows_in_order(digits: Registry, tmp_path: Path) -> None:
    source = parquet(tmp_path / "in.parquet")
    job = Job("digits", str(source), tmp_path / "out", keep=("id",), part_rows=50, batch_rows=7, threads=3)
    summary = run(digits, job)
    assert (summary.rows, summary.parts) == (300, 6)
    table = read(tmp_path / "out")
    assert table.column("id").to_pylist() == list(range(300))
    assert table.column("class").to_pylist() == expected_classes(slice(0, 300))


@pytest.mark.parametrize("kind", ["csv", "jsonl", "npy", "npz"])
def test_every_input_format_gives_the_same_predictions(digits: Registry, tmp_path: Path, kind: str) -> None:
    source = tmp_path / f"in.{kind}"
    rows = X[:100]
    if kind == "csv":
        with source.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([f"p{i}" for i in range(64)])
            writer.writerows(rows.tolist())
    elif kind == "jsonl":
        source.write_text(
            "".join(json.dumps({f"p{i}": v for i, v in enumerate(r)}) + "\n" for r in rows.tolist())
        )
    elif kind == "npy":
        np.save(source, rows)
    else:
        np.savez(source, X=rows, y=Y[:100])
    run(digits, Job("digits", str(source), tmp_path / "out", part_rows=40))
    assert read(tmp_path / "out").column("class").to_pylist() == expected_classes(slice(0, 100))


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_other_output_formats_hold_the_same_rows(digits: Registry, tmp_path: Path, kind: str) -> None:
    run(
        digits, Job("digits", str(parquet(tmp_path / "in.parquet", 50)), tmp_path / "out", kind, keep=("id",))
    )
    text = (tmp_path / "out" / f"part-00000.{kind}").read_text()
    if kind == "csv":
        classes = [row["class"] for row in csv.DictReader(text.splitlines())]
    else:
        classes = [json.loads(line)["class"] for line in text.splitlines()]
    assert classes == expected_classes(slice(0, 50))


def test_raw_outputs_instead_of_classes(digits: Registry, tmp_path: Path) -> None:
    source = parquet(tmp_path / "in.parquet", 20)
    run(digits, Job("digits", str(source), tmp_path / "out", keep=("id",), predictions=Predictions("raw")))
    logits = np.array(read(tmp_path / "out").column("logits").to_pylist())
    np.testing.assert_allclose(logits, digits_linear().logits(X[:20]), rtol=1e-5, atol=1e-4)


def test_bad_rows_go_to_the_errors_file_up_to_the_limit(digits: Registry, tmp_path: Path) -> None:
    source = bad_csv(tmp_path / "in.csv")
    summary = run(digits, Job("digits", str(source), tmp_path / "out", keep=("id",), max_errors=2))
    assert (summary.rows, summary.errors) == (60, 2)
    errors = [
        orjson.loads(line) for line in (tmp_path / "out" / "_errors-00000.jsonl").read_bytes().splitlines()
    ]
    assert errors == [
        {"row": 7, "error": "column 'p3' is not a number: 'abc'"},
        {"row": 30, "error": "column 'p3' is missing"},
    ]
    kept = read(tmp_path / "out").column("id").to_pylist()  # ids read from a CSV are its text
    assert "7" not in kept and "30" not in kept and len(kept) == 58
    with pytest.raises(InvalidInput, match="2 rows could not be read, more than --max-errors 1"):
        run(digits, Job("digits", str(source), tmp_path / "again", keep=("id",), max_errors=1))


def test_a_job_stopped_part_way_goes_on_to_every_row_once(digits: Registry, tmp_path: Path) -> None:
    source = parquet(tmp_path / "in.parquet")
    job = Job("digits", str(source), tmp_path / "out", keep=("id",), part_rows=50)

    class StopAfterTwo:
        def started(self, total: int | None, done: int) -> None:
            assert (total, done) == (300, 0)

        def committed(self, part: object, rows: int) -> None:
            if rows >= 100:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(digits, job, StopAfterTwo())
    assert len(orjson.loads((tmp_path / "out" / "_manifest.json").read_bytes())["parts"]) == 2
    summary = run(digits, job)
    assert (summary.parts, summary.resumed_parts, summary.rows, summary.resumed_rows) == (6, 2, 300, 100)
    assert summary.rows_per_s == pytest.approx(200 / summary.seconds)  # this run's rows: not the earlier's
    assert read(tmp_path / "out").column("id").to_pylist() == list(range(300))


def committed_parts(out: Path) -> int:
    manifest = out / "_manifest.json"
    return len(orjson.loads(manifest.read_bytes())["parts"]) if manifest.exists() else 0


@pytest.mark.parametrize("moment", [0, 1, 12], ids=["before-any-part", "after-one-part", "after-12-parts"])
def test_a_job_killed_at_any_moment_goes_on_to_every_row_once(
    digits: Registry, tmp_path: Path, moment: int
) -> None:
    source = parquet(tmp_path / "in.parquet", len(X))
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "shipyard", "--home", str(tmp_path / "home"), "batch", "run", "digits",
        "--input", str(source), "--output", str(out), "--keep", "id", "--part-rows", "20", "--threads", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not out.exists() or committed_parts(out) < moment:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.005)  # polling the output folder, bounded by the deadline
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    committed = committed_parts(out)
    summary = run(digits, Job("digits", str(source), out, keep=("id",), part_rows=20))
    assert summary.resumed_parts == committed >= moment
    assert summary.rows == len(X) and summary.parts == -(-len(X) // 20)
    assert read(out).column("id").to_pylist() == list(range(len(X)))


def test_another_jobs_output_folder_is_refused(digits: Registry, tmp_path: Path) -> None:
    source = parquet(tmp_path / "in.parquet", 30)
    run(digits, Job("digits", str(source), tmp_path / "out", keep=("id",)))
    with pytest.raises(Conflict, match="holds the output of another job"):
        run(digits, Job("digits", str(source), tmp_path / "out", keep=("id",), part_rows=7))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(Conflict, match="not empty and holds no job's manifest"):
        run(digits, Job("digits", str(source), tmp_path / "busy", keep=("id",)))


@pytest.mark.parametrize(
    ("inputs", "job", "problem"),
    [
        ("nothing-*.parquet", {}, "no input files"),
        ("in.parquet", {"columns": ("p0", "nope")}, "no column 'nope'"),
        ("in.parquet", {"columns": ("p0", "p1")}, "takes 64 values a row"),
        ("in.parquet", {"columns": (("p0",), ("p1",))}, r"takes 1 input \(input\)"),
        ("in.parquet", {"engine": "spark"}, "--engine must be one of"),
        ("in.parquet", {"format": "xlsx"}, "--format must be one of"),
    ],
)
def test_a_job_that_cannot_run_says_why(
    digits: Registry, tmp_path: Path, inputs: str, job: dict[str, object], problem: str
) -> None:
    parquet(tmp_path / "in.parquet", 10)
    with pytest.raises((InvalidInput, Exception), match=problem):
        run(digits, Job("digits", str(tmp_path / inputs), tmp_path / "out", **job))  # type: ignore[arg-type]


def test_a_bad_value_deep_in_a_csv_fails_its_row_only(digits: Registry, tmp_path: Path) -> None:
    # far past the first block pyarrow reads (1 MB: some 4,000 of these rows), where types are guessed
    source = tmp_path / "in.csv"
    rows = np.tile(X[:100], (100, 1))  # 2.6 MB
    with source.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"p{i}" for i in range(64)])
        for i, row in enumerate(rows.tolist()):
            writer.writerow(["bad", *row[1:]] if i == 9000 else row)
    summary = run(digits, Job("digits", str(source), tmp_path / "out", part_rows=4000, max_errors=1))
    assert (summary.rows, summary.errors) == (10000, 1)
    assert (tmp_path / "out" / "_errors-00002.jsonl").read_bytes() == (
        b'{"row":9000,"error":"column \'p0\' is not a number: \'bad\'"}\n'
    )

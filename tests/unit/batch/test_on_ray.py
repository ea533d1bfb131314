"""A batch job on Ray Data (shipyard/batch/on_ray.py) against the same job on the local engine: the same
output rows from Parquet, CSV and JSONL, bad rows in the errors file up to --max-errors, and what it
refuses (inputs it does not read, a used folder, a cluster that does not answer, no Ray installed). One
local Ray (2 CPUs) serves the module: starting one takes seconds."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from shipyard.batch import Job, Predictions, run
from shipyard.errors import Conflict, InvalidInput, Unavailable
from shipyard.registry import Registry
from tests.unit.batch.conftest import X, bad_csv, parquet

# Ray Data warns of its own deprecated settings as it makes its default context
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


@pytest.fixture(scope="module")
def ray_cluster(one_ray_at_a_time: None) -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def sorted_by_id(table: pa.Table) -> pa.Table:
    """Ray may write blocks in another order: rows are compared by their kept id."""
    return table.sort_by("id").combine_chunks()


def test_a_parquet_job_on_ray_writes_the_local_engines_rows(
    ray_cluster: None, digits: Registry, tmp_path: Path
) -> None:
    source = str(parquet(tmp_path / "in.parquet", 1000))
    options = {"keep": ("id",), "predictions": Predictions(top_k=3), "batch_rows": 128, "part_rows": 300}
    local = run(digits, Job("digits", source, tmp_path / "local", **options))
    on_ray = run(digits, Job("digits", source, tmp_path / "ray", engine="ray", **options))
    assert (on_ray.rows, on_ray.errors, on_ray.resumed_parts) == (local.rows, 0, 0) == (1000, 0, 0)
    expected, found = pq.read_table(tmp_path / "local"), pq.read_table(tmp_path / "ray")
    assert found.schema == expected.schema
    assert sorted_by_id(found).equals(sorted_by_id(expected))
    assert found.column("id").to_pylist() == list(range(1000))  # input order kept, as Ray can here
    first = next(p for p in (tmp_path / "ray").iterdir() if p.suffix == ".parquet")
    meta = pq.read_schema(first).metadata
    assert meta[b"shipyard.model"] == b"digits" and meta[b"shipyard.version"] == b"1"
    manifest = orjson.loads((tmp_path / "ray" / "_manifest.json").read_bytes())
    assert [manifest[k] for k in ("engine", "rows", "errors", "done")] == ["ray", 1000, 0, True]
    assert sorted(p["file"] for p in manifest["parts"]) == sorted(
        p.name for p in (tmp_path / "ray").iterdir() if p.suffix == ".parquet"
    )


@pytest.mark.slow
def test_a_csv_job_on_ray_writes_the_same_rows_and_its_bad_ones_to_the_errors_file(
    ray_cluster: None, digits: Registry, tmp_path: Path
) -> None:
    source = str(bad_csv(tmp_path / "in.csv"))
    options = {"format": "csv", "keep": ("id",), "max_errors": 2}
    run(digits, Job("digits", source, tmp_path / "local", **options))
    summary = run(digits, Job("digits", source, tmp_path / "ray", engine="ray", **options))
    assert (summary.rows, summary.errors) == (60, 2)
    expected, found = (
        pa.concat_tables(pacsv.read_csv(p) for p in sorted((tmp_path / name).glob("*.csv")))
        for name in ("local", "ray")
    )
    assert found.num_rows == 58 and sorted_by_id(found).equals(sorted_by_id(expected))
    errors = [orjson.loads(line) for line in (tmp_path / "ray" / "_errors.jsonl").read_bytes().splitlines()]
    assert sorted(errors, key=lambda e: int(e["id"])) == [  # ids read from a CSV are its text
        {"id": "7", "error": "column 'p3' is not a number: 'abc'"},
        {"id": "30", "error": "column 'p3' is missing"},
    ]
    with pytest.raises(InvalidInput, match=r"rows could not be read, more than --max-errors 1: .*_errors"):
        run(digits, Job("digits", source, tmp_path / "again", keep=("id",), max_errors=1, engine="ray"))
    assert (tmp_path / "again" / "_errors.jsonl").exists()
    assert not orjson.loads((tmp_path / "again" / "_manifest.json").read_bytes())["done"]


@pytest.mark.slow
def test_a_jsonl_job_on_ray_writes_the_same_lines(
    ray_cluster: None, digits: Registry, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b"".join(orjson.dumps({"id": i, **{f"p{j}": v for j, v in enumerate(row)}}) + b"\n" for i, row in
                 enumerate(X[:200].tolist()))
    )  # fmt: skip
    options = {"format": "jsonl", "keep": ("id",), "predictions": Predictions("raw")}
    run(digits, Job("digits", str(source), tmp_path / "local", **options))
    run(digits, Job("digits", str(source), tmp_path / "ray", engine="ray", **options))
    expected, found = (
        sorted(
            (
                orjson.loads(line)
                for path in (tmp_path / name).glob("*.jsonl")
                for line in path.read_bytes().splitlines()
            ),
            key=lambda row: row["id"],
        )
        for name in ("local", "ray")
    )
    assert len(found) == 200 and found == expected


def test_inputs_ray_does_not_read_and_a_used_folder_are_refused(digits: Registry, tmp_path: Path) -> None:
    pytest.importorskip("ray")  # refused before Ray starts
    np.save(tmp_path / "in.npy", X[:10])
    with pytest.raises(InvalidInput, match="--engine ray reads Parquet, CSV and JSONL, not npy files"):
        run(digits, Job("digits", str(tmp_path / "in.npy"), tmp_path / "out", engine="ray"))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "part-00000.parquet").write_bytes(b"")
    job = Job("digits", str(parquet(tmp_path / "in.parquet", 10)), tmp_path / "used", keep=("id",))
    with pytest.raises(Conflict, match="is not empty: --engine ray writes to a new folder"):
        run(digits, dataclasses.replace(job, engine="ray"))


def test_a_cluster_that_does_not_answer_is_said_at_once(digits: Registry, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
    job = Job("digits", str(parquet(tmp_path / "in.parquet", 10)), tmp_path / "out", keep=("id",))
    with pytest.raises(Unavailable, match=f"no Ray cluster answers at {address}"):
        run(digits, dataclasses.replace(job, engine="ray", address=address))


def test_without_ray_the_engine_says_how_to_install_it(
    digits: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(InvalidInput, match=r"--engine ray needs Ray: pip install 'shipyard\[ray\]'"):
        run(digits, Job("digits", str(parquet(tmp_path / "in.parquet", 10)), tmp_path / "out", engine="ray"))


def test_the_local_engine_and_the_server_never_import_ray() -> None:
    code = "import sys, shipyard.batch, shipyard.server.serving; print('ray' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"

"""`sample_rows`: the rows of a data file before any signature is known (the import's numerical
check), read by the same code as evaluation data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.datasets import sample_rows
from shipyard.errors import InvalidInput


def test_npz_gives_x_or_the_first_array_not_named_like_a_target(tmp_path: Path) -> None:
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.savez(tmp_path / "a.npz", y=np.zeros(6), X=X)
    np.savez(tmp_path / "b.npz", labels=np.zeros(6), pixels=X)
    np.savez(tmp_path / "c.npz", y=np.zeros(6))
    assert np.array_equal(sample_rows(tmp_path / "a.npz", rows=4), X[:4])
    assert np.array_equal(sample_rows(tmp_path / "b.npz"), X)
    with pytest.raises(InvalidInput, match="no input array"):
        sample_rows(tmp_path / "c.npz")


def test_csv_with_a_label_column_and_without_a_header(tmp_path: Path) -> None:
    (tmp_path / "named.csv").write_text("a,b,label\n1,2,cat\n3,4,dog\n")
    (tmp_path / "bare.csv").write_text("1,2,3\n4,5,6\n")
    named, bare = sample_rows(tmp_path / "named.csv"), sample_rows(tmp_path / "bare.csv")
    assert named is not None and named.dtype == np.float32
    assert named.tolist() == [[1, 2], [3, 4]]
    assert bare is not None and bare.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_parquet_columns_of_lists_become_features(tmp_path: Path) -> None:
    table = pa.table({"x": [[1.0, 2.0], [3.0, 4.0]], "target": [0, 1]})
    pq.write_table(table, tmp_path / "d.parquet")
    rows = sample_rows(tmp_path / "d.parquet")
    assert rows is not None and rows.tolist() == [[1, 2], [3, 4]]


def test_files_without_rows_leave_the_check_to_generated_inputs(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not data")
    assert sample_rows(tmp_path / "notes.txt") is None

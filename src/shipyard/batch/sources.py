"""What a batch job reads: files (Parquet, CSV, JSONL, .npy, .npz), streamed as record batches and cut
into parts of a fixed number of rows, so that part k is the same rows on every run of the job (what
makes a job resumable) and memory holds one part at a time, whatever the size of the input.

A part carries the columns the output keeps (`keep`), the features as one float matrix (the numeric
columns, in order, or those `columns` names), and the rows that cannot be read as features (a
missing value, a value that is not a number), each with why.
"""

from __future__ import annotations

import contextlib
import csv
import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from shipyard.datasets.files import X_KEYS
from shipyard.errors import InvalidInput, NotFound

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json"}
ARRAYS = (".npy", ".npz")
MOSTLY = 0.9
"""A text column is a feature when this share of its values in the first rows read as numbers."""
READ_ROWS = 65_536
"""Rows read at a time from a file (pyarrow's batch size)."""


@dataclass
class Part:
    number: int
    first_row: int
    """The input row number of its first row (counting every row of every input file)."""
    kept: dict[str, pa.Array]
    features: np.ndarray
    """One float32 row per readable row."""
    good: np.ndarray
    """The indexes (within the part) of the rows in `features`."""
    bad: list[tuple[int, str]] = field(default_factory=list)
    """(row within the part, why it cannot be read) of the others."""

    @property
    def rows(self) -> int:
        return len(self.good) + len(self.bad)


def input_files(pattern: str) -> list[Path]:
    """The files a job reads: a file, a folder's files (sorted), or a glob (sorted)."""
    path = Path(pattern)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and _kind(p))
    elif path.exists():
        found = [path]
    else:
        found = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    if not found:
        raise NotFound(f"no input files at {pattern!r}")
    kinds = {_kind(p) for p in found}
    if None in kinds:
        odd = next(p for p in found if _kind(p) is None)
        raise InvalidInput(f"{odd.name}: not a batch input (Parquet, CSV, JSONL, .npy or .npz)")
    if len(kinds) > 1:
        raise InvalidInput(
            f"the inputs mix formats ({', '.join(sorted(str(k) for k in kinds))}): give one kind"
        )
    return found


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return FORMATS.get(suffix) or (suffix[1:] if suffix in ARRAYS else None)


def parts(
    files: Sequence[Path], part_rows: int, columns: Sequence[str] | None, keep: Sequence[str]
) -> Iterator[Part]:
    """The input cut into parts of `part_rows` rows (the last one shorter), in file order."""
    buffered: list[pa.RecordBatch] = []
    held = number = first = 0
    for batch in _batches(files):
        if columns is None:  # chosen once, on the first rows, so that every part has the same
            columns = _feature_columns(pa.Table.from_batches([batch]), keep)
        buffered.append(batch)
        held += batch.num_rows
        while held >= part_rows:
            table = pa.Table.from_batches(buffered)
            yield _part(number, first, table.slice(0, part_rows), columns, keep)
            rest = table.slice(part_rows)
            buffered, held = rest.to_batches(), rest.num_rows
            number, first = number + 1, first + part_rows
    if held:
        yield _part(number, first, pa.Table.from_batches(buffered), columns, keep)


def _batches(files: Sequence[Path]) -> Iterator[pa.RecordBatch]:
    kind = _kind(files[0])
    if kind in ("npy", "npz"):
        for path in files:
            yield from _array_batches(path)
        return
    dataset = ds.dataset([str(p) for p in files], format=_csv_as_text(files[0]) if kind == "csv" else kind)
    yield from dataset.to_batches(batch_size=READ_ROWS)


def _csv_as_text(first: Path) -> ds.CsvFileFormat:
    """CSV read with every column as text (empty, NA and the like as missing): types guessed from a
    file's first block would fail the whole job on a bad value further down; as text, a bad value
    fails its row only (`_numbers`)."""
    with first.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True)
    return ds.CsvFileFormat(convert_options=convert)


def _array_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """An array file's rows as record batches of columns f0, f1, ... (a .npz: its X, or its only array)."""
    if path.suffix.lower() == ".npy":
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    else:
        with np.load(path, allow_pickle=False) as npz:
            names = [k for k in X_KEYS if k in npz.files] or npz.files
            if len(names) != 1 and not set(X_KEYS) & set(npz.files):
                raise InvalidInput(f"{path.name}: holds {len(npz.files)} arrays; name the inputs X")
            array = npz[names[0]]
    if array.ndim < 1 or not np.issubdtype(array.dtype, np.number):
        raise InvalidInput(f"{path.name}: not an array of numbers, one row per sample")
    rows = array.reshape(len(array), -1)
    names = [f"f{i}" for i in range(rows.shape[1])]
    for start in range(0, len(rows), READ_ROWS):
        chunk = np.asarray(rows[start : start + READ_ROWS], dtype=np.float32)
        yield pa.RecordBatch.from_arrays([pa.array(chunk[:, i]) for i in range(chunk.shape[1])], names=names)


def _part(
    number: int, first: int, table: pa.Table, columns: Sequence[str] | None, keep: Sequence[str]
) -> Part:
    missing = [c for c in (*(columns or ()), *keep) if c not in table.column_names]
    if missing:
        raise InvalidInput(f"the input has no column {missing[0]!r}; it has {', '.join(table.column_names)}")
    chosen = list(columns or ())
    values = [_numbers(table.column(name)) for name in chosen]
    features = np.stack(values, axis=1)
    bad = np.isnan(features).any(axis=1)
    reasons = [(i, _reason(table, chosen, i)) for i in np.flatnonzero(bad).tolist()]
    good = np.flatnonzero(~bad)
    kept = {name: table.column(name).combine_chunks() for name in keep}
    return Part(number, first, kept, features[good], good, reasons)


def _feature_columns(table: pa.Table, keep: Sequence[str]) -> list[str]:
    """The numeric columns, in order, but those kept: typed as numbers, or text that mostly reads as
    numbers (a CSV column with one bad value is typed as text: its rows are bad, not the column)."""
    chosen = []
    for name in table.column_names:
        if name in keep:
            continue
        column = table.column(name)
        if _is_number(column.type) or (
            pa.types.is_string(column.type) and np.mean(~np.isnan(_numbers(column))) >= MOSTLY
        ):
            chosen.append(name)
    if not chosen:
        raise InvalidInput("the input has no numeric columns to use as features (--columns names them)")
    return chosen


def _is_number(kind: Any) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind))


def _numbers(column: Any) -> np.ndarray:
    """A column as float32 values, NaN where one is missing or not a number."""
    if not _is_number(column.type):
        try:  # text, all of it numbers: read at once; else value by value, NaN where one is not
            column = pc.cast(column, pa.float32())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return _parse(column)
    return np.asarray(pc.cast(column, pa.float32(), safe=False).to_numpy(zero_copy_only=False), np.float32)


def _parse(column: Any) -> np.ndarray:
    """A text column read as numbers one value at a time; NaN where a value is not one."""
    out = np.full(len(column), np.nan, dtype=np.float32)
    for i, value in enumerate(column.to_pylist()):
        with contextlib.suppress(TypeError, ValueError):
            out[i] = float(value)
    return out


def _reason(table: pa.Table, columns: Sequence[str], row: int) -> str:
    for name in columns:
        value = table.column(name)[row].as_py()
        if value is None or value == "":
            return f"column {name!r} is missing"
        try:
            if np.isnan(float(value)):
                return f"column {name!r} is NaN"
        except (TypeError, ValueError):
            return f"column {name!r} is not a number: {str(value)[:40]!r}"
    return "unreadable"

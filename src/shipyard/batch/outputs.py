"""The output rows of a batch job, and their files.

A row keeps the input's id columns (`keep`) and adds the prediction: class and confidence (and the
`top_k` classes with theirs), or the model's raw outputs. Files are written whole or not at all (a
temporary name, flushed, renamed), Parquet with the model, version and artifact sha256 in its key-value
metadata; CSV and JSONL have the folder's manifest beside them for that.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shipyard import scoring
from shipyard.errors import InvalidInput
from shipyard.registry import VersionRecord

FORMATS = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}
MODES = ("class", "raw")


@dataclass(frozen=True)
class Predictions:
    """What a job writes of each prediction."""

    mode: str = "class"
    """class: class and confidence; raw: the model's outputs."""
    top_k: int = 0
    """With class: the k most likely classes and their confidences too."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidInput(f"--outputs must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.top_k < 0:
            raise InvalidInput("--top-k must be 0 or more")

    def columns(self, record: VersionRecord, outputs: dict[str, np.ndarray]) -> dict[str, pa.Array]:
        """The prediction columns of a batch of the model's outputs (a row per readable input row)."""
        scores = record.signature.scores
        if self.mode == "raw" or scores is None or scores.output not in outputs:
            return {name: _rows(values) for name, values in outputs.items()}
        values = outputs[scores.output]
        values = values.reshape(len(values), -1)
        names = pa.array([scoring.label(i, record.labels) for i in range(values.shape[1])], pa.string())
        if self.top_k:
            scored = scoring.read(values, scores.kind)
            predicted, confidence = scored.predicted, scored.confidence
        else:
            predicted, confidence = scoring.best(values, scores.kind)
        found = {"class": names.take(pa.array(predicted)), "confidence": pa.array(confidence, pa.float64())}
        if self.top_k:
            k = min(self.top_k, values.shape[1])
            top = scoring.top(scored.probabilities, k)
            found["top_classes"] = pa.FixedSizeListArray.from_arrays(names.take(pa.array(top.reshape(-1))), k)
            found["top_confidences"] = _rows(np.take_along_axis(scored.probabilities, top, axis=1))
        return found


def _rows(values: np.ndarray) -> pa.Array:
    """An output as a column: its values when one a row, else a fixed-size list a row."""
    flat = np.ascontiguousarray(values.reshape(len(values), -1))
    if flat.shape[1] == 1 and values.ndim == 1:
        return pa.array(flat[:, 0])
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def write(table: pa.Table, path: Path, format: str, record: VersionRecord) -> None:
    """Write `table` to `path` whole or not at all."""
    atomic(path, lambda temporary: _WRITERS[format](table, temporary, record))


def metadata(record: VersionRecord) -> dict[bytes, str]:
    """What Parquet output records of the version that made it (its key-value metadata)."""
    return {
        b"shipyard.model": record.model,
        b"shipyard.version": str(record.number),
        b"shipyard.sha256": record.sha256,
    }


def lists_as_text(table: pa.Table) -> pa.Table:
    """CSV has no lists: a list column becomes its JSON text ("[0.1, 0.9]")."""
    for i, column in enumerate(table.columns):
        if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
            text = [orjson.dumps(v).decode() for v in column.to_pylist()]
            table = table.set_column(i, table.field(i).name, pa.array(text, pa.string()))
    return table


def json_lines(table: pa.Table) -> Iterator[bytes]:
    """The rows as JSON lines, a few thousand at a time (orjson: floats written whole)."""
    for batch in table.to_batches(max_chunksize=4096):
        yield b"".join(orjson.dumps(row) + b"\n" for row in batch.to_pylist())


def _parquet(table: pa.Table, path: Path, record: VersionRecord) -> None:
    pq.write_table(table.replace_schema_metadata(metadata(record)), path)


def _csv(table: pa.Table, path: Path, record: VersionRecord) -> None:
    pacsv.write_csv(lists_as_text(table), path)


def _jsonl(table: pa.Table, path: Path, record: VersionRecord) -> None:
    with path.open("wb") as out:
        out.writelines(json_lines(table))


_WRITERS: dict[str, Callable[[pa.Table, Path, VersionRecord], None]] = {
    "parquet": _parquet, "csv": _csv, "jsonl": _jsonl,
}  # fmt: skip


def kept(table: pa.Table, names: tuple[str, ...], good: np.ndarray) -> dict[str, pa.Array]:
    """The kept columns of the rows that were read."""
    rows = pa.array(good)
    return {name: pc.take(table.column(name), rows).combine_chunks() for name in names}


def atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write `path` whole or not at all: to a temporary name, flushed, then renamed."""
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    with temporary.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_json(path: Path, doc: dict[str, object]) -> None:
    atomic(path, lambda p: p.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2)))

"""The prediction log on disk: one Parquet schema, one folder per model, files that are never half-written.

A Parquet file is readable only once closed (its footer comes last), so each file is written under a
temporary name (a dot file ending in ``.tmp``) and renamed atomically when closed: readers list only
finished names and can never meet a half-written file; a crash leaves a temporary file they ignore.
Files are closed at ``max_file_age_s`` (short, so records become readable soon; idle ones too, by
``poll()``) or when they reach about ``max_file_bytes``.

A finished file is named after the times of its oldest and newest records and a sequence number::

    <root>/<model>/20250131T120000123456Z-20250131T120004998001Z-000042-5f3a9c1e.parquet

so names sort by time, a reader can skip files wholly outside a time range without opening them, and
the trailing writer tag keeps two processes sharing a folder apart.
"""

from __future__ import annotations

import functools
import io
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shipyard.errors import InvalidInput
from shipyard.names import NAME

if TYPE_CHECKING:
    from shipyard.monitor.predlog import PredictionRecord

SCHEMA_VERSION = "1"
SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("protocol", pa.string(), nullable=False),
        pa.field("input_mean", pa.float64()),
        pa.field("input_std", pa.float64()),
        pa.field("input_min", pa.float64()),
        pa.field("input_max", pa.float64()),
        pa.field("input", pa.binary()),  # the whole input as .npy bytes, when inputs are kept
        pa.field("output", pa.string()),  # JSON text
        pa.field("class", pa.string()),
        pa.field("confidence", pa.float64()),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("status", pa.int32(), nullable=False),
    ],
    metadata={"shipyard.predlog.schema": SCHEMA_VERSION},
)
"""The stored columns. Add columns at the end only (and bump SCHEMA_VERSION); never rename or retype."""

# Min/max statistics of the .npy and JSON columns would copy up to 4 KiB of each per row group, and their
# values hardly repeat: keep statistics and dictionaries to the columns that gain from them.
_STATISTICS_COLUMNS = [f.name for f in SCHEMA if not pa.types.is_binary(f.type) and f.name != "output"]
_DICTIONARY_COLUMNS = ["model", "version", "protocol", "class", "status"]

_SIZED = ("request_id", "input", "output")  # the big ones
CHUNK_ROWS = 256
"""Most records converted and appended at once (ParquetSink.write)."""

_STAMP = "%Y%m%dT%H%M%S%fZ"
FILE_NAME = re.compile(r"^(\d{8}T\d{12}Z)-(\d{8}T\d{12}Z)-(\d{6,})-([0-9a-f]+)\.parquet$")
TEMP_SUFFIX = ".tmp"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def model_dir(root: str | os.PathLike[str], model: str) -> Path:
    """The folder of one model's files; refuses names that could point outside `root`."""
    if not NAME.fullmatch(model):
        raise InvalidInput(f"bad model name {model!r}: letters, digits, '_', '.', '-' (128 at most)")
    return Path(root) / model


def file_name(first_us: int, last_us: int, seq: int, tag: str) -> str:
    return f"{stamp(first_us)}-{stamp(last_us)}-{seq:06d}-{tag}.parquet"


def file_span(name: str) -> tuple[int, int] | None:
    """(oldest, newest) record times in microseconds from a finished file's name; None for other files."""
    m = FILE_NAME.match(name)
    if m is None:
        return None
    return _unstamp(m.group(1)), _unstamp(m.group(2))


def stamp(us: int) -> str:
    """A time (microseconds since the epoch) as file names write it: fixed width, so text order is time
    order and a reader can compare names without parsing them."""
    return (_EPOCH + timedelta(microseconds=us)).strftime(_STAMP)


def _unstamp(text: str) -> int:
    return (datetime.strptime(text, _STAMP).replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


Summary = tuple[float | None, float | None, float | None, float | None]
NO_SUMMARY: Summary = (None, None, None, None)


def summarize(inputs: np.ndarray | None) -> Summary:
    """Mean, std, min and max over every element of a numeric input; None for others."""
    return summarize_all([inputs])[0]


def summarize_all(inputs: Sequence[np.ndarray | None]) -> list[Summary]:
    """summarize() of each, computed a stack at a time: numpy's cost is per call, not per element, and
    one call per record was most of the writer's time."""
    out: list[Summary] = [NO_SUMMARY] * len(inputs)
    groups: dict[tuple[tuple[int, ...], str], list[int]] = {}
    for i, array in enumerate(inputs):
        if array is not None and array.size and array.dtype.kind in "biuf":
            groups.setdefault((array.shape, array.dtype.str), []).append(i)
    for indices in groups.values():
        stacked = np.stack([inputs[i] for i in indices]).reshape(len(indices), -1)  # type: ignore[misc]
        small = stacked.dtype.kind in "bui" and stacked.dtype.itemsize <= 2
        if stacked.dtype.kind != "f" and not small:
            stacked = stacked.astype(np.float64)
        moments = _integer_moments(stacked) if small else _moments(stacked)
        columns = zip(
            *moments, stacked.min(axis=1).astype(np.float64).tolist(),
            stacked.max(axis=1).astype(np.float64).tolist(), strict=True,
        )  # fmt: skip
        for i, summary in zip(indices, columns, strict=True):
            out[i] = summary
    return out


def _integer_moments(rows: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean and std of rows of small integers (pictures' uint8 pixels), summed exactly in int64 without
    a float copy of the rows: a third of the time of _moments on a 224x224x3 picture."""
    n = rows.shape[1]
    total = rows.sum(axis=1, dtype=np.int64)
    squares = np.einsum("ij,ij->i", rows, rows, dtype=np.int64)
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
    return mean.tolist(), std.tolist()


def _moments(rows: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean and std of each row, accumulated in float64 without converting the rows. The variance is
    a sum of squares (one einsum) of the rows shifted by their first value, which keeps it from
    cancelling when values are large and close together. 2x np.std's speed on images."""
    mean = rows.mean(axis=1, dtype=np.float64)
    shift = rows[:, :1]
    shifted = rows - shift
    square = np.einsum("ij,ij->i", shifted, shifted, dtype=np.float64) / rows.shape[1]
    offset = mean - shift[:, 0]
    std = np.sqrt(np.maximum(square - offset * offset, 0.0))
    return mean.tolist(), std.tolist()


def encode_npy(inputs: np.ndarray | None) -> bytes | None:
    """The input as .npy bytes (np.load reads them back); None for object arrays, which need pickle."""
    if inputs is None or inputs.dtype.hasobject:
        return None
    buffer = io.BytesIO()
    np.save(buffer, inputs, allow_pickle=False)
    return buffer.getvalue()


def encode_output(output: object) -> str | None:
    if output is None or isinstance(output, str):
        return output
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    try:
        return orjson.dumps(output, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:  # e.g. a dict with non-string keys
        return None


@dataclass(eq=False)
class _OpenFile:
    """One model's file being written: rows are buffered and written a row group at a time."""

    folder: Path
    temp: Path
    seq: int
    stream: Any  # pa.OSFile
    writer: Any  # pq.ParquetWriter
    opened_at: float
    first_us: int = 2**63 - 1
    last_us: int = 0
    pending: dict[str, list[Any]] = field(default_factory=lambda: {name: [] for name in SCHEMA.names})
    pending_rows: int = 0
    pending_bytes: int = 0


@functools.cache
def _convert_once() -> None:
    """pyarrow's first conversion of Python values in a process imports pandas where it is installed
    (~130-170 ms here, holding the GIL). Left to the writer thread's first flush, it stopped a
    serving event loop that long: requests piled past the admission limit and were refused with
    Retry-After, and p99 went from 2 ms to 400 ms (bench/capacity.py). Paid once, as a sink is made."""
    pa.Table.from_pydict({name: [] for name in SCHEMA.names}, schema=SCHEMA)


class ParquetSink:
    """Writes records to Parquet files under `root`, one folder per model (see the module docstring).

    `keep_inputs` also stores each whole input (.npy bytes); the summary columns are always filled.
    Rows are written in row groups of `row_group_rows` (or fewer, at about 8 MiB); `clock` times the
    age of open files. Used by the prediction log's single writer thread: not thread-safe.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_file_bytes: int = 64 * 1024 * 1024,
        max_file_age_s: float = 5.0,
        keep_inputs: bool = False,
        row_group_rows: int = 10_000,
        compression: str = "zstd",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_file_bytes < 1 or max_file_age_s <= 0 or row_group_rows < 1:
            raise ValueError("max_file_bytes, max_file_age_s and row_group_rows must be positive")
        self.root = Path(root)
        self.max_file_bytes = max_file_bytes
        self.max_file_age_s = max_file_age_s
        self.keep_inputs = keep_inputs
        self.row_group_rows = row_group_rows
        self.row_group_bytes = min(max_file_bytes, 8 * 1024 * 1024)
        self.compression = compression
        self.files_written = 0
        self._clock = clock
        self._open: dict[str, _OpenFile] = {}
        self._seq = 0
        self._tag = secrets.token_hex(4)
        _convert_once()

    def write(self, records: Sequence[PredictionRecord]) -> None:
        """Store records, a column at a time per model and per chunk of at most CHUNK_ROWS (per-record
        work was most of the writer's time); the limits on row groups and files are checked after each
        chunk, so neither grows past them by more than one chunk, nor does memory with the write."""
        groups: dict[str, list[PredictionRecord]] = {}
        for record in records:
            groups.setdefault(record.model, []).append(record)
        for model in groups:
            model_dir(self.root, model)  # refuse a bad name before writing anything
        now = self._clock()
        for model, group in groups.items():
            start = 0
            while start < len(group):
                current = self._open.get(model)
                room = self.row_group_rows - (current.pending_rows if current else 0)
                chunk = group[start : start + max(1, min(CHUNK_ROWS, room))]
                columns = self._columns(chunk)  # a record that cannot be converted raises before its file
                try:
                    self._append(model, columns, len(chunk), now)
                except BaseException:
                    self._abandon(model)  # a broken file must not take the next records down too
                    raise
                start += len(chunk)

    def _columns(self, records: list[PredictionRecord]) -> dict[str, list[Any]]:
        """The stored values of records, by column in SCHEMA's order, each of its column's type."""
        inputs = [r.inputs if isinstance(r.inputs, np.ndarray) else None for r in records]
        mean, std, low, high = zip(*summarize_all(inputs), strict=True)
        return {
            "request_id": [str(r.request_id) for r in records],
            "time": [round(r.time * 1_000_000) for r in records],
            "model": [str(r.model) for r in records],
            "version": [int(r.version) for r in records],
            "protocol": [str(r.protocol) for r in records],
            "input_mean": list(mean),
            "input_std": list(std),
            "input_min": list(low),
            "input_max": list(high),
            "input": [encode_npy(i) for i in inputs] if self.keep_inputs else [None] * len(records),
            "output": [encode_output(r.output) for r in records],
            "class": [None if r.class_ is None else str(r.class_) for r in records],
            "confidence": [None if r.confidence is None else float(r.confidence) for r in records],
            "latency_ms": [float(r.latency_ms) for r in records],
            "status": [int(r.status) for r in records],
        }

    def _append(self, model: str, columns: dict[str, list[Any]], rows: int, now: float) -> None:
        current = self._open.get(model)
        if current is not None and now - current.opened_at >= self.max_file_age_s:
            self._finish(model)
            current = None
        if current is None:
            current = self._open[model] = self._start(model, now)
        for name, values in columns.items():
            current.pending[name] += values
        times = columns["time"]
        current.first_us = min(current.first_us, *times)
        current.last_us = max(current.last_us, *times)
        current.pending_rows += rows
        current.pending_bytes += 96 * rows + sum(
            len(value or "") for name in _SIZED for value in columns[name]
        )
        if current.pending_rows >= self.row_group_rows or current.pending_bytes >= self.row_group_bytes:
            self._flush(current)
        if current.stream.tell() + current.pending_bytes >= self.max_file_bytes:
            self._finish(model)

    def poll(self) -> float | None:
        now = self._clock()
        for model in [m for m, f in self._open.items() if now - f.opened_at >= self.max_file_age_s]:
            self._finish(model)
        if not self._open:
            return None
        return max(0.0, min(f.opened_at for f in self._open.values()) + self.max_file_age_s - now)

    def close(self) -> None:
        for model in list(self._open):
            self._finish(model)

    def _start(self, model: str, now: float) -> _OpenFile:
        folder = model_dir(self.root, model)
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        temp = folder / f".{self._seq:06d}-{self._tag}.parquet{TEMP_SUFFIX}"
        stream = pa.OSFile(str(temp), "wb")
        writer = pq.ParquetWriter(
            stream,
            SCHEMA,
            compression=self.compression,
            use_dictionary=_DICTIONARY_COLUMNS,
            write_statistics=_STATISTICS_COLUMNS,
        )
        return _OpenFile(folder, temp, self._seq, stream, writer, opened_at=now)

    def _flush(self, current: _OpenFile) -> None:
        if current.pending_rows:
            current.writer.write_table(pa.Table.from_pydict(current.pending, schema=SCHEMA))
            current.pending = {name: [] for name in SCHEMA.names}
            current.pending_rows = current.pending_bytes = 0

    def _finish(self, model: str) -> None:
        """Write what is buffered, close the file, make it durable, then give it its final name."""
        current = self._open.pop(model)
        try:
            self._flush(current)
            current.writer.close()
            current.stream.close()
            fd = os.open(current.temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            self._discard(current)
            raise
        final = current.folder / file_name(current.first_us, current.last_us, current.seq, self._tag)
        os.replace(current.temp, final)
        self.files_written += 1

    def _abandon(self, model: str) -> None:
        current = self._open.pop(model, None)
        if current is not None:
            self._discard(current)

    @staticmethod
    def _discard(current: _OpenFile) -> None:
        """Drop a file that failed: its records are lost, but no broken file is left to trip readers."""
        try:
            if not current.stream.closed:
                current.stream.close()
        finally:
            current.temp.unlink(missing_ok=True)


__all__ = [
    "FILE_NAME",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ParquetSink",
    "encode_npy",
    "encode_output",
    "file_name",
    "file_span",
    "model_dir",
    "stamp",
    "summarize",
]
